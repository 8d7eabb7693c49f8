//! `storepulse-collector`: command line entry point (serve, check-config, pki, dump). The offline
//! tools (eval, rca-bench, generate) are `storepulse-lab` (lab/). Thin by design: parse
//! arguments, start tracing, call the library, map errors to exit codes (64 for bad config).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use storepulse_collector::config::{Config, LogFormat, check};
use storepulse_collector::pki;
use tracing_subscriber::EnvFilter;

/// Log filter when `RUST_LOG` is not set: our own info, storage internals only when worrying.
const DEFAULT_LOG_FILTER: &str = "info,fjall=warn,lsm_tree=warn";

/// Exit code for a bad configuration or usage (EX_USAGE).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "storepulse-collector",
    version,
    about = "storepulse fleet collector"
)]
struct Cli {
    /// Log format on standard error: text (colours only on a terminal) or json (one object per
    /// line). Default: `[log] format` of the config, else text. Levels: RUST_LOG.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector.
    Serve {
        /// Path of the collector config (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a config file and the files it names (certificates, key, CRL), then exit.
    CheckConfig {
        /// Path of the collector config (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Manage the fleet PKI.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Print every stored record as JSON lines (the collector must not be running on it).
    Dump {
        /// Store directory.
        #[arg(long)]
        store: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create the fleet CA, the collector certificate and an empty CRL.
    Init {
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// DNS name agents use to reach the collector.
        #[arg(long, default_value = pki::DEFAULT_SERVER_NAME)]
        server_name: String,
    },
    /// Issue keys and client certificates for terminals (pre-provisioning; enrolled agents
    /// make their own keys instead).
    Issue {
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// Terminal id (becomes the certificate CN); repeat for several.
        #[arg(long)]
        terminal: Vec<String>,
        /// File with one terminal id per line (blank lines and `#` comments skipped), or an
        /// inventory CSV (`.csv`: its terminal_id column).
        #[arg(long, value_name = "FILE")]
        terminals_file: Option<PathBuf>,
        /// Certificate lifetime, days.
        #[arg(long, default_value_t = 90)]
        days: u64,
        /// Issue even if a terminal already has a certificate.
        #[arg(long)]
        force: bool,
    },
    /// The offline signer: check certificate signing requests (from `storepulse-agent enrol
    /// --csr-out`) and sign them with the CA key; writes <out-dir>/<terminal>.pem.
    Sign {
        /// PKI directory (with ca.key).
        #[arg(long)]
        dir: PathBuf,
        /// CSR file (PEM or DER); repeat for several.
        #[arg(long, required = true)]
        csr: Vec<PathBuf>,
        /// Where to write the certificates.
        #[arg(long)]
        out_dir: PathBuf,
        /// Refuse CSRs for terminals not in this inventory CSV.
        #[arg(long, value_name = "CSV")]
        inventory: Option<PathBuf>,
        /// Certificate lifetime, days.
        #[arg(long, default_value_t = 90)]
        days: u64,
    },
    /// Revoke a terminal's certificates and regenerate the CRL.
    Revoke {
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// Terminal id.
        #[arg(long)]
        terminal: String,
    },
    /// List every issued certificate: terminal, serial, not after, state.
    List {
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Starts logging to standard error: `RUST_LOG` filters (default [`DEFAULT_LOG_FILTER`]);
/// text without colour codes unless standard error is a terminal, or JSON lines.
fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        // `serve` starts logging once it has read the config's `[log]`.
        init_logging(cli.log_format.unwrap_or_default());
    }
    match cli.command {
        Command::Serve { config } => serve(config, cli.log_format),
        Command::CheckConfig { config } => check_config(&config),
        Command::Pki { command } => run_pki(command),
        Command::Dump { store } => {
            let stdout = std::io::stdout();
            match storepulse_collector::dump(&store, &mut stdout.lock()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let Err(e) = storepulse_collector::check_files(&config) {
        eprintln!("error: {}: {e}", path.display());
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let extra = check::store_dir(&config.store.path)
        .and_then(|store| Ok(std::iter::once(store).chain(check::certificates(&config.tls, now)?)));
    let extra: Vec<String> = match extra {
        Ok(lines) => lines.collect(),
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    println!(
        "config ok: QUIC {}, HTTP {}, store {}, {} API token(s), {} alert receiver(s), {} worker thread(s)",
        config.quic.listen,
        config.http.listen,
        config.store.path.display(),
        config.http.tokens.len(),
        config.alerts.receivers.len(),
        config.runtime.worker_threads
    );
    for line in extra {
        println!("{line}");
    }
    ExitCode::SUCCESS
}

fn serve(path: PathBuf, log_format: Option<LogFormat>) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    init_logging(log_format.unwrap_or(config.log.format));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.runtime.worker_threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    tracing::info!(
        worker_threads = config.runtime.worker_threads,
        cores_available = storepulse_collector::config::available_cores(),
        "Runtime started"
    );
    match runtime.block_on(storepulse_collector::serve(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn run_pki(command: PkiCommand) -> ExitCode {
    let result = match command {
        PkiCommand::Init { dir, server_name } => pki::init(&dir, &server_name).map(|()| {
            println!("initialised fleet PKI in {}", dir.display());
        }),
        PkiCommand::Issue {
            dir,
            terminal,
            terminals_file,
            days,
            force,
        } => {
            let mut terminals = terminal;
            if let Some(f) = terminals_file {
                match read_terminals(&f) {
                    Ok(t) => terminals.extend(t),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return ExitCode::from(EXIT_BAD_CONFIG);
                    }
                }
            }
            if terminals.is_empty() {
                eprintln!("error: name at least one terminal (--terminal or --terminals-file)");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            pki::issue_many(&dir, &terminals, force, lifetime_days(days)).map(|issued| {
                for i in issued {
                    println!(
                        "issued {} (serial {}) key {}",
                        i.cert.display(),
                        i.serial_hex,
                        i.key.display()
                    );
                }
            })
        }
        PkiCommand::Sign {
            dir,
            csr,
            out_dir,
            inventory,
            days,
        } => {
            let inv = match inventory.map(|p| read_inventory_ids(&p)).transpose() {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            pki::sign_csr_files(&dir, &csr, &out_dir, lifetime_days(days), inv.as_ref()).map(
                |signed| {
                    for (t, path) in signed {
                        println!("signed {t}: {}", path.display());
                    }
                },
            )
        }
        PkiCommand::Revoke { dir, terminal } => pki::revoke(&dir, &terminal).map(|serials| {
            println!("revoked {terminal}: {}", serials.join(", "));
        }),
        PkiCommand::List { dir } => pki::list(&dir).map(|entries| {
            for e in entries {
                let state = if e.revoked {
                    "revoked"
                } else if e.expired {
                    "expired"
                } else {
                    "valid"
                };
                println!("{}\t{}\t{}\t{state}", e.terminal, e.serial_hex, e.not_after);
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            e @ (pki::PkiError::InvalidTerminal { .. }
            | pki::PkiError::Duplicate(_)
            | pki::PkiError::Csr { .. }
            | pki::PkiError::NotInInventory { .. }),
        ) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
        Err(e) => fail(e),
    }
}

fn lifetime_days(days: u64) -> std::time::Duration {
    std::time::Duration::from_secs(days.max(1) * 86_400)
}

/// Terminal ids from a list file (one per line) or an inventory CSV.
fn read_terminals(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        let (inv, _) = storepulse_collector_core::inventory::parse_csv(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut ids: Vec<String> = inv.iter().map(|(t, _)| t.to_string()).collect();
        ids.sort();
        return Ok(ids);
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

fn read_inventory_ids(
    path: &std::path::Path,
) -> anyhow::Result<std::collections::HashSet<storepulse_shared::TerminalId>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let (inv, _) = storepulse_collector_core::inventory::parse_csv(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(inv.iter().map(|(t, _)| t.clone()).collect())
}

/// Prints the error (typed errors name their cause in their message) and exits with 1.
fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "Cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
