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

mod state;
mod stats;
mod text;

use std::collections::{BTreeSet, HashMap, VecDeque};

use storepulse_shared::taxonomy::{self, ErrorClass};
use storepulse_shared::{Identity, LabelKey, Record, RecordBody, Scheme, TerminalId};

pub use state::Family;
pub use storepulse_shared::IncidentKind;

use self::state::{DIMS, DIMSETS, NFAM, State, WINDOWED, ix};
use self::stats::{deficit, surprise, xlnx};
use crate::rca::{self, Cube, Direction, KpiKind, Params, RatioSample};

/// Tunables of the detector. The defaults are the method's, not any scenario's.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Heartbeat interval assumed until a terminal's own is learned, milliseconds.
    pub heartbeat_interval_ms: i64,
    /// A record observed this much earlier than it arrives is backlog, milliseconds.
    pub backlog_lag_ms: i64,
    /// `-log10 p` a failure count must reach to be an anomaly.
    pub min_significance: f64,
    /// `-log10 p` that keeps an open failure incident active.
    pub stay_open_significance: f64,
    /// Extra `-log10 p` (or silence score factor) an `unknown` incident needs.
    pub unknown_extra_significance: f64,
    /// Least silence score (log-likelihood ratio) of a silent group.
    pub silence_min_score: f64,
    /// Floor of the learned probability that a healthy terminal misses one heartbeat.
    pub min_heartbeat_miss_prob: f64,
    /// How long an incident's signal must be gone before it resolves, milliseconds.
    pub resolve_hold_ms: i64,
    /// A failure incident whose scope sees no payments for this long resolves, milliseconds.
    pub quiet_resolve_ms: i64,
    /// Least time between two localisation runs of one family, milliseconds.
    pub localize_every_ms: i64,
    /// Half-life of baselines, milliseconds.
    pub baseline_half_life_ms: i64,
    /// Prior failure rate per family (merchant config, terminal config, terminal fault,
    /// availability, settlement) before history is learned.
    pub prior_rates: [f64; 5],
    /// Weight of the prior rates, in attempts.
    pub prior_attempts: f64,
    /// Grace around an announced maintenance window, milliseconds.
    pub maintenance_grace_ms: i64,
    /// False single-terminal incidents per fleet-day the run test may raise: it sets how long
    /// a run of merchant-config, terminal-config or terminal-fault failures (no approval in
    /// between) must be, given the fleet size and each terminal's payments per day.
    pub run_false_per_day: f64,
    /// Floor of the fleet's share of degraded network samples (the null of the network test).
    pub min_nq_bad_share: f64,
    /// `-log10 p` an availability anomaly of an acquirer or QR channel needs inside its
    /// announced maintenance window (plus grace). The window names the scope in advance, so
    /// the test is not one of many looked at and pays no search price.
    pub announced_significance: f64,
    /// A heartbeat is *distressed* when the device is both this many degrees Celsius above
    /// its own baseline temperature and [`Self::busy_points`] above its own baseline CPU.
    pub hot_degrees: f32,
    /// CPU percentage points above the terminal's own baseline of a distressed heartbeat.
    pub busy_points: f32,
    /// Floor of the fleet's share of distressed heartbeats (the null of the device test).
    pub min_hot_share: f64,
}

/// A stable incident id (sequential per detector).
pub type IncidentId = u64;

/// One response code seen in an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeCount {
    /// Scheme.
    pub scheme: Scheme,
    /// Code.
    pub code: String,
    /// Taxonomy class.
    pub class: ErrorClass,
    /// Occurrences in the evidence window.
    pub count: u32,
    /// Meaning, English (empty for unknown codes).
    pub meaning_en: String,
    /// Meaning, Chinese.
    pub meaning_zh: String,
}

/// One example failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Terminal.
    pub terminal: TerminalId,
    /// Observation time, Unix ms.
    pub time_ms: i64,
    /// Scheme.
    pub scheme: Scheme,
    /// Code.
    pub code: String,
}

/// Why detection believes in an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The signal family.
    pub family: Family,
    /// Window the counts cover, milliseconds.
    pub window_ms: i64,
    /// Payment attempts in scope in the window.
    pub attempts: u64,
    /// Failures of the family in scope in the window.
    pub observed: f64,
    /// Failures expected from the baseline.
    pub expected: f64,
    /// Baseline failure rate of the family in scope.
    pub baseline_rate: f64,
    /// `-log10 p` of the observation (silence: log-likelihood ratio / ln 10).
    pub significance: f64,
    /// Terminals in scope that stopped reporting.
    pub silent_terminals: u32,
    /// Most frequent codes, most frequent first.
    pub top_codes: Vec<CodeCount>,
    /// A few example failures.
    pub examples: Vec<Example>,
    /// Mean RTT in scope now and its baseline, ms.
    pub rtt_ms: Option<(f32, f32)>,
    /// Mean loss in scope now and its baseline, percent.
    pub loss_percent: Option<(f32, f32)>,
    /// A one-terminal terminal fault whose device is hot and busy: its latest reading
    /// against its own baselines.
    pub device: Option<DeviceReading>,
}

/// A terminal's latest device reading against its own baselines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceReading {
    /// Temperature now, degrees Celsius.
    pub temperature_c: f32,
    /// The terminal's usual temperature, degrees Celsius.
    pub temperature_baseline_c: f32,
    /// CPU now, percent.
    pub cpu_percent: f32,
    /// The terminal's usual CPU, percent.
    pub cpu_baseline_percent: f32,
}

/// An incident as the detector sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Stable id.
    pub id: IncidentId,
    /// Kind.
    pub kind: IncidentKind,
    /// Scope: label key and value pairs, in the detector's key order (`terminal_id`,
    /// `store_id`, `merchant_id`, `city`, `region`, `acquirer`, `qr_channel`, `carrier`,
    /// `model`, `firmware`; a carrier's refinements name `carrier` first).
    pub scope: Vec<(LabelKey, String)>,
    /// Terminals affected (silent, or with failures of the family in the window).
    pub affected_terminals: u32,
    /// Distinct stores of those terminals.
    pub affected_stores: u32,
    /// Distinct merchants of those terminals.
    pub affected_merchants: u32,
    /// Terminals in scope.
    pub scope_terminals: u32,
    /// Evidence.
    pub evidence: Evidence,
    /// Estimated onset, Unix ms.
    pub started_ms: i64,
    /// When it was opened, Unix ms.
    pub opened_ms: i64,
    /// Last update, Unix ms.
    pub updated_ms: i64,
    /// When it resolved, Unix ms.
    pub resolved_ms: Option<i64>,
    /// One sentence, English.
    pub explanation_en: String,
    /// One sentence, Chinese.
    pub explanation_zh: String,
    /// Remediation hints, English.
    pub remediation_en: Vec<&'static str>,
    /// Remediation hints, Chinese.
    pub remediation_zh: Vec<&'static str>,
}

/// What happened to an incident.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentEvent {
    /// A new incident.
    Opened(Incident),
    /// Scope, kind, counts or evidence changed.
    Updated(Incident),
    /// The incident is over (or was merged into a wider one).
    Resolved(Incident),
}

/// An announced maintenance window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Which acquirer / channel: label pairs (`acquirer` or `qr_channel`).
    pub scope: Vec<(LabelKey, String)>,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End, Unix ms.
    pub end_ms: i64,
}

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

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 60_000,
            backlog_lag_ms: 120_000,
            min_significance: 6.5,
            stay_open_significance: 3.0,
            unknown_extra_significance: 3.0,
            silence_min_score: 10.0,
            min_heartbeat_miss_prob: 0.005,
            resolve_hold_ms: 10 * MINUTE_MS,
            quiet_resolve_ms: 60 * MINUTE_MS,
            localize_every_ms: 20_000,
            baseline_half_life_ms: 24 * 60 * MINUTE_MS,
            prior_rates: [1e-5, 1e-5, 1e-5, 2e-3, 1e-5],
            prior_attempts: 20_000.0,
            maintenance_grace_ms: 10 * MINUTE_MS,
            run_false_per_day: 0.01,
            min_nq_bad_share: 0.01,
            announced_significance: 3.0,
            hot_degrees: 12.0,
            busy_points: 30.0,
            min_hot_share: 1e-4,
        }
    }
}

impl Evidence {
    /// Observed failure rate.
    pub fn observed_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.observed / self.attempts as f64
        }
    }

    fn net_text_en(&self) -> String {
        match (self.rtt_ms, self.loss_percent) {
            (Some((r, rb)), Some((l, lb))) if r > 1.5 * rb || l > lb + 2.0 => {
                format!("; RTT {r:.0} ms vs {rb:.0} ms, loss {l:.1}% vs {lb:.1}%")
            }
            _ => String::new(),
        }
    }

    fn net_text_zh(&self) -> String {
        match (self.rtt_ms, self.loss_percent) {
            (Some((r, rb)), Some((l, lb))) if r > 1.5 * rb || l > lb + 2.0 => {
                format!("；时延 {r:.0} 毫秒（平时 {rb:.0}），丢包 {l:.1}%（平时 {lb:.1}%）")
            }
            _ => String::new(),
        }
    }
}

impl Incident {
    /// The scope as `key=value` pairs joined by commas.
    pub fn scope_text(&self) -> String {
        self.scope
            .iter()
            .map(|(d, v)| format!("{}={v}", d.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

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

/// `log10` likelihood ratio a recovery must reach (100 : 1) before an incident's hold runs.
const RECOVERY_LOG10: f64 = 2.0;

/// `log10` likelihood ratio of "the failure rate is still `open_rate`" against "it is back to
/// the baseline" for `obs` failures in `att` payments where the baseline expects `exp`
/// (binomial; negative favours recovery). One approval on a terminal that failed every
/// payment is strong evidence; a handful of payments at night on a 25 % defect is not.
fn recovery_llr(obs: u64, att: u64, exp: f64, open_rate: f64) -> f64 {
    if att == 0 {
        return 0.0;
    }
    let n = att as f64;
    let k = (obs as f64).min(n);
    let r0 = (exp / n).clamp(1e-9, 0.5);
    let r1 = open_rate.max(2.0 * r0).min(0.95);
    k * (r1 / r0).log10() + (n - k) * ((1.0 - r1) / (1.0 - r0)).log10()
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
                // delivery bursts after a reconnect do not shorten it.
                let default = self.cfg.heartbeat_interval_ms as f64;
                let term = &mut self.st.terms[t];
                if term.gaps_seen == 0 {
                    term.hb_interval_ms = default;
                }
                if let Some(prev) = term.last_hb_obs {
                    let gap = (record.time_unix_ms - prev) as f64;
                    let interval = term.hb_interval_ms;
                    if gap > 0.0 && gap < 30.0 * interval {
                        let beats = (gap / interval).round().max(1.0);
                        self.st.beats += beats;
                        self.st.missed += beats - 1.0;
                        if gap < 1.5 * interval && gap > 0.5 * interval {
                            term.hb_interval_ms = 0.9 * term.hb_interval_ms + 0.1 * gap;
                            term.gaps_seen += 1;
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

    /// Device health of terminal `t` from a live heartbeat observed at `time`: a beat both hot
    /// and busy against the terminal's own baselines is distressed (a failing power module, a
    /// stuck scanner driver spinning); the baselines learn from healthy beats and barely move
    /// on distressed ones. Beats without a temperature, or before ten healthy ones were seen,
    /// judge nothing.
    fn device(&mut self, t: usize, time: i64, hb: &storepulse_shared::Heartbeat) {
        let Some(temp) = hb.temperature_c.filter(|x| x.is_finite()) else {
            return;
        };
        if !hb.cpu_percent.is_finite() {
            return;
        }
        let (cpu, temp) = (hb.cpu_percent.clamp(0.0, 100.0), temp.clamp(-40.0, 120.0));
        let (hot_degrees, busy_points) = (self.cfg.hot_degrees, self.cfg.busy_points);
        let h = &mut self.st.terms[t].health;
        let distressed = h.healthy_seen >= 10
            && temp >= h.temp_base + hot_degrees
            && cpu >= h.cpu_base + busy_points;
        // A distressed beat moves the baselines with a half-life of about a day of beats, so
        // a fault lasting hours stays visible instead of becoming the device's new normal.
        let w = match (distressed, h.healthy_seen) {
            (true, _) => 0.0005,
            (false, 0) => 1.0,
            (false, _) => 0.05,
        };
        h.temp_base += w * (temp - h.temp_base);
        h.cpu_base += w * (cpu - h.cpu_base);
        h.cpu = cpu;
        h.temp = temp;
        // Terminal count fits u32 (see State::hello).
        let ti = t as u32;
        if distressed {
            if h.run == 0 {
                h.since = time;
            }
            h.run += 1;
            h.last = h.last.max(time);
            self.st.hot.insert(ti);
        } else {
            h.healthy_seen = h.healthy_seen.saturating_add(1);
            h.run = 0;
            self.st.hot.remove(&ti);
        }
        let share = &mut self.st.hot_share;
        *share = 0.999 * *share + 0.001 * f64::from(u8::from(distressed));
    }

    /// Whether terminal `t`'s device is distressed now: its current run of distressed
    /// heartbeats is fresh (the last one within two and a half intervals).
    fn device_hot(&self, t: usize, now: i64) -> bool {
        let h = &self.st.terms[t].health;
        h.run > 0 && ((now - h.last) as f64) <= 2.5 * self.hb_interval(t) + 10_000.0
    }

    /// Terminal `t`'s heartbeat interval, milliseconds: learned once three gaps were seen,
    /// the configured default before.
    fn hb_interval(&self, t: usize) -> f64 {
        let term = &self.st.terms[t];
        if term.gaps_seen >= 3 {
            term.hb_interval_ms
        } else {
            self.cfg.heartbeat_interval_ms as f64
        }
        .max(1000.0)
    }

    /// Device-health anomalies: a terminal whose last `k` heartbeats were distressed has
    /// `-log10 p = k log10(1/q)` at the fleet's distressed share `q` (floored at
    /// [`DetectorConfig::min_hot_share`]), combined (Fisher) with its own terminal-fault
    /// failures of the last hour. Like the run test it must beat a price for every chance in a
    /// fleet-day (terminals x heartbeats per day) at [`DetectorConfig::run_false_per_day`]. A
    /// hot, busy device is found before the payment it will fail. Many terminals hot at once
    /// are a cohort (firmware, a heat wave), not one device each: the failure localiser judges
    /// those.
    fn device_health(&self, now: i64) -> Vec<Anomaly> {
        let fi = fam_index(Family::TerminalFault);
        let hot: Vec<usize> = self
            .st
            .hot
            .iter()
            .map(|&t| t as usize)
            .filter(|&t| self.device_hot(t, now) && !self.contained(fi, &[t as u32]))
            .collect();
        if hot.is_empty() || hot.len() > 8 {
            return Vec::new();
        }
        let q = self.st.hot_share.clamp(self.cfg.min_hot_share, 0.5);
        let n = self.st.terms.len().max(1) as f64;
        let beats_per_day = 86_400_000.0 / self.cfg.heartbeat_interval_ms.max(1000) as f64;
        let need = (n * beats_per_day / self.cfg.run_false_per_day.max(1e-9)).log10();
        let now_min = now.div_euclid(MINUTE_MS);
        let (prior, prior_n) = (self.cfg.prior_rates[fi], self.cfg.prior_attempts);
        let mut out = Vec::new();
        for t in hot {
            let term = &self.st.terms[t];
            let h = &term.health;
            let g = term.groups[ix(LabelKey::TerminalId)] as usize;
            let (att, fails) = self.st.window(g, now_min, 60);
            let exp = att as f64 * self.st.rate(g, fi, prior, prior_n);
            let device = f64::from(h.run) * -q.log10();
            let sig = fisher2(device, surprise(fails[fi] as f64, exp));
            if sig < need {
                continue;
            }
            out.push(Anomaly {
                family: Family::TerminalFault,
                scope: vec![(LabelKey::TerminalId, term.labels[ix(LabelKey::TerminalId)])],
                members: vec![t as u32],
                attempts: att,
                observed: fails[fi] as f64,
                expected: exp,
                window_min: 60,
                significance: sig,
                silent: 0,
                onset: h.since,
            });
        }
        out
    }

    /// Payments at a group far below its usual volume at this hour: the last 30 minutes hold
    /// at most a quarter of the attempts its learned hour-of-day profile expects (at least
    /// 20), and the Poisson lower tail reaches the threshold of an `unknown` incident. Groups
    /// of which more than 30 % of terminals are silent are left to silence; groups inside an
    /// open incident are explained by it. Of overlapping groups the most significant is kept.
    /// Tested once a minute.
    fn volume(&mut self, now: i64) -> Vec<Anomaly> {
        let now_min = now.div_euclid(MINUTE_MS);
        if now_min == self.last_volume_min {
            return Vec::new();
        }
        self.last_volume_min = now_min;
        // The minute in progress is not complete.
        let to = now_min - 1;
        let mut found: Vec<(f64, usize, u64, f64)> = Vec::new();
        for (g, grp) in self.st.groups.iter().enumerate() {
            let Some(exp) = grp
                .vol
                .as_ref()
                .and_then(|v| v.expected(to, VOLUME_WINDOW_MIN))
            else {
                continue;
            };
            if exp < 20.0 {
                continue;
            }
            let (obs, _) = self.st.window(g, to, VOLUME_WINDOW_MIN);
            if obs as f64 > 0.25 * exp {
                continue;
            }
            let sig = deficit(obs, exp);
            if sig < self.threshold(&self.st.group_scope(g)) + self.cfg.unknown_extra_significance {
                continue;
            }
            found.push((sig, g, obs, exp));
        }
        found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<Anomaly> = Vec::new();
        for (sig, g, obs, exp) in found {
            let members = &self.st.groups[g].members;
            let silent = members
                .iter()
                .filter(|&&t| self.missed(t as usize, now) >= 1)
                .count();
            if silent * 10 > members.len() * 3
                || self.open.iter().any(|o| subset(members, &o.members))
                || out
                    .iter()
                    .any(|a| members.iter().any(|t| a.members.binary_search(t).is_ok()))
            {
                continue;
            }
            out.push(Anomaly {
                family: Family::Volume,
                scope: self.st.group_scope(g),
                members: members.clone(),
                attempts: obs,
                observed: obs as f64,
                expected: exp,
                window_min: VOLUME_WINDOW_MIN,
                significance: sig,
                silent: 0,
                onset: (to - VOLUME_WINDOW_MIN) * MINUTE_MS,
            });
        }
        out
    }

    fn miss_evidence(&self) -> f64 {
        let q = ((self.st.missed + 1.0) / (self.st.beats + 100.0))
            .max(self.cfg.min_heartbeat_miss_prob)
            .min(0.5);
        -q.ln()
    }

    /// Heartbeats missed by terminal `t` at `now`.
    fn missed(&self, t: usize, now: i64) -> i64 {
        let term = &self.st.terms[t];
        let interval = self.hb_interval(t);
        let slack = (0.1 * interval).max(5000.0);
        let gap = (now - term.last_arrival) as f64;
        if gap > 24.0 * 3_600_000.0 {
            // Gone for a day: decommissioned, not an outage.
            return 0;
        }
        ((gap - slack) / interval).floor().max(0.0) as i64
    }

    /// Silence localisation: greedy cover of the late terminals by label groups.
    fn silence(&mut self, now: i64) -> Vec<Anomaly> {
        let unit = self.miss_evidence();
        let mut late: Vec<(u32, f64)> = (0..self.st.terms.len())
            .filter_map(|t| {
                let m = self.missed(t, now);
                // Terminal count fits u32 (see State::hello).
                (m >= 1).then(|| (t as u32, unit * m.min(5) as f64))
            })
            .collect();
        let mut out = Vec::new();
        for _ in 0..32 {
            if late.is_empty() {
                break;
            }
            let mut acc: HashMap<u32, (u32, f64)> = HashMap::new();
            for &(t, e) in &late {
                for &g in &self.st.terms[t as usize].groups {
                    let a = acc.entry(g).or_default();
                    a.0 += 1;
                    a.1 += e;
                }
            }
            let mut best: Option<(f64, u32)> = None;
            for (&g, &(k, e)) in &acc {
                let grp = &self.st.groups[g as usize];
                let n = grp.members.len().max(k as usize) as f64;
                let k = f64::from(k);
                let fit = xlnx(k) + xlnx(n - k) - xlnx(n);
                let score = e + fit - (DIMSETS[grp.dimset].len() as f64 - 1.0);
                if best.is_none_or(|(s, bg)| score > s || (score == s && g < bg)) {
                    best = Some((score, g));
                }
            }
            let Some((score, g)) = best else { break };
            if score < self.cfg.silence_min_score {
                break;
            }
            let members = &self.st.groups[g as usize].members;
            let (inside, rest): (Vec<_>, Vec<_>) = late
                .iter()
                .partition(|(t, _)| members.binary_search(t).is_ok());
            let onset = inside
                .iter()
                .map(|&(t, _)| self.st.terms[t as usize].last_arrival)
                .min()
                .unwrap_or(now);
            out.push(Anomaly {
                family: Family::Silence,
                scope: self.st.group_scope(g as usize),
                members: members.clone(),
                attempts: 0,
                observed: inside.len() as f64,
                expected: 0.0,
                window_min: 0,
                significance: score / std::f64::consts::LN_10,
                silent: inside.len() as u32,
                onset,
            });
            late = rest;
        }
        out
    }

    /// Failure tests of family `fi`, and localisation of what they flag.
    fn failures(&mut self, now: i64, fi: usize) -> Vec<Anomaly> {
        let now_min = now.div_euclid(MINUTE_MS);
        let (prior, prior_n) = (self.cfg.prior_rates[fi], self.cfg.prior_attempts);
        self.dirty[fi].retain(|_, m| *m > now_min - 60);
        if self.dirty[fi].is_empty() {
            return Vec::new();
        }
        let mut flagged: Vec<(u32, f64, i64)> = Vec::new();
        for (&g, &last_fail) in &self.dirty[fi] {
            // Stale evidence (the last failure long ago) flags nothing: what is over is over.
            if now_min - last_fail > 10 {
                continue;
            }
            let gi = g as usize;
            let need = self.need(fi, &self.st.group_scope(gi), now);
            if self.contained(fi, &self.st.groups[gi].members) {
                continue;
            }
            let rate = self.st.rate(gi, fi, prior, prior_n);
            let mut best = (0.0, 0i64, 0u64);
            let sums = self.st.windows3(gi, now_min, WINDOWS_MIN);
            let sig: Vec<f64> = sums
                .iter()
                .map(|(att, fails)| surprise(fails[fi] as f64, *att as f64 * rate))
                .collect();
            for i in 0..WINDOWS_MIN.len() {
                // A long window counts only while its recent part is still unusual: the
                // failures of an outage that ended must not keep flagging.
                let recent = sig[i.saturating_sub(1)];
                if sig[i] > best.0 && recent >= self.cfg.stay_open_significance {
                    best = (sig[i], WINDOWS_MIN[i], sums[i].1[fi]);
                }
            }
            let grp = &self.st.groups[gi];
            if fi == AVAILABILITY && grp.dimset <= 1 && best.2 >= 2 {
                // A store's (or terminal's) own network samples are a second, independent
                // witness of its timeouts.
                let nq = self.nq_evidence(&grp.members, now);
                best.0 = fisher2(best.0, nq);
            }
            if best.0 >= need && best.2 >= 2 {
                flagged.push((g, best.0, best.1));
            } else if let Some(rs) = self.run_evidence(gi, fi) {
                flagged.push((g, rs, ACTIVE_WINDOW_MIN));
            }
        }
        for &(g, _, _) in &flagged {
            self.st.groups[g as usize].excluded_until[fi] = now_min + 60;
            self.st.fleet_exclusions[fi] = now_min + 60;
        }
        let unexplained: Vec<(u32, f64, i64)> = flagged
            .iter()
            .copied()
            .filter(|&(g, _, w)| !self.explained(now_min, fi, g as usize, w))
            .collect();
        if unexplained.is_empty() {
            self.tried[fi].clear();
            return Vec::new();
        }
        let fresh = unexplained
            .iter()
            .any(|&(g, s, _)| self.tried[fi].get(&g).is_none_or(|&old| s >= old + 2.0));
        if !fresh || now.saturating_sub(self.last_localize[fi]) < self.cfg.localize_every_ms {
            return Vec::new();
        }
        self.last_localize[fi] = now;
        self.tried[fi] = unexplained.iter().map(|&(g, s, _)| (g, s)).collect();
        let w = unexplained
            .iter()
            .fold((0.0, 15), |b, &(_, s, w)| if s > b.0 { (s, w) } else { b })
            .1;
        let mut out = self.localize(now_min, fi, w);
        if out.is_empty() {
            // The localiser found nothing significant: fall back to the most significant
            // flagged groups, narrowest first among equals.
            let mut cands = unexplained.clone();
            cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            if let Some(&(g, _, w)) = cands.first() {
                let scope = self.narrowed(now_min, fi, w, self.st.group_scope(g as usize));
                if let Some(a) = self.measure(now_min, fi, scope, w) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Whether `scope` is one acquirer or QR channel inside one of its announced maintenance
    /// windows (with grace) at `now`.
    fn announced(&self, scope: &[(LabelKey, u32)], now: i64) -> bool {
        let [(d, v)] = scope else { return false };
        self.windows.iter().any(|w| {
            let same = matches!(w.scope.as_slice(), [(wd, wv)]
                if wd == d && self.st.interner.lookup(*wd, wv) == Some(*v));
            same && now >= w.start_ms - self.cfg.maintenance_grace_ms
                && now <= w.end_ms + self.cfg.maintenance_grace_ms
        })
    }

    /// The significance an anomaly of family `fi` on `scope` must reach at `now`: an
    /// availability anomaly of an acquirer or channel inside its announced window is a
    /// hypothesis named in advance and needs only
    /// [`DetectorConfig::announced_significance`]; anything else [`Self::threshold`].
    fn need(&self, fi: usize, scope: &[(LabelKey, u32)], now: i64) -> f64 {
        if fi == AVAILABILITY && self.announced(scope, now) {
            self.cfg.announced_significance
        } else {
            self.threshold(scope)
        }
    }

    /// The significance a scope must reach: the base threshold plus the price of having
    /// looked at every scope of its shape (Bonferroni over the label values of its keys).
    fn threshold(&self, scope: &[(LabelKey, u32)]) -> f64 {
        let price: f64 = scope
            .iter()
            .map(|&(d, _)| (self.st.interner.cardinality(d).max(1) as f64).log10())
            .sum();
        self.cfg.min_significance + price
    }

    /// The run test of group `g` (a terminal, or a store) in family `fi`: `-log10` of the
    /// chance that its last `k` payments all failed with codes of the family's plane (no
    /// approval in between) at its baseline rate `p`, i.e. `k log10(1/p)`, if that beats
    /// [`Self::run_threshold`]. Only families whose codes healthy terminals almost never answer
    /// (merchant config, terminal config, terminal fault) and runs of at least two count.
    fn run_evidence(&self, g: usize, fi: usize) -> Option<f64> {
        let grp = &self.st.groups[g];
        // Terminal runs for every decisive family; store runs for merchant config only (a
        // branch's registration; a store's terminals do not break together otherwise).
        let eligible = match grp.dimset {
            0 => fi < AVAILABILITY,
            1 => fi == fam_index(Family::MerchantConfig),
            _ => false,
        };
        let k = grp.run[fi];
        if !eligible || k < 2 {
            return None;
        }
        // The null rate of the run's plane: every compatible family's baseline.
        let p: f64 = plane_of(Family::COUNTED[fi])
            .map(|f| {
                self.st
                    .rate(g, f, self.cfg.prior_rates[f], self.cfg.prior_attempts)
            })
            .sum::<f64>()
            .clamp(1e-12, 0.5);
        let sig = f64::from(k) * -p.log10();
        (sig >= self.run_threshold()).then_some(sig)
    }

    /// Significance a run must reach: a Bonferroni price over every chance a run had to start
    /// in a fleet-day (terminals x payments per terminal per day, at least 50) for at most
    /// [`DetectorConfig::run_false_per_day`] false incidents per fleet-day.
    fn run_threshold(&self) -> f64 {
        let n = self.st.terms.len().max(1) as f64;
        // A count decayed with half-life H holds H / ln 2 worth of its rate.
        let half_life_days = self.cfg.baseline_half_life_ms as f64 / 86_400_000.0;
        let per_day =
            (self.st.fleet_attempts * std::f64::consts::LN_2 / half_life_days / n).max(50.0);
        (n * per_day / self.cfg.run_false_per_day.max(1e-9)).log10()
    }

    /// `-log10 p` of the degraded network samples of `members` (at most a store's worth are
    /// looked at) in the 15 minutes before `now`, against the fleet's share of degraded samples.
    fn nq_evidence(&self, members: &[u32], now: i64) -> f64 {
        let q = self.st.nq_bad_share.max(self.cfg.min_nq_bad_share);
        let since = now - ACTIVE_WINDOW_MIN * MINUTE_MS;
        let (mut n, mut k) = (0u32, 0u32);
        for &t in members.iter().take(64) {
            for &(ts, bad) in &self.st.terms[t as usize].nq {
                if ts > since && ts <= now {
                    n += 1;
                    k += u32::from(bad);
                }
            }
        }
        surprise(f64::from(k), f64::from(n) * q)
    }

    /// Whether every terminal of `members` lies in one open incident of a compatible family.
    fn contained(&self, fi: usize, members: &[u32]) -> bool {
        let fam = Family::COUNTED[fi];
        self.open
            .iter()
            .any(|o| o.family.compatible(fam) && subset(members, &o.members))
    }

    /// Terminals covered by open incidents of a family compatible with `fi`.
    fn covered(&self, fi: usize) -> Vec<bool> {
        let fam = Family::COUNTED[fi];
        let mut out = vec![false; self.st.terms.len()];
        for o in self.open.iter().filter(|o| o.family.compatible(fam)) {
            for &t in &o.members {
                out[t as usize] = true;
            }
        }
        out
    }

    /// Whether flagged group `g` is explained by open incidents: contained in one, or no
    /// longer significant once the failures of the open incidents inside it are taken out.
    fn explained(&self, now_min: i64, fi: usize, g: usize, w: i64) -> bool {
        let m = &self.st.groups[g].members;
        if self.contained(fi, m) {
            return true;
        }
        if Family::COUNTED[fi] == Family::MerchantConfig
            && DIMSETS[self.st.groups[g].dimset] == [LabelKey::MerchantId]
        {
            // Merchant-config incidents open on two or more of a merchant's stores (or
            // terminals) that together hold most of its terminals are one registration
            // problem: the merchant explains them more succinctly, so they are not an
            // explanation of it (it widens them into one).
            let fam = Family::COUNTED[fi];
            let inside: Vec<&Open> = self
                .open
                .iter()
                .filter(|o| o.family.compatible(fam) && subset(&o.members, m))
                .collect();
            let union: BTreeSet<u32> = inside
                .iter()
                .flat_map(|o| o.members.iter().copied())
                .collect();
            if inside.len() >= 2 && union.len() * 4 >= m.len() * 3 {
                return false;
            }
        }
        let covered = self.covered(fi);
        if !m.iter().any(|&t| covered[t as usize]) {
            return false;
        }
        let (prior, prior_n) = (self.cfg.prior_rates[fi], self.cfg.prior_attempts);
        let (mut att, fails) = self.st.window(g, now_min, w);
        let mut obs = fails[fi];
        for &t in m.iter().filter(|&&t| covered[t as usize]) {
            let tg = self.st.terms[t as usize].groups[0] as usize;
            let (a, f) = self.st.window(tg, now_min, w);
            att = att.saturating_sub(a);
            obs = obs.saturating_sub(f[fi]);
        }
        let rate = self.st.rate(g, fi, prior, prior_n);
        surprise(obs as f64, att as f64 * rate)
            < self.need(fi, &self.st.group_scope(g), now_min * MINUTE_MS)
    }

    /// Exact counts of family `fi` over the terminals of `scope` in the last `w` minutes.
    fn measure(
        &self,
        now_min: i64,
        fi: usize,
        scope: Vec<(LabelKey, u32)>,
        w: i64,
    ) -> Option<Anomaly> {
        let members = self.st.members_of(&scope);
        if members.is_empty() {
            return None;
        }
        // Terminals already explained by an open incident are not evidence of a new one.
        let mut covered = self.covered(fi);
        // A scope that contains an open compatible incident may widen it: judge it whole.
        let fam = Family::COUNTED[fi];
        if self.open.iter().any(|o| {
            o.family.compatible(fam)
                && o.members.len() < members.len()
                && subset(&o.members, &members)
        }) {
            covered.iter_mut().for_each(|c| *c = false);
        }
        let (prior, prior_n) = (self.cfg.prior_rates[fi], self.cfg.prior_attempts);
        let (mut att, mut obs, mut exp) = (0u64, 0u64, 0.0);
        let mut onset = i64::MAX;
        for &t in members.iter().filter(|&&t| !covered[t as usize]) {
            let g = self.st.terms[t as usize].groups[0] as usize;
            let (a, f) = self.st.window(g, now_min, w);
            att += a;
            obs += f[fi];
            exp += a as f64 * self.st.rate(g, fi, prior, prior_n);
            if f[fi] > 0 {
                let fam = Family::COUNTED[fi];
                if let Some(first) = self.st.terms[t as usize]
                    .recent
                    .iter()
                    .filter(|r| r.1 == fam)
                    .map(|r| r.0)
                    .min()
                {
                    onset = onset.min(first);
                }
            }
        }
        let mut s = surprise(obs as f64, exp);
        let single = (scope.len() == 1).then(|| scope[0].0);
        if fi == AVAILABILITY
            && matches!(single, Some(LabelKey::TerminalId | LabelKey::StoreId))
            && obs >= 2
        {
            s = fisher2(
                s,
                self.nq_evidence(&members, now_min * MINUTE_MS + MINUTE_MS - 1),
            );
        }
        let mut pass = s >= self.need(fi, &scope, now_min * MINUTE_MS) && obs >= 2;
        let group = match single {
            Some(LabelKey::TerminalId | LabelKey::StoreId) => {
                let d = scope[0].0;
                Some(self.st.terms[members[0] as usize].groups[ix(d)] as usize)
            }
            _ => None,
        };
        if !pass && let Some(rs) = group.and_then(|g| self.run_evidence(g, fi)) {
            s = s.max(rs);
            pass = true;
        }
        pass.then(|| Anomaly {
            family: Family::COUNTED[fi],
            scope,
            members,
            attempts: att,
            observed: obs as f64,
            expected: exp,
            window_min: w,
            significance: s,
            silent: 0,
            onset: if onset == i64::MAX {
                now_min * MINUTE_MS
            } else {
                onset
            },
        })
    }

    /// Root-cause localisation of family `fi` over the last `w` minutes with [`rca`].
    fn localize(&self, now_min: i64, fi: usize, w: i64) -> Vec<Anomaly> {
        let names: Vec<&str> = DIMS.iter().map(|d| d.as_str()).collect();
        let mut cube = Cube::new(&names, KpiKind::Ratio);
        let prior = self.cfg.prior_rates[fi];
        let mut ids = vec![0u32; names.len()];
        let covered = self.covered(fi);
        for (ti, term) in self.st.terms.iter().enumerate() {
            if covered[ti] {
                continue;
            }
            let g = term.groups[0] as usize;
            let (att, fails) = self.st.window(g, now_min, w);
            if att == 0 {
                continue;
            }
            let grp = &self.st.groups[g];
            for (i, d) in DIMS.into_iter().enumerate() {
                let v = self.st.interner.value(d, term.labels[i]);
                match cube.intern(i, v) {
                    Ok(id) => ids[i] = id,
                    Err(_) => return Vec::new(),
                }
            }
            let sample = RatioSample {
                num_real: fails[fi] as f64,
                num_predict: grp.base_fails[fi] + prior * 50.0,
                den_real: att as f64,
                den_predict: grp.base_attempts + 50.0,
            };
            if cube.push_ratio(&ids, sample).is_err() {
                return Vec::new();
            }
        }
        let params = Params {
            max_attributes: 3,
            max_causes: 6,
            min_score: 0.0,
            min_relative_change: 0.5,
            direction: Direction::Increase,
        };
        let Ok(causes) = rca::localize(&cube, &params) else {
            return Vec::new();
        };
        let mut out: Vec<Anomaly> = Vec::new();
        for c in causes {
            let mut scope: Vec<(LabelKey, u32)> = Vec::new();
            for (k, v) in c.labels(&cube) {
                let Some(d) = LabelKey::parse(k) else {
                    continue;
                };
                let Some(id) = self.st.interner.lookup(d, v) else {
                    continue;
                };
                scope.push((d, id));
            }
            // The detector's own key order (see `DIMS`), not `LabelKey`'s.
            scope.sort_by_key(|&(d, v)| (ix(d), v));
            let scope = self.narrowed(now_min, fi, w, scope);
            if let Some(a) = self.measure(now_min, fi, scope, w)
                && !out.iter().any(|o| subset(&a.members, &o.members))
            {
                out.push(a);
            }
        }
        out
    }

    /// Occam's razor for a cause the localiser returned: when every terminal failing in it
    /// (not already explained) lies in one narrower group the family can name — one merchant
    /// for merchant config, one terminal for terminal config or fault — that group is the
    /// scope. A fleet whose terminals share one QR channel must not get a channel-wide
    /// incident for one merchant's registration.
    fn narrowed(
        &self,
        now_min: i64,
        fi: usize,
        w: i64,
        scope: Vec<(LabelKey, u32)>,
    ) -> Vec<(LabelKey, u32)> {
        let dim = match Family::COUNTED[fi] {
            Family::MerchantConfig => LabelKey::MerchantId,
            Family::TerminalConfig | Family::TerminalFault => LabelKey::TerminalId,
            _ => return scope,
        };
        let members = self.st.members_of(&scope);
        let covered = self.covered(fi);
        let mut common: Option<u32> = None;
        for &t in members.iter().filter(|&&t| !covered[t as usize]) {
            let term = &self.st.terms[t as usize];
            let (_, f) = self.st.window(term.groups[0] as usize, now_min, w);
            if f[fi] == 0 {
                continue;
            }
            let g = term.groups[ix(dim)];
            match common {
                None => common = Some(g),
                Some(c) if c == g => {}
                Some(_) => return scope,
            }
        }
        match common {
            Some(g) if self.st.groups[g as usize].members.len() < members.len() => {
                self.st.group_scope(g as usize)
            }
            _ => scope,
        }
    }

    /// The store group of terminal `t` if the store has other terminals and none of them has
    /// been paid since the terminal's merchant-config failures began.
    fn store_wide(&self, t: usize) -> Option<usize> {
        let store = self.st.terms[t].groups[ix(LabelKey::StoreId)] as usize;
        let members = &self.st.groups[store].members;
        if members.len() < 2 || members.len() > 64 {
            return None;
        }
        // Since the first merchant-config failure of the terminal's current run.
        let since = self.st.terms[t]
            .recent
            .iter()
            .filter(|r| r.1 == Family::MerchantConfig && r.0 > self.st.terms[t].last_approval)
            .map(|r| r.0)
            .min()?;
        let sibling_paid = members
            .iter()
            .any(|&s| s as usize != t && self.st.terms[s as usize].last_approval >= since);
        (!sibling_paid).then_some(store)
    }

    /// The canonical scope of a terminal set: among equivalent terminal / store / merchant
    /// scopes, the one the family points at.
    fn canonical(&self, a: &mut Anomaly) {
        let Some(&t0) = a.members.first() else { return };
        let labels = self.st.terms[t0 as usize].labels;
        let order: &[LabelKey] = match a.family {
            Family::TerminalConfig | Family::TerminalFault => &[
                LabelKey::TerminalId,
                LabelKey::StoreId,
                LabelKey::MerchantId,
            ],
            Family::MerchantConfig => &[
                LabelKey::MerchantId,
                LabelKey::StoreId,
                LabelKey::TerminalId,
            ],
            _ => &[
                LabelKey::StoreId,
                LabelKey::TerminalId,
                LabelKey::MerchantId,
            ],
        };
        for &d in order {
            let g = self.st.terms[t0 as usize].groups[ix(d)] as usize;
            if self.st.groups[g].members == a.members {
                a.scope = vec![(d, labels[ix(d)])];
                return;
            }
        }
    }

    /// The kind of an anomaly: the scope's keys, the family and the signal name it; anything
    /// else is `Unknown`.
    ///
    /// | scope keys | family / signal | kind |
    /// |---|---|---|
    /// | terminal_id | silence, terminal-fault codes | `TerminalFault` |
    /// | terminal_id | terminal-config or merchant-config codes | `TerminalConfig` |
    /// | store_id | silence | `StoreOffline` |
    /// | store_id | availability codes | `StoreNetwork` |
    /// | merchant_id or store_id | merchant-config codes | `MerchantConfig` |
    /// | firmware (+ model) | terminal-fault codes | `FirmwareRegression` |
    /// | carrier (+ region/city) | silence or availability | `CarrierOutage` |
    /// | region or city | silence or availability | `RegionalOutage` |
    /// | acquirer or qr_channel | availability | `AcquirerOutage` (`AcquirerMaintenance` in an announced window) |
    /// | qr_channel | settlement codes | `QrNotificationDelay` |
    fn kind_of(&self, a: &Anomaly, now: i64) -> IncidentKind {
        use LabelKey::*;
        let keys: BTreeSet<LabelKey> = a.scope.iter().map(|s| s.0).collect();
        let only = |ks: &[LabelKey]| keys.len() == ks.len() && ks.iter().all(|k| keys.contains(k));
        let within = |ks: &[LabelKey]| keys.iter().all(|k| ks.contains(k));
        let carrierish = keys.contains(&Carrier) && within(&[Carrier, Region, City, Link]);
        let regional = only(&[Region]) || only(&[City]);
        let channel = only(&[Acquirer]) || only(&[QrChannel]);
        match a.family {
            Family::Silence if only(&[TerminalId]) => IncidentKind::TerminalFault,
            Family::Silence if only(&[StoreId]) => IncidentKind::StoreOffline,
            Family::Silence | Family::Availability if carrierish => IncidentKind::CarrierOutage,
            Family::Silence | Family::Availability if regional => IncidentKind::RegionalOutage,
            Family::Availability if only(&[StoreId]) => IncidentKind::StoreNetwork,
            Family::Availability if channel => {
                if self.announced(&a.scope, now) {
                    IncidentKind::AcquirerMaintenance
                } else {
                    IncidentKind::AcquirerOutage
                }
            }
            Family::MerchantConfig if only(&[MerchantId]) || only(&[StoreId]) => {
                IncidentKind::MerchantConfig
            }
            Family::MerchantConfig | Family::TerminalConfig if only(&[TerminalId]) => {
                IncidentKind::TerminalConfig
            }
            Family::TerminalFault if only(&[TerminalId]) => IncidentKind::TerminalFault,
            Family::TerminalFault if keys.contains(&Firmware) && within(&[Firmware, Model]) => {
                IncidentKind::FirmwareRegression
            }
            Family::Settlement if only(&[QrChannel]) => IncidentKind::QrNotificationDelay,
            _ => IncidentKind::Unknown,
        }
    }

    fn apply(
        &mut self,
        now: i64,
        mut a: Anomaly,
        seen_pending: &mut HashMap<Vec<(LabelKey, u32)>, i64>,
    ) {
        if a.family == Family::MerchantConfig && a.members.len() == 1 {
            // One terminal answering terminal-config codes too is misconfigured itself (its
            // QR payments report the wrong binding as a merchant mismatch).
            let t = a.members[0] as usize;
            if self.st.terms[t]
                .recent
                .iter()
                .any(|r| r.1 == Family::TerminalConfig)
            {
                a.family = Family::TerminalConfig;
            } else if let Some(store) = self.store_wide(t) {
                // "Merchant does not exist" on one terminal while no sibling of its store
                // has been paid since: the store's registration (a branch without routing
                // information), not this terminal. If a sibling is being paid, the terminal
                // alone is bound wrong and stays a terminal-config incident.
                a.scope = self.st.group_scope(store);
                a.members = self.st.groups[store].members.clone();
            }
        }
        self.canonical(&mut a);
        let kind = self.kind_of(&a, now);
        // Same scope: refresh.
        if let Some(o) = self
            .open
            .iter_mut()
            .find(|o| o.scope_ids == a.scope && o.family.compatible(a.family))
        {
            o.last_active = now;
            return;
        }
        // Explained by a wider open incident.
        if let Some(o) = self
            .open
            .iter_mut()
            .find(|o| o.family.compatible(a.family) && subset(&a.members, &o.members))
        {
            if o.family == a.family {
                o.last_active = now;
            }
            return;
        }
        // A pattern that fits no kind, inside any open incident, is evidence of that incident
        // (a firmware defect's platform-class codes on one acquirer).
        if kind == IncidentKind::Unknown && self.open.iter().any(|o| subset(&a.members, &o.members))
        {
            return;
        }
        // Widens narrower open incidents.
        if kind != IncidentKind::Unknown {
            let narrower: Vec<usize> = (0..self.open.len())
                .filter(|&i| {
                    let o = &self.open[i];
                    o.family.compatible(a.family) && subset(&o.members, &a.members)
                })
                .collect();
            if let Some((&keep, rest)) = narrower.split_first() {
                for &i in rest.iter().rev() {
                    let mut o = self.open.remove(i);
                    o.inc.resolved_ms = Some(now);
                    o.inc.updated_ms = now;
                    self.events.push_back(IncidentEvent::Resolved(o.inc));
                }
                let inc = self.build(now, &a, kind, self.open[keep].inc.id);
                let o = &mut self.open[keep];
                let started = o.inc.started_ms.min(inc.started_ms);
                let opened = o.inc.opened_ms;
                o.inc = inc;
                o.inc.started_ms = started;
                o.inc.opened_ms = opened;
                o.family = a.family;
                o.scope_ids = a.scope.clone();
                o.members = a.members.clone();
                o.last_active = now;
                o.last_emit = now;
                o.open_rate = a.rate();
                self.events.push_back(IncidentEvent::Updated(o.inc.clone()));
                return;
            }
        }
        if kind == IncidentKind::Unknown {
            let need = self.threshold(&a.scope) + self.cfg.unknown_extra_significance;
            if a.significance < need {
                return;
            }
        }
        if a.family == Family::Silence {
            let first = self.pending.get(&a.scope).copied().unwrap_or(now);
            seen_pending.insert(a.scope.clone(), first);
            if first == now {
                return;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let inc = self.build(now, &a, kind, id);
        let open_rate = a.rate();
        self.events.push_back(IncidentEvent::Opened(inc.clone()));
        self.open.push(Open {
            inc,
            family: a.family,
            scope_ids: a.scope,
            members: a.members,
            last_active: now,
            last_attempt: now,
            last_emit: now,
            last_refresh: now,
            open_rate,
        });
    }

    fn build(&self, now: i64, a: &Anomaly, kind: IncidentKind, id: IncidentId) -> Incident {
        let scope: Vec<(LabelKey, String)> = a
            .scope
            .iter()
            .filter(|(d, _)| *d != LabelKey::Link)
            .map(|&(d, v)| (d, self.st.interner.value(d, v).to_owned()))
            .collect();
        let since = now - a.window_min.max(ACTIVE_WINDOW_MIN) * MINUTE_MS;
        let mut affected: Vec<u32> = Vec::new();
        let mut codes: HashMap<(Scheme, String), u32> = HashMap::new();
        let mut examples: Vec<Example> = Vec::new();
        let (mut rtt, mut rtt_b, mut loss, mut loss_b, mut nq) =
            (0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for &t in &a.members {
            let term = &self.st.terms[t as usize];
            if a.family == Family::Volume {
                affected.push(t);
                continue;
            }
            if a.family == Family::Silence {
                if self.missed(t as usize, now) >= 1 {
                    affected.push(t);
                }
                continue;
            }
            let mut hit = false;
            for (time, f, scheme, code) in &term.recent {
                if *f == a.family && *time >= since {
                    hit = true;
                    *codes.entry((*scheme, code.clone())).or_default() += 1;
                    if examples.len() < 3 {
                        examples.push(Example {
                            terminal: term.id.clone(),
                            time_ms: *time,
                            scheme: *scheme,
                            code: code.clone(),
                        });
                    }
                }
            }
            if hit {
                affected.push(t);
            }
            if let (Some(r), Some(rb), Some(l), Some(lb)) = (
                term.rtt_ms,
                term.rtt_base,
                term.loss_percent,
                term.loss_base,
            ) {
                rtt += r;
                rtt_b += rb;
                loss += l;
                loss_b += lb;
                nq += 1.0;
            }
        }
        let mut top: Vec<CodeCount> = codes
            .into_iter()
            .map(|((scheme, code), count)| {
                let info = taxonomy::lookup(scheme, &code);
                CodeCount {
                    class: taxonomy::classify(scheme, &code).class,
                    meaning_en: info.map(|i| i.meaning_en.clone()).unwrap_or_default(),
                    meaning_zh: info.map(|i| i.meaning_zh.clone()).unwrap_or_default(),
                    scheme,
                    code,
                    count,
                }
            })
            .collect();
        top.sort_by(|x, y| y.count.cmp(&x.count).then(x.code.cmp(&y.code)));
        top.truncate(5);
        let stores: BTreeSet<u32> = affected
            .iter()
            .map(|&t| self.st.terms[t as usize].labels[ix(LabelKey::StoreId)])
            .collect();
        let merchants: BTreeSet<u32> = affected
            .iter()
            .map(|&t| self.st.terms[t as usize].labels[ix(LabelKey::MerchantId)])
            .collect();
        let fi = Family::COUNTED.iter().position(|&f| f == a.family);
        let baseline_rate = fi.map_or(0.0, |fi| {
            if a.attempts > 0 {
                a.expected / a.attempts as f64
            } else {
                self.st
                    .fleet_rate(fi, self.cfg.prior_rates[fi], self.cfg.prior_attempts)
            }
        });
        let remediation = if a.family == Family::Volume {
            text::VOLUME_REMEDIATION
        } else {
            text::remediation(kind)
        };
        let mut inc = Incident {
            id,
            kind,
            scope,
            affected_terminals: affected.len() as u32,
            affected_stores: stores.len() as u32,
            affected_merchants: merchants.len() as u32,
            scope_terminals: a.members.len() as u32,
            evidence: Evidence {
                family: a.family,
                window_ms: a.window_min * MINUTE_MS,
                attempts: a.attempts,
                observed: a.observed,
                expected: a.expected,
                baseline_rate,
                significance: a.significance,
                silent_terminals: a.silent,
                top_codes: top,
                examples,
                rtt_ms: (nq > 0.0).then(|| (rtt / nq, rtt_b / nq)),
                loss_percent: (nq > 0.0).then(|| (loss / nq, loss_b / nq)),
                device: match a.members.as_slice() {
                    &[t] if a.family == Family::TerminalFault
                        && self.st.terms[t as usize].health.run > 0 =>
                    {
                        let h = &self.st.terms[t as usize].health;
                        Some(DeviceReading {
                            temperature_c: h.temp,
                            temperature_baseline_c: h.temp_base,
                            cpu_percent: h.cpu,
                            cpu_baseline_percent: h.cpu_base,
                        })
                    }
                    _ => None,
                },
            },
            started_ms: a.onset.min(now),
            opened_ms: now,
            updated_ms: now,
            resolved_ms: None,
            explanation_en: String::new(),
            explanation_zh: String::new(),
            remediation_en: remediation.iter().map(|r| r.0).collect(),
            remediation_zh: remediation.iter().map(|r| r.1).collect(),
        };
        let (en, zh) = text::explain(&inc);
        inc.explanation_en = en;
        inc.explanation_zh = zh;
        inc
    }

    /// Re-judges every open incident on its own scope; resolves those whose signal is gone.
    fn refresh(&mut self, now: i64) {
        let now_min = now.div_euclid(MINUTE_MS);
        let mut i = 0;
        while i < self.open.len() {
            let o = &self.open[i];
            let fam = o.family;
            let mut update: Option<Anomaly> = None;
            if fam == Family::Silence {
                let silent = o
                    .members
                    .iter()
                    .filter(|&&t| self.missed(t as usize, now) >= 1)
                    .count();
                let n = o.members.len();
                if silent * 10 >= n * 3 || (n <= 3 && silent >= 1) {
                    let o = &mut self.open[i];
                    o.last_active = now;
                    if silent as u32 != o.inc.evidence.silent_terminals
                        && now - o.last_emit >= MINUTE_MS
                    {
                        let mut a = self.anomaly_of(i);
                        a.silent = silent as u32;
                        a.observed = silent as f64;
                        update = Some(a);
                    }
                }
            } else if fam == Family::Volume {
                // Active while the scope's payments stay below half their usual volume.
                let to = now.div_euclid(MINUTE_MS) - 1;
                let g = o
                    .scope_ids
                    .first()
                    .map(|&(d, _)| self.st.terms[o.members[0] as usize].groups[ix(d)] as usize);
                let low = g.is_some_and(|g| {
                    let exp = self.st.groups[g]
                        .vol
                        .as_ref()
                        .and_then(|v| v.expected(to, VOLUME_WINDOW_MIN));
                    let (obs, _) = self.st.window(g, to, VOLUME_WINDOW_MIN);
                    exp.is_some_and(|e| (obs as f64) < 0.5 * e)
                });
                if low {
                    self.open[i].last_active = now;
                }
            } else if let Some(fi) = Family::COUNTED.iter().position(|&f| f == fam) {
                if now - o.last_refresh < 30_000 {
                    i += 1;
                    continue;
                }
                // Activity counts every family of the incident's plane: a misconfigured
                // terminal answers card payments with terminal-config codes and QR payments
                // with merchant-config codes.
                let plane: Vec<usize> = plane_of(fam).collect();
                let single = (o.scope_ids.len() == 1).then(|| {
                    let t0 = o.members[0] as usize;
                    self.st.terms[t0].groups[ix(o.scope_ids[0].0)] as usize
                });
                let (mut att, mut obs, mut exp) = (0u64, 0u64, 0.0);
                let (mut att60, mut obs60, mut exp60) = (0u64, 0u64, 0.0);
                let groups: Vec<usize> = match single {
                    Some(g) if self.st.groups[g].dimset < WINDOWED => vec![g],
                    _ => o
                        .members
                        .iter()
                        .map(|&t| self.st.terms[t as usize].groups[0] as usize)
                        .collect(),
                };
                for g in groups {
                    // An open incident must not become the new normal: its failures stay out
                    // of the baselines of its groups for as long as it is open (and an hour
                    // after), not only while the failure test keeps flagging it (a contained
                    // group is not re-flagged, so its exclusion used to lapse after an hour).
                    for &pf in &plane {
                        let until = &mut self.st.groups[g].excluded_until[pf];
                        *until = (*until).max(now_min + 60);
                    }
                    let [(a, f), (a60, f60), _] =
                        self.st.windows3(g, now_min, [ACTIVE_WINDOW_MIN, 60, 60]);
                    att += a;
                    att60 += a60;
                    for &pf in &plane {
                        obs += f[pf];
                        obs60 += f60[pf];
                        let (pr, pn) = (self.cfg.prior_rates[pf], self.cfg.prior_attempts);
                        let r = self.st.rate(g, pf, pr, pn);
                        exp += a as f64 * r;
                        exp60 += a60 as f64 * r;
                    }
                }
                let s = surprise(obs as f64, exp);
                // A terminal fault stays active while its device is still hot and busy.
                let hot = fam == Family::TerminalFault
                    && o.members.len() == 1
                    && self.device_hot(o.members[0] as usize, now);
                let o = &mut self.open[i];
                if hot {
                    o.last_active = now;
                }
                o.last_refresh = now;
                if att > 0 {
                    o.last_attempt = now;
                }
                if s >= self.cfg.stay_open_significance {
                    o.last_active = now;
                    self.st.fleet_exclusions[fi] = now_min + 60;
                    if now - o.last_emit >= 5 * MINUTE_MS {
                        let mut a = self.anomaly_of(i);
                        a.attempts = att;
                        a.observed = obs as f64;
                        a.expected = exp;
                        a.window_min = ACTIVE_WINDOW_MIN;
                        a.significance = s;
                        update = Some(a);
                    }
                } else if hot || o.open_rate <= 0.0 {
                    // Hot: kept active above. Opened by device health alone (no failures):
                    // the device cooling down is the evidence that it is over.
                } else if att == 0 && now - o.last_attempt < self.cfg.quiet_resolve_ms {
                    // No payments, no evidence either way: keep it open.
                    o.last_active = o.last_active.max(now - self.cfg.resolve_hold_ms / 2);
                } else if att60 > 0
                    && recovery_llr(obs60, att60, exp60, o.open_rate) > -RECOVERY_LOG10
                {
                    // Too few payments in the last hour to tell the incident's rate from
                    // the baseline (a low-rate firmware defect at night): over is not shown.
                    o.last_active = o.last_active.max(now - self.cfg.resolve_hold_ms / 2);
                }
            }
            if let Some(a) = update {
                let o = &self.open[i];
                let mut inc = self.build(now, &a, o.inc.kind, o.inc.id);
                inc.started_ms = o.inc.started_ms;
                inc.opened_ms = o.inc.opened_ms;
                let o = &mut self.open[i];
                o.inc = inc;
                o.last_emit = now;
                self.events.push_back(IncidentEvent::Updated(o.inc.clone()));
            }
            let o = &self.open[i];
            if now - o.last_active >= self.cfg.resolve_hold_ms {
                let mut o = self.open.remove(i);
                o.inc.resolved_ms = Some(now);
                o.inc.updated_ms = now;
                self.events.push_back(IncidentEvent::Resolved(o.inc));
                continue;
            }
            i += 1;
        }
    }

    fn anomaly_of(&self, i: usize) -> Anomaly {
        let o = &self.open[i];
        let e = &o.inc.evidence;
        Anomaly {
            family: o.family,
            scope: o.scope_ids.clone(),
            members: o.members.clone(),
            attempts: e.attempts,
            observed: e.observed,
            expected: e.expected,
            window_min: e.window_ms / MINUTE_MS,
            significance: e.significance,
            silent: e.silent_terminals,
            onset: o.inc.started_ms,
        }
    }
}

#[cfg(test)]
mod tests;
