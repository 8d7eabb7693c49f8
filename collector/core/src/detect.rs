//! Fleet pattern detection: classifies payment outcomes, keeps per-label windows and
//! baselines, tests them with exact small-count statistics, localises anomalies to the fewest
//! label combinations that explain them, names the incident kind and runs its lifecycle.
//!
//! # Method
//!
//! * **Classify.** Every payment outcome goes through the taxonomy; failures (its one rule,
//!   `Classification::failure`) fall into five families (merchant config, terminal config, terminal fault, availability =
//!   network/platform/issuer, settlement). Cardholder and fraud-risk declines never count.
//! * **Windows.** Live outcomes are counted per minute of *observation time* in every
//!   single-label group (terminal, store, merchant, city, region, acquirer, QR channel, carrier,
//!   model, firmware). Backlog (records observed more than [`DetectorConfig::backlog_lag_ms`]
//!   before they arrive) is history, never a fresh failure.
//! * **Baselines.** Minutes leaving the window roll into a decayed history per group; a
//!   group's rate is shrunk towards the fleet's, the fleet's towards a prior. Minutes in which
//!   a group was anomalous stay out, so an incident does not become the new normal.
//! * **Tests.** For each group with failures of a family, the count in the last 5, 15 and 60
//!   minutes is tested against `attempts x baseline rate` with the exact Poisson tail; a group
//!   is *flagged* when `-log10 p` reaches [`DetectorConfig::min_significance`]. Three payments
//!   an hour with one failure say nothing; two "terminal not registered" in a row, against a
//!   baseline of almost none, say a lot.
//! * **Runs.** Codes healthy terminals almost never answer (merchant config, terminal config,
//!   terminal fault) are also tested as runs: `k` such failures on a terminal (or, for
//!   merchant config, in a store) with no approval in between have probability `p^k` at the
//!   baseline rate `p`. The run must beat a price for every chance a run had to start in a
//!   fleet-day (terminals x payments per terminal per day) at
//!   [`DetectorConfig::run_false_per_day`], so a low-volume shop is caught at its second
//!   failure, not its third, while an occasional stray code stays quiet.
//! * **Network witness.** A store's (or terminal's) timeouts are combined (Fisher) with its own
//!   network samples: the share of samples degraded against the terminal's baseline (loss 5
//!   points up, RTT 2.5x), tested against the fleet's share. Two timeouts with a collapsed
//!   link are a store-network incident; two timeouts on a healthy link are noise.
//! * **Device health.** Each terminal learns its own CPU and temperature from healthy
//!   heartbeats; a beat both [`DetectorConfig::hot_degrees`] hotter and
//!   [`DetectorConfig::busy_points`] busier is distressed. A run of distressed beats is priced
//!   like a payment run (per heartbeat in a fleet-day) and Fisher-combined with the terminal's
//!   terminal-fault codes: a failing device is found before the payment it will fail. Many
//!   terminals hot at once are left to the failure localiser (a cohort, not a device each).
//! * **Volume.** Every group above the terminal learns its payments per hour of day across
//!   days; a group whose last 30 minutes hold at most a quarter of what its profile expects is
//!   tested with the Poisson lower tail ("payments stopped while the terminals report", an
//!   `unknown` incident), unless its terminals are silent or an open incident explains it.
//! * **Announced windows.** Inside an announced maintenance window the acquirer's (or
//!   channel's) availability test is a hypothesis named in advance and needs only
//!   [`DetectorConfig::announced_significance`], without the search price.
//! * **Localisation.** Flags not explained by an open incident start [`crate::rca::localize`]
//!   on a ratio cube (leaves = terminals with attempts in the window, failures / attempts
//!   against each terminal's baseline); every cause it returns is re-tested exactly before it
//!   counts. Silence is localised apart: a missed heartbeat is not a Poisson count. Each
//!   terminal's missed heartbeats are a sequential log-likelihood ratio (`ln 1/q` per miss,
//!   `q` the learned miss probability, floored), and a greedy cover picks the label group
//!   with the best `evidence + binomial fit` (a city of which 95 % went quiet beats the region
//!   it is in, and beats each of its stores), explains its terminals away and repeats.
//! * **Kinds.** The scope's keys, the family and the signal name the kind (table on
//!   `Detector::kind_of`); anything else is `Unknown`. An availability anomaly on an acquirer or
//!   QR channel inside an announced window is maintenance.
//! * **Lifecycle.** An anomaly refreshes the open incident with the same scope, is absorbed by
//!   a wider open incident of a compatible family whose terminals contain its own, or widens a
//!   narrower one; otherwise it opens a new incident (silence must be seen on two consecutive
//!   ticks). An incident resolves after [`DetectorConfig::resolve_hold_ms`] without its signal
//!   *and* with evidence that it is over: over the last hour the binomial likelihood ratio of
//!   "back to baseline" against "still at the rate it opened with" reaches 100 : 1, so a
//!   low-rate defect does not resolve at night for want of payments and reopen every morning.
//!
//! # Layout
//!
//! This file: [`Detector`], its call order and what a record does on arrival. `config`: the
//! tunables; `types`: incidents, evidence and events; `state`: interned labels, groups, windows
//! and baselines; `stats`: exact small-count tails; `signals`: the tests run every tick;
//! `localize`: explained flags, the root-cause search, narrowing and kinds; `lifecycle`: open,
//! absorb, widen, refresh and resolve; `text`: explanations and remediation hints;
//! `snapshot`: the detector's state as plain data, exported and restored across restarts.

mod config;
mod lifecycle;
mod localize;
mod signals;
mod snapshot;
mod state;
mod stats;
mod text;
mod types;

use std::collections::{HashMap, VecDeque};

use storepulse_shared::taxonomy::{self, ErrorClass};
use storepulse_shared::{Identity, LabelKey, Record, RecordBody, TerminalId};

pub use self::config::DetectorConfig;
pub use self::snapshot::{
    DETECTOR_SNAPSHOT_VERSION, DetectorSnapshot, EvidenceData, GroupSnapshot, IncidentData,
    OpenSnapshot, SnapshotError, TermSnapshot, VolumeSnapshot, WindowSnapshot,
};
pub use self::types::{
    CodeCount, DeviceReading, Evidence, Example, Incident, IncidentEvent, IncidentId,
    MaintenanceWindow,
};
pub use state::Family;
pub use storepulse_shared::IncidentKind;

use self::state::{NFAM, State, WINDOWED, ix};

/// The sans-IO detection core.
///
/// Call order: [`Detector::handle_hello`] when a terminal connects (it registers the
/// terminal's labels; records of unknown terminals are ignored), [`Detector::handle_record`]
/// for every stored record with its arrival time, [`Detector::handle_announcement`] for
/// published maintenance, and [`Detector::tick`] every few seconds (10 s is the design point)
/// with non-decreasing times; after each tick drain [`Detector::poll_event`].
/// [`Detector::incidents`] lists the open incidents. Nothing here reads a clock or does IO,
/// and nothing fails: bad input is ignored.
#[derive(Debug)]
pub struct Detector {
    cfg: DetectorConfig,
    st: State,
    open: Vec<Open>,
    events: VecDeque<IncidentEvent>,
    next_id: IncidentId,
    windows: Vec<MaintenanceWindow>,
    /// Per family: groups with failures recently, and the minute of the latest.
    dirty: Vec<HashMap<u32, i64>>,
    last_localize: [i64; NFAM],
    /// Per family: significance of unexplained flags at the last localisation.
    tried: Vec<HashMap<u32, f64>>,
    /// Silence scopes seen at the previous tick (confirmation).
    pending: HashMap<Vec<(LabelKey, u32)>, i64>,
    last_tick: i64,
    /// Minute of the last volume test.
    last_volume_min: i64,
    /// A record just made a run decisive: tick now instead of at the next interval.
    urgent: bool,
    /// Failure incidents resolved in the last hour: family, terminals, when. A new anomaly
    /// inside one needs a failure observed after it resolved (the failures still in the
    /// windows are the old incident's, not a new one).
    resolved: Vec<(Family, Vec<u32>, i64)>,
}

#[derive(Debug)]
struct Open {
    inc: Incident,
    family: Family,
    scope_ids: Vec<(LabelKey, u32)>,
    members: Vec<u32>,
    last_active: i64,
    last_attempt: i64,
    last_emit: i64,
    last_refresh: i64,
    /// The failure rate in scope when the incident opened (the alternative of the recovery
    /// test).
    open_rate: f64,
}

#[derive(Debug, Clone)]
struct Anomaly {
    family: Family,
    scope: Vec<(LabelKey, u32)>,
    members: Vec<u32>,
    attempts: u64,
    observed: f64,
    expected: f64,
    window_min: i64,
    significance: f64,
    silent: u32,
    onset: i64,
}

impl Anomaly {
    /// Observed failure rate (a half when nothing was attempted: silence).
    fn rate(&self) -> f64 {
        if self.attempts == 0 {
            0.5
        } else {
            self.observed / self.attempts as f64
        }
    }
}

/// Windows tested, minutes.
const WINDOWS_MIN: [i64; 3] = [5, 15, 60];
/// Window that judges whether an open failure incident is still active, minutes.
const ACTIVE_WINDOW_MIN: i64 = 15;
/// Minutes the volume test looks back.
const VOLUME_WINDOW_MIN: i64 = 30;
const MINUTE_MS: i64 = 60_000;

/// The family a failure's class belongs to (`None` for classes that are never failures).
fn family_of(class: ErrorClass) -> Option<Family> {
    match class {
        ErrorClass::MerchantConfig => Some(Family::MerchantConfig),
        ErrorClass::TerminalConfig => Some(Family::TerminalConfig),
        ErrorClass::TerminalFault => Some(Family::TerminalFault),
        ErrorClass::Network | ErrorClass::Platform | ErrorClass::Issuer => {
            Some(Family::Availability)
        }
        ErrorClass::Settlement => Some(Family::Settlement),
        ErrorClass::Cardholder | ErrorClass::FraudRisk | ErrorClass::Other => None,
    }
}

/// Whether a network sample is degraded against the terminal's own baseline: loss 5 points
/// above it, RTT 2.5 times it (and 100 ms more), or no answer at all.
fn degraded(
    rtt: Option<f32>,
    loss: Option<f32>,
    rtt_base: Option<f32>,
    loss_base: Option<f32>,
) -> bool {
    if rtt.is_none() && loss.is_some_and(|l| l >= 99.0) {
        return true;
    }
    let loss_bad = matches!((loss, loss_base), (Some(l), Some(b)) if l >= b + 5.0);
    let rtt_bad = matches!((rtt, rtt_base), (Some(r), Some(b)) if r >= 2.5 * b && r >= b + 100.0);
    loss_bad || rtt_bad
}

/// Index of [`Family::Availability`] in [`Family::COUNTED`].
const AVAILABILITY: usize = 3;

/// Fisher's combination of a test with a second, independent witness, both given as
/// `-log10 p`: the `-log10` of `P(chi2_4 >= -2 ln(p1 p2)) = p1 p2 (1 - ln(p1 p2))`. A witness
/// that saw nothing unusual (`s2 == 0`) leaves the first test as it is.
fn fisher2(s1: f64, s2: f64) -> f64 {
    if s2 <= 0.0 {
        return s1;
    }
    let s = s1.max(0.0) + s2;
    s - (1.0 + s * std::f64::consts::LN_10).log10()
}

/// Indexes (in [`Family::COUNTED`]) of the families compatible with `fam`: its plane.
fn plane_of(fam: Family) -> impl Iterator<Item = usize> {
    (0..NFAM).filter(move |&f| Family::COUNTED[f].compatible(fam))
}

fn fam_index(f: Family) -> usize {
    Family::COUNTED.iter().position(|&c| c == f).unwrap_or(0)
}

/// Whether sorted `a` is a subset of sorted `b`.
fn subset(a: &[u32], b: &[u32]) -> bool {
    if a.len() > b.len() {
        return false;
    }
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j == b.len() || b[j] != x {
            return false;
        }
        j += 1;
    }
    true
}

impl Detector {
    /// A detector with no history.
    pub fn new(cfg: DetectorConfig) -> Self {
        let st = State::new(cfg.baseline_half_life_ms);
        Self {
            cfg,
            st,
            open: Vec::new(),
            events: VecDeque::new(),
            next_id: 1,
            windows: Vec::new(),
            dirty: vec![HashMap::new(); NFAM],
            last_localize: [i64::MIN; NFAM],
            tried: vec![HashMap::new(); NFAM],
            pending: HashMap::new(),
            last_tick: i64::MIN,
            last_volume_min: i64::MIN,
            urgent: false,
            resolved: Vec::new(),
        }
    }

    /// A terminal connected with these labels (first connect or reconnect).
    pub fn handle_hello(&mut self, now_ms: i64, identity: &Identity) {
        self.st.hello(now_ms, identity);
    }

    /// A record of `terminal` arrived at `now_ms`. Its `time_unix_ms` is when it was observed.
    pub fn handle_record(&mut self, now_ms: i64, terminal: &TerminalId, record: &Record) {
        let Some(&ti) = self.st.by_id.get(terminal) else {
            return;
        };
        let live = now_ms - record.time_unix_ms <= self.cfg.backlog_lag_ms;
        let t = ti as usize;
        // Any arrival proves the link is up, backlog included.
        let term = &mut self.st.terms[t];
        term.last_arrival = term.last_arrival.max(now_ms);
        match &record.body {
            RecordBody::Heartbeat(hb) => {
                if live {
                    self.device(t, record.time_unix_ms, hb);
                }
                // The interval is learned on the agent's own clock (observation times), so
                // delivery bursts after a reconnect do not shorten it. Any cadence is learned
                // (10 s to 5 min and beyond): the first gap sets it, gaps near it refine it,
                // and two agreeing gaps well below it (the first spanned a miss) lower it.
                let term = &mut self.st.terms[t];
                if let Some(prev) = term.last_hb_obs {
                    let gap = (record.time_unix_ms - prev) as f64;
                    if gap >= 1_000.0 && term.gaps_seen == 0 {
                        term.hb_interval_ms = gap;
                        term.gaps_seen = 1;
                    } else if gap > 0.0 && term.gaps_seen > 0 {
                        let interval = term.hb_interval_ms;
                        if gap < 30.0 * interval {
                            let beats = (gap / interval).round().max(1.0);
                            self.st.beats += beats;
                            self.st.missed += beats - 1.0;
                        }
                        if gap < 1.5 * interval && gap > 0.75 * interval {
                            term.hb_interval_ms = 0.9 * term.hb_interval_ms + 0.1 * gap;
                            term.gaps_seen = term.gaps_seen.saturating_add(1);
                            term.short_gap = None;
                        } else if gap >= 1_000.0 && gap <= 0.75 * interval {
                            match term.short_gap {
                                Some(c) if (gap - c).abs() <= 0.2 * c => {
                                    term.hb_interval_ms = 0.5 * (gap + c);
                                    term.gaps_seen = 1;
                                    term.short_gap = None;
                                }
                                _ => term.short_gap = Some(gap),
                            }
                        }
                    }
                }
                if term.last_hb_obs.is_none_or(|p| record.time_unix_ms > p) {
                    term.last_hb_obs = Some(record.time_unix_ms);
                }
            }
            RecordBody::NetQuality(nq) if live => {
                let term = &mut self.st.terms[t];
                term.rtt_ms = nq.rtt_ms;
                term.loss_percent = nq.loss_percent;
                let bad = degraded(nq.rtt_ms, nq.loss_percent, term.rtt_base, term.loss_base);
                // A degraded sample barely moves the baseline, so a lasting degradation stays
                // visible for hours instead of becoming the new normal within minutes.
                let w = if bad { 0.005 } else { 0.05 };
                let ewma = |base: &mut Option<f32>, x: Option<f32>| {
                    if let Some(x) = x {
                        *base = Some(base.map_or(x, |b| (1.0 - w) * b + w * x.min(4.0 * b + 1.0)));
                    }
                };
                ewma(&mut term.rtt_base, nq.rtt_ms);
                ewma(&mut term.loss_base, nq.loss_percent);
                if term.nq.len() >= state::NQ_KEEP {
                    term.nq.pop_front();
                }
                term.nq.push_back((record.time_unix_ms, bad));
                let share = &mut self.st.nq_bad_share;
                *share = 0.999 * *share + 0.001 * f64::from(u8::from(bad));
            }
            RecordBody::TxnOutcome(tx) if live => {
                let c = taxonomy::classify(tx.scheme, &tx.code);
                // The taxonomy's failure rule, grouped into families.
                let fam = c.failure().and_then(family_of);
                let minute = record.time_unix_ms.div_euclid(MINUTE_MS);
                self.st.count(ti, minute, fam);
                // Runs of failures (no approval in between) per terminal and per store, by
                // plane: a misconfigured terminal answers card payments with terminal-config
                // codes and QR payments with merchant-config codes.
                for k in [ix(LabelKey::TerminalId), ix(LabelKey::StoreId)] {
                    let g = self.st.terms[t].groups[k] as usize;
                    let run = &mut self.st.groups[g].run;
                    if c.approved {
                        *run = [0; NFAM];
                    } else if let Some(f) = fam {
                        for i in plane_of(f) {
                            run[i] = run[i].saturating_add(1);
                        }
                    }
                }
                if c.approved {
                    let term = &mut self.st.terms[t];
                    term.last_approval = term.last_approval.max(record.time_unix_ms);
                }
                if let Some(f) = fam
                    && !self.urgent
                    && now_ms.saturating_sub(self.last_tick) >= 1_000
                {
                    // A run that just became decisive should not wait for the next tick: the
                    // merchant who saw it fail twice may be dialling already. (At most one
                    // early tick a second: a flood of failures must not become a flood of
                    // ticks.)
                    for k in [ix(LabelKey::TerminalId), ix(LabelKey::StoreId)] {
                        let g = self.st.terms[t].groups[k] as usize;
                        if plane_of(f).any(|i| self.run_evidence(g, i).is_some())
                            && !self.contained(fam_index(f), &self.st.groups[g].members)
                        {
                            self.urgent = true;
                        }
                    }
                }
                if let Some(f) = fam {
                    let term = &mut self.st.terms[t];
                    if term.recent.len() >= 8 {
                        term.recent.remove(0);
                    }
                    term.recent
                        .push((record.time_unix_ms, f, tx.scheme, tx.code.clone()));
                    let fi = fam_index(f);
                    for k in 0..WINDOWED {
                        let g = self.st.terms[t].groups[k];
                        self.dirty[fi].insert(g, minute);
                    }
                }
            }
            _ => {}
        }
    }

    /// A maintenance window was announced.
    pub fn handle_announcement(&mut self, _now_ms: i64, window: MaintenanceWindow) {
        self.windows.push(window);
    }

    /// Whether a record just made a run of decisive failures significant: call
    /// [`Self::tick`] now rather than at the next interval (cheap to ask after every batch).
    pub fn wants_tick(&self) -> bool {
        self.urgent
    }

    /// Closes windows, runs detection and the incident lifecycle. Call every few seconds, and
    /// whenever [`Self::wants_tick`] says so.
    pub fn tick(&mut self, now_ms: i64) {
        self.urgent = false;
        if now_ms < self.last_tick {
            return;
        }
        self.last_tick = now_ms;
        let mut anomalies = self.silence(now_ms);
        for fi in 0..NFAM {
            anomalies.extend(self.failures(now_ms, fi));
        }
        anomalies.extend(self.device_health(now_ms));
        anomalies.extend(self.volume(now_ms));
        let mut seen_pending = HashMap::new();
        for a in anomalies {
            self.apply(now_ms, a, &mut seen_pending);
        }
        self.pending = seen_pending;
        self.refresh(now_ms);
    }

    /// The next incident event, if any.
    pub fn poll_event(&mut self) -> Option<IncidentEvent> {
        self.events.pop_front()
    }

    /// The open incidents.
    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.open.iter().map(|o| &o.inc)
    }
}

#[cfg(test)]
mod tests;
