//! Scenario files: strict TOML in, a typed [`Scenario`] (with its generated [`Fleet`]) out.
//!
//! Every mistake becomes a [`ScenarioError`] naming the file, the line and the problem. The
//! format is documented in the crate docs and by the files under `tests/scenarios/`; the parser
//! itself is in `scenario/parse.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use storepulse_shared::{IncidentKind, LabelKey, Scheme};

use crate::fleet::{Fleet, FleetSpec};
use crate::time::format_rfc3339;
use crate::traffic::TrafficSpec;

mod parse;

/// A scenario file could not be loaded. Displays as `file:line: problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {problem}")]
pub struct ScenarioError {
    /// The file name as given to the parser.
    pub file: String,
    /// 1-based line of the mistake (1 when the file could not be read).
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// Kinds of fault a scenario can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// A terminal's hardware fails (scanner, printer, power, network interface).
    TerminalFault,
    /// A terminal's settings are wrong (not registered, bound to the wrong merchant).
    TerminalConfig,
    /// A store's network degrades: RTT and loss up, timeouts, fewer payments.
    StoreNetwork,
    /// A store goes offline: silence, then backlog.
    StoreOffline,
    /// A merchant's record is invalid: merchant-configuration codes on all its terminals.
    MerchantConfig,
    /// Routing information missing for one branch of a chain.
    RoutingMissing,
    /// A firmware version misbehaves across merchants.
    FirmwareRegression,
    /// A carrier fails in a region: its cellular terminals go silent or degrade.
    CarrierOutage,
    /// A region (or city) loses power/ISP: its terminals go silent.
    RegionalOutage,
    /// An acquirer or QR channel fails for all its merchants.
    AcquirerOutage,
    /// Planned, announced acquirer maintenance.
    AcquirerMaintenance,
    /// QR payments are left without a final state.
    QrNotificationDelay,
    /// A holiday rush of insufficient-funds declines (not an incident).
    DeclineSurge,
}

/// A conjunction of label = value pairs. Empty means the whole fleet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(pub BTreeMap<LabelKey, String>);

/// One injected fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// What fails.
    pub kind: FaultKind,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End (exclusive), Unix ms.
    pub end_ms: i64,
    /// Which terminals.
    pub scope: Scope,
    /// 0-1: the probability a payment is hit (or the share of terminals/stores affected, for
    /// outages; see the crate docs).
    pub intensity: f64,
    /// Overrides the codes the fault produces (per scheme); empty: the built-in lists.
    pub codes: Vec<(Scheme, String)>,
    /// For maintenance: when it was announced, Unix ms.
    pub announced_at_ms: Option<i64>,
    /// For terminal faults: the terminal goes dead (no heartbeats, no records).
    pub silent: bool,
    /// Resolved terminal indexes (sorted).
    pub terminals: Vec<usize>,
}

/// One ground-truth incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Kind.
    pub kind: IncidentKind,
    /// Where, as label values (what a perfect detector would localise).
    pub scope: Scope,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End (exclusive), Unix ms.
    pub end_ms: i64,
    /// Resolved terminal indexes (sorted).
    pub terminals: Vec<usize>,
}

/// When merchants call support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRules {
    /// Call after this many failed payments...
    pub k: u32,
    /// ...within this window, minutes.
    pub w_minutes: u32,
    /// Or after trying for this long without a single success (business hours only), minutes.
    pub t_minutes: u32,
    /// Business hours, local time, `[open, close)` hours.
    pub business_hours: (u32, u32),
    /// After calling, a store does not call again for this long, minutes.
    pub cooldown_minutes: u32,
}

/// Merchants with other call rules than the scenario's `[calls]` (a `[[calls.profile]]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallProfile {
    /// Share (0-1] of merchants with these rules.
    pub share: f64,
    /// Their rules.
    pub rules: CallRules,
}

/// How records travel when links break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySpec {
    /// Backlog replay rate after a reconnect, records per second per terminal.
    pub backlog_records_per_sec: u32,
    /// Spool bound, records; past it new heartbeats and network samples are shed.
    pub spool_max_records: u32,
    /// Reconnect delay after the link returns: uniform in `[0, this]` seconds.
    pub reconnect_max_secs: u32,
}

/// A loaded scenario: settings, faults, ground truth and the generated fleet.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// File name it came from.
    pub file: String,
    /// Short name.
    pub name: String,
    /// What it tests.
    pub description: String,
    /// Seed of every random draw.
    pub seed: u64,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// Local UTC offset (from `start`), seconds.
    pub utc_offset_secs: i32,
    /// Length, ms.
    pub duration_ms: i64,
    /// The heartbeat interval the fleet is told, seconds (what the collector's `[agents]
    /// heartbeat_interval_secs` would say): `heartbeat_interval_secs`, or the largest share of
    /// a `heartbeat_mix` (the shortest on a tie). Each terminal beats at its own:
    /// [`crate::fleet::Terminal::heartbeat_interval_secs`].
    pub heartbeat_interval_secs: u32,
    /// Network-quality sample interval, seconds.
    pub net_quality_interval_secs: u32,
    /// The fleet parameters.
    pub fleet_spec: FleetSpec,
    /// Day shapes and volumes.
    pub traffic: TrafficSpec,
    /// Merchant call rules (of every merchant not in a profile).
    pub calls: CallRules,
    /// Merchants with other rules.
    pub call_profiles: Vec<CallProfile>,
    /// Per merchant: 0 for [`Self::calls`], `i + 1` for `call_profiles[i]`.
    merchant_calls: Vec<u8>,
    /// Delivery parameters.
    pub delivery: DeliverySpec,
    /// Injected faults.
    pub faults: Vec<Fault>,
    /// Ground truth.
    pub incidents: Vec<Incident>,
    /// The generated fleet.
    pub fleet: Fleet,
}

impl FaultKind {
    /// Every kind, in a stable order.
    pub const ALL: [FaultKind; 13] = [
        Self::TerminalFault,
        Self::TerminalConfig,
        Self::StoreNetwork,
        Self::StoreOffline,
        Self::MerchantConfig,
        Self::RoutingMissing,
        Self::FirmwareRegression,
        Self::CarrierOutage,
        Self::RegionalOutage,
        Self::AcquirerOutage,
        Self::AcquirerMaintenance,
        Self::QrNotificationDelay,
        Self::DeclineSurge,
    ];

    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TerminalFault => "terminal_fault",
            Self::TerminalConfig => "terminal_config",
            Self::StoreNetwork => "store_network",
            Self::StoreOffline => "store_offline",
            Self::MerchantConfig => "merchant_config",
            Self::RoutingMissing => "routing_missing",
            Self::FirmwareRegression => "firmware_regression",
            Self::CarrierOutage => "carrier_outage",
            Self::RegionalOutage => "regional_outage",
            Self::AcquirerOutage => "acquirer_outage",
            Self::AcquirerMaintenance => "acquirer_maintenance",
            Self::QrNotificationDelay => "qr_notification_delay",
            Self::DeclineSurge => "decline_surge",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The incident kind this fault produces; `None` for a decline surge (not an incident).
    pub fn incident_kind(self) -> Option<IncidentKind> {
        Some(match self {
            Self::TerminalFault => IncidentKind::TerminalFault,
            Self::TerminalConfig => IncidentKind::TerminalConfig,
            Self::StoreNetwork => IncidentKind::StoreNetwork,
            Self::StoreOffline => IncidentKind::StoreOffline,
            Self::MerchantConfig | Self::RoutingMissing => IncidentKind::MerchantConfig,
            Self::FirmwareRegression => IncidentKind::FirmwareRegression,
            Self::CarrierOutage => IncidentKind::CarrierOutage,
            Self::RegionalOutage => IncidentKind::RegionalOutage,
            Self::AcquirerOutage => IncidentKind::AcquirerOutage,
            Self::AcquirerMaintenance => IncidentKind::AcquirerMaintenance,
            Self::QrNotificationDelay => IncidentKind::QrNotificationDelay,
            Self::DeclineSurge => return None,
        })
    }

    /// Label keys a scope of this fault must name at least one of.
    pub fn required_keys(self) -> &'static [LabelKey] {
        use LabelKey::*;
        match self {
            Self::TerminalFault | Self::TerminalConfig => &[TerminalId],
            Self::StoreNetwork | Self::StoreOffline | Self::RoutingMissing => &[StoreId],
            Self::MerchantConfig => &[MerchantId],
            Self::FirmwareRegression => &[Firmware],
            Self::CarrierOutage => &[Carrier],
            Self::RegionalOutage => &[Region, City],
            Self::AcquirerOutage | Self::AcquirerMaintenance => &[Acquirer, QrChannel],
            Self::QrNotificationDelay => &[QrChannel],
            Self::DeclineSurge => &[],
        }
    }
}

impl Scope {
    /// The value for `key`, if the scope names it.
    pub fn value(&self, key: LabelKey) -> Option<&str> {
        self.0.get(&key).map(String::as_str)
    }

    /// `(key, value)` pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (LabelKey, &str)> + Clone {
        self.0.iter().map(|(k, v)| (*k, v.as_str()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("fleet");
        }
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={v}", k.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Scenario {
    /// Reads and parses a scenario file (the only IO in this crate, for convenience).
    pub fn from_file(path: &Path) -> Result<Scenario, ScenarioError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: name.clone(),
            line: 1,
            problem: format!("cannot read: {e}"),
        })?;
        Scenario::parse(&name, &text)
    }

    /// Parses scenario text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
        parse::parse(file, text)
    }

    /// End of the simulated window, Unix ms.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.duration_ms
    }

    /// `unix_ms` as RFC 3339 in the scenario's local offset.
    pub fn format_time(&self, unix_ms: i64) -> String {
        format_rfc3339(unix_ms, self.utc_offset_secs)
    }

    /// The call rules of merchant `merchant` (an index into the fleet's merchants).
    pub fn call_rules_of(&self, merchant: usize) -> &CallRules {
        match self.merchant_calls.get(merchant).copied().unwrap_or(0) {
            0 => &self.calls,
            p => self
                .call_profiles
                .get(usize::from(p) - 1)
                .map_or(&self.calls, |c| &c.rules),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[scenario]
name = "t"
seed = 1
start = "2026-03-02T00:00:00+08:00"
duration = "24h"

[fleet]
terminals = 300

[[fault]]
kind = "merchant_config"
start = "+10h"
end = "+12h"
scope = { merchant = "M0002" }
intensity = 0.9

[[incident]]
kind = "merchant_config"
scope = { merchant = "M0002" }
start = "+10h"
end = "+12h"
"#;

    #[test]
    fn parses_a_minimal_file() {
        let s = Scenario::parse("ok.toml", OK).expect("parses");
        assert_eq!(s.fleet.terminals.len(), 300);
        assert_eq!(s.faults[0].kind, FaultKind::MerchantConfig);
        assert_eq!(s.faults[0].start_ms - s.start_ms, 10 * crate::time::HOUR_MS);
        assert_eq!(s.incidents[0].kind, IncidentKind::MerchantConfig);
        assert!(
            s.fleet
                .terminals
                .iter()
                .all(|t| t.heartbeat_interval_secs == 60)
        );
    }

    fn err(text: &str) -> ScenarioError {
        Scenario::parse("bad.toml", text).expect_err("must fail")
    }

    #[test]
    fn unknown_field_names_the_line() {
        let e = err(&OK.replace("intensity = 0.9", "intensity = 0.9\nseverity = 3"));
        assert_eq!(e.line, 17, "{e}");
        assert!(e.to_string().contains("bad.toml:17:"), "{e}");
        assert!(e.problem.contains("severity"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_line() {
        let e = err(&OK.replace(
            "end = \"+12h\"\nscope = { merchant",
            "end = \"+9h\"\nscope = { merchant",
        ));
        assert_eq!(e.line, 14, "{e}");
        assert!(e.problem.contains("not after its start"), "{e}");
        let e = err(&OK.replace(
            "merchant = \"M0002\" }\nintensity",
            "merchant = \"M9999\" }\nintensity",
        ));
        assert_eq!(e.line, 15, "{e}");
        assert!(
            e.problem.contains("M9999") && e.problem.contains("not in the generated fleet"),
            "{e}"
        );
        let e = err(&OK.replace(
            "kind = \"merchant_config\"\nstart",
            "kind = \"meteor_strike\"\nstart",
        ));
        assert_eq!(e.line, 12, "{e}");
        assert!(e.problem.contains("unknown fault kind"), "{e}");
        let e = err(&OK.replace(
            "start = \"+10h\"\nend = \"+12h\"\nscope",
            "start = \"ten o'clock\"\nend = \"+12h\"\nscope",
        ));
        assert_eq!(e.line, 13, "{e}");
        assert!(e.problem.contains("bad start time"), "{e}");
    }
}
