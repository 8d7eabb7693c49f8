//! Benchmark: do 10,000 garbage connections slow honest agents?
//!
//! Starts a real collector process, runs honest agents (one batch at a time, a pause between
//! batches) and measures their ack latency and acked records/s, first alone, then while
//! 10,000 garbage connections hit the collector (UDP junk, no client certificate, a certificate
//! from another CA, valid mTLS with garbage frames, slowloris; see `storepulse_tests::garbage`),
//! then alone again. The garbage comes from a second process of this binary, niced to the
//! lowest priority by default (`--garbage-nice`), since a real attacker's CPU is not on the
//! collector's machine. Prints the figures for BENCHMARKS.md ("Garbage connections").
//!
//! `cargo build --release --workspace --bins` then
//! `STOREPULSE_BIN_DIR=target/release target/release/garbage-bench`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use storepulse_tests::garbage::{
    Creds, Garbage, HonestLoad, Summary, honest_agent, metric, summarize,
};
use storepulse_tests::quic::{client_config, endpoint};
use storepulse_tests::{Collector, Pki, procstat};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    about = "Honest agents' ack latency and throughput with and without 10,000 garbage connections"
)]
struct Cli {
    /// Honest agents.
    #[arg(long, default_value_t = 50)]
    honest: usize,
    /// Records per honest batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Pause between an ack and the next batch, milliseconds.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Garbage connections in total, dealt round robin over the five kinds.
    #[arg(long, default_value_t = 10_000)]
    garbage: usize,
    /// Garbage connections in progress at once.
    #[arg(long, default_value_t = 1_000)]
    concurrency: usize,
    /// Seconds measured before and after the garbage.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Client UDP endpoints the garbage is spread over.
    #[arg(long, default_value_t = 16)]
    endpoints: usize,
    /// Niceness of the separate process that makes the garbage (0 to 19). The attacker's own
    /// CPU would be on other machines; on this one it competes with the collector and the
    /// honest agents, so by default it runs at the lowest priority. Use 0 to give it the same.
    #[arg(long, default_value_t = 19)]
    garbage_nice: u32,
    /// Internal: run as the garbage-making child process with these arguments.
    #[arg(long, hide = true, num_args = 5, value_names = ["ADDR", "CA", "VALID", "ROGUE_CERT", "ROGUE_KEY"])]
    child: Option<Vec<String>>,
}

fn line(name: &str, s: &Summary, cpu: f64) {
    println!(
        "  {name:<15} acks {:>6}  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  {:>8.0} records/s  collector CPU {:.2} cores",
        s.acks,
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3,
        s.max.as_secs_f64() * 1e3,
        s.records_per_sec,
        cpu,
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(args) = &cli.child {
        return child(&cli, args).await;
    }
    let tmp = tempfile::tempdir()?;
    let pki = Pki::init(&tmp.path().join("pki"))?;
    let honest: Vec<String> = (0..cli.honest).map(|i| format!("HONEST{i:04}")).collect();
    for t in &honest {
        pki.issue(t)?;
    }
    let junk: Vec<String> = (0..8).map(|i| format!("JUNK{i}")).collect();
    for t in &junk {
        pki.issue(t)?;
    }
    let rogue = Pki::init(&tmp.path().join("rogue"))?;
    rogue.issue("ROGUE")?;
    let mut collector =
        Collector::start_with_intervals(&tmp.path().join("c"), &pki, 30, 60).await?;
    let pid = collector.pid().context("collector pid")?;
    let addr = collector.quic_addr();
    let metrics_url = collector.url("/metrics");
    let scrape = || async {
        reqwest::get(&metrics_url)
            .await
            .context("scrape /metrics")?
            .text()
            .await
            .context("read /metrics")
    };

    let samples = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let load = HonestLoad {
        addr,
        batch_len: cli.batch,
        interval: Duration::from_millis(cli.interval_ms),
        ack_timeout: Duration::from_secs(30),
    };
    let honest_eps: Vec<quinn::Endpoint> = (0..4).map(|_| endpoint()).collect::<Result<_>>()?;
    let mut agents = Vec::new();
    for (i, t) in honest.iter().enumerate() {
        let cfg = client_config(&pki.ca(), &pki.cert(t), &pki.key(t))?;
        agents.push(tokio::spawn(honest_agent(
            cfg,
            honest_eps[i % honest_eps.len()].clone(),
            t.clone(),
            load.clone(),
            samples.clone(),
            stop_rx.clone(),
        )));
    }
    // Warm-up, then the baseline.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = |p| procstat::read(p).map(|s| s.cpu_secs);
    let base_from = Instant::now();
    let cpu0 = cpu(pid)?;
    tokio::time::sleep(Duration::from_secs(cli.seconds)).await;
    let base_to = Instant::now();
    let cpu1 = cpu(pid)?;
    let before = scrape().await?;

    let valid: Vec<String> = junk
        .iter()
        .map(|t| format!("{}={}", pki.cert(t).display(), pki.key(t).display()))
        .collect();
    let mut peak_rss = 0u64;
    let g_from = Instant::now();
    let child = std::process::Command::new("nice")
        .arg("-n")
        .arg(cli.garbage_nice.to_string())
        .arg(std::env::current_exe()?)
        .args(["--garbage", &cli.garbage.to_string()])
        .args(["--concurrency", &cli.concurrency.to_string()])
        .args(["--endpoints", &cli.endpoints.to_string()])
        .arg("--child")
        .arg(addr.to_string())
        .arg(pki.ca())
        .arg(valid.join(","))
        .arg(rogue.cert("ROGUE"))
        .arg(rogue.key("ROGUE"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("spawn the garbage process")?;
    let mut done = tokio::task::spawn_blocking(move || child.wait_with_output());
    let output = loop {
        tokio::select! {
            out = &mut done => break out??,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                peak_rss = peak_rss.max(procstat::read(pid)?.rss_bytes);
            }
        }
    };
    if !output.status.success() {
        anyhow::bail!("garbage process failed: {}", output.status);
    }
    let outcomes = String::from_utf8_lossy(&output.stdout).into_owned();
    let g_to = Instant::now();
    let cpu2 = cpu(pid)?;
    let after = scrape().await?;

    let after_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(cli.seconds)).await;
    let after_to = Instant::now();
    let cpu3 = cpu(pid)?;
    stop_tx.send(true)?;
    let mut failed = 0;
    for a in agents {
        if let Err(e) = a.await? {
            failed += 1;
            eprintln!("honest agent failed: {e:#}");
        }
    }
    collector.stop()?;

    let s = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let secs = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64();
    println!(
        "garbage-bench: {} honest agents ({} records per batch, one batch in flight, {} ms pause), {} garbage connections ({} at once)",
        cli.honest, cli.batch, cli.interval_ms, cli.garbage, cli.concurrency
    );
    line(
        "before",
        &summarize(&s, base_from, base_to),
        (cpu1 - cpu0) / secs(base_from, base_to),
    );
    line(
        "during garbage",
        &summarize(&s, g_from, g_to),
        (cpu2 - cpu1) / secs(base_to, g_to),
    );
    line(
        "after",
        &summarize(&s, after_from, after_to),
        (cpu3 - cpu2) / secs(g_to, after_to),
    );
    println!(
        "  garbage took {:.1} s; collector peak RSS {:.1} MiB; honest agents failed: {failed}",
        secs(g_from, g_to),
        peak_rss as f64 / (1 << 20) as f64
    );
    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    println!(
        "  collector counted: {} failed handshakes, refusals: {} protocol_error, {} frame_too_large, {} hello_timeout; admission: {} retry, {} queued, {} refused",
        delta("storepulse_ingest_handshakes_total{result=\"failed\"}"),
        delta("storepulse_ingest_refusals_total{reason=\"protocol_error\"}"),
        delta("storepulse_ingest_refusals_total{reason=\"frame_too_large\"}"),
        delta("storepulse_ingest_refusals_total{reason=\"hello_timeout\"}"),
        delta("storepulse_ingest_admission_total{action=\"retry\"}"),
        delta("storepulse_ingest_admission_total{action=\"queued\"}"),
        delta("storepulse_ingest_admission_total{action=\"refused\"}"),
    );
    println!(
        "  garbage outcomes (client side, process at nice {}):",
        cli.garbage_nice
    );
    print!("{outcomes}");
    Ok(())
}

/// The garbage process: makes `--garbage` garbage connections, `--concurrency` at once, and
/// prints how each kind ended.
async fn child(cli: &Cli, args: &[String]) -> Result<()> {
    let [addr, ca, valid, rogue_cert, rogue_key] = args else {
        anyhow::bail!("--child takes 5 arguments");
    };
    let creds = Creds {
        ca: ca.into(),
        valid: valid
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(c, k)| (c.into(), k.into()))
            .collect(),
        rogue: (rogue_cert.into(), rogue_key.into()),
    };
    // The collector closes a silent connection after its Hello timeout (10 s by default).
    let garbage = Arc::new(Garbage::new(
        &creds,
        addr.parse()?,
        cli.endpoints,
        Duration::from_secs(20),
    )?);
    let outcomes = garbage.run(cli.garbage, cli.concurrency, 48).await?;
    for ((kind, out), n) in &outcomes {
        println!("    {kind:?}: {out:?} x {n}");
    }
    Ok(())
}
