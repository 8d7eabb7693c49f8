//! The generator's faults: kind, scope (often inside or across an earlier fault's), window and
//! intensity, kept only when the ground truth it implies can be told apart (see the module docs
//! of `generate`).

use storepulse_shared::LabelKey;

use super::draw::Draw;
use super::{cellular, regional_takes_a_store, round2, takes_down};
use crate::fleet::Fleet;
use crate::fleet::unit_hash;
use crate::scenario::FaultKind;
use crate::time::{HOUR_MS, MINUTE_MS};

/// One planned fault.
#[derive(Debug, Clone)]
pub(super) struct GenFault {
    pub(super) kind: FaultKind,
    pub(super) start_ms: i64,
    pub(super) end_ms: i64,
    pub(super) scope: Vec<(LabelKey, String)>,
    pub(super) intensity: f64,
    pub(super) announced_at_ms: Option<i64>,
    pub(super) silent: bool,
    /// The terminals its scope selects (cellular only for a carrier outage), sorted.
    terminals: Vec<usize>,
}

/// The kinds that make incidents, drawn uniformly.
const INCIDENT_KINDS: [FaultKind; 12] = [
    FaultKind::TerminalFault,
    FaultKind::TerminalConfig,
    FaultKind::StoreNetwork,
    FaultKind::StoreOffline,
    FaultKind::MerchantConfig,
    FaultKind::RoutingMissing,
    FaultKind::FirmwareRegression,
    FaultKind::CarrierOutage,
    FaultKind::RegionalOutage,
    FaultKind::AcquirerOutage,
    FaultKind::AcquirerMaintenance,
    FaultKind::QrNotificationDelay,
];

/// A fault hidden inside an outage of the same terminals, or two of one kind, must be at
/// least this far apart to count as separate.
const APART_MS: i64 = 15 * MINUTE_MS;
/// Two faults of one incident kind on shared terminals: this much apart.
const SAME_KIND_APART_MS: i64 = 30 * MINUTE_MS;

/// `n` faults (or, with `surge_only`, one decline surge) in the window.
pub(super) fn plan_faults(
    d: &mut Draw,
    fleet: &Fleet,
    seed: u64,
    start_ms: i64,
    duration_ms: i64,
    n: u32,
    surge_only: bool,
) -> Vec<GenFault> {
    let end_ms = start_ms + duration_ms;
    let mut out: Vec<GenFault> = Vec::new();
    if surge_only {
        if let Some(f) = draw_fault(
            d,
            fleet,
            seed,
            (start_ms, end_ms),
            FaultKind::DeclineSurge,
            None,
            &out,
        ) {
            out.push(f);
        }
        return out;
    }
    let mut attempts = 0;
    while (out.len() as u32) < n && attempts < n * 30 {
        attempts += 1;
        let related = if out.is_empty() {
            None
        } else {
            match d.unit() {
                x if x < 0.55 => Some((d.int(0, out.len() as u32 - 1) as usize, Relation::Inside)),
                x if x < 0.67 => Some((
                    d.int(0, out.len() as u32 - 1) as usize,
                    Relation::SameKindElsewhere,
                )),
                _ => None,
            }
        };
        let kind = match related {
            Some((p, Relation::SameKindElsewhere)) => out[p].kind,
            _ if d.chance(0.04) => FaultKind::DeclineSurge,
            _ => *d.pick(&INCIDENT_KINDS),
        };
        let parent = related.map(|(p, r)| (&out[p], r));
        let Some(f) = draw_fault(d, fleet, seed, (start_ms, end_ms), kind, parent, &out) else {
            continue;
        };
        out.push(f);
    }
    out
}

/// How a fault relates to an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// Its scope is drawn from a terminal of the earlier fault (nested or overlapping), its
    /// window overlaps.
    Inside,
    /// Same kind, a terminal outside the earlier fault, at the same time (several merchants
    /// misconfigured at once, two stores offline, ...).
    SameKindElsewhere,
}

fn draw_fault(
    d: &mut Draw,
    fleet: &Fleet,
    seed: u64,
    (start_ms, end_ms): (i64, i64),
    kind: FaultKind,
    parent: Option<(&GenFault, Relation)>,
    existing: &[GenFault],
) -> Option<GenFault> {
    let silent = kind == FaultKind::TerminalFault && d.chance(0.3);
    let ok = |i: usize| anchor_ok(fleet, kind, silent, i);
    let anchor = match parent {
        Some((p, Relation::Inside)) => pick_where(d, &p.terminals, &ok),
        Some((p, Relation::SameKindElsewhere)) => {
            let outside = |i: usize| ok(i) && p.terminals.binary_search(&i).is_err();
            pick_in_fleet(d, fleet, &outside)
        }
        None => None,
    }
    .or_else(|| pick_in_fleet(d, fleet, &ok))?;
    let scope = scope_for(d, fleet, kind, anchor);
    let mut terminals = fleet.select(scope.iter().map(|(k, v)| (*k, v.as_str())));
    if kind == FaultKind::CarrierOutage {
        terminals.retain(|&i| cellular(fleet, i));
    }
    if terminals.is_empty() {
        return None;
    }
    let intensity = match kind {
        FaultKind::StoreOffline => 1.0,
        FaultKind::TerminalFault if silent => 1.0,
        FaultKind::RegionalOutage => round2(d.float(0.5, 1.0)),
        FaultKind::CarrierOutage => round2(d.float(0.3, 1.0)),
        FaultKind::DeclineSurge => round2(d.float(0.1, 0.5)),
        _ if d.chance(0.35) => 1.0,
        _ => round2(d.float(0.1, 1.0)),
    };
    let minutes = if kind == FaultKind::AcquirerMaintenance {
        d.int(20, 240)
    } else {
        // Log-uniform from 3 min to 12 h; whole minutes.
        d.log_uniform(3.0, 720.0).round() as u32
    };
    let dur = i64::from(minutes) * MINUTE_MS;
    let latest = end_ms - 3 * MINUTE_MS;
    let (lo, hi) = match parent {
        Some((p, _)) => (
            (p.start_ms - dur / 2 / MINUTE_MS * MINUTE_MS).max(start_ms),
            (p.end_ms - MINUTE_MS).min(latest),
        ),
        None => (start_ms, latest),
    };
    let (lo, hi) = if hi <= lo {
        (start_ms, latest)
    } else {
        (lo, hi)
    };
    let span_min = u32::try_from((hi - lo) / MINUTE_MS).unwrap_or(u32::MAX);
    let mut s = lo + i64::from(d.int(0, span_min)) * MINUTE_MS;
    let mut dur = dur;
    // Inside an outage (or an outage around it), a fault must stick out of the other's window
    // to be seen: it ends 20 min to 2 h after the other, or starts as much before it.
    if let Some((p, Relation::Inside)) = parent
        && (takes_down(p.kind, p.silent) || takes_down(kind, silent))
        && s >= p.start_ms - APART_MS
        && s + dur <= p.end_ms + APART_MS
    {
        let past = i64::from(d.int(20, 120)) * MINUTE_MS;
        if p.end_ms + past - s <= 12 * HOUR_MS && p.end_ms + past < end_ms {
            dur = p.end_ms + past - s;
        } else {
            s = (p.start_ms - past).max(start_ms);
        }
    }
    let announced_at_ms =
        (kind == FaultKind::AcquirerMaintenance).then(|| s - i64::from(d.int(1, 72)) * HOUR_MS);
    let f = GenFault {
        kind,
        start_ms: s,
        end_ms: s + dur,
        scope,
        intensity,
        announced_at_ms,
        silent,
        terminals,
    };
    if kind == FaultKind::RegionalOutage
        && !regional_takes_a_store(fleet, seed, existing.len(), &f.terminals, f.intensity)
    {
        return None;
    }
    if !wide_enough(fleet, seed, existing.len(), &f) {
        return None;
    }
    existing.iter().all(|g| separable(&f, g)).then_some(f)
}

/// Whether terminal `i` can anchor a fault of `kind`.
fn anchor_ok(fleet: &Fleet, kind: FaultKind, silent: bool, i: usize) -> bool {
    let t = &fleet.terminals[i];
    match kind {
        FaultKind::CarrierOutage => cellular(fleet, i),
        FaultKind::RoutingMissing => fleet.merchants[t.merchant].stores.len() >= 2,
        // A dead terminal alone in its store is a store offline to any observer.
        FaultKind::TerminalFault if silent => fleet.stores[t.store].terminals.len() >= 2,
        _ => true,
    }
}

fn pick_where(d: &mut Draw, pool: &[usize], ok: &dyn Fn(usize) -> bool) -> Option<usize> {
    for _ in 0..30 {
        let i = *d.pick(pool);
        if ok(i) {
            return Some(i);
        }
    }
    None
}

fn pick_in_fleet(d: &mut Draw, fleet: &Fleet, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
    let n = u32::try_from(fleet.terminals.len()).unwrap_or(u32::MAX);
    for _ in 0..60 {
        let i = d.int(0, n.saturating_sub(1)) as usize;
        if ok(i) {
            return Some(i);
        }
    }
    None
}

/// The scope of a `kind` fault around terminal `anchor`.
fn scope_for(
    d: &mut Draw,
    fleet: &Fleet,
    kind: FaultKind,
    anchor: usize,
) -> Vec<(LabelKey, String)> {
    use LabelKey::*;
    let id = &fleet.terminals[anchor].identity;
    let one = |k: LabelKey| vec![(k, id.label(k).to_owned())];
    match kind {
        FaultKind::TerminalFault | FaultKind::TerminalConfig => one(TerminalId),
        FaultKind::StoreNetwork | FaultKind::StoreOffline | FaultKind::RoutingMissing => {
            one(StoreId)
        }
        FaultKind::MerchantConfig => one(MerchantId),
        FaultKind::FirmwareRegression if d.chance(0.3) => {
            vec![
                (Firmware, id.firmware.as_str().to_owned()),
                (Model, id.model.as_str().to_owned()),
            ]
        }
        FaultKind::FirmwareRegression => one(Firmware),
        FaultKind::CarrierOutage if d.chance(0.6) => vec![
            (Carrier, id.carrier.as_str().to_owned()),
            (Region, id.region.as_str().to_owned()),
        ],
        FaultKind::CarrierOutage => one(Carrier),
        FaultKind::RegionalOutage if d.chance(0.6) => one(Region),
        FaultKind::RegionalOutage => one(City),
        FaultKind::AcquirerOutage | FaultKind::AcquirerMaintenance if d.chance(0.6) => {
            one(Acquirer)
        }
        FaultKind::AcquirerOutage | FaultKind::AcquirerMaintenance => one(QrChannel),
        FaultKind::QrNotificationDelay => one(QrChannel),
        FaultKind::DeclineSurge => match d.unit() {
            x if x < 0.5 => Vec::new(),
            x if x < 0.75 => one(Region),
            _ => one(MerchantId),
        },
    }
}

/// Whether a fault of a kind wider than a store shows on at least two stores: a carrier,
/// region, city, acquirer, QR channel or firmware fault seen in one store only is, to any
/// observer, that store's (or terminal's) own fault, so its truth could not be told apart. The
/// stores counted are those the engine actually affects (a regional outage takes stores down at
/// its intensity, a carrier outage terminals).
fn wide_enough(fleet: &Fleet, seed: u64, fault_index: usize, f: &GenFault) -> bool {
    use std::collections::BTreeSet;
    let affected: BTreeSet<usize> = match f.kind {
        FaultKind::CarrierOutage
        | FaultKind::RegionalOutage
        | FaultKind::AcquirerOutage
        | FaultKind::AcquirerMaintenance
        | FaultKind::QrNotificationDelay
        | FaultKind::FirmwareRegression => f
            .terminals
            .iter()
            .filter(|&&t| match f.kind {
                FaultKind::RegionalOutage => {
                    let store = fleet.terminals[t].store as u64;
                    unit_hash(seed, fault_index as u64, store) < f.intensity
                }
                FaultKind::CarrierOutage => {
                    unit_hash(seed, fault_index as u64, t as u64) < f.intensity
                }
                _ => true,
            })
            .map(|&t| fleet.terminals[t].store)
            .collect(),
        _ => return true,
    };
    affected.len() >= 2
}

/// Whether `f` and `g` are two faults an observer could tell apart.
fn separable(f: &GenFault, g: &GenFault) -> bool {
    if f.kind == FaultKind::DeclineSurge || g.kind == FaultKind::DeclineSurge {
        return true;
    }
    if !intersects(&f.terminals, &g.terminals) {
        return true;
    }
    let overlap = |a: &GenFault, b: &GenFault, margin: i64| {
        a.start_ms < b.end_ms + margin && b.start_ms < a.end_ms + margin
    };
    if f.kind.incident_kind() == g.kind.incident_kind() && overlap(f, g, SAME_KIND_APART_MS) {
        return false;
    }
    // Inside an outage of all its terminals (with a margin), a fault shows nothing.
    let hidden = |inner: &GenFault, outer: &GenFault| {
        takes_down(outer.kind, outer.silent)
            && subset(&inner.terminals, &outer.terminals)
            && inner.start_ms >= outer.start_ms - APART_MS
            && inner.end_ms <= outer.end_ms + APART_MS
    };
    !hidden(f, g) && !hidden(g, f)
}

/// Whether every element of sorted `a` is in sorted `b`.
fn subset(a: &[usize], b: &[usize]) -> bool {
    a.len() <= b.len() && a.iter().all(|x| b.binary_search(x).is_ok())
}

fn intersects(a: &[usize], b: &[usize]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}
