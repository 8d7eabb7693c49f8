//! Hostile-network benchmark: N real agents (redb spool, QUIC link, the agent's default uplink
//! settings) reach an in-process collector through the user-space impairment proxy
//! (`storepulse_tests::impair`; this machine's kernel has no netem), under four conditions in
//! turn, each with a fresh collector and fleet:
//!
//! - `loss`: 20 % packet loss both ways;
//! - `delay`: 300 ms ± 100 ms each way (uniform jitter, packets reorder), with ack latency;
//! - `partition`: nothing passes for `--partition-secs` (ten minutes by default);
//! - `rebind`: every agent's address changes every `--rebind-every-secs`.
//!
//! Agents generate marked records throughout; after each condition heals, the benchmark waits
//! for every spool to drain and prints per condition: records generated, stored, lost,
//! duplicated, the time to drain after the heal, and what the condition did to the network.
//! Every second it also checks that no record an agent saw acked is missing from the store.
//!
//! `cargo build --release -p storepulse-tests --bin hostile-bench && target/release/hostile-bench`

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};
use storepulse_tests::impair::{Impairment, Rig, ack_latency, percentile};
use storepulse_tests::live::LiveUplink;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Condition {
    Loss,
    Delay,
    Partition,
    Rebind,
}

#[derive(Debug, Parser)]
#[command(about = "storepulse under a hostile network: loss, delay, partition, address change")]
struct Cli {
    /// Agents per condition.
    #[arg(long, default_value_t = 50)]
    agents: usize,
    /// Records each agent generates per second.
    #[arg(long, default_value_t = 2)]
    rate: usize,
    /// How long loss, delay and rebind conditions last, seconds.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// How long the partition lasts, seconds.
    #[arg(long, default_value_t = 600)]
    partition_secs: u64,
    /// Seconds between address changes in the rebind condition.
    #[arg(long, default_value_t = 10)]
    rebind_every_secs: u64,
    /// Longest wait for the spools to drain after a heal, seconds.
    #[arg(long, default_value_t = 600)]
    drain_limit_secs: u64,
    /// Conditions to run (all by default).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Condition>,
    /// Seed of the proxy's loss and delay draws.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// The agent's own defaults (agent.example.toml): 1 s first backoff, 60 s cap, keep-alive
/// 15 s, idle timeout 60 s.
fn uplink() -> LiveUplink {
    LiveUplink {
        backoff_initial_ms: 1000,
        backoff_max_secs: 60,
        keep_alive_secs: 15,
        idle_timeout_secs: 60,
        ..LiveUplink::default()
    }
}

/// One condition's result line.
struct Outcome {
    condition: &'static str,
    generated: u64,
    stored: u64,
    lost: u64,
    duplicated: u64,
    counted: u64,
    drain: Duration,
    note: String,
}

async fn connected_all(rig: &Rig, n: usize) -> Result<Duration> {
    let t0 = Instant::now();
    while rig.connected() < n {
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("only {} of {n} agents connected", rig.connected());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(t0.elapsed())
}

async fn run(cli: &Cli, c: Condition, seed: u64) -> Result<Outcome> {
    let every = Duration::from_millis(1000);
    let span = Duration::from_secs(cli.seconds);
    let mut rig = Rig::start(cli.agents, seed, uplink(), Impairment::NONE).await?;
    connected_all(&rig, cli.agents).await?;
    let (condition, mut note) = match c {
        Condition::Loss => {
            rig.proxy.set_both(Impairment::loss(0.2));
            rig.generate(span, every, cli.rate).await?;
            let s = rig.proxy.stats();
            (
                "20% loss",
                format!(
                    "packets lost up {}/{}, down {}/{}",
                    s.up.lost, s.up.received, s.down.lost, s.down.received
                ),
            )
        }
        Condition::Delay => {
            rig.proxy.set_both(Impairment::delay(
                Duration::from_millis(300),
                Duration::from_millis(100),
            ));
            rig.generate(span, every, cli.rate).await?;
            let mut lat = Vec::new();
            let terminals: Vec<_> = rig.fleet.terminals().cloned().collect();
            for t in terminals.iter().cycle().take(100) {
                lat.push(
                    ack_latency(&mut rig.ledger, &rig.fleet, t, Duration::from_secs(60)).await?,
                );
            }
            let p = |q| percentile(&lat, q).map_or(0, |d| d.as_millis());
            (
                "300±100 ms",
                format!("ack latency p50 {} ms, p99 {} ms", p(50.0), p(99.0)),
            )
        }
        Condition::Partition => {
            rig.generate(Duration::from_secs(5), every, cli.rate)
                .await?;
            rig.proxy.partition(true);
            rig.generate(Duration::from_secs(cli.partition_secs), every, cli.rate)
                .await?;
            (
                "partition",
                format!(
                    "{} s; {} of {} connections up at its end; {} records spooled",
                    cli.partition_secs,
                    rig.connected(),
                    cli.agents,
                    rig.ledger.unacked(&rig.fleet)
                ),
            )
        }
        Condition::Rebind => {
            let before = rig.connection_ids();
            let rounds = (cli.seconds / cli.rebind_every_secs.max(1)).max(1);
            let mut moved = 0;
            for _ in 0..rounds {
                rig.generate(
                    Duration::from_secs(cli.rebind_every_secs.max(1)),
                    every,
                    cli.rate,
                )
                .await?;
                moved += rig.proxy.rebind()?;
            }
            rig.generate(Duration::from_secs(5), every, cli.rate)
                .await?;
            let after = rig.connection_ids();
            let kept = before
                .iter()
                .filter(|(t, id)| after.get(*t) == Some(*id))
                .count();
            (
                "address change",
                format!(
                    "{rounds} changes, {moved} flows moved; {kept} of {} connections kept (migrated)",
                    cli.agents
                ),
            )
        }
    };
    rig.proxy.heal();
    let drain = rig.drain(Duration::from_secs(cli.drain_limit_secs)).await?;
    let audit = rig.ledger.audit(rig.collector.store())?;
    let counted = rig.counted().await?;
    if audit.shed > 0 {
        note.push_str(&format!("; {} shed by the spool bound", audit.shed));
    }
    rig.shutdown().await?;
    Ok(Outcome {
        condition,
        generated: audit.generated,
        stored: audit.stored,
        lost: audit.lost,
        duplicated: audit.duplicated,
        counted,
        drain,
        note,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let conditions = if cli.only.is_empty() {
        vec![
            Condition::Loss,
            Condition::Delay,
            Condition::Partition,
            Condition::Rebind,
        ]
    } else {
        cli.only.clone()
    };
    println!(
        "hostile-bench: {} agents, {} records/s each, {} s per condition, partition {} s, seed {}",
        cli.agents, cli.rate, cli.seconds, cli.partition_secs, cli.seed
    );
    println!("impairment: user-space UDP proxy on loopback (the kernel has no netem)");
    let mut failed = false;
    for (i, c) in conditions.iter().enumerate() {
        let started = Instant::now();
        let o = run(&cli, *c, cli.seed + i as u64).await?;
        println!(
            "{:<15} generated {:>7}  stored {:>7}  lost {:>3}  duplicated {:>3}  counted {:>7}  drained {:>6.1} s after heal  ({:.0} s)  {}",
            o.condition,
            o.generated,
            o.stored,
            o.lost,
            o.duplicated,
            o.counted,
            o.drain.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            o.note
        );
        failed |=
            o.lost > 0 || o.duplicated > 0 || o.stored != o.generated || o.counted != o.generated;
    }
    if failed {
        bail!("records were lost or duplicated");
    }
    Ok(())
}
