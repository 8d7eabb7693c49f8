//! CI smoke test of `eval --generate`: a few small generated scenarios replayed through the
//! detector, checking that the report is well formed and that the one-to-one scorer's
//! invariants hold. Deliberately no threshold on detection quality (that is BENCHMARKS.md's
//! job, on hundreds of scenarios): a detector change must not make this flaky.

use std::collections::HashMap;

use storepulse_lab::eval::{self, Report};
use storepulse_lab::score::{EARLY_MS, LATE_MS, Verdict};

/// Terminal-hours a smoke scenario may have (debug build: a few seconds each).
const BUDGET: u64 = 3_000;

/// `(terminals, hours, ground-truth incidents)` read off a generated file's text.
fn size_of(text: &str) -> (u64, u64, usize) {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().trim_matches('"').trim_end_matches('h'))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    (
        value("terminals = "),
        value("duration = "),
        text.matches("[[incident]]").count(),
    )
}

/// The first small seeds of the development range: five with faults (at least five faults
/// between them) and two fault-free. Chosen by size, not by outcome, so the set follows the
/// generator when it changes.
fn smoke_seeds() -> Vec<u64> {
    let (mut with, mut free, mut faults) = (Vec::new(), Vec::new(), 0);
    for seed in 1..=2_000u64 {
        let g = storepulse_sim::generate::generate(seed);
        let (terms, hours, incidents) = size_of(&g.text);
        if terms.saturating_mul(hours) > BUDGET {
            continue;
        }
        if incidents == 0 && free.len() < 2 {
            free.push(seed);
        } else if incidents > 0 && with.len() < 5 {
            with.push(seed);
            faults += incidents;
        }
        if with.len() == 5 && free.len() == 2 && faults >= 5 {
            break;
        }
    }
    assert!(
        with.len() == 5 && free.len() == 2,
        "not enough small seeds in 1..=2000: {with:?} {free:?}"
    );
    with.extend(free);
    eprintln!("smoke seeds: {with:?}");
    with
}

fn check_invariants(report: &Report) {
    for r in &report.scenarios {
        let name = &r.name;
        // Faults missed with (almost) no symptoms are listed apart and not scored.
        assert_eq!(r.faults.len(), r.truth + r.unobservable.len(), "{name}");
        assert!(
            r.faults.iter().filter(|f| f.detected_ms.is_none()).count()
                == r.missed.len() + r.unobservable.len(),
            "{name}: every undetected fault is missed or not scored"
        );
        assert_eq!(r.incidents.len(), r.detected, "{name}");
        let ids: HashMap<u64, usize> = r
            .incidents
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id, i))
            .collect();
        assert_eq!(ids.len(), r.incidents.len(), "{name}: incident ids unique");
        // Each fault's incident is paired with that fault and no other.
        let mut used = HashMap::new();
        for (fi, f) in r.faults.iter().enumerate() {
            assert_eq!(f.detected_ms.is_some(), f.incident.is_some(), "{name}");
            let Some(id) = f.incident else { continue };
            assert!(
                used.insert(id, fi).is_none(),
                "{name}: incident {id} paired with two faults"
            );
            let d = &r.incidents[ids[&id]];
            assert!(
                matches!(d.verdict, Verdict::Matched { fault, .. } if fault == fi),
                "{name}: fault {fi} and incident {id} disagree: {:?}",
                d.verdict
            );
            assert_eq!(d.kind, f.kind, "{name}: a pair has one kind");
            let at = f.detected_ms.unwrap_or_default();
            assert!(at >= f.start_ms - EARLY_MS && at <= f.end_ms + LATE_MS);
            assert!(at >= d.opened_ms, "{name}: shown before it opened");
        }
        // Each paired incident is its fault's; duplicates point at a fault another incident
        // has; the counts add up.
        for d in &r.incidents {
            match d.verdict {
                Verdict::Matched { fault, .. } => {
                    assert_eq!(r.faults[fault].incident, Some(d.id), "{name}");
                }
                Verdict::Split { fault } | Verdict::Reopen { fault } => {
                    let owner = r.faults[fault].incident;
                    assert!(
                        owner.is_some() && owner != Some(d.id),
                        "{name}: a duplicate of an unpaired fault"
                    );
                }
                Verdict::Unrelated => {}
            }
            assert!(d.resolved_ms.is_none_or(|t| t >= d.opened_ms), "{name}");
        }
        let matched = r.incidents.iter().filter(|d| d.verdict.is_match()).count();
        assert_eq!(matched, r.detected_matching, "{name}");
        assert_eq!(matched, r.truth_detected, "{name}: one to one");
        assert_eq!(
            r.false_incidents.len(),
            r.detected - r.detected_matching,
            "{name}: every unpaired incident is false"
        );
        let dups = r
            .incidents
            .iter()
            .filter(|d| d.verdict.is_duplicate())
            .count();
        assert_eq!(r.splits + r.reopens, dups, "{name}");
        assert_eq!(r.missed.len(), r.truth - r.truth_detected, "{name}");
        assert_eq!(r.ttd_secs.len(), r.truth_detected, "{name}");
        assert!(r.before_call <= r.truth_detected, "{name}");
        assert!(r.lingering.len() >= r.faults.iter().filter(|f| f.lingered).count());
        assert!(r.records > 0, "{name}: nothing replayed");
    }
}

#[test]
fn a_small_generated_set_scores_one_to_one_and_reports_well() {
    let seeds = smoke_seeds();
    let report = eval::run_seeds(&seeds, 2).expect("generated scenarios replay");
    // Output in seed order whatever thread finished first.
    let names: Vec<String> = report.scenarios.iter().map(|r| r.name.clone()).collect();
    let want: Vec<String> = seeds.iter().map(|s| format!("gen-{s}")).collect();
    assert_eq!(names, want);
    assert!(report.scenarios.iter().any(|r| r.truth == 0));
    check_invariants(&report);

    let text = eval::render_text(&report);
    for line in [
        "by fault kind",
        "by fleet shape",
        "by fleet size",
        "by fleet cadence",
        "overall: precision ",
        "splits: ",
        "false paged incidents per fleet-day on fault-free days: ",
        "time to detect from its first symptom: p50 ",
        "alerted before the first merchant call: ",
        "lead time before the first merchant call: p5 ",
        "incidents open more than 15 min after their fault ended: ",
        "wall time: ",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    for s in &seeds {
        assert!(
            text.contains(&format!("gen-{s} ")),
            "gen-{s} not in the text"
        );
    }

    let json = eval::render_json(&report);
    let text = serde_json::to_string(&json).expect("serialises");
    let back: serde_json::Value = serde_json::from_str(&text).expect("parses");
    let overall = &back["overall"];
    let s = eval::summarize(&report.scenarios);
    assert_eq!(overall["truth"], s.truth);
    assert_eq!(overall["detected"], s.detected);
    assert_eq!(overall["splits"], s.splits);
    for k in ["precision", "recall", "f1", "before_call_share"] {
        let v = overall[k].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
    let per = back["scenarios"].as_array().expect("per-scenario results");
    assert_eq!(per.len(), seeds.len());
    for (p, s) in per.iter().zip(&seeds) {
        assert_eq!(p["seed"], *s);
        assert!(p["shape"].is_string() && p["cadence"].is_string());
        assert_eq!(
            p["faults"].as_array().map(Vec::len),
            p["truth"]
                .as_u64()
                .zip(p["not_scored"].as_array().map(Vec::len))
                .map(|(n, u)| n as usize + u)
        );
    }
    // The tables cover every fault once.
    let kinds: usize = eval_by_kind_faults(&report);
    assert_eq!(kinds, s.truth);
}

fn eval_by_kind_faults(report: &Report) -> usize {
    storepulse_lab::report::by_kind(&report.scenarios)
        .iter()
        .map(|(_, t)| t.faults)
        .sum()
}

#[test]
fn the_same_seed_scores_the_same() {
    let seed = smoke_seeds()[0];
    let a = eval::run_seeds(&[seed], 1).expect("replays");
    let b = eval::run_seeds(&[seed], 1).expect("replays");
    let strip = |r: &Report| {
        let mut v = eval::render_json(r);
        v["overall"]["wall_secs"] = serde_json::Value::Null;
        for s in v["scenarios"].as_array_mut().into_iter().flatten() {
            s["wall_secs"] = serde_json::Value::Null;
        }
        v
    };
    assert_eq!(strip(&a), strip(&b));
}
