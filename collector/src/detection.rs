//! The live detection loop: the IO shell around the sans-IO [`IncidentEngine`]. One task owns
//! the engine; the group-commit writer feeds it every newly stored record (after the commit, so
//! detection only ever sees durable data) and every accepted `Hello`; a timer ticks it with the
//! collector's wall clock; its incident events land in the [`IncidentBook`] the API reads and
//! its snapshots go to the notifier. Agents' incident queries are answered from the book
//! ([`Coverage`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use storepulse_collector_core::Fleet;
use storepulse_collector_core::detect::{DetectorConfig, Incident, IncidentEvent};
use storepulse_collector_core::incident::{IncidentBook, IncidentEngine, severity};
use storepulse_shared::{Identity, IncidentKind, LabelKey, Record, TerminalId};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::notify::Alerts;
use crate::now_unix_ms;

/// How often the detector is ticked.
pub const TICK: Duration = Duration::from_secs(10);
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

/// The identity the registry remembers for a terminal, so a restarted collector's detector
/// knows the fleet before the agents reconnect.
pub(crate) fn known_identities(fleet: &Fleet) -> Vec<Identity> {
    fleet
        .iter()
        .filter_map(|(_, e)| e.identity.clone())
        .collect()
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

/// Runs the incident engine until shutdown, recording incidents in `book` and handing each
/// change to the alert notifier.
pub(crate) async fn run(
    config: DetectorConfig,
    mut rx: mpsc::Receiver<DetectInput>,
    known: Vec<Identity>,
    book: Arc<RwLock<IncidentBook>>,
    metrics: Arc<Metrics>,
    alerts: Alerts,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut engine = IncidentEngine::new(config);
    let now = now_unix_ms();
    for id in &known {
        engine.handle_hello(now, id);
    }
    info!(terminals = engine.terminals(), "Detection started");
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counts: HashMap<&'static str, u64> = HashMap::new();
    loop {
        let now = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tick.tick() => now_unix_ms(),
            msg = rx.recv() => match msg {
                Some(DetectInput::Hello(at, identity)) => {
                    engine.handle_hello(at, &identity);
                    continue;
                }
                Some(DetectInput::Records(at, terminal, records)) => {
                    book.write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .handle_records(at, engine.identity(&terminal), &records);
                    metrics.detection_records.fetch_add(records.len() as u64, Ordering::Relaxed);
                    engine.handle_records(at, &terminal, &records);
                    // A run of decisive failures that just became significant is judged now,
                    // not at the next tick.
                    if !engine.wants_tick() {
                        continue;
                    }
                    now_unix_ms()
                }
                None => break,
            },
        };
        tick_at(&mut engine, now, &book, &metrics, &alerts, &mut counts);
    }
    debug!(?counts, "Detection stopped");
}

/// One tick at `now`: announced maintenance windows in, detection, incident changes to the
/// book (with logs and metrics) and snapshots to the notifier.
fn tick_at(
    engine: &mut IncidentEngine,
    now: i64,
    book: &RwLock<IncidentBook>,
    metrics: &Metrics,
    alerts: &Alerts,
    counts: &mut HashMap<&'static str, u64>,
) {
    // Windows announced through the alerts API or config also inform detection, so failures
    // inside them are classified as maintenance.
    for w in alerts.windows() {
        engine.handle_maintenance(now, &w);
    }
    engine.handle_tick(now);
    metrics.detection_ticks.fetch_add(1, Ordering::Relaxed);
    {
        let mut book = book.write().unwrap_or_else(PoisonError::into_inner);
        while let Some(event) = engine.poll_event() {
            let (what, inc) = match &event {
                IncidentEvent::Opened(i) => ("opened", i),
                IncidentEvent::Updated(i) => ("updated", i),
                IncidentEvent::Resolved(i) => ("resolved", i),
            };
            *counts.entry(what).or_default() += 1;
            if what == "opened" {
                metrics.incidents_opened.add(inc.kind.as_str(), 1);
            }
            if what == "updated" {
                debug!(id = inc.id, kind = inc.kind.as_str(), scope = %inc.scope_text(), "Incident updated");
            } else {
                info!(id = inc.id, kind = inc.kind.as_str(), scope = %inc.scope_text(), affected = inc.affected_terminals, "Incident {what}");
            }
            book.handle_event(now, event);
        }
    }
    while let Some(snap) = engine.poll_alert() {
        alerts.handle_incident(snap);
    }
    metrics.set_open_incidents(engine.incidents().map(|i| i.kind.as_str()));
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
