//! End-to-end detection: small library scenarios replayed through the simulator into the
//! detector must be detected with the right kind and scope before the first merchant call.

use std::path::Path;

use storepulse_lab::eval;
use storepulse_sim::Scenario;

/// Every fault detected before the call, and no false incident (one-to-one: a second incident
/// for a fault is false too).
fn check(file: &str) {
    let r = replay_and_check(file);
    assert!(
        r.false_incidents.is_empty(),
        "{file}: false {:?}",
        r.false_incidents
    );
}

fn replay_and_check(file: &str) -> eval::ScenarioReport {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/scenarios")
        .join(file);
    let sc = Scenario::from_file(&path).expect("scenario loads");
    let r = eval::run_scenario(&sc);
    assert_eq!(r.truth_detected, r.truth, "{file}: missed {:?}", r.missed);
    assert_eq!(r.before_call, r.truth, "{file}: late {:?}", r.detections);
    r
}

#[test]
fn merchant_config_is_detected_before_the_call() {
    check("merchant_config.toml");
}

#[test]
fn store_offline_is_detected_before_the_call() {
    check("store_offline.toml");
}

#[test]
fn qr_notification_delay_is_detected_before_the_call() {
    check("qr_notification_delay.toml");
}

#[test]
fn routing_missing_is_one_store_incident_before_the_call() {
    // A branch's registration: the store, not each of its terminals in turn.
    check("routing_missing.toml");
}

#[test]
fn store_network_is_detected_before_the_call() {
    // Timeouts backed by the store's own network samples. Issue 14, root 6: the incident used
    // to resolve at 17:52 while the fault (17:00-20:30) went on (its payments queued offline
    // arrive as backlog, so live ones looked recovered) and a second one opened at 18:10; it
    // now holds while the store's network samples stay degraded.
    check("store_network.toml");
}

#[test]
fn low_volume_terminal_config_is_detected_before_the_call() {
    // A run of two "terminal not registered", not the third failure that makes them call.
    check("terminal_config.toml");
}

#[test]
fn terminal_faults_are_detected_before_the_call() {
    check("terminal_fault.toml");
}

#[test]
fn a_hot_failing_terminal_is_one_incident_found_by_its_heartbeats() {
    // M0001-S002-T1 runs hot and busy from 10:00 but takes its first payment after 11:00:
    // its heartbeats show the fault an hour before a payment does (it was found at 11:11).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/terminal_fault.toml");
    let sc = Scenario::from_file(&path).expect("scenario loads");
    let r = eval::run_scenario(&sc);
    assert_eq!(r.truth_detected, r.truth, "missed {:?}", r.missed);
    // Ground truth order: the hot terminal first, then the dead one.
    assert!(
        r.ttd_secs[0] <= 300.0,
        "hot terminal found after {} s",
        r.ttd_secs[0]
    );
    // Six hours hot: one incident each, no resolve-and-reopen.
    assert_eq!(r.detected, 2, "incidents opened: {:?}", r.detections);
}

#[test]
fn a_day_long_firmware_regression_is_one_incident() {
    // 15 hours of a 25 % defect, through the night: one incident, not one per hour the
    // baseline caught up with it (it used to reopen 32 times).
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/firmware_regression.toml");
    let sc = Scenario::from_file(&path).expect("scenario loads");
    let r = eval::run_scenario(&sc);
    assert_eq!(r.truth_detected, r.truth, "missed {:?}", r.missed);
    assert_eq!(r.before_call, r.truth, "late {:?}", r.detections);
    assert_eq!(r.detected, 1, "incidents opened: {}", r.detected);
}

#[test]
fn three_fault_free_days_open_nothing() {
    // Days two and three are tested against the hour-of-day payment volume learned from the
    // days before them: ordinary variation must not look like payments that stopped.
    check("control_three_days.toml");
}
