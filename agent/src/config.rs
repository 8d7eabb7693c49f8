//! Agent configuration: the strict TOML file format and the typed [`Config`] it is parsed into
//! once, at startup.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use storepulse_shared::{Identity, Label, LinkType, TerminalId, ids};

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error (in the message, not a separate source).
        cause: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema (unknown or missing field, wrong
    /// type).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message (names the field and the line).
        message: String,
    },
    /// A field has a value that is not allowed.
    #[error("config field {field}: {reason}")]
    Invalid {
        /// The field, as `section.name`.
        field: String,
        /// Why.
        reason: String,
    },
}

/// The parsed, validated agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Who this terminal is.
    pub identity: Identity,
    /// Where the collector is, and the TLS material to reach it.
    pub collector: CollectorConfig,
    /// The on-disk spool.
    pub spool: SpoolConfig,
    /// The loopback HTTP intake for the POS application.
    pub intake: IntakeConfig,
    /// Probe intervals and endpoints.
    pub probes: ProbesConfig,
    /// Uplink (QUIC) tunables.
    pub uplink: UplinkSettings,
    /// Enrolment: how to get a certificate when there is none (`[enrol]`, optional).
    pub enrol: Option<EnrolConfig>,
    /// How the log is written (`[log]`; `--log-format` overrides it).
    pub log: LogFormat,
}

/// How log lines are written to standard error (`[log] format`, `--log-format`). What is
/// logged is `RUST_LOG` (default `info`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines; colours only when standard error is a terminal (and `NO_COLOR`
    /// is not set).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the event's fields.
    Json,
}

/// `[enrol]`, resolved: the collector's enrolment endpoint and the bootstrap token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolConfig {
    /// `host:port` of the collector's enrolment endpoint (UDP).
    pub address: String,
    /// TLS server name of the collector (default: `collector.server_name`).
    pub server_name: String,
    /// Where the bootstrap token comes from.
    pub token: TokenSource,
}

/// The bootstrap token: in the config, or in a file read when enrolling.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Given in the config file.
    Inline(String),
    /// A file holding it (one line), absolute.
    File(PathBuf),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never log the token itself.
            Self::Inline(_) => f.write_str("Inline(..)"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

impl TokenSource {
    /// The token, read from its file if need be (surrounding whitespace trimmed).
    pub fn read(&self) -> Result<String, ConfigError> {
        let token = match self {
            Self::Inline(t) => t.clone(),
            Self::File(path) => {
                std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                    path: path.clone(),
                    cause,
                })?
            }
        };
        let token = token.trim().to_owned();
        if token.is_empty() || token.len() > 128 {
            return Err(invalid("enrol.token", "must be 1-128 bytes"));
        }
        Ok(token)
    }
}

/// `[collector]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorConfig {
    /// `host:port` of the collector's QUIC listener.
    pub address: String,
    /// TLS server name to verify the collector's certificate against.
    pub server_name: String,
    /// Fleet CA certificate (PEM), absolute.
    pub ca_cert: PathBuf,
    /// This terminal's client certificate (PEM), absolute.
    pub cert: PathBuf,
    /// This terminal's private key (PEM), absolute.
    pub key: PathBuf,
}

/// `[spool]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// The redb file, absolute.
    pub path: PathBuf,
    /// Size bound on the logical record bytes.
    pub max_bytes: u64,
}

/// `[intake]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeConfig {
    /// Loopback address to listen on.
    pub listen: SocketAddr,
}

/// `[probes]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbesConfig {
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// Network-quality period.
    pub net_probe_interval: Duration,
    /// Payment endpoints to time DNS and TCP connect against.
    pub endpoints: Vec<Endpoint>,
}

/// One payment endpoint to probe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Name reported in the samples (for example `cup-host`).
    pub name: String,
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// `[uplink]`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkSettings {
    /// QUIC keep-alive interval.
    pub keep_alive: Duration,
    /// QUIC idle timeout.
    pub idle_timeout: Duration,
    /// First reconnect backoff step.
    pub backoff_initial: Duration,
    /// Reconnect backoff cap.
    pub backoff_max: Duration,
    /// Backlog replay rate (the collector's `Welcome` overrides it).
    pub backlog_records_per_sec: u32,
    /// Most records per batch (the collector's `Welcome` overrides it).
    pub max_batch_records: u32,
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    identity: RawIdentity,
    collector: RawCollector,
    spool: RawSpool,
    #[serde(default)]
    intake: RawIntake,
    #[serde(default)]
    probes: RawProbes,
    #[serde(default)]
    uplink: RawUplink,
    #[serde(default)]
    enrol: Option<RawEnrol>,
    #[serde(default)]
    log: RawLog,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    /// `text` (default) or `json`.
    #[serde(default)]
    format: LogFormat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnrol {
    /// `host:port` of the enrolment endpoint.
    address: String,
    /// TLS server name; defaults to `collector.server_name`.
    #[serde(default)]
    server_name: Option<String>,
    /// The token itself.
    #[serde(default)]
    token: Option<String>,
    /// A file holding the token.
    #[serde(default)]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    /// Terminal id; must equal the CN of the client certificate. Exactly one of this and
    /// `terminal_id_file`.
    #[serde(default)]
    terminal_id: Option<String>,
    /// A file whose first line is the terminal id.
    #[serde(default)]
    terminal_id_file: Option<PathBuf>,
    // Labels the agent does not know are sent as "unknown"; the collector's inventory fills
    // them in.
    #[serde(default = "unknown")]
    merchant_id: String,
    #[serde(default = "unknown")]
    store_id: String,
    #[serde(default = "unknown")]
    region: String,
    #[serde(default = "unknown")]
    city: String,
    #[serde(default = "unknown")]
    acquirer: String,
    #[serde(default = "unknown")]
    qr_channel: String,
    #[serde(default = "unknown")]
    carrier: String,
    #[serde(default)]
    link: RawLink,
    #[serde(default = "unknown")]
    model: String,
    #[serde(default = "unknown")]
    firmware: String,
    #[serde(default = "unknown")]
    app_version: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawLink {
    Wired,
    Wifi,
    Cellular,
    #[default]
    Unknown,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    /// `host:port`.
    address: String,
    /// TLS server name.
    #[serde(default = "default_server_name")]
    server_name: String,
    /// PEM paths, relative to the config file's directory unless absolute.
    ca_cert: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    /// The redb file.
    path: PathBuf,
    /// Size bound, bytes.
    #[serde(default = "default_spool_max_bytes")]
    max_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntake {
    /// Loopback listen address.
    #[serde(default = "default_intake_listen")]
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbes {
    /// Seconds between heartbeats.
    #[serde(default = "default_heartbeat_interval_secs")]
    heartbeat_interval_secs: u32,
    /// Seconds between network-quality samples.
    #[serde(default = "default_net_probe_interval_secs")]
    net_probe_interval_secs: u32,
    /// Payment endpoints.
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUplink {
    /// QUIC keep-alive, seconds.
    #[serde(default = "default_keep_alive_secs")]
    keep_alive_secs: u32,
    /// QUIC idle timeout, seconds.
    #[serde(default = "default_idle_timeout_secs")]
    idle_timeout_secs: u32,
    /// First backoff step, milliseconds.
    #[serde(default = "default_backoff_initial_ms")]
    backoff_initial_ms: u32,
    /// Backoff cap, seconds.
    #[serde(default = "default_backoff_max_secs")]
    backoff_max_secs: u32,
    /// Backlog replay rate, records per second.
    #[serde(default = "default_backlog_records_per_sec")]
    backlog_records_per_sec: u32,
    /// Records per batch.
    #[serde(default = "default_max_batch_records")]
    max_batch_records: u32,
}

fn unknown() -> String {
    "unknown".to_owned()
}
fn default_server_name() -> String {
    "collector.storepulse.local".to_owned()
}
fn default_spool_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_intake_listen() -> String {
    "127.0.0.1:7878".to_owned()
}
fn default_heartbeat_interval_secs() -> u32 {
    30
}
fn default_net_probe_interval_secs() -> u32 {
    60
}
fn default_keep_alive_secs() -> u32 {
    15
}
fn default_idle_timeout_secs() -> u32 {
    60
}
fn default_backoff_initial_ms() -> u32 {
    1000
}
fn default_backoff_max_secs() -> u32 {
    60
}
fn default_backlog_records_per_sec() -> u32 {
    500
}
fn default_max_batch_records() -> u32 {
    256
}

impl Default for RawIntake {
    fn default() -> Self {
        Self {
            listen: default_intake_listen(),
        }
    }
}

impl Default for RawProbes {
    fn default() -> Self {
        Self {
            heartbeat_interval_secs: default_heartbeat_interval_secs(),
            net_probe_interval_secs: default_net_probe_interval_secs(),
            endpoints: Vec::new(),
        }
    }
}

impl Default for RawUplink {
    fn default() -> Self {
        Self {
            keep_alive_secs: default_keep_alive_secs(),
            idle_timeout_secs: default_idle_timeout_secs(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_secs: default_backoff_max_secs(),
            backlog_records_per_sec: default_backlog_records_per_sec(),
            max_batch_records: default_max_batch_records(),
        }
    }
}

impl Config {
    /// Reads and validates a config file. Relative paths in it resolve against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let base = std::path::absolute(&base).unwrap_or(base);
        Self::parse(&text, &base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses config text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        let identity = raw.identity.validate(base_dir)?;
        let collector = raw.collector.validate(base_dir)?;
        let enrol = raw
            .enrol
            .map(|e| e.validate(base_dir, &collector.server_name))
            .transpose()?;
        let spool = raw.spool.validate(base_dir)?;
        let intake = raw.intake.validate()?;
        let probes = raw.probes.validate()?;
        let uplink = raw.uplink.validate()?;
        Ok(Self {
            identity,
            collector,
            spool,
            intake,
            probes,
            uplink,
            enrol,
            log: raw.log.format,
        })
    }
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        reason: reason.to_string(),
    }
}

fn label(field: &str, value: String) -> Result<Label, ConfigError> {
    Label::new(value).map_err(|e| invalid(field, e))
}

fn id_label(field: &str, value: String) -> Result<Label, ConfigError> {
    ids::validate_id(&value).map_err(|e| invalid(field, e))?;
    label(field, value)
}

fn resolve(base: &Path, field: &str, p: PathBuf) -> Result<PathBuf, ConfigError> {
    if p.as_os_str().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(if p.is_absolute() { p } else { base.join(p) })
}

fn positive(field: &str, v: u32) -> Result<u32, ConfigError> {
    if v == 0 {
        Err(invalid(field, "must be greater than 0"))
    } else {
        Ok(v)
    }
}

impl RawIdentity {
    fn validate(self, base: &Path) -> Result<Identity, ConfigError> {
        let terminal_id = match (self.terminal_id, self.terminal_id_file) {
            (Some(id), None) => {
                TerminalId::new(id).map_err(|e| invalid("identity.terminal_id", e))?
            }
            (None, Some(file)) => {
                let path = resolve(base, "identity.terminal_id_file", file)?;
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    invalid(
                        "identity.terminal_id_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let id = text.lines().next().unwrap_or("").trim();
                TerminalId::new(id).map_err(|e| {
                    invalid(
                        "identity.terminal_id_file",
                        format!("{}: terminal id {id:?} {e}", path.display()),
                    )
                })?
            }
            _ => {
                return Err(invalid(
                    "identity.terminal_id",
                    "set exactly one of terminal_id and terminal_id_file",
                ));
            }
        };
        Ok(Identity {
            terminal_id,
            merchant_id: id_label("identity.merchant_id", self.merchant_id)?,
            store_id: id_label("identity.store_id", self.store_id)?,
            region: label("identity.region", self.region)?,
            city: label("identity.city", self.city)?,
            acquirer: label("identity.acquirer", self.acquirer)?,
            qr_channel: label("identity.qr_channel", self.qr_channel)?,
            carrier: label("identity.carrier", self.carrier)?,
            link: match self.link {
                RawLink::Wired => LinkType::Wired,
                RawLink::Wifi => LinkType::Wifi,
                RawLink::Cellular => LinkType::Cellular,
                RawLink::Unknown => LinkType::Unknown,
            },
            model: label("identity.model", self.model)?,
            firmware: label("identity.firmware", self.firmware)?,
            app_version: label("identity.app_version", self.app_version)?,
        })
    }
}

fn host_port(field: &str, address: &str) -> Result<(), ConfigError> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| invalid(field, "must be host:port"))?;
    if host.is_empty() || host == "[]" {
        return Err(invalid(field, "host is empty"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(invalid(field, format!("port {port:?} is not 1-65535"))),
    }
}

fn dns_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    {
        return Err(invalid(field, "must be a DNS name"));
    }
    Ok(())
}

impl RawEnrol {
    fn validate(self, base: &Path, default_server: &str) -> Result<EnrolConfig, ConfigError> {
        host_port("enrol.address", &self.address)?;
        let server_name = self
            .server_name
            .unwrap_or_else(|| default_server.to_owned());
        dns_name("enrol.server_name", &server_name)?;
        let token = match (self.token, self.token_file) {
            (Some(t), None) => TokenSource::Inline(t),
            (None, Some(f)) => TokenSource::File(resolve(base, "enrol.token_file", f)?),
            _ => {
                return Err(invalid(
                    "enrol.token",
                    "set exactly one of token and token_file",
                ));
            }
        };
        if let TokenSource::Inline(t) = &token {
            token.read().map(drop)?;
            debug_assert!(!t.is_empty());
        }
        Ok(EnrolConfig {
            address: self.address,
            server_name,
            token,
        })
    }
}

impl RawCollector {
    fn validate(self, base: &Path) -> Result<CollectorConfig, ConfigError> {
        host_port("collector.address", &self.address)?;
        dns_name("collector.server_name", &self.server_name)?;
        Ok(CollectorConfig {
            address: self.address,
            server_name: self.server_name,
            ca_cert: resolve(base, "collector.ca_cert", self.ca_cert)?,
            cert: resolve(base, "collector.cert", self.cert)?,
            key: resolve(base, "collector.key", self.key)?,
        })
    }
}

impl RawSpool {
    fn validate(self, base: &Path) -> Result<SpoolConfig, ConfigError> {
        const MIN: u64 = 64 * 1024;
        if self.max_bytes < MIN {
            return Err(invalid(
                "spool.max_bytes",
                format!("must be at least {MIN}"),
            ));
        }
        Ok(SpoolConfig {
            path: resolve(base, "spool.path", self.path)?,
            max_bytes: self.max_bytes,
        })
    }
}

impl RawIntake {
    fn validate(self) -> Result<IntakeConfig, ConfigError> {
        let listen: SocketAddr = self
            .listen
            .parse()
            .map_err(|_| invalid("intake.listen", format!("{:?} is not ip:port", self.listen)))?;
        if !listen.ip().is_loopback() {
            return Err(invalid(
                "intake.listen",
                format!(
                    "{listen} is not a loopback address; the intake must not be reachable from the network"
                ),
            ));
        }
        Ok(IntakeConfig { listen })
    }
}

impl RawProbes {
    fn validate(self) -> Result<ProbesConfig, ConfigError> {
        let hb = positive(
            "probes.heartbeat_interval_secs",
            self.heartbeat_interval_secs,
        )?;
        let np = positive(
            "probes.net_probe_interval_secs",
            self.net_probe_interval_secs,
        )?;
        let mut names = std::collections::BTreeSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let field = format!("probes.endpoints[{i}]");
            ids::validate_label(&e.name).map_err(|err| invalid(&format!("{field}.name"), err))?;
            if !names.insert(e.name.clone()) {
                return Err(invalid(
                    &format!("{field}.name"),
                    format!("{:?} is used twice", e.name),
                ));
            }
            if e.host.is_empty() || e.host.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(
                    &format!("{field}.host"),
                    "must be a host name or IP address",
                ));
            }
            if e.port == 0 {
                return Err(invalid(&format!("{field}.port"), "must be 1-65535"));
            }
        }
        Ok(ProbesConfig {
            heartbeat_interval: Duration::from_secs(hb.into()),
            net_probe_interval: Duration::from_secs(np.into()),
            endpoints: self.endpoints,
        })
    }
}

impl RawUplink {
    fn validate(self) -> Result<UplinkSettings, ConfigError> {
        let keep_alive = positive("uplink.keep_alive_secs", self.keep_alive_secs)?;
        let idle = positive("uplink.idle_timeout_secs", self.idle_timeout_secs)?;
        if keep_alive >= idle {
            return Err(invalid(
                "uplink.keep_alive_secs",
                "must be less than uplink.idle_timeout_secs",
            ));
        }
        let initial = positive("uplink.backoff_initial_ms", self.backoff_initial_ms)?;
        let max = positive("uplink.backoff_max_secs", self.backoff_max_secs)?;
        if u64::from(max) * 1000 < u64::from(initial) {
            return Err(invalid(
                "uplink.backoff_max_secs",
                "must not be less than uplink.backoff_initial_ms",
            ));
        }
        let rate = positive(
            "uplink.backlog_records_per_sec",
            self.backlog_records_per_sec,
        )?;
        let batch = positive("uplink.max_batch_records", self.max_batch_records)?;
        let limit = storepulse_agent_core::uplink::MAX_BATCH_RECORDS_LIMIT;
        if batch > limit {
            return Err(invalid(
                "uplink.max_batch_records",
                format!("must be at most {limit}"),
            ));
        }
        Ok(UplinkSettings {
            keep_alive: Duration::from_secs(keep_alive.into()),
            idle_timeout: Duration::from_secs(idle.into()),
            backoff_initial: Duration::from_millis(initial.into()),
            backoff_max: Duration::from_secs(max.into()),
            backlog_records_per_sec: rate,
            max_batch_records: batch,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid config whose spool lives in `dir`; the intake port is picked by the OS.
    pub(crate) fn test_config(dir: &Path) -> Config {
        let text = format!(
            "{MINIMAL}\n[intake]\nlisten = \"127.0.0.1:0\"\n[probes]\nheartbeat_interval_secs = 1\nnet_probe_interval_secs = 1\n"
        );
        Config::parse(&text, dir).expect("test config is valid")
    }

    const MINIMAL: &str = r#"
[identity]
terminal_id = "T0001"
merchant_id = "M1"
store_id = "S1"
region = "east"
city = "上海"
acquirer = "acq-a"
qr_channel = "wechatpay"
carrier = "cmcc"
link = "cellular"
model = "P300"
firmware = "2.3.1"
app_version = "5.0.2"

[collector]
address = "127.0.0.1:4433"
ca_cert = "pki/ca.pem"
cert = "/etc/storepulse/t.pem"
key = "pki/t.key"

[spool]
path = "spool.redb"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/storepulse"))
    }

    fn err_field(text: &str) -> String {
        match parse(text) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
        let c = Config::load(&path).expect("the example config is valid");
        assert_eq!(c.identity.terminal_id.as_str(), "T0001");
        assert!(c.collector.ca_cert.is_absolute());
        assert!(!c.probes.endpoints.is_empty());
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.collector.server_name, "collector.storepulse.local");
        assert_eq!(
            c.collector.ca_cert,
            PathBuf::from("/etc/storepulse/pki/ca.pem")
        );
        assert_eq!(c.collector.cert, PathBuf::from("/etc/storepulse/t.pem"));
        assert_eq!(c.spool.max_bytes, 64 * 1024 * 1024);
        assert_eq!(c.intake.listen, "127.0.0.1:7878".parse().expect("addr"));
        assert_eq!(c.probes.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(c.probes.net_probe_interval, Duration::from_secs(60));
        assert_eq!(c.uplink.keep_alive, Duration::from_secs(15));
        assert_eq!(c.uplink.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.uplink.backoff_initial, Duration::from_millis(1000));
        assert_eq!(c.uplink.backoff_max, Duration::from_secs(60));
        assert_eq!(c.uplink.backlog_records_per_sec, 500);
        assert_eq!(c.uplink.max_batch_records, 256);
        assert_eq!(c.identity.link, LinkType::Cellular);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = MINIMAL.replace("[spool]", "[spool]\nmax_size = 3");
        match parse(&text) {
            Err(ConfigError::Parse { message, .. }) => {
                assert!(message.contains("max_size"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        assert_eq!(
            err_field(&MINIMAL.replace("\"T0001\"", "\"T 1\"")),
            "identity.terminal_id"
        );
        assert_eq!(
            err_field(&MINIMAL.replace("\"M1\"", "\"M/1\"")),
            "identity.merchant_id"
        );
        assert_eq!(
            err_field(&MINIMAL.replace("127.0.0.1:4433", "collector")),
            "collector.address"
        );
        let text = format!("{MINIMAL}\n[intake]\nlisten = \"0.0.0.0:7878\"\n");
        assert_eq!(err_field(&text), "intake.listen");
        let text = format!("{MINIMAL}\n[uplink]\nkeep_alive_secs = 90\n");
        assert_eq!(err_field(&text), "uplink.keep_alive_secs");
        let text = format!("{MINIMAL}\n[probes]\nheartbeat_interval_secs = 0\n");
        assert_eq!(err_field(&text), "probes.heartbeat_interval_secs");
        let text =
            format!("{MINIMAL}\n[[probes.endpoints]]\nname = \"a\"\nhost = \"h\"\nport = 0\n");
        assert_eq!(err_field(&text), "probes.endpoints[0].port");
    }

    #[test]
    fn link_must_be_known() {
        assert!(matches!(
            parse(&MINIMAL.replace("\"cellular\"", "\"5g\"")),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn identity_from_a_file_and_labels_default_to_unknown() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            tmp.path().join("terminal-id"),
            "T-77\n# written at install\n",
        )
        .expect("write");
        let text = r#"
[identity]
terminal_id_file = "terminal-id"
[collector]
address = "c.example:4433"
ca_cert = "ca.pem"
cert = "t.pem"
key = "t.key"
[spool]
path = "spool.redb"
[enrol]
address = "c.example:4434"
token_file = "enrol.token"
"#;
        let c = Config::parse(text, tmp.path()).expect("valid");
        assert_eq!(c.identity.terminal_id.as_str(), "T-77");
        assert_eq!(c.identity.city.as_str(), "unknown");
        assert_eq!(c.identity.link, LinkType::Unknown);
        let e = c.enrol.expect("enrol");
        assert_eq!(e.server_name, "collector.storepulse.local");
        assert_eq!(e.token, TokenSource::File(tmp.path().join("enrol.token")));
        assert!(matches!(e.token.read(), Err(ConfigError::Read { .. })));
        std::fs::write(tmp.path().join("enrol.token"), " tok-1 \n").expect("write");
        assert_eq!(e.token.read().expect("token"), "tok-1");

        std::fs::remove_file(tmp.path().join("terminal-id")).expect("rm");
        match Config::parse(text, tmp.path()) {
            Err(ConfigError::Invalid { field, reason }) => {
                assert_eq!(field, "identity.terminal_id_file");
                assert!(reason.contains("cannot read"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let both = MINIMAL.replace(
            "terminal_id = \"T0001\"",
            "terminal_id = \"T0001\"\nterminal_id_file = \"x\"",
        );
        assert_eq!(err_field(&both), "identity.terminal_id");
        let no_token = format!("{MINIMAL}\n[enrol]\naddress = \"c:4434\"\n");
        assert_eq!(err_field(&no_token), "enrol.token");
        assert!(
            !format!("{:?}", TokenSource::Inline("secret".into())).contains("secret"),
            "a token is never logged"
        );
    }
}
