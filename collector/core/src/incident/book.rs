//! The incident book: active and recently resolved incidents with their timelines, payment
//! outcomes per minute and the breakdown rollup, as the API shows them. Sans-IO: the shell
//! feeds it the stored records and the engine's incident events, with the time.

use std::collections::{BTreeMap, VecDeque};

use storepulse_shared::{Identity, Record};

use crate::detect::{Incident, IncidentEvent, IncidentId};
use crate::rollup::Rollup;

/// Resolved incidents kept in memory for the API.
const HISTORY_LIMIT: usize = 2000;

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
    pub rollup: Rollup,
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
    /// Newly stored `records` of a terminal with labels `identity` (`None`: not known yet)
    /// arrived at `at_ms`: their payment outcomes are counted per minute and in the rollup.
    pub fn handle_records(&mut self, at_ms: i64, identity: Option<&Identity>, records: &[Record]) {
        self.count_outcomes(at_ms, records);
        self.rollup.record(at_ms, identity, records);
    }

    /// Counts payment outcomes that arrived at `at_ms`.
    fn count_outcomes(&mut self, at_ms: i64, records: &[Record]) {
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

    /// Applies one incident event, at `at_ms`.
    pub fn handle_event(&mut self, at_ms: i64, event: IncidentEvent) {
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
