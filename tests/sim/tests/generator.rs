//! The scenario generator: its files parse with the strict parser, one seed gives one file, a
//! saved file replays like the generated text, and a few hundred seeds cover the ranges the
//! generator promises (fleet sizes and shapes, cadences, spans, fault kinds and their pairs).

use std::collections::BTreeSet;
use std::io::Write as _;

use storepulse_sim::generate::{GENERATOR_VERSION, file_name, generate};
use storepulse_sim::{EventLog, FleetClass, Fnv64, IncidentKind, Scenario, run};

/// The develop range starts at 0 (BENCHMARKS.md); tests stay inside it.
const SET: std::ops::Range<u64> = 0..300;

fn parse(seed: u64) -> Scenario {
    let g = generate(seed);
    Scenario::parse(&file_name(seed), &g.text).unwrap_or_else(|e| panic!("{e}\n{}", g.text))
}

fn fnv(text: &str) -> u64 {
    let mut h = Fnv64::default();
    h.write_all(text.as_bytes()).expect("hashing cannot fail");
    h.hash
}

#[test]
fn generated_files_parse_with_the_strict_parser() {
    for seed in (0..50).chain([1_000_000, 7_000_000, u64::MAX]) {
        let sc = parse(seed);
        assert_eq!(sc.name, format!("gen-{seed}"));
        assert_eq!(sc.seed, seed);
        // The ground truth is the faults' (a decline surge is not an incident).
        let faults = sc
            .faults
            .iter()
            .filter(|f| f.kind.incident_kind().is_some())
            .count();
        assert_eq!(sc.incidents.len(), faults, "seed {seed}");
    }
}

#[test]
fn the_same_seed_gives_the_same_file() {
    for seed in [0, 1, 2, 77, 299, 123_456, 7_000_000] {
        assert_eq!(generate(seed), generate(seed), "seed {seed}");
    }
    assert_ne!(generate(1).text, generate(2).text);
    // Pinned: a change to what a seed generates must bump GENERATOR_VERSION (and update this),
    // because BENCHMARKS.md reports figures by seed range.
    // (v2: faults wider than a store must show on two stores.)
    // (The scope keys' canonical spelling, `store_id` for `store`, changed the text but not
    // the scenario: the version stayed.)
    assert_eq!(GENERATOR_VERSION, 2);
    assert_eq!(
        fnv(&generate(1).text),
        4_959_137_283_816_094_152,
        "{}",
        generate(1).text
    );
}

#[test]
fn a_saved_file_reads_back_and_replays_the_same() {
    // The first small, short scenario with faults in the set.
    let seed = SET
        .clone()
        .find(|&s| {
            let sc = parse(s);
            sc.fleet.terminals.len() < 200
                && sc.duration_ms <= 6 * 3_600_000
                && !sc.faults.is_empty()
        })
        .expect("the set has a small scenario with faults");
    let g = generate(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(file_name(seed));
    std::fs::write(&path, &g.text).expect("write");
    let from_file = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let from_text = parse(seed);
    let digest = |sc: &Scenario| {
        let mut log = EventLog::new(Fnv64::default());
        let stats = run(sc, &mut log);
        let h = log.finish().expect("hashing cannot fail");
        (h.hash, h.bytes, stats.records)
    };
    let a = digest(&from_file);
    assert_eq!(a, digest(&from_text), "seed {seed}");
    assert!(a.2 > 100, "seed {seed}: only {} records", a.2);
}

#[test]
fn a_set_covers_the_ranges() {
    let (mut min_t, mut max_t) = (u32::MAX, 0);
    let (mut min_h, mut max_h) = (i64::MAX, 0);
    let (mut min_regions, mut max_regions) = (u32::MAX, 0);
    let (mut min_fault, mut max_fault) = (i64::MAX, 0);
    let (mut min_int, mut max_int) = (f64::MAX, 0.0f64);
    let (mut min_vol, mut max_vol) = (f64::MAX, 0.0f64);
    let mut fault_counts = BTreeSet::new();
    let mut classes = BTreeSet::new();
    let mut intervals = BTreeSet::new();
    let mut hours = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    let (mut single_providers, mut holidays, mut profiles) = (0, 0, 0);
    let (mut fault_free_days, mut terminal_days) = (0.0, 0.0);
    for seed in SET {
        let sc = parse(seed);
        let s = &sc.fleet_spec;
        min_t = min_t.min(s.terminals);
        max_t = max_t.max(s.terminals);
        min_h = min_h.min(sc.duration_ms / 3_600_000);
        max_h = max_h.max(sc.duration_ms / 3_600_000);
        min_regions = min_regions.min(s.regions);
        max_regions = max_regions.max(s.regions);
        min_vol = min_vol.min(s.volume_scale);
        max_vol = max_vol.max(s.volume_scale);
        let c = FleetClass::of(&sc.fleet);
        classes.insert(("shape", c.shape));
        classes.insert(("size", c.size));
        classes.insert(("cadence", c.cadence));
        intervals.extend(s.heartbeat_mix.iter().map(|(secs, _)| *secs));
        hours.insert(storepulse_sim::time::local_hour(
            sc.start_ms,
            sc.utc_offset_secs,
        ));
        single_providers += usize::from(s.acquirers == 1 && s.qr_channels == 1 && s.carriers == 1);
        holidays += usize::from(!sc.traffic.holidays.is_empty());
        profiles += usize::from(!sc.call_profiles.is_empty());
        fault_counts.insert(sc.faults.len());
        let days = sc.duration_ms as f64 / 86_400_000.0;
        terminal_days += days * f64::from(s.terminals);
        if sc.incidents.is_empty() {
            fault_free_days += days;
        }
        for f in &sc.faults {
            kinds.insert(f.kind);
            min_fault = min_fault.min(f.end_ms - f.start_ms);
            max_fault = max_fault.max(f.end_ms - f.start_ms);
            min_int = min_int.min(f.intensity);
            max_int = max_int.max(f.intensity);
        }
        for (i, f) in sc.faults.iter().enumerate() {
            for g in &sc.faults[i + 1..] {
                let shared = f
                    .terminals
                    .iter()
                    .any(|t| g.terminals.binary_search(t).is_ok());
                if shared && f.start_ms < g.end_ms && g.start_ms < f.end_ms {
                    pairs.insert((f.kind.min(g.kind), f.kind.max(g.kind)));
                }
            }
        }
    }
    assert!(min_t <= 60 && max_t >= 12_000, "terminals {min_t}..{max_t}");
    assert!(min_h <= 2 && max_h >= 66, "hours {min_h}..{max_h}");
    assert!(
        min_regions == 1 && max_regions >= 25,
        "regions {min_regions}..{max_regions}"
    );
    assert!(
        min_vol < 0.3 && max_vol > 2.5,
        "volume {min_vol}..{max_vol}"
    );
    assert_eq!(classes.len(), 12, "fleet classes {classes:?}");
    assert!(
        intervals.contains(&10) && intervals.contains(&300),
        "{intervals:?}"
    );
    assert!(hours.contains(&0) && hours.contains(&6) && hours.contains(&12) && hours.len() >= 20);
    assert!(single_providers >= 10 && holidays >= 10 && profiles >= 100);
    assert!(
        fault_counts.contains(&0) && fault_counts.contains(&10),
        "{fault_counts:?}"
    );
    assert!(min_fault <= 5 * 60_000 && max_fault >= 10 * 3_600_000);
    assert!(min_int <= 0.15 && max_int == 1.0);
    assert_eq!(kinds.len(), 13, "fault kinds {kinds:?}");
    // Every pair of kinds overlaps in time on shared terminals somewhere, except the pairs of
    // one incident kind (the generator keeps those apart: one incident could not tell them).
    for (i, a) in storepulse_sim::FaultKind::ALL.iter().enumerate() {
        for b in &storepulse_sim::FaultKind::ALL[i + 1..] {
            let same: Option<IncidentKind> = a.incident_kind();
            if same.is_some() && same == b.incident_kind() {
                continue;
            }
            assert!(
                pairs.contains(&(*a.min(b), *a.max(b))),
                "no overlap of {a} and {b}"
            );
        }
    }
    assert!(fault_free_days >= 30.0, "{fault_free_days} fault-free days");
    // What keeps a 300-scenario eval within minutes: about half a million terminal-days.
    assert!(terminal_days < 800_000.0, "{terminal_days} terminal-days");
}
