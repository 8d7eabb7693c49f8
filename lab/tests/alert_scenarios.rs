//! Alerts on whole scenarios, in virtual time: the simulator feeds the incident engine the live
//! collector drives (`IncidentEngine`: detection, `explained_by`, severity and the flap damping
//! of `AlertBridge`), its snapshots go to the notifier core, and the test counts what on-call
//! would receive. Proves inhibition (a regional outage pages once, not once per store),
//! maintenance windows (low urgency, or muted) and silences (muted, still detected).

use std::path::Path;

use storepulse_collector_core::detect::{DetectorConfig, IncidentEvent};
use storepulse_collector_core::incident::IncidentEngine;
use storepulse_collector_core::notify::{
    MaintenanceMode, Matcher, Notification, NotificationKind, Notifier, NotifyConfig, Severity,
    Silence,
};
use storepulse_lab::eval::maintenance_window;
use storepulse_shared::{Identity, LabelKey, Record, TerminalId};
use storepulse_sim::{Announcement, Scenario, Sink};

const TICK_MS: i64 = 10_000;

struct Pipeline {
    engine: IncidentEngine,
    notifier: Notifier,
    next_tick: i64,
    sent: Vec<Notification>,
    /// Every incident the detector opened: (id, kind, scope text).
    opened: Vec<(u64, String, String)>,
    announced: usize,
    windows_to_notifier: bool,
}

impl Pipeline {
    fn new(cfg: NotifyConfig, windows_to_notifier: bool) -> Self {
        Self {
            engine: IncidentEngine::new(DetectorConfig::default()),
            notifier: Notifier::new(cfg),
            next_tick: 0,
            sent: Vec::new(),
            opened: Vec::new(),
            announced: 0,
            windows_to_notifier,
        }
    }

    /// Ticks on the 10 s grid up to `now`, as the live loop's timer does.
    fn advance(&mut self, now: i64) {
        if self.next_tick == 0 {
            self.next_tick = now;
        }
        while self.next_tick <= now {
            let t = self.next_tick;
            self.tick(t);
            self.next_tick += TICK_MS;
        }
    }

    /// One engine tick at `t`, its snapshots to the notifier, and the notifier's tick.
    fn tick(&mut self, t: i64) {
        self.engine.handle_tick(t);
        while let Some(ev) = self.engine.poll_event() {
            if let IncidentEvent::Opened(i) = &ev {
                self.opened
                    .push((i.id, i.kind.as_str().to_owned(), i.scope_text()));
            }
        }
        while let Some(snap) = self.engine.poll_alert() {
            self.notifier.handle_incident(t, snap);
        }
        self.notifier.tick(t);
        while let Some(n) = self.notifier.poll_notification() {
            self.sent.push(n);
        }
    }

    fn firing(&self) -> Vec<&Notification> {
        self.sent
            .iter()
            .filter(|n| n.kind == NotificationKind::Firing)
            .collect()
    }
}

impl Sink for Pipeline {
    fn hello(&mut self, now_ms: i64, identity: &Identity, _epoch: u64) {
        self.advance(now_ms);
        self.engine.handle_hello(now_ms, identity);
    }

    fn record(&mut self, arrival_ms: i64, terminal: &TerminalId, _epoch: u64, record: &Record) {
        self.advance(arrival_ms);
        self.engine.handle_record(arrival_ms, terminal, record);
        // As the live loop does: a run that just became decisive is judged at once.
        if self.engine.wants_tick() {
            self.tick(arrival_ms);
        }
    }

    fn announcement(&mut self, now_ms: i64, a: &Announcement) {
        self.advance(now_ms);
        let window = maintenance_window(a, self.announced);
        self.announced += 1;
        self.engine.handle_maintenance(now_ms, &window);
        if self.windows_to_notifier {
            self.notifier.handle_maintenance(window);
        }
    }
}

fn scenario(name: &str) -> Scenario {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/scenarios")
        .join(name);
    Scenario::from_file(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn config(mode: MaintenanceMode) -> NotifyConfig {
    NotifyConfig {
        default_receivers: vec!["oncall".into()],
        maintenance_mode: mode,
        ..NotifyConfig::default()
    }
}

#[test]
fn a_regional_outage_pages_once_not_once_per_store() {
    let sc = scenario("regional_outage.toml");
    let mut p = Pipeline::new(config(MaintenanceMode::LowUrgency), false);
    storepulse_sim::run(&sc, &mut p);
    let regional: Vec<_> = p
        .opened
        .iter()
        .filter(|(_, k, _)| k == "regional_outage")
        .collect();
    assert!(
        !regional.is_empty(),
        "the outage was not detected: {:?}",
        p.opened
    );
    let firing = p.firing();
    let about: Vec<String> = firing
        .iter()
        .map(|n| {
            format!(
                "{} {}",
                n.incident.kind,
                n.incident
                    .scope
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect();
    let regional_pages = firing
        .iter()
        .filter(|n| n.incident.kind == "regional_outage")
        .count();
    let sent: Vec<String> = p
        .sent
        .iter()
        .map(|n| {
            format!(
                "{}@{} {:?} {} {}",
                n.incident.id, n.incident.started_at_ms, n.kind, n.created_at_ms, n.incident.kind
            )
        })
        .collect();
    assert_eq!(
        regional_pages, 1,
        "pages: {about:?}\nopened: {:?}\nsent: {sent:#?}",
        p.opened
    );
    // Whatever narrow symptoms detection saw inside the region were not paged on their own.
    assert!(
        firing.len() <= 2,
        "{} pages for one regional outage: {about:?}",
        firing.len()
    );
    assert!(
        p.sent
            .iter()
            .any(|n| n.kind == NotificationKind::Resolved && n.incident.kind == "regional_outage"),
        "the page was never resolved"
    );
}

#[test]
fn maintenance_windows_lower_urgency_or_mute() {
    let sc = scenario("acquirer_maintenance.toml");
    // Low urgency: the maintenance incident is notified, at severity info, with the announcement.
    let mut p = Pipeline::new(config(MaintenanceMode::LowUrgency), true);
    storepulse_sim::run(&sc, &mut p);
    let maint: Vec<_> = p
        .firing()
        .into_iter()
        .filter(|n| n.incident.kind == "acquirer_maintenance")
        .collect();
    assert!(
        !maint.is_empty(),
        "no maintenance incident notified: opened {:?}",
        p.opened
    );
    for n in &maint {
        assert_eq!(n.incident.severity, Severity::Info, "{n:?}");
        assert!(n.maintenance.is_some(), "announcement missing: {n:?}");
    }
    // Mute: the same day sends nothing about it, yet detection still recorded it.
    let mut p = Pipeline::new(config(MaintenanceMode::Mute), true);
    storepulse_sim::run(&sc, &mut p);
    assert!(
        p.opened.iter().any(|(_, k, _)| k == "acquirer_maintenance"),
        "not detected: {:?}",
        p.opened
    );
    let muted: Vec<_> = p
        .firing()
        .into_iter()
        .filter(|n| n.incident.kind == "acquirer_maintenance")
        .collect();
    assert!(muted.is_empty(), "muted maintenance was paged: {muted:?}");
}

#[test]
fn a_silence_mutes_pages_but_not_detection() {
    let sc = scenario("merchant_config.toml");
    let merchant = sc.incidents[0]
        .scope
        .pairs()
        .find(|(k, _)| *k == LabelKey::MerchantId)
        .map(|(_, v)| v.to_owned())
        .expect("merchant scope");
    // Without a silence, it pages.
    let mut p = Pipeline::new(config(MaintenanceMode::LowUrgency), false);
    storepulse_sim::run(&sc, &mut p);
    assert!(
        p.firing()
            .iter()
            .any(|n| n.incident.kind == "merchant_config"),
        "not paged: {:?}",
        p.opened
    );
    // With a silence on that merchant for the whole day, nothing about it is sent (the
    // silence uses the old short name `merchant`, still accepted for `merchant_id`)...
    let mut p = Pipeline::new(config(MaintenanceMode::LowUrgency), false);
    p.notifier.handle_silence(Silence {
        id: "s1".into(),
        matchers: vec![Matcher::parse(&format!("merchant={merchant}")).expect("matcher")],
        starts_at_ms: sc.start_ms,
        ends_at_ms: sc.end_ms(),
        author: "ops".into(),
        comment: "merchant re-registration in progress".into(),
    });
    storepulse_sim::run(&sc, &mut p);
    let paged: Vec<_> = p
        .firing()
        .into_iter()
        .filter(|n| {
            n.incident
                .scope
                .iter()
                .any(|(k, v)| k == "merchant_id" && *v == merchant)
        })
        .collect();
    assert!(paged.is_empty(), "silenced incident paged: {paged:?}");
    // ...but detection still opened it (the dashboard shows it).
    assert!(
        p.opened
            .iter()
            .any(|(_, k, s)| k == "merchant_config" && s.contains(&merchant)),
        "{:?}",
        p.opened
    );
}
