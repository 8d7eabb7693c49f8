//! The live engine: plays a simulator scenario on the wall clock through a [`LiveFleet`] of
//! real agents over real QUIC. The simulator runs first in virtual time and records each
//! terminal's own schedule (what its POS app and probes observe, when its link drops and
//! returns); [`play`] then replays that schedule at `speed` times real time, committing each
//! observation to the terminal's spool with a wall-clock timestamp and cutting and restoring
//! links. Delivery (backlog, replay, dedup) is then the real agents' and collector's business.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use storepulse_agent_core::NewRecord;
use storepulse_shared::{Record, RecordBody, TerminalId};
use storepulse_sim::{Announcement, Scenario, Sink};
use tokio::sync::watch;

use crate::live::LiveFleet;

/// One thing that happens to one terminal (or to everybody, for announcements).
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// The terminal observed something: commit it to its spool.
    Observed(TerminalId, RecordBody),
    /// The terminal's link went down (`false`) or came back (`true`).
    Link(TerminalId, bool),
    /// Planned maintenance was announced.
    Announcement(Announcement),
}

/// A scenario's per-terminal schedule, in virtual time.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Events in non-decreasing virtual time (Unix ms).
    pub events: Vec<(i64, LiveEvent)>,
    /// Virtual start, Unix ms.
    pub start_ms: i64,
    /// Virtual end, Unix ms.
    pub end_ms: i64,
}

#[derive(Debug, Default)]
struct Recorder {
    events: Vec<(i64, LiveEvent)>,
}

impl Sink for Recorder {
    fn record(&mut self, _: i64, _: &TerminalId, _: u64, _: &Record) {}

    fn observed(&mut self, now_ms: i64, terminal: &TerminalId, body: &RecordBody) {
        self.events
            .push((now_ms, LiveEvent::Observed(terminal.clone(), body.clone())));
    }

    fn link_changed(&mut self, now_ms: i64, terminal: &TerminalId, up: bool) {
        self.events
            .push((now_ms, LiveEvent::Link(terminal.clone(), up)));
    }

    fn announcement(&mut self, now_ms: i64, a: &Announcement) {
        self.events
            .push((now_ms, LiveEvent::Announcement(a.clone())));
    }
}

impl Timeline {
    /// Runs the scenario in virtual time and keeps each terminal's schedule.
    pub fn record(scenario: &Scenario) -> Self {
        let mut r = Recorder::default();
        storepulse_sim::run(scenario, &mut r);
        // The simulator emits in non-decreasing time; a stable sort keeps ties in its order.
        r.events.sort_by_key(|(t, _)| *t);
        Self {
            events: r.events,
            start_ms: scenario.start_ms,
            end_ms: scenario.end_ms(),
        }
    }

    /// How many observations it holds.
    pub fn observations(&self) -> usize {
        self.events
            .iter()
            .filter(|(_, e)| matches!(e, LiveEvent::Observed(..)))
            .count()
    }
}

/// Starts a [`LiveFleet`] of every terminal of `scenario` (certificates from the PKI at `pki`,
/// spools under `dir`) connected to the collector at `collector`.
pub async fn start_fleet(
    dir: &std::path::Path,
    pki: &std::path::Path,
    collector: std::net::SocketAddr,
    scenario: &Scenario,
    uplink: crate::live::LiveUplink,
) -> Result<LiveFleet> {
    let ids: Vec<_> = scenario
        .fleet
        .terminals
        .iter()
        .map(|t| t.identity.clone())
        .collect();
    LiveFleet::start(dir, pki, collector, &ids, uplink).await
}

/// What [`play`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayStats {
    /// Observations committed to spools.
    pub observed: u64,
    /// Link cuts.
    pub cuts: u64,
    /// Link restores.
    pub restores: u64,
    /// Whether it stopped early because of `stop`.
    pub stopped: bool,
}

/// Wall clock, Unix ms.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Replays `timeline` from virtual `from_ms` at `speed`× real time, in steps of `step`.
/// `on_step(virtual_now_ms, stats)` is called after every step (for progress output).
pub async fn play(
    timeline: &Timeline,
    fleet: &mut LiveFleet,
    speed: f64,
    from_ms: i64,
    step: Duration,
    mut stop: watch::Receiver<bool>,
    mut on_step: impl FnMut(i64, &PlayStats),
) -> Result<PlayStats> {
    let speed = speed.max(0.001);
    let real0 = tokio::time::Instant::now();
    let wall0 = wall_ms();
    let mut stats = PlayStats::default();
    let mut i = timeline.events.partition_point(|(t, _)| *t < from_ms);
    while i < timeline.events.len() {
        let elapsed = real0.elapsed().as_secs_f64();
        let virtual_now = from_ms + (elapsed * speed * 1000.0) as i64;
        // Everything due by now, grouped per terminal so each spool commits once per step.
        let mut appends: BTreeMap<TerminalId, Vec<NewRecord>> = BTreeMap::new();
        while i < timeline.events.len() && timeline.events[i].0 <= virtual_now {
            let (vt, ev) = &timeline.events[i];
            let wall = wall0 + ((vt - from_ms) as f64 / speed) as i64;
            match ev {
                LiveEvent::Observed(t, body) => {
                    appends.entry(t.clone()).or_default().push(NewRecord {
                        time_unix_ms: wall,
                        body: body.clone(),
                    });
                }
                LiveEvent::Link(t, up) => {
                    // Commit what was observed before the change while the old link state holds.
                    if let Some(recs) = appends.remove(t) {
                        stats.observed += recs.len() as u64;
                        fleet.append(t, recs).await?;
                    }
                    if *up {
                        fleet.restore(t);
                        stats.restores += 1;
                    } else {
                        fleet.cut(t);
                        stats.cuts += 1;
                    }
                }
                LiveEvent::Announcement(a) => {
                    tracing::info!(
                        kind = a.kind.as_str(),
                        start_ms = a.start_ms,
                        end_ms = a.end_ms,
                        "Maintenance announced"
                    );
                }
            }
            i += 1;
        }
        let mut joins = tokio::task::JoinSet::new();
        for (t, recs) in appends {
            stats.observed += recs.len() as u64;
            if let Some(agent) = fleet.agent(&t).cloned() {
                joins.spawn(async move { agent.append(recs).await });
            }
        }
        while let Some(r) = joins.join_next().await {
            r??;
        }
        on_step(virtual_now, &stats);
        tokio::select! {
            () = tokio::time::sleep(step) => {}
            _ = stop.wait_for(|s| *s) => {
                stats.stopped = true;
                return Ok(stats);
            }
        }
    }
    Ok(stats)
}
