//! The QUIC ingest server: accepts connections, runs one task and one tracing span per
//! connection, drives the core [`Session`] with decoded frames, hands batches to the group
//! commit writer and acks them once durable. Also reloads the CRL when its file changes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use storepulse_collector_core::{Refusal, Session, Step};
use storepulse_shared::{
    Ack, FrameDecoder, Goodbye, GoodbyeReason, Message, PROTOCOL_VERSION, Seq, TerminalId, Welcome,
    close_code, encode_frame,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{Instrument, debug, error, field, info, info_span, warn};

use crate::config::{Config, QuicConfig, TlsConfig};
use crate::ingest::{CommitFailed, Job};
use crate::metrics::Metrics;
use crate::{now_unix_ms, tls};

/// Largest read from a stream at once, bytes.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// How long a `Goodbye` may take to reach the peer before the connection is closed anyway.
const GOODBYE_LINGER: Duration = Duration::from_secs(1);
/// How long, on shutdown, a connection waits for its batches in flight to be acked.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);
/// How long, on shutdown, the endpoint waits for connection tasks to finish.
const SHUTDOWN_CONNECTIONS: Duration = Duration::from_secs(5);

/// What every connection task needs.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) writer: mpsc::Sender<Job>,
    pub(crate) max_frame_bytes: u32,
    pub(crate) max_batch_records: usize,
    pub(crate) max_inflight_batches: usize,
    pub(crate) hello_timeout: Duration,
    pub(crate) welcome: Welcome,
    /// Collector metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// The welcomed connection of each terminal, so a newer one supersedes an older one.
    live: Mutex<HashMap<TerminalId, (u64, Connection)>>,
    next_conn_id: AtomicU64,
}

/// A batch handed to the writer, waiting to be acked.
struct InFlight {
    batch_id: u64,
    highest_seq: Seq,
    done: oneshot::Receiver<Result<usize, CommitFailed>>,
}

/// How a connection ends.
enum End {
    /// Close with this refusal (Goodbye first, if any).
    Refuse(Refusal),
    /// The peer went away or closed; nothing to send.
    Gone,
}

impl Shared {
    pub(crate) fn new(config: &Config, writer: mpsc::Sender<Job>, metrics: Arc<Metrics>) -> Self {
        let a = &config.agents;
        Self {
            writer,
            max_frame_bytes: config.ingest.max_frame_bytes,
            max_batch_records: usize::try_from(config.ingest.max_batch_records)
                .unwrap_or(usize::MAX),
            max_inflight_batches: config.ingest.max_inflight_batches,
            hello_timeout: Duration::from_secs(config.ingest.hello_timeout_secs),
            welcome: Welcome {
                protocol_version: PROTOCOL_VERSION,
                collector_time_unix_ms: 0,
                heartbeat_interval_secs: a.heartbeat_interval_secs,
                net_probe_interval_secs: a.net_probe_interval_secs,
                max_batch_records: a.max_batch_records,
                backlog_records_per_sec: a.backlog_records_per_sec,
            },
            metrics,
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

/// Accepts connections until shutdown, then waits for connection tasks and closes the endpoint.
pub(crate) async fn run_endpoint(
    endpoint: Endpoint,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            () = stopping(&mut shutdown) => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let span = info_span!("conn", remote = %incoming.remote_address(), terminal = field::Empty);
                let task = handle_incoming(incoming, shared.clone(), shutdown.clone());
                tasks.spawn(task.instrument(span));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
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

/// Polls the CRL file and swaps the server config when it changes.
pub(crate) async fn watch_crl(
    endpoint: Endpoint,
    tls_config: TlsConfig,
    quic: QuicConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(path) = tls_config.crl.clone() else {
        return;
    };
    let mut last = tls::file_stamp(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(tls_config.crl_poll_interval_secs));
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
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            shared.metrics.handshakes.add("failed", 1);
            info!(error = %e, "Handshake failed");
            return;
        }
    };
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
    if let End::Refuse(r) = &end {
        shared
            .metrics
            .refusals
            .add(close_reason_name(r.close_code), 1);
    }
    match end {
        End::Gone => info!(%remote, reason = ?conn.close_reason(), "Disconnected"),
        End::Refuse(r) => {
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
            close(conn, None, &r).await;
            return End::Refuse(r);
        }
        () = stopping(&mut shutdown) => {
            let r = shutdown_refusal("collector is shutting down");
            close(conn, None, &r).await;
            return End::Refuse(r);
        }
    };
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
    if let End::Refuse(r) = &end {
        close(conn, Some(&mut send), r).await;
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
    let mut pending: VecDeque<InFlight> = VecDeque::new();
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut recv_done = false;
    loop {
        // Act on every complete frame before reading more.
        loop {
            let msg = match decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return End::Refuse(session.handle_frame_error(&e)),
            };
            match session.handle_message(msg) {
                Err(r) => return End::Refuse(r),
                Ok(Step::PeerLeft) => {
                    let r = Refusal {
                        close_code: close_code::NORMAL,
                        goodbye: None,
                        detail: "agent said goodbye".into(),
                    };
                    return End::Refuse(r);
                }
                Ok(Step::Welcome(hello)) => {
                    let (done, rx) = oneshot::channel();
                    let job = Job::Hello {
                        terminal: session.terminal().clone(),
                        hello,
                        now_unix_ms: now_unix_ms(),
                        done,
                    };
                    if shared.writer.send(job).await.is_err() || !matches!(rx.await, Ok(Ok(()))) {
                        return End::Refuse(internal_refusal());
                    }
                    let welcome = Welcome {
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
                Ok(Step::Store {
                    spool_epoch,
                    batch,
                    invalid_codes,
                }) => {
                    if !invalid_codes.is_empty() {
                        warn!(
                            batch_id = batch.batch_id,
                            seqs = ?invalid_codes,
                            "Invalid transaction codes replaced by INVALID_CODE"
                        );
                    }
                    let (done, rx) = oneshot::channel();
                    let batch_id = batch.batch_id;
                    let highest_seq = batch.records.last().map_or(Seq(0), |r| r.seq);
                    let job = Job::Batch {
                        terminal: session.terminal().clone(),
                        spool_epoch,
                        batch,
                        now_unix_ms: now_unix_ms(),
                        done,
                    };
                    // Waiting here when the writer's queue is full is the backpressure.
                    if shared.writer.send(job).await.is_err() {
                        return End::Refuse(internal_refusal());
                    }
                    pending.push_back(InFlight {
                        batch_id,
                        highest_seq,
                        done: rx,
                    });
                }
            }
        }
        if recv_done && pending.is_empty() {
            let r = Refusal {
                close_code: close_code::NORMAL,
                goodbye: None,
                detail: "agent finished its stream".into(),
            };
            return End::Refuse(r);
        }
        let want = match decoder.needed() {
            Ok(n) => n.clamp(1, READ_CHUNK_BYTES),
            Err(e) => return End::Refuse(session.handle_frame_error(&e)),
        };
        let can_read = !recv_done && pending.len() < shared.max_inflight_batches;
        tokio::select! {
            biased;
            () = stopping(shutdown) => {
                drain_acks(send, &mut pending).await;
                return End::Refuse(shutdown_refusal("collector is shutting down"));
            }
            done = next_done(&mut pending) => {
                let Some(front) = pending.pop_front() else { continue };
                match done {
                    Ok(Ok(new)) => {
                        debug!(batch_id = front.batch_id, new, "Batch committed");
                        if send_ack(send, &front).await.is_err() {
                            return End::Gone;
                        }
                    }
                    Ok(Err(CommitFailed)) | Err(_) => return End::Refuse(internal_refusal()),
                }
            }
            _ = sleep_until(hello_deadline), if !session.is_ready() => {
                if let Some(r) = session.handle_hello_timeout() {
                    return End::Refuse(r);
                }
            }
            read = recv.read(&mut buf[..want]), if can_read => match read {
                Ok(Some(n)) => {
                    shared.metrics.ingest_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    decoder.push(&buf[..n]);
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

/// Resolves with the commit result of the oldest batch in flight; never if there is none.
async fn next_done(
    pending: &mut VecDeque<InFlight>,
) -> Result<Result<usize, CommitFailed>, oneshot::error::RecvError> {
    match pending.front_mut() {
        Some(front) => (&mut front.done).await,
        None => std::future::pending().await,
    }
}

async fn send_ack(send: &mut SendStream, batch: &InFlight) -> Result<(), quinn::WriteError> {
    let ack = Ack {
        batch_id: batch.batch_id,
        highest_seq: batch.highest_seq,
    };
    send.write_all(&encode_frame(&Message::Ack(ack))).await
}

/// On shutdown: ack what commits within a short grace period, so agents replay less.
async fn drain_acks(send: &mut SendStream, pending: &mut VecDeque<InFlight>) {
    let deadline = Instant::now() + SHUTDOWN_DRAIN;
    while let Some(mut front) = pending.pop_front() {
        match tokio::time::timeout_at(deadline, &mut front.done).await {
            Ok(Ok(Ok(_))) => {
                if send_ack(send, &front).await.is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// Sends the refusal's `Goodbye` (if any and if the stream is usable), gives it a moment to
/// arrive, then closes the connection with the refusal's code.
async fn close(conn: &Connection, send: Option<&mut SendStream>, r: &Refusal) {
    if let (Some(send), Some(reason)) = (send, r.goodbye) {
        let bye = Goodbye {
            reason,
            retry_after_secs: 0,
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
