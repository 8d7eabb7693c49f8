//! The incident layer: detection wired to alerting, as one sans-IO type ([`IncidentEngine`])
//! that the live collector, `storepulse-lab eval` and the alert scenario tests all drive, and
//! the incident book the API reads ([`IncidentBook`]).
//!
//! The engine owns the [`Detector`], the identities of the fleet, the maintenance windows it
//! has been told about and the [`AlertBridge`]; per tick it turns the detector's events into
//! (a) the same events for the book, logs and scoring, and (b) incident snapshots for the
//! notifier, each with the wider incident that explains it ([`explained_by`]) and its
//! [`severity`], resolutions held back by the bridge to damp flapping.

mod alerting;
mod book;

use std::collections::{HashMap, HashSet, VecDeque};

use storepulse_shared::{Identity, LabelKey, Record, TerminalId};

pub use self::alerting::{AlertBridge, BridgeExport, explained_by, severity, snapshot};
pub use self::book::{
    BookExport, IncidentBook, IncidentRecord, MinuteData, MinuteStats, RecordData, TimelineEntry,
};
use crate::detect::{
    Detector, DetectorConfig, DetectorSnapshot, Incident, IncidentEvent, IncidentId,
    MaintenanceWindow, SnapshotError,
};
use crate::notify::{self, IncidentSnapshot};

/// Detection wired to alerting: the one incident pipeline of the live collector, eval and the
/// alert tests.
///
/// Call order: [`Self::handle_hello`] for every terminal the fleet knows (at start) and every
/// accepted `Hello`; [`Self::handle_records`] (or [`Self::handle_record`]) for every stored
/// record with its arrival time, then, if [`Self::wants_tick`], [`Self::handle_tick`] at once
/// (a run of decisive failures just became significant); [`Self::handle_maintenance`] for
/// every announced maintenance window (repeats of a window id are ignored, so the shell may
/// pass its whole list every time); [`Self::handle_tick`] every few seconds (10 s is the design
/// point) with non-decreasing times. After each tick drain [`Self::poll_event`] (every
/// incident change, in order: for the [`IncidentBook`], logs and scoring) and
/// [`Self::poll_alert`] (what the notifier should see now). Nothing here reads a clock or
/// does IO, and nothing fails.
#[derive(Debug)]
pub struct IncidentEngine {
    detector: Detector,
    fleet: HashMap<TerminalId, Identity>,
    bridge: AlertBridge,
    /// Ids of the maintenance windows already given to the detector.
    announced: HashSet<String>,
    events: VecDeque<IncidentEvent>,
    alerts: VecDeque<IncidentSnapshot>,
}

/// What a restarted engine continues from: the detector's last snapshot (if one was taken and
/// decoded), the incidents the book shows open, the first incident id not yet used and the
/// bridge's held resolutions.
#[derive(Debug, Default)]
pub struct EngineRestore {
    /// The detector's last snapshot.
    pub detector: Option<DetectorSnapshot>,
    /// Incidents open now (the book's).
    pub open: Vec<Incident>,
    /// Incident ids below this were used.
    pub next_id: IncidentId,
    /// The bridge's state.
    pub bridge: BridgeExport,
}

impl IncidentEngine {
    /// An engine with no history, holding resolutions [`AlertBridge::HOLD_MS`].
    pub fn new(config: DetectorConfig) -> Self {
        Self::with_hold(config, AlertBridge::HOLD_MS)
    }

    /// An engine with no history, holding resolutions `hold_ms` to damp flapping.
    pub fn with_hold(config: DetectorConfig, hold_ms: i64) -> Self {
        Self {
            detector: Detector::new(config),
            fleet: HashMap::new(),
            bridge: AlertBridge::new(hold_ms),
            announced: HashSet::new(),
            events: VecDeque::new(),
            alerts: VecDeque::new(),
        }
    }

    /// An engine continuing after a restart at `now_ms`: the detector from its snapshot (or,
    /// without one, empty but continuing the open incidents: feed it the store's recent records
    /// with [`Self::handle_records`] before the first tick), the fleet's `known` identities, the
    /// bridge's held resolutions. Every open incident is queued for the notifier again (so it
    /// keeps it open). A snapshot that cannot be restored is dropped and its error returned
    /// beside the engine; the engine then continues as without one.
    pub fn restore(
        config: DetectorConfig,
        hold_ms: i64,
        now_ms: i64,
        known: &[Identity],
        state: EngineRestore,
    ) -> (Self, Option<SnapshotError>) {
        let mut engine = Self::with_hold(config.clone(), hold_ms);
        let mut error = None;
        engine.detector = match state
            .detector
            .map(|s| Detector::restore(config.clone(), s, state.open.clone(), state.next_id))
        {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                error = Some(e);
                Detector::resume(config, state.open, state.next_id)
            }
            None => Detector::resume(config, state.open, state.next_id),
        };
        for id in known {
            engine.handle_hello(now_ms, id);
        }
        engine.detector.refresh_members();
        engine.bridge.restore(state.bridge);
        let open: Vec<Incident> = engine.detector.incidents().cloned().collect();
        for inc in &open {
            let explained = explained_by(inc, engine.detector.incidents(), &engine.fleet);
            let event = IncidentEvent::Updated(inc.clone());
            if let Some(snap) = engine.bridge.on_event(now_ms, &event, explained) {
                engine.alerts.push_back(snap);
            }
        }
        (engine, error)
    }

    /// The detector's state as plain data, for a snapshot in the store.
    pub fn export_detector(&self, now_ms: i64) -> DetectorSnapshot {
        self.detector.export(now_ms)
    }

    /// The bridge's state (held resolutions, continued ids), for the store.
    pub fn export_bridge(&self) -> BridgeExport {
        self.bridge.export()
    }

    /// A terminal connected with this identity (or is known from before a restart).
    pub fn handle_hello(&mut self, now_ms: i64, identity: &Identity) {
        self.detector.handle_hello(now_ms, identity);
        self.fleet
            .insert(identity.terminal_id.clone(), identity.clone());
    }

    /// One stored record of `terminal` arrived at `now_ms`.
    pub fn handle_record(&mut self, now_ms: i64, terminal: &TerminalId, record: &Record) {
        self.detector.handle_record(now_ms, terminal, record);
    }

    /// Stored records of `terminal` arrived at `now_ms`.
    pub fn handle_records(&mut self, now_ms: i64, terminal: &TerminalId, records: &[Record]) {
        for r in records {
            self.detector.handle_record(now_ms, terminal, r);
        }
    }

    /// An announced maintenance window (from the alerts API or config, or a scenario): failures
    /// of its acquirer or channel inside it are maintenance. A window id seen before is
    /// ignored; scope keys that name no label are dropped.
    pub fn handle_maintenance(&mut self, now_ms: i64, window: &notify::MaintenanceWindow) {
        if !self.announced.insert(window.id.clone()) {
            return;
        }
        let scope = window
            .scope
            .iter()
            .filter_map(|(k, v)| Some((LabelKey::parse(k)?, v.clone())))
            .collect();
        self.detector.handle_announcement(
            now_ms,
            MaintenanceWindow {
                scope,
                start_ms: window.starts_at_ms,
                end_ms: window.ends_at_ms,
            },
        );
    }

    /// Whether a record just made a run of decisive failures significant: call
    /// [`Self::handle_tick`] now rather than at the next interval.
    pub fn wants_tick(&self) -> bool {
        self.detector.wants_tick()
    }

    /// Runs detection at `now_ms` and maps its incident events to the book's and the
    /// notifier's outputs; resolutions whose flap-damping hold has passed are released.
    pub fn handle_tick(&mut self, now_ms: i64) {
        self.detector.tick(now_ms);
        while let Some(event) = self.detector.poll_event() {
            let inc = match &event {
                IncidentEvent::Opened(i)
                | IncidentEvent::Updated(i)
                | IncidentEvent::Resolved(i) => i,
            };
            let explained = explained_by(inc, self.detector.incidents(), &self.fleet);
            if let Some(snap) = self.bridge.on_event(now_ms, &event, explained) {
                self.alerts.push_back(snap);
            }
            self.events.push_back(event);
        }
        self.alerts.extend(self.bridge.tick(now_ms));
    }

    /// The next incident change (opened, updated, resolved), oldest first.
    pub fn poll_event(&mut self) -> Option<IncidentEvent> {
        self.events.pop_front()
    }

    /// The next incident snapshot for the notifier.
    pub fn poll_alert(&mut self) -> Option<IncidentSnapshot> {
        self.alerts.pop_front()
    }

    /// The open incidents.
    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.detector.incidents()
    }

    /// The identity of a known terminal.
    pub fn identity(&self, terminal: &TerminalId) -> Option<&Identity> {
        self.fleet.get(terminal)
    }

    /// Terminals known.
    pub fn terminals(&self) -> usize {
        self.fleet.len()
    }
}

#[cfg(test)]
mod tests;
