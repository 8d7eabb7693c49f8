//! Benchmarks that print figures for BENCHMARKS.md (not tests: they take minutes and their
//! numbers depend on the machine).
//!
//! - `ingest`: one process plays many agents over real QUIC + mTLS against a real collector and
//!   reports records/s acknowledged (acks are sent only after the group commit is fsync'd),
//!   with the collector's ingest stage figures over the measured window (`--rate` paces the
//!   load, `--cpus` pins the collector).
//! - `ingest-scaling`: `ingest` with the collector pinned to 1 core, then 2 (`taskset`), each at
//!   its peak and at half of it, side by side.
//! - `agent-footprint`: one real agent at default intervals for a while, side by side with
//!   Prometheus node_exporter (scraped every 15 s) in the same run; reports RSS, CPU seconds
//!   per hour and binary size of both.
//! - `storm`: N real agents started in one instant against a collector's admission control;
//!   time until all are connected, Retry/queue/refusal counts, API latency during the storm.
//! - `connections`: N raw agents held connected at default intervals, from several load
//!   generator processes (`--procs`); collector RSS and CPU.
//! - `drain`: N agents with an outage's backlog reconnect with their backoff and drain.
//!
//! Run with release binaries: `cargo build --release --workspace --bins` then
//! `STOREPULSE_BIN_DIR=target/release target/release/storepulse-bench ingest`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use storepulse_shared::{
    Batch, Hello, Identity, Label, LinkType, Message, PayMethod, Record, RecordBody, Scheme, Seq,
    TerminalId, TxnOutcome,
};
use storepulse_tests::quic::{RawConn, client_config, endpoint};
use storepulse_tests::{Agent, AgentSpec, Collector, Pki, bin_dir, procstat};

#[path = "../bench/proc.rs"]
mod proc;
#[path = "../bench/scale.rs"]
mod scale;
#[path = "../bench/stages.rs"]
mod stages;

#[derive(Debug, Parser)]
#[command(about = "storepulse benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Ingest throughput with durable acks, many agents from one process.
    Ingest {
        /// Simulated agents (each its own certificate and connection).
        #[arg(long, default_value_t = 200)]
        agents: usize,
        /// Records per batch.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Batches in flight per agent.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        /// Measured seconds (after a 3 s warm-up).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Client endpoints (UDP sockets) the agents are spread over.
        #[arg(long, default_value_t = 8)]
        endpoints: usize,
        /// Pin the collector to these CPUs (`taskset -c` list, e.g. `0` or `0,1`).
        #[arg(long)]
        cpus: Option<String>,
        /// Offer this many records/s in total, paced (default: as fast as acks allow).
        #[arg(long)]
        rate: Option<u64>,
        /// TOML sections appended to the collector's config, e.g. `[runtime]
        /// worker_threads = 1`.
        #[arg(long, default_value = "")]
        collector_toml: String,
    },
    /// Ingest scaling: the collector pinned with `taskset` to each CPU set in turn (default:
    /// 1 core, then 2), its peak rate and then a paced run at a fraction of that peak, with the
    /// stage figures of each and a table side by side.
    IngestScaling {
        /// Simulated agents.
        #[arg(long, default_value_t = 200)]
        agents: usize,
        /// Records per batch.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Batches in flight per agent.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        /// Measured seconds of each run (after a 3 s warm-up).
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Client endpoints (UDP sockets).
        #[arg(long, default_value_t = 8)]
        endpoints: usize,
        /// CPU sets (`taskset -c` lists), one run each.
        #[arg(long, num_args = 1.., default_values_t = ["0".to_owned(), "0,1".to_owned()])]
        cpu_sets: Vec<String>,
        /// The paced run's rate as a fraction of the peak.
        #[arg(long, default_value_t = 0.5)]
        fraction: f64,
        /// TOML sections appended to the collector's config.
        #[arg(long, default_value = "")]
        collector_toml: String,
    },
    /// Many real agents (agent library: redb spool, outbox core, QUIC link) in this process
    /// against an in-process collector: time until all are connected, memory, CPU.
    LiveFleet {
        /// Agents.
        #[arg(long, default_value_t = 2000)]
        agents: usize,
        /// Seconds to run after all are connected, appending one outcome per agent per 10 s.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// RSS, CPU and binary size of one agent at default intervals, side by side with
    /// Prometheus node_exporter scraped every 15 s.
    AgentFootprint {
        /// Seconds to observe.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        /// The node_exporter binary (Debian package prometheus-node-exporter).
        #[arg(long, default_value = "/usr/bin/prometheus-node-exporter")]
        node_exporter: std::path::PathBuf,
    },
    /// Reconnect storm: N real agents started in the same instant.
    Storm {
        /// Agents.
        #[arg(long, default_value_t = 3000)]
        agents: usize,
        /// Switch admission control off (for comparison).
        #[arg(long)]
        budget_off: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        limit_secs: u64,
    },
    /// N raw agents held connected at default intervals.
    Connections {
        /// Agents.
        #[arg(long, default_value_t = 100_000)]
        agents: usize,
        /// Client endpoints (UDP sockets).
        #[arg(long, default_value_t = 64)]
        endpoints: usize,
        /// New agents started per second (all processes together).
        #[arg(long, default_value_t = 300)]
        ramp_per_sec: u64,
        /// Seconds measured once all are connected (after one network-sample interval).
        #[arg(long, default_value_t = 120)]
        seconds: u64,
        /// Give up connecting after this many seconds.
        #[arg(long, default_value_t = 900)]
        limit_secs: u64,
        /// Load generator processes (this binary re-executed as `connections-worker`), each
        /// with its own slice of the agents and of the endpoints.
        #[arg(long, default_value_t = 4)]
        procs: usize,
        /// Niceness of the load generator processes: the collector under test, which shares
        /// the machine's cores with them, gets the CPU first.
        #[arg(long, default_value_t = 10)]
        nice: u8,
        /// TOML lines added to the collector's `[quic]` section (to measure a setting other
        /// than the default), e.g. `keep_alive_interval_secs = 15`.
        #[arg(long, default_value = "")]
        collector_quic: String,
        /// TOML lines added to the collector's `[ingest]` section.
        #[arg(long, default_value = "")]
        collector_ingest: String,
    },
    /// One load generator process of `connections` (started by it; not for direct use).
    #[command(hide = true)]
    ConnectionsWorker {
        /// The collector's QUIC address.
        #[arg(long)]
        quic: SocketAddr,
        /// The fleet PKI directory.
        #[arg(long)]
        pki: std::path::PathBuf,
        /// First agent index.
        #[arg(long)]
        first: usize,
        /// Agents.
        #[arg(long)]
        count: usize,
        /// Client endpoints (UDP sockets).
        #[arg(long)]
        endpoints: usize,
        /// New agents started per second.
        #[arg(long)]
        ramp_per_sec: f64,
    },
    /// Backlog drain after an outage.
    Drain {
        /// Agents.
        #[arg(long, default_value_t = 20_000)]
        agents: usize,
        /// Outage length, seconds (the backlog each agent holds).
        #[arg(long, default_value_t = 3600)]
        outage_secs: u64,
        /// One payment outcome every this many seconds during the outage.
        #[arg(long, default_value_t = 10)]
        txn_every_secs: u64,
        /// The agents' backoff cap, seconds (reached during a long outage).
        #[arg(long, default_value_t = 60)]
        backoff_max_secs: u64,
        /// Client endpoints (UDP sockets).
        #[arg(long, default_value_t = 32)]
        endpoints: usize,
    },
}

fn label(s: &str) -> Label {
    Label::new(s).expect("static label is valid")
}

fn hello(terminal: &str) -> Result<Hello> {
    Ok(Hello {
        protocol_version: storepulse_shared::PROTOCOL_VERSION,
        agent_version: "bench".into(),
        spool_epoch: rand::random(),
        identity: Identity {
            terminal_id: TerminalId::new(terminal)?,
            merchant_id: label("M1"),
            store_id: label(terminal),
            region: label("east"),
            city: label("shanghai"),
            acquirer: label("acq-a"),
            qr_channel: label("wechatpay"),
            carrier: label("cmcc"),
            link: LinkType::Wifi,
            model: label("P300"),
            firmware: label("2.3.1"),
            app_version: label("5.0.2"),
        },
        agent_time_unix_ms: storepulse_tests::load::now_ms(),
    })
}

fn batch(batch_id: u64, first_seq: u64, n: usize) -> Message {
    let records = (0..n as u64)
        .map(|i| Record {
            seq: Seq(first_seq + i),
            time_unix_ms: 1_700_000_000_000 + (first_seq + i) as i64,
            body: RecordBody::TxnOutcome(TxnOutcome {
                scheme: Scheme::Cup,
                code: if i % 50 == 0 {
                    "51".into()
                } else {
                    "00".into()
                },
                latency_ms: 300 + (i as u32 % 200),
                method: if i % 3 == 0 {
                    PayMethod::Qr
                } else {
                    PayMethod::Card
                },
                route: Some(label("acq-a")),
            }),
        })
        .collect();
    Message::Batch(Batch { batch_id, records })
}

/// The load every simulated agent applies.
#[derive(Debug, Clone)]
struct Load {
    addr: SocketAddr,
    batch_len: usize,
    in_flight: usize,
    stop: Instant,
    acked: Arc<AtomicU64>,
    /// Time between one agent's batches; `None`: as fast as its acks allow.
    pace: Option<Duration>,
    /// Paced batches skipped because `in_flight` batches were still unacked.
    late: Arc<AtomicU64>,
}

/// One simulated agent: keeps `in_flight` batches outstanding until `stop`, or (paced) sends
/// one batch every `pace`, starting after `phase`.
async fn run_agent(
    conn_cfg: quinn::ClientConfig,
    ep: quinn::Endpoint,
    terminal: String,
    load: Load,
    phase: Duration,
) -> Result<()> {
    let Load {
        addr,
        batch_len,
        in_flight,
        stop,
        acked,
        pace,
        late,
    } = load;
    let stop = tokio::time::Instant::from_std(stop);
    let mut c = RawConn::connect(&ep, conn_cfg, addr).await?;
    c.send(&Message::Hello(hello(&terminal)?)).await?;
    match c.recv().await? {
        Some(Message::Welcome(_)) => {}
        other => bail!("{terminal}: expected Welcome, got {other:?}"),
    }
    let mut next_batch = 1u64;
    let mut next_seq = 0u64;
    let mut outstanding = 0usize;
    let mut next_send = tokio::time::Instant::now() + phase;
    loop {
        let now = tokio::time::Instant::now();
        match pace {
            None => {
                while outstanding < in_flight && now < stop {
                    c.send(&batch(next_batch, next_seq, batch_len)).await?;
                    next_batch += 1;
                    next_seq += batch_len as u64;
                    outstanding += 1;
                }
            }
            Some(pace) => {
                while next_send <= now && now < stop {
                    if outstanding < in_flight {
                        c.send(&batch(next_batch, next_seq, batch_len)).await?;
                        next_batch += 1;
                        next_seq += batch_len as u64;
                        outstanding += 1;
                    } else {
                        late.fetch_add(1, Ordering::Relaxed);
                    }
                    next_send += pace;
                }
            }
        }
        if outstanding == 0 {
            if now >= stop {
                break;
            }
            tokio::time::sleep_until(next_send.min(stop)).await;
            continue;
        }
        let wake = if pace.is_some() && next_send < stop {
            next_send
        } else {
            // Only acks matter now: a wake-up that never comes first.
            now + Duration::from_secs(3600)
        };
        tokio::select! {
            m = c.recv() => match m? {
                Some(Message::Ack(_)) => {
                    outstanding -= 1;
                    acked.fetch_add(batch_len as u64, Ordering::Relaxed);
                }
                other => bail!("{terminal}: expected Ack, got {other:?}"),
            },
            () = tokio::time::sleep_until(wake) => {}
        }
    }
    c.conn.close(0u32.into(), b"done");
    Ok(())
}

/// One ingest run's settings.
#[derive(Debug, Clone)]
struct IngestSpec {
    agents: usize,
    batch_len: usize,
    in_flight: usize,
    seconds: u64,
    endpoints: usize,
    /// `taskset -c` list for the collector.
    cpus: Option<String>,
    /// Offered records/s over all agents (paced); `None`: as fast as acks come back.
    rate: Option<u64>,
    /// TOML sections appended to the collector's config.
    collector_toml: String,
}

/// What one ingest run measured.
#[derive(Debug, Clone)]
struct IngestResult {
    acked_per_sec: f64,
    collector_cpu: f64,
    generator_cpu: f64,
    peak_rss: u64,
    stages: stages::Stages,
    secs: f64,
    acked_total: u64,
    stored: u64,
    failed: usize,
    late: u64,
}

/// Terminal ids of the simulated agents, with certificates issued in `pki`.
fn load_terminals(pki: &Pki, agents: usize) -> Result<Vec<String>> {
    let terminals: Vec<String> = (0..agents).map(|i| format!("LOAD{i:05}")).collect();
    pki.issue_many(&terminals)?;
    Ok(terminals)
}

/// Starts a collector in `dir`, runs the load for a 3 s warm-up and `spec.seconds` measured,
/// checks every acked record was stored, stops the collector.
async fn ingest_once(
    dir: &std::path::Path,
    pki: &Pki,
    terminals: &[String],
    spec: &IngestSpec,
) -> Result<IngestResult> {
    let mut collector = Collector::start_custom(
        dir,
        pki,
        30,
        60,
        spec.collector_toml.clone(),
        spec.cpus.clone(),
    )
    .await?;
    let pid = collector.pid().context("collector pid")?;
    let me = std::process::id();
    let eps: Vec<quinn::Endpoint> = (0..spec.endpoints.max(1))
        .map(|_| endpoint())
        .collect::<Result<_>>()?;
    let acked = Arc::new(AtomicU64::new(0));
    let late = Arc::new(AtomicU64::new(0));
    let warmup = Duration::from_secs(3);
    let stop = Instant::now() + warmup + Duration::from_secs(spec.seconds);
    let pace = spec.rate.map(|rate| {
        Duration::from_secs_f64(
            spec.batch_len as f64 * terminals.len() as f64 / (rate.max(1) as f64),
        )
    });
    let load = Load {
        addr: collector.quic_addr(),
        batch_len: spec.batch_len,
        in_flight: spec.in_flight,
        stop,
        acked: acked.clone(),
        pace,
        late: late.clone(),
    };
    let mut tasks = Vec::new();
    for (i, t) in terminals.iter().enumerate() {
        let cfg = client_config(&pki.ca(), &pki.cert(t), &pki.key(t))?;
        // Paced agents start spread over one interval, so the offered load is smooth.
        let phase = pace.map_or(Duration::ZERO, |p| {
            p.mul_f64(i as f64 / terminals.len() as f64)
        });
        tasks.push(tokio::spawn(run_agent(
            cfg,
            eps[i % eps.len()].clone(),
            t.clone(),
            load.clone(),
            phase,
        )));
    }
    tokio::time::sleep(warmup).await;
    let m0 = stages::Scrape::parse(&collector.metrics_text().await?);
    let a0 = acked.load(Ordering::Relaxed);
    let cpu0 = procstat::read(pid)?.cpu_secs;
    let gen0 = procstat::read(me)?.cpu_secs;
    let t0 = Instant::now();
    let mut peak_rss = 0u64;
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_millis(500).min(stop - Instant::now().min(stop))).await;
        peak_rss = peak_rss.max(procstat::read(pid)?.rss_bytes);
    }
    let a1 = acked.load(Ordering::Relaxed);
    let m1 = stages::Scrape::parse(&collector.metrics_text().await?);
    let secs = t0.elapsed().as_secs_f64();
    let collector_cpu = (procstat::read(pid)?.cpu_secs - cpu0) / secs;
    let generator_cpu = (procstat::read(me)?.cpu_secs - gen0) / secs;
    let mut failed = 0;
    for t in tasks {
        if let Err(e) = t.await? {
            failed += 1;
            eprintln!("agent failed: {e:#}");
        }
    }
    let stored = collector
        .terminals()
        .await?
        .iter()
        .filter_map(|t| t["records_received"].as_u64())
        .sum::<u64>();
    collector.stop()?;
    let acked_total = acked.load(Ordering::Relaxed);
    if stored < acked_total {
        bail!("collector stored {stored} records but acked {acked_total}");
    }
    Ok(IngestResult {
        acked_per_sec: (a1 - a0) as f64 / secs,
        collector_cpu,
        generator_cpu,
        peak_rss,
        stages: stages::Window::new(m0, m1, secs).stages(),
        secs,
        acked_total,
        stored,
        failed,
        late: late.load(Ordering::Relaxed),
    })
}

fn print_ingest(spec: &IngestSpec, r: &IngestResult) {
    println!(
        "ingest: {} agents, batch {}, {} in flight per agent, {} client endpoints; collector on CPUs {}; {}",
        spec.agents,
        spec.batch_len,
        spec.in_flight,
        spec.endpoints,
        spec.cpus.as_deref().unwrap_or("any"),
        match spec.rate {
            Some(rate) => format!("offered {rate} records/s (paced)"),
            None => "as fast as acks allow".to_owned(),
        }
    );
    println!(
        "  acked records/s (durable, fsync'd group commit): {:.0}",
        r.acked_per_sec
    );
    println!(
        "  collector CPU: {:.2} cores; peak RSS {:.1} MiB; load generator CPU: {:.2} cores",
        r.collector_cpu,
        r.peak_rss as f64 / (1 << 20) as f64,
        r.generator_cpu
    );
    print!("{}", r.stages.render(r.secs));
    println!(
        "  records stored in total: {}; acked in total: {}; failed agents: {}; paced batches skipped (in flight full): {}",
        r.stored, r.acked_total, r.failed, r.late
    );
}

async fn ingest(spec: IngestSpec) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::init(&tmp.path().join("pki"))?;
    let terminals = load_terminals(&pki, spec.agents)?;
    let r = ingest_once(&tmp.path().join("c"), &pki, &terminals, &spec).await?;
    print_ingest(&spec, &r);
    Ok(())
}

/// The collector pinned to each CPU set in turn: its peak, then a paced run at `fraction` of
/// that peak; a side-by-side table at the end.
async fn ingest_scaling(base: IngestSpec, cpu_sets: &[String], fraction: f64) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::init(&tmp.path().join("pki"))?;
    let terminals = load_terminals(&pki, base.agents)?;
    let mut rows = Vec::new();
    for (i, cpus) in cpu_sets.iter().enumerate() {
        let peak_spec = IngestSpec {
            cpus: Some(cpus.clone()),
            rate: None,
            ..base.clone()
        };
        let peak = ingest_once(
            &tmp.path().join(format!("peak{i}")),
            &pki,
            &terminals,
            &peak_spec,
        )
        .await?;
        print_ingest(&peak_spec, &peak);
        let paced_spec = IngestSpec {
            rate: Some((peak.acked_per_sec * fraction) as u64),
            ..peak_spec.clone()
        };
        let paced = ingest_once(
            &tmp.path().join(format!("paced{i}")),
            &pki,
            &terminals,
            &paced_spec,
        )
        .await?;
        print_ingest(&paced_spec, &paced);
        rows.push((cpus.clone(), peak, paced));
    }
    println!();
    println!(
        "| collector CPUs | peak acked records/s | collector CPU | ack p50 / p99 at peak | records/group | commit ms/group | {:.0} % of peak: acked records/s | ack p50 / p99 |",
        fraction * 100.0
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (cpus, peak, paced) in &rows {
        let s = &peak.stages;
        let groups = (s.groups_per_sec * peak.secs).max(1.0);
        let commit = s
            .writer_secs
            .iter()
            .find(|(st, _)| st == "commit")
            .map_or(0.0, |(_, v)| *v);
        println!(
            "| {cpus} | {:.0} | {:.2} cores | {:.1} / {:.1} ms | {:.0} | {:.2} | {:.0} | {:.1} / {:.1} ms |",
            peak.acked_per_sec,
            peak.collector_cpu,
            s.ack_p50 * 1e3,
            s.ack_p99 * 1e3,
            s.records_per_group,
            1e3 * commit / groups,
            paced.acked_per_sec,
            paced.stages.ack_p50 * 1e3,
            paced.stages.ack_p99 * 1e3
        );
    }
    Ok(())
}

/// node_exporter on a loopback port, scraped like Prometheus would.
struct NodeExporter {
    child: std::process::Child,
    url: String,
}

impl NodeExporter {
    fn start(bin: &std::path::Path) -> Result<Self> {
        let port = storepulse_tests::free_tcp_port();
        let child = std::process::Command::new(bin)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "start {} (apt-get install prometheus-node-exporter)",
                    bin.display()
                )
            })?;
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}/metrics"),
        })
    }

    async fn scrape(&self, http: &reqwest::Client) -> Result<usize> {
        Ok(http
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?
            .len())
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn agent_footprint(seconds: u64, node_exporter: &std::path::Path) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::init(&tmp.path().join("pki"))?;
    pki.issue("FOOT1")?;
    // Default intervals: 30 s heartbeats, 60 s network probes.
    let collector = Collector::start_with_intervals(&tmp.path().join("c"), &pki, 30, 60).await?;
    let mut spec = AgentSpec::new("FOOT1", &pki, collector.quic_addr());
    spec.heartbeat_interval_secs = 30;
    spec.net_probe_interval_secs = 60;
    let mut agent = Agent::start(&tmp.path().join("a"), spec).await?;
    let pid = agent.pid().context("agent pid")?;
    let ne = NodeExporter::start(node_exporter)?;
    let ne_pid = ne.child.id();
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(5)).await;
    ne.scrape(&http)
        .await
        .context("node_exporter does not answer")?;
    let start = procstat::read(pid)?;
    let ne_start = procstat::read(ne_pid)?;
    let t0 = Instant::now();
    let mut peak = start.rss_bytes;
    let mut ne_peak = ne_start.rss_bytes;
    let mut n = 0u64;
    let mut scraped = 0usize;
    // A busy shop: one payment every 10 s; node_exporter scraped every 15 s (a common
    // Prometheus scrape_interval; Prometheus's own default is 60 s).
    let mut next_post = tokio::time::Instant::now();
    let mut next_scrape = tokio::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(seconds) {
        if tokio::time::Instant::now() >= next_post {
            agent.post_markers([n]).await?;
            n += 1;
            next_post += Duration::from_secs(10);
        }
        if tokio::time::Instant::now() >= next_scrape {
            scraped = ne.scrape(&http).await?;
            next_scrape += Duration::from_secs(15);
        }
        tokio::time::sleep_until(next_post.min(next_scrape)).await;
        peak = peak.max(procstat::read(pid)?.rss_bytes);
        ne_peak = ne_peak.max(procstat::read(ne_pid)?.rss_bytes);
    }
    let end = procstat::read(pid)?;
    let ne_end = procstat::read(ne_pid)?;
    let elapsed = t0.elapsed().as_secs_f64();
    agent.stop()?;
    drop(ne);
    let size = std::fs::metadata(bin_dir().join("storepulse-agent"))?.len();
    let ne_size = std::fs::metadata(node_exporter)?.len();
    println!(
        "agent footprint over {elapsed:.0} s at default intervals (30 s heartbeat, 60 s net probe, 1 payment / 10 s):"
    );
    println!(
        "  RSS: {:.1} MiB at end, {:.1} MiB peak",
        end.rss_bytes as f64 / (1 << 20) as f64,
        peak as f64 / (1 << 20) as f64
    );
    println!(
        "  CPU: {:.2} s per hour",
        (end.cpu_secs - start.cpu_secs) / elapsed * 3600.0
    );
    println!(
        "  binary ({}): {:.1} MiB",
        bin_dir().join("storepulse-agent").display(),
        size as f64 / (1 << 20) as f64
    );
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    let per_h = |a: f64, b: f64| (b - a) / elapsed * 3600.0;
    println!(
        "side by side over the same {elapsed:.0} s (node_exporter {} with its default collectors, scraped every 15 s, {scraped} bytes per scrape):",
        node_exporter.display()
    );
    println!("  | | RSS end / peak | CPU s per hour | binary |");
    println!("  |---|---|---|---|");
    println!(
        "  | storepulse-agent | {:.1} / {:.1} MiB | {:.2} | {:.1} MiB |",
        mb(end.rss_bytes),
        mb(peak),
        per_h(start.cpu_secs, end.cpu_secs),
        mb(size)
    );
    println!(
        "  | prometheus-node-exporter | {:.1} / {:.1} MiB | {:.2} | {:.1} MiB |",
        mb(ne_end.rss_bytes),
        mb(ne_peak),
        per_h(ne_start.cpu_secs, ne_end.cpu_secs),
        mb(ne_size)
    );
    Ok(())
}

async fn live_fleet(n: usize, seconds: u64) -> Result<()> {
    use storepulse_agent_core::NewRecord;
    use storepulse_collector::config::{Config, TlsConfig};
    use storepulse_tests::live::{LiveFleet, LiveUplink};

    let tmp = tempfile::tempdir()?;
    let pki = tmp.path().join("pki");
    storepulse_collector::pki::init(&pki, storepulse_collector::pki::DEFAULT_SERVER_NAME)?;
    let mut config = Config::with_defaults(TlsConfig::from_pki_dir(&pki), tmp.path().join("store"));
    config.quic.listen = "127.0.0.1:0".parse()?;
    config.http.listen = "127.0.0.1:0".parse()?;
    let collector = storepulse_collector::start(config).await?;
    let ids: Vec<Identity> = (0..n)
        .map(|i| {
            let mut h = hello(&format!("LF{i:06}"))?;
            h.identity.store_id = label(&format!("S{}", i / 3));
            Ok(h.identity)
        })
        .collect::<Result<_>>()?;
    let t0 = Instant::now();
    let fleet = LiveFleet::start(
        &tmp.path().join("agents"),
        &pki,
        collector.quic_addr(),
        &ids,
        LiveUplink::default(),
    )
    .await?;
    let opened = t0.elapsed();
    let http = reqwest::Client::new();
    let url = format!(
        "http://{}/api/v1/terminals?state=online&limit=1",
        collector.http_addr()
    );
    loop {
        let v: serde_json::Value = http.get(&url).send().await?.json().await?;
        let online = v["total"].as_u64().map_or(0, |n| n as usize);
        if online >= n {
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("only {online} of {n} online after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let connected = t0.elapsed();
    let me = std::process::id();
    let s0 = procstat::read(me)?;
    let t1 = Instant::now();
    let mut round = 0u32;
    while t1.elapsed() < Duration::from_secs(seconds) {
        for t in fleet.terminals() {
            let rec = NewRecord {
                time_unix_ms: 1_700_000_000_000,
                body: RecordBody::TxnOutcome(TxnOutcome {
                    scheme: Scheme::Cup,
                    code: "00".into(),
                    latency_ms: round,
                    method: PayMethod::Card,
                    route: None,
                }),
            };
            fleet.append(t, vec![rec]).await?;
        }
        round += 1;
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let s1 = procstat::read(me)?;
    println!("live fleet: {n} real agents in one process + in-process collector");
    println!(
        "  spools opened and certificates issued in {:.1} s; all online after {:.1} s",
        opened.as_secs_f64(),
        connected.as_secs_f64()
    );
    println!(
        "  process RSS {:.0} MiB; CPU {:.2} cores while appending one outcome per agent per 10 s",
        s1.rss_bytes as f64 / (1 << 20) as f64,
        (s1.cpu_secs - s0.cpu_secs) / t1.elapsed().as_secs_f64()
    );
    fleet.shutdown().await;
    collector.shutdown().await?;
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // A load generator process of `connections` runs on one thread: several of them share the
    // machine's cores with the collector under test.
    let runtime = if matches!(cli.cmd, Cmd::ConnectionsWorker { .. }) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Ingest {
            agents,
            batch,
            in_flight,
            seconds,
            endpoints,
            cpus,
            rate,
            collector_toml,
        } => {
            ingest(IngestSpec {
                agents,
                batch_len: batch,
                in_flight,
                seconds,
                endpoints,
                cpus,
                rate,
                collector_toml,
            })
            .await
        }
        Cmd::IngestScaling {
            agents,
            batch,
            in_flight,
            seconds,
            endpoints,
            cpu_sets,
            fraction,
            collector_toml,
        } => {
            let base = IngestSpec {
                agents,
                batch_len: batch,
                in_flight,
                seconds,
                endpoints,
                cpus: None,
                rate: None,
                collector_toml,
            };
            ingest_scaling(base, &cpu_sets, fraction).await
        }
        Cmd::AgentFootprint {
            seconds,
            node_exporter,
        } => agent_footprint(seconds, &node_exporter).await,
        Cmd::Storm {
            agents,
            budget_off,
            limit_secs,
        } => scale::storm(agents, budget_off, limit_secs).await,
        Cmd::Connections {
            agents,
            endpoints,
            ramp_per_sec,
            seconds,
            limit_secs,
            procs,
            nice,
            collector_quic,
            collector_ingest,
        } => {
            let load = scale::LoadProcs {
                procs,
                nice,
                quic_extra: collector_quic,
                ingest_extra: collector_ingest,
            };
            scale::connections(agents, endpoints, ramp_per_sec, seconds, limit_secs, load).await
        }
        Cmd::ConnectionsWorker {
            quic,
            pki,
            first,
            count,
            endpoints,
            ramp_per_sec,
        } => scale::connections_worker(quic, &pki, first, count, endpoints, ramp_per_sec).await,
        Cmd::Drain {
            agents,
            outage_secs,
            txn_every_secs,
            backoff_max_secs,
            endpoints,
        } => {
            scale::drain(
                agents,
                outage_secs,
                txn_every_secs,
                backoff_max_secs,
                endpoints,
            )
            .await
        }
        Cmd::LiveFleet { agents, seconds } => live_fleet(agents, seconds).await,
    }
}
