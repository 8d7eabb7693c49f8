//! Unit tests of the incident layer: the engine on a small fleet in virtual time (a region
//! going silent and coming back), the flap damping of the bridge, and the book.

use storepulse_shared::{
    Heartbeat, Identity, IncidentKind, Label, LabelKey, LinkType, PayMethod, Record, RecordBody,
    Scheme, Seq, TerminalId, TxnOutcome,
};

use super::*;
use crate::detect::{Evidence, Family};
use crate::notify::Severity;

const MIN: i64 = 60_000;
const T0: i64 = 1_772_380_800_000;

fn label(s: &str) -> Label {
    Label::new(s).expect("valid label")
}

/// 40 terminals: 10 stores of 4 (stores 0-4 in region R0, 5-9 in R1), one merchant per store.
fn fleet() -> Vec<Identity> {
    (0..40)
        .map(|i| {
            let s = i / 4;
            let region = if s < 5 { "R0" } else { "R1" };
            Identity {
                terminal_id: TerminalId::new(format!("M{s}-S0-T{}", i % 4)).expect("id"),
                merchant_id: label(&format!("M{s}")),
                store_id: label(&format!("M{s}-S0")),
                region: label(region),
                city: label(&format!("{region}-C{}", s % 2)),
                acquirer: label("ACQ-A"),
                qr_channel: label("QR-A"),
                carrier: label(["CMCC", "CUCC", "CTCC"][i % 3]),
                link: LinkType::Wired,
                model: label("P2"),
                firmware: label("2.3.1"),
                app_version: label("1.0"),
            }
        })
        .collect()
}

fn heartbeat(seq: u64, at: i64) -> Record {
    Record {
        seq: Seq(seq),
        time_unix_ms: at,
        body: RecordBody::Heartbeat(Heartbeat {
            cpu_percent: 10.0,
            mem_used_bytes: 1,
            mem_total_bytes: 2,
            disk_free_bytes: 3,
            uptime_secs: 4,
            temperature_c: None,
            battery_percent: None,
            spool_records: 0,
        }),
    }
}

/// Drives the engine minute by minute: heartbeats from every terminal `alive` says is up,
/// ticks every 10 s; collects every event and every snapshot with its time.
struct Run {
    engine: IncidentEngine,
    fleet: Vec<Identity>,
    seq: u64,
    events: Vec<(i64, IncidentEvent)>,
    alerts: Vec<(i64, IncidentSnapshot)>,
}

impl Run {
    fn new() -> Self {
        let fleet = fleet();
        let mut engine = IncidentEngine::new(DetectorConfig::default());
        for id in &fleet {
            engine.handle_hello(T0, id);
        }
        Self {
            engine,
            fleet,
            seq: 0,
            events: Vec::new(),
            alerts: Vec::new(),
        }
    }

    fn minutes(&mut self, from: i64, to: i64, alive: impl Fn(&Identity) -> bool) {
        for m in from..to {
            for id in self.fleet.iter().filter(|id| alive(id)) {
                self.seq += 1;
                let at = T0 + m * MIN + 5_000;
                self.engine
                    .handle_records(at, &id.terminal_id, &[heartbeat(self.seq, at)]);
            }
            for k in 1..=6 {
                let t = T0 + m * MIN + k * 10_000;
                self.engine.handle_tick(t);
                while let Some(e) = self.engine.poll_event() {
                    self.events.push((t, e));
                }
                while let Some(s) = self.engine.poll_alert() {
                    self.alerts.push((t, s));
                }
            }
        }
    }
}

#[test]
fn a_silent_region_opens_one_incident_paged_once_and_resolved_after_the_hold() {
    let mut r = Run::new();
    r.minutes(0, 30, |_| true);
    assert!(r.events.is_empty(), "healthy fleet: {:?}", r.events);
    let r1 = |id: &Identity| id.region.as_str() == "R1";
    r.minutes(30, 45, |id| !r1(id));
    let opened: Vec<(IncidentKind, String)> = r
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            IncidentEvent::Opened(i) => Some((i.kind, i.scope_text())),
            _ => None,
        })
        .collect();
    assert_eq!(
        opened,
        vec![(IncidentKind::RegionalOutage, "region=R1".to_owned())]
    );
    // The notifier sees it, with its severity and its scope in the canonical spelling.
    let first = r.alerts.first().expect("a snapshot").1.clone();
    assert_eq!(first.kind, "regional_outage");
    assert_eq!(first.scope, vec![("region".to_owned(), "R1".to_owned())]);
    assert_eq!(first.severity, Severity::Major);
    assert_eq!(r.engine.incidents().count(), 1);

    // The region comes back: the incident resolves, but the notifier hears of it only once
    // the bridge's hold has passed (an outage ending in waves must not page anew).
    r.minutes(45, 90, |_| true);
    let resolved_at = r
        .events
        .iter()
        .find_map(|(t, e)| matches!(e, IncidentEvent::Resolved(_)).then_some(*t))
        .expect("resolved");
    let (sent_at, snap) = r
        .alerts
        .iter()
        .find(|(_, s)| s.resolved_at_ms.is_some())
        .expect("resolution released");
    assert_eq!(snap.id, first.id);
    assert!(*sent_at - resolved_at >= AlertBridge::HOLD_MS);
    assert!(*sent_at - resolved_at < AlertBridge::HOLD_MS + MIN);
    assert_eq!(r.engine.incidents().count(), 0);

    // The book, fed the same events, tells the same story.
    let mut book = IncidentBook::default();
    for (t, e) in r.events.clone() {
        book.handle_event(t, e);
    }
    assert_eq!(book.active().count(), 0);
    let rec = book.resolved().next().expect("resolved record");
    assert_eq!(rec.incident.kind, IncidentKind::RegionalOutage);
    assert_eq!(rec.timeline.first().map(|e| e.what), Some("opened"));
    assert_eq!(rec.timeline.last().map(|e| e.what), Some("resolved"));
    assert!(book.version >= 2);
}

fn incident(id: u64, resolved: Option<i64>) -> Incident {
    Incident {
        id,
        kind: IncidentKind::StoreOffline,
        scope: vec![(LabelKey::StoreId, "M1-S0".to_owned())],
        affected_terminals: 2,
        affected_stores: 1,
        affected_merchants: 1,
        scope_terminals: 2,
        evidence: Evidence {
            family: Family::Silence,
            window_ms: 0,
            attempts: 0,
            observed: 2.0,
            expected: 0.0,
            baseline_rate: 0.0,
            significance: 5.0,
            silent_terminals: 2,
            top_codes: vec![],
            examples: vec![],
            rtt_ms: None,
            loss_percent: None,
            device: None,
        },
        started_ms: T0 + id as i64 * MIN,
        opened_ms: T0 + id as i64 * MIN,
        updated_ms: T0,
        resolved_ms: resolved,
        explanation_en: String::new(),
        explanation_zh: String::new(),
        remediation_en: vec![],
        remediation_zh: vec![],
        merged_into: None,
    }
}

#[test]
fn a_flap_within_the_hold_continues_the_incident_under_its_first_identity() {
    let mut b = AlertBridge::default();
    let s = b
        .on_event(T0, &IncidentEvent::Opened(incident(1, None)), None)
        .expect("firing");
    assert_eq!((s.id.as_str(), s.scope[0].0.as_str()), ("1", "store_id"));
    assert!(
        b.on_event(
            T0 + MIN,
            &IncidentEvent::Resolved(incident(1, Some(T0 + MIN))),
            None
        )
        .is_none()
    );
    // Reopened 5 minutes later with a new detector id: the same incident to the notifier.
    let again = b
        .on_event(
            T0 + 6 * MIN,
            &IncidentEvent::Opened(incident(2, None)),
            None,
        )
        .expect("continues");
    assert_eq!((again.id.as_str(), again.started_at_ms), ("1", T0 + MIN));
    assert!(b.tick(T0 + 60 * MIN).is_empty(), "nothing held any more");
    // Resolved for good: released after the hold, not before.
    assert!(
        b.on_event(
            T0 + 7 * MIN,
            &IncidentEvent::Resolved(incident(2, Some(T0 + 7 * MIN))),
            None
        )
        .is_none()
    );
    assert!(b.tick(T0 + 7 * MIN + AlertBridge::HOLD_MS - 1).is_empty());
    let out = b.tick(T0 + 7 * MIN + AlertBridge::HOLD_MS);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].id, "1");
}

#[test]
fn the_book_counts_outcomes_per_minute_and_in_the_rollup() {
    let mut book = IncidentBook::default();
    let id = &fleet()[0];
    let pay = |seq: u64, code: &str| Record {
        seq: Seq(seq),
        time_unix_ms: T0,
        body: RecordBody::TxnOutcome(TxnOutcome {
            scheme: Scheme::Iso8583,
            code: code.to_owned(),
            latency_ms: 100,
            method: PayMethod::Card,
            route: None,
        }),
    };
    book.handle_records(T0, Some(id), &[pay(1, "00"), pay(2, "03"), pay(3, "51")]);
    let m = book.minutes.back().expect("a minute");
    assert_eq!((m.attempts, m.approved), (3, 1));
    assert_eq!(m.failures.get("merchant_config"), Some(&1));
    assert_eq!(m.failures.get("cardholder"), Some(&1));
    let bd = book
        .rollup
        .breakdown(LabelKey::MerchantId, T0 - MIN, T0 + MIN, None, 10)
        .expect("breakdown");
    assert_eq!(bd.rows[0].value, "M0");
    assert_eq!(
        (bd.rows[0].total.failures, bd.rows[0].total.declines),
        (1, 1)
    );
}

/// Issue 14 root 8 / issue 16 item 1: a restart mid-incident (export, encode through plain
/// data, restore) continues the same incident under the same id, resolves it as an engine
/// that never stopped would, and numbers the next incident after it. With a damaged
/// snapshot (a group index pointing nowhere) the restore refuses it and still continues the
/// open incident from the book.
#[test]
fn a_restored_engine_continues_its_incident_and_its_ids() {
    let mut r = Run::new();
    r.minutes(0, 30, |_| true);
    let r1 = |id: &Identity| id.region.as_str() == "R1";
    r.minutes(30, 45, |id| !r1(id));
    let mut book = IncidentBook::default();
    for (t, e) in r.events.clone() {
        book.handle_event(t, e);
    }
    let open_id = book.active().next().expect("open").incident.id;
    // What the shell stores: the book as plain data and the detector's snapshot.
    let records: Vec<RecordData> = book
        .active()
        .chain(book.resolved())
        .filter_map(|rec| book.record_data(rec.incident.id))
        .collect();
    let now = T0 + 45 * MIN;
    let snap = r.engine.export_detector(now);
    let mut restored_book = IncidentBook::default();
    assert_eq!(restored_book.restore(records.clone()), 0);
    assert_eq!(restored_book.active().count(), 1);
    let open: Vec<Incident> = restored_book.active().map(|x| x.incident.clone()).collect();
    assert_eq!(open[0], book.active().next().expect("open").incident);
    let (engine, err) = IncidentEngine::restore(
        DetectorConfig::default(),
        AlertBridge::HOLD_MS,
        now,
        &r.fleet,
        EngineRestore {
            detector: Some(snap.clone()),
            open: open.clone(),
            next_id: open_id + 1,
            bridge: r.engine.export_bridge(),
        },
    );
    assert!(err.is_none(), "{err:?}");
    // The notifier hears of the open incident again at once, under its id.
    let mut restarted = Run {
        engine,
        fleet: r.fleet.clone(),
        seq: r.seq,
        events: Vec::new(),
        alerts: Vec::new(),
    };
    let again = restarted.engine.poll_alert().expect("re-announced");
    assert_eq!(again.id, open_id.to_string());
    assert_eq!(again.resolved_at_ms, None);
    // Still silent: no new incident, the same one stays open.
    restarted.minutes(45, 50, |id| !r1(id));
    assert!(
        restarted
            .events
            .iter()
            .all(|(_, e)| !matches!(e, IncidentEvent::Opened(_))),
        "{:?}",
        restarted.events
    );
    assert_eq!(
        restarted
            .engine
            .incidents()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        [open_id]
    );
    // Back: it resolves under its id.
    restarted.minutes(50, 90, |_| true);
    assert!(
        restarted
            .events
            .iter()
            .any(|(_, e)| matches!(e, IncidentEvent::Resolved(i) if i.id == open_id))
    );
    // A new outage gets the next id, never a used one.
    restarted.minutes(90, 105, |id| id.region.as_str() != "R0");
    let new_ids: Vec<u64> = restarted
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            IncidentEvent::Opened(i) => Some(i.id),
            _ => None,
        })
        .collect();
    assert!(!new_ids.is_empty());
    assert!(new_ids.iter().all(|&id| id > open_id), "{new_ids:?}");

    // A damaged snapshot is refused, never trusted; the open incident continues anyway.
    let mut bad = snap;
    if let Some(t) = bad.terms.first_mut() {
        t.groups[0] = u32::MAX;
    }
    let (engine, err) = IncidentEngine::restore(
        DetectorConfig::default(),
        AlertBridge::HOLD_MS,
        now,
        &r.fleet,
        EngineRestore {
            detector: Some(bad),
            open,
            next_id: open_id + 1,
            bridge: BridgeExport::default(),
        },
    );
    assert!(err.is_some());
    assert_eq!(
        engine.incidents().map(|i| i.id).collect::<Vec<_>>(),
        [open_id]
    );
}
