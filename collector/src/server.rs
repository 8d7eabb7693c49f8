//! The QUIC ingest server: accepts connections, runs one task and one tracing span per
//! connection, drives the core [`Session`] with decoded frames, hands batches to the group
//! commit writer and acks them once durable. Also reloads the CRL when its file changes.
//!
//! Admission control (a reconnect storm must not starve the collector):
//! - At most `quic.max_handshakes_in_progress` TLS handshakes run at once and at most
//!   `quic.max_handshakes_per_sec` start per second. An incoming connection over that budget
//!   gets a QUIC Retry if its address is not validated yet (stateless and cheap; the client
//!   comes back with a token), otherwise waits in a FIFO queue (`quic.handshake_queue_len`, at
//!   most `quic.handshake_queue_wait_ms`); beyond the queue it is refused before any crypto
//!   work, and the agent backs off with jitter.
//! - An agent that completes its handshake while `quic.max_connections` are open is sent a
//!   `Goodbye` (Overloaded, `retry_after_secs`) and closed with OVERLOADED: it is never dropped
//!   for overload without being told when to come back.
//! - Each connection has a rate limit on records/s and bytes/s (core `RateLimit`): over it, the
//!   connection's stream is not read for a while, so QUIC flow control pushes back on the agent;
//!   an agent over its limit without a pause for too long gets a `Goodbye` (RateLimited,
//!   `retry_after_secs`) and RATE_LIMITED.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use storepulse_collector_core::ratelimit::{RateLimit, RateLimitConfig, TokenBucket, Verdict};
use storepulse_collector_core::{Refusal, Session, Step};
use storepulse_shared::{
    Ack, CertRefusal, CertResult, FrameDecoder, Goodbye, GoodbyeReason, Message, RenewResponse,
    Seq, TerminalId, Welcome, close_code, encode_frame,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{Instrument, debug, error, field, info, info_span, warn};

use crate::config::{Admission, Config, QuicSettings, TlsConfig};
use crate::ingest::{Acks, Completion, Job};
use crate::metrics::Metrics;
use crate::{now_unix_ms, tls};

/// Largest read from a stream at once, bytes.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Incident queries closer together than this get the previous answer again (an agent asking
/// in a loop costs one lookup a second).
const QUERY_INTERVAL: Duration = Duration::from_secs(1);
/// How long a `Goodbye` may take to reach the peer before the connection is closed anyway.
const GOODBYE_LINGER: Duration = Duration::from_secs(1);
/// How long, on shutdown, a connection waits for its batches in flight to be acked.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);
/// How long, on shutdown, the endpoint waits for connection tasks to finish.
const SHUTDOWN_CONNECTIONS: Duration = Duration::from_secs(5);
/// Longest a TLS handshake may hold its admission slot (the agents give up after 10 s).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An incoming connection waiting for a handshake slot.
struct Waiting {
    incoming: quinn::Incoming,
    since: Instant,
}

/// What every connection task needs.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) writer: mpsc::Sender<Job>,
    pub(crate) max_frame_bytes: u32,
    pub(crate) max_batch_records: usize,
    pub(crate) max_inflight_batches: usize,
    pub(crate) hello_timeout: Duration,
    pub(crate) welcome: Welcome,
    /// Admission control.
    pub(crate) admission: Admission,
    /// Per-connection rate limit.
    pub(crate) rate_limit: RateLimitConfig,
    /// Collector metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Answers `IncidentQuery`; without it the answer is always empty.
    pub(crate) coverage: Option<crate::detection::Coverage>,
    /// The welcomed connection of each terminal, so a newer one supersedes an older one.
    live: Mutex<HashMap<TerminalId, (u64, Connection)>>,
    next_conn_id: AtomicU64,
}

/// A batch handed to the writer, waiting to be acked.
struct InFlight {
    batch_id: u64,
    highest_seq: Seq,
    /// When its frame was decoded, for the receipt-to-ack time.
    received: Instant,
    /// Its number among the connection's batches (see [`Acks`]).
    ordinal: u64,
}

/// A connection's batches handed to the writer and not acked yet, oldest first.
struct Outstanding {
    acks: Arc<Acks>,
    /// Batches handed to the writer so far (the next one's ordinal).
    sent: u64,
    pending: VecDeque<InFlight>,
}

/// How a connection ends.
enum End {
    /// Close with this refusal (Goodbye first, if any, with this `retry_after_secs`).
    Refuse(Refusal, u32),
    /// The peer went away or closed; nothing to send.
    Gone,
}

impl Shared {
    pub(crate) fn new(config: &Config, writer: mpsc::Sender<Job>, metrics: Arc<Metrics>) -> Self {
        Self {
            writer,
            max_frame_bytes: config.ingest.max_frame_bytes,
            max_batch_records: config.ingest.max_batch_records,
            max_inflight_batches: config.ingest.max_inflight_batches,
            hello_timeout: config.ingest.hello_timeout,
            welcome: config.agents.welcome(),
            admission: config.quic.admission.clone(),
            rate_limit: config.ingest.rate_limit,
            metrics,
            coverage: None,
            live: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(1),
        }
    }

    /// Registers a welcomed connection; closes the terminal's older one, if any.
    fn register(&self, terminal: &TerminalId, conn: &Connection) -> u64 {
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let old = match self.live.lock() {
            Ok(mut live) => live.insert(terminal.clone(), (id, conn.clone())),
            // A poisoned map only loses the supersede bookkeeping, never data.
            Err(_) => None,
        };
        if let Some((_, old)) = old {
            info!("Superseding the terminal's older connection");
            old.close(
                VarInt::from_u32(close_code::SUPERSEDED),
                b"superseded by a newer connection",
            );
        }
        id
    }

    /// Forgets a connection when it ends, unless a newer one replaced it already.
    fn unregister(&self, terminal: &TerminalId, id: u64) {
        if let Ok(mut live) = self.live.lock()
            && live.get(terminal).is_some_and(|(cur, _)| *cur == id)
        {
            live.remove(terminal);
        }
    }
}

/// Binds the QUIC endpoint with the configured socket receive buffer.
pub(crate) fn bind_endpoint(
    server_config: quinn::ServerConfig,
    quic: &QuicSettings,
) -> std::io::Result<Endpoint> {
    let socket = std::net::UdpSocket::bind(quic.listen)?;
    let sock = socket2::SockRef::from(&socket);
    if let Err(e) = sock.set_recv_buffer_size(quic.socket_receive_buffer_bytes) {
        warn!(error = %e, "Could not set the QUIC socket's receive buffer");
    }
    // Linux reports twice the size asked for (bookkeeping included), capped by rmem_max.
    let got = sock.recv_buffer_size().unwrap_or(0);
    if got < quic.socket_receive_buffer_bytes {
        warn!(
            requested = quic.socket_receive_buffer_bytes,
            got,
            "The QUIC socket's receive buffer is smaller than configured; raise net.core.rmem_max"
        );
    } else {
        info!(bytes = got, "QUIC socket receive buffer");
    }
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for QUIC"))?;
    Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server_config),
        socket,
        runtime,
    )
}

/// Accepts connections until shutdown, then waits for connection tasks and closes the endpoint.
pub(crate) async fn run_endpoint(
    endpoint: Endpoint,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    let adm = shared.admission.clone();
    let slots = Arc::new(Semaphore::new(adm.max_handshakes_in_progress));
    let mut rate = TokenBucket::new(
        adm.max_handshakes_per_sec,
        (adm.max_handshakes_per_sec / 10).max(1),
    );
    let mut queue: VecDeque<Waiting> = VecDeque::new();
    // Set when the handshake rate ran out: nothing leaves the queue before then.
    let mut rate_blocked_until: Option<Instant> = None;
    let conn_shutdown = shutdown.clone();
    let spawn = |tasks: &mut JoinSet<()>, incoming: quinn::Incoming, permit| {
        let span = info_span!("conn", remote = %incoming.remote_address(), terminal = field::Empty);
        let task = handle_incoming(incoming, permit, shared.clone(), conn_shutdown.clone());
        tasks.spawn(task.instrument(span));
    };
    loop {
        let now = Instant::now();
        while queue
            .front()
            .is_some_and(|w| now.duration_since(w.since) >= adm.handshake_queue_wait)
        {
            if let Some(w) = queue.pop_front() {
                w.incoming.refuse();
                shared.metrics.admission.add("refused", 1);
            }
        }
        if rate_blocked_until.is_some_and(|t| now >= t) {
            rate_blocked_until = None;
        }
        let wake = match (queue.front(), rate_blocked_until) {
            (None, _) => None,
            (Some(w), None) => Some(w.since + adm.handshake_queue_wait),
            (Some(w), Some(t)) => Some(t.min(w.since + adm.handshake_queue_wait)),
        };
        tokio::select! {
            biased;
            () = stopping(&mut shutdown) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            permit = slots.clone().acquire_owned(), if !queue.is_empty() && rate_blocked_until.is_none() => {
                let Ok(permit) = permit else { break };
                match rate.try_take_one(Instant::now().into_std()) {
                    Ok(()) => {
                        if let Some(w) = queue.pop_front() {
                            spawn(&mut tasks, w.incoming, permit);
                        }
                    }
                    Err(wait) => rate_blocked_until = Some(Instant::now() + wait),
                }
            }
            () = sleep_until(wake.unwrap_or(now)), if wake.is_some() => {}
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                // Within the budget (and nobody waiting ahead): handshake now.
                if queue.is_empty()
                    && let Ok(permit) = slots.clone().try_acquire_owned()
                    && rate.try_take_one(now.into_std()).is_ok()
                {
                    spawn(&mut tasks, incoming, permit);
                    continue;
                }
                admit_later(incoming, &mut queue, &adm, &shared.metrics);
            }
        }
    }
    for w in queue.drain(..) {
        w.incoming.refuse();
    }
    drop(shared);
    let drained = timeout(SHUTDOWN_CONNECTIONS, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            remaining = tasks.len(),
            "Connections did not finish in time; aborting them"
        );
        tasks.shutdown().await;
    }
    endpoint.close(
        VarInt::from_u32(close_code::SHUTTING_DOWN),
        b"shutting down",
    );
    if timeout(GOODBYE_LINGER, endpoint.wait_idle()).await.is_err() {
        debug!("Endpoint did not become idle in time");
    }
}

/// An incoming connection over the handshake budget: a QUIC Retry if its address is not
/// validated yet, else a place in the queue, else a refusal.
fn admit_later(
    incoming: quinn::Incoming,
    queue: &mut VecDeque<Waiting>,
    adm: &Admission,
    metrics: &Metrics,
) {
    if !incoming.remote_address_validated() && incoming.may_retry() {
        match incoming.retry() {
            Ok(()) => metrics.admission.add("retry", 1),
            Err(e) => {
                e.into_incoming().refuse();
                metrics.admission.add("refused", 1);
            }
        }
    } else if queue.len() < adm.handshake_queue_len {
        queue.push_back(Waiting {
            incoming,
            since: Instant::now(),
        });
        metrics.admission.add("queued", 1);
    } else {
        incoming.refuse();
        metrics.admission.add("refused", 1);
    }
}

/// Polls the CRL file and swaps the server config when it changes.
pub(crate) async fn watch_crl(
    endpoint: Endpoint,
    tls_config: TlsConfig,
    quic: QuicSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(path) = tls_config.crl.clone() else {
        return;
    };
    let mut last = tls::file_stamp(&path);
    let mut tick = tokio::time::interval(tls_config.crl_poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopping(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        let now = tls::file_stamp(&path);
        if now == last {
            continue;
        }
        match tls::server_config(&tls_config, &quic) {
            Ok(cfg) => {
                endpoint.set_server_config(Some(cfg));
                last = now;
                info!(crl = %path.display(), "CRL reloaded");
            }
            // Keep the previous config and retry at the next tick (the file may be mid-write).
            Err(e) => {
                error!(crl = %path.display(), error = %e, "CRL reload failed; keeping the previous one")
            }
        }
    }
}

async fn handle_incoming(
    incoming: quinn::Incoming,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let conn = match timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            shared.metrics.handshakes.add("failed", 1);
            info!(error = %e, "Handshake failed");
            return;
        }
        Err(_) => {
            shared.metrics.handshakes.add("failed", 1);
            info!("Handshake timed out");
            return;
        }
    };
    // The handshake is done: its admission slot goes to the next one.
    drop(permit);
    let Some(terminal) = tls::peer_terminal(&conn) else {
        warn!("Client certificate has no valid terminal id in its CN");
        shared.metrics.refusals.add("unauthorized", 1);
        conn.close(
            VarInt::from_u32(close_code::UNAUTHORIZED),
            b"certificate CN is not a terminal id",
        );
        return;
    };
    tracing::Span::current().record("terminal", terminal.as_str());
    info!("Connected");
    shared.metrics.handshakes.add("ok", 1);
    shared
        .metrics
        .connections_open
        .fetch_add(1, Ordering::Relaxed);
    let remote: SocketAddr = conn.remote_address();
    let end = run_connection(&conn, terminal, &shared, shutdown).await;
    shared
        .metrics
        .connections_open
        .fetch_sub(1, Ordering::Relaxed);
    if let End::Refuse(r, _) = &end {
        shared
            .metrics
            .refusals
            .add(close_reason_name(r.close_code), 1);
    }
    match end {
        End::Gone => info!(%remote, reason = ?conn.close_reason(), "Disconnected"),
        End::Refuse(r, _) => {
            if r.close_code == close_code::IDENTITY_MISMATCH {
                warn!(code = r.close_code, detail = %r.detail, "Refused connection");
            } else if r.close_code == close_code::SHUTTING_DOWN
                || r.close_code == close_code::NORMAL
            {
                info!(code = r.close_code, detail = %r.detail, "Closed connection");
            } else {
                warn!(code = r.close_code, detail = %r.detail, "Closed connection");
            }
        }
    }
}

/// Drives one connection to its end and closes it.
async fn run_connection(
    conn: &Connection,
    terminal: TerminalId,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
) -> End {
    let hello_deadline = Instant::now() + shared.hello_timeout;
    let mut session = Session::new(terminal.clone(), shared.max_batch_records);
    let (mut send, mut recv) = tokio::select! {
        s = conn.accept_bi() => match s {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "No stream");
                return End::Gone;
            }
        },
        _ = sleep_until(hello_deadline) => {
            let r = session.handle_hello_timeout().unwrap_or_else(|| shutdown_refusal("hello timeout"));
            close(conn, None, &r, 0).await;
            return End::Refuse(r, 0);
        }
        () = stopping(&mut shutdown) => {
            let r = shutdown_refusal("collector is shutting down");
            close(conn, None, &r, 0).await;
            return End::Refuse(r, 0);
        }
    };
    let open =
        usize::try_from(shared.metrics.connections_open.load(Ordering::Relaxed)).unwrap_or(0);
    if open > shared.admission.max_connections {
        let r = Refusal {
            close_code: close_code::OVERLOADED,
            goodbye: Some(GoodbyeReason::Overloaded),
            detail: format!(
                "the collector holds its maximum of {} connections; come back later",
                shared.admission.max_connections
            ),
        };
        let secs = shared.admission.overload_retry_after_secs;
        close(conn, Some(&mut send), &r, secs).await;
        return End::Refuse(r, secs);
    }
    let mut registered = None;
    let end = drive(
        conn,
        &mut send,
        &mut recv,
        &mut session,
        shared,
        &mut shutdown,
        hello_deadline,
        &mut registered,
    )
    .await;
    if let Some(id) = registered {
        shared.unregister(&terminal, id);
    }
    if let End::Refuse(r, secs) = &end {
        close(conn, Some(&mut send), r, *secs).await;
    }
    end
}

fn shutdown_refusal(detail: &str) -> Refusal {
    Refusal {
        close_code: close_code::SHUTTING_DOWN,
        goodbye: Some(GoodbyeReason::Shutdown),
        detail: detail.into(),
    }
}

fn internal_refusal() -> Refusal {
    Refusal {
        close_code: close_code::INTERNAL_ERROR,
        goodbye: Some(GoodbyeReason::InternalError),
        detail: "the collector's store failed; retry later".into(),
    }
}

/// The per-connection loop: read frames, feed the session, ack committed batches.
// The arguments are the connection's pieces, borrowed separately so the caller can still close
// the connection afterwards; bundling them into a struct would only move the list.
#[allow(clippy::too_many_arguments)]
async fn drive(
    conn: &Connection,
    send: &mut SendStream,
    recv: &mut RecvStream,
    session: &mut Session,
    shared: &Shared,
    shutdown: &mut watch::Receiver<bool>,
    hello_deadline: Instant,
    registered: &mut Option<u64>,
) -> End {
    let mut decoder = FrameDecoder::new(shared.max_frame_bytes);
    let mut out = Outstanding {
        acks: Arc::new(Acks::default()),
        sent: 0,
        pending: VecDeque::new(),
    };
    let mut recv_done = false;
    let mut limit = RateLimit::new(shared.rate_limit);
    // Bytes read since the last batch, for the rate limit.
    let mut bytes_since_batch = 0u64;
    // While set, the stream is not read (rate limit): flow control pushes back on the agent.
    let mut paused_until: Option<Instant> = None;
    // The agent's labels (from its Hello), for incident queries; and the last answer, reused
    // for queries less than QUERY_INTERVAL apart.
    let mut identity: Option<Box<storepulse_shared::Identity>> = None;
    let mut last_answer: Option<(Instant, Vec<storepulse_shared::CoveringIncident>)> = None;
    loop {
        // Act on every complete frame before reading more.
        loop {
            let frame = match decoder.next_agent_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return End::Refuse(session.handle_frame_error(&e), 0),
            };
            match session.handle_frame(frame) {
                Err(r) => return End::Refuse(r, 0),
                Ok(Step::PeerLeft) => {
                    let r = Refusal {
                        close_code: close_code::NORMAL,
                        goodbye: None,
                        detail: "agent said goodbye".into(),
                    };
                    return End::Refuse(r, 0);
                }
                Ok(Step::Welcome(hello)) => {
                    let version = hello.protocol_version;
                    identity = Some(Box::new(hello.identity.clone()));
                    let (done, rx) = oneshot::channel();
                    let job = Job::Hello {
                        terminal: session.terminal().clone(),
                        hello,
                        now_unix_ms: now_unix_ms(),
                        received: Instant::now().into_std(),
                        done,
                    };
                    if shared.writer.send(job).await.is_err() || !matches!(rx.await, Ok(Ok(()))) {
                        return End::Refuse(internal_refusal(), 0);
                    }
                    let welcome = Welcome {
                        // The message set both sides speak from now on (the session checked
                        // the collector knows it).
                        protocol_version: version,
                        collector_time_unix_ms: now_unix_ms(),
                        ..shared.welcome.clone()
                    };
                    if send
                        .write_all(&encode_frame(&Message::Welcome(welcome)))
                        .await
                        .is_err()
                    {
                        return End::Gone;
                    }
                    *registered = Some(shared.register(session.terminal(), conn));
                    debug!("Welcomed");
                }
                Ok(Step::Incidents { query_id }) => {
                    let now = Instant::now();
                    let incidents = match &last_answer {
                        Some((at, list)) if now.duration_since(*at) < QUERY_INTERVAL => {
                            list.clone()
                        }
                        _ => {
                            let list = match (&shared.coverage, &identity) {
                                (Some(c), Some(id)) => {
                                    c.answer(query_id, now_unix_ms(), id).incidents
                                }
                                _ => Vec::new(),
                            };
                            last_answer = Some((now, list.clone()));
                            list
                        }
                    };
                    let answer = storepulse_shared::IncidentList {
                        query_id,
                        collector_time_unix_ms: now_unix_ms(),
                        incidents,
                    };
                    debug!(
                        query_id,
                        incidents = answer.incidents.len(),
                        "Incident query answered"
                    );
                    if send
                        .write_all(&encode_frame(&Message::IncidentList(answer)))
                        .await
                        .is_err()
                    {
                        return End::Gone;
                    }
                }
                Ok(Step::Renew(_csr)) => {
                    let result = CertResult::Refused {
                        reason: CertRefusal::Unavailable,
                        retry_after_secs: 86_400,
                        detail: "this collector does not issue certificates online".into(),
                    };
                    let frame = encode_frame(&Message::RenewResponse(RenewResponse { result }));
                    if send.write_all(&frame).await.is_err() {
                        return End::Gone;
                    }
                }
                Ok(Step::Store {
                    spool_epoch,
                    batch,
                    quarantined,
                    highest_seq,
                    invalid_codes,
                }) => {
                    if !invalid_codes.is_empty() {
                        warn!(
                            batch_id = batch.batch_id,
                            seqs = ?invalid_codes,
                            "Invalid transaction codes replaced by INVALID_CODE"
                        );
                    }
                    // One line per batch (the first record's reason), not one per record: an
                    // agent that sends nothing but bad records must not flood the log.
                    if let Some(q) = quarantined.first() {
                        warn!(
                            batch_id = batch.batch_id,
                            quarantined = quarantined.len(),
                            seq = q.seq.0,
                            kind = q.kind,
                            field = %q.error.field,
                            reason = %q.error.reason,
                            "Records quarantined (kept apart, not stored; the batch is acked): \
                             GET /api/v1/terminals/{{id}}/quarantined"
                        );
                    }
                    let now = Instant::now();
                    let n = (batch.records.len() + quarantined.len()) as u64;
                    match limit.after_batch(
                        now.into_std(),
                        n,
                        std::mem::take(&mut bytes_since_batch),
                    ) {
                        Verdict::Pass => {}
                        Verdict::Delay(d) => {
                            shared
                                .metrics
                                .rate_limit_delays
                                .fetch_add(1, Ordering::Relaxed);
                            shared.metrics.rate_limit_delay_micros.fetch_add(
                                u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
                                Ordering::Relaxed,
                            );
                            paused_until = Some(paused_until.map_or(now + d, |t| t.max(now + d)));
                        }
                        Verdict::Refuse { retry_after_secs } => {
                            let r = Refusal {
                                close_code: close_code::RATE_LIMITED,
                                goodbye: Some(GoodbyeReason::RateLimited),
                                detail: "over the per-agent rate limit for too long; slow down"
                                    .into(),
                            };
                            drain_acks(send, &mut out, &shared.metrics).await;
                            return End::Refuse(r, retry_after_secs);
                        }
                    }
                    let batch_id = batch.batch_id;
                    let ordinal = out.sent;
                    let job = Job::Batch {
                        terminal: session.terminal().clone(),
                        spool_epoch,
                        batch,
                        quarantined,
                        now_unix_ms: now_unix_ms(),
                        received: now.into_std(),
                        done: Completion::new(out.acks.clone(), ordinal),
                    };
                    // Waiting here when the writer's queue is full is the backpressure.
                    if shared.writer.send(job).await.is_err() {
                        return End::Refuse(internal_refusal(), 0);
                    }
                    out.sent += 1;
                    out.pending.push_back(InFlight {
                        batch_id,
                        highest_seq,
                        received: now,
                        ordinal,
                    });
                }
            }
        }
        if recv_done && out.pending.is_empty() {
            let r = Refusal {
                close_code: close_code::NORMAL,
                goodbye: None,
                detail: "agent finished its stream".into(),
            };
            return End::Refuse(r, 0);
        }
        let want = match decoder.needed() {
            Ok(n) => n.clamp(1, READ_CHUNK_BYTES),
            Err(e) => return End::Refuse(session.handle_frame_error(&e), 0),
        };
        if paused_until.is_some_and(|t| Instant::now() >= t) {
            paused_until = None;
        }
        let can_read =
            !recv_done && out.pending.len() < shared.max_inflight_batches && paused_until.is_none();
        tokio::select! {
            biased;
            () = stopping(shutdown) => {
                drain_acks(send, &mut out, &shared.metrics).await;
                return End::Refuse(shutdown_refusal("collector is shutting down"), 0);
            }
            () = out.acks.changed(), if !out.pending.is_empty() => {
                if send_acks(send, &mut out, &shared.metrics).await.is_err() {
                    return End::Gone;
                }
                if out.acks.failed() {
                    return End::Refuse(internal_refusal(), 0);
                }
            }
            _ = sleep_until(hello_deadline), if !session.is_ready() => {
                if let Some(r) = session.handle_hello_timeout() {
                    return End::Refuse(r, 0);
                }
            }
            () = sleep_until(paused_until.unwrap_or_else(Instant::now)), if paused_until.is_some() => {}
            // `read_chunk` hands over quinn's own buffer: no read buffer per connection.
            read = recv.read_chunk(want, true), if can_read => match read {
                Ok(Some(chunk)) => {
                    let n = chunk.bytes.len() as u64;
                    shared.metrics.ingest_bytes.fetch_add(n, Ordering::Relaxed);
                    bytes_since_batch += n;
                    decoder.push(&chunk.bytes);
                }
                Ok(None) => recv_done = true,
                Err(e) => {
                    debug!(error = %e, "Stream read failed");
                    return End::Gone;
                }
            },
            reason = conn.closed() => {
                debug!(%reason, "Connection closed by peer");
                return End::Gone;
            }
        }
    }
}

/// Resolves once shutdown was requested (or the collector handle is gone).
async fn stopping(rx: &mut watch::Receiver<bool>) {
    // The guard returned by `wait_for` is not `Send`; drop it here, before any other await.
    let _ = rx.wait_for(|s| *s).await;
}

/// Acks every batch the writer has made durable, oldest first, in one write.
async fn send_acks(
    send: &mut SendStream,
    out: &mut Outstanding,
    metrics: &Metrics,
) -> Result<(), quinn::WriteError> {
    let done = out.acks.done();
    let mut frames = Vec::new();
    let mut acked = Vec::new();
    while let Some(front) = out.pending.front()
        && front.ordinal < done
    {
        let ack = Ack {
            batch_id: front.batch_id,
            highest_seq: front.highest_seq,
        };
        frames.extend_from_slice(&encode_frame(&Message::Ack(ack)));
        acked.extend(out.pending.pop_front());
    }
    if frames.is_empty() {
        return Ok(());
    }
    send.write_all(&frames).await?;
    for batch in &acked {
        debug!(batch_id = batch.batch_id, "Batch committed");
        metrics
            .ack_latency
            .observe(batch.received.elapsed().as_secs_f64());
    }
    Ok(())
}

/// On shutdown: ack what commits within a short grace period, so agents replay less.
async fn drain_acks(send: &mut SendStream, out: &mut Outstanding, metrics: &Metrics) {
    let deadline = Instant::now() + SHUTDOWN_DRAIN;
    loop {
        if send_acks(send, out, metrics).await.is_err()
            || out.pending.is_empty()
            || out.acks.failed()
        {
            return;
        }
        if tokio::time::timeout_at(deadline, out.acks.changed())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Sends the refusal's `Goodbye` (if any and if the stream is usable), gives it a moment to
/// arrive, then closes the connection with the refusal's code.
async fn close(
    conn: &Connection,
    send: Option<&mut SendStream>,
    r: &Refusal,
    retry_after_secs: u32,
) {
    if let (Some(send), Some(reason)) = (send, r.goodbye) {
        let bye = Goodbye {
            reason,
            retry_after_secs,
            detail: r.detail.clone(),
        };
        if send
            .write_all(&encode_frame(&Message::Goodbye(bye)))
            .await
            .is_ok()
            && send.finish().is_ok()
        {
            // Resolves once the peer has received everything (or stopped the stream).
            let _ = timeout(GOODBYE_LINGER, send.stopped()).await;
        }
    }
    let detail = r.detail.as_bytes();
    conn.close(
        VarInt::from_u32(r.close_code),
        &detail[..detail.len().min(200)],
    );
}

/// The metric label for a close code.
fn close_reason_name(code: u32) -> &'static str {
    match code {
        close_code::NORMAL => "normal",
        close_code::PROTOCOL_ERROR => "protocol_error",
        close_code::FRAME_TOO_LARGE => "frame_too_large",
        close_code::UNSUPPORTED_VERSION => "unsupported_version",
        close_code::IDENTITY_MISMATCH => "identity_mismatch",
        close_code::UNAUTHORIZED => "unauthorized",
        close_code::OVERLOADED => "overloaded",
        close_code::SHUTTING_DOWN => "shutting_down",
        close_code::INTERNAL_ERROR => "internal_error",
        close_code::RATE_LIMITED => "rate_limited",
        close_code::HELLO_TIMEOUT => "hello_timeout",
        close_code::SUPERSEDED => "superseded",
        _ => "other",
    }
}
