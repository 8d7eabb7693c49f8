//! Scale benchmarks of issue 7: reconnect storm (real agents), many connected agents, and the
//! backlog drain after an outage (raw agents). Each prints its figures for BENCHMARKS.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use storepulse_agent_core::{Backoff, BackoffConfig};
use storepulse_shared::{Batch, Message, Record, RecordBody, Seq};
use storepulse_tests::load::{
    ClientTransport, FleetIssuer, LightConn, heartbeat, hello, net_quality, now_ms, payment,
};
use storepulse_tests::procstat;

use crate::proc::{CollectorProc, mib, percentiles};

/// Admission control switched off (for a before/after comparison).
const NO_BUDGET: &str = "max_handshakes_in_progress = 1000000\nmax_handshakes_per_sec = 0\n";

/// Polls `/healthz` and `/api/v1/summary` every 100 ms until `stop`; returns latencies (ms).
async fn poll_api(
    http: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<f64>, Vec<f64>, u64) {
    let client = reqwest::Client::new();
    let (mut health, mut summary, mut errors) = (Vec::new(), Vec::new(), 0u64);
    while !stop.load(Ordering::Relaxed) {
        for (path, out) in [("/healthz", &mut health), ("/api/v1/summary", &mut summary)] {
            let t = Instant::now();
            let ok = client
                .get(format!("http://{http}{path}"))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                out.push(t.elapsed().as_secs_f64() * 1000.0);
            } else {
                errors += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (health, summary, errors)
}

/// `storm`: N real agents (agent library) started in the same instant against a collector
/// process with its default admission control.
pub(crate) async fn storm(n: usize, budget_off: bool, limit_secs: u64) -> Result<()> {
    use storepulse_tests::live::{LiveFleet, LiveUplink};
    let tmp = tempfile::tempdir()?;
    let quic_extra = if budget_off { NO_BUDGET } else { "" };
    let c = CollectorProc::start(&tmp.path().join("c"), quic_extra, "", "").await?;
    let ids: Vec<storepulse_shared::Identity> = (0..n)
        .map(|i| Ok(hello(&format!("ST{i:06}"), &format!("S{}", i / 3), 0)?.identity))
        .collect::<Result<_>>()?;
    // Spools and certificates first (not part of the storm), links all at once afterwards.
    let t_prep = Instant::now();
    for id in &ids {
        storepulse_collector::pki::issue(&c.pki, id.terminal_id.as_str(), false)?;
    }
    println!(
        "  {n} certificates issued in {:.1} s",
        t_prep.elapsed().as_secs_f64()
    );
    let stop_poll = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = tokio::spawn(poll_api(c.http, stop_poll.clone()));
    let cpu0 = procstat::read(c.pid())?.cpu_secs;
    let t0 = Instant::now();
    let fleet = LiveFleet::start(
        &tmp.path().join("agents"),
        &c.pki,
        c.quic,
        &ids,
        LiveUplink::default(),
    )
    .await?;
    let started = t0.elapsed();
    let mut peak_rss = 0u64;
    let all_in = loop {
        let open = c
            .metric("storepulse_ingest_connections ")
            .await
            .unwrap_or(0.0) as usize;
        peak_rss = peak_rss.max(procstat::read(c.pid())?.rss_bytes);
        if open >= n {
            break Some(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(limit_secs) {
            println!("  only {open} of {n} connected after {limit_secs} s");
            break None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let cpu = procstat::read(c.pid())?.cpu_secs - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    stop_poll.store(true, Ordering::Relaxed);
    let (health, summary, api_errors) = poller.await?;
    let m = c.get_text("/metrics").await?;
    let get = |p: &str| crate::proc::metric_sum(&m, p);
    println!(
        "reconnect storm: {n} real agents started in one instant (links opened in {:.1} s), admission control {}",
        started.as_secs_f64(),
        if budget_off { "OFF" } else { "on (defaults)" }
    );
    match all_in {
        Some(d) => println!(
            "  all {n} connected {:.1} s after the last link was opened ({:.1} s from the first)",
            d.saturating_sub(started).as_secs_f64(),
            d.as_secs_f64()
        ),
        None => println!("  NOT all connected within {limit_secs} s"),
    }
    println!(
        "  handshakes ok {}, failed {}; admission: retry {}, queued {}, refused {}; Goodbye overloaded {}",
        get("storepulse_ingest_handshakes_total{result=\"ok\"}"),
        get("storepulse_ingest_handshakes_total{result=\"failed\"}"),
        get("storepulse_ingest_admission_total{action=\"retry\"}"),
        get("storepulse_ingest_admission_total{action=\"queued\"}"),
        get("storepulse_ingest_admission_total{action=\"refused\"}"),
        get("storepulse_ingest_refusals_total{reason=\"overloaded\"}"),
    );
    let (h50, h99, hmax, hn) = percentiles(health);
    let (s50, s99, smax, sn) = percentiles(summary);
    println!(
        "  during the storm: GET /healthz p50 {h50:.1} ms, p99 {h99:.1} ms, max {hmax:.1} ms ({hn} requests); GET /api/v1/summary p50 {s50:.1} ms, p99 {s99:.1} ms, max {smax:.1} ms ({sn} requests); {api_errors} failed"
    );
    println!(
        "  collector: {:.2} cores over the storm, peak RSS {:.0} MiB",
        cpu / wall,
        mib(peak_rss)
    );
    fleet.shutdown().await;
    Ok(())
}

/// Shared counters of the raw load generators.
#[derive(Debug, Default)]
struct Counters {
    connected: AtomicU64,
    lost: AtomicU64,
    failed_attempts: AtomicU64,
    goodbyes: AtomicU64,
    acked: AtomicU64,
    drained: AtomicU64,
}

fn record(seq: u64, time_unix_ms: i64, body: RecordBody) -> Record {
    Record {
        seq: Seq(seq),
        time_unix_ms,
        body,
    }
}

/// Connects until welcomed, with the agent's jittered backoff and retry hints.
// One agent's whole context; a struct would only move the list.
#[allow(clippy::too_many_arguments)]
async fn connect_welcomed(
    ep: &quinn::Endpoint,
    cfg: &quinn::ClientConfig,
    addr: SocketAddr,
    terminal: &str,
    epoch: u64,
    rng: &mut SmallRng,
    backoff: &mut Backoff,
    counters: &Counters,
) -> Result<(LightConn, storepulse_shared::Welcome)> {
    loop {
        let attempt = async {
            let mut c = LightConn::connect(ep, cfg.clone(), addr, Duration::from_secs(10)).await?;
            c.send(&Message::Hello(hello(terminal, "S1", epoch)?))
                .await?;
            let first = tokio::time::timeout(Duration::from_secs(10), c.recv()).await??;
            anyhow::Ok((c, first))
        };
        let hint = match attempt.await {
            Ok((c, Message::Welcome(w))) => return Ok((c, w)),
            Ok((_, Message::Goodbye(g))) => {
                counters.goodbyes.fetch_add(1, Ordering::Relaxed);
                Some(Duration::from_secs(g.retry_after_secs.into()))
            }
            Ok((_, other)) => bail!("{terminal}: unexpected {other:?}"),
            Err(_) => {
                counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        tokio::time::sleep(backoff.after_failure(rng, hint)).await;
    }
}

/// One connected agent at default intervals: a heartbeat every `hb` and a network sample every
/// `nq`, each its own small batch, acked before the next (as the agent's outbox does).
async fn hold(mut c: LightConn, hb: Duration, nq: Duration, rng: &mut SmallRng) -> Result<()> {
    let start = tokio::time::Instant::now();
    // Agents are not in phase: first heartbeat at a random point of the interval.
    let mut next_hb = start + hb.mul_f64(rng.random::<f64>());
    let mut next_nq = start + nq.mul_f64(rng.random::<f64>());
    let (mut batch_id, mut seq) = (1u64, 0u64);
    loop {
        let at = next_hb.min(next_nq);
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            _ = c.conn.closed() => bail!("connection closed"),
        }
        let body = if at == next_hb {
            next_hb += hb;
            heartbeat(0)
        } else {
            next_nq += nq;
            net_quality()
        };
        c.send(&Message::Batch(Batch {
            batch_id,
            records: vec![record(seq, now_ms(), body)],
        }))
        .await?;
        match c.recv().await? {
            Message::Ack(_) => {}
            other => bail!("unexpected {other:?}"),
        }
        batch_id += 1;
        seq += 1;
    }
}

/// A light client config for one load-generating agent: its own certificate, no TLS session
/// cache (rustls allocates a 256-entry cache per config otherwise, and the agents never
/// resume), small flow-control windows (an agent sends one small batch at a time and receives
/// only acks), no streams opened by the peer, no datagrams, no MTU probing. Keep-alive and idle
/// timeout are the reference agent's.
fn light_client_config(
    issuer: &FleetIssuer,
    roots: &Arc<rustls::RootCertStore>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    transport: &Arc<quinn::TransportConfig>,
    terminal: &str,
) -> Result<quinn::ClientConfig> {
    let (cert, key) = issuer.issue(terminal)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![storepulse_shared::ALPN.to_vec()];
    tls.resumption = rustls::client::Resumption::disabled();
    let mut cfg = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    ));
    cfg.transport_config(transport.clone());
    Ok(cfg)
}

fn light_transport() -> Result<quinn::TransportConfig> {
    let agent = ClientTransport::default();
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(agent.keep_alive)
        .max_idle_timeout(Some(agent.idle_timeout.try_into()?))
        .stream_receive_window(quinn::VarInt::from_u32(64 * 1024))
        .receive_window(quinn::VarInt::from_u32(128 * 1024))
        .send_window(128 * 1024)
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(0))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
        .datagram_receive_buffer_size(None)
        .mtu_discovery_config(None);
    Ok(t)
}

/// What a `connections-worker` child process reports on stdout, one line each.
const READY: &str = "ready";
const PROGRESS: &str = "progress";

/// `connections-worker`: one slice of the `connections` load, run as a child process. Issues
/// all its certificates first, prints `ready <seconds>`, waits for `go` on stdin, then starts
/// its agents at `ramp_per_sec` and prints `progress <connected now> <failed attempts>
/// <goodbyes> <connections lost>` every second. Exits when stdin closes.
pub(crate) async fn connections_worker(
    quic: SocketAddr,
    pki: &std::path::Path,
    first: usize,
    count: usize,
    endpoints: usize,
    ramp_per_sec: f64,
) -> Result<()> {
    let issuer = FleetIssuer::load(pki)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::fs::read(pki.join("ca.pem"))?.as_slice()) {
        roots.add(c?)?;
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let transport = Arc::new(light_transport()?);
    let t_prep = Instant::now();
    let cfgs: Vec<quinn::ClientConfig> = (first..first + count)
        .map(|i| light_client_config(&issuer, &roots, &provider, &transport, &terminal_id(i)))
        .collect::<Result<_>>()?;
    drop(issuer);
    let eps: Vec<quinn::Endpoint> = (0..endpoints.max(1))
        .map(|_| big_buffer_endpoint())
        .collect::<Result<_>>()?;
    println!("{READY} {:.1}", t_prep.elapsed().as_secs_f64());
    // Wait for `go`; afterwards, the end of stdin (the parent exiting) ends this process.
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut go = Some(go_tx);
        loop {
            line.clear();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => std::process::exit(0),
                Ok(_) => {
                    if let Some(tx) = go.take() {
                        let _ = tx.send(());
                    }
                }
            }
        }
    });
    go_rx.await?;
    let counters = Arc::new(Counters::default());
    let reporter = {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                println!(
                    "{PROGRESS} {} {} {} {}",
                    counters.connected.load(Ordering::Relaxed),
                    counters.failed_attempts.load(Ordering::Relaxed),
                    counters.goodbyes.load(Ordering::Relaxed),
                    counters.lost.load(Ordering::Relaxed),
                );
            }
        })
    };
    let gap = Duration::from_secs_f64(1.0 / ramp_per_sec.max(0.001));
    let mut next = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (k, cfg) in cfgs.into_iter().enumerate() {
        let i = first + k;
        let counters = counters.clone();
        let ep = eps[k % eps.len()].clone();
        tasks.spawn(async move {
            let terminal = terminal_id(i);
            let mut rng = SmallRng::seed_from_u64(i as u64);
            let mut backoff = Backoff::new(BackoffConfig {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
            });
            // Like an agent: reconnect (with backoff) whenever the connection is lost.
            loop {
                let (conn, w) = connect_welcomed(
                    &ep,
                    &cfg,
                    quic,
                    &terminal,
                    i as u64,
                    &mut rng,
                    &mut backoff,
                    &counters,
                )
                .await?;
                counters.connected.fetch_add(1, Ordering::Relaxed);
                let hb = Duration::from_secs(u64::from(w.heartbeat_interval_secs).max(1));
                let nq = Duration::from_secs(u64::from(w.net_probe_interval_secs).max(1));
                let r = hold(conn, hb, nq, &mut rng).await;
                counters.connected.fetch_sub(1, Ordering::Relaxed);
                counters.lost.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = r {
                    eprintln!("{terminal}: connection lost: {e:#}");
                }
                tokio::time::sleep(backoff.after_failure(&mut rng, None)).await;
            }
            #[allow(unreachable_code)]
            anyhow::Ok(())
        });
        next += gap;
        tokio::time::sleep_until(next).await;
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            eprintln!("agent failed: {e:#}");
        }
    }
    reporter.abort();
    Ok(())
}

/// A client endpoint on loopback whose socket buffers hold bursts of a few thousand agents
/// (the kernel default holds some 90 datagrams).
fn big_buffer_endpoint() -> Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(("127.0.0.1", 0))?;
    let sock = socket2::SockRef::from(&socket);
    sock.set_recv_buffer_size(4 << 20)?;
    sock.set_send_buffer_size(4 << 20)?;
    let runtime = quinn::default_runtime().context("no async runtime")?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        runtime,
    )?)
}

fn terminal_id(i: usize) -> String {
    format!("C{i:07}")
}

/// One `connections-worker` child and the latest progress it reported.
struct Worker {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    ready: Arc<std::sync::Mutex<Option<f64>>>,
    /// connected, failed attempts, goodbyes, lost.
    progress: Arc<[AtomicU64; 4]>,
}

impl Worker {
    fn spawn(
        quic: SocketAddr,
        pki: &std::path::Path,
        first: usize,
        count: usize,
        endpoints: usize,
        ramp_per_sec: f64,
        nice: u8,
    ) -> Result<Self> {
        // `nice` (coreutils) execs the worker: the child's pid is the worker's.
        let mut child = std::process::Command::new("nice")
            .args(["-n", &nice.to_string()])
            .arg(std::env::current_exe()?)
            .arg("connections-worker")
            .arg("--quic")
            .arg(quic.to_string())
            .arg("--pki")
            .arg(pki)
            .args(["--first", &first.to_string(), "--count", &count.to_string()])
            .args(["--endpoints", &endpoints.to_string()])
            .args(["--ramp-per-sec", &ramp_per_sec.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let stdin = child.stdin.take();
        let ready = Arc::new(std::sync::Mutex::new(None));
        let progress: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
        {
            let (ready, progress) = (ready.clone(), progress.clone());
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { return };
                    let mut f = line.split_whitespace();
                    match f.next() {
                        Some(READY) => {
                            let secs = f.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
                            if let Ok(mut r) = ready.lock() {
                                *r = Some(secs);
                            }
                        }
                        Some(PROGRESS) => {
                            for slot in progress.iter() {
                                if let Some(v) = f.next().and_then(|s| s.parse().ok()) {
                                    slot.store(v, Ordering::Relaxed);
                                }
                            }
                        }
                        _ => eprintln!("worker: {line}"),
                    }
                }
            });
        }
        Ok(Self {
            child,
            stdin,
            ready,
            progress,
        })
    }

    fn ready(&self) -> Option<f64> {
        self.ready.lock().ok().and_then(|r| *r)
    }

    fn go(&mut self) -> Result<()> {
        use std::io::Write;
        let stdin = self.stdin.as_mut().context("stdin")?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of one progress field over the workers.
fn total(workers: &[Worker], field: usize) -> u64 {
    workers
        .iter()
        .map(|w| w.progress[field].load(Ordering::Relaxed))
        .sum()
}

/// RSS and CPU seconds of the load generator: this process and its workers.
fn load_stat(workers: &[Worker]) -> Result<procstat::ProcStat> {
    let mut s = procstat::read(std::process::id())?;
    for w in workers {
        let c = procstat::read(w.child.id())?;
        s.rss_bytes += c.rss_bytes;
        s.cpu_secs += c.cpu_secs;
    }
    Ok(s)
}

/// How the `connections` load is spread over processes, and the collector's settings.
#[derive(Debug, Clone)]
pub(crate) struct LoadProcs {
    /// Load generator processes.
    pub(crate) procs: usize,
    /// Their niceness.
    pub(crate) nice: u8,
    /// Lines added to the collector's `[quic]` and `[ingest]` sections (empty: defaults).
    pub(crate) quic_extra: String,
    pub(crate) ingest_extra: String,
}

/// `connections`: N raw agents held connected at default intervals, from `procs` load
/// generator processes (this one re-executed as `connections-worker` children, each on one
/// thread, niced so that the collector under test gets the CPU first).
pub(crate) async fn connections(
    n: usize,
    endpoints: usize,
    ramp_per_sec: u64,
    seconds: u64,
    limit_secs: u64,
    load: LoadProcs,
) -> Result<()> {
    let LoadProcs {
        procs,
        nice,
        quic_extra,
        ingest_extra,
    } = load;
    let tmp = tempfile::tempdir()?;
    let c = CollectorProc::start(&tmp.path().join("c"), &quic_extra, &ingest_extra, "").await?;
    if !quic_extra.is_empty() || !ingest_extra.is_empty() {
        println!(
            "collector settings changed from the defaults: [quic] {quic_extra:?} [ingest] {ingest_extra:?}"
        );
    }
    let welcome_hb = 30u64; // the collector's default [agents] intervals
    let welcome_nq = 60u64;
    let procs = procs.clamp(1, n.max(1));
    let mut workers = Vec::with_capacity(procs);
    let per_proc_eps = (endpoints / procs).max(1);
    for p in 0..procs {
        let first = n * p / procs;
        let count = n * (p + 1) / procs - first;
        workers.push(Worker::spawn(
            c.quic,
            &c.pki,
            first,
            count,
            per_proc_eps,
            ramp_per_sec as f64 / procs as f64,
            nice,
        )?);
    }
    // Certificates are issued before the ramp, in every worker at once.
    let t_prep = Instant::now();
    while workers.iter().any(|w| w.ready().is_none()) {
        for w in &mut workers {
            if let Ok(Some(status)) = w.child.try_wait() {
                bail!("a load generator process exited before it was ready: {status}");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "  {n} certificates and client configs made in {:.1} s by {procs} processes",
        t_prep.elapsed().as_secs_f64()
    );
    let rss_idle = procstat::read(c.pid())?.rss_bytes;
    let cpu0 = procstat::read(c.pid())?.cpu_secs;
    let t0 = Instant::now();
    for w in &mut workers {
        w.go()?;
    }
    let ramp = Duration::from_secs_f64(n as f64 / ramp_per_sec.max(1) as f64);
    let mut last_print = Instant::now();
    let all_in = loop {
        let k = total(&workers, 0) as usize;
        if k >= n {
            break Some(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(limit_secs) {
            break None;
        }
        for w in &mut workers {
            if let Ok(Some(status)) = w.child.try_wait() {
                bail!("a load generator process exited early: {status}");
            }
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            let s = procstat::read(c.pid())?;
            let g = load_stat(&workers)?;
            eprintln!(
                "  ... {k} connected after {:.0} s ({} failed attempts, {} lost); collector RSS {:.0} MiB, {:.2} cores so far; load generator RSS {:.0} MiB; load {}",
                t0.elapsed().as_secs_f64(),
                total(&workers, 1),
                total(&workers, 3),
                mib(s.rss_bytes),
                (s.cpu_secs - cpu0) / t0.elapsed().as_secs_f64(),
                mib(g.rss_bytes),
                loadavg()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let connected_at = t0.elapsed();
    let cpu_connect = procstat::read(c.pid())?.cpu_secs - cpu0;
    // Steady state: a full network-sample period at least before measuring.
    let settle = Duration::from_secs(welcome_nq.min(seconds));
    tokio::time::sleep(settle).await;
    let s0 = procstat::read(c.pid())?;
    let g0 = load_stat(&workers)?;
    let load0 = loadavg();
    let t1 = Instant::now();
    let mut peak = s0.rss_bytes;
    let mut min_open = u64::MAX;
    while t1.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        peak = peak.max(procstat::read(c.pid())?.rss_bytes);
        min_open = min_open.min(total(&workers, 0));
    }
    let s1 = procstat::read(c.pid())?;
    let g1 = load_stat(&workers)?;
    let steady = t1.elapsed().as_secs_f64();
    let open = c.metric("storepulse_ingest_connections ").await?;
    let recs = c.metric("storepulse_ingest_records_total ").await?;
    println!(
        "connections: {n} raw agents (own certificate and QUIC connection each, mutual TLS) from {procs} single-threaded load generator processes (nice {nice}) over {} client endpoints in all, ramped at {ramp_per_sec}/s, collector defaults (heartbeat {welcome_hb} s, network sample {welcome_nq} s, agents' keep-alive 15 s, none from the collector)",
        per_proc_eps * procs
    );
    match all_in {
        Some(d) => println!(
            "  all connected after {:.1} s (the ramp alone takes {:.1} s)",
            d.as_secs_f64(),
            ramp.as_secs_f64()
        ),
        None => println!(
            "  only {} of {n} connected after {limit_secs} s",
            total(&workers, 0)
        ),
    }
    println!(
        "  failed attempts {}, Goodbye received {}, connections lost after the Welcome {}; collector CPU while connecting {:.2} cores; collector RSS before the ramp {:.0} MiB",
        total(&workers, 1),
        total(&workers, 2),
        total(&workers, 3),
        cpu_connect / connected_at.as_secs_f64(),
        mib(rss_idle)
    );
    println!(
        "  steady state over {steady:.0} s with {open} connections open (fewest seen by the agents: {min_open}): collector RSS {:.0} MiB (peak {:.0} MiB), CPU {:.3} cores; {recs} records stored in total",
        mib(s1.rss_bytes),
        mib(peak),
        (s1.cpu_secs - s0.cpu_secs) / steady
    );
    println!(
        "  load generator ({procs} processes): RSS {:.0} MiB, CPU {:.3} cores; load average {load0} before, {} after",
        mib(g1.rss_bytes),
        (g1.cpu_secs - g0.cpu_secs) / steady,
        loadavg()
    );
    drop(workers);
    Ok(())
}

/// The 1, 5 and 15 minute load averages (the machine is shared).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `drain`: N agents, each with `outage` of backlog, reconnect with their jittered backoff and
/// drain at the rate the collector's `Welcome` allows.
pub(crate) async fn drain(
    n: usize,
    outage_secs: u64,
    txn_every_secs: u64,
    backoff_max_secs: u64,
    endpoints: usize,
) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let c = CollectorProc::start(&tmp.path().join("c"), "", "", "").await?;
    let issuer = Arc::new(FleetIssuer::load(&c.pki)?);
    let (hb, nq) = (30u64, 60u64);
    let per_agent = outage_secs / hb + outage_secs / nq + outage_secs / txn_every_secs.max(1);
    let total = per_agent * n as u64;
    // Client configs (certificates) first: not part of the drain.
    let t_prep = Instant::now();
    let cfgs: Vec<quinn::ClientConfig> = (0..n)
        .map(|i| issuer.client_config(&format!("D{i:07}"), ClientTransport::default()))
        .collect::<Result<_>>()?;
    println!(
        "  {n} certificates issued in {:.1} s",
        t_prep.elapsed().as_secs_f64()
    );
    let eps: Vec<quinn::Endpoint> = (0..endpoints.max(1))
        .map(|_| storepulse_tests::quic::endpoint())
        .collect::<Result<_>>()?;
    let counters = Arc::new(Counters::default());
    let cpu0 = procstat::read(c.pid())?.cpu_secs;
    let t0 = Instant::now();
    let back_at = now_ms();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, cfg) in cfgs.into_iter().enumerate() {
        let counters = counters.clone();
        let ep = eps[i % eps.len()].clone();
        let addr = c.quic;
        tasks.spawn(async move {
            let terminal = format!("D{i:07}");
            let mut rng = SmallRng::seed_from_u64(i as u64);
            // An hour of failed attempts has grown the backoff to its cap: the first attempt
            // after the collector returns comes uniformly within it.
            let mut backoff = Backoff::new(BackoffConfig {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(backoff_max_secs),
            });
            for _ in 0..16 {
                backoff.after_failure(&mut rng, None);
            }
            tokio::time::sleep(backoff.after_failure(&mut rng, None)).await;
            let (mut c, w) = connect_welcomed(
                &ep,
                &cfg,
                addr,
                &terminal,
                i as u64,
                &mut rng,
                &mut backoff,
                &counters,
            )
            .await?;
            counters.connected.fetch_add(1, Ordering::Relaxed);
            // The backlog: what the agent observed during the outage, in seq order.
            let start_ms = back_at - outage_secs as i64 * 1000;
            let mut backlog: Vec<(i64, u8)> = Vec::with_capacity(per_agent as usize);
            for k in 0..outage_secs / hb {
                backlog.push((start_ms + (k * hb * 1000) as i64, 0));
            }
            for k in 0..outage_secs / nq {
                backlog.push((start_ms + (k * nq * 1000) as i64 + 7, 1));
            }
            for k in 0..outage_secs / txn_every_secs.max(1) {
                backlog.push((start_ms + (k * txn_every_secs * 1000) as i64 + 3, 2));
            }
            backlog.sort_unstable();
            let per_batch = (w.max_batch_records as usize).clamp(1, 1024);
            let rate = f64::from(w.backlog_records_per_sec.max(1));
            let started = tokio::time::Instant::now();
            let mut sent = 0usize;
            let mut batch_id = 1u64;
            let mut outstanding = 0usize;
            let mut acked_batches = std::collections::VecDeque::new();
            while sent < backlog.len() || outstanding > 0 {
                // Like the agent's outbox: at most 8 batches in flight, backlog at most `rate`.
                while sent < backlog.len() && outstanding < 8 {
                    let due = started + Duration::from_secs_f64(sent as f64 / rate);
                    if due > tokio::time::Instant::now() && outstanding > 0 {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    let end = (sent + per_batch).min(backlog.len());
                    let records = backlog[sent..end]
                        .iter()
                        .enumerate()
                        .map(|(j, (t, kind))| {
                            let seq = (sent + j) as u64;
                            let body = match kind {
                                0 => heartbeat(backlog.len() as u64 - seq),
                                1 => net_quality(),
                                _ => payment(seq),
                            };
                            record(seq, *t, body)
                        })
                        .collect::<Vec<_>>();
                    c.send(&Message::Batch(Batch { batch_id, records })).await?;
                    acked_batches.push_back(end - sent);
                    batch_id += 1;
                    sent = end;
                    outstanding += 1;
                }
                match c.recv().await? {
                    Message::Ack(_) => {
                        outstanding -= 1;
                        let k = acked_batches.pop_front().unwrap_or(0) as u64;
                        counters.acked.fetch_add(k, Ordering::Relaxed);
                    }
                    other => bail!("unexpected {other:?}"),
                }
            }
            counters.drained.fetch_add(1, Ordering::Relaxed);
            // Stay connected like a real agent until the benchmark ends.
            c.conn.closed().await;
            Ok(())
        });
    }
    let mut samples = Vec::new();
    let mut last = 0u64;
    let mut peak_rss = 0u64;
    let mut failed_agents = 0usize;
    let mut at_99 = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let done_at = loop {
        tick.tick().await;
        let a = counters.acked.load(Ordering::Relaxed);
        samples.push(a - last);
        last = a;
        peak_rss = peak_rss.max(procstat::read(c.pid())?.rss_bytes);
        while let Some(r) = tasks.try_join_next() {
            if let Ok(Err(e)) = r {
                failed_agents += 1;
                eprintln!("agent failed (a real agent would reconnect and resend): {e:#}");
            }
        }
        if at_99.is_none() && a * 100 >= total * 99 {
            at_99 = Some(t0.elapsed());
        }
        if counters.drained.load(Ordering::Relaxed) as usize + failed_agents >= n {
            break Some(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(1800) {
            break None;
        }
        if samples.len() % 10 == 0 {
            eprintln!(
                "  ... {:.0} s: {} connected, {} drained, {a} acked",
                t0.elapsed().as_secs_f64(),
                counters.connected.load(Ordering::Relaxed),
                counters.drained.load(Ordering::Relaxed)
            );
        }
    };
    let cpu = procstat::read(c.pid())?.cpu_secs - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let acked = counters.acked.load(Ordering::Relaxed);
    let stored = c.metric("storepulse_ingest_records_total ").await?;
    let peak = samples.iter().copied().max().unwrap_or(0);
    // Mean over the seconds in which anything was acked.
    let busy: Vec<u64> = samples.iter().copied().filter(|s| *s > 0).collect();
    let mean_busy = busy.iter().sum::<u64>() as f64 / busy.len().max(1) as f64;
    println!(
        "backlog drain: {n} agents back after a {outage_secs} s outage, {per_agent} records each ({total} in all: heartbeat {hb} s, network sample {nq} s, a payment every {txn_every_secs} s); first attempts spread by the agents' backoff (cap {backoff_max_secs} s); drain at the Welcome's backlog rate"
    );
    if let Some(d) = at_99 {
        println!(
            "  99 % of the backlog acked {:.1} s after the collector came back",
            d.as_secs_f64()
        );
    }
    match done_at {
        Some(d) => println!(
            "  every agent drained (or failed: {failed_agents}) {:.1} s after the collector came back",
            d.as_secs_f64()
        ),
        None => println!("  NOT drained within 1800 s"),
    }
    println!(
        "  acked (durable) records/s: peak {peak} (1 s window), mean {:.0} over the {} s with acks, mean {:.0} over the whole drain",
        mean_busy,
        busy.len(),
        acked as f64 / wall
    );
    println!(
        "  acked {acked} of {total}; collector stored {stored}; failed attempts {}, Goodbye received {}",
        counters.failed_attempts.load(Ordering::Relaxed),
        counters.goodbyes.load(Ordering::Relaxed)
    );
    println!(
        "  collector: {:.2} cores, peak RSS {:.0} MiB",
        cpu / wall,
        mib(peak_rss)
    );
    if (stored as u64) < acked {
        bail!("collector stored {stored} records but acked {acked}");
    }
    tasks.abort_all();
    Ok(())
}
