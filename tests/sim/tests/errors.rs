//! Scenario files with mistakes: the error names the file, the line and the problem.

use storepulse_sim::Scenario;

const GOOD: &str = r#"# header
[scenario]
name = "errors"
seed = 7
start = "2026-03-02T00:00:00+08:00"
duration = "24h"

[fleet]
terminals = 400
chains = 4

[[fault]]
kind = "acquirer_maintenance"
start = "+6h"
end = "+7h"
announced_at = "+1h"
scope = { acquirer = "ACQ-A" }
intensity = 0.9

[[incident]]
kind = "acquirer_maintenance"
scope = { acquirer = "ACQ-A" }
start = "+6h"
end = "+7h"
"#;

/// Replaces `from` (which must occur once) and parses; returns the error text.
fn mistake(from: &str, to: &str) -> String {
    assert_eq!(GOOD.matches(from).count(), 1, "{from:?} must occur once");
    let text = GOOD.replacen(from, to, 1);
    Scenario::parse("tests/scenarios/errors.toml", &text)
        .expect_err("the mistake must be caught")
        .to_string()
}

fn assert_names(msg: &str, line: usize, problem: &[&str]) {
    let prefix = format!("tests/scenarios/errors.toml:{line}: ");
    assert!(msg.starts_with(&prefix), "expected {prefix:?} in {msg:?}");
    for p in problem {
        assert!(msg.contains(p), "expected {p:?} in {msg:?}");
    }
}

#[test]
fn the_good_file_parses() {
    let s = Scenario::parse("good", GOOD).expect("parses");
    assert_eq!(s.faults[0].announced_at_ms, Some(s.start_ms + 3_600_000));
}

#[test]
fn unknown_field() {
    let m = mistake("intensity = 0.9", "intensity = 0.9\nseverity = \"high\"");
    assert_names(&m, 19, &["severity"]);
    let m = mistake("chains = 4", "chains = 4\nterminal_count = 9");
    assert_names(&m, 11, &["terminal_count"]);
}

#[test]
fn bad_time() {
    let m = mistake(
        "start = \"+6h\"\nend = \"+7h\"\nannounced",
        "start = \"six\"\nend = \"+7h\"\nannounced",
    );
    assert_names(&m, 14, &["bad start time", "six"]);
    let m = mistake(
        "start = \"2026-03-02T00:00:00+08:00\"",
        "start = \"2026-03-02 00:00\"",
    );
    assert_names(&m, 5, &["bad start time"]);
    let m = mistake("duration = \"24h\"", "duration = \"a day\"");
    assert_names(&m, 6, &["bad duration"]);
}

#[test]
fn end_before_start() {
    let m = mistake("end = \"+7h\"\nannounced", "end = \"+5h\"\nannounced");
    assert_names(&m, 15, &["not after its start"]);
}

#[test]
fn scope_value_not_in_fleet() {
    let m = mistake(
        "scope = { acquirer = \"ACQ-A\" }\nintensity",
        "scope = { acquirer = \"ACQ-Z\" }\nintensity",
    );
    assert_names(&m, 17, &["ACQ-Z", "not in the generated fleet", "ACQ-A"]);
}

#[test]
fn unknown_fault_kind_and_label() {
    let m = mistake(
        "kind = \"acquirer_maintenance\"\nstart",
        "kind = \"meteor\"\nstart",
    );
    assert_names(&m, 13, &["unknown fault kind", "meteor", "terminal_fault"]);
    let m = mistake(
        "scope = { acquirer = \"ACQ-A\" }\nintensity",
        "scope = { bank = \"ICBC\" }\nintensity",
    );
    assert_names(&m, 17, &["unknown scope label", "bank"]);
}

#[test]
fn maintenance_needs_its_announcement() {
    let m = mistake("announced_at = \"+1h\"\n", "");
    assert_names(&m, 13, &["announced_at"]);
    let m = mistake("announced_at = \"+1h\"", "announced_at = \"+8h\"");
    assert_names(&m, 16, &["announced_at is after"]);
}

#[test]
fn syntax_and_type_errors() {
    let m = mistake("intensity = 0.9", "intensity = ");
    assert_names(&m, 18, &[]);
    let m = mistake("intensity = 0.9", "intensity = 1.5");
    assert_names(&m, 18, &["intensity must be between 0 and 1"]);
    let m = mistake("seed = 7", "seed = \"seven\"");
    assert_names(&m, 4, &["invalid type"]);
}

#[test]
fn incident_mistakes() {
    let m = mistake(
        "kind = \"acquirer_maintenance\"\nscope",
        "kind = \"maintenance\"\nscope",
    );
    assert_names(&m, 21, &["unknown incident kind", "maintenance"]);
    // `unknown` is detection's word for "no known pattern", never a ground truth.
    let m = mistake(
        "kind = \"acquirer_maintenance\"\nscope",
        "kind = \"unknown\"\nscope",
    );
    assert_names(&m, 21, &["unknown incident kind", "\"unknown\""]);
    let m = mistake(
        "scope = { acquirer = \"ACQ-A\" }\nstart = \"+6h\"\nend = \"+7h\"\n",
        "scope = { acquirer = \"ACQ-A\" }\nstart = \"+6h\"\nend = \"+6h\"\n",
    );
    assert_names(&m, 24, &["incident end is not after its start"]);
}

#[test]
fn fleet_shape_mistakes() {
    let m = mistake("chains = 4", "chains = 4\ncarriers = 5");
    assert_names(&m, 11, &["carriers must be between 1 and 4"]);
    let m = mistake("chains = 4", "chains = 4\nregions = 3\nchain_regions = 4");
    assert_names(
        &m,
        12,
        &["chain_regions (4) is more than the fleet's regions (3)"],
    );
}

#[test]
fn heartbeat_mix_mistakes() {
    let m = mistake(
        "chains = 4",
        "chains = 4\nheartbeat_mix = [{ secs = 30, share = 0.5 }, { secs = 180, share = 0.4 }]",
    );
    assert_names(&m, 11, &["add up to 0.9", "not 1"]);
    let m = mistake(
        "chains = 4",
        "chains = 4\nheartbeat_interval_secs = 30\nheartbeat_mix = [{ secs = 30, share = 1.0 }]",
    );
    assert_names(&m, 11, &["not both"]);
    let m = mistake(
        "chains = 4",
        "chains = 4\nheartbeat_mix = [{ secs = 0, share = 1.0 }]",
    );
    assert_names(&m, 11, &["between 1 and 3600"]);
    let m = mistake(
        "chains = 4",
        "chains = 4\nheartbeat_mix = [{ secs = 30, portion = 1.0 }]",
    );
    assert_names(&m, 11, &["portion"]);
}

#[test]
fn traffic_mistakes() {
    let m = mistake(
        "[fleet]",
        "[traffic]\nweekend = true\nholidays = [\"2026-10-01\", \"2026-02-30\"]\n\n[fleet]",
    );
    assert_names(&m, 10, &["bad holiday", "2026-02-30"]);
    let m = mistake("[fleet]", "[traffic]\nweekend_volume = 0\n\n[fleet]");
    assert_names(&m, 9, &["weekend_volume must be in (0, 10]"]);
    let m = mistake("[fleet]", "[traffic]\nweekends = true\n\n[fleet]");
    assert_names(&m, 9, &["weekends"]);
}

#[test]
fn call_profile_mistakes() {
    let m = mistake(
        "[fleet]",
        "[calls]\nk = 3\n\n[[calls.profile]]\nshare = 0.7\nk = 1\n\n[[calls.profile]]\nshare = 0.4\nk = 9\n\n[fleet]",
    );
    assert_names(&m, 16, &["shares add up to", "more than 1"]);
    let m = mistake(
        "[fleet]",
        "[[calls.profile]]\nshare = 0.2\nt_minutes = 0\n\n[fleet]",
    );
    assert_names(&m, 10, &["t_minutes must be at least 1"]);
    let m = mistake(
        "[fleet]",
        "[[calls.profile]]\nshare = 0.2\npatience = 3\n\n[fleet]",
    );
    assert_names(&m, 10, &["patience"]);
}
