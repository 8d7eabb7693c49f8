//! The collector's config file as written: strict TOML (`deny_unknown_fields`), units in field
//! names, defaults from named functions. Read once by [`super::Config::from_toml`], checked and
//! turned into the typed settings; nothing else sees these types.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use storepulse_collector_core::detect::DetectorConfig;

use super::TokenRole;
use crate::notify::config::{AlertsConfig, Secret};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) quic: RawQuic,
    pub(super) tls: RawTls,
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) fleet: RawFleet,
    #[serde(default)]
    pub(super) ingest: RawIngest,
    #[serde(default)]
    pub(super) agents: RawAgents,
    #[serde(default)]
    pub(super) detect: RawDetect,
    #[serde(default)]
    pub(super) alerts: AlertsConfig,
    #[serde(default)]
    pub(super) runtime: RawRuntime,
    #[serde(default)]
    pub(super) log: RawLog,
}

/// `[log]`: how the log is written (what is logged is `RUST_LOG`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    /// `text` (default) or `json` (one JSON object per line).
    #[serde(default)]
    pub(super) format: super::LogFormat,
}

/// `[runtime]`: the collector process's threads.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRuntime {
    /// Async worker threads (QUIC connections, TLS handshakes, the HTTP API). Default: the
    /// cores this process may use (its CPU affinity, e.g. `taskset` or a systemd `CPUAffinity`,
    /// and its cgroup CPU quota). The group-commit writer is one more thread of its own.
    #[serde(default)]
    pub(super) worker_threads: Option<usize>,
}

/// `[quic]`: the agent-facing QUIC endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuic {
    /// UDP address to listen on.
    #[serde(default = "default_quic_listen")]
    pub(super) listen: SocketAddr,
    /// A connection without any packet for this long is closed, seconds.
    #[serde(default = "default_idle_timeout_secs")]
    pub(super) idle_timeout_secs: u64,
    /// Interval of QUIC keep-alive pings sent by the collector, seconds; 0 (the default): the
    /// collector sends none. Agents send their own (PROTOCOL.md recommends every 15 s), which
    /// both keeps the connection from idling out and refreshes the NAT bindings on the agent's
    /// side, which only outbound packets do; pings from the collector as well would double the
    /// packets of an idle fleet (at 100,000 agents, 6,700 more pings and as many ACKs a second).
    #[serde(default = "default_keep_alive_interval_secs")]
    pub(super) keep_alive_interval_secs: u64,
    /// Admission control: most TLS handshakes in progress at once. Connections beyond it get a
    /// QUIC Retry (address validation) or wait in the handshake queue.
    #[serde(default = "default_max_handshakes_in_progress")]
    pub(super) max_handshakes_in_progress: usize,
    /// Admission control: most handshakes started per second (0: no rate limit).
    #[serde(default = "default_max_handshakes_per_sec")]
    pub(super) max_handshakes_per_sec: u64,
    /// Admission control: connections waiting for a handshake slot; beyond it they are refused
    /// (the agent backs off with jitter and tries again).
    #[serde(default = "default_handshake_queue_len")]
    pub(super) handshake_queue_len: usize,
    /// Admission control: longest a connection waits in the handshake queue before it is
    /// refused, milliseconds (keep it well below the agents' 10 s handshake timeout).
    #[serde(default = "default_handshake_queue_wait_ms")]
    pub(super) handshake_queue_wait_ms: u64,
    /// Most agent connections open at once. An agent beyond it is sent a `Goodbye`
    /// (Overloaded, `retry_after_secs`) and closed with OVERLOADED.
    #[serde(default = "default_max_connections")]
    pub(super) max_connections: usize,
    /// `Goodbye.retry_after_secs` for agents sent away because the collector is full.
    #[serde(default = "default_overload_retry_after_secs")]
    pub(super) overload_retry_after_secs: u32,
    /// Receive buffer of the QUIC UDP socket, bytes (SO_RCVBUF). Every agent's packets arrive
    /// on this one socket; with the kernel default (about 208 KiB, some 90 datagrams) a
    /// moment of CPU contention drops packets and, with tens of thousands of agents, turns
    /// into failed handshakes and a retry storm. Linux caps it at `net.core.rmem_max`; the
    /// collector logs the size it got.
    #[serde(default = "default_socket_receive_buffer_bytes")]
    pub(super) socket_receive_buffer_bytes: usize,
}

/// `[tls]`: the fleet PKI files (as written by `storepulse-collector pki`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// Fleet CA certificate (PEM); client certificates must chain to it.
    pub(super) ca_cert: PathBuf,
    /// Collector certificate (PEM).
    pub(super) cert: PathBuf,
    /// Collector private key (PEM).
    pub(super) key: PathBuf,
    /// CRL (PEM) listing revoked client certificates; optional.
    #[serde(default)]
    pub(super) crl: Option<PathBuf>,
    /// How often the CRL file's modification time is checked for a reload, seconds.
    #[serde(default = "default_crl_poll_interval_secs")]
    pub(super) crl_poll_interval_secs: u64,
}

/// `[store]`: where records live.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    /// Directory of the fjall database.
    pub(super) path: PathBuf,
}

/// `[http]`: the HTTP API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    /// TCP address to listen on.
    #[serde(default = "default_http_listen")]
    pub(super) listen: SocketAddr,
    /// API tokens (`Authorization: Bearer <token>`). Empty: no authentication, which is only
    /// allowed when `listen` is a loopback address.
    #[serde(default)]
    pub(super) tokens: Vec<RawToken>,
    /// Serve `/healthz` without a token.
    #[serde(default = "default_true")]
    pub(super) public_healthz: bool,
    /// Serve `/metrics` without a token (otherwise Prometheus needs a read token).
    #[serde(default)]
    pub(super) public_metrics: bool,
    /// The IANA time zone the dashboard shows times in; unset: the browser's.
    #[serde(default)]
    pub(super) time_zone: Option<String>,
}

/// One API token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    /// Who holds it (shown in logs, never the token).
    pub(super) name: String,
    /// `read` (GET only) or `admin` (may also create and end silences and windows).
    pub(super) role: TokenRole,
    /// The token itself (at least 16 characters). Prefer `token_env`.
    #[serde(default)]
    pub(super) token: Option<Secret>,
    /// Name of an environment variable holding the token.
    #[serde(default)]
    pub(super) token_env: Option<String>,
}

/// `[fleet]`: liveness thresholds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    /// Silence after which a terminal is stale, seconds.
    #[serde(default = "default_stale_after_secs")]
    pub(super) stale_after_secs: u64,
    /// Silence after which a terminal is offline, seconds.
    #[serde(default = "default_offline_after_secs")]
    pub(super) offline_after_secs: u64,
}

/// `[ingest]`: limits and group commit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIngest {
    /// Largest frame payload accepted, bytes.
    #[serde(default = "default_max_frame_bytes")]
    pub(super) max_frame_bytes: u32,
    /// Most records accepted in one batch (a hard limit; agents are asked for
    /// `agents.max_batch_records`).
    #[serde(default = "default_ingest_max_batch_records")]
    pub(super) max_batch_records: u32,
    /// Longest the writer waits to gather more batches into one commit, milliseconds, counted
    /// from the receipt of the group's first batch (one sleep, and only while fewer than
    /// `group_commit_max_records` are queued: under load the queue fills during the previous
    /// fsync and nothing waits). Every commit is an fsync: at 20,000 idle agents 10 ms took a
    /// fifth off the collector's CPU against 2 ms (BENCHMARKS.md), and adds at most 10 ms to an
    /// acknowledgement; 0 acks soonest (lower latency, more fsyncs at low load).
    #[serde(default = "default_group_commit_max_delay_ms")]
    pub(super) group_commit_max_delay_ms: u64,
    /// Most records written in one commit.
    #[serde(default = "default_group_commit_max_records")]
    pub(super) group_commit_max_records: usize,
    /// Time allowed between handshake and `Hello`, seconds.
    #[serde(default = "default_hello_timeout_secs")]
    pub(super) hello_timeout_secs: u64,
    /// Batches queued for the writer from all connections before senders wait (backpressure).
    #[serde(default = "default_writer_queue_batches")]
    pub(super) writer_queue_batches: usize,
    /// Batches one connection may have waiting for their Ack before it stops reading.
    #[serde(default = "default_max_inflight_batches")]
    pub(super) max_inflight_batches: usize,
    /// Per-connection rate limit, records per second (0: unlimited). Above it the collector
    /// stops reading from the connection for a while (QUIC flow control pushes back).
    #[serde(default = "default_rate_limit_records_per_sec")]
    pub(super) rate_limit_records_per_sec: u64,
    /// Per-connection rate limit, frame bytes per second (0: unlimited).
    #[serde(default = "default_rate_limit_bytes_per_sec")]
    pub(super) rate_limit_bytes_per_sec: u64,
    /// Seconds of the rate a connection may send at once.
    #[serde(default = "default_rate_limit_burst_secs")]
    pub(super) rate_limit_burst_secs: u64,
    /// An agent over its rate limit at every batch for this long is sent a `Goodbye`
    /// (RateLimited, `retry_after_secs`) and closed with RATE_LIMITED, seconds (0: never).
    #[serde(default = "default_rate_limit_disconnect_after_secs")]
    pub(super) rate_limit_disconnect_after_secs: u64,
    /// An agent clock off by more than this at its `Hello` is flagged as skewed and its
    /// record times are corrected by the measured offset, seconds.
    #[serde(default = "default_clock_skew_threshold_secs")]
    pub(super) clock_skew_threshold_secs: u64,
    /// A record time (after any correction) older than this before its receipt is clamped to
    /// it, seconds; one later than the receipt by more than the skew threshold is clamped to
    /// the receipt.
    #[serde(default = "default_max_record_age_secs")]
    pub(super) max_record_age_secs: u64,
}

/// `[agents]`: settings sent to every agent in `Welcome`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgents {
    /// Heartbeat interval, seconds. Also the interval the detector assumes for a terminal
    /// until it has learned the terminal's own.
    #[serde(default = "default_heartbeat_interval_secs")]
    pub(super) heartbeat_interval_secs: u32,
    /// Network probe interval, seconds.
    #[serde(default = "default_net_probe_interval_secs")]
    pub(super) net_probe_interval_secs: u32,
    /// Records per batch agents should send.
    #[serde(default = "default_agents_max_batch_records")]
    pub(super) max_batch_records: u32,
    /// Backlog replay rate, records per second.
    #[serde(default = "default_backlog_records_per_sec")]
    pub(super) backlog_records_per_sec: u32,
}

/// `[detect]`: the detection thresholds an operator may tune. The defaults are the detection
/// core's own ([`DetectorConfig::default`]), the ones eval scores.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDetect {
    /// `-log10 p` a failure count must reach to open an incident.
    #[serde(default = "default_min_significance")]
    pub(super) min_significance: f64,
    /// `-log10 p` that keeps an open failure incident active.
    #[serde(default = "default_stay_open_significance")]
    pub(super) stay_open_significance: f64,
    /// `-log10 p` an acquirer or QR channel needs inside its announced maintenance window.
    #[serde(default = "default_announced_significance")]
    pub(super) announced_maintenance_significance: f64,
    /// False single-terminal incidents per fleet-day the run and device tests may raise.
    #[serde(default = "default_false_incidents_per_fleet_day")]
    pub(super) false_incidents_per_fleet_day: f64,
    /// How long an incident's signal must be gone before it resolves, seconds.
    #[serde(default = "default_resolve_hold_secs")]
    pub(super) resolve_hold_secs: u64,
    /// A failure incident whose scope sees no payments for this long resolves, seconds.
    #[serde(default = "default_quiet_resolve_secs")]
    pub(super) quiet_resolve_secs: u64,
    /// A record observed this much earlier than it arrives is backlog, seconds.
    #[serde(default = "default_backlog_lag_secs")]
    pub(super) backlog_lag_secs: u64,
    /// Grace around an announced maintenance window, seconds.
    #[serde(default = "default_maintenance_grace_secs")]
    pub(super) maintenance_grace_secs: u64,
    /// Half-life of the learned baselines, hours.
    #[serde(default = "default_baseline_half_life_hours")]
    pub(super) baseline_half_life_hours: u64,
    /// A heartbeat is distressed this many degrees Celsius above the device's own baseline
    /// (and `device_busy_cpu_points` above its CPU baseline).
    #[serde(default = "default_device_hot_degrees_c")]
    pub(super) device_hot_degrees_c: f32,
    /// CPU percentage points above the device's own baseline of a distressed heartbeat.
    #[serde(default = "default_device_busy_cpu_points")]
    pub(super) device_busy_cpu_points: f32,
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
pub(super) fn default_crl_poll_interval_secs() -> u64 {
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
// The `[detect]` defaults are the core's, in the file's units.
fn default_min_significance() -> f64 {
    DetectorConfig::default().min_significance
}
fn default_stay_open_significance() -> f64 {
    DetectorConfig::default().stay_open_significance
}
fn default_announced_significance() -> f64 {
    DetectorConfig::default().announced_significance
}
fn default_false_incidents_per_fleet_day() -> f64 {
    DetectorConfig::default().run_false_per_day
}
fn secs_of(ms: i64) -> u64 {
    u64::try_from(ms / 1000).unwrap_or(0)
}
fn default_resolve_hold_secs() -> u64 {
    secs_of(DetectorConfig::default().resolve_hold_ms)
}
fn default_quiet_resolve_secs() -> u64 {
    secs_of(DetectorConfig::default().quiet_resolve_ms)
}
fn default_backlog_lag_secs() -> u64 {
    secs_of(DetectorConfig::default().backlog_lag_ms)
}
fn default_maintenance_grace_secs() -> u64 {
    secs_of(DetectorConfig::default().maintenance_grace_ms)
}
fn default_baseline_half_life_hours() -> u64 {
    secs_of(DetectorConfig::default().baseline_half_life_ms) / 3600
}
fn default_device_hot_degrees_c() -> f32 {
    DetectorConfig::default().hot_degrees
}
fn default_device_busy_cpu_points() -> f32 {
    DetectorConfig::default().busy_points
}

impl Default for RawQuic {
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

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: default_http_listen(),
            tokens: Vec::new(),
            public_healthz: true,
            public_metrics: false,
            time_zone: None,
        }
    }
}

impl Default for RawFleet {
    fn default() -> Self {
        Self {
            stale_after_secs: default_stale_after_secs(),
            offline_after_secs: default_offline_after_secs(),
        }
    }
}

impl Default for RawIngest {
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

impl Default for RawAgents {
    fn default() -> Self {
        Self {
            heartbeat_interval_secs: default_heartbeat_interval_secs(),
            net_probe_interval_secs: default_net_probe_interval_secs(),
            max_batch_records: default_agents_max_batch_records(),
            backlog_records_per_sec: default_backlog_records_per_sec(),
        }
    }
}

impl Default for RawDetect {
    fn default() -> Self {
        Self {
            min_significance: default_min_significance(),
            stay_open_significance: default_stay_open_significance(),
            announced_maintenance_significance: default_announced_significance(),
            false_incidents_per_fleet_day: default_false_incidents_per_fleet_day(),
            resolve_hold_secs: default_resolve_hold_secs(),
            quiet_resolve_secs: default_quiet_resolve_secs(),
            backlog_lag_secs: default_backlog_lag_secs(),
            maintenance_grace_secs: default_maintenance_grace_secs(),
            baseline_half_life_hours: default_baseline_half_life_hours(),
            device_hot_degrees_c: default_device_hot_degrees_c(),
            device_busy_cpu_points: default_device_busy_cpu_points(),
        }
    }
}
