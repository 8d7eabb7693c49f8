//! The live detection loop: the IO shell around the sans-IO [`Detector`]. One task owns the
//! detector; the group-commit writer feeds it every newly stored record (after the commit, so
//! detection only ever sees durable data) and every accepted `Hello`; a timer ticks it with the
//! collector's wall clock; its incident events land in the [`IncidentBook`] the API reads.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use storepulse_collector_core::Fleet;
use storepulse_collector_core::detect::{
    Detector, DetectorConfig, Incident, IncidentEvent, IncidentId,
};
use storepulse_shared::{Identity, IncidentKind, LabelKey, Record, TerminalId};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::notify::{Alerts, IncidentSnapshot, Severity};
use crate::now_unix_ms;

/// How often the detector is ticked.
pub const TICK: Duration = Duration::from_secs(10);
/// Resolved incidents kept in memory for the API.
const HISTORY_LIMIT: usize = 2000;
/// Capacity of the writer-to-detector queue, messages (one per terminal per group commit).
pub(crate) const QUEUE: usize = 65_536;

/// Input from ingest.
#[derive(Debug)]
pub(crate) enum DetectInput {
    /// A terminal's Hello was accepted (its labels).
    Hello(i64, Box<Identity>),
    /// Newly stored records of one terminal, with their arrival time.
    Records(i64, TerminalId, Vec<Record>),
}

/// One step in an incident's life.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    /// When, collector clock, Unix ms.
    pub at_ms: i64,
    /// `opened`, `updated` or `resolved`.
    pub what: &'static str,
    /// The incident's explanation at that moment (English).
    pub explanation_en: String,
    /// The same in Chinese.
    pub explanation_zh: String,
    /// Affected terminals at that moment.
    pub affected_terminals: u32,
}

/// An incident with its timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    /// The latest state.
    pub incident: Incident,
    /// Every event, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// Active and recent incidents, as the API shows them.
#[derive(Debug, Default)]
pub struct IncidentBook {
    active: BTreeMap<IncidentId, IncidentRecord>,
    resolved: VecDeque<IncidentRecord>,
    /// Messages dropped because the detector's queue was full.
    pub dropped_inputs: u64,
    /// Grows with every change, so watchers (the live event stream) can tell.
    pub version: u64,
    /// Payment outcomes per minute of arrival, for the fleet overview.
    pub minutes: VecDeque<MinuteStats>,
    /// Failure rates by label over the last day, for the breakdown API.
    pub rollup: crate::rollup::Rollup,
}

/// Payment outcomes that arrived in one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteStats {
    /// Minute start, Unix ms.
    pub minute_ms: i64,
    /// Outcomes.
    pub attempts: u64,
    /// Approved.
    pub approved: u64,
    /// Declined or failed, by taxonomy class name.
    pub failures: BTreeMap<&'static str, u64>,
}

/// Minutes of outcome statistics kept.
const SUMMARY_MINUTES: usize = 120;

impl IncidentBook {
    /// Counts payment outcomes that arrived at `at_ms`.
    pub fn count_outcomes(&mut self, at_ms: i64, records: &[Record]) {
        let minute = at_ms - at_ms.rem_euclid(60_000);
        if self.minutes.back().is_none_or(|m| m.minute_ms < minute) {
            self.minutes.push_back(MinuteStats {
                minute_ms: minute,
                ..MinuteStats::default()
            });
            while self.minutes.len() > SUMMARY_MINUTES {
                self.minutes.pop_front();
            }
        }
        let Some(m) = self.minutes.back_mut() else {
            return;
        };
        for r in records {
            if let storepulse_shared::RecordBody::TxnOutcome(t) = &r.body {
                let c = storepulse_shared::taxonomy::classify(t.scheme, &t.code);
                m.attempts += 1;
                if c.approved {
                    m.approved += 1;
                } else {
                    *m.failures.entry(c.class.as_str()).or_default() += 1;
                }
            }
        }
    }

    /// Applies one detector event.
    pub fn apply(&mut self, at_ms: i64, event: IncidentEvent) {
        self.version += 1;
        let (what, inc) = match event {
            IncidentEvent::Opened(i) => ("opened", i),
            IncidentEvent::Updated(i) => ("updated", i),
            IncidentEvent::Resolved(i) => ("resolved", i),
        };
        let entry = TimelineEntry {
            at_ms,
            what,
            explanation_en: inc.explanation_en.clone(),
            explanation_zh: inc.explanation_zh.clone(),
            affected_terminals: inc.affected_terminals,
        };
        let mut rec = self
            .active
            .remove(&inc.id)
            .unwrap_or_else(|| IncidentRecord {
                incident: inc.clone(),
                timeline: Vec::new(),
            });
        rec.incident = inc;
        rec.timeline.push(entry);
        if what == "resolved" {
            self.resolved.push_front(rec);
            self.resolved.truncate(HISTORY_LIMIT);
        } else {
            self.active.insert(rec.incident.id, rec);
        }
    }

    /// Active incidents, newest first.
    pub fn active(&self) -> impl Iterator<Item = &IncidentRecord> {
        self.active.values().rev()
    }

    /// Resolved incidents, most recently resolved first.
    pub fn resolved(&self) -> impl Iterator<Item = &IncidentRecord> {
        self.resolved.iter()
    }

    /// One incident, active or resolved.
    pub fn get(&self, id: IncidentId) -> Option<&IncidentRecord> {
        self.active
            .get(&id)
            .or_else(|| self.resolved.iter().find(|r| r.incident.id == id))
    }
}

/// The identity the registry remembers for a terminal, so a restarted collector's detector
/// knows the fleet before the agents reconnect.
pub(crate) fn known_identities(fleet: &Fleet) -> Vec<Identity> {
    fleet
        .iter()
        .filter_map(|(_, e)| e.identity.clone())
        .collect()
}

fn in_scope(id: &Identity, scope: &[(LabelKey, String)]) -> bool {
    storepulse_collector_core::coverage::covers(scope, id)
}

/// Answers agents' `IncidentQuery` (message set 2) from the incident book, with the end of the
/// announced maintenance window an incident lies in as its expected end.
#[derive(Debug, Clone)]
pub(crate) struct Coverage {
    book: Arc<RwLock<IncidentBook>>,
    alerts: Alerts,
}

impl Coverage {
    pub(crate) fn new(book: Arc<RwLock<IncidentBook>>, alerts: Alerts) -> Self {
        Self { book, alerts }
    }

    /// The open incidents covering terminal `id`, for query `query_id`, at `now`.
    pub(crate) fn answer(
        &self,
        query_id: u64,
        now: i64,
        id: &Identity,
    ) -> storepulse_shared::IncidentList {
        use storepulse_collector_core::coverage::{Candidate, answer};
        let windows = self.alerts.windows();
        let book = self.book.read().unwrap_or_else(PoisonError::into_inner);
        let open: Vec<(&Incident, &'static str, Option<i64>)> = book
            .active()
            .map(|r| {
                let i = &r.incident;
                (i, severity(i).as_str(), expected_end(i, &windows, now))
            })
            .collect();
        answer(
            query_id,
            now,
            id,
            open.iter().map(|&(incident, severity, end)| Candidate {
                incident,
                severity,
                // Every incident is paged today; the suspected tier comes with issue 16.
                tier: "paged",
                expected_end_unix_ms: end,
            }),
        )
    }
}

/// The end of the announced maintenance window (open at `now`) whose scope lies inside the
/// incident's, for maintenance incidents.
fn expected_end(
    i: &Incident,
    windows: &[storepulse_collector_core::notify::MaintenanceWindow],
    now: i64,
) -> Option<i64> {
    if i.kind != IncidentKind::AcquirerMaintenance {
        return None;
    }
    windows
        .iter()
        .filter(|w| w.starts_at_ms <= now && now < w.ends_at_ms)
        .filter(|w| {
            !w.scope.is_empty()
                && w.scope.iter().all(|(k, v)| {
                    i.scope
                        .iter()
                        .any(|(d, sv)| Some(*d) == LabelKey::parse(k) && sv == v)
                })
        })
        .map(|w| w.ends_at_ms)
        .max()
}

/// How urgent an incident is, from its kind and size.
pub fn severity(inc: &Incident) -> Severity {
    let wide = inc.affected_terminals >= 50 || inc.affected_merchants >= 10;
    match inc.kind {
        IncidentKind::RegionalOutage
        | IncidentKind::CarrierOutage
        | IncidentKind::AcquirerOutage => {
            if wide {
                Severity::Critical
            } else {
                Severity::Major
            }
        }
        IncidentKind::AcquirerMaintenance => Severity::Minor,
        IncidentKind::MerchantConfig
        | IncidentKind::FirmwareRegression
        | IncidentKind::QrNotificationDelay => {
            if wide {
                Severity::Critical
            } else {
                Severity::Major
            }
        }
        IncidentKind::StoreOffline | IncidentKind::StoreNetwork => Severity::Minor,
        IncidentKind::TerminalFault | IncidentKind::TerminalConfig => Severity::Minor,
        IncidentKind::Unknown => {
            if inc.affected_terminals >= 10 {
                Severity::Major
            } else {
                Severity::Minor
            }
        }
    }
}

/// The wide incident (region, carrier, acquirer) whose scope contains every terminal of `inc`'s
/// scope, if `inc` is a narrow availability symptom it explains. A merchant's configuration
/// fault is never explained by an outage: it is a different cause.
pub fn explained_by<'a>(
    inc: &Incident,
    open: impl Iterator<Item = &'a Incident>,
    fleet: &HashMap<TerminalId, Identity>,
) -> Option<IncidentId> {
    let narrow = matches!(
        inc.kind,
        IncidentKind::StoreOffline
            | IncidentKind::StoreNetwork
            | IncidentKind::TerminalFault
            | IncidentKind::Unknown
    );
    if !narrow {
        return None;
    }
    let members: Vec<&Identity> = fleet.values().filter(|i| in_scope(i, &inc.scope)).collect();
    if members.is_empty() {
        return None;
    }
    open.filter(|w| {
        w.id != inc.id
            && matches!(
                w.kind,
                IncidentKind::RegionalOutage
                    | IncidentKind::CarrierOutage
                    | IncidentKind::AcquirerOutage
                    | IncidentKind::AcquirerMaintenance
            )
    })
    .find(|w| members.iter().all(|m| in_scope(m, &w.scope)))
    .map(|w| w.id)
}

/// What the notifier needs to know about an incident.
pub fn snapshot(inc: &Incident, explained: Option<IncidentId>) -> IncidentSnapshot {
    IncidentSnapshot {
        id: inc.id.to_string(),
        kind: inc.kind.as_str().to_owned(),
        severity: severity(inc),
        scope: inc
            .scope
            .iter()
            .map(|(d, v)| (d.as_str().to_owned(), v.clone()))
            .collect(),
        summary_en: inc.explanation_en.clone(),
        summary_zh: inc.explanation_zh.clone(),
        remediation_en: inc.remediation_en.join(" "),
        remediation_zh: inc.remediation_zh.join(""),
        affected_terminals: inc.affected_terminals,
        affected_stores: inc.affected_stores,
        affected_merchants: inc.affected_merchants,
        started_at_ms: inc.started_ms,
        resolved_at_ms: inc.resolved_ms,
        explained_by: explained.map(|e| e.to_string()),
    }
}

/// Between detection and the notifier: damps flapping. A resolution is held back for
/// [`AlertBridge::HOLD_MS`]; if an incident of the same kind and scope opens meanwhile (an
/// outage ending in waves, a cohort failing on and off), it continues the held one under the
/// held one's identity instead of paging anew. Pure logic, driven with the detector's events.
#[derive(Debug, Default)]
pub struct AlertBridge {
    /// Resolutions waiting out the hold: (kind, scope) → (snapshot, resolved at).
    held: BTreeMap<(String, String), (IncidentSnapshot, i64)>,
    /// Detector ids continuing an earlier incident → that incident's (id, started).
    alias: HashMap<IncidentId, (String, i64)>,
}

impl AlertBridge {
    /// How long a resolution is held back, ms.
    pub const HOLD_MS: i64 = 15 * 60_000;

    fn key(s: &IncidentSnapshot) -> (String, String) {
        let scope: Vec<String> = s.scope.iter().map(|(k, v)| format!("{k}={v}")).collect();
        (s.kind.clone(), scope.join(","))
    }

    /// Maps one detector event to what the notifier should see now (zero or one snapshot).
    pub fn on_event(
        &mut self,
        now_ms: i64,
        event: &IncidentEvent,
        explained: Option<IncidentId>,
    ) -> Option<IncidentSnapshot> {
        let (inc, opened, resolved) = match event {
            IncidentEvent::Opened(i) => (i, true, false),
            IncidentEvent::Updated(i) => (i, false, false),
            IncidentEvent::Resolved(i) => (i, false, true),
        };
        let mut snap = snapshot(inc, explained);
        if opened {
            let key = Self::key(&snap);
            if let Some((held, _)) = self.held.remove(&key) {
                self.alias
                    .insert(inc.id, (held.id.clone(), held.started_at_ms));
            }
        }
        if let Some((id, started)) = self.alias.get(&inc.id) {
            snap.id.clone_from(id);
            snap.started_at_ms = *started;
        }
        if resolved {
            self.alias.remove(&inc.id);
            let key = Self::key(&snap);
            self.held.insert(key, (snap, now_ms));
            return None;
        }
        Some(snap)
    }

    /// Resolutions whose hold has passed.
    pub fn tick(&mut self, now_ms: i64) -> Vec<IncidentSnapshot> {
        let due: Vec<(String, String)> = self
            .held
            .iter()
            .filter(|(_, (_, at))| now_ms - *at >= Self::HOLD_MS)
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|k| self.held.remove(&k).map(|(s, _)| s))
            .collect()
    }
}

/// Runs the detector until shutdown, recording incidents in `book` and handing each change to
/// the alert notifier.
pub(crate) async fn run(
    config: DetectorConfig,
    mut rx: mpsc::Receiver<DetectInput>,
    known: Vec<Identity>,
    book: Arc<RwLock<IncidentBook>>,
    metrics: Arc<Metrics>,
    alerts: Alerts,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut detector = Detector::new(config);
    let now = now_unix_ms();
    let mut fleet: HashMap<TerminalId, Identity> = HashMap::with_capacity(known.len());
    for id in known {
        detector.handle_hello(now, &id);
        fleet.insert(id.terminal_id.clone(), id);
    }
    info!(terminals = fleet.len(), "Detection started");
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lp = Loop {
        detector,
        fleet,
        bridge: AlertBridge::default(),
        announced: std::collections::HashSet::new(),
        counts: HashMap::new(),
    };
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            msg = rx.recv() => match msg {
                Some(DetectInput::Hello(at, identity)) => {
                    lp.detector.handle_hello(at, &identity);
                    lp.fleet.insert(identity.terminal_id.clone(), *identity);
                }
                Some(DetectInput::Records(at, terminal, records)) => {
                    {
                        let mut book = book.write().unwrap_or_else(PoisonError::into_inner);
                        book.count_outcomes(at, &records);
                        book.rollup.record(at, lp.fleet.get(&terminal), &records);
                    }
                    metrics.detection_records.fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    for r in &records {
                        lp.detector.handle_record(at, &terminal, r);
                    }
                    // A run of decisive failures that just became significant is judged now,
                    // not at the next tick.
                    if lp.detector.wants_tick() {
                        lp.tick(now_unix_ms(), &book, &metrics, &alerts);
                    }
                }
                None => break,
            },
            _ = tick.tick() => lp.tick(now_unix_ms(), &book, &metrics, &alerts),
        }
    }
    let counts = lp.counts;
    debug!(?counts, "Detection stopped");
}

/// The detection task's state between inputs.
struct Loop {
    detector: Detector,
    fleet: HashMap<TerminalId, Identity>,
    bridge: AlertBridge,
    // Maintenance windows announced through the alerts API/config also inform detection, so
    // failures inside them are classified as maintenance.
    announced: std::collections::HashSet<String>,
    counts: HashMap<&'static str, u64>,
}

impl Loop {
    /// One detection tick at `now`: announcements, detection, incident events to the book and
    /// to alerting.
    fn tick(&mut self, now: i64, book: &RwLock<IncidentBook>, metrics: &Metrics, alerts: &Alerts) {
        for w in alerts.windows() {
            if self.announced.insert(w.id.clone()) {
                let scope: Vec<(LabelKey, String)> = w
                    .scope
                    .iter()
                    .filter_map(|(k, v)| Some((LabelKey::parse(k)?, v.clone())))
                    .collect();
                self.detector.handle_announcement(
                    now,
                    storepulse_collector_core::detect::MaintenanceWindow {
                        scope,
                        start_ms: w.starts_at_ms,
                        end_ms: w.ends_at_ms,
                    },
                );
            }
        }
        self.detector.tick(now);
        metrics
            .detection_ticks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut book = book.write().unwrap_or_else(PoisonError::into_inner);
        while let Some(event) = self.detector.poll_event() {
            let (what, inc) = match &event {
                IncidentEvent::Opened(i) => ("opened", i),
                IncidentEvent::Updated(i) => ("updated", i),
                IncidentEvent::Resolved(i) => ("resolved", i),
            };
            *self.counts.entry(what).or_default() += 1;
            if what == "opened" {
                metrics.incidents_opened.add(inc.kind.as_str(), 1);
            }
            if what == "updated" {
                debug!(id = inc.id, kind = inc.kind.as_str(), scope = %inc.scope_text(), "Incident updated");
            } else {
                info!(id = inc.id, kind = inc.kind.as_str(), scope = %inc.scope_text(), affected = inc.affected_terminals, "Incident {what}");
            }
            let explained = explained_by(inc, self.detector.incidents(), &self.fleet);
            if let Some(snap) = self.bridge.on_event(now, &event, explained) {
                alerts.handle_incident(snap);
            }
            book.apply(now, event);
        }
        for snap in self.bridge.tick(now) {
            alerts.handle_incident(snap);
        }
        metrics.set_open_incidents(self.detector.incidents().map(|i| i.kind.as_str()));
    }
}

/// What the writer uses to feed detection without ever blocking a commit.
#[derive(Debug, Clone)]
pub(crate) struct DetectFeed {
    tx: mpsc::Sender<DetectInput>,
    book: Arc<RwLock<IncidentBook>>,
    metrics: Arc<Metrics>,
}

impl DetectFeed {
    pub(crate) fn new(
        tx: mpsc::Sender<DetectInput>,
        book: Arc<RwLock<IncidentBook>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { tx, book, metrics }
    }

    /// Queues one input; if detection is behind by a whole queue, the input is dropped and
    /// counted (ingest and durability come first).
    pub(crate) fn send(&self, input: DetectInput) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(input) {
            {
                self.metrics
                    .detection_dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut book = self.book.write().unwrap_or_else(PoisonError::into_inner);
                book.dropped_inputs += 1;
                if book.dropped_inputs.is_power_of_two() {
                    warn!(
                        dropped = book.dropped_inputs,
                        "Detection is behind; inputs dropped"
                    );
                }
            }
        }
    }
}
