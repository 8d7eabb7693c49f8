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
    /// Replay every scenario of a directory through the detector in virtual time and score it.
    Eval {
        /// Scenario directory (`*.toml`).
        #[arg(long)]
        scenarios: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run root-cause localisation on a Squeeze-layout benchmark and score it.
    RcaBench {
        /// Benchmark directory (one folder per setting).
        #[arg(long)]
        data: PathBuf,
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
        Command::Eval { scenarios, json } => run_eval(&scenarios, json),
        Command::RcaBench { data, json } => run_rca_bench(&data, json),
        Command::Generate { seed, out } => run_generate(seed, out.as_deref()),
    }
}

fn run_eval(dir: &Path, json: bool) -> ExitCode {
    match eval::run(dir) {
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

fn run_rca_bench(data: &Path, json: bool) -> ExitCode {
    let params = storepulse_collector_core::rca::Params::default();
    match rca_bench::run(data, &params) {
        Ok(report) if json => {
            println!("{:#}", rca_bench::render_json(&report));
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", rca_bench::render_text(&report));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{e:#}")),
    }
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
