//! Notifier and outbox tests on synthetic incident sequences and a virtual clock.

use super::*;

const MIN: i64 = 60_000;

fn m(text: &str) -> Matcher {
    Matcher::parse(text).expect("matcher")
}

fn cfg() -> NotifyConfig {
    NotifyConfig {
        group_wait_ms: 30_000,
        repeat_interval_ms: 60 * MIN,
        update_min_interval_ms: 5 * MIN,
        routes: vec![
            Route {
                matchers: vec![m("severity=critical")],
                receivers: vec!["pd".into()],
                continue_matching: true,
            },
            Route {
                matchers: vec![m("maintenance=true")],
                receivers: vec!["low".into()],
                continue_matching: false,
            },
            Route {
                matchers: vec![m("kind=~regional_outage|store_offline|merchant_config")],
                receivers: vec!["am".into()],
                continue_matching: false,
            },
        ],
        default_receivers: vec!["chat".into()],
        ..NotifyConfig::default()
    }
}

fn inc(id: &str, kind: &str, severity: Severity, scope: &[(&str, &str)]) -> IncidentSnapshot {
    IncidentSnapshot {
        id: id.into(),
        kind: kind.into(),
        severity,
        scope: scope
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        summary_en: format!("{kind} in {scope:?}"),
        summary_zh: "故障".into(),
        remediation_en: "check".into(),
        remediation_zh: "检查".into(),
        affected_terminals: 10,
        affected_stores: 2,
        affected_merchants: 1,
        started_at_ms: 1_000,
        resolved_at_ms: None,
        explained_by: None,
        merged_into: None,
    }
}

fn drain(n: &mut Notifier, now: i64) -> Vec<(String, String, NotificationKind)> {
    n.tick(now);
    let mut out = Vec::new();
    while let Some(x) = n.poll_notification() {
        out.push((x.incident_id, x.receiver, x.kind));
    }
    out
}

fn t(id: &str, rcv: &str, k: NotificationKind) -> (String, String, NotificationKind) {
    (id.into(), rcv.into(), k)
}

#[test]
fn lifecycle_group_wait_update_repeat_resolve() {
    use NotificationKind::*;
    let mut n = Notifier::new(cfg());
    let mut a = inc(
        "1",
        "merchant_config",
        Severity::Major,
        &[("merchant_id", "M0003")],
    );
    n.handle_incident(0, a.clone());
    assert!(drain(&mut n, 29_999).is_empty(), "group wait");
    assert_eq!(drain(&mut n, 30_000), [t("1", "am", Firing)]);
    assert!(drain(&mut n, 31_000).is_empty());
    // A small change in size is not material; a 50 % one is, but only after the minimum interval.
    a.affected_terminals = 12;
    n.handle_incident(MIN, a.clone());
    assert!(drain(&mut n, MIN).is_empty());
    a.affected_terminals = 30;
    n.handle_incident(2 * MIN, a.clone());
    assert!(drain(&mut n, 2 * MIN).is_empty(), "update rate limit");
    assert_eq!(drain(&mut n, 6 * MIN), [t("1", "am", Update)]);
    // Escalation to critical adds PagerDuty (continue); Alertmanager's label set changed
    // (severity), so its old alert is resolved at once and the new one fired.
    a.severity = Severity::Critical;
    n.handle_incident(12 * MIN, a.clone());
    assert_eq!(
        drain(&mut n, 12 * MIN),
        [
            t("1", "pd", Firing),
            t("1", "am", Resolved),
            t("1", "am", Firing)
        ]
    );
    assert_eq!(
        drain(&mut n, 72 * MIN),
        [t("1", "pd", Repeat), t("1", "am", Repeat)]
    );
    a.resolved_at_ms = Some(80 * MIN);
    n.handle_incident(80 * MIN, a.clone());
    assert_eq!(
        drain(&mut n, 80 * MIN),
        [t("1", "am", Resolved), t("1", "pd", Resolved)]
    );
    assert_eq!(n.incident_count(), 0);
    n.handle_incident(81 * MIN, a);
    assert!(
        drain(&mut n, 90 * MIN).is_empty(),
        "late duplicates are ignored"
    );
}

#[test]
fn idempotency_keys_are_stable_and_distinct() {
    let run = || {
        let mut n = Notifier::new(cfg());
        let mut a = inc(
            "7",
            "store_offline",
            Severity::Minor,
            &[("store_id", "M1-S1")],
        );
        n.handle_incident(0, a.clone());
        n.tick(30_000);
        n.tick(90 * MIN);
        a.resolved_at_ms = Some(91 * MIN);
        n.handle_incident(91 * MIN, a);
        n.tick(91 * MIN);
        std::iter::from_fn(|| n.poll_notification())
            .map(|x| x.idempotency_key)
            .collect::<Vec<_>>()
    };
    let keys = run();
    assert_eq!(
        keys,
        [
            "sp:7@1000:am:0:firing",
            "sp:7@1000:am:1:repeat",
            "sp:7@1000:am:2:resolved"
        ]
    );
    assert_eq!(keys, run(), "deterministic");
}

#[test]
fn resolved_within_group_wait_sends_nothing() {
    let mut n = Notifier::new(cfg());
    let mut a = inc("1", "store_offline", Severity::Minor, &[("store_id", "S")]);
    n.handle_incident(0, a.clone());
    a.resolved_at_ms = Some(10_000);
    n.handle_incident(10_000, a);
    assert!(drain(&mut n, 60_000).is_empty());
    assert_eq!(n.incident_count(), 0);
}

#[test]
fn default_receiver_when_no_route_matches() {
    let mut n = Notifier::new(cfg());
    n.handle_incident(0, inc("1", "firmware_regression", Severity::Minor, &[]));
    assert_eq!(
        drain(&mut n, 30_000),
        [t("1", "chat", NotificationKind::Firing)]
    );
}

#[test]
fn silence_mutes_but_does_not_hide() {
    use NotificationKind::*;
    let mut n = Notifier::new(cfg());
    n.handle_silence(Silence {
        id: "s1".into(),
        matchers: vec![m("merchant=M0003")],
        starts_at_ms: 0,
        ends_at_ms: 10 * MIN,
        author: "ops".into(),
        comment: "known".into(),
    });
    n.handle_incident(
        0,
        inc(
            "1",
            "merchant_config",
            Severity::Major,
            &[("merchant_id", "M0003")],
        ),
    );
    n.handle_incident(
        0,
        inc(
            "2",
            "merchant_config",
            Severity::Major,
            &[("merchant_id", "M0004")],
        ),
    );
    assert_eq!(drain(&mut n, MIN), [t("2", "am", Firing)]);
    assert_eq!(n.incident_count(), 2, "still tracked");
    assert_eq!(n.mute_of(MIN, "1"), Some(Mute::Silenced("s1".into())));
    // The silence ends: the incident pages.
    assert_eq!(drain(&mut n, 10 * MIN), [t("1", "am", Firing)]);
    assert_eq!(n.silences().count(), 0, "expired silences are dropped");
}

#[test]
fn a_paged_receiver_gets_the_resolution_even_when_silenced() {
    use NotificationKind::*;
    let mut n = Notifier::new(cfg());
    let mut a = inc(
        "1",
        "merchant_config",
        Severity::Major,
        &[("merchant_id", "M1")],
    );
    n.handle_incident(0, a.clone());
    assert_eq!(drain(&mut n, MIN), [t("1", "am", Firing)]);
    n.handle_silence(Silence {
        id: "s".into(),
        matchers: vec![m("kind=merchant_config")],
        starts_at_ms: MIN,
        ends_at_ms: 1000 * MIN,
        author: "a".into(),
        comment: "c".into(),
    });
    a.affected_terminals = 100;
    n.handle_incident(20 * MIN, a.clone());
    assert!(drain(&mut n, 200 * MIN).is_empty(), "no update or repeat");
    a.resolved_at_ms = Some(201 * MIN);
    n.handle_incident(201 * MIN, a);
    assert_eq!(drain(&mut n, 201 * MIN), [t("1", "am", Resolved)]);
}

#[test]
fn maintenance_low_urgency_and_mute() {
    use NotificationKind::*;
    let window = MaintenanceWindow {
        id: "w1".into(),
        scope: vec![("acquirer".into(), "ACQ-A".into())],
        starts_at_ms: 0,
        ends_at_ms: 60 * MIN,
        announcement: "ACQ-A upgrade 02:00-03:00 / 收单机构升级".into(),
    };
    let a = inc(
        "1",
        "acquirer_outage",
        Severity::Critical,
        &[("acquirer", "ACQ-A"), ("region", "R01")],
    );
    let b = inc(
        "2",
        "acquirer_outage",
        Severity::Critical,
        &[("acquirer", "ACQ-B")],
    );

    let mut n = Notifier::new(cfg());
    n.handle_maintenance(window.clone());
    n.handle_incident(0, a.clone());
    n.handle_incident(0, b.clone());
    n.tick(MIN);
    let out: Vec<Notification> = std::iter::from_fn(|| n.poll_notification()).collect();
    let got: Vec<_> = out
        .iter()
        .map(|x| {
            (
                x.incident_id.as_str(),
                x.receiver.as_str(),
                x.incident.severity,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("1", "low", Severity::Info),
            ("2", "pd", Severity::Critical),
        ]
    );
    assert_eq!(
        out[0].maintenance.as_deref(),
        Some(window.announcement.as_str())
    );
    assert_eq!(out[1].maintenance, None);
    // The window ends while the outage lasts: it pages at full severity (a route matched,
    // so the default receiver is not added).
    assert_eq!(drain(&mut n, 60 * MIN), [t("1", "pd", Firing)]);

    let mut n = Notifier::new(NotifyConfig {
        maintenance_mode: MaintenanceMode::Mute,
        ..cfg()
    });
    n.handle_maintenance(window);
    n.handle_incident(0, a);
    assert!(drain(&mut n, MIN).is_empty());
    assert_eq!(n.mute_of(MIN, "1"), Some(Mute::Maintenance("w1".into())));
    assert_eq!(n.incident_count(), 1, "recorded, not notified");
}

#[test]
fn a_regional_outage_pages_once_not_once_per_store() {
    use NotificationKind::*;
    let mut n = Notifier::new(cfg());
    let wide = inc(
        "R",
        "regional_outage",
        Severity::Major,
        &[("carrier", "CUCC"), ("region", "R02")],
    );
    // Stores show up first, the regional incident a little later, all within the group wait.
    for i in 0..200 {
        let mut s = inc(
            &format!("S{i}"),
            "store_offline",
            Severity::Minor,
            &[("region", "R02")],
        );
        s.scope.push(("store_id".into(), format!("M{i:04}-S001")));
        s.explained_by = Some("R".into());
        n.handle_incident(i * 10, s);
    }
    n.handle_incident(5_000, wide.clone());
    let mut pages = drain(&mut n, MIN);
    pages.extend(drain(&mut n, 30 * MIN));
    assert_eq!(pages, [t("R", "am", Firing)]);
    assert_eq!(n.mute_of(MIN, "S7"), Some(Mute::Inhibited("R".into())));
    assert_eq!(n.incident_count(), 201);

    // The region recovers but one store stays down: now it pages on its own.
    let mut resolved = wide;
    resolved.resolved_at_ms = Some(40 * MIN);
    n.handle_incident(40 * MIN, resolved);
    for i in 1..200 {
        let mut s = inc(
            &format!("S{i}"),
            "store_offline",
            Severity::Minor,
            &[("region", "R02")],
        );
        s.resolved_at_ms = Some(40 * MIN);
        n.handle_incident(40 * MIN, s);
    }
    let after = drain(&mut n, 40 * MIN);
    assert_eq!(after, [t("R", "am", Resolved), t("S0", "am", Firing)]);
}

#[test]
fn inhibition_rule_with_equal_labels() {
    use NotificationKind::*;
    let mut n = Notifier::new(NotifyConfig {
        inhibit_rules: vec![InhibitRule {
            source: vec![m("kind=acquirer_outage")],
            target: vec![m("kind=merchant_config")],
            equal: vec!["acquirer".into()],
        }],
        ..cfg()
    });
    n.handle_incident(
        0,
        inc(
            "A",
            "acquirer_outage",
            Severity::Major,
            &[("acquirer", "ACQ-A")],
        ),
    );
    n.handle_incident(
        0,
        inc(
            "M1",
            "merchant_config",
            Severity::Major,
            &[("acquirer", "ACQ-A"), ("merchant_id", "M1")],
        ),
    );
    n.handle_incident(
        0,
        inc(
            "M2",
            "merchant_config",
            Severity::Major,
            &[("acquirer", "ACQ-B"), ("merchant_id", "M2")],
        ),
    );
    n.handle_incident(
        0,
        inc(
            "M3",
            "merchant_config",
            Severity::Major,
            &[("merchant_id", "M3")],
        ),
    );
    assert_eq!(
        drain(&mut n, MIN),
        [
            t("A", "chat", Firing),
            t("M2", "am", Firing),
            t("M3", "am", Firing)
        ]
    );
}

#[test]
fn restored_incidents_resume_or_resolve_after_grace() {
    use NotificationKind::*;
    let mut before = Notifier::new(cfg());
    let a = inc(
        "1",
        "merchant_config",
        Severity::Major,
        &[("merchant_id", "M1")],
    );
    let b = inc(
        "2",
        "merchant_config",
        Severity::Major,
        &[("merchant_id", "M2")],
    );
    before.handle_incident(0, a.clone());
    before.handle_incident(0, b);
    drain(&mut before, MIN);
    let saved: Vec<_> = ["1", "2"]
        .iter()
        .filter_map(|id| before.export(id))
        .collect();

    let mut after = Notifier::new(cfg());
    for s in saved {
        after.restore(10 * MIN, s);
    }
    after.handle_incident(11 * MIN, a);
    assert!(drain(&mut after, 12 * MIN).is_empty(), "no second page");
    // "2" was never reported again: resolved after the grace (15 min).
    assert_eq!(drain(&mut after, 25 * MIN), [t("2", "am", Resolved)]);
    assert_eq!(drain(&mut after, 61 * MIN), [t("1", "am", Repeat)]);
}

#[test]
fn a_reused_id_resolves_the_old_incident_first() {
    use NotificationKind::*;
    let mut n = Notifier::new(cfg());
    let a = inc(
        "1",
        "merchant_config",
        Severity::Major,
        &[("merchant_id", "M1")],
    );
    n.handle_incident(0, a.clone());
    drain(&mut n, MIN);
    let mut again = a;
    again.started_at_ms = 5 * MIN;
    n.tick(5 * MIN);
    n.handle_incident(5 * MIN, again);
    let first = n.poll_notification().expect("resolution");
    assert_eq!(first.kind, Resolved);
    assert_eq!(first.incident_key, "1@1000");
    assert_eq!(drain(&mut n, 6 * MIN), [t("1", "am", Firing)]);
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        initial_backoff_ms: 1_000,
        max_backoff_ms: 60_000,
        max_attempts: 5,
        max_age_ms: 3_600_000,
    }
}

fn note(incident: &str, receiver: &str, kind: NotificationKind) -> Notification {
    Notification {
        idempotency_key: format!("{incident}:{receiver}:{}", kind.as_str()),
        receiver: receiver.into(),
        incident_id: incident.into(),
        incident_key: format!("{incident}@0"),
        kind,
        created_at_ms: 0,
        incident: inc(incident, "k", Severity::Major, &[]),
        maintenance: None,
        repeat_interval_ms: MIN,
    }
}

fn fail(retry_after_ms: Option<i64>) -> AttemptOutcome {
    AttemptOutcome::Failed {
        retryable: true,
        retry_after_ms,
        error: "http 503".into(),
    }
}

#[test]
fn outbox_is_fifo_per_incident_and_receiver() {
    use NotificationKind::*;
    let mut o = Outbox::new(policy(), 1);
    let f = o.push(0, note("1", "am", Firing)).id;
    let r = o.push(0, note("1", "am", Resolved)).id;
    let other = o.push(0, note("1", "pd", Firing)).id;
    assert_eq!(o.poll_due(0).map(|e| e.id), Some(f));
    assert_eq!(o.poll_due(0).map(|e| e.id), Some(other), "resolution waits");
    assert_eq!(o.poll_due(0), None);
    assert!(matches!(
        o.handle_result(10, f, fail(None)),
        Some(Disposition::Retry(_))
    ));
    assert_eq!(o.poll_due(10), None, "the firing is still first");
    let due = o.next_wakeup().expect("wakeup");
    assert!((510..=1_010).contains(&due), "{due}");
    assert_eq!(o.poll_due(due).map(|e| e.id), Some(f));
    assert!(matches!(
        o.handle_result(due, f, AttemptOutcome::Delivered),
        Some(Disposition::Delivered(_))
    ));
    assert_eq!(o.poll_due(due).map(|e| e.id), Some(r));
}

#[test]
fn outbox_honours_retry_after_and_gives_up() {
    let mut o = Outbox::new(policy(), 7);
    let id = o.push(0, note("1", "am", NotificationKind::Firing)).id;
    let mut now = 0;
    for attempt in 1..=5 {
        let e = o.poll_due(now).expect("due");
        assert_eq!(e.attempts, attempt - 1);
        match o.handle_result(now, id, fail(Some(30_000))) {
            Some(Disposition::Retry(e)) => {
                assert!(e.next_at_ms - now >= 30_000, "Retry-After honoured");
                assert!(e.next_at_ms - now <= 60_000, "capped");
                now = e.next_at_ms;
            }
            Some(Disposition::GaveUp(e)) => {
                assert_eq!(attempt, 5);
                assert_eq!(e.last_error.as_deref(), Some("http 503"));
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(o.is_empty());
    assert_eq!(o.stats().gave_up, 1);
    assert_eq!(o.stats().retries, 4);

    let id = o.push(now, note("2", "am", NotificationKind::Firing)).id;
    o.poll_due(now);
    let permanent = AttemptOutcome::Failed {
        retryable: false,
        retry_after_ms: None,
        error: "http 400".into(),
    };
    assert!(matches!(
        o.handle_result(now, id, permanent),
        Some(Disposition::GaveUp(_))
    ));
}

#[test]
fn backoff_grows_with_jitter_within_bounds() {
    let p = policy();
    let mut rng = SplitMix64::new(3);
    for attempt in 1..12 {
        let cap = (1_000i64 << (attempt - 1)).min(60_000);
        for _ in 0..50 {
            let d = p.backoff_ms(attempt, &mut rng);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d}");
        }
    }
}

/// Issue 16 item 2: a widened incident resolves its old label set at once (with the old
/// labels and key) and fires the new one under a new key; the final resolution closes the
/// label set last sent; a merged incident's resolution says what it was merged into.
#[test]
fn label_changes_resolve_the_old_alert_at_once() {
    let mut n = Notifier::new(cfg());
    let mut a = inc(
        "4",
        "store_offline",
        Severity::Minor,
        &[("store_id", "M1-S1")],
    );
    n.handle_incident(0, a.clone());
    n.tick(30_000);
    let first: Vec<Notification> = std::iter::from_fn(|| n.poll_notification()).collect();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].incident_key, "4@1000");
    // Widened one minute later: well inside the update interval, still at once.
    a.kind = "merchant_config".into();
    a.scope = vec![("merchant_id".into(), "M1".into())];
    n.handle_incident(MIN, a.clone());
    n.tick(MIN);
    let out: Vec<Notification> = std::iter::from_fn(|| n.poll_notification()).collect();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].kind, NotificationKind::Resolved);
    assert_eq!(out[0].incident_key, "4@1000");
    assert_eq!(out[0].incident.kind, "store_offline");
    assert_eq!(
        out[0].incident.scope,
        [("store_id".to_owned(), "M1-S1".to_owned())]
    );
    assert_eq!(out[1].kind, NotificationKind::Firing);
    assert_eq!(out[1].incident_key, "4@1000.1");
    assert_eq!(
        out[1].incident.scope,
        [("merchant_id".to_owned(), "M1".to_owned())]
    );
    assert_ne!(out[0].idempotency_key, out[1].idempotency_key);
    // Merged away: the resolution closes the current label set and names the wider one.
    a.resolved_at_ms = Some(2 * MIN);
    a.merged_into = Some("9".into());
    n.handle_incident(2 * MIN, a);
    n.tick(2 * MIN);
    let out: Vec<Notification> = std::iter::from_fn(|| n.poll_notification()).collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, NotificationKind::Resolved);
    assert_eq!(out[0].incident_key, "4@1000.1");
    assert_eq!(out[0].incident.merged_into.as_deref(), Some("9"));
}
