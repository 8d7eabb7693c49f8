//! `[alerts]`: notification timing, receivers, routes, inhibition, silences and maintenance
//! windows from the config file, parsed strictly and turned into the core's
//! [`NotifyConfig`]. Secrets (URLs, routing keys, signing secrets) come from the file or from
//! an environment variable and never appear in `Debug` output or logs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use storepulse_collector_core::notify::{
    InhibitRule, MaintenanceMode, MaintenanceWindow, Matcher, NotifyConfig, RetryPolicy, Route,
    Silence, rfc3339,
};

use crate::config::ConfigError;

/// A secret string: deserialized like a string, shown as `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

/// `[alerts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Wait after an incident opens before the first page, seconds.
    #[serde(default = "default_group_wait_secs")]
    pub group_wait_secs: u64,
    /// Re-notify a lasting incident this often, seconds.
    #[serde(default = "default_repeat_interval_secs")]
    pub repeat_interval_secs: u64,
    /// At most one update per incident and receiver this often, seconds.
    #[serde(default = "default_update_min_interval_secs")]
    pub update_min_interval_secs: u64,
    /// A change of the affected terminal count by this percentage is material.
    #[serde(default = "default_update_affected_change_percent")]
    pub update_affected_change_percent: u32,
    /// `low_urgency` (notify at severity info with `maintenance=true`) or `mute`.
    #[serde(default = "default_maintenance_mode")]
    pub maintenance_mode: String,
    /// Receivers for incidents no route matches.
    #[serde(default)]
    pub default_receivers: Vec<String>,
    /// Public base URL of this collector's API, for links in notifications.
    #[serde(default)]
    pub external_url: Option<String>,
    /// `source` of PagerDuty events and the `source` label in Alertmanager.
    #[serde(default = "default_source")]
    pub source: String,
    /// After a restart, incidents the detector does not report again within this long are
    /// resolved to their receivers, seconds.
    #[serde(default = "default_restore_grace_secs")]
    pub restore_grace_secs: u64,
    /// A resolved incident's resolution is held this long before receivers are told; an
    /// incident of the same kind and scope opening meanwhile continues it (flap damping),
    /// seconds. 0 sends resolutions at once. At most one day.
    #[serde(default = "default_resolution_hold_secs")]
    pub resolution_hold_secs: u64,
    /// How often the notifier re-evaluates (group wait, repeats, window edges), milliseconds.
    #[serde(default = "default_tick_interval_ms")]
    pub tick_interval_ms: u64,
    /// Delivery retries.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// `[[alerts.receivers]]`.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// `[[alerts.routes]]`, evaluated in order.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// `[[alerts.inhibit]]`.
    #[serde(default)]
    pub inhibit: Vec<InhibitConfig>,
    /// `[[alerts.silences]]` (more through the API).
    #[serde(default)]
    pub silences: Vec<SilenceConfig>,
    /// `[[alerts.maintenance]]` (more through the API).
    #[serde(default)]
    pub maintenance: Vec<WindowConfig>,
}

/// `[alerts.delivery]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Backoff cap of the first retry, milliseconds.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest backoff (and longest honoured `Retry-After`), seconds.
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// Give up after this many attempts.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Give up on a notification this old, seconds.
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// Timeout of one HTTP request, seconds.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Requests in flight at once, over all receivers.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

/// `[[alerts.receivers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Unique name, used by routes.
    pub name: String,
    /// `alertmanager`, `pagerduty`, `webhook`, `slack`, `wecom` or `dingtalk`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Endpoint (Alertmanager: its base URL; PagerDuty: defaults to the public Events v2 URL).
    #[serde(default)]
    pub url: Option<Secret>,
    /// Environment variable holding the endpoint instead.
    #[serde(default)]
    pub url_env: Option<String>,
    /// PagerDuty integration (routing) key.
    #[serde(default)]
    pub routing_key: Option<Secret>,
    /// Environment variable holding the routing key instead.
    #[serde(default)]
    pub routing_key_env: Option<String>,
    /// Webhook HMAC secret, or DingTalk signing secret (`SEC...`).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Environment variable holding the secret instead.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// This receiver's repeat interval, seconds (Alertmanager default 300: its alerts expire
    /// after four intervals without a repeat).
    #[serde(default)]
    pub repeat_interval_secs: Option<u64>,
}

/// `[[alerts.routes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `name=value`, `name!=value`, `name=~a|b`; all must match.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Receivers paged when they do.
    pub receivers: Vec<String>,
    /// Keep matching later routes.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
}

/// `[[alerts.inhibit]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    /// Matchers on the wide incident.
    pub source: Vec<String>,
    /// Matchers on the narrow incidents it mutes.
    pub target: Vec<String>,
    /// Labels that must be equal in both.
    #[serde(default)]
    pub equal: Vec<String>,
}

/// `[[alerts.silences]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceConfig {
    /// Matchers; all must match.
    pub matchers: Vec<String>,
    /// RFC 3339 start.
    pub starts_at: String,
    /// RFC 3339 end.
    pub ends_at: String,
    /// Who.
    pub author: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

/// `[[alerts.maintenance]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Scope, e.g. `{ acquirer = "ACQ-A" }`.
    pub scope: BTreeMap<String, String>,
    /// RFC 3339 start.
    pub starts_at: String,
    /// RFC 3339 end.
    pub ends_at: String,
    /// The announcement.
    #[serde(default)]
    pub announcement: String,
}

/// Receiver types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverKind {
    /// Prometheus Alertmanager API v2.
    Alertmanager,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// Generic JSON webhook with an HMAC signature.
    Webhook,
    /// Slack incoming webhook.
    Slack,
    /// WeCom (企业微信) group robot.
    Wecom,
    /// DingTalk (钉钉) robot.
    Dingtalk,
}

/// A receiver with its secrets resolved.
#[derive(Debug, Clone)]
pub struct ResolvedReceiver {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: ReceiverKind,
    /// Endpoint.
    pub url: Secret,
    /// PagerDuty routing key.
    pub routing_key: Option<Secret>,
    /// Webhook or DingTalk secret.
    pub secret: Option<Secret>,
}

/// `[alerts]`, checked, with secrets resolved: what the notifier runs on.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// The notifier core's settings.
    pub notify: NotifyConfig,
    /// Delivery retries.
    pub retry: RetryPolicy,
    /// Receivers, secrets read from the file or the environment.
    pub receivers: Vec<ResolvedReceiver>,
    /// Silences from the file (ids `config-silence-N`).
    pub silences: Vec<Silence>,
    /// Maintenance windows from the file (ids `config-window-N`).
    pub windows: Vec<MaintenanceWindow>,
    /// `source` of PagerDuty events and the `source` label in Alertmanager.
    pub source: String,
    /// Public base URL of the API, for links in notifications.
    pub external_url: Option<String>,
    /// How often the notifier re-evaluates.
    pub tick: Duration,
    /// How long a resolution is held back to damp flapping, ms.
    pub resolution_hold_ms: i64,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Requests in flight at once, over all receivers.
    pub max_in_flight: usize,
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

fn default_group_wait_secs() -> u64 {
    30
}
fn default_resolution_hold_secs() -> u64 {
    u64::try_from(storepulse_collector_core::incident::AlertBridge::HOLD_MS / 1000).unwrap_or(900)
}
/// The longest resolution hold accepted, seconds.
const MAX_RESOLUTION_HOLD_SECS: u64 = 86_400;
fn default_repeat_interval_secs() -> u64 {
    4 * 3600
}
fn default_update_min_interval_secs() -> u64 {
    300
}
fn default_update_affected_change_percent() -> u32 {
    50
}
fn default_maintenance_mode() -> String {
    "low_urgency".into()
}
fn default_source() -> String {
    "storepulse-collector".into()
}
fn default_restore_grace_secs() -> u64 {
    900
}
fn default_tick_interval_ms() -> u64 {
    1000
}
fn default_initial_backoff_ms() -> u64 {
    1000
}
fn default_max_backoff_secs() -> u64 {
    300
}
fn default_max_attempts() -> u32 {
    50
}
fn default_max_age_secs() -> u64 {
    24 * 3600
}
fn default_request_timeout_secs() -> u64 {
    10
}
fn default_max_in_flight() -> usize {
    8
}
fn default_alertmanager_repeat_secs() -> u64 {
    300
}

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn invalid(m: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(m.into())
}

fn matchers(list: &[String]) -> Result<Vec<Matcher>, ConfigError> {
    list.iter()
        .map(|t| Matcher::parse(t).map_err(|e| invalid(format!("alerts: {e}"))))
        .collect()
}

fn instant(what: &str, text: &str) -> Result<i64, ConfigError> {
    rfc3339::parse_ms(text)
        .ok_or_else(|| invalid(format!("alerts: {what} {text:?} is not RFC 3339")))
}

impl Secret {
    /// A secret from a string.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value; only for building requests.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl ReceiverKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "alertmanager" => Self::Alertmanager,
            "pagerduty" => Self::Pagerduty,
            "webhook" => Self::Webhook,
            "slack" => Self::Slack,
            "wecom" => Self::Wecom,
            "dingtalk" => Self::Dingtalk,
            _ => return None,
        })
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            group_wait_secs: default_group_wait_secs(),
            repeat_interval_secs: default_repeat_interval_secs(),
            update_min_interval_secs: default_update_min_interval_secs(),
            update_affected_change_percent: default_update_affected_change_percent(),
            maintenance_mode: default_maintenance_mode(),
            default_receivers: Vec::new(),
            external_url: None,
            source: default_source(),
            restore_grace_secs: default_restore_grace_secs(),
            resolution_hold_secs: default_resolution_hold_secs(),
            tick_interval_ms: default_tick_interval_ms(),
            delivery: DeliveryConfig::default(),
            receivers: Vec::new(),
            routes: Vec::new(),
            inhibit: Vec::new(),
            silences: Vec::new(),
            maintenance: Vec::new(),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_secs: default_max_backoff_secs(),
            max_attempts: default_max_attempts(),
            max_age_secs: default_max_age_secs(),
            request_timeout_secs: default_request_timeout_secs(),
            max_in_flight: default_max_in_flight(),
        }
    }
}

impl AlertsConfig {
    /// Checks the section and resolves it into the notifier's settings; secrets named by
    /// `*_env` fields are looked up with `env`.
    pub fn settings(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AlertSettings, ConfigError> {
        self.check()?;
        let (silences, windows) = self.silences_and_windows()?;
        Ok(AlertSettings {
            notify: self.notify_config()?,
            retry: self.retry_policy(),
            receivers: self.resolve_receivers(env)?,
            silences,
            windows,
            source: self.source.clone(),
            external_url: self.external_url.clone(),
            tick: Duration::from_millis(self.tick_interval_ms),
            // Bounded by the check below, so the product fits.
            resolution_hold_ms: i64::try_from(self.resolution_hold_secs * 1000).unwrap_or(0),
            request_timeout: Duration::from_secs(self.delivery.request_timeout_secs),
            max_in_flight: self.delivery.max_in_flight,
        })
    }

    /// Checks names, references, matchers and times.
    fn check(&self) -> Result<(), ConfigError> {
        self.notify_config()?;
        self.silences_and_windows()?;
        let mut names = Vec::new();
        for r in &self.receivers {
            let kind = ReceiverKind::parse(&r.kind).ok_or_else(|| {
                invalid(format!(
                    "alerts.receivers {:?}: type must be alertmanager, pagerduty, webhook, slack, wecom or dingtalk",
                    r.name
                ))
            })?;
            if r.name.is_empty() || names.contains(&r.name) {
                return Err(invalid(format!(
                    "alerts.receivers: name {:?} empty or repeated",
                    r.name
                )));
            }
            names.push(r.name.clone());
            let has_url = r.url.is_some() || r.url_env.is_some();
            if !has_url && kind != ReceiverKind::Pagerduty {
                return Err(invalid(format!(
                    "alerts.receivers {:?}: url or url_env is required",
                    r.name
                )));
            }
            let has_key = r.routing_key.is_some() || r.routing_key_env.is_some();
            if (kind == ReceiverKind::Pagerduty) != has_key {
                return Err(invalid(format!(
                    "alerts.receivers {:?}: routing_key (or routing_key_env) is for pagerduty, and required there",
                    r.name
                )));
            }
            let has_secret = r.secret.is_some() || r.secret_env.is_some();
            if has_secret && !matches!(kind, ReceiverKind::Webhook | ReceiverKind::Dingtalk) {
                return Err(invalid(format!(
                    "alerts.receivers {:?}: secret is for webhook and dingtalk",
                    r.name
                )));
            }
            if r.repeat_interval_secs == Some(0) {
                return Err(invalid(
                    "alerts.receivers: repeat_interval_secs must be > 0",
                ));
            }
        }
        let known = |n: &String| names.contains(n);
        for n in self
            .routes
            .iter()
            .flat_map(|r| &r.receivers)
            .chain(&self.default_receivers)
        {
            if !known(n) {
                return Err(invalid(format!("alerts: unknown receiver {n:?}")));
            }
        }
        if self.resolution_hold_secs > MAX_RESOLUTION_HOLD_SECS {
            return Err(invalid(format!(
                "alerts.resolution_hold_secs must be at most {MAX_RESOLUTION_HOLD_SECS} (one day)"
            )));
        }
        if self.repeat_interval_secs == 0 || self.tick_interval_ms == 0 {
            return Err(invalid(
                "alerts.repeat_interval_secs and tick_interval_ms must be > 0",
            ));
        }
        let d = &self.delivery;
        if d.max_attempts == 0
            || d.max_in_flight == 0
            || d.request_timeout_secs == 0
            || d.initial_backoff_ms == 0
        {
            return Err(invalid("alerts.delivery values must be > 0"));
        }
        Ok(())
    }

    /// The core's settings.
    fn notify_config(&self) -> Result<NotifyConfig, ConfigError> {
        let maintenance_mode = match self.maintenance_mode.as_str() {
            "low_urgency" => MaintenanceMode::LowUrgency,
            "mute" => MaintenanceMode::Mute,
            other => {
                return Err(invalid(format!(
                    "alerts.maintenance_mode {other:?}: use low_urgency or mute"
                )));
            }
        };
        let routes = self
            .routes
            .iter()
            .map(|r| {
                Ok(Route {
                    matchers: matchers(&r.matchers)?,
                    receivers: r.receivers.clone(),
                    continue_matching: r.continue_matching,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let inhibit_rules = self
            .inhibit
            .iter()
            .map(|r| {
                Ok(InhibitRule {
                    source: matchers(&r.source)?,
                    target: matchers(&r.target)?,
                    equal: r.equal.clone(),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let receiver_repeat_ms = self
            .receivers
            .iter()
            .filter_map(|r| {
                let secs = r.repeat_interval_secs.or_else(|| {
                    (r.kind == "alertmanager").then(default_alertmanager_repeat_secs)
                })?;
                Some((r.name.clone(), ms(secs)))
            })
            .collect();
        Ok(NotifyConfig {
            group_wait_ms: ms(self.group_wait_secs),
            repeat_interval_ms: ms(self.repeat_interval_secs),
            receiver_repeat_ms,
            update_min_interval_ms: ms(self.update_min_interval_secs),
            update_affected_change_percent: self.update_affected_change_percent,
            routes,
            default_receivers: self.default_receivers.clone(),
            inhibit_rules,
            maintenance_mode,
            restore_grace_ms: ms(self.restore_grace_secs),
        })
    }

    /// Silences and windows from the file (ids `config-silence-N`, `config-window-N`).
    fn silences_and_windows(&self) -> Result<(Vec<Silence>, Vec<MaintenanceWindow>), ConfigError> {
        let mut silences = Vec::new();
        for (i, s) in self.silences.iter().enumerate() {
            let silence = Silence {
                id: format!("config-silence-{i}"),
                matchers: matchers(&s.matchers)?,
                starts_at_ms: instant("silence starts_at", &s.starts_at)?,
                ends_at_ms: instant("silence ends_at", &s.ends_at)?,
                author: s.author.clone(),
                comment: s.comment.clone(),
            };
            if silence.matchers.is_empty() || silence.ends_at_ms <= silence.starts_at_ms {
                return Err(invalid(
                    "alerts.silences: need matchers and ends_at after starts_at",
                ));
            }
            silences.push(silence);
        }
        let mut windows = Vec::new();
        for (i, w) in self.maintenance.iter().enumerate() {
            let window = MaintenanceWindow {
                id: format!("config-window-{i}"),
                scope: w
                    .scope
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                starts_at_ms: instant("maintenance starts_at", &w.starts_at)?,
                ends_at_ms: instant("maintenance ends_at", &w.ends_at)?,
                announcement: w.announcement.clone(),
            };
            if window.scope.is_empty() || window.ends_at_ms <= window.starts_at_ms {
                return Err(invalid(
                    "alerts.maintenance: need a scope and ends_at after starts_at",
                ));
            }
            windows.push(window);
        }
        Ok((silences, windows))
    }

    /// The retry policy.
    fn retry_policy(&self) -> RetryPolicy {
        let d = &self.delivery;
        RetryPolicy {
            initial_backoff_ms: i64::try_from(d.initial_backoff_ms).unwrap_or(i64::MAX),
            max_backoff_ms: ms(d.max_backoff_secs),
            max_attempts: d.max_attempts,
            max_age_ms: ms(d.max_age_secs),
        }
    }

    /// Receivers with secrets read from the file or the environment (`env` looks a name up).
    fn resolve_receivers(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<ResolvedReceiver>, ConfigError> {
        let pick =
            |name: &str, what: &str, inline: &Option<Secret>, var: &Option<String>| {
                match (
            inline, var,
        ) {
            (Some(s), _) => Ok(Some(s.clone())),
            (None, Some(v)) => env(v)
                .filter(|s| !s.is_empty())
                .map(Secret)
                .map(Some)
                .ok_or_else(|| {
                    invalid(format!(
                        "alerts.receivers {name:?}: environment variable {v} ({what}) is not set"
                    ))
                }),
            (None, None) => Ok(None),
        }
            };
        self.receivers
            .iter()
            .map(|r| {
                let kind = ReceiverKind::parse(&r.kind)
                    .ok_or_else(|| invalid(format!("alerts.receivers {:?}: bad type", r.name)))?;
                let url = pick(&r.name, "url", &r.url, &r.url_env)?
                    .or_else(|| {
                        (kind == ReceiverKind::Pagerduty).then(|| Secret::new(PAGERDUTY_EVENTS_URL))
                    })
                    .ok_or_else(|| invalid(format!("alerts.receivers {:?}: no url", r.name)))?;
                Ok(ResolvedReceiver {
                    name: r.name.clone(),
                    kind,
                    url,
                    routing_key: pick(&r.name, "routing key", &r.routing_key, &r.routing_key_env)?,
                    secret: pick(&r.name, "secret", &r.secret, &r.secret_env)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> AlertsConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn secrets_from_env_are_redacted() {
        let c = parse(
            "default_receivers = ['pd']\n[[receivers]]\nname = 'pd'\ntype = 'pagerduty'\nrouting_key_env = 'PD_ROUTING_KEY'\n",
        );
        c.check().expect("valid");
        let env = |v: &str| (v == "PD_ROUTING_KEY").then(|| "r0ut1ngk3y".to_owned());
        let r = c.resolve_receivers(env).expect("resolves");
        assert_eq!(r[0].url.expose(), PAGERDUTY_EVENTS_URL);
        assert_eq!(
            r[0].routing_key.as_ref().map(Secret::expose),
            Some("r0ut1ngk3y")
        );
        assert!(!format!("{r:?}").contains("r0ut1ngk3y"), "Debug redacts");
        assert!(
            c.resolve_receivers(|_| None).is_err(),
            "a missing variable is an error"
        );
    }

    #[test]
    fn bad_alert_configs_are_refused() {
        for text in [
            "default_receivers = ['nobody']\n",
            "[[receivers]]\nname = 'x'\ntype = 'sms'\nurl = 'http://x'\n",
            "[[receivers]]\nname = 'x'\ntype = 'slack'\n",
            "[[receivers]]\nname = 'x'\ntype = 'slack'\nurl = 'http://x'\nrouting_key = 'k'\n",
            "[[routes]]\nmatchers = ['region']\nreceivers = []\n",
            "maintenance_mode = 'loud'\n",
            "[[silences]]\nmatchers = ['a=b']\nstarts_at = 'today'\nends_at = 'tomorrow'\nauthor = 'me'\n",
        ] {
            assert!(parse(text).check().is_err(), "{text}");
        }
        assert!(
            toml::from_str::<AlertsConfig>("group_wait_sec = 1\n").is_err(),
            "unknown field"
        );
    }
}
