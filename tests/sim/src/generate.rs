//! The scenario generator: whole scenarios from a seed, written in the strict scenario format
//! (so a generated file can be saved, read back and replayed like any other).
//!
//! [`generate`] draws a fleet (50 to 20,000 terminals; shapes from all single-terminal shops to
//! one chain with most of the fleet; 1 to 30 regions; one or several acquirers, QR channels and
//! carriers; heartbeats from 10 s to 5 min, per fleet or mixed), a traffic calendar (weekday,
//! weekend and holiday shapes; volume 0.2x to 3x), a start at any hour, a length of 1 to 72 h,
//! merchants of different patience and 0 to 10 faults of every kind (intensity 10 % to 100 %,
//! 3 min to 12 h, often nested in or overlapping an earlier fault's scope and window), with the
//! ground truth each fault implies. Sizes are skewed towards small fleets and short spans so a
//! few hundred scenarios evaluate in minutes; about a fifth are fault-free.
//!
//! Deterministic: the same seed gives the same text, with its own generator (SplitMix64, not
//! `rand`), so a seed names the same scenario across dependency updates. A generated fault is
//! kept only when it can be told apart: no two faults of one incident kind on shared terminals
//! at the same time, no fault hidden entirely inside an outage of the same terminals, no dead
//! terminal where it is the store's only one (that is a store offline), no regional outage that
//! takes no store down, no fault wider than a store (carrier, region, acquirer, QR channel,
//! firmware) that shows on fewer than two stores (it would be that store's own fault).

use std::fmt::Write as _;

use storepulse_shared::{LabelKey, LinkType};

use crate::fleet::{Fleet, FleetSpec, unit_hash};
use crate::scenario::FaultKind;
use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS, format_date, format_rfc3339};

mod draw;
mod faults;

use draw::Draw;
use faults::{GenFault, plan_faults};

/// Bumped when the same seed starts giving a different scenario.
pub const GENERATOR_VERSION: u32 = 2;

/// One generated scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The seed.
    pub seed: u64,
    /// Its scenario name, `gen-<seed>`.
    pub name: String,
    /// The scenario file's text.
    pub text: String,
}

/// What the generator draws before it writes (the parts the text is made of).
#[derive(Debug, Clone)]
struct Plan {
    seed: u64,
    start_ms: i64,
    duration_ms: i64,
    spec: FleetSpec,
    net_quality_secs: u32,
    shape: &'static str,
    traffic: TrafficPlan,
    calls: CallsPlan,
    delivery: Option<(u32, u32)>,
    faults: Vec<GenFault>,
}

#[derive(Debug, Clone)]
struct TrafficPlan {
    holidays: Vec<i64>,
    weekend_volume: f64,
    holiday_volume: f64,
    daily_variation: f64,
}

/// `(k, w_minutes, t_minutes, business_hours, cooldown_minutes)`.
type Rules = (u32, u32, u32, (u32, u32), u32);

#[derive(Debug, Clone)]
struct CallsPlan {
    base: Rules,
    profiles: Vec<(f64, Rules)>,
}

/// UTC offset of generated scenarios (China Standard Time, the domain's).
const OFFSET_SECS: i32 = 8 * 3600;

/// Public holidays the generator knows (2026, mainland China, as modelled).
const HOLIDAYS_2026: [&str; 31] = [
    "2026-01-01",
    "2026-01-02",
    "2026-01-03",
    "2026-02-15",
    "2026-02-16",
    "2026-02-17",
    "2026-02-18",
    "2026-02-19",
    "2026-02-20",
    "2026-02-21",
    "2026-02-22",
    "2026-02-23",
    "2026-04-04",
    "2026-04-05",
    "2026-04-06",
    "2026-05-01",
    "2026-05-02",
    "2026-05-03",
    "2026-05-04",
    "2026-05-05",
    "2026-06-19",
    "2026-06-20",
    "2026-06-21",
    "2026-09-25",
    "2026-09-26",
    "2026-09-27",
    "2026-10-01",
    "2026-10-02",
    "2026-10-03",
    "2026-10-04",
    "2026-10-05",
];

/// The file name a generated scenario is saved under.
pub fn file_name(seed: u64) -> String {
    format!("gen-{seed}.toml")
}

/// Generates the scenario of `seed`.
pub fn generate(seed: u64) -> Generated {
    let plan = plan(seed);
    Generated {
        seed,
        name: format!("gen-{seed}"),
        text: write(&plan),
    }
}

fn plan(seed: u64) -> Plan {
    let mut d = Draw::new(seed);
    let fault_free = d.chance(0.22);
    let terminals = draw_terminals(&mut d);
    // Larger fleets mostly get a day or less: what keeps a 300-scenario eval within minutes
    // while every corner (20,000 terminals for 72 h) still occurs.
    let long_ok = terminals < 1500 || d.chance(0.25);
    let duration_h = if fault_free {
        if long_ok && d.chance(0.5) {
            d.int(24, 72)
        } else {
            d.int(12, 24)
        }
    } else {
        match d.unit() {
            x if x < 0.35 => d.int(1, 6),
            x if x < 0.70 || !long_ok => d.int(6, 24),
            x if x < 0.90 => d.int(24, 48),
            _ => d.int(48, 72),
        }
    };
    let duration_ms = i64::from(duration_h) * HOUR_MS;
    let start_ms = draw_start(&mut d);
    let (spec, shape) = draw_fleet(&mut d, terminals);
    let net_quality_secs = if d.chance(0.2) {
        *d.pick(&[60, 120, 600])
    } else {
        300
    };
    let traffic = draw_traffic(&mut d, start_ms, duration_ms);
    let calls = draw_calls(&mut d);
    let delivery = d.chance(0.2).then(|| (d.int(10, 200), d.int(10, 120)));
    let fleet = Fleet::generate(&spec, seed);
    let faults = if fault_free {
        // A holiday rush of declines is not an incident: the day stays fault-free.
        if d.chance(0.25) {
            plan_faults(&mut d, &fleet, seed, start_ms, duration_ms, 0, true)
        } else {
            Vec::new()
        }
    } else {
        let n = match d.unit() {
            x if x < 0.24 => 1,
            x if x < 0.44 => 2,
            x if x < 0.60 => 3,
            x if x < 0.72 => 4,
            _ => d.int(5, 10),
        };
        plan_faults(&mut d, &fleet, seed, start_ms, duration_ms, n, false)
    };
    Plan {
        seed,
        start_ms,
        duration_ms,
        spec,
        net_quality_secs,
        shape,
        traffic,
        calls,
        delivery,
        faults,
    }
}

/// 50 to 20,000, log-uniform within bands skewed to small fleets.
fn draw_terminals(d: &mut Draw) -> u32 {
    let (lo, hi) = match d.unit() {
        x if x < 0.48 => (50.0, 300.0),
        x if x < 0.80 => (300.0, 1500.0),
        x if x < 0.95 => (1500.0, 6000.0),
        _ => (6000.0, 20_000.0),
    };
    // The band bounds are small; rounding is the intent.
    d.log_uniform(lo, hi).round() as u32
}

/// A local start in 2026: at night, a 06:00 cold start, noon, or any quarter hour; some on a
/// holiday.
fn draw_start(d: &mut Draw) -> i64 {
    let first = crate::time::parse_date("2026-01-01").unwrap_or(20_454);
    let day = if d.chance(0.15) {
        let h = *d.pick(&HOLIDAYS_2026);
        crate::time::parse_date(h).unwrap_or(first)
    } else {
        first + i64::from(d.int(0, 364))
    };
    let minute_of_day: i64 = match d.unit() {
        x if x < 0.15 => 0,
        x if x < 0.30 => 6 * 60,
        x if x < 0.40 => 12 * 60,
        _ => i64::from(d.int(0, 95)) * 15,
    };
    day * DAY_MS + minute_of_day * MINUTE_MS - i64::from(OFFSET_SECS) * 1000
}

fn draw_fleet(d: &mut Draw, terminals: u32) -> (FleetSpec, &'static str) {
    let t = f64::from(terminals);
    let mut spec = FleetSpec::with_terminals(terminals);
    let shape = match d.unit() {
        x if x < 0.15 => "shops",
        x if x < 0.30 => "one_chain",
        x if x < 0.50 => "chains",
        _ => "mixed",
    };
    spec.chain_store_terminals = (1, *d.pick(&[1, 2, 3, 4, 6]));
    let per_store = f64::from(spec.chain_store_terminals.0 + spec.chain_store_terminals.1) / 2.0;
    match shape {
        "shops" => {
            spec.chains = 0;
            spec.shop_terminals = if d.chance(0.6) { (1, 1) } else { (1, 2) };
        }
        "one_chain" => {
            spec.chains = 1;
            let share = d.float(0.55, 0.9);
            // At least a few stores; rounding up keeps the chain above its share.
            let stores = ((share * t / per_store).ceil() as u32).max(2);
            spec.chain_stores = (stores, stores);
        }
        "chains" => {
            spec.chains = d.int(2, 8);
            let share = d.float(0.6, 0.9);
            let per_chain = (share * t / per_store / f64::from(spec.chains)).max(2.0);
            spec.chain_stores = (
                (per_chain * 0.5).round().max(1.0) as u32,
                (per_chain * 1.5).round().max(2.0) as u32,
            );
        }
        _ => {
            let share = d.float(0.15, 0.5);
            let per_chain_stores = d.float(4.0, 30.0);
            let chains = (share * t / per_store / per_chain_stores).round().max(1.0);
            spec.chains = chains.min(500.0) as u32;
            spec.chain_stores = (
                (per_chain_stores * 0.3).round().max(2.0) as u32,
                (per_chain_stores * 1.7).round().max(3.0) as u32,
            );
        }
    }
    if shape != "shops" && d.chance(0.3) {
        spec.shop_terminals = (1, 1);
    }
    let max_regions = (terminals / 5).clamp(1, 30);
    spec.regions = match d.unit() {
        x if x < 0.30 => d.int(1, 3),
        x if x < 0.70 => d.int(4, 10),
        _ => d.int(11, 30),
    }
    .min(max_regions);
    spec.cities_per_region = d.int(1, 6);
    spec.chain_regions = match shape {
        "one_chain" | "chains" => d.int(1, spec.regions),
        _ => d.int(1, 3).min(spec.regions),
    };
    let single_provider = d.chance(0.12);
    spec.acquirers = if single_provider || d.chance(0.15) {
        1
    } else {
        d.int(2, 6)
    };
    spec.qr_channels = if single_provider || d.chance(0.15) {
        1
    } else {
        d.int(2, 4)
    };
    spec.carriers = if single_provider || d.chance(0.15) {
        1
    } else {
        d.int(2, 4)
    };
    spec.low_volume_share = round2(d.float(0.0, if shape == "shops" { 0.6 } else { 0.4 }));
    spec.qr_share = round2(d.float(0.3, 0.9));
    spec.volume_scale = round2(d.log_uniform(0.2, 3.0));
    const OTHER: [u32; 10] = [10, 15, 20, 30, 45, 90, 120, 180, 240, 300];
    const MIX: [u32; 7] = [10, 15, 30, 60, 120, 180, 300];
    spec.heartbeat_mix = match d.unit() {
        x if x < 0.35 => vec![(60, 1.0)],
        x if x < 0.70 => vec![(*d.pick(&OTHER), 1.0)],
        _ => {
            let n = d.int(2, 3) as usize;
            let mut secs: Vec<u32> = Vec::new();
            while secs.len() < n {
                let s = *d.pick(&MIX);
                if !secs.contains(&s) {
                    secs.push(s);
                }
            }
            secs.sort_unstable();
            // Shares in whole percent, the last takes the rest: they add up to exactly 1.
            let mut left = 100u32;
            let mut mix = Vec::new();
            for (i, s) in secs.iter().enumerate() {
                let p = if i + 1 == n {
                    left
                } else {
                    d.int(15, left - 15 * (n - 1 - i) as u32)
                };
                left -= p;
                mix.push((*s, f64::from(p) / 100.0));
            }
            mix
        }
    };
    (spec, shape)
}

fn draw_traffic(d: &mut Draw, start_ms: i64, duration_ms: i64) -> TrafficPlan {
    let off = i64::from(OFFSET_SECS) * 1000;
    let first = (start_ms + off).div_euclid(DAY_MS);
    let last = (start_ms + duration_ms + off).div_euclid(DAY_MS);
    let holidays = HOLIDAYS_2026
        .iter()
        .filter_map(|h| crate::time::parse_date(h).ok())
        .filter(|day| (first..=last).contains(day))
        .collect();
    TrafficPlan {
        holidays,
        weekend_volume: round2(d.float(0.6, 1.5)),
        holiday_volume: round2(d.float(0.5, 2.5)),
        daily_variation: round2(d.float(0.0, 0.15)),
    }
}

fn draw_calls(d: &mut Draw) -> CallsPlan {
    let base = (
        d.int(2, 5),
        d.int(5, 20),
        d.int(10, 40),
        (d.int(7, 10), d.int(20, 24)),
        d.int(60, 180),
    );
    let mut profiles = Vec::new();
    if d.chance(0.5) {
        // Impatient merchants: the first or second failure makes them call.
        let share = round2(d.float(0.1, 0.4));
        profiles.push((share, (d.int(1, 2), 10, d.int(3, 10), base.3, base.4)));
    }
    if d.chance(0.4) {
        // Patient ones: they retry, switch to cash, and call late.
        let share = round2(d.float(0.1, 0.4));
        profiles.push((share, (d.int(5, 10), 30, d.int(30, 90), base.3, base.4)));
    }
    CallsPlan { base, profiles }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The scenario text.
fn write(p: &Plan) -> String {
    let mut o = String::new();
    let s = &p.spec;
    let hb = match s.heartbeat_mix.as_slice() {
        [(secs, _)] => format!("heartbeat {secs} s"),
        mix => format!(
            "heartbeats {}",
            mix.iter()
                .map(|(secs, share)| format!("{secs} s {:.0} %", share * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let kinds: Vec<&str> = p.faults.iter().map(|f| f.kind.as_str()).collect();
    let _ = writeln!(
        o,
        "# Generated by the storepulse-sim scenario generator v{GENERATOR_VERSION}, seed {}.",
        p.seed
    );
    let _ = writeln!(
        o,
        "# Regenerate: storepulse-lab generate --seed {} --out DIR",
        p.seed
    );
    let _ = writeln!(o, "\n[scenario]");
    let _ = writeln!(o, "name = \"gen-{}\"", p.seed);
    let _ = writeln!(
        o,
        "description = \"{} terminals, {}, {} regions, {hb}, {} h, {} fault(s){}{}\"",
        s.terminals,
        p.shape,
        s.regions,
        p.duration_ms / HOUR_MS,
        p.faults.len(),
        if kinds.is_empty() { "" } else { ": " },
        kinds.join(", ")
    );
    let _ = writeln!(o, "seed = {}", p.seed);
    let _ = writeln!(o, "start = \"{}\"", format_rfc3339(p.start_ms, OFFSET_SECS));
    let _ = writeln!(o, "duration = \"{}h\"", p.duration_ms / HOUR_MS);

    let _ = writeln!(o, "\n[fleet]");
    let _ = writeln!(o, "terminals = {}", s.terminals);
    let _ = writeln!(o, "regions = {}", s.regions);
    let _ = writeln!(o, "cities_per_region = {}", s.cities_per_region);
    let _ = writeln!(o, "chains = {}", s.chains);
    let _ = writeln!(
        o,
        "chain_stores = [{}, {}]",
        s.chain_stores.0, s.chain_stores.1
    );
    let _ = writeln!(
        o,
        "chain_store_terminals = [{}, {}]",
        s.chain_store_terminals.0, s.chain_store_terminals.1
    );
    let _ = writeln!(
        o,
        "shop_terminals = [{}, {}]",
        s.shop_terminals.0, s.shop_terminals.1
    );
    let _ = writeln!(o, "chain_regions = {}", s.chain_regions);
    let _ = writeln!(o, "low_volume_share = {:?}", s.low_volume_share);
    let _ = writeln!(o, "acquirers = {}", s.acquirers);
    let _ = writeln!(o, "qr_channels = {}", s.qr_channels);
    let _ = writeln!(o, "carriers = {}", s.carriers);
    let _ = writeln!(o, "qr_share = {:?}", s.qr_share);
    let _ = writeln!(o, "volume_scale = {:?}", s.volume_scale);
    match s.heartbeat_mix.as_slice() {
        [(secs, _)] => {
            let _ = writeln!(o, "heartbeat_interval_secs = {secs}");
        }
        mix => {
            let items: Vec<String> = mix
                .iter()
                .map(|(secs, share)| format!("{{ secs = {secs}, share = {share:?} }}"))
                .collect();
            let _ = writeln!(o, "heartbeat_mix = [{}]", items.join(", "));
        }
    }
    let _ = writeln!(o, "net_quality_interval_secs = {}", p.net_quality_secs);

    let t = &p.traffic;
    let _ = writeln!(o, "\n[traffic]");
    let _ = writeln!(o, "weekend = true");
    let days: Vec<String> = t
        .holidays
        .iter()
        .map(|d| format!("\"{}\"", format_date(*d)))
        .collect();
    let _ = writeln!(o, "holidays = [{}]", days.join(", "));
    let _ = writeln!(o, "weekend_volume = {:?}", t.weekend_volume);
    let _ = writeln!(o, "holiday_volume = {:?}", t.holiday_volume);
    let _ = writeln!(o, "daily_variation = {:?}", t.daily_variation);

    let rules = |o: &mut String, r: &Rules| {
        let _ = writeln!(o, "k = {}", r.0);
        let _ = writeln!(o, "w_minutes = {}", r.1);
        let _ = writeln!(o, "t_minutes = {}", r.2);
        let _ = writeln!(o, "business_hours = [{}, {}]", r.3.0, r.3.1);
        let _ = writeln!(o, "cooldown_minutes = {}", r.4);
    };
    let _ = writeln!(o, "\n[calls]");
    rules(&mut o, &p.calls.base);
    for (share, r) in &p.calls.profiles {
        let _ = writeln!(o, "\n[[calls.profile]]");
        let _ = writeln!(o, "share = {share:?}");
        rules(&mut o, r);
    }
    if let Some((rate, reconnect)) = p.delivery {
        let _ = writeln!(o, "\n[delivery]");
        let _ = writeln!(o, "backlog_records_per_sec = {rate}");
        let _ = writeln!(o, "reconnect_max_secs = {reconnect}");
    }

    let rel = |ms: i64| offset_text(ms - p.start_ms);
    for f in &p.faults {
        let _ = writeln!(o, "\n[[fault]]");
        let _ = writeln!(o, "kind = \"{}\"", f.kind.as_str());
        let _ = writeln!(o, "start = \"{}\"", rel(f.start_ms));
        let _ = writeln!(o, "end = \"{}\"", rel(f.end_ms));
        let _ = writeln!(o, "scope = {}", scope_text(&f.scope));
        let _ = writeln!(o, "intensity = {:?}", f.intensity);
        if let Some(a) = f.announced_at_ms {
            let _ = writeln!(o, "announced_at = \"{}\"", format_rfc3339(a, OFFSET_SECS));
        }
        if f.silent {
            let _ = writeln!(o, "silent = true");
        }
    }
    for f in &p.faults {
        let Some(kind) = f.kind.incident_kind() else {
            continue;
        };
        let _ = writeln!(o, "\n[[incident]]");
        let _ = writeln!(o, "kind = \"{}\"", kind.as_str());
        let _ = writeln!(o, "scope = {}", scope_text(&f.scope));
        let _ = writeln!(o, "start = \"{}\"", rel(f.start_ms));
        let _ = writeln!(o, "end = \"{}\"", rel(f.end_ms));
    }
    o
}

/// `+1h30m`-style offset; generated times are whole minutes.
fn offset_text(ms: i64) -> String {
    let mins = ms / MINUTE_MS;
    let (h, m) = (mins / 60, mins % 60);
    match (h, m) {
        (0, m) => format!("+{m}m"),
        (h, 0) => format!("+{h}h"),
        (h, m) => format!("+{h}h{m}m"),
    }
}

fn scope_text(scope: &[(LabelKey, String)]) -> String {
    if scope.is_empty() {
        return "{}".to_owned();
    }
    let items: Vec<String> = scope
        .iter()
        .map(|(k, v)| format!("{} = \"{v}\"", k.as_str()))
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// Whether a fault of `kind` takes its terminals off the air (nothing else about them is
/// visible while it lasts).
fn takes_down(kind: FaultKind, silent: bool) -> bool {
    matches!(
        kind,
        FaultKind::StoreOffline | FaultKind::RegionalOutage | FaultKind::CarrierOutage
    ) || (kind == FaultKind::TerminalFault && silent)
}

/// Cellular terminals, for carrier outages.
fn cellular(fleet: &Fleet, i: usize) -> bool {
    fleet.terminals[i].identity.link == LinkType::Cellular
}

/// Whether the engine takes at least one store of `terminals` down for a regional outage at
/// index `fault_index` with `intensity` (the engine's own draw).
fn regional_takes_a_store(
    fleet: &Fleet,
    seed: u64,
    fault_index: usize,
    terminals: &[usize],
    intensity: f64,
) -> bool {
    terminals
        .iter()
        .any(|&t| unit_hash(seed, fault_index as u64, fleet.terminals[t].store as u64) < intensity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scenario;

    #[test]
    fn offsets_are_written_as_the_parser_reads_them() {
        assert_eq!(offset_text(0), "+0m");
        assert_eq!(offset_text(90 * MINUTE_MS), "+1h30m");
        assert_eq!(offset_text(3 * HOUR_MS), "+3h");
        assert_eq!(offset_text(7 * MINUTE_MS), "+7m");
    }

    #[test]
    fn the_plan_round_trips_through_the_parser() {
        for seed in 0..40 {
            let p = plan(seed);
            let text = write(&p);
            let sc = Scenario::parse("gen", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(sc.fleet_spec, p.spec, "seed {seed}");
            assert_eq!(sc.start_ms, p.start_ms);
            assert_eq!(sc.faults.len(), p.faults.len());
            for (a, b) in sc.faults.iter().zip(&p.faults) {
                assert_eq!(
                    (a.kind, a.start_ms, a.end_ms),
                    (b.kind, b.start_ms, b.end_ms)
                );
                assert_eq!(a.intensity, b.intensity);
            }
        }
    }
}
