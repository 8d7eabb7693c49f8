//! `storepulse-lab`: the offline tools (eval, rca-bench, generate). Thin by design: parse
//! arguments, call the library, print, map errors to exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use storepulse_lab::{eval, rca_bench};
use storepulse_sim::generate;

#[derive(Debug, Parser)]
#[command(
    name = "storepulse-lab",
    version,
    about = "storepulse offline tools: detection eval, RCA benchmark, scenario generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay scenarios through the detector in virtual time and score them one to one: every
    /// scenario of a directory, or N generated ones from a seed.
    Eval {
        /// Scenario directory (`*.toml`).
        #[arg(
            long,
            required_unless_present = "generate",
            conflicts_with = "generate"
        )]
        scenarios: Option<PathBuf>,
        /// Generate and evaluate this many scenarios, seeds `--seed` .. `--seed` + N - 1.
        #[arg(long, value_name = "N")]
        generate: Option<u64>,
        /// First seed of `--generate` (default 1; development range 1..=10000, reported range
        /// from 1000000, see BENCHMARKS.md).
        #[arg(long, conflicts_with = "scenarios")]
        seed: Option<u64>,
        /// Scenarios replayed at once (default: the cores available).
        #[arg(long)]
        jobs: Option<usize>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the JSON report to this file (the text still goes to stdout).
        #[arg(long, value_name = "FILE")]
        json_out: Option<PathBuf>,
    },
    /// Run root-cause localisation on RCA benchmark datasets and score them (one parameter set
    /// for every dataset).
    RcaBench {
        /// Dataset directory: one folder per setting (B0), or the cases and
        /// `injection_info.csv` directly (S, L, RS). Repeat for several datasets.
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the seeded scenario of a seed in the strict scenario format.
    Generate {
        /// The seed; the same seed always gives the same scenario.
        #[arg(long)]
        seed: u64,
        /// Write here instead of standard output; an existing directory gets `gen-<seed>.toml`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Eval {
            scenarios,
            generate,
            seed,
            jobs,
            json,
            json_out,
        } => {
            let jobs = jobs.unwrap_or_else(eval::default_jobs).max(1);
            let report = match (scenarios, generate) {
                (Some(dir), _) => eval::run(&dir, jobs),
                (None, Some(n)) => eval::run_generated(n, seed.unwrap_or(1), jobs),
                (None, None) => Err(anyhow::anyhow!(
                    "give --scenarios DIR or --generate N / 请指定 --scenarios DIR 或 --generate N"
                )),
            };
            run_eval(report, json, json_out.as_deref())
        }
        Command::RcaBench { data, json } => run_rca_bench(&data, json),
        Command::Generate { seed, out } => run_generate(seed, out.as_deref()),
    }
}

fn run_eval(report: anyhow::Result<eval::Report>, json: bool, json_out: Option<&Path>) -> ExitCode {
    if let (Ok(r), Some(path)) = (&report, json_out) {
        let text = format!("{:#}\n", eval::render_json(r));
        if let Err(e) = std::fs::write(path, text) {
            return fail(format!("writing {} / 写入失败: {e}", path.display()));
        }
    }
    match report {
        Ok(report) if json => {
            println!("{:#}", eval::render_json(&report));
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", eval::render_text(&report));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{e:#}")),
    }
}

fn run_rca_bench(data: &[PathBuf], json: bool) -> ExitCode {
    let params = storepulse_collector_core::rca::Params::default();
    let mut reports = Vec::new();
    for dir in data {
        match rca_bench::run(dir, &params) {
            Ok(report) => reports.push(report),
            Err(e) => return fail(format!("{e:#}")),
        }
    }
    if json {
        let values: Vec<serde_json::Value> = reports.iter().map(rca_bench::render_json).collect();
        match values.as_slice() {
            [one] => println!("{one:#}"),
            _ => println!("{:#}", serde_json::json!({ "datasets": values })),
        }
        return ExitCode::SUCCESS;
    }
    for r in &reports {
        println!("{}", rca_bench::render_text(r));
    }
    if reports.len() > 1 {
        print!("{}", rca_bench::render_summary(&reports));
    }
    ExitCode::SUCCESS
}

fn run_generate(seed: u64, out: Option<&Path>) -> ExitCode {
    let g = generate::generate(seed);
    let Some(out) = out else {
        print!("{}", g.text);
        return ExitCode::SUCCESS;
    };
    let path = if out.is_dir() {
        out.join(generate::file_name(seed))
    } else {
        out.to_owned()
    };
    match std::fs::write(&path, &g.text) {
        Ok(()) => {
            eprintln!("wrote {} ({})", path.display(), g.name);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("writing {}: {e}", path.display())),
    }
}

/// Prints the error and exits with 1.
fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
