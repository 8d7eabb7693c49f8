//! `storepulse-agent`: runs the agent, checks a config, or reports one transaction outcome to
//! a running agent. Thin: parsing, tracing setup and exit codes; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use storepulse_agent::{Config, ConfigError};

/// Exit code for a bad configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

/// storepulse agent for POS terminals.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Agent config file (runs the agent).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file and exit.
    CheckConfig {
        /// Agent config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Report one transaction outcome to the running agent's intake.
    ReportTxn {
        /// Agent config file (for the intake address).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Response-code table.
        #[arg(long, value_enum)]
        scheme: SchemeArg,
        /// Response or error code, for example 00 or 03.
        #[arg(long)]
        code: String,
        /// Time from request to response, milliseconds.
        #[arg(long)]
        latency_ms: Option<u32>,
        /// Card or QR (defaults from the scheme).
        #[arg(long, value_enum)]
        method: Option<MethodArg>,
        /// Acquirer or QR channel that handled it.
        #[arg(long)]
        route: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SchemeArg {
    Cup,
    Iso8583,
    Wechatpay,
    Alipay,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MethodArg {
    Card,
    Qr,
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e: ConfigError| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Some(Command::CheckConfig { config }) => match load(&config) {
            Ok(c) => {
                println!(
                    "config ok: terminal {} -> collector {}",
                    c.identity.terminal_id, c.collector.address
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Some(Command::ReportTxn {
            config,
            scheme,
            code,
            latency_ms,
            method,
            route,
        }) => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let mut item = serde_json::json!({
                "scheme": format!("{scheme:?}").to_lowercase(),
                "code": code,
            });
            if let Some(l) = latency_ms {
                item["latency_ms"] = l.into();
            }
            if let Some(m) = method {
                item["method"] = format!("{m:?}").to_lowercase().into();
            }
            if let Some(r) = route {
                item["route"] = r.into();
            }
            runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(report(c, item)))
        }
        None => {
            let Some(path) = cli.config else {
                eprintln!("error: --config is required (see --help)");
                return ExitCode::from(2);
            };
            let config = match load(&path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            match rt.block_on(storepulse_agent::run(config, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "Agent failed");
                    if matches!(error, storepulse_agent::RunError::Tls(_)) {
                        ExitCode::from(EXIT_CONFIG)
                    } else {
                        ExitCode::FAILURE
                    }
                }
            }
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .inspect_err(|e| eprintln!("error: cannot start the async runtime: {e}"))
        .ok()
}

async fn report(config: Config, item: serde_json::Value) -> ExitCode {
    let body = item.to_string();
    match storepulse_agent::client::post_json(config.intake.listen, "/v1/txn", body.as_bytes())
        .await
    {
        Ok(r) if (200..300).contains(&r.status) => {
            println!("{}", String::from_utf8_lossy(&r.body));
            ExitCode::SUCCESS
        }
        Ok(r) => {
            let msg = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
            eprintln!(
                "error: agent refused the outcome (HTTP {}): {msg}",
                r.status
            );
            if (400..500).contains(&r.status) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot watch SIGTERM, only SIGINT stops the agent");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("Shutdown requested");
}
