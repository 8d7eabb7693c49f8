//! eval's report: the summary lines, the tables by fault kind and by fleet class, text and
//! JSON. Scoring is one to one ([`crate::score`]); everything here only counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};
use storepulse_shared::IncidentKind;
use storepulse_sim::FleetClass;

use crate::eval::{FaultResult, Report, ScenarioReport};
use crate::score::Verdict;

/// Nearest-rank percentile.
fn percentile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let idx = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    Some(s[idx])
}

/// Aggregate numbers of a set of scenario reports.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Scenarios.
    pub scenarios: usize,
    /// Ground-truth incidents (faults).
    pub truth: usize,
    /// Faults paired with an incident.
    pub truth_detected: usize,
    /// Detected incidents.
    pub detected: usize,
    /// Detected incidents paired with a fault.
    pub detected_matching: usize,
    /// Precision of detected incidents.
    pub precision: f64,
    /// Recall of ground-truth incidents.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Second incidents for a fault that had one, open together with it.
    pub splits: usize,
    /// Second incidents for a fault whose incident had resolved.
    pub reopens: usize,
    /// False paged incidents on fault-free scenarios.
    pub fault_free_false: usize,
    /// False paged incidents per fleet-day on fault-free scenarios.
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
    /// Faults a merchant called about.
    pub called: usize,
    /// Lead time before the first call, over detected faults that were called, p5 (seconds;
    /// negative: after the call).
    pub lead_p5: Option<f64>,
    /// p50.
    pub lead_p50: Option<f64>,
    /// Detected faults that were called (the lead times' count).
    pub lead_count: usize,
    /// Faults whose incident (paired, split or reopen) stayed open more than 15 minutes after
    /// they ended.
    pub lingering: usize,
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
    let free_fp: usize = free
        .iter()
        .flat_map(|r| &r.incidents)
        .filter(|i| i.paged && !i.verdict.is_match())
        .count();
    let all_days: f64 = rs.iter().map(|r| r.days).sum();
    let all_fp: usize = rs.iter().map(|r| r.false_incidents.len()).sum();
    let ttd: Vec<f64> = rs.iter().flat_map(|r| r.ttd_secs.iter().copied()).collect();
    let ttd_symptom: Vec<f64> = rs
        .iter()
        .flat_map(|r| r.ttd_symptom_secs.iter().copied())
        .collect();
    let faults: Vec<&FaultResult> = rs.iter().flat_map(|r| &r.faults).collect();
    let lead: Vec<f64> = faults.iter().filter_map(|f| f.lead_secs()).collect();
    let before: usize = rs.iter().map(|r| r.before_call).sum();
    Summary {
        scenarios: rs.len(),
        truth,
        truth_detected: truth_ok,
        detected: det,
        detected_matching: det_ok,
        precision,
        recall,
        f1,
        splits: rs.iter().map(|r| r.splits).sum(),
        reopens: rs.iter().map(|r| r.reopens).sum(),
        fault_free_false: free_fp,
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
        called: faults.iter().filter(|f| f.call_ms.is_some()).count(),
        lead_p5: percentile(&lead, 0.05),
        lead_p50: percentile(&lead, 0.5),
        lead_count: lead.len(),
        lingering: faults.iter().filter(|f| f.lingered).count(),
    }
}

/// One row of a breakdown table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Scenarios.
    pub scenarios: usize,
    /// Faults.
    pub faults: usize,
    /// Faults paired with an incident (true positives).
    pub found: usize,
    /// Incidents counted in this row.
    pub incidents: usize,
    /// Of which paired with a fault.
    pub matched: usize,
    /// Fault-free fleet-days.
    pub free_days: f64,
    /// False paged incidents on those days.
    pub free_false: usize,
}

impl Tally {
    /// Precision; `None` without incidents.
    pub fn precision(&self) -> Option<f64> {
        (self.incidents > 0).then(|| self.matched as f64 / self.incidents as f64)
    }

    /// Recall; `None` without faults.
    pub fn recall(&self) -> Option<f64> {
        (self.faults > 0).then(|| self.found as f64 / self.faults as f64)
    }

    /// F1 as 2 TP / (2 TP + FP + FN); `None` with neither faults nor incidents.
    pub fn f1(&self) -> Option<f64> {
        let fp = self.incidents - self.matched;
        let fn_ = self.faults - self.found;
        let d = 2 * self.found + fp + fn_;
        (d > 0).then(|| 2.0 * self.found as f64 / d as f64)
    }

    fn add_scenario(&mut self, r: &ScenarioReport) {
        self.scenarios += 1;
        self.faults += r.truth;
        self.found += r.truth_detected;
        self.incidents += r.detected;
        self.matched += r.detected_matching;
        if r.truth == 0 {
            self.free_days += r.days;
            self.free_false += r
                .incidents
                .iter()
                .filter(|i| i.paged && !i.verdict.is_match())
                .count();
        }
    }
}

/// Per incident kind: a fault counts under its kind, an incident under its fault's kind when
/// paired and under the kind on-call last saw otherwise.
pub fn by_kind(rs: &[ScenarioReport]) -> Vec<(IncidentKind, Tally)> {
    let mut rows: BTreeMap<usize, Tally> = BTreeMap::new();
    let pos = |k: IncidentKind| IncidentKind::ALL.iter().position(|x| *x == k).unwrap_or(0);
    for r in rs {
        for f in r.faults.iter().filter(|f| f.scored) {
            let t = rows.entry(pos(f.kind)).or_default();
            t.faults += 1;
            t.found += usize::from(f.detected_ms.is_some());
        }
        for i in &r.incidents {
            let t = rows.entry(pos(i.kind)).or_default();
            t.incidents += 1;
            t.matched += usize::from(i.verdict.is_match());
        }
    }
    rows.into_iter()
        .map(|(p, t)| (IncidentKind::ALL[p], t))
        .collect()
}

/// Per fleet class (`shape`, `size` or `cadence`), in [`FleetClass`]'s order.
pub fn by_class(rs: &[ScenarioReport], dimension: &str) -> Vec<(&'static str, Tally)> {
    let (order, key): (&[&'static str], fn(&FleetClass) -> &'static str) = match dimension {
        "shape" => (&FleetClass::SHAPES, |c| c.shape),
        "size" => (&FleetClass::SIZES, |c| c.size),
        _ => (&FleetClass::CADENCES, |c| c.cadence),
    };
    order
        .iter()
        .filter_map(|name| {
            let mut t = Tally::default();
            for r in rs.iter().filter(|r| key(&r.class) == *name) {
                t.add_scenario(r);
            }
            (t.scenarios > 0).then_some((*name, t))
        })
        .collect()
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.0}s"))
}

fn ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.3}"))
}

/// One table row; `class_row`: a fleet class (with its scenario count and its false rate on
/// fault-free days), else a kind (neither: a fault of one kind is not a scenario).
fn tally_row(out: &mut String, name: &str, t: &Tally, class_row: bool) {
    let scenarios = if class_row {
        t.scenarios.to_string()
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "  {:<22} {:>6} {:>6} {:>6} {:>9} {:>6} {:>6} {:>6}",
        name,
        scenarios,
        t.faults,
        t.found,
        t.incidents,
        ratio(t.precision()),
        ratio(t.recall()),
        ratio(t.f1())
    );
    if class_row {
        let _ = write!(
            out,
            " {:>10}",
            if t.free_days > 0.0 {
                format!(
                    "{:.2}/{:.1}",
                    t.free_false as f64 / t.free_days,
                    t.free_days
                )
            } else {
                "-".to_owned()
            }
        );
    }
    out.push('\n');
}

/// The breakdown tables as text.
pub fn render_tables(rs: &[ScenarioReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "by fault kind            {:>6} {:>6} {:>6} {:>9} {:>6} {:>6} {:>6}",
        "", "faults", "found", "incidents", "P", "R", "F1"
    );
    for (k, t) in by_kind(rs) {
        tally_row(&mut out, k.as_str(), &t, false);
    }
    for dim in ["shape", "size", "cadence"] {
        let _ = writeln!(
            out,
            "by fleet {dim:<15} {:>6} {:>6} {:>6} {:>9} {:>6} {:>6} {:>6} {:>10}",
            "scen.", "faults", "found", "incidents", "P", "R", "F1", "free FP/d"
        );
        for (name, t) in by_class(rs, dim) {
            tally_row(&mut out, name, &t, true);
        }
    }
    out
}

/// The report as text.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<48} {:>6} {:>5} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6} {:>5} {:>5} {:>7}",
        "scenario", "terms", "truth", "det", "P", "R", "F1", "p50", "p95", "call", "split", "wall"
    );
    for r in &report.scenarios {
        let s = summarize(std::slice::from_ref(r));
        let _ = writeln!(
            out,
            "{:<48} {:>6} {:>5} {:>5} {:>5.2} {:>5.2} {:>6.3} {:>6} {:>6} {:>2}/{:<2} {:>5} {:>6.1}s",
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
            r.splits + r.reopens,
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
        for u in &r.unobservable {
            let _ = writeln!(out, "    not scored: {u}");
        }
        for l in &r.lingering {
            let _ = writeln!(out, "    lingered: {l}");
        }
    }
    let s = summarize(&report.scenarios);
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", render_tables(&report.scenarios));
    let unscored: usize = report.scenarios.iter().map(|r| r.unobservable.len()).sum();
    let _ = writeln!(
        out,
        "faults not scored: {unscored} (missed with fewer than {} symptoms in their window: nothing to detect)",
        crate::eval::MIN_SYMPTOMS
    );
    let _ = writeln!(
        out,
        "overall: precision {:.3}  recall {:.3}  F1 {:.3}  (target >= 0.95; one-to-one: {} of {} faults found, {} of {} incidents paired)",
        s.precision, s.recall, s.f1, s.truth_detected, s.truth, s.detected_matching, s.detected
    );
    let _ = writeln!(
        out,
        "splits: {} (second incidents for a fault that had one, counted false; {} of them reopened after it resolved)",
        s.splits + s.reopens,
        s.reopens
    );
    let _ = writeln!(
        out,
        "false paged incidents per fleet-day on fault-free days: {:.2} ({} over {:.1} days; target <= 0.1); all days: {:.2}",
        s.false_per_day_fault_free, s.fault_free_false, s.fault_free_days, s.false_per_day_all
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
    let _ = writeln!(
        out,
        "lead time before the first merchant call: p5 {}  p50 {}  ({} detected faults of {} called)",
        opt(s.lead_p5),
        opt(s.lead_p50),
        s.lead_count,
        s.called
    );
    let _ = writeln!(
        out,
        "incidents open more than 15 min after their fault ended: {} (target 0)",
        s.lingering
    );
    let _ = writeln!(
        out,
        "wall time: {:.1}s for {} scenarios ({}) on {} threads",
        report.wall_secs,
        report.scenarios.len(),
        report.source,
        report.jobs
    );
    out
}

fn verdict_json(v: Verdict) -> (&'static str, Option<usize>) {
    match v {
        Verdict::Matched { fault, .. } => ("matched", Some(fault)),
        Verdict::Split { fault } => ("split", Some(fault)),
        Verdict::Reopen { fault } => ("reopen", Some(fault)),
        Verdict::Unrelated => ("unrelated", None),
    }
}

fn tally_json(t: &Tally) -> Value {
    json!({
        "scenarios": t.scenarios,
        "faults": t.faults,
        "found": t.found,
        "incidents": t.incidents,
        "matched": t.matched,
        "precision": t.precision(),
        "recall": t.recall(),
        "f1": t.f1(),
        "fault_free_days": t.free_days,
        "fault_free_false": t.free_false,
    })
}

/// One scenario as JSON.
pub fn scenario_json(r: &ScenarioReport) -> Value {
    let s = summarize(std::slice::from_ref(r));
    let faults: Vec<Value> = r
        .faults
        .iter()
        .map(|f| {
            json!({
                "kind": f.kind.as_str(),
                "scope": f.scope,
                "start_ms": f.start_ms,
                "end_ms": f.end_ms,
                "incident": f.incident,
                "detected_after_secs": f.ttd_secs(),
                "after_symptom_secs": f.ttd_symptom_secs(),
                "call_after_secs": f.call_ms.map(|c| (c - f.start_ms) as f64 / 1000.0),
                "lead_secs": f.lead_secs(),
                "before_call": f.before_call(),
                "lingered": f.lingered,
            })
        })
        .collect();
    let incidents: Vec<Value> = r
        .incidents
        .iter()
        .map(|i| {
            let (verdict, fault) = verdict_json(i.verdict);
            json!({
                "id": i.id,
                "kind": i.kind.as_str(),
                "last_kind": i.last_kind.as_str(),
                "scope": i.scope,
                "opened_ms": i.opened_ms,
                "resolved_ms": i.resolved_ms,
                "paged": i.paged,
                "verdict": verdict,
                "fault": fault,
            })
        })
        .collect();
    json!({
        "name": r.name,
        "seed": r.seed,
        "shape": r.class.shape,
        "size": r.class.size,
        "cadence": r.class.cadence,
        "terminals": r.terminals,
        "days": r.days,
        "truth": r.truth,
        "truth_detected": r.truth_detected,
        "not_scored": r.unobservable,
        "detected": r.detected,
        "detected_matching": r.detected_matching,
        "precision": s.precision,
        "recall": s.recall,
        "f1": s.f1,
        "splits": r.splits,
        "reopens": r.reopens,
        "ttd_secs": r.ttd_secs,
        "ttd_symptom_secs": r.ttd_symptom_secs,
        "before_call": r.before_call,
        "false_incidents": r.false_incidents,
        "missed": r.missed,
        "lingering": r.lingering,
        "detections": r.detections,
        "faults": faults,
        "incidents": incidents,
        "wall_secs": r.wall_secs,
        "records": r.records,
    })
}

/// The report as JSON.
pub fn render_json(report: &Report) -> Value {
    let per: Vec<Value> = report.scenarios.iter().map(scenario_json).collect();
    let s = summarize(&report.scenarios);
    let kinds: serde_json::Map<String, Value> = by_kind(&report.scenarios)
        .iter()
        .map(|(k, t)| (k.as_str().to_owned(), tally_json(t)))
        .collect();
    let mut classes = serde_json::Map::new();
    for dim in ["shape", "size", "cadence"] {
        let rows: serde_json::Map<String, Value> = by_class(&report.scenarios, dim)
            .iter()
            .map(|(n, t)| ((*n).to_owned(), tally_json(t)))
            .collect();
        classes.insert(dim.to_owned(), Value::Object(rows));
    }
    json!({
        "source": report.source,
        "scenarios": per,
        "overall": {
            "scenarios": s.scenarios,
            "truth": s.truth,
            "truth_detected": s.truth_detected,
            "detected": s.detected,
            "detected_matching": s.detected_matching,
            "precision": s.precision,
            "recall": s.recall,
            "f1": s.f1,
            "splits": s.splits,
            "reopens": s.reopens,
            "false_per_fleet_day_fault_free": s.false_per_day_fault_free,
            "fault_free_false": s.fault_free_false,
            "fault_free_days": s.fault_free_days,
            "false_per_fleet_day_all": s.false_per_day_all,
            "ttd_p50_secs": s.ttd_p50,
            "ttd_p95_secs": s.ttd_p95,
            "ttd_symptom_p50_secs": s.ttd_symptom_p50,
            "ttd_symptom_p95_secs": s.ttd_symptom_p95,
            "before_call_share": s.before_call_share,
            "called": s.called,
            "lead_p5_secs": s.lead_p5,
            "lead_p50_secs": s.lead_p50,
            "lead_count": s.lead_count,
            "lingering": s.lingering,
            "by_kind": kinds,
            "by_fleet": classes,
            "wall_secs": report.wall_secs,
            "jobs": report.jobs,
        }
    })
}
