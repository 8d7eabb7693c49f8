//! `eval`: replays scenarios (every `*.toml` of a directory, or generated ones from a seed)
//! through the simulator into the incident engine
//! (`storepulse_collector_core::incident::IncidentEngine`, the one the live collector drives) in
//! virtual time, and scores the incidents against each scenario's ground truth, one to one
//! ([`crate::score`]: kind and scope equal at some moment between ten minutes before the
//! fault's start and an hour after its end; each fault pairs with at most one incident and
//! each incident with at most one fault; a second incident for a fault is a false one).
//!
//! Time to detect is measured from the fault's start (and from its first observable symptom)
//! to the first moment its paired incident showed it; "before the call" compares that moment
//! with the first merchant call about the fault. The report and its tables are in
//! [`crate::report`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use storepulse_collector_core::detect::{DetectorConfig, IncidentEvent};
use storepulse_collector_core::incident::IncidentEngine;
use storepulse_collector_core::notify::MaintenanceWindow;
use storepulse_shared::{Identity, IncidentKind, Record, RecordBody, TerminalId, taxonomy};
use storepulse_sim::{Announcement, FleetClass, Scenario, Sink};

pub use crate::report::{Summary, render_json, render_text, summarize};
use crate::score::{self, Detected, ScopeSet, State, TrueFault, Verdict};

/// Virtual seconds between two detector ticks.
pub const TICK_MS: i64 = 10_000;

/// The simulator's sink: forwards to the incident engine (the live collector's) and ticks it
/// on the virtual clock.
#[derive(Debug)]
struct Adapter {
    engine: IncidentEngine,
    /// Announcements seen (their window ids).
    announced: usize,
    next_tick: i64,
    detected: BTreeMap<u64, Detected>,
    /// Per terminal in some ground-truth scope: the indexes of those incidents.
    in_scope: HashMap<TerminalId, Vec<usize>>,
    /// Per ground-truth incident: `(start, end)`, and its first observable symptom.
    windows: Vec<(i64, i64)>,
    symptom: Vec<Option<i64>>,
    /// Per ground-truth incident: symptoms seen in its window (failed payments and links going
    /// down of its terminals), to tell a missed fault from one that showed nothing.
    symptoms: Vec<u32>,
    /// Print every incident event on stderr (`STOREPULSE_EVAL_TRACE=1`).
    trace: bool,
}

/// What became of one true fault.
#[derive(Debug, Clone)]
pub struct FaultResult {
    /// Incident kind.
    pub kind: IncidentKind,
    /// Scope as `key=value,...`.
    pub scope: String,
    /// Start and end, Unix ms.
    pub start_ms: i64,
    /// End.
    pub end_ms: i64,
    /// The first moment its paired incident showed it; `None`: missed.
    pub detected_ms: Option<i64>,
    /// The paired incident's id.
    pub incident: Option<u64>,
    /// Its first observable symptom (its first failed payment with an alertable code, or its
    /// first link or device going down) inside its window.
    pub symptom_ms: Option<i64>,
    /// The first merchant call about it.
    pub call_ms: Option<i64>,
    /// Its incident (paired, split or reopened) stayed open more than 15 minutes after it
    /// ended.
    pub lingered: bool,
    /// Counted in the scores: false for a fault missed with fewer than [`MIN_SYMPTOMS`]
    /// symptoms (listed as not scored).
    pub scored: bool,
}

impl FaultResult {
    /// Seconds from its start to detection.
    pub fn ttd_secs(&self) -> Option<f64> {
        self.detected_ms
            .map(|at| (at - self.start_ms) as f64 / 1000.0)
    }

    /// Seconds from its first symptom to detection (from its start when detection came
    /// before any symptom: a hot device found by its heartbeats).
    pub fn ttd_symptom_secs(&self) -> Option<f64> {
        self.detected_ms.map(|at| {
            let onset = self
                .symptom_ms
                .filter(|&s| s <= at)
                .unwrap_or(self.start_ms);
            (at - onset) as f64 / 1000.0
        })
    }

    /// Seconds between detection and the first merchant call (negative: after the call);
    /// `None` when missed or never called.
    pub fn lead_secs(&self) -> Option<f64> {
        Some((self.call_ms? - self.detected_ms?) as f64 / 1000.0)
    }

    /// Detected before its first merchant call (or detected and never called).
    pub fn before_call(&self) -> bool {
        self.detected_ms
            .is_some_and(|at| self.call_ms.is_none_or(|c| at < c))
    }
}

/// What one detected incident counted as.
#[derive(Debug, Clone)]
pub struct IncidentResult {
    /// The engine's id.
    pub id: u64,
    /// Its kind as scored: its fault's when paired, else the last one on-call saw.
    pub kind: IncidentKind,
    /// Its kind as on-call last saw it.
    pub last_kind: IncidentKind,
    /// Its last scope as `key=value,...`.
    pub scope: String,
    /// Opened, Unix ms.
    pub opened_ms: i64,
    /// Resolved, Unix ms; `None`: still open when the run ended.
    pub resolved_ms: Option<i64>,
    /// Paged on-call. Every incident pages today (there is no suspected tier yet).
    pub paged: bool,
    /// Matched, split, reopen or unrelated.
    pub verdict: Verdict,
}

/// Scores of one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    /// Scenario name.
    pub name: String,
    /// Its seed when generated.
    pub seed: Option<u64>,
    /// Fleet shape, size and cadence classes.
    pub class: FleetClass,
    /// Terminals.
    pub terminals: usize,
    /// Simulated days.
    pub days: f64,
    /// Ground-truth incidents.
    pub truth: usize,
    /// Ground-truth incidents detected (paired with an incident).
    pub truth_detected: usize,
    /// Detected incidents.
    pub detected: usize,
    /// Detected incidents paired with a ground-truth incident.
    pub detected_matching: usize,
    /// Time to detect per detected ground-truth incident, seconds, from the fault's start.
    pub ttd_secs: Vec<f64>,
    /// The same from the fault's first observable symptom, seconds.
    pub ttd_symptom_secs: Vec<f64>,
    /// Ground-truth incidents alerted before their first merchant call (or never called).
    pub before_call: usize,
    /// Per detected ground-truth incident: `kind scope: ttd, call deadline`.
    pub detections: Vec<String>,
    /// Detected incidents that count as false (unrelated, split or reopen): text.
    pub false_incidents: Vec<String>,
    /// Ground-truth incidents missed: `kind scope` text.
    pub missed: Vec<String>,
    /// Ground-truth incidents not detected and left out of the scoring: fewer than
    /// [`MIN_SYMPTOMS`] symptoms in their window, nothing to detect. (Detected, such a fault
    /// counts like any other: a hot device is found by its heartbeats before any payment.)
    pub unobservable: Vec<String>,
    /// Second incidents for a fault that already had one, open at the same time.
    pub splits: usize,
    /// Second incidents for a fault whose incident had resolved.
    pub reopens: usize,
    /// Incidents open more than 15 minutes after their fault ended: text.
    pub lingering: Vec<String>,
    /// Per ground-truth incident, in the scenario's order.
    pub faults: Vec<FaultResult>,
    /// Per detected incident, by id.
    pub incidents: Vec<IncidentResult>,
    /// Wall-clock seconds of the replay.
    pub wall_secs: f64,
    /// Records replayed.
    pub records: u64,
}

/// The whole evaluation.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was evaluated: a directory or a seed range.
    pub source: String,
    /// Per scenario, in file name (or seed) order.
    pub scenarios: Vec<ScenarioReport>,
    /// Wall-clock seconds of the whole evaluation.
    pub wall_secs: f64,
    /// Scenarios replayed at once.
    pub jobs: usize,
}

impl Adapter {
    /// A symptom of the ground-truth incidents `terminal` is in, if inside their windows.
    fn symptom_at(&mut self, now_ms: i64, terminal: &TerminalId) {
        let Some(incs) = self.in_scope.get(terminal) else {
            return;
        };
        for &i in incs {
            let (start, end) = self.windows[i];
            if now_ms >= start && now_ms <= end {
                self.symptoms[i] = self.symptoms[i].saturating_add(1);
                if self.symptom[i].is_none() {
                    self.symptom[i] = Some(now_ms);
                }
            }
        }
    }
}

impl Sink for Adapter {
    fn observed(&mut self, now_ms: i64, terminal: &TerminalId, body: &RecordBody) {
        // The first payment a fault makes fail (the taxonomy's failure rule; cardholder and
        // risk declines are the customer's) is the earliest moment data can show it.
        if let RecordBody::TxnOutcome(tx) = body
            && taxonomy::classify(tx.scheme, &tx.code).failure().is_some()
        {
            self.symptom_at(now_ms, terminal);
        }
    }

    fn link_changed(&mut self, now_ms: i64, terminal: &TerminalId, up: bool) {
        // A link (or a device) going down is visible as missing heartbeats from then on.
        if !up {
            self.symptom_at(now_ms, terminal);
        }
    }

    fn hello(&mut self, now_ms: i64, identity: &Identity, _spool_epoch: u64) {
        self.advance(now_ms);
        self.engine.handle_hello(now_ms, identity);
    }

    fn record(&mut self, arrival_ms: i64, terminal: &TerminalId, _epoch: u64, record: &Record) {
        self.advance(arrival_ms);
        self.engine.handle_record(arrival_ms, terminal, record);
        // As the live collector does: a run that just became decisive is judged at once.
        if self.engine.wants_tick() {
            self.engine.handle_tick(arrival_ms);
            self.drain(arrival_ms);
        }
    }

    fn announcement(&mut self, now_ms: i64, a: &Announcement) {
        self.advance(now_ms);
        self.engine
            .handle_maintenance(now_ms, &maintenance_window(a, self.announced));
        self.announced += 1;
    }
}

impl Adapter {
    fn advance(&mut self, now_ms: i64) {
        while self.next_tick <= now_ms {
            let t = self.next_tick;
            self.engine.handle_tick(t);
            self.drain(t);
            self.next_tick += TICK_MS;
        }
    }

    fn drain(&mut self, t: i64) {
        // What on-call would be sent is not scored here (the alert tests judge it).
        while self.engine.poll_alert().is_some() {}
        while let Some(ev) = self.engine.poll_event() {
            let (inc, resolved) = match ev {
                IncidentEvent::Opened(i) | IncidentEvent::Updated(i) => (i, false),
                IncidentEvent::Resolved(i) => (i, true),
            };
            if self.trace {
                // STOREPULSE_EVAL_TRACE=1: every incident event on stderr, for debugging.
                eprintln!(
                    "{} {:>6} {} {} {}",
                    t / 1000,
                    inc.id,
                    if resolved { "resolved" } else { "open/update" },
                    inc.kind.as_str(),
                    inc.scope_text()
                );
            }
            if resolved {
                if let Some(d) = self.detected.get_mut(&inc.id) {
                    d.resolved_ms = Some(t);
                }
                continue;
            }
            let scope = inc
                .scope
                .iter()
                .map(|(d, v)| (d.as_str().to_owned(), v.clone()))
                .collect();
            let d = self.detected.entry(inc.id).or_insert_with(|| Detected {
                id: inc.id,
                states: Vec::new(),
                resolved_ms: None,
            });
            d.resolved_ms = None;
            d.states.push(State {
                time_ms: t,
                kind: inc.kind,
                scope,
            });
        }
    }
}

/// A scenario's maintenance announcement as the notifier (and the engine) take it; `n` makes
/// its id unique within the run.
pub fn maintenance_window(a: &Announcement, n: usize) -> MaintenanceWindow {
    MaintenanceWindow {
        id: format!("scenario-{n}"),
        scope: a
            .scope
            .pairs()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_owned()))
            .collect(),
        starts_at_ms: a.start_ms,
        ends_at_ms: a.end_ms,
        announcement: "planned maintenance / 计划维护".into(),
    }
}

fn scope_text(scope: &ScopeSet) -> String {
    scope
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Symptoms (failed payments of the fault's terminals, links going down) a missed fault must
/// have shown in its window to count as missed: with none or one there was nothing any
/// detector could tell from noise.
pub const MIN_SYMPTOMS: u32 = 2;

/// Replays one scenario and scores it.
pub fn run_scenario(scenario: &Scenario) -> ScenarioReport {
    let started = Instant::now();
    let mut in_scope: HashMap<TerminalId, Vec<usize>> = HashMap::new();
    for term in &scenario.fleet.terminals {
        for (i, inc) in scenario.incidents.iter().enumerate() {
            if inc.scope.pairs().all(|(k, v)| term.identity.label(k) == v) {
                in_scope
                    .entry(term.identity.terminal_id.clone())
                    .or_default()
                    .push(i);
            }
        }
    }
    // The detector assumes the heartbeat interval the fleet was told, as the live one assumes
    // `[agents] heartbeat_interval_secs`: here the scenario's.
    let config = DetectorConfig {
        heartbeat_interval_ms: i64::from(scenario.heartbeat_interval_secs) * 1000,
        ..DetectorConfig::default()
    };
    let mut adapter = Adapter {
        engine: IncidentEngine::new(config),
        announced: 0,
        next_tick: scenario.start_ms,
        detected: BTreeMap::new(),
        in_scope,
        windows: scenario
            .incidents
            .iter()
            .map(|i| (i.start_ms, i.end_ms))
            .collect(),
        symptom: vec![None; scenario.incidents.len()],
        symptoms: vec![0; scenario.incidents.len()],
        trace: std::env::var_os("STOREPULSE_EVAL_TRACE").is_some_and(|v| v == "1"),
    };
    let stats = storepulse_sim::run(scenario, &mut adapter);
    let end_ms = scenario.end_ms();
    adapter.advance(end_ms);
    let wall_secs = started.elapsed().as_secs_f64();
    let calls = scenario.first_calls(&stats.calls);

    let truth: Vec<TrueFault> = scenario
        .incidents
        .iter()
        .map(|i| TrueFault {
            kind: i.kind,
            scope: i
                .scope
                .pairs()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_owned()))
                .collect(),
            start_ms: i.start_ms,
            end_ms: i.end_ms,
        })
        .collect();
    let adapter_symptoms = adapter.symptoms.clone();
    let detected: Vec<Detected> = adapter.detected.into_values().collect();
    let m = score::match_one_to_one(&truth, &detected);

    let mut faults: Vec<FaultResult> = truth
        .iter()
        .enumerate()
        .map(|(i, t)| FaultResult {
            kind: t.kind,
            scope: scope_text(&t.scope),
            start_ms: t.start_ms,
            end_ms: t.end_ms,
            detected_ms: m.faults[i].map(|(_, at)| at),
            incident: m.faults[i].map(|(d, _)| detected[d].id),
            symptom_ms: adapter.symptom[i],
            call_ms: calls.get(i).copied().flatten(),
            lingered: false,
            scored: true,
        })
        .collect();
    let mut incidents = Vec::new();
    let mut false_incidents = Vec::new();
    let mut lingering = Vec::new();
    for (d, v) in detected.iter().zip(&m.incidents) {
        let last = d.states.last();
        let kind = match v {
            Verdict::Matched { fault, .. } => truth[*fault].kind,
            _ => d.last_kind().unwrap_or(IncidentKind::Unknown),
        };
        let scope = last.map(|s| scope_text(&s.scope)).unwrap_or_default();
        let at = scenario.format_time(d.opened_ms());
        if let Some(f) = v.fault()
            && score::lingered(d, &truth[f], end_ms)
        {
            faults[f].lingered = true;
            let last_kind = d.last_kind().unwrap_or(IncidentKind::Unknown);
            lingering.push(format!(
                "{} {}: incident {} opened {at} (last seen as {last_kind} {scope}) {}",
                truth[f].kind,
                scope_text(&truth[f].scope),
                d.id,
                d.resolved_ms.map_or_else(
                    || format!(
                        "still open at the end, {} min after the fault ended",
                        (end_ms - truth[f].end_ms) / 60_000
                    ),
                    |r| format!(
                        "resolved {} min after the fault ended",
                        (r - truth[f].end_ms) / 60_000
                    )
                )
            ));
        }
        match v {
            Verdict::Matched { .. } => {}
            Verdict::Split { fault } | Verdict::Reopen { fault } => {
                let what = if matches!(v, Verdict::Split { .. }) {
                    "split"
                } else {
                    "reopen"
                };
                false_incidents.push(format!(
                    "{kind} {scope} at {at} ({what}: {} {} already had an incident)",
                    truth[*fault].kind,
                    scope_text(&truth[*fault].scope)
                ));
            }
            Verdict::Unrelated => false_incidents.push(format!("{kind} {scope} at {at}")),
        }
        incidents.push(IncidentResult {
            id: d.id,
            kind,
            last_kind: d.last_kind().unwrap_or(IncidentKind::Unknown),
            scope,
            opened_ms: d.opened_ms(),
            resolved_ms: d.resolved_ms,
            paged: true,
            verdict: *v,
        });
    }
    let mut detections = Vec::new();
    let mut missed = Vec::new();
    let mut unobservable = Vec::new();
    for (i, f) in faults.iter_mut().enumerate() {
        match (f.detected_ms, f.ttd_symptom_secs()) {
            (Some(at), Some(from_symptom)) => detections.push(format!(
                "{} {}: detected after {}s ({}s after its first symptom), first call {}{}",
                f.kind,
                f.scope,
                (at - f.start_ms) / 1000,
                from_symptom.round(),
                f.call_ms.map_or_else(
                    || "none".to_owned(),
                    |c| format!("after {}s", (c - f.start_ms) / 1000)
                ),
                if f.before_call() { "" } else { " (late)" }
            )),
            _ if adapter_symptoms[i] < MIN_SYMPTOMS => {
                f.scored = false;
                unobservable.push(format!(
                    "{} {} ({} symptoms in its window)",
                    f.kind, f.scope, adapter_symptoms[i]
                ));
            }
            _ => missed.push(format!(
                "{} {} ({} symptoms in its window)",
                f.kind, f.scope, adapter_symptoms[i]
            )),
        }
    }
    ScenarioReport {
        name: scenario.name.clone(),
        seed: None,
        class: FleetClass::of(&scenario.fleet),
        terminals: scenario.fleet.terminals.len(),
        days: scenario.duration_ms as f64 / 86_400_000.0,
        truth: truth.len() - unobservable.len(),
        truth_detected: m.matched(),
        detected: detected.len(),
        detected_matching: m.incidents.iter().filter(|v| v.is_match()).count(),
        ttd_secs: faults.iter().filter_map(FaultResult::ttd_secs).collect(),
        ttd_symptom_secs: faults
            .iter()
            .filter_map(FaultResult::ttd_symptom_secs)
            .collect(),
        before_call: faults.iter().filter(|f| f.before_call()).count(),
        detections,
        false_incidents,
        missed,
        unobservable,
        splits: m
            .incidents
            .iter()
            .filter(|v| matches!(v, Verdict::Split { .. }))
            .count(),
        reopens: m
            .incidents
            .iter()
            .filter(|v| matches!(v, Verdict::Reopen { .. }))
            .count(),
        lingering,
        faults,
        incidents,
        wall_secs,
        records: stats.records,
    }
}

/// A scenario's replay cost, roughly the records it makes: terminal-hours weighted by
/// heartbeat rate (payments and network samples come on top, at similar rates everywhere).
fn cost(sc: &Scenario) -> f64 {
    let per_hour: f64 = sc
        .fleet
        .terminals
        .iter()
        .map(|t| 3600.0 / f64::from(t.heartbeat_interval_secs.max(1)) + 20.0)
        .sum();
    per_hour * sc.duration_ms as f64 / 3_600_000.0
}

/// Replays the scenarios `load` makes of `items` on `jobs` threads; results in the items'
/// order, the first error in that order wins. Each scenario is loaded twice (once to weigh
/// it, once to replay it) so that only the ones being replayed are in memory. The heaviest
/// start first (longest processing time first): a few large fleets dominate a generated set,
/// and started last they would leave one core idle at the end.
fn run_parallel<T: Sync>(
    items: &[T],
    jobs: usize,
    load: impl Fn(&T) -> anyhow::Result<Scenario> + Sync,
) -> anyhow::Result<Vec<ScenarioReport>> {
    let mut order: Vec<(f64, usize)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        order.push((cost(&load(item)?), i));
    }
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<anyhow::Result<ScenarioReport>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(_, i)) = order.get(k) else { break };
                    let r = load(&items[i]).map(|sc| run_scenario(&sc));
                    // A worker that panicked poisons the lock; the others still store theirs.
                    let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
                    slots[i] = Some(r);
                }
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| bail!("a replay thread panicked")))
        .collect()
}

/// The number of replays to run at once: the cores available.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Replays every `*.toml` scenario in `dir`, `jobs` at once.
pub fn run(dir: &Path, jobs: usize) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no scenario files in {}", dir.display());
    }
    let scenarios = run_parallel(&files, jobs, |f| {
        Scenario::from_file(f).map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    Ok(Report {
        source: dir.display().to_string(),
        scenarios,
        wall_secs: started.elapsed().as_secs_f64(),
        jobs,
    })
}

/// Generates and replays the `count` scenarios of seeds `seed`, `seed + 1`, ..., `jobs` at once.
pub fn run_generated(count: u64, seed: u64, jobs: usize) -> anyhow::Result<Report> {
    if count == 0 {
        bail!("--generate needs at least one scenario");
    }
    let Some(last) = seed.checked_add(count - 1) else {
        bail!("seeds {seed} + {count} overflow");
    };
    let seeds: Vec<u64> = (seed..=last).collect();
    let mut report = run_seeds(&seeds, jobs)?;
    report.source = format!("generated seeds {seed}..={last}");
    Ok(report)
}

/// Generates and replays the scenarios of `seeds`, `jobs` at once, in the seeds' order.
pub fn run_seeds(seeds: &[u64], jobs: usize) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut scenarios = run_parallel(seeds, jobs, |&s| {
        let g = storepulse_sim::generate::generate(s);
        Scenario::parse(&storepulse_sim::generate::file_name(s), &g.text)
            .map_err(|e| anyhow::anyhow!("generated seed {s}: {e}"))
    })?;
    for (r, &s) in scenarios.iter_mut().zip(seeds) {
        r.seed = Some(s);
    }
    Ok(Report {
        source: format!("{} generated seeds", seeds.len()),
        scenarios,
        wall_secs: started.elapsed().as_secs_f64(),
        jobs,
    })
}
