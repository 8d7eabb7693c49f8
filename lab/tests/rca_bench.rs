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
    let case = cases[0].case.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(case.truth, set(&["d=d7", "d=d8", "a=a4"]));
    assert_eq!(case.cube.len(), 21_600);

    let report = rca_bench::run(&fixtures(), &Params::default())?;
    let text = rca_bench::render_text(&report);
    assert!(text.contains("overall"), "{text}");
    let json = rca_bench::render_json(&report);
    assert_eq!(json["overall"]["counts"]["tp"], 6);
    assert_eq!(json["overall"]["counts"]["fn"], 0);
    Ok(())
}

/// Writes a flat dataset: `injection_info.csv` and the given case files.
fn flat_dataset(dir: &std::path::Path, info: &str, files: &[(&str, String)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("injection_info.csv"), info)?;
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// A 2-attribute case: `x0..x5` by `y0..y5`, forecast 100 per leaf, the leaves of `x=x2`
/// at `factor` times, the rest within 1 %.
fn case_text(factor: f64, bad_line: Option<&str>) -> String {
    let mut s = String::from("x,y,real,predict\n");
    for x in 0..6 {
        for y in 0..6 {
            let wobble = 1.0 + 0.01 * (((x * 7 + y * 3) % 5) as f64 - 2.0) / 2.0;
            let real = if x == 2 {
                100.0 * factor
            } else {
                100.0 * wobble
            };
            s.push_str(&format!("x{x},y{y},{real},100\n"));
        }
    }
    if let Some(line) = bad_line {
        s.push_str(line);
        s.push('\n');
    }
    s
}

#[test]
fn malformed_case_is_skipped_and_counted_and_the_run_goes_on() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("T");
    flat_dataset(
        &dir,
        "timestamp,set,noise_level\n1,x=x2,0.01\n2,x=x2,0.01\n3,x=x2,0.12\n",
        &[
            ("1.csv", case_text(0.3, None)),
            ("2.csv", case_text(0.3, Some("x9,y9,abc,100"))),
            // A negative forecast is malformed; a negative observed value is kept.
            ("3.csv", case_text(0.3, Some("x9,y9,-5,-1"))),
        ],
    )?;
    let report = rca_bench::run(&dir, &Params::default())?;
    assert_eq!(report.overall.cases, 1);
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
    assert!(
        report.skipped[0].error.contains("real"),
        "{:?}",
        report.skipped
    );
    assert!(
        report.skipped[1].error.contains("negative"),
        "{:?}",
        report.skipped
    );
    assert_eq!(report.overall.counts.tp, 1);
    let text = rca_bench::render_text(&report);
    assert!(text.contains("skipped 2"), "{text}");
    // Per noise band and depth.
    assert_eq!(report.by_noise.len(), 1);
    assert_eq!(report.by_depth[0].name, "depth 1");
    Ok(())
}

#[test]
fn negative_observed_values_are_localised() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("N");
    let mut text = case_text(0.3, None);
    // A leaf expected at 0 read at -0.01 (a rounding artefact): kept, counted, no cause.
    text.push_str("x0,y9,-0.01,0\n");
    flat_dataset(&dir, "timestamp,set\n7,x=x2\n", &[("7.csv", text)])?;
    let report = rca_bench::run(&dir, &Params::default())?;
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.cases[0].negative_leaves, 1);
    assert_eq!(report.cases[0].predicted, vec!["x=x2".to_owned()]);
    Ok(())
}

#[test]
fn ratio_case_is_read_from_numerator_and_denominator() -> anyhow::Result<()> {
    // Attempts fall by half in x=x4 while its failures stay: the rate doubles there.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("R");
    let (mut a, mut b) = (
        String::from("real,predict,x,y\n"),
        String::from("real,predict,x,y\n"),
    );
    for x in 0..6 {
        for y in 0..6 {
            let (den_real, num_real) = if x == 4 { (500, 50) } else { (1000, 50) };
            a.push_str(&format!("{num_real},50,x{x},y{y}\n"));
            b.push_str(&format!("{den_real},1000,x{x},y{y}\n"));
        }
    }
    flat_dataset(
        &dir,
        "set,timestamp\nx=x4,3\n",
        &[("3.a.csv", a), ("3.b.csv", b)],
    )?;
    let report = rca_bench::run(&dir, &Params::default())?;
    assert_eq!(report.cases.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.cases[0].predicted, vec!["x=x4".to_owned()]);
    Ok(())
}
