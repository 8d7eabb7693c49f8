//! The scenario parser: raw TOML shapes, then every section typed and checked, each mistake a
//! [`ScenarioError`] with the file and line.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use storepulse_shared::taxonomy::lookup;
use storepulse_shared::{IncidentKind, LabelKey, Scheme};
use toml::Spanned;

use super::{
    CallProfile, CallRules, DeliverySpec, Fault, FaultKind, Incident, Scenario, ScenarioError,
    Scope,
};
use crate::fleet::{Fleet, FleetSpec, unit_hash};
use crate::time::{parse_date, parse_duration, parse_rfc3339, parse_time};
use crate::traffic::TrafficSpec;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    scenario: RawScenario,
    #[serde(default)]
    fleet: RawFleet,
    #[serde(default)]
    calls: RawCalls,
    traffic: Option<RawTraffic>,
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
    heartbeat_mix: Option<Spanned<Vec<RawMix>>>,
    net_quality_interval_secs: Option<Spanned<u32>>,
    carriers: Option<Spanned<u32>>,
    chain_regions: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMix {
    secs: u32,
    share: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTraffic {
    #[serde(default)]
    weekend: bool,
    holidays: Option<Spanned<Vec<String>>>,
    weekend_volume: Option<Spanned<f64>>,
    holiday_volume: Option<Spanned<f64>>,
    daily_variation: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCalls {
    k: Option<Spanned<u32>>,
    w_minutes: Option<Spanned<u32>>,
    t_minutes: Option<Spanned<u32>>,
    business_hours: Option<Spanned<[u32; 2]>>,
    cooldown_minutes: Option<u32>,
    #[serde(default)]
    profile: Vec<RawCallProfile>,
}

/// A `[[calls.profile]]`: a share of merchants, and the rules they differ in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCallProfile {
    share: Spanned<f64>,
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

pub(super) fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
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

    let (fleet_spec, nq) = fleet_spec(&ctx, &raw.fleet)?;
    let calls = call_rules(&ctx, &raw.calls)?;
    let call_profiles = call_profiles(&ctx, &raw.calls, &calls)?;
    let traffic = match &raw.traffic {
        Some(t) => traffic(&ctx, t)?,
        None => TrafficSpec::default(),
    };
    let (rate, rate_span) = opt(&raw.delivery.backlog_records_per_sec, 50);
    if rate == 0 {
        return Err(ctx.err(rate_span, "backlog_records_per_sec must be at least 1"));
    }
    let delivery = DeliverySpec {
        backlog_records_per_sec: rate,
        spool_max_records: raw.delivery.spool_max_records.unwrap_or(5000),
        reconnect_max_secs: raw.delivery.reconnect_max_secs.unwrap_or(60),
    };
    if fleet_spec.chain_regions > fleet_spec.regions {
        let (_, span) = opt(&raw.fleet.chain_regions, 0);
        return Err(ctx.err(
            span,
            format!(
                "chain_regions ({}) is more than the fleet's regions ({})",
                fleet_spec.chain_regions, fleet_spec.regions
            ),
        ));
    }
    let fleet = Fleet::generate(&fleet_spec, raw.scenario.seed);
    let merchant_calls = assign_profiles(&call_profiles, raw.scenario.seed, fleet.merchants.len());

    let mut faults = Vec::new();
    for f in &raw.fault {
        faults.push(fault(&ctx, f, &fleet, start.unix_ms, end_ms)?);
    }
    let mut incidents = Vec::new();
    for i in &raw.incident {
        // Ground truth names a known pattern: `unknown` is detection's word for none.
        let kind = IncidentKind::parse(i.kind.get_ref())
            .filter(|&k| k != IncidentKind::Unknown)
            .ok_or_else(|| {
                let kinds: Vec<&str> = IncidentKind::ALL[..IncidentKind::ALL.len() - 1]
                    .iter()
                    .map(|k| k.as_str())
                    .collect();
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
        heartbeat_interval_secs: told_interval(&fleet_spec.heartbeat_mix),
        net_quality_interval_secs: nq,
        fleet_spec,
        traffic,
        calls,
        call_profiles,
        merchant_calls,
        delivery,
        faults,
        incidents,
        fleet,
    })
}

fn fleet_spec(ctx: &Ctx<'_>, f: &RawFleet) -> Result<(FleetSpec, u32), ScenarioError> {
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
        carriers: positive(&f.carriers, d.carriers, "carriers", 4)?,
        chain_regions: positive(&f.chain_regions, d.chain_regions, "chain_regions", 99)?,
        heartbeat_mix: heartbeat_mix(ctx, f)?,
    };
    let nq = positive(
        &f.net_quality_interval_secs,
        300,
        "net_quality_interval_secs",
        3600,
    )?;
    Ok((spec, nq))
}

/// The rule fields of `[calls]` and of a `[[calls.profile]]`.
struct RuleFields<'a> {
    k: &'a Option<Spanned<u32>>,
    w_minutes: &'a Option<Spanned<u32>>,
    t_minutes: &'a Option<Spanned<u32>>,
    business_hours: &'a Option<Spanned<[u32; 2]>>,
    cooldown_minutes: Option<u32>,
}

fn call_rules(ctx: &Ctx<'_>, c: &RawCalls) -> Result<CallRules, ScenarioError> {
    let base = CallRules {
        k: 3,
        w_minutes: 10,
        t_minutes: 20,
        business_hours: (8, 22),
        cooldown_minutes: 120,
    };
    rules(
        ctx,
        &RuleFields {
            k: &c.k,
            w_minutes: &c.w_minutes,
            t_minutes: &c.t_minutes,
            business_hours: &c.business_hours,
            cooldown_minutes: c.cooldown_minutes,
        },
        &base,
    )
}

/// Rules from `f`, each field missing taken from `base`.
fn rules(ctx: &Ctx<'_>, f: &RuleFields<'_>, base: &CallRules) -> Result<CallRules, ScenarioError> {
    let (k, k_span) = opt(f.k, base.k);
    if k == 0 {
        return Err(ctx.err(k_span, "k must be at least 1"));
    }
    let (w, w_span) = opt(f.w_minutes, base.w_minutes);
    let (t, t_span) = opt(f.t_minutes, base.t_minutes);
    if w == 0 {
        return Err(ctx.err(w_span, "w_minutes must be at least 1"));
    }
    if t == 0 {
        return Err(ctx.err(t_span, "t_minutes must be at least 1"));
    }
    let ([open, close], bh_span) = opt(
        f.business_hours,
        [base.business_hours.0, base.business_hours.1],
    );
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
        cooldown_minutes: f.cooldown_minutes.unwrap_or(base.cooldown_minutes),
    })
}

fn call_profiles(
    ctx: &Ctx<'_>,
    c: &RawCalls,
    base: &CallRules,
) -> Result<Vec<CallProfile>, ScenarioError> {
    if c.profile.len() > usize::from(u8::MAX) - 1 {
        return Err(ctx.err(
            c.profile[0].share.span(),
            "at most 254 [[calls.profile]] sections",
        ));
    }
    let mut total = 0.0;
    let mut out = Vec::new();
    for p in &c.profile {
        let share = *p.share.get_ref();
        if !(share > 0.0 && share <= 1.0) {
            return Err(ctx.err(
                p.share.span(),
                format!("share must be in (0, 1], not {share}"),
            ));
        }
        total += share;
        if total > 1.0 + 1e-9 {
            return Err(ctx.err(
                p.share.span(),
                format!("the [[calls.profile]] shares add up to {total}, more than 1"),
            ));
        }
        let rules = rules(
            ctx,
            &RuleFields {
                k: &p.k,
                w_minutes: &p.w_minutes,
                t_minutes: &p.t_minutes,
                business_hours: &p.business_hours,
                cooldown_minutes: p.cooldown_minutes,
            },
            base,
        )?;
        out.push(CallProfile { share, rules });
    }
    Ok(out)
}

/// Salt of the call-profile hash.
const CALLS_SALT: u64 = 0x4341_4C4C_5300_0001;

/// Per merchant, its profile (0: the base rules), from a hash of the seed and its index.
fn assign_profiles(profiles: &[CallProfile], seed: u64, merchants: usize) -> Vec<u8> {
    if profiles.is_empty() {
        return Vec::new();
    }
    (0..merchants)
        .map(|m| {
            let mut x = unit_hash(seed, CALLS_SALT, m as u64);
            for (i, p) in profiles.iter().enumerate() {
                if x < p.share {
                    // At most 254 profiles (checked when parsed).
                    return u8::try_from(i + 1).unwrap_or(0);
                }
                x -= p.share;
            }
            0
        })
        .collect()
}

/// The mix's largest share (the shortest interval on a tie).
fn told_interval(mix: &[(u32, f64)]) -> u32 {
    mix.iter()
        .fold(None::<(u32, f64)>, |best, &(secs, share)| match best {
            Some((b, s)) if s > share || (s == share && b < secs) => Some((b, s)),
            _ => Some((secs, share)),
        })
        .map_or(60, |(secs, _)| secs)
}

fn heartbeat_mix(ctx: &Ctx<'_>, f: &RawFleet) -> Result<Vec<(u32, f64)>, ScenarioError> {
    let interval = |secs: u32, span: Range<usize>| {
        if secs == 0 || secs > 3600 {
            Err(ctx.err(
                span,
                format!("a heartbeat interval must be between 1 and 3600 s, not {secs}"),
            ))
        } else {
            Ok(secs)
        }
    };
    let Some(mix) = &f.heartbeat_mix else {
        let (secs, span) = opt(&f.heartbeat_interval_secs, 60);
        return Ok(vec![(interval(secs, span)?, 1.0)]);
    };
    if let Some(hb) = &f.heartbeat_interval_secs {
        return Err(ctx.err(
            hb.span(),
            "give heartbeat_interval_secs or heartbeat_mix, not both",
        ));
    }
    if mix.get_ref().is_empty() {
        return Err(ctx.err(mix.span(), "heartbeat_mix is empty"));
    }
    let mut out = Vec::new();
    let mut total = 0.0;
    for m in mix.get_ref() {
        if !(m.share > 0.0 && m.share <= 1.0) {
            return Err(ctx.err(
                mix.span(),
                format!("a heartbeat_mix share must be in (0, 1], not {}", m.share),
            ));
        }
        total += m.share;
        out.push((interval(m.secs, mix.span())?, m.share));
    }
    if (total - 1.0).abs() > 1e-6 {
        return Err(ctx.err(
            mix.span(),
            format!("the heartbeat_mix shares add up to {total}, not 1"),
        ));
    }
    Ok(out)
}

fn traffic(ctx: &Ctx<'_>, t: &RawTraffic) -> Result<TrafficSpec, ScenarioError> {
    let d = TrafficSpec::default();
    let volume = |v: &Option<Spanned<f64>>, default: f64, name: &str| {
        let (x, span) = opt(v, default);
        if !(x > 0.0 && x <= 10.0) {
            Err(ctx.err(span, format!("{name} must be in (0, 10], not {x}")))
        } else {
            Ok(x)
        }
    };
    let (variation, v_span) = opt(&t.daily_variation, 0.0);
    if !(0.0..=1.0).contains(&variation) {
        return Err(ctx.err(
            v_span,
            format!("daily_variation must be between 0 and 1, not {variation}"),
        ));
    }
    let mut holidays = Vec::new();
    if let Some(h) = &t.holidays {
        for date in h.get_ref() {
            holidays.push(
                parse_date(date).map_err(|e| ctx.err(h.span(), format!("bad holiday: {e}")))?,
            );
        }
    }
    holidays.sort_unstable();
    holidays.dedup();
    Ok(TrafficSpec {
        weekend: t.weekend,
        holidays,
        weekend_volume: volume(&t.weekend_volume, d.weekend_volume, "weekend_volume")?,
        holiday_volume: volume(&t.holiday_volume, d.holiday_volume, "holiday_volume")?,
        daily_variation: variation,
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
        terminals
            .retain(|&i| fleet.terminals[i].identity.link == storepulse_shared::LinkType::Cellular);
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
