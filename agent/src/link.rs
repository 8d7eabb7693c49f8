//! The QUIC uplink to the collector: mutual TLS, one bidirectional stream per connection,
//! `Hello`/`Welcome`, then batches out and acks in, driven by the core's outbox state machine.
//!
//! Network input never panics the agent: every decode or protocol error ends the connection,
//! is recorded as `last_error` and leads to a reconnect after the core's backoff.
//!
//! Before each connection attempt the link makes sure there is a usable certificate: it
//! completes an interrupted certificate replacement, enrols ([`crate::enrol`]) when there is no
//! certificate or it has expired and `[enrol]` is configured, and reads the TLS files afresh (a
//! renewed pair is used from the next connection on). On connections of message set 3 it
//! renews the certificate from two thirds of its lifetime on (core
//! [`storepulse_agent_core::Renewal`]).

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{IdleTimeout, VarInt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use storepulse_agent_core::Spool;
use storepulse_agent_core::uplink::AckError;
use storepulse_shared::{
    ALPN, Batch, CertResult, FrameDecoder, FrameError, Goodbye, GoodbyeReason, Hello,
    IncidentQuery, MAX_FRAME_BYTES_DEFAULT, MIN_PROTOCOL_VERSION, Message, PROTOCOL_VERSION,
    RENEWAL_PROTOCOL_VERSION, RenewRequest, Welcome, close_code, encode_frame,
};
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout};
use tracing::Instrument as _;

use crate::certs::{self, CertError};
use crate::config::{CollectorConfig, UplinkSettings};
use crate::enrol::{self, EnrolError};
use crate::spool::SpoolError;
use crate::state::{Agent, Intervals, now, unix_ms};

/// Time allowed for the QUIC handshake and for the `Welcome` to arrive.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed on shutdown for the collector to receive our `Goodbye`.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a terminal whose certificate was revoked waits before it tries again.
const REVOKED_RETRY: Duration = Duration::from_secs(3600);
/// Wait after a refused enrolment without a hint.
const ENROL_RETRY: Duration = Duration::from_secs(60);
/// TLS alert `certificate_revoked`, carried by QUIC as CRYPTO_ERROR 0x100 + alert.
const CRYPTO_CERTIFICATE_REVOKED: u64 = 0x100 + 44;

/// The TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("{field}: cannot read {path}: {cause}")]
    Read {
        /// Config field naming the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// The IO error (in the message, not a separate source).
        cause: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{field}: {path} contains no {what}")]
    Empty {
        /// Config field naming the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
    /// rustls refused the material (for example a key that does not match the certificate).
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
    /// The rustls config cannot drive QUIC.
    #[error("TLS config unusable for QUIC: {0}")]
    Quic(String),
}

/// Why a session with the collector ended in error. The link records it as `last_error` and
/// reconnects after the core's backoff.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The collector's address could not be resolved.
    #[error("cannot resolve {address}: {cause}")]
    Resolve {
        /// `collector.address`.
        address: String,
        /// The resolver's error.
        cause: std::io::Error,
    },
    /// The collector's address resolved to nothing.
    #[error("{0} resolves to no address")]
    NoAddress(String),
    /// No UDP socket could be opened.
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    /// The connection could not even be started (bad server name or address).
    #[error("cannot start connecting: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake did not complete in time.
    #[error("handshake with {0} timed out")]
    HandshakeTimeout(SocketAddr),
    /// The handshake failed (unreachable, certificate refused, ...) or the connection was lost.
    #[error("cannot connect to {addr}: {cause}")]
    Connection {
        /// The collector's address.
        addr: SocketAddr,
        /// quinn's reason.
        cause: quinn::ConnectionError,
    },
    /// The bidirectional stream could not be opened.
    #[error("cannot open a stream: {0}")]
    OpenStream(quinn::ConnectionError),
    /// A frame could not be written.
    #[error("cannot send {what}: {cause}")]
    Write {
        /// Which frame.
        what: &'static str,
        /// quinn's reason.
        cause: quinn::WriteError,
    },
    /// Reading the stream failed.
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// The collector finished its stream.
    #[error("collector closed the stream")]
    Closed,
    /// No `Welcome` arrived in time.
    #[error("no Welcome within {0:?}")]
    WelcomeTimeout(Duration),
    /// The collector sent bytes that are no valid frame.
    #[error("bad frame from the collector: {0}")]
    Frame(#[from] FrameError),
    /// The collector sent a frame the protocol does not allow here.
    #[error("unexpected {0} frame from the collector")]
    Unexpected(&'static str),
    /// The collector acknowledged a batch that is not in flight.
    #[error("bad ack: {0}")]
    Ack(#[from] AckError),
    /// The task applying an ack panicked.
    #[error("ack task failed: {0}")]
    AckTask(tokio::task::JoinError),
    /// The spool could not be read.
    #[error("cannot read the spool: {0}")]
    Spool(#[from] SpoolError),
    /// The TLS files could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The certificate files could not be read or are unusable.
    #[error(transparent)]
    Certificate(#[from] CertError),
    /// There is no usable certificate and no way to get one.
    #[error("{0}")]
    NoCertificate(String),
    /// Enrolment failed or was refused.
    #[error(transparent)]
    Enrol(#[from] EnrolError),
}

/// How a session ended without an error.
#[derive(Debug)]
enum End {
    /// We are shutting down.
    Shutdown,
    /// The collector said goodbye.
    Goodbye(Goodbye),
}

/// One input to the session loop.
#[derive(Debug)]
enum Event {
    Stop,
    Received(Option<usize>),
    Appended,
    Query,
    Timer,
    Renew,
}

fn read_pem(field: &'static str, path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|cause| TlsError::Read {
            field,
            path: path.to_owned(),
            cause,
        })
}

fn certs(field: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut read_pem(field, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|cause| TlsError::Read {
            field,
            path: path.to_owned(),
            cause,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            field,
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// Builds the QUIC client config: fleet CA as the only root, client certificate and key for
/// mutual TLS, ALPN, keep-alive and idle timeout.
pub fn client_config(
    c: &CollectorConfig,
    u: &UplinkSettings,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs("collector.ca_cert", &c.ca_cert)? {
        roots.add(cert)?;
    }
    let chain = certs("collector.cert", &c.cert)?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut read_pem("collector.key", &c.key)?)
            .map_err(|cause| TlsError::Read {
                field: "collector.key",
                path: c.key.clone(),
                cause,
            })?
            .ok_or_else(|| TlsError::Empty {
                field: "collector.key",
                path: c.key.clone(),
                what: "private key",
            })?;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(u.keep_alive));
    transport.max_idle_timeout(IdleTimeout::try_from(u.idle_timeout).ok());
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Resolves when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Keeps a connection to the collector until `stop` turns true. Errors end one connection,
/// never the link: each is recorded as `last_error` and followed by a reconnect.
pub async fn run(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    // The message set to offer; one lower after a collector refused it (PROTOCOL.md section 7).
    let mut version = PROTOCOL_VERSION;
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = {
            let inner = agent.inner();
            if inner.uplink.poll_connect(now()) {
                None
            } else {
                inner.uplink.poll_timeout()
            }
        };
        if let Some(at) = wait {
            tokio::select! {
                () = sleep_until(at.into()) => {}
                () = stopped(&mut stop) => return,
            }
            continue;
        }
        agent.inner().uplink.handle_connecting(now());
        let outcome = tokio::select! {
            tls = prepare(&agent) => match tls {
                Ok(tls) => session(&agent, &tls, version, &mut stop).await,
                Err(e) => Err(e),
            },
            () = stopped(&mut stop) => return,
        };
        agent.link().connection = None;
        agent.link().rtt.reset();
        agent.drop_queries();
        if let Some(r) = agent.link().renewal.as_mut() {
            r.handle_lost(unix_ms());
        }
        let (retry_after, error) = match outcome {
            Ok(End::Shutdown) => return,
            Ok(End::Goodbye(g))
                if g.reason == GoodbyeReason::UnsupportedVersion
                    && version > MIN_PROTOCOL_VERSION =>
            {
                version -= 1;
                tracing::warn!(version, detail = %g.detail, "Collector too old for our message set; trying the previous one");
                (
                    None,
                    format!(
                        "collector refused message set {}: {}",
                        version + 1,
                        g.detail
                    ),
                )
            }
            Ok(End::Goodbye(g)) => {
                let floor = (g.retry_after_secs > 0)
                    .then(|| Duration::from_secs(g.retry_after_secs.into()));
                if g.reason == GoodbyeReason::Revoked {
                    tracing::error!(
                        detail = %g.detail,
                        "This terminal's certificate was revoked; the collector refuses it"
                    );
                }
                (
                    floor,
                    format!("collector said goodbye ({:?}): {}", g.reason, g.detail),
                )
            }
            Err(e) => (retry_floor(&e), e.to_string()),
        };
        let delay = agent.inner().uplink.handle_disconnected(now(), retry_after);
        tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "Uplink down");
        agent.link().last_error = Some(error);
    }
}

/// A floor on the reconnect delay for errors that retrying soon cannot fix.
fn retry_floor(e: &LinkError) -> Option<Duration> {
    match e {
        LinkError::Enrol(EnrolError::Refused {
            retry_after_secs, ..
        }) => Some(if *retry_after_secs > 0 {
            Duration::from_secs((*retry_after_secs).into())
        } else {
            ENROL_RETRY
        }),
        LinkError::Connection {
            cause: quinn::ConnectionError::ConnectionClosed(close),
            ..
        } if u64::from(close.error_code) == CRYPTO_CERTIFICATE_REVOKED => {
            tracing::error!(
                "The collector refused this terminal's certificate as revoked; retrying in an hour"
            );
            Some(REVOKED_RETRY)
        }
        _ => None,
    }
}

/// Makes sure a usable certificate is on disk (enrolling if need be) and builds the TLS config
/// from the files as they are now.
async fn prepare(agent: &Arc<Agent>) -> Result<quinn::ClientConfig, LinkError> {
    let c = &agent.config().collector;
    certs::recover(&c.cert, &c.key)?;
    let current = if c.cert.exists() {
        Some(certs::read_info(&c.cert)?)
    } else {
        None
    };
    let expired = current
        .as_ref()
        .is_some_and(|i| i.not_after_ms <= unix_ms());
    if current.is_none() || expired {
        let Some(e) = &agent.config().enrol else {
            return Err(LinkError::NoCertificate(match current {
                None => format!(
                    "no certificate at {}: install one or configure [enrol]",
                    c.cert.display()
                ),
                Some(i) => format!(
                    "the certificate {} expired at {} ms; install a new one or configure [enrol]",
                    c.cert.display(),
                    i.not_after_ms
                ),
            }));
        };
        tracing::info!(address = %e.address, expired, "Enrolling with the bootstrap token");
        let info = enrol::enrol_once(agent.config(), e).await?;
        tracing::info!(
            serial = %info.serial_hex,
            not_after_unix_ms = info.not_after_ms,
            "Enrolled: certificate stored"
        );
    }
    let info = certs::read_info(&c.cert)?;
    agent.set_certificate(info);
    Ok(client_config(c, &agent.config().uplink)?)
}

async fn session(
    agent: &Arc<Agent>,
    tls: &quinn::ClientConfig,
    version: u16,
    stop: &mut watch::Receiver<bool>,
) -> Result<End, LinkError> {
    let c = &agent.config().collector;
    let addr = tokio::net::lookup_host(&c.address)
        .await
        .map_err(|cause| LinkError::Resolve {
            address: c.address.clone(),
            cause,
        })?
        .next()
        .ok_or_else(|| LinkError::NoAddress(c.address.clone()))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0u8; 4], 0))
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(LinkError::Socket)?;
    endpoint.set_default_client_config(tls.clone());
    let connecting = endpoint.connect(addr, &c.server_name)?;
    let conn = timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| LinkError::HandshakeTimeout(addr))?
        .map_err(|cause| LinkError::Connection { addr, cause })?;
    let span = tracing::info_span!("connection", %addr, id = conn.stable_id());
    connected(agent, &endpoint, conn, version, stop)
        .instrument(span)
        .await
}

/// The life of one established connection: Hello, Welcome, then the send/ack loop. Runs inside
/// the connection's span (instrumented, so the span is right across awaits).
async fn connected(
    agent: &Arc<Agent>,
    endpoint: &quinn::Endpoint,
    conn: quinn::Connection,
    version: u16,
    stop: &mut watch::Receiver<bool>,
) -> Result<End, LinkError> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(LinkError::OpenStream)?;
    let hello = Hello {
        protocol_version: version,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        spool_epoch: agent.inner().spool.meta().epoch,
        identity: agent.config().identity.clone(),
        agent_time_unix_ms: unix_ms(),
    };
    send.write_all(&encode_frame(&Message::Hello(hello)))
        .await
        .map_err(|cause| LinkError::Write {
            what: "Hello",
            cause,
        })?;
    let mut decoder = FrameDecoder::new(MAX_FRAME_BYTES_DEFAULT);
    let mut buf = vec![0u8; 64 * 1024];
    let first = timeout(
        HANDSHAKE_TIMEOUT,
        next_message(&mut recv, &mut decoder, &mut buf),
    )
    .await
    .map_err(|_| LinkError::WelcomeTimeout(HANDSHAKE_TIMEOUT))??;
    let welcome = match first {
        Message::Welcome(w) => w,
        Message::Goodbye(g) => return Ok(End::Goodbye(g)),
        other => {
            conn.close(
                VarInt::from_u32(close_code::PROTOCOL_ERROR),
                b"expected Welcome",
            );
            return Err(LinkError::Unexpected(other.frame_type().name()));
        }
    };
    apply_welcome(agent, &welcome);
    {
        let mut link = agent.link();
        link.connection = Some(conn.clone());
        link.last_error = None;
        // The Welcome left the collector about half a round trip ago.
        let rtt_half = i64::try_from(conn.rtt().as_millis() / 2).unwrap_or(0);
        link.clock_offset_ms = Some(unix_ms() - (welcome.collector_time_unix_ms + rtt_half));
        link.protocol_version = welcome.protocol_version.min(version);
    }
    tracing::info!(
        max_batch_records = welcome.max_batch_records,
        backlog_records_per_sec = welcome.backlog_records_per_sec,
        "Uplink connected"
    );
    let result = drive(agent, &conn, &mut send, &mut recv, decoder, buf, stop).await;
    match &result {
        Ok(End::Shutdown) => {
            let bye = Goodbye {
                reason: GoodbyeReason::Shutdown,
                retry_after_secs: 0,
                detail: "agent shutting down".into(),
            };
            let _ = send.write_all(&encode_frame(&Message::Goodbye(bye))).await;
            let _ = send.finish();
            let _ = timeout(GOODBYE_TIMEOUT, send.stopped()).await;
            conn.close(VarInt::from_u32(close_code::NORMAL), b"shutdown");
            let _ = timeout(GOODBYE_TIMEOUT, endpoint.wait_idle()).await;
        }
        Ok(End::Goodbye(_)) => conn.close(VarInt::from_u32(close_code::NORMAL), b"goodbye"),
        Err(e) => {
            let code = if matches!(e, LinkError::Frame(_)) {
                close_code::PROTOCOL_ERROR
            } else {
                close_code::NORMAL
            };
            conn.close(VarInt::from_u32(code), b"error");
        }
    }
    result
}

fn apply_welcome(agent: &Agent, w: &Welcome) {
    agent.inner().uplink.handle_connected(now(), Some(w));
    let cur = *agent.intervals().borrow();
    let secs = |s: u32, fallback: Duration| {
        if s == 0 {
            fallback
        } else {
            Duration::from_secs(s.into())
        }
    };
    agent.set_intervals(Intervals {
        heartbeat: secs(w.heartbeat_interval_secs, cur.heartbeat),
        net_probe: secs(w.net_probe_interval_secs, cur.net_probe),
    });
}

/// Reads until one whole message is decoded.
async fn next_message(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
    buf: &mut [u8],
) -> Result<Message, LinkError> {
    loop {
        if let Some(m) = decoder.next_message()? {
            return Ok(m);
        }
        match recv.read(buf).await? {
            Some(n) => decoder.push(&buf[..n]),
            None => return Err(LinkError::Closed),
        }
    }
}

/// The connected loop: send what the core plans, handle acks, renew the certificate when due,
/// sleep until something happens.
async fn drive(
    agent: &Arc<Agent>,
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    mut decoder: FrameDecoder,
    mut buf: Vec<u8>,
    stop: &mut watch::Receiver<bool>,
) -> Result<End, LinkError> {
    let version = agent.link().protocol_version;
    // The key of the RenewRequest waiting for its answer.
    let mut pending: Option<certs::Request> = None;
    loop {
        while let Some(frame) = next_batch(agent)? {
            send.write_all(&frame)
                .await
                .map_err(|cause| LinkError::Write {
                    what: "Batch",
                    cause,
                })?;
        }
        for query_id in agent.take_queries() {
            send.write_all(&encode_frame(&Message::IncidentQuery(IncidentQuery {
                query_id,
            })))
            .await
            .map_err(|cause| LinkError::Write {
                what: "IncidentQuery",
                cause,
            })?;
        }
        let timer = agent.inner().uplink.poll_timeout();
        let renew_at = if version >= RENEWAL_PROTOCOL_VERSION {
            agent
                .link()
                .renewal
                .as_ref()
                .and_then(storepulse_agent_core::Renewal::poll_timeout)
                .map(|at_ms| {
                    let wait = u64::try_from(at_ms.saturating_sub(unix_ms())).unwrap_or(0);
                    tokio::time::Instant::now() + Duration::from_millis(wait)
                })
        } else {
            None
        };
        let event = tokio::select! {
            () = stopped(stop) => Event::Stop,
            r = recv.read(&mut buf) => Event::Received(r?),
            () = agent.appended() => Event::Appended,
            () = agent.query_wanted() => Event::Query,
            () = async { if let Some(t) = timer { sleep_until(t.into()).await } else { std::future::pending().await } } => Event::Timer,
            () = async { if let Some(t) = renew_at { sleep_until(t).await } else { std::future::pending().await } } => Event::Renew,
        };
        match event {
            Event::Stop => return Ok(End::Shutdown),
            Event::Appended | Event::Query | Event::Timer => {}
            Event::Renew => {
                let due = agent
                    .link()
                    .renewal
                    .as_mut()
                    .is_some_and(|r| r.poll_renew(unix_ms()));
                if due {
                    let request = certs::new_request(&agent.config().identity.terminal_id)?;
                    let frame = encode_frame(&Message::RenewRequest(RenewRequest {
                        csr_der: request.csr_der.clone(),
                    }));
                    send.write_all(&frame)
                        .await
                        .map_err(|cause| LinkError::Write {
                            what: "RenewRequest",
                            cause,
                        })?;
                    tracing::info!("Renewing the certificate");
                    pending = Some(request);
                }
            }
            Event::Received(None) => return Err(LinkError::Closed),
            Event::Received(Some(n)) => {
                decoder.push(&buf[..n]);
                while let Some(msg) = decoder.next_message()? {
                    match msg {
                        Message::Ack(ack) => {
                            agent.link().rtt.push(conn.rtt().as_secs_f32() * 1000.0);
                            let a = Arc::clone(agent);
                            tokio::task::spawn_blocking(move || -> Result<(), LinkError> {
                                let mut inner = a.inner();
                                let seqs = inner.uplink.handle_ack(now(), &ack)?;
                                if let Err(error) = inner.spool.delete(&seqs) {
                                    // The records stay on disk and are sent again after a
                                    // restart; the collector deduplicates them.
                                    tracing::error!(%error, records = seqs.len(), "Spool delete after ack failed");
                                }
                                Ok(())
                            })
                            .await
                            .map_err(LinkError::AckTask)?
                            .inspect_err(|_| {
                                conn.close(VarInt::from_u32(close_code::PROTOCOL_ERROR), b"bad ack");
                            })?;
                        }
                        Message::Goodbye(g) => return Ok(End::Goodbye(g)),
                        Message::IncidentList(list) => agent.handle_incident_list(list),
                        Message::RenewResponse(r) if pending.is_some() => {
                            if let Some(request) = pending.take() {
                                renewed(agent, request, r.result).await;
                            }
                        }
                        other => {
                            conn.close(
                                VarInt::from_u32(close_code::PROTOCOL_ERROR),
                                b"unexpected frame",
                            );
                            return Err(LinkError::Unexpected(other.frame_type().name()));
                        }
                    }
                }
            }
        }
    }
}

/// Handles the answer to our `RenewRequest`: check and store the new pair, or schedule a retry.
async fn renewed(agent: &Arc<Agent>, request: certs::Request, result: CertResult) {
    let refused = |agent: &Agent, retry_after_secs: u32| {
        if let Some(r) = agent.link().renewal.as_mut() {
            r.handle_refused(unix_ms(), retry_after_secs);
        }
    };
    let der = match result {
        CertResult::Issued { certificate_der } => certificate_der,
        CertResult::Refused {
            reason,
            retry_after_secs,
            detail,
        } => {
            tracing::warn!(?reason, retry_after_secs, %detail, "Certificate renewal refused");
            refused(agent, retry_after_secs);
            return;
        }
    };
    let a = Arc::clone(agent);
    let stored = tokio::task::spawn_blocking(move || {
        let c = &a.config().collector;
        let info = certs::check_issued(
            &der,
            &request.key,
            &a.config().identity.terminal_id,
            &c.ca_cert,
        )?;
        certs::store_pair(&c.cert, &c.key, &der, &request.key)?;
        Ok::<_, CertError>(info)
    })
    .await;
    match stored {
        Ok(Ok(info)) => {
            tracing::info!(
                serial = %info.serial_hex,
                not_after_unix_ms = info.not_after_ms,
                "Certificate renewed and stored; the next connection uses it"
            );
            agent.set_certificate(info);
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "Renewed certificate not stored; keeping the current one");
            refused(agent, 0);
        }
        Err(error) => {
            tracing::error!(%error, "Certificate store task failed");
            refused(agent, 0);
        }
    }
}

/// Plans the next batch and reads its records, under one lock.
fn next_batch(agent: &Agent) -> Result<Option<Vec<u8>>, LinkError> {
    let mut inner = agent.inner();
    let Some(plan) = inner.uplink.poll_batch(now()) else {
        return Ok(None);
    };
    let records = inner.spool.read(&plan.seqs)?;
    tracing::debug!(
        batch_id = plan.batch_id,
        records = records.len(),
        backlog = plan.backlog,
        "Sending batch"
    );
    Ok(Some(encode_frame(&Message::Batch(Batch {
        batch_id: plan.batch_id,
        records,
    }))))
}
