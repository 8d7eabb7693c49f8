//! `eval`: replays every scenario of a directory through the simulator into the incident engine
//! (`storepulse_collector_core::incident::IncidentEngine`, the one the live collector drives) in
//! virtual time, and scores the incidents against the scenario's ground truth.
//!
//! A detected incident matches a ground-truth incident when its kind and its scope labels are
//! equal (as sets of `key=value`) at some moment between ten minutes before the ground-truth
//! start and an hour after its end. Time to detect is measured from the ground-truth start to
//! that first matching moment; "before the call" compares it with the first merchant call
//! about the incident.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use storepulse_collector_core::detect::{DetectorConfig, IncidentEvent};
use storepulse_collector_core::incident::IncidentEngine;
use storepulse_collector_core::notify::MaintenanceWindow;
use storepulse_shared::{Identity, IncidentKind, Record, RecordBody, TerminalId, taxonomy};
use storepulse_sim::{Announcement, Scenario, Sink};

/// Virtual seconds between two detector ticks.
pub const TICK_MS: i64 = 10_000;
/// A detection may precede the ground-truth start by this much and still match.
const EARLY_MS: i64 = 10 * 60_000;
/// ... and follow its end by this much.
const LATE_MS: i64 = 60 * 60_000;

/// A ground-truth incident: kind, scope pairs, start and end (Unix ms).
type Truth = (IncidentKind, BTreeSet<(String, String)>, i64, i64);

/// One state of a detected incident: when, kind, scope.
#[derive(Debug, Clone)]
struct State {
    time_ms: i64,
    kind: IncidentKind,
    scope: BTreeSet<(String, String)>,
}

/// A detected incident's history.
#[derive(Debug, Clone, Default)]
struct Detected {
    states: Vec<State>,
}

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
    /// Print every incident event on stderr (`STOREPULSE_EVAL_TRACE=1`).
    trace: bool,
}

/// Scores of one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    /// Scenario name.
    pub name: String,
    /// Terminals.
    pub terminals: usize,
    /// Simulated days.
    pub days: f64,
    /// Ground-truth incidents.
    pub truth: usize,
    /// Ground-truth incidents detected (kind and scope).
    pub truth_detected: usize,
    /// Detected incidents.
    pub detected: usize,
    /// Detected incidents that match a ground-truth incident.
    pub detected_matching: usize,
    /// Time to detect per detected ground-truth incident, seconds, from the fault's start.
    pub ttd_secs: Vec<f64>,
    /// The same from the fault's first observable symptom (its first failed payment with an
    /// alertable code, or its first link or device going down), seconds.
    pub ttd_symptom_secs: Vec<f64>,
    /// Ground-truth incidents alerted before their first merchant call (or never called).
    pub before_call: usize,
    /// Per detected ground-truth incident: `kind scope: ttd, call deadline`.
    pub detections: Vec<String>,
    /// Detected incidents matching nothing: `kind scope` text.
    pub false_incidents: Vec<String>,
    /// Ground-truth incidents missed: `kind scope` text.
    pub missed: Vec<String>,
    /// Wall-clock seconds of the replay.
    pub wall_secs: f64,
    /// Records replayed.
    pub records: u64,
}

/// The whole evaluation.
#[derive(Debug, Clone)]
pub struct Report {
    /// Per scenario, in file name order.
    pub scenarios: Vec<ScenarioReport>,
}

impl Adapter {
    /// A symptom of the ground-truth incidents `terminal` is in, if inside their windows.
    fn symptom_at(&mut self, now_ms: i64, terminal: &TerminalId) {
        let Some(incs) = self.in_scope.get(terminal) else {
            return;
        };
        for &i in incs {
            let (start, end) = self.windows[i];
            if now_ms >= start && now_ms <= end && self.symptom[i].is_none() {
                self.symptom[i] = Some(now_ms);
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
                continue;
            }
            let scope = inc
                .scope
                .iter()
                .map(|(d, v)| (d.as_str().to_owned(), v.clone()))
                .collect();
            self.detected.entry(inc.id).or_default().states.push(State {
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

fn scope_text(scope: &BTreeSet<(String, String)>) -> String {
    scope
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

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
        trace: std::env::var_os("STOREPULSE_EVAL_TRACE").is_some_and(|v| v == "1"),
    };
    let stats = storepulse_sim::run(scenario, &mut adapter);
    adapter.advance(scenario.end_ms());
    let wall_secs = started.elapsed().as_secs_f64();
    let calls = scenario.first_calls(&stats.calls);

    let truth: Vec<Truth> = scenario
        .incidents
        .iter()
        .map(|i| {
            let scope = i
                .scope
                .pairs()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_owned()))
                .collect();
            (i.kind, scope, i.start_ms, i.end_ms)
        })
        .collect();
    let matches = |s: &State, t: &Truth| {
        s.kind == t.0 && s.scope == t.1 && s.time_ms >= t.2 - EARLY_MS && s.time_ms <= t.3 + LATE_MS
    };
    let mut report = ScenarioReport {
        name: scenario.name.clone(),
        terminals: scenario.fleet.terminals.len(),
        days: scenario.duration_ms as f64 / 86_400_000.0,
        truth: truth.len(),
        truth_detected: 0,
        detected: adapter.detected.len(),
        detected_matching: 0,
        ttd_secs: Vec::new(),
        ttd_symptom_secs: Vec::new(),
        detections: Vec::new(),
        before_call: 0,
        false_incidents: Vec::new(),
        missed: Vec::new(),
        wall_secs,
        records: stats.records,
    };
    for d in adapter.detected.values() {
        if d.states.iter().any(|s| truth.iter().any(|t| matches(s, t))) {
            report.detected_matching += 1;
        } else if let Some(s) = d.states.last() {
            let at = scenario.format_time(d.states[0].time_ms);
            report
                .false_incidents
                .push(format!("{} {} at {at}", s.kind, scope_text(&s.scope)));
        }
    }
    for (i, t) in truth.iter().enumerate() {
        let first = adapter
            .detected
            .values()
            .flat_map(|d| d.states.iter())
            .filter(|s| matches(s, t))
            .map(|s| s.time_ms)
            .min();
        match first {
            Some(at) => {
                report.truth_detected += 1;
                report.ttd_secs.push((at - t.2) as f64 / 1000.0);
                // No symptom seen before the detection: measure from the fault's start.
                let onset = adapter.symptom[i].filter(|&s| s <= at).unwrap_or(t.2);
                report.ttd_symptom_secs.push((at - onset) as f64 / 1000.0);
                let call = calls.get(i).copied().flatten();
                report.detections.push(format!(
                    "{} {}: detected after {}s ({}s after its first symptom), first call {}",
                    t.0,
                    scope_text(&t.1),
                    (at - t.2) / 1000,
                    (at - onset) / 1000,
                    call.map_or_else(
                        || "none".to_owned(),
                        |c| format!("after {}s", (c - t.2) / 1000)
                    )
                ));
                if calls.get(i).copied().flatten().is_none_or(|c| at < c) {
                    report.before_call += 1;
                }
            }
            None => report.missed.push(format!("{} {}", t.0, scope_text(&t.1))),
        }
    }
    report
}

/// Replays every `*.toml` scenario in `dir`.
pub fn run(dir: &Path) -> anyhow::Result<Report> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no scenario files in {}", dir.display());
    }
    let mut scenarios = Vec::new();
    for f in files {
        let sc = Scenario::from_file(&f).map_err(|e| anyhow::anyhow!("{e}"))?;
        scenarios.push(run_scenario(&sc));
    }
    Ok(Report { scenarios })
}

fn percentile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    // Nearest rank.
    let idx = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    Some(s[idx])
}

/// Aggregate numbers of a set of scenario reports.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Precision of detected incidents.
    pub precision: f64,
    /// Recall of ground-truth incidents.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// False incidents per fleet-day on fault-free scenarios.
    pub false_per_day_fault_free: f64,
    /// Fault-free fleet-days simulated.
    pub fault_free_days: f64,
    /// False incidents per fleet-day over every scenario.
    pub false_per_day_all: f64,
    /// Time to detect, p50 and p95, seconds.
    pub ttd_p50: Option<f64>,
    /// p95.
    pub ttd_p95: Option<f64>,
    /// Time to detect from the first observable symptom, p50 and p95, seconds.
    pub ttd_symptom_p50: Option<f64>,
    /// p95.
    pub ttd_symptom_p95: Option<f64>,
    /// Share of ground-truth incidents alerted before the first merchant call.
    pub before_call_share: f64,
}

/// Sums the reports.
pub fn summarize(rs: &[ScenarioReport]) -> Summary {
    let det: usize = rs.iter().map(|r| r.detected).sum();
    let det_ok: usize = rs.iter().map(|r| r.detected_matching).sum();
    let truth: usize = rs.iter().map(|r| r.truth).sum();
    let truth_ok: usize = rs.iter().map(|r| r.truth_detected).sum();
    let precision = if det == 0 {
        1.0
    } else {
        det_ok as f64 / det as f64
    };
    let recall = if truth == 0 {
        1.0
    } else {
        truth_ok as f64 / truth as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    let free: Vec<&ScenarioReport> = rs.iter().filter(|r| r.truth == 0).collect();
    let free_days: f64 = free.iter().map(|r| r.days).sum();
    let free_fp: usize = free.iter().map(|r| r.false_incidents.len()).sum();
    let all_days: f64 = rs.iter().map(|r| r.days).sum();
    let all_fp: usize = rs.iter().map(|r| r.false_incidents.len()).sum();
    let ttd: Vec<f64> = rs.iter().flat_map(|r| r.ttd_secs.iter().copied()).collect();
    let ttd_symptom: Vec<f64> = rs
        .iter()
        .flat_map(|r| r.ttd_symptom_secs.iter().copied())
        .collect();
    let before: usize = rs.iter().map(|r| r.before_call).sum();
    Summary {
        precision,
        recall,
        f1,
        false_per_day_fault_free: if free_days > 0.0 {
            free_fp as f64 / free_days
        } else {
            0.0
        },
        fault_free_days: free_days,
        false_per_day_all: if all_days > 0.0 {
            all_fp as f64 / all_days
        } else {
            0.0
        },
        ttd_p50: percentile(&ttd, 0.5),
        ttd_p95: percentile(&ttd, 0.95),
        ttd_symptom_p50: percentile(&ttd_symptom, 0.5),
        ttd_symptom_p95: percentile(&ttd_symptom, 0.95),
        before_call_share: if truth == 0 {
            1.0
        } else {
            before as f64 / truth as f64
        },
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.0}s"))
}

/// The report as text.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<48} {:>6} {:>5} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6} {:>5} {:>7}",
        "scenario", "terms", "truth", "det", "P", "R", "F1", "p50", "p95", "call", "wall"
    );
    for r in &report.scenarios {
        let s = summarize(std::slice::from_ref(r));
        let _ = writeln!(
            out,
            "{:<48} {:>6} {:>5} {:>5} {:>5.2} {:>5.2} {:>6.3} {:>6} {:>6} {:>2}/{:<2} {:>6.1}s",
            r.name,
            r.terminals,
            r.truth,
            r.detected,
            s.precision,
            s.recall,
            s.f1,
            opt(s.ttd_p50),
            opt(s.ttd_p95),
            r.before_call,
            r.truth,
            r.wall_secs
        );
        for d in &r.detections {
            let _ = writeln!(out, "    {d}");
        }
        for f in &r.false_incidents {
            let _ = writeln!(out, "    false: {f}");
        }
        for m in &r.missed {
            let _ = writeln!(out, "    missed: {m}");
        }
    }
    let s = summarize(&report.scenarios);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "overall: precision {:.3}  recall {:.3}  F1 {:.3}  (target >= 0.95)",
        s.precision, s.recall, s.f1
    );
    let _ = writeln!(
        out,
        "false incidents per fleet-day on fault-free days: {:.2} over {:.1} days (target <= 0.1); all days: {:.2}",
        s.false_per_day_fault_free, s.fault_free_days, s.false_per_day_all
    );
    let _ = writeln!(
        out,
        "time to detect from the fault's start: p50 {}  p95 {}",
        opt(s.ttd_p50),
        opt(s.ttd_p95)
    );
    let _ = writeln!(
        out,
        "time to detect from its first symptom: p50 {}  p95 {}  (target p95 <= 120s)",
        opt(s.ttd_symptom_p50),
        opt(s.ttd_symptom_p95)
    );
    let _ = writeln!(
        out,
        "alerted before the first merchant call: {:.1}% (target >= 95%)",
        100.0 * s.before_call_share
    );
    out
}

/// The report as JSON.
pub fn render_json(report: &Report) -> Value {
    let per: Vec<Value> = report
        .scenarios
        .iter()
        .map(|r| {
            let s = summarize(std::slice::from_ref(r));
            json!({
                "name": r.name,
                "terminals": r.terminals,
                "days": r.days,
                "truth": r.truth,
                "truth_detected": r.truth_detected,
                "detected": r.detected,
                "detected_matching": r.detected_matching,
                "precision": s.precision,
                "recall": s.recall,
                "f1": s.f1,
                "ttd_secs": r.ttd_secs,
                "ttd_symptom_secs": r.ttd_symptom_secs,
                "before_call": r.before_call,
                "false_incidents": r.false_incidents,
                "missed": r.missed,
                "detections": r.detections,
                "wall_secs": r.wall_secs,
                "records": r.records,
            })
        })
        .collect();
    let s = summarize(&report.scenarios);
    json!({
        "scenarios": per,
        "overall": {
            "precision": s.precision,
            "recall": s.recall,
            "f1": s.f1,
            "false_per_fleet_day_fault_free": s.false_per_day_fault_free,
            "fault_free_days": s.fault_free_days,
            "false_per_fleet_day_all": s.false_per_day_all,
            "ttd_p50_secs": s.ttd_p50,
            "ttd_p95_secs": s.ttd_p95,
            "ttd_symptom_p50_secs": s.ttd_symptom_p50,
            "ttd_symptom_p95_secs": s.ttd_symptom_p95,
            "before_call_share": s.before_call_share,
        }
    })
}
