//! Runs `rca-bench` end to end on the two B0 cases committed under `tests/fixtures/rca/` and
//! checks that the exact root causes are found (no dependency on /work/shared).

use std::collections::BTreeSet;
use std::path::PathBuf;

use storepulse_collector_core::rca::Params;
use storepulse_lab::rca_bench;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rca")
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items
        .iter()
        .map(|s| rca_bench::canonical_cause(s))
        .collect()
}

#[test]
fn b0_fixture_cases_are_localised_exactly() -> anyhow::Result<()> {
    let report = rca_bench::run(&fixtures(), &Params::default())?;
    // Cases whose data file is absent are skipped: one case per setting.
    assert_eq!(report.settings.len(), 2);
    assert!(report.settings.iter().all(|s| s.cases == 1));
    assert_eq!(report.cases.len(), 2);

    let layer1 = &report.cases[0];
    assert_eq!(layer1.setting, "B_cuboid_layer_1_n_ele_3");
    assert_eq!(
        layer1.predicted.iter().cloned().collect::<BTreeSet<_>>(),
        set(&["a=a4", "d=d7", "d=d8"])
    );
    let layer3 = &report.cases[1];
    assert_eq!(layer3.setting, "B_cuboid_layer_3_n_ele_3");
    assert_eq!(
        layer3.predicted.iter().cloned().collect::<BTreeSet<_>>(),
        set(&["a=a4&b=b14&d=d9", "a=a4&b=b12&c=c1", "a=a2&b=b16&d=d10"])
    );

    assert_eq!(report.overall.counts.tp, 6);
    assert_eq!(report.overall.counts.fp, 0);
    assert_eq!(report.overall.counts.fn_, 0);
    assert_eq!(report.overall.f1, 1.0);
    assert_eq!(report.settings[1].riskloc_f1, Some(0.889));
    Ok(())
}

#[test]
fn duplicate_truth_is_counted_once_and_rendering_works() -> anyhow::Result<()> {
    let cases = rca_bench::load_setting(&fixtures().join("B_cuboid_layer_1_n_ele_3"))?;
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].1.truth, set(&["d=d7", "d=d8", "a=a4"]));
    assert_eq!(cases[0].1.cube.len(), 21_600);

    let report = rca_bench::run(&fixtures(), &Params::default())?;
    let text = rca_bench::render_text(&report);
    assert!(text.contains("overall"), "{text}");
    let json = rca_bench::render_json(&report);
    assert_eq!(json["overall"]["counts"]["tp"], 6);
    assert_eq!(json["overall"]["counts"]["fn"], 0);
    Ok(())
}
