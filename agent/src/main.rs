//! `storepulse-agent`: runs the agent, checks a config, reports one transaction outcome to a
//! running agent, or diagnoses the terminal. Thin: parsing, tracing setup and exit codes; the
//! work is in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use storepulse_agent::config::LogFormat;
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
    /// Log format on standard error: text (colours only on a terminal) or json (one object per
    /// line). Default: `[log] format` of the config, else text. Levels: RUST_LOG.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
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
    /// Diagnose this terminal: network and payment hosts, clock, collector link and
    /// certificate, spool, the last hour's payment codes, and the collector's open incidents
    /// covering it; prints a verdict in Chinese and English (exit 0: all clear, 1: something
    /// to look at).
    Diagnose {
        /// Agent config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print the verdict as JSON (as `GET /v1/status` has it).
        #[arg(long)]
        json: bool,
    },
    /// Get a certificate: enrol now with the bootstrap token of `[enrol]`, or (with
    /// --csr-out) write a new key to `collector.key` and its certificate signing request to a
    /// file for the offline signer (`storepulse-collector pki sign`).
    Enrol {
        /// Agent config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Write a CSR here instead of enrolling online.
        #[arg(long, value_name = "FILE")]
        csr_out: Option<PathBuf>,
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

/// Starts logging to standard error: `RUST_LOG` filters (default `info`); text without colour
/// codes unless standard error is a terminal, or JSON lines.
fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        );
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.is_some() {
        // Running the agent starts logging once it has read the config's `[log]`.
        init_logging(cli.log_format.unwrap_or_default());
    }
    match cli.command {
        Some(Command::CheckConfig { config }) => match load(&config) {
            Ok(c) => {
                println!(
                    "config ok: terminal {} -> collector {}",
                    c.identity.terminal_id, c.collector.address
                );
                match check_certificate(&c) {
                    Ok(line) => {
                        println!("{line}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(EXIT_CONFIG)
                    }
                }
            }
            Err(code) => code,
        },
        Some(Command::Enrol { config, csr_out }) => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match csr_out {
                Some(out) => write_csr(&c, &out),
                None => runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(enrol_now(c))),
            }
        }
        Some(Command::Diagnose { config, json }) => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(diagnose(c, json)))
        }
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
            init_logging(cli.log_format.unwrap_or(config.log));
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

/// The certificate part of `check-config`: the installed pair belongs together, names this
/// terminal, was issued by the fleet CA and has not expired; or, with none installed, that
/// enrolment can start.
fn check_certificate(c: &Config) -> Result<String, String> {
    use storepulse_agent::certs;
    let (cert, key) = (&c.collector.cert, &c.collector.key);
    certs::recover(cert, key).map_err(|e| e.to_string())?;
    if !cert.exists() {
        return match &c.enrol {
            Some(e) => {
                e.token
                    .read()
                    .map_err(|e| format!("no certificate yet, and {e}"))?;
                Ok(format!(
                    "no certificate yet: the agent enrols at {} with its bootstrap token",
                    e.address
                ))
            }
            None => Err(format!(
                "collector.cert: {} does not exist and there is no [enrol] section",
                cert.display()
            )),
        };
    }
    let info = certs::check_installed(cert, key, &c.identity.terminal_id, &c.collector.ca_cert)
        .map_err(|e| e.to_string())?;
    let now = storepulse_agent::state::unix_ms();
    if info.not_before_ms > now {
        return Err(format!(
            "collector.cert: {} is not valid yet (not before {} ms; is this terminal's clock right?)",
            cert.display(),
            info.not_before_ms
        ));
    }
    if info.not_after_ms <= now && c.enrol.is_none() {
        return Err(format!(
            "collector.cert: {} expired (not after {} ms)",
            cert.display(),
            info.not_after_ms
        ));
    }
    Ok(format!(
        "certificate ok: CN {} (this terminal), issued by the fleet CA in {}, serial {}, {} days left{}; \
         the collector's certificate must name {}",
        info.common_name,
        c.collector.ca_cert.display(),
        info.serial_hex,
        (info.not_after_ms - now).max(0) / 86_400_000,
        if info.not_after_ms <= now {
            " (expired: the agent enrols again)"
        } else {
            ""
        },
        c.collector.server_name
    ))
}

/// `enrol --csr-out`: a new key at `collector.key`, its CSR in `out` (PEM).
fn write_csr(c: &Config, out: &std::path::Path) -> ExitCode {
    use storepulse_agent::certs;
    let result = certs::new_request(&c.identity.terminal_id).and_then(|req| {
        certs::store_key_alone(&c.collector.cert, &c.collector.key, &req.key)?;
        std::fs::write(out, certs::pem_encode("CERTIFICATE REQUEST", &req.csr_der)).map_err(
            |cause| certs::CertError::Io {
                path: out.to_owned(),
                cause,
            },
        )
    });
    match result {
        Ok(()) => {
            println!(
                "key written to {}; CSR for {} written to {}: sign it with `storepulse-collector pki sign` and install the certificate at {}",
                c.collector.key.display(),
                c.identity.terminal_id,
                out.display(),
                c.collector.cert.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `enrol`: enrol once, online.
async fn enrol_now(c: Config) -> ExitCode {
    let Some(e) = c.enrol.clone() else {
        eprintln!("error: the config has no [enrol] section");
        return ExitCode::from(EXIT_CONFIG);
    };
    match storepulse_agent::enrol::enrol_once(&c, &e).await {
        Ok(info) => {
            println!(
                "enrolled {}: certificate {} (serial {}), not after {} ms",
                c.identity.terminal_id,
                c.collector.cert.display(),
                info.serial_hex,
                info.not_after_ms
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
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

/// Asks the running agent for its verdict (fresh probes, a fresh answer from the collector);
/// if the agent is not running, checks what can be checked without it.
async fn diagnose(config: Config, json: bool) -> ExitCode {
    use storepulse_agent::diagnose::{self, VerdictJson};
    let v = match storepulse_agent::client::get(config.intake.listen, "/v1/status?fresh=true").await
    {
        Ok(r) if r.status == 200 => {
            match serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| serde_json::from_value::<VerdictJson>(v["verdict"].clone()).ok())
            {
                Some(v) => v,
                None => {
                    eprintln!("error: the agent's /v1/status has no verdict (an older agent?)");
                    return ExitCode::FAILURE;
                }
            }
        }
        Ok(r) => {
            eprintln!("error: the agent answered HTTP {}", r.status);
            return ExitCode::FAILURE;
        }
        Err(storepulse_agent::client::ClientError::Connect { .. }) => {
            let f = diagnose::standalone_facts(&config).await;
            VerdictJson::new(&storepulse_agent_core::verdict::judge(&f), f.now_unix_ms)
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&v) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!(
            "{}",
            diagnose::render(config.identity.terminal_id.as_str(), &v)
        );
    }
    if v.level == "ok" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
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
