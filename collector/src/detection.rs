//! The live detection loop: the IO shell around the sans-IO [`IncidentEngine`]. One task owns
//! the engine; the group-commit writer feeds it every newly stored record (after the commit, so
//! detection only ever sees durable data) and every accepted `Hello`; a timer ticks it with the
//! collector's wall clock; its incident events land in the [`IncidentBook`] the API reads and
//! its snapshots go to the notifier. Agents' incident queries are answered from the book
//! ([`Coverage`]).
//!
//! Restarts (issue 16 item 1, issue 14 root 8): every incident change is committed (fsync) to
//! the store with the id counter and the alert bridge's state before the notifier hears of it;
//! the detector's snapshot is written every [`SNAPSHOT_EVERY`] and at shutdown. [`load`] puts
//! it all back at start and replays the records stored after the snapshot (or, without one,
//! over the last [`REPLAY_WITHOUT_SNAPSHOT`]), so a restarted collector continues its open
//! incidents under the same ids and is not blind. `persist.rs` holds the store layout.

mod persist;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use storepulse_collector_core::Fleet;
use storepulse_collector_core::detect::{DetectorConfig, Incident, IncidentEvent};
use storepulse_collector_core::incident::{EngineRestore, IncidentBook, IncidentEngine, severity};
use storepulse_shared::{Identity, IncidentKind, LabelKey, Record, Seq, TerminalId};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::metrics::Metrics;
use crate::notify::Alerts;
use crate::now_unix_ms;
use crate::store::{Store, StoreError};

/// How often the detector is ticked.
pub const TICK: Duration = Duration::from_secs(10);
/// How often the detector's snapshot is written to the store (and once more at shutdown).
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);
/// Without a snapshot, the records that arrived this long before the start are replayed
/// (detection's longest window is an hour; its minute rings hold 64 minutes).
pub const REPLAY_WITHOUT_SNAPSHOT: Duration = Duration::from_secs(2 * 3600);
/// Records read per page while replaying.
const REPLAY_PAGE: usize = 2_000;

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

/// The incident book and engine a (re)started collector continues with: the book and the
/// detector's snapshot from the store, then the records stored after the snapshot (or over the
/// last [`REPLAY_WITHOUT_SNAPSHOT`] without one) replayed into both, without ticks. Blocking
/// (reads the store); called once before the collector serves.
pub(crate) fn load(
    store: &Store,
    config: DetectorConfig,
    resolution_hold_ms: i64,
    known: &[Identity],
    now: i64,
) -> Result<(IncidentBook, IncidentEngine), StoreError> {
    let loaded = persist::load(store)?;
    let mut book = IncidentBook::default();
    let skipped = book.restore(loaded.records) + loaded.skipped;
    book.restore_minutes(loaded.minutes);
    let next_id = loaded
        .next_id
        .max(book.max_id().map_or(1, |m| m.saturating_add(1)));
    let open: Vec<Incident> = book.active().map(|r| r.incident.clone()).collect();
    let snapshot_at = loaded.detector.as_ref().map(|s| s.taken_ms);
    let (mut engine, refused) = IncidentEngine::restore(
        config,
        resolution_hold_ms,
        now,
        known,
        EngineRestore {
            detector: loaded.detector,
            open,
            next_id,
            bridge: loaded.bridge,
        },
    );
    if let Some(e) = &refused {
        warn!(error = %e, "Detector snapshot refused; replaying history instead");
    }
    let since = match (snapshot_at, refused) {
        (Some(at), None) => at,
        _ => now.saturating_sub(REPLAY_WITHOUT_SNAPSHOT.as_millis() as i64),
    };
    let replayed = replay(store, known, since, &mut engine, &mut book)?;
    info!(
        open = book.active().count(),
        resolved = book.resolved().count(),
        skipped,
        next_id,
        snapshot_age_ms = snapshot_at.map(|at| now - at),
        replayed,
        "Incident book and detection restored"
    );
    Ok((book, engine))
}

/// Feeds the records that arrived after `since` (collector clock) into the engine and the
/// book, terminal by terminal, oldest first. Returns how many.
fn replay(
    store: &Store,
    known: &[Identity],
    since: i64,
    engine: &mut IncidentEngine,
    book: &mut IncidentBook,
) -> Result<usize, StoreError> {
    let mut total = 0;
    for id in known {
        let t = &id.terminal_id;
        let mut rows = Vec::new();
        let mut before = None;
        'pages: loop {
            let page = store.records_newest_first(t, before.as_ref(), REPLAY_PAGE)?;
            let full = page.len() == REPLAY_PAGE;
            for row in page {
                if row.record.received_unix_ms <= since {
                    break 'pages;
                }
                before = Some(row.key.clone());
                rows.push(row);
            }
            if !full {
                break;
            }
        }
        rows.reverse();
        total += rows.len();
        // One feed per arrival time, as the writer feeds a group.
        let mut i = 0;
        while i < rows.len() {
            let at = rows[i].record.received_unix_ms;
            let mut batch = Vec::new();
            while i < rows.len() && rows[i].record.received_unix_ms == at {
                let r = &rows[i];
                batch.push(Record {
                    seq: Seq(r.key.seq),
                    time_unix_ms: r.record.time_unix_ms,
                    body: r.record.body.clone(),
                });
                i += 1;
            }
            book.handle_records(at, Some(id), &batch);
            engine.handle_records(at, t, &batch);
        }
    }
    Ok(total)
}

/// Writes the detector's snapshot and the summary's minutes (blocking).
fn write_snapshot(store: &Store, engine: &IncidentEngine, book: &RwLock<IncidentBook>, now: i64) {
    let snap = engine.export_detector(now);
    let minutes = book
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .minutes_data();
    let started = std::time::Instant::now();
    match persist::snapshot_ops(store, &snap, &minutes).and_then(|ops| store.alerts_commit(&ops)) {
        Ok(()) => debug!(
            terminals = snap.terms.len(),
            groups = snap.groups.len(),
            ms = started.elapsed().as_millis() as u64,
            "Detector snapshot written"
        ),
        Err(e) => warn!(error = %e, "Writing the detector snapshot failed; the previous one stays"),
    }
}

/// Runs the incident engine until shutdown, recording incidents in `book` (and durably in
/// `store`) and handing each change to the alert notifier.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    mut engine: IncidentEngine,
    mut rx: mpsc::Receiver<DetectInput>,
    book: Arc<RwLock<IncidentBook>>,
    store: Store,
    metrics: Arc<Metrics>,
    alerts: Alerts,
    mut shutdown: watch::Receiver<bool>,
) {
    info!(terminals = engine.terminals(), "Detection started");
    // Open incidents restored from the store go to the notifier again at once, so it keeps
    // them open.
    persist_and_notify(&mut engine, &book, &store, &alerts).await;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshot = tokio::time::interval(SNAPSHOT_EVERY);
    snapshot.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    snapshot.tick().await;
    let mut counts: HashMap<&'static str, u64> = HashMap::new();
    loop {
        let now = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = snapshot.tick() => {
                // Blocking for the encode and one fsync'd batch (tens of ms for thousands of
                // terminals); detection is this task's only work.
                write_snapshot(&store, &engine, &book, now_unix_ms());
                continue;
            }
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
        persist_and_notify(&mut engine, &book, &store, &alerts).await;
    }
    write_snapshot(&store, &engine, &book, now_unix_ms());
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
    metrics.set_open_incidents(engine.incidents().map(|i| i.kind.as_str()));
}

/// After a tick: commits (fsync) the book's changes, the id counter and the alert bridge's
/// state, then hands the snapshots to the notifier, so nothing is paged that a restart could
/// forget.
async fn persist_and_notify(
    engine: &mut IncidentEngine,
    book: &RwLock<IncidentBook>,
    store: &Store,
    alerts: &Alerts,
) {
    let mut snaps = Vec::new();
    while let Some(snap) = engine.poll_alert() {
        snaps.push(snap);
    }
    let (changes, next_id) = {
        let mut book = book.write().unwrap_or_else(PoisonError::into_inner);
        let next_id = book.max_id().map_or(1, |m| m.saturating_add(1));
        (book.take_changes(), next_id)
    };
    if !changes.records.is_empty() || !changes.evicted.is_empty() || !snaps.is_empty() {
        let bridge = engine.export_bridge();
        let count = changes.records.len();
        match persist::book_ops(&changes, next_id, &bridge) {
            Ok(ops) => {
                let store = store.clone();
                let written = tokio::task::spawn_blocking(move || store.alerts_commit(&ops))
                    .await
                    .map_err(|e| StoreError::Corrupt(format!("store task: {e}")))
                    .and_then(|r| r);
                if let Err(e) = written {
                    error!(error = %e, incidents = count, "Storing incident changes failed");
                }
            }
            Err(e) => error!(error = %e, "Encoding incident changes failed"),
        }
    }
    for snap in snaps {
        alerts.handle_incident(snap);
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
