//! The incident book: active and recently resolved incidents with their timelines, payment
//! outcomes per minute and the breakdown rollup, as the API shows them. Sans-IO: the shell
//! feeds it the stored records and the engine's incident events, with the time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use storepulse_shared::taxonomy::ErrorClass;
use storepulse_shared::{Identity, Record};

use crate::detect::{Incident, IncidentData, IncidentEvent, IncidentId};
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
    /// Incidents changed since the last [`IncidentBook::take_changes`].
    changed: BTreeSet<IncidentId>,
    /// Resolved incidents dropped from the history since then.
    evicted: Vec<IncidentId>,
}

/// An incident with its timeline as plain data (what the store keeps of the book).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordData {
    /// The latest state.
    pub incident: IncidentData,
    /// Timeline: at, what, explanation (en, zh), affected terminals.
    pub timeline: Vec<(i64, String, String, String, u32)>,
}

/// The book's changes since the last call, to persist: records to write, ids to delete.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BookExport {
    /// Changed incidents.
    pub records: Vec<RecordData>,
    /// Resolved incidents dropped from the history.
    pub evicted: Vec<IncidentId>,
}

/// One minute of payment outcomes as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinuteData {
    /// Minute start, Unix ms.
    pub minute_ms: i64,
    /// Outcomes.
    pub attempts: u64,
    /// Approved.
    pub approved: u64,
    /// Failures by taxonomy class name.
    pub failures: Vec<(String, u64)>,
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
        self.changed.insert(rec.incident.id);
        if what == "resolved" {
            self.resolved.push_front(rec);
            while self.resolved.len() > HISTORY_LIMIT {
                if let Some(old) = self.resolved.pop_back() {
                    self.changed.remove(&old.incident.id);
                    self.evicted.push(old.incident.id);
                }
            }
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

    /// What changed since the last call (incidents opened, updated or resolved; resolved ones
    /// dropped from the history), for the shell to persist.
    pub fn take_changes(&mut self) -> BookExport {
        let ids = std::mem::take(&mut self.changed);
        BookExport {
            records: ids
                .into_iter()
                .filter_map(|id| self.record_data(id))
                .collect(),
            evicted: std::mem::take(&mut self.evicted),
        }
    }

    /// One incident with its timeline as plain data.
    pub fn record_data(&self, id: IncidentId) -> Option<RecordData> {
        let r = self.get(id)?;
        Some(RecordData {
            incident: IncidentData::from(&r.incident),
            timeline: r
                .timeline
                .iter()
                .map(|t| {
                    (
                        t.at_ms,
                        t.what.to_owned(),
                        t.explanation_en.clone(),
                        t.explanation_zh.clone(),
                        t.affected_terminals,
                    )
                })
                .collect(),
        })
    }

    /// Takes back persisted incidents (after a restart): open ones become active, resolved
    /// ones the history (most recently resolved first, at most the history limit). Records
    /// naming something this build does not know are skipped; returns how many.
    pub fn restore(&mut self, records: Vec<RecordData>) -> usize {
        let mut skipped = 0;
        let mut resolved = Vec::new();
        for r in records {
            let Some(incident) = r.incident.to_incident() else {
                skipped += 1;
                continue;
            };
            let timeline = r
                .timeline
                .into_iter()
                .map(|(at_ms, what, en, zh, affected)| TimelineEntry {
                    at_ms,
                    what: match what.as_str() {
                        "opened" => "opened",
                        "resolved" => "resolved",
                        _ => "updated",
                    },
                    explanation_en: en,
                    explanation_zh: zh,
                    affected_terminals: affected,
                })
                .collect();
            let rec = IncidentRecord { incident, timeline };
            if rec.incident.resolved_ms.is_some() {
                resolved.push(rec);
            } else {
                self.active.insert(rec.incident.id, rec);
            }
        }
        resolved.sort_by_key(|r| std::cmp::Reverse((r.incident.resolved_ms, r.incident.id)));
        resolved.truncate(HISTORY_LIMIT);
        self.resolved = resolved.into();
        self.version += 1;
        skipped
    }

    /// The highest incident id in the book.
    pub fn max_id(&self) -> Option<IncidentId> {
        let a = self.active.keys().next_back().copied();
        let r = self.resolved.iter().map(|r| r.incident.id).max();
        a.max(r)
    }

    /// The per-minute outcome counts as plain data.
    pub fn minutes_data(&self) -> Vec<MinuteData> {
        self.minutes
            .iter()
            .map(|m| MinuteData {
                minute_ms: m.minute_ms,
                attempts: m.attempts,
                approved: m.approved,
                failures: m
                    .failures
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect(),
            })
            .collect()
    }

    /// Takes back per-minute outcome counts (after a restart), before any new record is
    /// counted; class names this build does not know are dropped.
    pub fn restore_minutes(&mut self, minutes: Vec<MinuteData>) {
        let mut out: VecDeque<MinuteStats> = minutes
            .into_iter()
            .map(|m| MinuteStats {
                minute_ms: m.minute_ms,
                attempts: m.attempts,
                approved: m.approved,
                failures: m
                    .failures
                    .into_iter()
                    .filter_map(|(k, v)| Some((ErrorClass::parse(&k)?.as_str(), v)))
                    .collect(),
            })
            .collect();
        out.make_contiguous().sort_by_key(|m| m.minute_ms);
        while out.len() > SUMMARY_MINUTES {
            out.pop_front();
        }
        self.minutes = out;
    }
}
