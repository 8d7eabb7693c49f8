//! Hostile clients for the garbage-connection test (`tests/tests/garbage.rs`) and benchmark
//! (`garbage-bench`): raw UDP junk, QUIC handshakes without a client certificate or with one
//! from another CA, valid mTLS connections that send garbage frames, and slowloris connections
//! that never finish their `Hello`. Plus an honest agent that measures its ack latency.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use quinn::crypto::rustls::QuicClientConfig;
use rand::Rng;
use storepulse_shared::{
    Batch, Hello, Identity, Label, LinkType, Message, PayMethod, Record, RecordBody, Scheme, Seq,
    TerminalId, TxnOutcome,
};
use tokio::sync::watch;

use crate::quic::{RawConn, SERVER_NAME, client_config, endpoint};

/// The kinds of garbage, in the order they are dealt out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Three UDP datagrams of random bytes (one shaped like a QUIC Initial) from a new socket.
    UdpJunk,
    /// A QUIC + TLS handshake without a client certificate.
    NoClientCert,
    /// A handshake with a client certificate issued by another CA.
    WrongCa,
    /// A valid mTLS connection whose stream carries random bytes instead of frames.
    GarbageFrames,
    /// A valid mTLS connection that never completes a `Hello` (nothing, or half a header).
    Slowloris,
}

/// Every kind.
pub const KINDS: [Kind; 5] = [
    Kind::UdpJunk,
    Kind::NoClientCert,
    Kind::WrongCa,
    Kind::GarbageFrames,
    Kind::Slowloris,
];

/// How one garbage connection ended, seen from the client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Datagrams sent (UDP junk has no connection to end).
    Sent,
    /// The collector closed with this application close code.
    AppClosed(u64),
    /// The handshake or connection failed at the QUIC/TLS level (e.g. a TLS alert).
    Refused(String),
    /// Nothing happened within the wait.
    StillOpen,
}

/// Certificates the garbage uses.
#[derive(Debug, Clone)]
pub struct Creds {
    /// The fleet CA (trusted by every client, so the server's certificate verifies).
    pub ca: PathBuf,
    /// Valid terminal certificates and keys, used round robin by the mTLS garbage.
    pub valid: Vec<(PathBuf, PathBuf)>,
    /// A certificate and key from another CA.
    pub rogue: (PathBuf, PathBuf),
}

/// A garbage generator aimed at one collector.
#[derive(Debug)]
pub struct Garbage {
    addr: SocketAddr,
    endpoints: Vec<quinn::Endpoint>,
    no_cert: quinn::ClientConfig,
    rogue: quinn::ClientConfig,
    valid: Vec<quinn::ClientConfig>,
    /// How long a connection waits for the collector to close it.
    pub wait: Duration,
}

/// A client config that trusts `ca` and presents no certificate.
fn no_cert_config(ca: &std::path::Path) -> Result<quinn::ClientConfig> {
    let pem = std::fs::read(ca).with_context(|| format!("read {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![storepulse_shared::ALPN.to_vec()];
    Ok(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls)?,
    )))
}

impl Garbage {
    /// Prepares client configs and `endpoints` client UDP sockets.
    pub fn new(creds: &Creds, addr: SocketAddr, endpoints: usize, wait: Duration) -> Result<Self> {
        if creds.valid.is_empty() {
            bail!("garbage needs at least one valid terminal certificate");
        }
        Ok(Self {
            addr,
            endpoints: (0..endpoints.max(1))
                .map(|_| endpoint())
                .collect::<Result<_>>()?,
            no_cert: no_cert_config(&creds.ca)?,
            rogue: client_config(&creds.ca, &creds.rogue.0, &creds.rogue.1)?,
            valid: creds
                .valid
                .iter()
                .map(|(c, k)| client_config(&creds.ca, c, k))
                .collect::<Result<_>>()?,
            wait,
        })
    }

    /// Runs `count` garbage connections, the kinds dealt out in [`KINDS`] order, at most
    /// `concurrency` at a time, and counts their outcomes per kind (refusal texts cut to
    /// `keep_chars`: the reason class is what matters).
    pub async fn run(
        self: &Arc<Self>,
        count: usize,
        concurrency: usize,
        keep_chars: usize,
    ) -> Result<std::collections::BTreeMap<(Kind, Outcome), usize>> {
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = Vec::new();
        for i in 0..count {
            let kind = KINDS[i % KINDS.len()];
            let g = self.clone();
            let permit = permits.clone().acquire_owned().await?;
            tasks.push(tokio::spawn(async move {
                let out = g.one(kind, i).await;
                drop(permit);
                (kind, out)
            }));
        }
        let mut outcomes = std::collections::BTreeMap::new();
        for t in tasks {
            let (kind, out) = t.await?;
            let out = match out {
                Outcome::Refused(s) => Outcome::Refused(s.chars().take(keep_chars).collect()),
                o => o,
            };
            *outcomes.entry((kind, out)).or_default() += 1;
        }
        Ok(outcomes)
    }

    /// Runs garbage connection number `i` of `kind` to its end.
    pub async fn one(&self, kind: Kind, i: usize) -> Outcome {
        let ep = &self.endpoints[i % self.endpoints.len()];
        match kind {
            Kind::UdpJunk => match udp_junk(self.addr).await {
                Ok(()) => Outcome::Sent,
                Err(e) => Outcome::Refused(format!("udp: {e}")),
            },
            Kind::NoClientCert => self.handshake_only(ep, self.no_cert.clone()).await,
            Kind::WrongCa => self.handshake_only(ep, self.rogue.clone()).await,
            Kind::GarbageFrames | Kind::Slowloris => {
                let cfg = self.valid[i % self.valid.len()].clone();
                let conn = match ep.connect_with(cfg, self.addr, SERVER_NAME) {
                    Ok(c) => c,
                    Err(e) => return Outcome::Refused(format!("connect: {e}")),
                };
                let conn = match conn.await {
                    Ok(c) => c,
                    Err(e) => return Outcome::Refused(e.to_string()),
                };
                let bytes = if kind == Kind::GarbageFrames {
                    random_frames(i)
                } else if i.is_multiple_of(2) {
                    // Half a frame header, then silence.
                    vec![0x01, 0x00, 0x00]
                } else {
                    Vec::new()
                };
                if !bytes.is_empty() {
                    let Ok((mut send, _recv)) = conn.open_bi().await else {
                        return closed(&conn, Duration::ZERO).await;
                    };
                    if send.write_all(&bytes).await.is_err() {
                        return closed(&conn, self.wait).await;
                    }
                    let out = closed(&conn, self.wait).await;
                    drop(send);
                    return out;
                }
                closed(&conn, self.wait).await
            }
        }
    }

    async fn handshake_only(&self, ep: &quinn::Endpoint, cfg: quinn::ClientConfig) -> Outcome {
        let connecting = match ep.connect_with(cfg, self.addr, SERVER_NAME) {
            Ok(c) => c,
            Err(e) => return Outcome::Refused(format!("connect: {e}")),
        };
        match connecting.await {
            // With TLS 1.3 the client may finish before the server has checked its
            // certificate; the refusal then arrives as the connection being closed.
            Ok(conn) => closed(&conn, self.wait).await,
            Err(e) => Outcome::Refused(e.to_string()),
        }
    }
}

/// Waits for the connection to end and classifies how.
async fn closed(conn: &quinn::Connection, wait: Duration) -> Outcome {
    let out = match tokio::time::timeout(wait, conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            Outcome::AppClosed(c.error_code.into_inner())
        }
        Ok(other) => Outcome::Refused(other.to_string()),
        Err(_) => Outcome::StillOpen,
    };
    conn.close(0u32.into(), b"");
    out
}

/// Random bytes; every third input starts like a plausible frame (a known type byte and a
/// length) so the payload decoder is reached, the others are arbitrary.
fn random_frames(i: usize) -> Vec<u8> {
    let mut rng = rand::rng();
    let len = rng.random_range(16..400);
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..]);
    if i.is_multiple_of(3) {
        let ty = 1 + (i / 3 % 5) as u8;
        let payload = u32::try_from(len - 5).unwrap_or(0);
        bytes[0] = ty;
        bytes[1..5].copy_from_slice(&payload.to_be_bytes());
    }
    bytes
}

/// Three datagrams from a fresh socket: one shaped like a QUIC v1 Initial (long header, fixed
/// bit, version 1, random connection ids and payload), one short-header-like, one random.
async fn udp_junk(addr: SocketAddr) -> Result<()> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    for d in junk_datagrams() {
        sock.send_to(&d, addr).await?;
    }
    Ok(())
}

fn junk_datagrams() -> [Vec<u8>; 3] {
    let mut rng = rand::rng();
    let mut initial = vec![0u8; 1200];
    rng.fill(&mut initial[..]);
    initial[0] = 0xc0 | (initial[0] & 0x0f);
    initial[1..5].copy_from_slice(&1u32.to_be_bytes());
    initial[5] = 8;
    initial[14] = 8;
    let mut short = vec![0u8; rng.random_range(20..100)];
    rng.fill(&mut short[..]);
    short[0] = 0x40 | (short[0] & 0x3f);
    let mut random = vec![0u8; rng.random_range(1..1400)];
    rng.fill(&mut random[..]);
    [initial, short, random]
}

/// One ack of an honest agent: when its batch was sent and how long the ack took.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When the batch was sent.
    pub sent: Instant,
    /// Time until its Ack arrived.
    pub latency: Duration,
    /// Records in the batch.
    pub records: u64,
}

/// What an honest agent does.
#[derive(Debug, Clone)]
pub struct HonestLoad {
    /// Collector QUIC address.
    pub addr: SocketAddr,
    /// Records per batch.
    pub batch_len: usize,
    /// Pause between one ack and the next batch.
    pub interval: Duration,
    /// How long one ack may take before the agent gives up (a failure).
    pub ack_timeout: Duration,
}

fn label(s: &str) -> Label {
    Label::new(s).expect("static label is valid")
}

/// A `Hello` for an honest agent.
pub fn hello(terminal: &str) -> Result<Hello> {
    Ok(Hello {
        protocol_version: storepulse_shared::PROTOCOL_VERSION,
        agent_version: "garbage-bench".into(),
        spool_epoch: rand::random(),
        identity: Identity {
            terminal_id: TerminalId::new(terminal)?,
            merchant_id: label("M1"),
            store_id: label(terminal),
            region: label("east"),
            city: label("hangzhou"),
            acquirer: label("acq-a"),
            qr_channel: label("alipay"),
            carrier: label("cmcc"),
            link: LinkType::Wired,
            model: label("P300"),
            firmware: label("2.3.1"),
            app_version: label("5.0.2"),
        },
        agent_time_unix_ms: crate::load::now_ms(),
    })
}

fn batch(batch_id: u64, first_seq: u64, n: usize) -> Message {
    let records = (0..n as u64)
        .map(|i| Record {
            seq: Seq(first_seq + i),
            time_unix_ms: 1_700_000_000_000 + (first_seq + i) as i64,
            body: RecordBody::TxnOutcome(TxnOutcome {
                scheme: Scheme::Alipay,
                code: "10000".into(),
                latency_ms: 250,
                method: PayMethod::Qr,
                route: None,
            }),
        })
        .collect();
    Message::Batch(Batch { batch_id, records })
}

/// An honest agent: Hello, then one batch at a time until `stop`, recording each ack's
/// latency. Fails if an ack does not come (or is not the right one) in time.
pub async fn honest_agent(
    cfg: quinn::ClientConfig,
    ep: quinn::Endpoint,
    terminal: String,
    load: HonestLoad,
    samples: Arc<Mutex<Vec<Sample>>>,
    mut stop: watch::Receiver<bool>,
) -> Result<u64> {
    let mut c = RawConn::connect(&ep, cfg, load.addr).await?;
    c.send(&Message::Hello(hello(&terminal)?)).await?;
    match tokio::time::timeout(load.ack_timeout, c.recv()).await {
        Ok(Ok(Some(Message::Welcome(_)))) => {}
        other => bail!("{terminal}: expected Welcome, got {other:?}"),
    }
    let mut batch_id = 1u64;
    let mut seq = 0u64;
    while !*stop.borrow() {
        let sent = Instant::now();
        c.send(&batch(batch_id, seq, load.batch_len)).await?;
        match tokio::time::timeout(load.ack_timeout, c.recv()).await {
            Ok(Ok(Some(Message::Ack(a)))) if a.batch_id == batch_id => {}
            Ok(other) => bail!("{terminal}: expected the Ack of batch {batch_id}, got {other:?}"),
            Err(_) => bail!(
                "{terminal}: no Ack for batch {batch_id} within {:?}",
                load.ack_timeout
            ),
        }
        let latency = sent.elapsed();
        if let Ok(mut s) = samples.lock() {
            s.push(Sample {
                sent,
                latency,
                records: load.batch_len as u64,
            });
        }
        batch_id += 1;
        seq += load.batch_len as u64;
        tokio::select! {
            _ = tokio::time::sleep(load.interval) => {}
            _ = stop.changed() => {}
        }
    }
    c.conn.close(0u32.into(), b"done");
    Ok(batch_id - 1)
}

/// Latency percentiles and throughput of the samples sent in `[from, to)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Acks.
    pub acks: usize,
    /// Median ack latency.
    pub p50: Duration,
    /// 99th percentile ack latency.
    pub p99: Duration,
    /// Slowest ack.
    pub max: Duration,
    /// Acked records per second over the window.
    pub records_per_sec: f64,
}

/// Summarises the samples whose batch was sent in `[from, to)`.
pub fn summarize(samples: &[Sample], from: Instant, to: Instant) -> Summary {
    let mut lat: Vec<Duration> = samples
        .iter()
        .filter(|s| s.sent >= from && s.sent < to)
        .map(|s| s.latency)
        .collect();
    let records: u64 = samples
        .iter()
        .filter(|s| s.sent >= from && s.sent < to)
        .map(|s| s.records)
        .sum();
    if lat.is_empty() {
        return Summary::default();
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    Summary {
        acks: lat.len(),
        p50: pct(0.50),
        p99: pct(0.99),
        max: lat[lat.len() - 1],
        records_per_sec: records as f64 / to.duration_since(from).as_secs_f64().max(1e-9),
    }
}

/// Reads one sample (`name{labels} value`) from a Prometheus text exposition; 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
