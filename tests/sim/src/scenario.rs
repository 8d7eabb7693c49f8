//! Scenario files: strict TOML in, a typed [`Scenario`] (with its generated [`Fleet`]) out.
//!
//! Every mistake becomes a [`ScenarioError`] naming the file, the line and the problem. The
//! format is documented in the crate docs and by the files under `tests/scenarios/`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use storepulse_shared::Scheme;
use storepulse_shared::taxonomy::lookup;
use toml::Spanned;

use crate::fleet::{Fleet, FleetSpec, LabelKey};
use crate::time::{format_rfc3339, parse_duration, parse_rfc3339, parse_time};

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

/// Incident kinds of the ground truth (issue 4 matches on these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IncidentKind {
    /// One terminal's hardware.
    TerminalFault,
    /// One terminal's settings.
    TerminalConfig,
    /// One store's network quality.
    StoreNetwork,
    /// One store offline.
    StoreOffline,
    /// A merchant's (or one branch's) configuration at the acquirer.
    MerchantConfig,
    /// A firmware cohort.
    FirmwareRegression,
    /// A carrier in a region.
    CarrierOutage,
    /// A region or city.
    RegionalOutage,
    /// An acquirer or QR channel.
    AcquirerOutage,
    /// Announced acquirer maintenance.
    AcquirerMaintenance,
    /// QR notices missing.
    QrNotificationDelay,
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
    /// Heartbeat interval, seconds.
    pub heartbeat_interval_secs: u32,
    /// Network-quality sample interval, seconds.
    pub net_quality_interval_secs: u32,
    /// The fleet parameters.
    pub fleet_spec: FleetSpec,
    /// Merchant call rules.
    pub calls: CallRules,
    /// Delivery parameters.
    pub delivery: DeliverySpec,
    /// Injected faults.
    pub faults: Vec<Fault>,
    /// Ground truth.
    pub incidents: Vec<Incident>,
    /// The generated fleet.
    pub fleet: Fleet,
}

// ---- raw TOML shapes ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    scenario: RawScenario,
    #[serde(default)]
    fleet: RawFleet,
    #[serde(default)]
    calls: RawCalls,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    fault: Vec<RawFault>,
    #[serde(default)]
    incident: Vec<RawIncident>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    seed: u64,
    start: Spanned<String>,
    duration: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    terminals: Option<Spanned<u32>>,
    regions: Option<Spanned<u32>>,
    cities_per_region: Option<Spanned<u32>>,
    chains: Option<Spanned<u32>>,
    chain_stores: Option<Spanned<[u32; 2]>>,
    chain_store_terminals: Option<Spanned<[u32; 2]>>,
    shop_terminals: Option<Spanned<[u32; 2]>>,
    low_volume_share: Option<Spanned<f64>>,
    acquirers: Option<Spanned<u32>>,
    qr_channels: Option<Spanned<u32>>,
    qr_share: Option<Spanned<f64>>,
    volume_scale: Option<Spanned<f64>>,
    heartbeat_interval_secs: Option<Spanned<u32>>,
    net_quality_interval_secs: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCalls {
    k: Option<Spanned<u32>>,
    w_minutes: Option<Spanned<u32>>,
    t_minutes: Option<Spanned<u32>>,
    business_hours: Option<Spanned<[u32; 2]>>,
    cooldown_minutes: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    backlog_records_per_sec: Option<Spanned<u32>>,
    spool_max_records: Option<u32>,
    reconnect_max_secs: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: Spanned<String>,
    start: Spanned<String>,
    end: Spanned<String>,
    #[serde(default)]
    scope: Option<Spanned<BTreeMap<String, String>>>,
    intensity: Option<Spanned<f64>>,
    codes: Option<Spanned<Vec<String>>>,
    announced_at: Option<Spanned<String>>,
    silent: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncident {
    kind: Spanned<String>,
    scope: Spanned<BTreeMap<String, String>>,
    start: Spanned<String>,
    end: Spanned<String>,
}

/// Maps byte offsets to lines and builds errors.
struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
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
    fn required_keys(self) -> &'static [LabelKey] {
        use LabelKey::*;
        match self {
            Self::TerminalFault | Self::TerminalConfig => &[Terminal],
            Self::StoreNetwork | Self::StoreOffline | Self::RoutingMissing => &[Store],
            Self::MerchantConfig => &[Merchant],
            Self::FirmwareRegression => &[Firmware],
            Self::CarrierOutage => &[Carrier],
            Self::RegionalOutage => &[Region, City],
            Self::AcquirerOutage | Self::AcquirerMaintenance => &[Acquirer, QrChannel],
            Self::QrNotificationDelay => &[QrChannel],
            Self::DeclineSurge => &[],
        }
    }
}

impl IncidentKind {
    /// Every kind, in a stable order.
    pub const ALL: [IncidentKind; 11] = [
        Self::TerminalFault,
        Self::TerminalConfig,
        Self::StoreNetwork,
        Self::StoreOffline,
        Self::MerchantConfig,
        Self::FirmwareRegression,
        Self::CarrierOutage,
        Self::RegionalOutage,
        Self::AcquirerOutage,
        Self::AcquirerMaintenance,
        Self::QrNotificationDelay,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TerminalFault => "terminal_fault",
            Self::TerminalConfig => "terminal_config",
            Self::StoreNetwork => "store_network",
            Self::StoreOffline => "store_offline",
            Self::MerchantConfig => "merchant_config",
            Self::FirmwareRegression => "firmware_regression",
            Self::CarrierOutage => "carrier_outage",
            Self::RegionalOutage => "regional_outage",
            Self::AcquirerOutage => "acquirer_outage",
            Self::AcquirerMaintenance => "acquirer_maintenance",
            Self::QrNotificationDelay => "qr_notification_delay",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
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

impl fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: Range<usize>, problem: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: self.file.to_string(),
            line: self.line_of(span.start),
            problem: problem.into(),
        }
    }

    fn time(&self, s: &Spanned<String>, origin_ms: i64, what: &str) -> Result<i64, ScenarioError> {
        parse_time(s.get_ref(), origin_ms)
            .map_err(|e| self.err(s.span(), format!("bad {what} time: {e}")))
    }

    fn scope(
        &self,
        raw: &Spanned<BTreeMap<String, String>>,
        fleet: &Fleet,
    ) -> Result<Scope, ScenarioError> {
        let mut scope = Scope::default();
        for (k, v) in raw.get_ref() {
            let key = LabelKey::parse(k).ok_or_else(|| {
                let keys: Vec<&str> = LabelKey::ALL.iter().map(|k| k.as_str()).collect();
                self.err(
                    raw.span(),
                    format!(
                        "unknown scope label {k:?}; expected one of {}",
                        keys.join(", ")
                    ),
                )
            })?;
            if !fleet.has_value(key, v) {
                return Err(self.err(
                    raw.span(),
                    format!(
                        "scope {k} = {v:?} is not in the generated fleet (its {k} values: {})",
                        fleet.value_hint(key)
                    ),
                ));
            }
            scope.0.insert(key, v.clone());
        }
        Ok(scope)
    }
}

fn opt<T: Copy>(v: &Option<Spanned<T>>, default: T) -> (T, Range<usize>) {
    v.as_ref()
        .map_or((default, 0..0), |s| (*s.get_ref(), s.span()))
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
        let ctx = Ctx { file, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ctx.err(span, e.message().trim().to_string())
        })?;

        let start = parse_rfc3339(raw.scenario.start.get_ref())
            .map_err(|e| ctx.err(raw.scenario.start.span(), format!("bad start time: {e}")))?;
        let duration_ms = parse_duration(raw.scenario.duration.get_ref())
            .map_err(|e| ctx.err(raw.scenario.duration.span(), format!("bad duration: {e}")))?;
        if duration_ms <= 0 || duration_ms > 7 * crate::time::DAY_MS {
            return Err(ctx.err(
                raw.scenario.duration.span(),
                "duration must be between 1s and 7d",
            ));
        }
        let end_ms = start.unix_ms + duration_ms;

        let (fleet_spec, hb, nq) = Self::fleet_spec(&ctx, &raw.fleet)?;
        let calls = Self::call_rules(&ctx, &raw.calls)?;
        let (rate, rate_span) = opt(&raw.delivery.backlog_records_per_sec, 50);
        if rate == 0 {
            return Err(ctx.err(rate_span, "backlog_records_per_sec must be at least 1"));
        }
        let delivery = DeliverySpec {
            backlog_records_per_sec: rate,
            spool_max_records: raw.delivery.spool_max_records.unwrap_or(5000),
            reconnect_max_secs: raw.delivery.reconnect_max_secs.unwrap_or(60),
        };
        let fleet = Fleet::generate(&fleet_spec, raw.scenario.seed);

        let mut faults = Vec::new();
        for f in &raw.fault {
            faults.push(Self::fault(&ctx, f, &fleet, start.unix_ms, end_ms)?);
        }
        let mut incidents = Vec::new();
        for i in &raw.incident {
            let kind = IncidentKind::parse(i.kind.get_ref()).ok_or_else(|| {
                let kinds: Vec<&str> = IncidentKind::ALL.iter().map(|k| k.as_str()).collect();
                ctx.err(
                    i.kind.span(),
                    format!(
                        "unknown incident kind {:?}; expected one of {}",
                        i.kind.get_ref(),
                        kinds.join(", ")
                    ),
                )
            })?;
            let scope = ctx.scope(&i.scope, &fleet)?;
            let s = ctx.time(&i.start, start.unix_ms, "start")?;
            let e = ctx.time(&i.end, start.unix_ms, "end")?;
            if e <= s {
                return Err(ctx.err(i.end.span(), "incident end is not after its start"));
            }
            let terminals = fleet.select(scope.pairs());
            if terminals.is_empty() {
                return Err(ctx.err(
                    i.scope.span(),
                    format!("incident scope {scope} matches no terminal"),
                ));
            }
            incidents.push(Incident {
                kind,
                scope,
                start_ms: s,
                end_ms: e,
                terminals,
            });
        }
        Ok(Scenario {
            file: file.to_string(),
            name: raw.scenario.name,
            description: raw.scenario.description,
            seed: raw.scenario.seed,
            start_ms: start.unix_ms,
            utc_offset_secs: start.offset_secs,
            duration_ms,
            heartbeat_interval_secs: hb,
            net_quality_interval_secs: nq,
            fleet_spec,
            calls,
            delivery,
            faults,
            incidents,
            fleet,
        })
    }

    /// End of the simulated window, Unix ms.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.duration_ms
    }

    /// `unix_ms` as RFC 3339 in the scenario's local offset.
    pub fn format_time(&self, unix_ms: i64) -> String {
        format_rfc3339(unix_ms, self.utc_offset_secs)
    }

    fn fleet_spec(ctx: &Ctx<'_>, f: &RawFleet) -> Result<(FleetSpec, u32, u32), ScenarioError> {
        let d = FleetSpec::with_terminals(1000);
        let positive = |v: &Option<Spanned<u32>>, default: u32, name: &str, max: u32| {
            let (x, span) = opt(v, default);
            if x == 0 || x > max {
                Err(ctx.err(span, format!("{name} must be between 1 and {max}, not {x}")))
            } else {
                Ok(x)
            }
        };
        let range = |v: &Option<Spanned<[u32; 2]>>, default: (u32, u32), name: &str| {
            let ([lo, hi], span) = opt(v, [default.0, default.1]);
            if lo == 0 || hi < lo {
                Err(ctx.err(
                    span,
                    format!("{name} must be [min, max] with 1 <= min <= max"),
                ))
            } else {
                Ok((lo, hi))
            }
        };
        let share = |v: &Option<Spanned<f64>>, default: f64, name: &str| {
            let (x, span) = opt(v, default);
            if !(0.0..=1.0).contains(&x) {
                Err(ctx.err(span, format!("{name} must be between 0 and 1, not {x}")))
            } else {
                Ok(x)
            }
        };
        let (scale, scale_span) = opt(&f.volume_scale, 1.0);
        if !(scale > 0.0 && scale <= 100.0) {
            return Err(ctx.err(
                scale_span,
                format!("volume_scale must be in (0, 100], not {scale}"),
            ));
        }
        let spec = FleetSpec {
            terminals: positive(&f.terminals, d.terminals, "terminals", 200_000)?,
            regions: positive(&f.regions, d.regions, "regions", 99)?,
            cities_per_region: positive(
                &f.cities_per_region,
                d.cities_per_region,
                "cities_per_region",
                99,
            )?,
            chains: opt(&f.chains, d.chains).0,
            chain_stores: range(&f.chain_stores, d.chain_stores, "chain_stores")?,
            chain_store_terminals: range(
                &f.chain_store_terminals,
                d.chain_store_terminals,
                "chain_store_terminals",
            )?,
            shop_terminals: range(&f.shop_terminals, d.shop_terminals, "shop_terminals")?,
            low_volume_share: share(&f.low_volume_share, d.low_volume_share, "low_volume_share")?,
            acquirers: positive(&f.acquirers, d.acquirers, "acquirers", 26)?,
            qr_channels: positive(&f.qr_channels, d.qr_channels, "qr_channels", 26)?,
            qr_share: share(&f.qr_share, d.qr_share, "qr_share")?,
            volume_scale: scale,
        };
        let hb = positive(
            &f.heartbeat_interval_secs,
            60,
            "heartbeat_interval_secs",
            3600,
        )?;
        let nq = positive(
            &f.net_quality_interval_secs,
            300,
            "net_quality_interval_secs",
            3600,
        )?;
        Ok((spec, hb, nq))
    }

    fn call_rules(ctx: &Ctx<'_>, c: &RawCalls) -> Result<CallRules, ScenarioError> {
        let (k, k_span) = opt(&c.k, 3);
        if k == 0 {
            return Err(ctx.err(k_span, "k must be at least 1"));
        }
        let (w, w_span) = opt(&c.w_minutes, 10);
        let (t, t_span) = opt(&c.t_minutes, 20);
        if w == 0 {
            return Err(ctx.err(w_span, "w_minutes must be at least 1"));
        }
        if t == 0 {
            return Err(ctx.err(t_span, "t_minutes must be at least 1"));
        }
        let ([open, close], bh_span) = opt(&c.business_hours, [8, 22]);
        if open >= close || close > 24 {
            return Err(ctx.err(
                bh_span,
                "business_hours must be [open, close] with open < close <= 24",
            ));
        }
        Ok(CallRules {
            k,
            w_minutes: w,
            t_minutes: t,
            business_hours: (open, close),
            cooldown_minutes: c.cooldown_minutes.unwrap_or(120),
        })
    }

    fn fault(
        ctx: &Ctx<'_>,
        f: &RawFault,
        fleet: &Fleet,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Fault, ScenarioError> {
        let kind = FaultKind::parse(f.kind.get_ref()).ok_or_else(|| {
            let kinds: Vec<&str> = FaultKind::ALL.iter().map(|k| k.as_str()).collect();
            ctx.err(
                f.kind.span(),
                format!(
                    "unknown fault kind {:?}; expected one of {}",
                    f.kind.get_ref(),
                    kinds.join(", ")
                ),
            )
        })?;
        let s = ctx.time(&f.start, start_ms, "start")?;
        let e = ctx.time(&f.end, start_ms, "end")?;
        if e <= s {
            return Err(ctx.err(
                f.end.span(),
                format!(
                    "fault end {:?} is not after its start {:?}",
                    f.end.get_ref(),
                    f.start.get_ref()
                ),
            ));
        }
        if s >= end_ms || e <= start_ms {
            return Err(ctx.err(
                f.start.span(),
                "fault lies entirely outside the scenario window",
            ));
        }
        let (scope, scope_span) = match &f.scope {
            Some(raw) => (ctx.scope(raw, fleet)?, raw.span()),
            None => (Scope::default(), f.kind.span()),
        };
        let required = kind.required_keys();
        if !required.is_empty() && !required.iter().any(|k| scope.0.contains_key(k)) {
            let names: Vec<&str> = required.iter().map(|k| k.as_str()).collect();
            return Err(ctx.err(
                scope_span,
                format!("a {kind} fault needs a scope naming {}", names.join(" or ")),
            ));
        }
        let (intensity, i_span) = opt(&f.intensity, 1.0);
        if !(0.0..=1.0).contains(&intensity) {
            return Err(ctx.err(
                i_span,
                format!("intensity must be between 0 and 1, not {intensity}"),
            ));
        }
        let mut codes = Vec::new();
        if let Some(raw) = &f.codes {
            for c in raw.get_ref() {
                let (scheme, code) = c
                    .split_once(':')
                    .and_then(|(s, code)| Scheme::parse(s).map(|s| (s, code)))
                    .ok_or_else(|| {
                        ctx.err(raw.span(), format!("code {c:?} must be scheme:code, e.g. iso8583:03 or wechatpay:MCHID_NOT_EXIST"))
                    })?;
                if lookup(scheme, code).is_none() {
                    return Err(ctx.err(
                        raw.span(),
                        format!("code {c:?} is not in the error-code table"),
                    ));
                }
                codes.push((scheme, code.to_string()));
            }
        }
        let announced_at_ms = match &f.announced_at {
            Some(a) => {
                let t = ctx.time(a, start_ms, "announced_at")?;
                if t > s {
                    return Err(ctx.err(a.span(), "announced_at is after the maintenance starts"));
                }
                Some(t)
            }
            None => None,
        };
        if kind == FaultKind::AcquirerMaintenance && announced_at_ms.is_none() {
            return Err(ctx.err(
                f.kind.span(),
                "acquirer_maintenance needs announced_at (the announcement)",
            ));
        }
        if kind != FaultKind::AcquirerMaintenance
            && let Some(a) = &f.announced_at
        {
            return Err(ctx.err(
                a.span(),
                "announced_at only applies to acquirer_maintenance",
            ));
        }
        let silent = match &f.silent {
            Some(v) if kind != FaultKind::TerminalFault => {
                return Err(ctx.err(v.span(), "silent only applies to terminal_fault"));
            }
            Some(v) => *v.get_ref(),
            None => false,
        };
        let mut terminals = fleet.select(scope.pairs());
        if kind == FaultKind::CarrierOutage {
            terminals.retain(|&i| {
                fleet.terminals[i].identity.link == storepulse_shared::LinkType::Cellular
            });
        }
        if terminals.is_empty() {
            return Err(ctx.err(
                scope_span,
                format!("fault scope {scope} matches no terminal"),
            ));
        }
        Ok(Fault {
            kind,
            start_ms: s,
            end_ms: e,
            scope,
            intensity,
            codes,
            announced_at_ms,
            silent,
            terminals,
        })
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
        assert_eq!(s.heartbeat_interval_secs, 60);
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
