//! Benchmark: how long a simulated day of a large fleet takes (run in release).
//!
//! `cargo run --release -p storepulse-sim --bin sim-bench [scenario.toml]`; without an argument
//! it runs a built-in fault-free 24 h day of 10,000 terminals. Prints wall time and events/s.

use std::process::ExitCode;
use std::time::Instant;

use storepulse_sim::{CountingSink, Scenario, run};

const DEFAULT: &str = r#"
[scenario]
name = "bench-10k"
seed = 2026
start = "2026-03-02T00:00:00+08:00"
duration = "24h"

[fleet]
terminals = 10000
chains = 40
"#;

fn main() -> ExitCode {
    let load = Instant::now();
    let scenario = match std::env::args().nth(1) {
        Some(path) => Scenario::from_file(path.as_ref()),
        None => Scenario::parse("built-in bench-10k", DEFAULT),
    };
    let scenario = match scenario {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(64);
        }
    };
    let load_s = load.elapsed().as_secs_f64();
    let mut sink = CountingSink::default();
    let started = Instant::now();
    let stats = run(&scenario, &mut sink);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "scenario {}: {} terminals, {} h simulated",
        scenario.name,
        scenario.fleet.terminals.len(),
        scenario.duration_ms / 3_600_000
    );
    println!("load + fleet generation: {load_s:.3} s");
    println!(
        "run: {secs:.2} s wall, {} events ({:.2} M events/s)",
        stats.events,
        stats.events as f64 / secs / 1e6
    );
    println!(
        "records {} (heartbeats {}, net {}, txns {}, drops {}), backlog {}, shed {}, undelivered {}, hellos {}, merchant failures {}, calls {}",
        stats.records,
        stats.heartbeats,
        stats.net_quality,
        stats.txns,
        stats.spool_drops,
        stats.backlog_records,
        stats.shed,
        stats.undelivered,
        stats.hellos,
        stats.merchant_failures,
        stats.calls.len()
    );
    ExitCode::SUCCESS
}
