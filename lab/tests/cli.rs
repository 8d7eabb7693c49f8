//! The `storepulse-lab` binary: its subcommands and flags, run as a user would.

use std::path::PathBuf;
use std::process::{Command, Output};

use storepulse_sim::Scenario;
use storepulse_sim::generate::{file_name, generate};

fn lab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_storepulse-lab"))
        .args(args)
        .output()
        .expect("storepulse-lab runs")
}

#[test]
fn generate_prints_the_seeds_scenario_in_the_strict_format() {
    let out = lab(&["generate", "--seed", "7"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(text, generate(7).text);
    let sc = Scenario::parse("gen-7.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sc.name, "gen-7");
}

#[test]
fn generate_writes_a_file_or_into_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mine.toml");
    let out = lab(&["generate", "--seed", "3", "--out", &file.to_string_lossy()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("file written"),
        generate(3).text
    );
    let out = lab(&[
        "generate",
        "--seed",
        "4",
        "--out",
        &dir.path().to_string_lossy(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(file_name(4))).expect("file written"),
        generate(4).text
    );
}

#[test]
fn eval_on_a_directory_without_scenarios_fails_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lab(&["eval", "--scenarios", &dir.path().to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no scenario files"), "{err}");
}

#[test]
fn rca_bench_prints_json_with_the_overall_f1() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rca");
    let out = lab(&["rca-bench", "--data", &data.to_string_lossy(), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["overall"]["cases"], 2);
    assert_eq!(v["overall"]["f1"], 1.0);
}

#[test]
fn eval_generate_prints_the_report_and_writes_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("eval.json");
    let out = lab(&[
        "eval",
        "--generate",
        "2",
        "--seed",
        "2",
        "--jobs",
        "2",
        "--json-out",
        &json.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("gen-2 ") && text.contains("gen-3 "), "{text}");
    assert!(text.contains("generated seeds 2..=3"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    assert_eq!(v["scenarios"][0]["seed"], 2);
    assert_eq!(v["scenarios"][1]["seed"], 3);
}

#[test]
fn eval_wants_one_source_and_a_seed_only_with_generate() {
    for args in [
        &["eval"][..],
        &["eval", "--scenarios", "x", "--generate", "3"],
        &["eval", "--scenarios", "x", "--seed", "3"],
    ] {
        let out = lab(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    let out = lab(&["eval", "--generate", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one"));
}
