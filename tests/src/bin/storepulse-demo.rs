//! The demo: a collector with its embedded store and a dev PKI, plus a simulated fleet of real
//! agents (the agent library, one redb spool and one QUIC connection each) on loopback, playing
//! a scripted scenario on the wall clock. Ctrl-C stops everything cleanly.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use storepulse_collector::config::{Config, TlsConfig};
use storepulse_sim::Scenario;
use storepulse_tests::live::{LiveFleet, LiveUplink};
use storepulse_tests::replay::{Timeline, play};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(about = "storepulse demo: collector + simulated fleet of real agents over QUIC")]
struct Args {
    /// Scenario to play.
    #[arg(long, default_value = "tests/demo/lunch-rush.toml")]
    scenario: PathBuf,
    /// Working directory (PKI, store, spools); wiped at start.
    #[arg(long, default_value = "demo-data")]
    data: PathBuf,
    /// Playback speed (virtual seconds per real second).
    #[arg(long, default_value_t = 10.0)]
    speed: f64,
    /// Collector HTTP address (API and dashboard).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: std::net::SocketAddr,
    /// Collector QUIC address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    quic: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // Thousands of in-process agents would drown the terminal in link warnings.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,storepulse_agent=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let scenario = Scenario::from_file(&args.scenario).map_err(|e| anyhow::anyhow!("{e}"))?;

    if args.data.exists() {
        std::fs::remove_dir_all(&args.data)
            .with_context(|| format!("wiping {}", args.data.display()))?;
    }
    let pki = args.data.join("pki");
    storepulse_collector::pki::init(&pki, storepulse_collector::pki::DEFAULT_SERVER_NAME)?;
    let mut config = Config::with_defaults(TlsConfig::from_pki_dir(&pki), args.data.join("store"));
    config.quic.listen = args.quic;
    config.http.listen = args.http;
    let collector = storepulse_collector::start(config)
        .await
        .context("starting the collector")?;

    println!(
        "==> simulating {} ({} terminals) in virtual time",
        scenario.name,
        scenario.fleet.terminals.len()
    );
    let t = Instant::now();
    let timeline = Timeline::record(&scenario);
    println!(
        "    {} observations scheduled in {:.1} s",
        timeline.observations(),
        t.elapsed().as_secs_f64()
    );

    println!(
        "==> starting {} real agents (certificates, spools, QUIC connections)",
        scenario.fleet.terminals.len()
    );
    let ids: Vec<_> = scenario
        .fleet
        .terminals
        .iter()
        .map(|t| t.identity.clone())
        .collect();
    let uplink = LiveUplink {
        start_spread_ms: 20_000,
        ..LiveUplink::default()
    };
    let mut fleet = LiveFleet::start(
        &args.data.join("agents"),
        &pki,
        collector.quic_addr(),
        &ids,
        uplink,
    )
    .await?;

    let http = collector.http_addr();
    println!();
    println!("storepulse demo is running / 演示运行中");
    println!("  dashboard / 控制台:        http://{http}/");
    println!("  terminals API / 终端接口:  http://{http}/api/v1/terminals");
    println!("  health:                    http://{http}/healthz");
    let minutes = (scenario.duration_ms as f64 / 1000.0 / args.speed / 60.0).ceil();
    println!(
        "  timeline: {} at {}x, about {minutes} minutes. Ctrl-C stops. / 按 Ctrl-C 停止",
        scenario.name, args.speed
    );
    println!();
    println!("Scripted incidents (ground truth) / 预设故障:");
    for i in &scenario.incidents {
        let scope: Vec<String> = i
            .scope
            .pairs()
            .map(|(k, v)| format!("{}={v}", k.as_str()))
            .collect();
        println!(
            "  {} .. {}  {:<22} {}",
            scenario.format_time(i.start_ms),
            scenario.format_time(i.end_ms),
            i.kind.as_str(),
            scope.join(",")
        );
    }
    println!();

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_tx.send(true);
    });
    let mut last_print = Instant::now();
    let stats = play(
        &timeline,
        &mut fleet,
        args.speed,
        scenario.start_ms,
        Duration::from_millis(200),
        stop_rx,
        |now, s| {
            if last_print.elapsed() >= Duration::from_secs(15) {
                last_print = Instant::now();
                println!(
                    "  [{}] {} observations sent to agents, {} link cuts",
                    scenario.format_time(now),
                    s.observed,
                    s.cuts
                );
            }
        },
    )
    .await?;
    println!();
    println!(
        "==> stopping ({} observations played{})",
        stats.observed,
        if stats.stopped { ", interrupted" } else { "" }
    );
    fleet.shutdown().await;
    collector.shutdown().await?;
    println!("==> stopped cleanly; data kept in {}", args.data.display());
    Ok(())
}
