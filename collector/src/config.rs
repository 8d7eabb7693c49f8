//! Collector configuration: strict TOML (`deny_unknown_fields`), units in field names, defaults
//! from named functions. `collector.example.toml` documents every field and is tested to parse.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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

/// The whole collector configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// QUIC listener for agents.
    #[serde(default)]
    pub quic: QuicConfig,
    /// Certificates and keys.
    pub tls: TlsConfig,
    /// The record store.
    pub store: StoreConfig,
    /// HTTP API listener.
    #[serde(default)]
    pub http: HttpConfig,
    /// Terminal liveness thresholds.
    #[serde(default)]
    pub fleet: FleetConfig,
    /// Ingest limits and group commit tuning.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Settings sent to agents in `Welcome`.
    #[serde(default)]
    pub agents: AgentsConfig,
    /// Alert notifications (`[alerts]`, see `crate::notify::config`).
    #[serde(default)]
    pub alerts: crate::notify::config::AlertsConfig,
}

/// `[quic]`: the agent-facing QUIC endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuicConfig {
    /// UDP address to listen on.
    #[serde(default = "default_quic_listen")]
    pub listen: SocketAddr,
    /// A connection without any packet for this long is closed, seconds.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Interval of QUIC keep-alive pings sent by the collector, seconds; 0 (the default): the
    /// collector sends none. Agents send their own (PROTOCOL.md recommends every 15 s), which
    /// both keeps the connection from idling out and refreshes the NAT bindings on the agent's
    /// side, which only outbound packets do; pings from the collector as well would double the
    /// packets of an idle fleet (at 100,000 agents, 6,700 more pings and as many ACKs a second).
    #[serde(default = "default_keep_alive_interval_secs")]
    pub keep_alive_interval_secs: u64,
    /// Admission control: most TLS handshakes in progress at once. Connections beyond it get a
    /// QUIC Retry (address validation) or wait in the handshake queue.
    #[serde(default = "default_max_handshakes_in_progress")]
    pub max_handshakes_in_progress: usize,
    /// Admission control: most handshakes started per second (0: no rate limit).
    #[serde(default = "default_max_handshakes_per_sec")]
    pub max_handshakes_per_sec: u64,
    /// Admission control: connections waiting for a handshake slot; beyond it they are refused
    /// (the agent backs off with jitter and tries again).
    #[serde(default = "default_handshake_queue_len")]
    pub handshake_queue_len: usize,
    /// Admission control: longest a connection waits in the handshake queue before it is
    /// refused, milliseconds (keep it well below the agents' 10 s handshake timeout).
    #[serde(default = "default_handshake_queue_wait_ms")]
    pub handshake_queue_wait_ms: u64,
    /// Most agent connections open at once. An agent beyond it is sent a `Goodbye`
    /// (Overloaded, `retry_after_secs`) and closed with OVERLOADED.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// `Goodbye.retry_after_secs` for agents sent away because the collector is full.
    #[serde(default = "default_overload_retry_after_secs")]
    pub overload_retry_after_secs: u32,
    /// Receive buffer of the QUIC UDP socket, bytes (SO_RCVBUF). Every agent's packets arrive
    /// on this one socket; with the kernel default (about 208 KiB, some 90 datagrams) a
    /// moment of CPU contention drops packets and, with tens of thousands of agents, turns
    /// into failed handshakes and a retry storm. Linux caps it at `net.core.rmem_max`; the
    /// collector logs the size it got.
    #[serde(default = "default_socket_receive_buffer_bytes")]
    pub socket_receive_buffer_bytes: usize,
}

/// `[tls]`: the fleet PKI files (as written by `storepulse-collector pki`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Fleet CA certificate (PEM); client certificates must chain to it.
    pub ca_cert: PathBuf,
    /// Collector certificate (PEM).
    pub cert: PathBuf,
    /// Collector private key (PEM).
    pub key: PathBuf,
    /// CRL (PEM) listing revoked client certificates; optional.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    /// How often the CRL file's modification time is checked for a reload, seconds.
    #[serde(default = "default_crl_poll_interval_secs")]
    pub crl_poll_interval_secs: u64,
}

/// `[store]`: where records live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the fjall database.
    pub path: PathBuf,
}

/// `[http]`: the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// TCP address to listen on.
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// API tokens (`Authorization: Bearer <token>`). Empty: no authentication, which is only
    /// allowed when `listen` is a loopback address.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Serve `/healthz` without a token.
    #[serde(default = "default_true")]
    pub public_healthz: bool,
    /// Serve `/metrics` without a token (otherwise Prometheus needs a read token).
    #[serde(default)]
    pub public_metrics: bool,
}

/// One API token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (shown in logs, never the token).
    pub name: String,
    /// `read` (GET only) or `admin` (may also create and end silences and windows).
    pub role: TokenRole,
    /// The token itself (at least 16 characters). Prefer `token_env`.
    #[serde(default)]
    pub token: Option<String>,
    /// Name of an environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
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

impl TokenConfig {
    /// The token value, from the file or the environment.
    pub fn value(&self) -> Result<String, ConfigError> {
        let v = match (&self.token, &self.token_env) {
            (Some(t), None) => t.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
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
        if v.chars().count() < 16 {
            return Err(ConfigError::Invalid(format!(
                "http.tokens {:?}: the token must be at least 16 characters",
                self.name
            )));
        }
        Ok(v)
    }
}

/// `[fleet]`: liveness thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Silence after which a terminal is stale, seconds.
    #[serde(default = "default_stale_after_secs")]
    pub stale_after_secs: u64,
    /// Silence after which a terminal is offline, seconds.
    #[serde(default = "default_offline_after_secs")]
    pub offline_after_secs: u64,
}

/// `[ingest]`: limits and group commit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest frame payload accepted, bytes.
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: u32,
    /// Most records accepted in one batch (a hard limit; agents are asked for
    /// `agents.max_batch_records`).
    #[serde(default = "default_ingest_max_batch_records")]
    pub max_batch_records: u32,
    /// Longest the writer waits to gather more batches into one commit, milliseconds. Every
    /// commit is an fsync: at 20,000 idle agents 10 ms took a fifth off the collector's CPU
    /// against 2 ms (BENCHMARKS.md), and adds at most 10 ms to an acknowledgement.
    #[serde(default = "default_group_commit_max_delay_ms")]
    pub group_commit_max_delay_ms: u64,
    /// Most records written in one commit.
    #[serde(default = "default_group_commit_max_records")]
    pub group_commit_max_records: usize,
    /// Time allowed between handshake and `Hello`, seconds.
    #[serde(default = "default_hello_timeout_secs")]
    pub hello_timeout_secs: u64,
    /// Batches queued for the writer from all connections before senders wait (backpressure).
    #[serde(default = "default_writer_queue_batches")]
    pub writer_queue_batches: usize,
    /// Batches one connection may have waiting for their Ack before it stops reading.
    #[serde(default = "default_max_inflight_batches")]
    pub max_inflight_batches: usize,
    /// Per-connection rate limit, records per second (0: unlimited). Above it the collector
    /// stops reading from the connection for a while (QUIC flow control pushes back).
    #[serde(default = "default_rate_limit_records_per_sec")]
    pub rate_limit_records_per_sec: u64,
    /// Per-connection rate limit, frame bytes per second (0: unlimited).
    #[serde(default = "default_rate_limit_bytes_per_sec")]
    pub rate_limit_bytes_per_sec: u64,
    /// Seconds of the rate a connection may send at once.
    #[serde(default = "default_rate_limit_burst_secs")]
    pub rate_limit_burst_secs: u64,
    /// An agent over its rate limit at every batch for this long is sent a `Goodbye`
    /// (RateLimited, `retry_after_secs`) and closed with RATE_LIMITED, seconds (0: never).
    #[serde(default = "default_rate_limit_disconnect_after_secs")]
    pub rate_limit_disconnect_after_secs: u64,
    /// An agent clock off by more than this at its `Hello` is flagged as skewed and its
    /// record times are corrected by the measured offset, seconds.
    #[serde(default = "default_clock_skew_threshold_secs")]
    pub clock_skew_threshold_secs: u64,
    /// A record time (after any correction) older than this before its receipt is clamped to
    /// it, seconds; one later than the receipt by more than the skew threshold is clamped to
    /// the receipt.
    #[serde(default = "default_max_record_age_secs")]
    pub max_record_age_secs: u64,
}

/// `[agents]`: settings sent to every agent in `Welcome`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// Heartbeat interval, seconds.
    #[serde(default = "default_heartbeat_interval_secs")]
    pub heartbeat_interval_secs: u32,
    /// Network probe interval, seconds.
    #[serde(default = "default_net_probe_interval_secs")]
    pub net_probe_interval_secs: u32,
    /// Records per batch agents should send.
    #[serde(default = "default_agents_max_batch_records")]
    pub max_batch_records: u32,
    /// Backlog replay rate, records per second.
    #[serde(default = "default_backlog_records_per_sec")]
    pub backlog_records_per_sec: u32,
}

fn default_quic_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 4433))
}
fn default_idle_timeout_secs() -> u64 {
    60
}
fn default_keep_alive_interval_secs() -> u64 {
    0
}
fn default_max_handshakes_in_progress() -> usize {
    64
}
fn default_max_handshakes_per_sec() -> u64 {
    1000
}
fn default_handshake_queue_len() -> usize {
    4096
}
fn default_handshake_queue_wait_ms() -> u64 {
    4000
}
fn default_max_connections() -> usize {
    200_000
}
fn default_socket_receive_buffer_bytes() -> usize {
    8 << 20
}
fn default_overload_retry_after_secs() -> u32 {
    30
}
fn default_rate_limit_records_per_sec() -> u64 {
    10_000
}
fn default_rate_limit_bytes_per_sec() -> u64 {
    4 << 20
}
fn default_rate_limit_burst_secs() -> u64 {
    2
}
fn default_rate_limit_disconnect_after_secs() -> u64 {
    300
}
fn default_clock_skew_threshold_secs() -> u64 {
    120
}
fn default_max_record_age_secs() -> u64 {
    7 * 24 * 3600
}
fn default_crl_poll_interval_secs() -> u64 {
    5
}
fn default_true() -> bool {
    true
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_stale_after_secs() -> u64 {
    90
}
fn default_offline_after_secs() -> u64 {
    300
}
fn default_max_frame_bytes() -> u32 {
    storepulse_shared::MAX_FRAME_BYTES_DEFAULT
}
fn default_ingest_max_batch_records() -> u32 {
    1024
}
fn default_group_commit_max_delay_ms() -> u64 {
    10
}
fn default_group_commit_max_records() -> usize {
    20_000
}
fn default_hello_timeout_secs() -> u64 {
    10
}
fn default_writer_queue_batches() -> usize {
    1024
}
fn default_max_inflight_batches() -> usize {
    32
}
fn default_heartbeat_interval_secs() -> u32 {
    30
}
fn default_net_probe_interval_secs() -> u32 {
    60
}
fn default_agents_max_batch_records() -> u32 {
    256
}
fn default_backlog_records_per_sec() -> u32 {
    500
}

impl Config {
    /// Reads, parses and checks a config file; relative paths resolve against its directory.
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

    /// Parses and checks config text; relative paths resolve against `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            source: Box::new(source),
        })?;
        config.resolve_paths(base_dir);
        config.check()?;
        Ok(config)
    }

    /// A config with every default, for the given PKI files and store (tests and the demo).
    pub fn with_defaults(tls: TlsConfig, store_path: PathBuf) -> Self {
        Self {
            quic: QuicConfig::default(),
            tls,
            store: StoreConfig { path: store_path },
            http: HttpConfig::default(),
            fleet: FleetConfig::default(),
            ingest: IngestConfig::default(),
            agents: AgentsConfig::default(),
            alerts: crate::notify::config::AlertsConfig::default(),
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.tls.ca_cert);
        resolve(&mut self.tls.cert);
        resolve(&mut self.tls.key);
        if let Some(crl) = &mut self.tls.crl {
            resolve(crl);
        }
        resolve(&mut self.store.path);
    }

    /// Checks ranges and cross-field consistency.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.http.tokens.is_empty() && !self.http.listen.ip().is_loopback() {
            return bad(
                "http.tokens must be set when http.listen is not a loopback address (the API would be open)",
            );
        }
        for t in &self.http.tokens {
            t.value()?;
        }
        if self.fleet.stale_after_secs == 0
            || self.fleet.offline_after_secs <= self.fleet.stale_after_secs
        {
            return bad("fleet.offline_after_secs must be greater than fleet.stale_after_secs > 0");
        }
        if self.ingest.max_frame_bytes < 1024 {
            return bad("ingest.max_frame_bytes must be at least 1024");
        }
        if self.ingest.max_batch_records == 0 || self.ingest.group_commit_max_records == 0 {
            return bad("ingest.max_batch_records and ingest.group_commit_max_records must be > 0");
        }
        if self.ingest.writer_queue_batches == 0 || self.ingest.max_inflight_batches == 0 {
            return bad("ingest.writer_queue_batches and ingest.max_inflight_batches must be > 0");
        }
        if self.ingest.hello_timeout_secs == 0 {
            return bad("ingest.hello_timeout_secs must be > 0");
        }
        if self.agents.max_batch_records == 0
            || self.agents.max_batch_records > self.ingest.max_batch_records
        {
            return bad("agents.max_batch_records must be between 1 and ingest.max_batch_records");
        }
        if self.agents.heartbeat_interval_secs == 0 || self.agents.net_probe_interval_secs == 0 {
            return bad("agents intervals must be > 0");
        }
        if self.quic.idle_timeout_secs == 0
            || self.quic.keep_alive_interval_secs >= self.quic.idle_timeout_secs
        {
            return bad("quic.keep_alive_interval_secs must be below quic.idle_timeout_secs > 0");
        }
        if self.quic.max_handshakes_in_progress == 0 || self.quic.max_connections == 0 {
            return bad("quic.max_handshakes_in_progress and quic.max_connections must be > 0");
        }
        if self.quic.overload_retry_after_secs == 0 {
            return bad("quic.overload_retry_after_secs must be > 0 (agents need a retry hint)");
        }
        if self.ingest.rate_limit_records_per_sec != 0
            && self.ingest.rate_limit_records_per_sec
                < u64::from(self.agents.backlog_records_per_sec)
        {
            return bad(
                "ingest.rate_limit_records_per_sec must be 0 or at least agents.backlog_records_per_sec",
            );
        }
        if self.tls.crl_poll_interval_secs == 0 {
            return bad("tls.crl_poll_interval_secs must be > 0");
        }
        self.alerts.check()?;
        Ok(())
    }
}

impl FleetConfig {
    /// The thresholds in the core's units.
    pub fn thresholds(&self) -> storepulse_collector_core::Thresholds {
        let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        storepulse_collector_core::Thresholds {
            stale_after_ms: ms(self.stale_after_secs),
            offline_after_ms: ms(self.offline_after_secs),
        }
    }
}

impl IngestConfig {
    /// Group commit delay as a duration.
    pub fn group_commit_max_delay(&self) -> Duration {
        Duration::from_millis(self.group_commit_max_delay_ms)
    }

    /// How record times are checked against the collector's clock.
    pub fn clock_policy(&self) -> storepulse_collector_core::ClockPolicy {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        storepulse_collector_core::ClockPolicy {
            skew_threshold_ms: ms(self.clock_skew_threshold_secs),
            max_record_age_ms: ms(self.max_record_age_secs),
        }
    }
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            listen: default_quic_listen(),
            idle_timeout_secs: default_idle_timeout_secs(),
            keep_alive_interval_secs: default_keep_alive_interval_secs(),
            max_handshakes_in_progress: default_max_handshakes_in_progress(),
            max_handshakes_per_sec: default_max_handshakes_per_sec(),
            handshake_queue_len: default_handshake_queue_len(),
            handshake_queue_wait_ms: default_handshake_queue_wait_ms(),
            max_connections: default_max_connections(),
            overload_retry_after_secs: default_overload_retry_after_secs(),
            socket_receive_buffer_bytes: default_socket_receive_buffer_bytes(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_http_listen(),
            tokens: Vec::new(),
            public_healthz: true,
            public_metrics: false,
        }
    }
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            stale_after_secs: default_stale_after_secs(),
            offline_after_secs: default_offline_after_secs(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: default_max_frame_bytes(),
            max_batch_records: default_ingest_max_batch_records(),
            group_commit_max_delay_ms: default_group_commit_max_delay_ms(),
            group_commit_max_records: default_group_commit_max_records(),
            hello_timeout_secs: default_hello_timeout_secs(),
            writer_queue_batches: default_writer_queue_batches(),
            max_inflight_batches: default_max_inflight_batches(),
            rate_limit_records_per_sec: default_rate_limit_records_per_sec(),
            rate_limit_bytes_per_sec: default_rate_limit_bytes_per_sec(),
            rate_limit_burst_secs: default_rate_limit_burst_secs(),
            rate_limit_disconnect_after_secs: default_rate_limit_disconnect_after_secs(),
            clock_skew_threshold_secs: default_clock_skew_threshold_secs(),
            max_record_age_secs: default_max_record_age_secs(),
        }
    }
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_secs: default_heartbeat_interval_secs(),
            net_probe_interval_secs: default_net_probe_interval_secs(),
            max_batch_records: default_agents_max_batch_records(),
            backlog_records_per_sec: default_backlog_records_per_sec(),
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
            crl_poll_interval_secs: default_crl_poll_interval_secs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = Config::load(&dir.join("collector.example.toml")).expect("example parses");
        assert!(
            c.tls.ca_cert.starts_with(dir),
            "relative paths resolve against the file"
        );
        assert_eq!(c.agents.heartbeat_interval_secs, 30);
        assert_eq!(c.ingest.group_commit_max_delay_ms, 10);
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let text = "[tls]\nca_cert='/p/ca.pem'\ncert='c.pem'\nkey='c.key'\n[store]\npath='data'\n";
        let c = Config::from_toml(text, Path::new("/etc/sp")).expect("parses");
        assert_eq!(c.quic.listen, default_quic_listen());
        assert_eq!(c.http.listen, default_http_listen());
        assert_eq!(c.tls.ca_cert, PathBuf::from("/p/ca.pem"));
        assert_eq!(c.tls.cert, PathBuf::from("/etc/sp/c.pem"));
        assert_eq!(c.store.path, PathBuf::from("/etc/sp/data"));
        assert_eq!(c.tls.crl, None);
        assert_eq!(c.fleet.thresholds().stale_after_ms, 90_000);
        assert_eq!(c.ingest.max_frame_bytes, 1 << 20);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let base = "[tls]\nca_cert='a'\ncert='b'\nkey='c'\n[store]\npath='d'\n";
        let unknown = format!("{base}[quic]\nlisten_addr='0.0.0.0:1'\n");
        assert!(matches!(
            Config::from_toml(&unknown, Path::new(".")),
            Err(ConfigError::Parse { .. })
        ));
        let inverted = format!("{base}[fleet]\nstale_after_secs=300\noffline_after_secs=90\n");
        assert!(matches!(
            Config::from_toml(&inverted, Path::new(".")),
            Err(ConfigError::Invalid(_))
        ));
    }
}
