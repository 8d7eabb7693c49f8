//! Collector configuration: the file (`config/file.rs`, strict TOML with units in field names)
//! is read, checked and turned once into the typed [`Config`] below, whose values are in the
//! units and types the rest of the collector uses (durations, the cores' settings). Nothing
//! else converts config values. `collector.example.toml` documents every field and is tested
//! to parse.

pub mod check;
mod file;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use storepulse_collector_core::detect::DetectorConfig;
use storepulse_collector_core::ratelimit::RateLimitConfig;
use storepulse_collector_core::{ClockPolicy, Thresholds};
use storepulse_shared::{PROTOCOL_VERSION, Welcome};

use self::file::{
    RawAgents, RawConfig, RawDetect, RawFleet, RawHttp, RawIngest, RawQuic, RawRuntime, RawTls,
    RawToken,
};
use crate::notify::config::{AlertSettings, AlertsConfig, Secret};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The TOML error.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The parsed, checked collector configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// QUIC listener for agents.
    pub quic: QuicSettings,
    /// Certificates and keys.
    pub tls: TlsConfig,
    /// The record store.
    pub store: StoreConfig,
    /// HTTP API listener and tokens.
    pub http: HttpSettings,
    /// Terminal liveness thresholds.
    pub fleet: Thresholds,
    /// Ingest limits and group commit.
    pub ingest: IngestSettings,
    /// Settings sent to agents in `Welcome`.
    pub agents: AgentSettings,
    /// Detection thresholds (`[detect]`); see [`Config::detector`].
    pub detect: DetectSettings,
    /// Alert notifications (`[alerts]`), secrets resolved.
    pub alerts: AlertSettings,
    /// The process's threads (`[runtime]`).
    pub runtime: RuntimeSettings,
    /// How the log is written (`[log]`; `--log-format` overrides it).
    pub log: LogSettings,
}

/// `[log]`, resolved. The filter (which levels of which modules) is `RUST_LOG`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// Text or JSON lines.
    pub format: LogFormat,
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines; colours only when standard error is a terminal (and `NO_COLOR`
    /// is not set).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the event's fields
    /// (`message` among them) and the connection's span fields (`span`).
    Json,
}

/// `[runtime]`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// Async worker threads (at least 1): the configured number, else the cores available to
    /// the process.
    pub worker_threads: usize,
}

/// Most worker threads accepted: more than any machine's cores is a typo, not a setting.
const MAX_WORKER_THREADS: usize = 1024;

/// The cores this process may run on (CPU affinity and cgroup quota), at least 1.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `[quic]`, resolved.
#[derive(Debug, Clone)]
pub struct QuicSettings {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// A connection without any packet for this long is closed.
    pub idle_timeout: Duration,
    /// QUIC keep-alive pings sent by the collector, if any (agents send their own).
    pub keep_alive: Option<Duration>,
    /// Receive buffer of the UDP socket asked for, bytes.
    pub socket_receive_buffer_bytes: usize,
    /// Admission control.
    pub admission: Admission,
}

/// Admission control for reconnect storms (from `[quic]`; `server.rs` says how it works).
#[derive(Debug, Clone)]
pub struct Admission {
    /// Most TLS handshakes in progress at once (at least 1).
    pub max_handshakes_in_progress: usize,
    /// Most handshakes started per second (0: no limit).
    pub max_handshakes_per_sec: u64,
    /// Connections waiting for a handshake slot.
    pub handshake_queue_len: usize,
    /// Longest wait in that queue.
    pub handshake_queue_wait: Duration,
    /// Most agent connections open at once (at least 1).
    pub max_connections: usize,
    /// `Goodbye.retry_after_secs` for agents sent away because the collector is full (> 0).
    pub overload_retry_after_secs: u32,
}

/// `[tls]`, paths resolved: the fleet PKI files (as written by `storepulse-collector pki`).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Fleet CA certificate (PEM); client certificates must chain to it.
    pub ca_cert: PathBuf,
    /// Collector certificate (PEM).
    pub cert: PathBuf,
    /// Collector private key (PEM).
    pub key: PathBuf,
    /// CRL (PEM) listing revoked client certificates; optional.
    pub crl: Option<PathBuf>,
    /// How often the CRL file is checked for a reload.
    pub crl_poll_interval: Duration,
}

/// `[store]`, path resolved.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the fjall database.
    pub path: PathBuf,
}

/// `[http]`, tokens resolved.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// TCP address to listen on.
    pub listen: SocketAddr,
    /// API tokens; empty: no authentication (only on a loopback `listen`).
    pub tokens: Vec<ApiToken>,
    /// Serve `/healthz` without a token.
    pub public_healthz: bool,
    /// Serve `/metrics` without a token.
    pub public_metrics: bool,
    /// The IANA time zone the dashboard shows times in (`Asia/Shanghai`); `None`: the
    /// browser's.
    pub time_zone: Option<String>,
}

/// One API token, its value read from the file or the environment.
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// Who holds it (shown in logs, never the token).
    pub name: String,
    /// What it may do.
    pub role: TokenRole,
    /// The token (at least 16 characters).
    pub value: Secret,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Read everything, change nothing.
    Read,
    /// Read and change (silences, maintenance windows).
    Admin,
}

/// `[ingest]`, in the units ingest uses.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Largest frame payload accepted, bytes.
    pub max_frame_bytes: u32,
    /// Most records accepted in one batch.
    pub max_batch_records: usize,
    /// Time allowed between handshake and `Hello`.
    pub hello_timeout: Duration,
    /// Batches queued for the writer from all connections before senders wait.
    pub writer_queue_batches: usize,
    /// Batches one connection may have waiting for their Ack before it stops reading.
    pub max_inflight_batches: usize,
    /// Group commit.
    pub group_commit: GroupCommit,
    /// Per-connection rate limit.
    pub rate_limit: RateLimitConfig,
}

/// How the writer groups batches into one durable commit, and checks their times.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// Most records in one commit.
    pub max_records: usize,
    /// Longest wait for more work after the first job of a group.
    pub max_delay: Duration,
    /// How record times are checked and corrected against the collector's clock.
    pub clock: ClockPolicy,
}

/// `[agents]`: what every agent is told in `Welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSettings {
    /// Heartbeat interval, seconds. The one source of the interval: agents are told it and
    /// the detector assumes it (see [`Config::detector`]).
    pub heartbeat_interval_secs: u32,
    /// Network probe interval, seconds.
    pub net_probe_interval_secs: u32,
    /// Records per batch agents should send.
    pub max_batch_records: u32,
    /// Backlog replay rate, records per second.
    pub backlog_records_per_sec: u32,
}

/// `[detect]`: the detection thresholds an operator may tune, in the detection core's units
/// (the fields of [`DetectorConfig`] of the same names; defaults are its defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectSettings {
    /// `-log10 p` a failure count must reach to be an anomaly.
    pub min_significance: f64,
    /// `-log10 p` that keeps an open failure incident active.
    pub stay_open_significance: f64,
    /// `-log10 p` inside an announced maintenance window.
    pub announced_significance: f64,
    /// False single-terminal incidents per fleet-day the run and device tests may raise.
    pub run_false_per_day: f64,
    /// How long an incident's signal must be gone before it resolves, milliseconds.
    pub resolve_hold_ms: i64,
    /// A failure incident whose scope sees no payments for this long resolves, milliseconds.
    pub quiet_resolve_ms: i64,
    /// A record observed this much earlier than it arrives is backlog, milliseconds.
    pub backlog_lag_ms: i64,
    /// Grace around an announced maintenance window, milliseconds.
    pub maintenance_grace_ms: i64,
    /// Half-life of baselines, milliseconds.
    pub baseline_half_life_ms: i64,
    /// Degrees Celsius above its own baseline of a distressed device.
    pub hot_degrees: f32,
    /// CPU percentage points above its own baseline of a distressed device.
    pub busy_points: f32,
}

/// Seconds as (saturated) milliseconds.
fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// An IANA zone name as the browser takes it (`UTC`, `Asia/Shanghai`, `America/Argentina/Salta`,
/// `Etc/GMT-8`): the collector has no zone database of its own to look it up in, so it checks
/// the form; a browser that does not know the name shows its own zone instead.
fn check_time_zone(zone: &str) -> Result<(), ConfigError> {
    let ok = !zone.is_empty()
        && zone.len() <= 64
        && zone.split('/').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "http.time_zone {zone:?} is not an IANA time zone name such as \"Asia/Shanghai\" or \"UTC\""
        )))
    }
}

fn invalid(m: &str) -> ConfigError {
    ConfigError::Invalid(m.to_owned())
}

impl Config {
    /// Reads, parses and checks a config file; relative paths resolve against its directory,
    /// secrets named by `*_env` fields are read from the environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// Parses and checks config text; relative paths resolve against `base_dir`, secrets
    /// named by `*_env` fields come from the process environment.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(text, base_dir, &|var| std::env::var(var).ok())
    }

    /// As [`Self::from_toml`], looking environment variables up with `env`.
    pub fn from_toml_with_env(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            source: Box::new(source),
        })?;
        let resolve = |p: PathBuf| if p.is_relative() { base_dir.join(p) } else { p };
        let http = raw.http.settings(env)?;
        let fleet = raw.fleet.thresholds()?;
        let ingest = raw.ingest.settings()?;
        let agents = raw.agents.settings(&raw.ingest)?;
        if raw.ingest.rate_limit_records_per_sec != 0
            && raw.ingest.rate_limit_records_per_sec < u64::from(raw.agents.backlog_records_per_sec)
        {
            return Err(invalid(
                "ingest.rate_limit_records_per_sec must be 0 or at least agents.backlog_records_per_sec",
            ));
        }
        Ok(Self {
            quic: raw.quic.settings()?,
            tls: raw.tls.settings(resolve)?,
            store: StoreConfig {
                path: resolve(raw.store.path),
            },
            http,
            fleet,
            ingest,
            agents,
            detect: raw.detect.settings()?,
            alerts: raw.alerts.settings(env)?,
            runtime: raw.runtime.settings(available_cores())?,
            log: LogSettings {
                format: raw.log.format,
            },
        })
    }

    /// A config with every default, for the given PKI files and store (tests and the demo).
    pub fn with_defaults(tls: TlsConfig, store_path: PathBuf) -> Self {
        Self {
            quic: QuicSettings::default(),
            tls,
            store: StoreConfig { path: store_path },
            http: HttpSettings::default(),
            fleet: RawFleet::default().thresholds_unchecked(),
            ingest: RawIngest::default().settings_unchecked(),
            agents: RawAgents::default().settings_unchecked(),
            detect: DetectSettings::default(),
            alerts: AlertSettings::default(),
            runtime: RuntimeSettings {
                worker_threads: available_cores(),
            },
            log: LogSettings::default(),
        }
    }

    /// The detector's settings: `[detect]`, and the heartbeat interval agents are told in
    /// `Welcome` as the one it assumes until it has learned a terminal's own.
    pub fn detector(&self) -> DetectorConfig {
        let d = &self.detect;
        DetectorConfig {
            heartbeat_interval_ms: i64::from(self.agents.heartbeat_interval_secs) * 1000,
            min_significance: d.min_significance,
            stay_open_significance: d.stay_open_significance,
            announced_significance: d.announced_significance,
            run_false_per_day: d.run_false_per_day,
            resolve_hold_ms: d.resolve_hold_ms,
            quiet_resolve_ms: d.quiet_resolve_ms,
            backlog_lag_ms: d.backlog_lag_ms,
            maintenance_grace_ms: d.maintenance_grace_ms,
            baseline_half_life_ms: d.baseline_half_life_ms,
            hot_degrees: d.hot_degrees,
            busy_points: d.busy_points,
            ..DetectorConfig::default()
        }
    }
}

impl AgentSettings {
    /// The `Welcome` every agent gets (the collector's clock is stamped when it is sent).
    pub fn welcome(&self) -> Welcome {
        Welcome {
            protocol_version: PROTOCOL_VERSION,
            collector_time_unix_ms: 0,
            heartbeat_interval_secs: self.heartbeat_interval_secs,
            net_probe_interval_secs: self.net_probe_interval_secs,
            max_batch_records: self.max_batch_records,
            backlog_records_per_sec: self.backlog_records_per_sec,
        }
    }
}

impl TlsConfig {
    /// The files `storepulse-collector pki init` writes into `dir`.
    pub fn from_pki_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.pem"),
            cert: dir.join("collector.pem"),
            key: dir.join("collector.key"),
            crl: Some(dir.join("crl.pem")),
            crl_poll_interval: Duration::from_secs(file::default_crl_poll_interval_secs()),
        }
    }
}

impl Default for QuicSettings {
    fn default() -> Self {
        RawQuic::default().settings_unchecked()
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        let raw = RawHttp::default();
        Self {
            listen: raw.listen,
            tokens: Vec::new(),
            public_healthz: raw.public_healthz,
            public_metrics: raw.public_metrics,
            time_zone: raw.time_zone,
        }
    }
}

impl Default for DetectSettings {
    fn default() -> Self {
        RawDetect::default().settings_unchecked()
    }
}

impl Default for AlertSettings {
    fn default() -> Self {
        // The default section has no receivers, routes, matchers or times: nothing in it can
        // fail to resolve (`defaults_are_valid` checks it).
        #[allow(clippy::expect_used)]
        AlertsConfig::default()
            .settings(&|_| None)
            .expect("the default [alerts] section is valid")
    }
}

impl RawQuic {
    fn settings(self) -> Result<QuicSettings, ConfigError> {
        if self.idle_timeout_secs == 0 || self.keep_alive_interval_secs >= self.idle_timeout_secs {
            return Err(invalid(
                "quic.keep_alive_interval_secs must be below quic.idle_timeout_secs > 0",
            ));
        }
        if self.max_handshakes_in_progress == 0 || self.max_connections == 0 {
            return Err(invalid(
                "quic.max_handshakes_in_progress and quic.max_connections must be > 0",
            ));
        }
        if self.overload_retry_after_secs == 0 {
            return Err(invalid(
                "quic.overload_retry_after_secs must be > 0 (agents need a retry hint)",
            ));
        }
        Ok(self.settings_unchecked())
    }

    fn settings_unchecked(self) -> QuicSettings {
        QuicSettings {
            listen: self.listen,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            keep_alive: (self.keep_alive_interval_secs > 0)
                .then(|| Duration::from_secs(self.keep_alive_interval_secs)),
            socket_receive_buffer_bytes: self.socket_receive_buffer_bytes,
            admission: Admission {
                max_handshakes_in_progress: self.max_handshakes_in_progress.max(1),
                max_handshakes_per_sec: self.max_handshakes_per_sec,
                handshake_queue_len: self.handshake_queue_len,
                handshake_queue_wait: Duration::from_millis(self.handshake_queue_wait_ms),
                max_connections: self.max_connections,
                overload_retry_after_secs: self.overload_retry_after_secs.max(1),
            },
        }
    }
}

impl RawTls {
    fn settings(self, resolve: impl Fn(PathBuf) -> PathBuf) -> Result<TlsConfig, ConfigError> {
        if self.crl_poll_interval_secs == 0 {
            return Err(invalid("tls.crl_poll_interval_secs must be > 0"));
        }
        Ok(TlsConfig {
            ca_cert: resolve(self.ca_cert),
            cert: resolve(self.cert),
            key: resolve(self.key),
            crl: self.crl.map(&resolve),
            crl_poll_interval: Duration::from_secs(self.crl_poll_interval_secs),
        })
    }
}

impl RawHttp {
    fn settings(self, env: &dyn Fn(&str) -> Option<String>) -> Result<HttpSettings, ConfigError> {
        if self.tokens.is_empty() && !self.listen.ip().is_loopback() {
            return Err(invalid(
                "http.tokens must be set when http.listen is not a loopback address (the API would be open)",
            ));
        }
        let tokens = self
            .tokens
            .into_iter()
            .map(|t| t.resolve(env))
            .collect::<Result<_, _>>()?;
        if let Some(zone) = &self.time_zone {
            check_time_zone(zone)?;
        }
        Ok(HttpSettings {
            listen: self.listen,
            tokens,
            public_healthz: self.public_healthz,
            public_metrics: self.public_metrics,
            time_zone: self.time_zone,
        })
    }
}

impl RawToken {
    /// The token value, from the file or the environment.
    fn resolve(self, env: &dyn Fn(&str) -> Option<String>) -> Result<ApiToken, ConfigError> {
        let value = match (self.token, &self.token_env) {
            (Some(t), None) => t,
            (None, Some(var)) => env(var).map(Secret::new).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "http.tokens {:?}: environment variable {var} is not set",
                    self.name
                ))
            })?,
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "http.tokens {:?}: set exactly one of token and token_env",
                    self.name
                )));
            }
        };
        if value.expose().chars().count() < 16 {
            return Err(ConfigError::Invalid(format!(
                "http.tokens {:?}: the token must be at least 16 characters",
                self.name
            )));
        }
        Ok(ApiToken {
            name: self.name,
            role: self.role,
            value,
        })
    }
}

impl RawFleet {
    fn thresholds(self) -> Result<Thresholds, ConfigError> {
        if self.stale_after_secs == 0 || self.offline_after_secs <= self.stale_after_secs {
            return Err(invalid(
                "fleet.offline_after_secs must be greater than fleet.stale_after_secs > 0",
            ));
        }
        Ok(self.thresholds_unchecked())
    }

    fn thresholds_unchecked(self) -> Thresholds {
        Thresholds {
            stale_after_ms: ms(self.stale_after_secs),
            offline_after_ms: ms(self.offline_after_secs),
        }
    }
}

impl RawIngest {
    fn settings(&self) -> Result<IngestSettings, ConfigError> {
        if self.max_frame_bytes < 1024 {
            return Err(invalid("ingest.max_frame_bytes must be at least 1024"));
        }
        if self.max_batch_records == 0 || self.group_commit_max_records == 0 {
            return Err(invalid(
                "ingest.max_batch_records and ingest.group_commit_max_records must be > 0",
            ));
        }
        if self.writer_queue_batches == 0 || self.max_inflight_batches == 0 {
            return Err(invalid(
                "ingest.writer_queue_batches and ingest.max_inflight_batches must be > 0",
            ));
        }
        if self.hello_timeout_secs == 0 {
            return Err(invalid("ingest.hello_timeout_secs must be > 0"));
        }
        Ok(self.settings_unchecked())
    }

    fn settings_unchecked(&self) -> IngestSettings {
        IngestSettings {
            max_frame_bytes: self.max_frame_bytes,
            max_batch_records: usize::try_from(self.max_batch_records).unwrap_or(usize::MAX),
            hello_timeout: Duration::from_secs(self.hello_timeout_secs),
            writer_queue_batches: self.writer_queue_batches,
            max_inflight_batches: self.max_inflight_batches,
            group_commit: GroupCommit {
                max_records: self.group_commit_max_records,
                max_delay: Duration::from_millis(self.group_commit_max_delay_ms),
                clock: ClockPolicy {
                    skew_threshold_ms: ms(self.clock_skew_threshold_secs),
                    max_record_age_ms: ms(self.max_record_age_secs),
                },
            },
            rate_limit: RateLimitConfig {
                records_per_sec: self.rate_limit_records_per_sec,
                bytes_per_sec: self.rate_limit_bytes_per_sec,
                burst_secs: self.rate_limit_burst_secs,
                disconnect_after: Duration::from_secs(self.rate_limit_disconnect_after_secs),
            },
        }
    }
}

impl RawAgents {
    fn settings(&self, ingest: &RawIngest) -> Result<AgentSettings, ConfigError> {
        if self.max_batch_records == 0 || self.max_batch_records > ingest.max_batch_records {
            return Err(invalid(
                "agents.max_batch_records must be between 1 and ingest.max_batch_records",
            ));
        }
        if self.heartbeat_interval_secs == 0 || self.net_probe_interval_secs == 0 {
            return Err(invalid("agents intervals must be > 0"));
        }
        Ok(self.settings_unchecked())
    }

    fn settings_unchecked(&self) -> AgentSettings {
        AgentSettings {
            heartbeat_interval_secs: self.heartbeat_interval_secs,
            net_probe_interval_secs: self.net_probe_interval_secs,
            max_batch_records: self.max_batch_records,
            backlog_records_per_sec: self.backlog_records_per_sec,
        }
    }
}

impl RawRuntime {
    /// Resolves the default against `available` cores.
    fn settings(&self, available: usize) -> Result<RuntimeSettings, ConfigError> {
        match self.worker_threads {
            Some(n) if n == 0 || n > MAX_WORKER_THREADS => Err(ConfigError::Invalid(format!(
                "runtime.worker_threads must be between 1 and {MAX_WORKER_THREADS} (or left out: the cores available, {available} here)"
            ))),
            Some(n) => Ok(RuntimeSettings { worker_threads: n }),
            None => Ok(RuntimeSettings {
                worker_threads: available.max(1),
            }),
        }
    }
}

impl RawDetect {
    fn settings(self) -> Result<DetectSettings, ConfigError> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.min_significance)
            || !positive(self.stay_open_significance)
            || !positive(self.announced_maintenance_significance)
        {
            return Err(invalid(
                "detect: min_significance, stay_open_significance and announced_maintenance_significance must be finite and > 0",
            ));
        }
        if self.stay_open_significance > self.min_significance {
            return Err(invalid(
                "detect.stay_open_significance must not exceed detect.min_significance",
            ));
        }
        if !positive(self.false_incidents_per_fleet_day) {
            return Err(invalid(
                "detect.false_incidents_per_fleet_day must be finite and > 0",
            ));
        }
        if self.resolve_hold_secs == 0
            || self.quiet_resolve_secs == 0
            || self.backlog_lag_secs == 0
            || self.baseline_half_life_hours == 0
        {
            return Err(invalid(
                "detect: resolve_hold_secs, quiet_resolve_secs, backlog_lag_secs and baseline_half_life_hours must be > 0",
            ));
        }
        if !positive(f64::from(self.device_hot_degrees_c))
            || !positive(f64::from(self.device_busy_cpu_points))
        {
            return Err(invalid(
                "detect: device_hot_degrees_c and device_busy_cpu_points must be finite and > 0",
            ));
        }
        Ok(self.settings_unchecked())
    }

    fn settings_unchecked(self) -> DetectSettings {
        DetectSettings {
            min_significance: self.min_significance,
            stay_open_significance: self.stay_open_significance,
            announced_significance: self.announced_maintenance_significance,
            run_false_per_day: self.false_incidents_per_fleet_day,
            resolve_hold_ms: ms(self.resolve_hold_secs),
            quiet_resolve_ms: ms(self.quiet_resolve_secs),
            backlog_lag_ms: ms(self.backlog_lag_secs),
            maintenance_grace_ms: ms(self.maintenance_grace_secs),
            baseline_half_life_ms: ms(self.baseline_half_life_hours.saturating_mul(3600)),
            hot_degrees: self.device_hot_degrees_c,
            busy_points: self.device_busy_cpu_points,
        }
    }
}

#[cfg(test)]
mod tests;
