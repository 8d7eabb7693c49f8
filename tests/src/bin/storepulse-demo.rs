//! The demo: a collector with its embedded store and a dev PKI, plus a simulated fleet of real
//! agents (the agent library, one redb spool and one QUIC connection each) on loopback, playing
//! a scripted scenario on the wall clock, then carrying on without faults (so incidents can be
//! seen to resolve) until Ctrl-C, which stops everything within a few seconds.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use storepulse_collector::config::{Config, TlsConfig};
use storepulse_sim::Scenario;
use storepulse_tests::demo::{self, Clock, IncidentWatcher, ScriptPrinter, local_hms};
use storepulse_tests::live::{LiveFleet, LiveUplink};
use storepulse_tests::replay::{PlayStats, Timeline, play, wall_ms};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(about = "storepulse demo: collector + simulated fleet of real agents over QUIC")]
struct Args {
    /// Scenario to play.
    #[arg(long, default_value = "tests/demo/lunch-rush.toml")]
    scenario: PathBuf,
    /// Working directory (PKI, store, spools). Created and marked by the demo; a later run
    /// wipes it, but a non-empty directory the demo did not create is refused.
    #[arg(long, default_value = "demo-data")]
    data: PathBuf,
    /// Playback speed (virtual seconds per real second).
    #[arg(long, default_value_t = 10.0)]
    speed: f64,
    /// Collector HTTP address (API and dashboard); the bundled Prometheus example scrapes
    /// 127.0.0.1:8080. Port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: std::net::SocketAddr,
    /// Collector QUIC address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    quic: std::net::SocketAddr,
}

/// How long the agents get to say goodbye on Ctrl-C before the collector stops regardless.
const GOODBYE_BUDGET: Duration = Duration::from_secs(2);
/// How long the agents' spools get to close (each fsyncs once more).
const CLOSE_BUDGET: Duration = Duration::from_millis(1500);

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // Thousands of in-process agents would drown the terminal in link warnings.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,storepulse_agent=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.speed.is_finite() && args.speed > 0.0,
        "--speed must be a positive number"
    );
    let scenario = Scenario::from_file(&args.scenario).map_err(|e| anyhow::anyhow!("{e}"))?;
    demo::prepare_data_dir(&args.data)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(run(args, scenario));
    // Spool writes still running in the blocking pool are fsync'd transactions: each commits
    // or not. Do not wait for stragglers beyond a moment.
    rt.shutdown_timeout(Duration::from_millis(300));
    if let Err(e) = &result {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
    // Everything that matters is closed (the collector's store flushed, the spools closed or
    // crash-safe): skip freeing the fleet's memory piece by piece, which took seconds with
    // 3,000 agents on a loaded machine.
    std::process::exit(0)
}

/// When the first SIGINT or SIGTERM arrived.
static STOP_REQUESTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Turns `stop` true on the first SIGINT or SIGTERM; a second one exits at once.
fn watch_signals(stop: watch::Sender<bool>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            eprintln!("cannot watch SIGINT/SIGTERM");
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if n > 0 {
                eprintln!("second interrupt: exiting at once");
                std::process::exit(130);
            }
            let _ = STOP_REQUESTED.set(Instant::now());
            println!();
            println!("==> stopping / 正在停止 (Ctrl-C again to exit at once)");
            let _ = stop.send(true);
        }
    });
}

async fn run(args: Args, scenario: Scenario) -> Result<()> {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    watch_signals(stop_tx);

    let pki = args.data.join("pki");
    storepulse_collector::pki::init(&pki, storepulse_collector::pki::DEFAULT_SERVER_NAME)?;
    let mut config = Config::with_defaults(TlsConfig::from_pki_dir(&pki), args.data.join("store"));
    config.quic.listen = args.quic;
    config.http.listen = args.http;
    // The timeline plays `speed` times faster than real time: the heartbeats detection expects
    // arrive that much more often, and its hold before it calls an incident over (5 minutes)
    // is scaled the same way.
    // (Detection assumes the heartbeat interval agents are told in `Welcome`; the demo's
    // agents run no probes, the timeline plays their heartbeats.)
    let heartbeat_ms = demo::scaled_ms(
        i64::from(scenario.heartbeat_interval_secs) * 1000,
        args.speed,
        1000,
    );
    config.agents.heartbeat_interval_secs = u32::try_from(heartbeat_ms / 1000).unwrap_or(1);
    config.detect.resolve_hold_ms = demo::resolve_hold_ms(args.speed);
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
        // A fleet powers on over a while, not in one instant (20 s for 3,000 terminals).
        start_spread_ms: (ids.len() as u64 * 7).min(20_000),
        ..LiveUplink::default()
    };
    let agents_dir = args.data.join("agents");
    let started = tokio::select! {
        f = LiveFleet::start(&agents_dir, &pki, collector.quic_addr(), &ids, uplink) => Some(f?),
        _ = stop_rx.wait_for(|s| *s) => None,
    };
    let Some(mut fleet) = started else {
        collector.shutdown().await?;
        println!("==> stopped before the fleet was up");
        return Ok(());
    };

    let http = collector.http_addr();
    let clock = Clock {
        virtual0_ms: scenario.start_ms,
        wall0_ms: wall_ms(),
        speed: args.speed,
    };
    let minutes = (scenario.duration_ms as f64 / 1000.0 / args.speed / 60.0).ceil();
    println!();
    println!("storepulse demo is running / 演示运行中");
    println!("  dashboard / 控制台:        http://{http}/");
    println!("  terminals API / 终端接口:  http://{http}/api/v1/terminals");
    println!("  health:                    http://{http}/healthz");
    println!(
        "  timeline: {} at {}x, about {minutes} minutes, then the fleet carries on without faults \
         until Ctrl-C / 时间线结束后终端继续正常运行，按 Ctrl-C 停止",
        scenario.name, args.speed
    );
    println!(
        "  times below are wall-clock, {} (as the dashboard shows them) / 以下为本地时间",
        demo::local_zone_name()
    );
    println!();
    println!("Scripted faults (ground truth) / 预设故障:");
    for line in demo::schedule_lines(&scenario, &clock) {
        println!("{line}");
    }
    println!(
        "Detection calls an incident over once its signal has gone for {} s (5 minutes of \
         scenario time), once recovery is shown (approvals after the last failure, or a calm \
         quarter hour).",
        demo::resolve_hold_ms(args.speed) / 1000
    );
    println!();

    let mut watcher = IncidentWatcher::new(http);
    let mut watch_stop = stop_rx.clone();
    let watch_task = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = watch_stop.wait_for(|s| *s) => return,
            }
            for line in watcher.poll().await {
                println!("{line}");
            }
        }
    });

    let mut script = ScriptPrinter::default();
    let mut last_print = Instant::now();
    let total_min = scenario.duration_ms / 60_000;
    let stats = play(
        &timeline,
        &mut fleet,
        args.speed,
        scenario.start_ms,
        Duration::from_millis(200),
        stop_rx.clone(),
        |now, s| {
            for line in script.step(&scenario, now) {
                println!("{line}");
            }
            if last_print.elapsed() >= Duration::from_secs(30) {
                last_print = Instant::now();
                progress(now - scenario.start_ms, total_min, s);
            }
        },
    )
    .await?;
    drop(timeline);
    let mut played = stats.observed;
    if !stats.stopped {
        println!(
            "[{}] timeline over / 时间线结束: the fleet carries on without faults until Ctrl-C",
            local_hms(wall_ms())
        );
        for n in 1.. {
            let part = demo::continuation(&scenario, n);
            let timeline = Timeline::record(&part);
            let s = play(
                &timeline,
                &mut fleet,
                args.speed,
                part.start_ms,
                Duration::from_millis(200),
                stop_rx.clone(),
                |_, _| {},
            )
            .await?;
            played += s.observed;
            if s.stopped {
                break;
            }
        }
    }

    let _ = stop_rx.wait_for(|s| *s).await;
    let t = STOP_REQUESTED.get().copied().unwrap_or_else(Instant::now);
    watch_task.abort();
    if tokio::time::timeout(GOODBYE_BUDGET, fleet.stop_links())
        .await
        .is_err()
    {
        println!(
            "    agents still saying goodbye after {GOODBYE_BUDGET:?}; stopping the collector"
        );
    }
    collector.shutdown().await?;
    if tokio::time::timeout(CLOSE_BUDGET, fleet.close())
        .await
        .is_err()
    {
        // redb spools are crash-safe: one left unclosed is only checked when next opened.
        println!("    agent spools still closing after {CLOSE_BUDGET:?}; leaving them");
    }
    println!(
        "==> stopped cleanly in {:.1} s ({played} observations played); data kept in {}",
        t.elapsed().as_secs_f64(),
        args.data.display()
    );
    Ok(())
}

fn progress(virtual_elapsed_ms: i64, total_min: i64, s: &PlayStats) {
    println!(
        "[{}] scenario +{}m of {total_min}m: {} observations sent to agents, {} link cuts",
        local_hms(wall_ms()),
        virtual_elapsed_ms / 60_000,
        s.observed,
        s.cuts
    );
}
