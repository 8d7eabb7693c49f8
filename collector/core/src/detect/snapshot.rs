//! What detection remembers, as plain data, so a restarted collector is not blind (issue 14,
//! root 8): [`Detector::export`] takes a [`DetectorSnapshot`] (interned labels, terminals,
//! groups with their minute windows and baselines, fleet figures, the bookkeeping of open
//! incidents, the incident id counter) and [`Detector::restore`] builds a detector from one.
//! [`IncidentData`] is an incident as plain data (for the incident book's store).
//!
//! These are serialisation types at the core's edge (serde, no IO): the shell encodes them
//! with a version and decides what to do with a snapshot that does not decode (log it, replay
//! the store's history instead). [`Detector::restore`] checks every index of a snapshot before
//! it uses it and refuses an inconsistent one ([`SnapshotError`]), so a damaged snapshot can
//! never panic detection later.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use storepulse_shared::taxonomy::ErrorClass;
use storepulse_shared::{IncidentKind, LabelKey, Scheme, TerminalId};

use super::state::{Bucket, DIMSETS, Group, Health, NDIM, NFAM, State, Term, Volume};
use super::text;
use super::types::{CodeCount, DeviceReading, Evidence, Example, Incident, IncidentId};
use super::{Detector, DetectorConfig, Family, MaintenanceWindow, Open};

/// The snapshot layout's version; a shell stores it with the snapshot and ignores snapshots of
/// another version (replaying history instead).
pub const DETECTOR_SNAPSHOT_VERSION: u32 = 2;

/// Why a snapshot cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot's layout version is not this build's.
    #[error("snapshot version {0}, expected {DETECTOR_SNAPSHOT_VERSION}")]
    Version(u32),
    /// An index or name in the snapshot points nowhere.
    #[error("inconsistent snapshot: {0}")]
    Inconsistent(&'static str),
}

/// Everything the detector learned, as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorSnapshot {
    /// [`DETECTOR_SNAPSHOT_VERSION`].
    pub version: u32,
    /// When it was taken, collector clock, Unix ms.
    pub taken_ms: i64,
    /// The next incident id.
    pub next_id: IncidentId,
    /// Interned label values per dimension (index = the value's id).
    pub labels: Vec<Vec<String>>,
    /// Terminals, by index.
    pub terms: Vec<TermSnapshot>,
    /// Label groups, by index.
    pub groups: Vec<GroupSnapshot>,
    /// Fleet-wide decayed history: attempts, failures per family, its minute.
    pub fleet_attempts: f64,
    /// Failures per family.
    pub fleet_fails: [f64; NFAM],
    /// Attempts each family's rate counts (excluded minutes left out).
    pub fleet_fam_attempts: [f64; NFAM],
    /// Minute of the fleet history.
    pub fleet_minute: i64,
    /// Expected and missed heartbeats.
    pub beats: f64,
    /// Missed heartbeats.
    pub missed: f64,
    /// Per family: until when failures stay out of the fleet history (minute).
    pub fleet_exclusions: [i64; NFAM],
    /// Share of degraded network samples.
    pub nq_bad_share: f64,
    /// Share of distressed heartbeats.
    pub hot_share: f64,
    /// Terminals whose last heartbeat was distressed.
    pub hot: Vec<u32>,
    /// Bookkeeping of the open incidents.
    pub open: Vec<OpenSnapshot>,
    /// Announced maintenance windows.
    pub windows: Vec<WindowSnapshot>,
    /// Per family: groups with recent failures and the minute of the latest.
    pub dirty: Vec<Vec<(u32, i64)>>,
    /// Per family: last localisation time.
    pub last_localize: [i64; NFAM],
    /// Per family: significance of unexplained flags at the last localisation.
    pub tried: Vec<Vec<(u32, f64)>>,
    /// Silence scopes awaiting confirmation, with when first seen.
    pub pending: Vec<(Vec<(String, u32)>, i64)>,
    /// Last tick.
    pub last_tick: i64,
    /// Minute of the last volume test.
    pub last_volume_min: i64,
    /// Incidents resolved in the last hour: family, terminals, when (no reopen without a new
    /// failure).
    pub resolved: Vec<(String, Vec<u32>, i64)>,
}

/// One terminal's detection state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TermSnapshot {
    /// Terminal id.
    pub id: String,
    /// Interned label ids per dimension.
    pub labels: [u32; NDIM],
    /// Group index per dimset.
    pub groups: Vec<u32>,
    /// Last arrival.
    pub last_arrival: i64,
    /// Last heartbeat observation time.
    pub last_hb_obs: Option<i64>,
    /// Learned heartbeat interval, ms.
    pub hb_interval_ms: f64,
    /// Gaps the interval was learned from.
    pub gaps_seen: u32,
    /// A short gap waiting for a second to agree.
    pub short_gap: Option<f64>,
    /// Latest RTT, loss and their baselines.
    pub net: [Option<f32>; 4],
    /// Recent failures: time, family, scheme, code.
    pub recent: Vec<(i64, String, Scheme, String)>,
    /// Last approved payment.
    pub last_approval: i64,
    /// Recent network samples: time, degraded.
    pub nq: Vec<(i64, bool)>,
    /// Device health: cpu base, temp base, cpu, temp.
    pub health: [f32; 4],
    /// Healthy beats seen, run of distressed beats.
    pub health_counts: [u32; 2],
    /// Distressed run: since, last.
    pub health_times: [i64; 2],
}

/// One label group's windows and baselines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    /// Index into the dimsets.
    pub dimset: u32,
    /// Interned values.
    pub values: [u32; 3],
    /// Member terminals, ascending.
    pub members: Vec<u32>,
    /// Minutes with attempts: minute, attempts, failures per family.
    pub ring: Vec<(i64, u32, [u32; NFAM])>,
    /// Decayed attempts.
    pub base_attempts: f64,
    /// Decayed failures per family.
    pub base_fails: [f64; NFAM],
    /// Decayed attempts each family's rate counts.
    pub base_fam_attempts: [f64; NFAM],
    /// Minute of the baseline.
    pub base_minute: i64,
    /// Per family: excluded from the baseline until (minute).
    pub excluded_until: [i64; NFAM],
    /// Per family: failure runs.
    pub run: [u32; NFAM],
    /// Payment volume by hour of day.
    pub vol: Option<VolumeSnapshot>,
}

/// A group's payment volume by hour of day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeSnapshot {
    /// Attempts per hour of day.
    pub per_hour: [f32; 24],
    /// Days learned per hour.
    pub days: [u16; 24],
    /// Hour being counted.
    pub hour: i64,
    /// Whether that hour is partial.
    pub partial: bool,
    /// Attempts counted in it.
    pub acc: u32,
}

/// The detector's bookkeeping of one open incident (the incident itself is in the book).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSnapshot {
    /// Incident id.
    pub id: IncidentId,
    /// Signal family.
    pub family: String,
    /// Scope with interned values (incl. the internal `link`).
    pub scope_ids: Vec<(String, u32)>,
    /// Last time its signal was seen.
    pub last_active: i64,
    /// Last payment attempt in scope.
    pub last_attempt: i64,
    /// Last event emitted.
    pub last_emit: i64,
    /// Last refresh.
    pub last_refresh: i64,
    /// Failure rate when it opened.
    pub open_rate: f64,
}

/// An announced maintenance window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSnapshot {
    /// Scope pairs.
    pub scope: Vec<(String, String)>,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End, Unix ms.
    pub end_ms: i64,
}

/// An incident as plain data (what the incident book stores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentData {
    /// Id.
    pub id: IncidentId,
    /// Kind name.
    pub kind: String,
    /// Scope pairs, canonical key names.
    pub scope: Vec<(String, String)>,
    /// Affected terminals, stores, merchants; terminals in scope.
    pub counts: [u32; 4],
    /// Evidence.
    pub evidence: EvidenceData,
    /// Onset, opened, updated.
    pub times: [i64; 3],
    /// Resolved at.
    pub resolved_ms: Option<i64>,
    /// Explanation, English.
    pub explanation_en: String,
    /// Explanation, Chinese.
    pub explanation_zh: String,
    /// Merged into this incident.
    pub merged_into: Option<IncidentId>,
}

/// Evidence as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceData {
    /// Family name.
    pub family: String,
    /// Window, ms.
    pub window_ms: i64,
    /// Attempts.
    pub attempts: u64,
    /// Observed, expected, baseline rate, significance.
    pub figures: [f64; 4],
    /// Silent terminals.
    pub silent_terminals: u32,
    /// Top codes: scheme, code, class, count, meaning en, meaning zh.
    pub top_codes: Vec<(Scheme, String, String, u32, String, String)>,
    /// Examples: terminal, time, scheme, code.
    pub examples: Vec<(String, i64, Scheme, String)>,
    /// RTT now and baseline.
    pub rtt_ms: Option<(f32, f32)>,
    /// Loss now and baseline.
    pub loss_percent: Option<(f32, f32)>,
    /// Device: temperature, its baseline, cpu, its baseline.
    pub device: Option<[f32; 4]>,
}

impl Family {
    /// Parses [`Family::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            Family::MerchantConfig,
            Family::TerminalConfig,
            Family::TerminalFault,
            Family::Availability,
            Family::Settlement,
            Family::Silence,
            Family::Volume,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

impl From<&Incident> for IncidentData {
    fn from(i: &Incident) -> Self {
        let e = &i.evidence;
        Self {
            id: i.id,
            kind: i.kind.as_str().to_owned(),
            scope: i
                .scope
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect(),
            counts: [
                i.affected_terminals,
                i.affected_stores,
                i.affected_merchants,
                i.scope_terminals,
            ],
            evidence: EvidenceData {
                family: e.family.as_str().to_owned(),
                window_ms: e.window_ms,
                attempts: e.attempts,
                figures: [e.observed, e.expected, e.baseline_rate, e.significance],
                silent_terminals: e.silent_terminals,
                top_codes: e
                    .top_codes
                    .iter()
                    .map(|c| {
                        (
                            c.scheme,
                            c.code.clone(),
                            c.class.as_str().to_owned(),
                            c.count,
                            c.meaning_en.clone(),
                            c.meaning_zh.clone(),
                        )
                    })
                    .collect(),
                examples: e
                    .examples
                    .iter()
                    .map(|x| {
                        (
                            x.terminal.as_str().to_owned(),
                            x.time_ms,
                            x.scheme,
                            x.code.clone(),
                        )
                    })
                    .collect(),
                rtt_ms: e.rtt_ms,
                loss_percent: e.loss_percent,
                device: e.device.map(|d| {
                    [
                        d.temperature_c,
                        d.temperature_baseline_c,
                        d.cpu_percent,
                        d.cpu_baseline_percent,
                    ]
                }),
            },
            times: [i.started_ms, i.opened_ms, i.updated_ms],
            resolved_ms: i.resolved_ms,
            explanation_en: i.explanation_en.clone(),
            explanation_zh: i.explanation_zh.clone(),
            merged_into: i.merged_into,
        }
    }
}

impl IncidentData {
    /// The incident, or `None` if a name in it is unknown to this build (a kind, family,
    /// label key, class or terminal id). Remediation comes from the kind, as when it opened.
    pub fn to_incident(&self) -> Option<Incident> {
        let kind = IncidentKind::parse(&self.kind)?;
        let e = &self.evidence;
        let family = Family::parse(&e.family)?;
        let scope = self
            .scope
            .iter()
            .map(|(k, v)| Some((LabelKey::parse(k)?, v.clone())))
            .collect::<Option<Vec<_>>>()?;
        let top_codes = e
            .top_codes
            .iter()
            .map(|(scheme, code, class, count, en, zh)| {
                Some(CodeCount {
                    scheme: *scheme,
                    code: code.clone(),
                    class: ErrorClass::parse(class)?,
                    count: *count,
                    meaning_en: en.clone(),
                    meaning_zh: zh.clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let examples = e
            .examples
            .iter()
            .map(|(t, time_ms, scheme, code)| {
                Some(Example {
                    terminal: TerminalId::new(t).ok()?,
                    time_ms: *time_ms,
                    scheme: *scheme,
                    code: code.clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let remediation = if family == Family::Volume {
            text::VOLUME_REMEDIATION
        } else {
            text::remediation(kind)
        };
        Some(Incident {
            id: self.id,
            kind,
            scope,
            affected_terminals: self.counts[0],
            affected_stores: self.counts[1],
            affected_merchants: self.counts[2],
            scope_terminals: self.counts[3],
            evidence: Evidence {
                family,
                window_ms: e.window_ms,
                attempts: e.attempts,
                observed: e.figures[0],
                expected: e.figures[1],
                baseline_rate: e.figures[2],
                significance: e.figures[3],
                silent_terminals: e.silent_terminals,
                top_codes,
                examples,
                rtt_ms: e.rtt_ms,
                loss_percent: e.loss_percent,
                device: e.device.map(|d| DeviceReading {
                    temperature_c: d[0],
                    temperature_baseline_c: d[1],
                    cpu_percent: d[2],
                    cpu_baseline_percent: d[3],
                }),
            },
            started_ms: self.times[0],
            opened_ms: self.times[1],
            updated_ms: self.times[2],
            resolved_ms: self.resolved_ms,
            explanation_en: self.explanation_en.clone(),
            explanation_zh: self.explanation_zh.clone(),
            remediation_en: remediation.iter().map(|r| r.0).collect(),
            remediation_zh: remediation.iter().map(|r| r.1).collect(),
            merged_into: self.merged_into,
        })
    }
}

fn check(ok: bool, what: &'static str) -> Result<(), SnapshotError> {
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::Inconsistent(what))
    }
}

fn key_of(name: &str) -> Result<LabelKey, SnapshotError> {
    LabelKey::parse(name).ok_or(SnapshotError::Inconsistent("label key"))
}

impl Detector {
    /// Everything detection learned, as plain data, at `now_ms`.
    pub fn export(&self, now_ms: i64) -> DetectorSnapshot {
        let st = &self.st;
        let pairs = |m: &HashMap<u32, i64>| {
            let mut v: Vec<(u32, i64)> = m.iter().map(|(&g, &t)| (g, t)).collect();
            v.sort_unstable();
            v
        };
        DetectorSnapshot {
            version: DETECTOR_SNAPSHOT_VERSION,
            taken_ms: now_ms,
            next_id: self.next_id,
            labels: st.interner.values.clone(),
            terms: st
                .terms
                .iter()
                .map(|t| TermSnapshot {
                    id: t.id.as_str().to_owned(),
                    labels: t.labels,
                    groups: t.groups.clone(),
                    last_arrival: t.last_arrival,
                    last_hb_obs: t.last_hb_obs,
                    hb_interval_ms: t.hb_interval_ms,
                    gaps_seen: t.gaps_seen,
                    short_gap: t.short_gap,
                    net: [t.rtt_ms, t.loss_percent, t.rtt_base, t.loss_base],
                    recent: t
                        .recent
                        .iter()
                        .map(|(time, f, s, c)| (*time, f.as_str().to_owned(), *s, c.clone()))
                        .collect(),
                    last_approval: t.last_approval,
                    nq: t.nq.iter().copied().collect(),
                    health: [
                        t.health.cpu_base,
                        t.health.temp_base,
                        t.health.cpu,
                        t.health.temp,
                    ],
                    health_counts: [t.health.healthy_seen, t.health.run],
                    health_times: [t.health.since, t.health.last],
                })
                .collect(),
            groups: st
                .groups
                .iter()
                .map(|g| GroupSnapshot {
                    dimset: g.dimset as u32,
                    values: g.values,
                    members: g.members.clone(),
                    ring: g
                        .ring
                        .iter()
                        .map(|b| (b.minute, b.attempts, b.fails))
                        .collect(),
                    base_attempts: g.base_attempts,
                    base_fails: g.base_fails,
                    base_fam_attempts: g.base_fam_attempts,
                    base_minute: g.base_minute,
                    excluded_until: g.excluded_until,
                    run: g.run,
                    vol: g.vol.as_ref().map(|v| VolumeSnapshot {
                        per_hour: v.per_hour,
                        days: v.days,
                        hour: v.hour,
                        partial: v.partial,
                        acc: v.acc,
                    }),
                })
                .collect(),
            fleet_attempts: st.fleet_attempts,
            fleet_fails: st.fleet_fails,
            fleet_fam_attempts: st.fleet_fam_attempts,
            fleet_minute: st.fleet_minute,
            beats: st.beats,
            missed: st.missed,
            fleet_exclusions: st.fleet_exclusions,
            nq_bad_share: st.nq_bad_share,
            hot_share: st.hot_share,
            hot: st.hot.iter().copied().collect(),
            open: self
                .open
                .iter()
                .map(|o| OpenSnapshot {
                    id: o.inc.id,
                    family: o.family.as_str().to_owned(),
                    scope_ids: o
                        .scope_ids
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), *v))
                        .collect(),
                    last_active: o.last_active,
                    last_attempt: o.last_attempt,
                    last_emit: o.last_emit,
                    last_refresh: o.last_refresh,
                    open_rate: o.open_rate,
                })
                .collect(),
            windows: self
                .windows
                .iter()
                .map(|w| WindowSnapshot {
                    scope: w
                        .scope
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                        .collect(),
                    start_ms: w.start_ms,
                    end_ms: w.end_ms,
                })
                .collect(),
            dirty: self.dirty.iter().map(pairs).collect(),
            last_localize: self.last_localize,
            tried: self
                .tried
                .iter()
                .map(|m| {
                    let mut v: Vec<(u32, f64)> = m.iter().map(|(&g, &s)| (g, s)).collect();
                    v.sort_unstable_by_key(|p| p.0);
                    v
                })
                .collect(),
            pending: self
                .pending
                .iter()
                .map(|(scope, &at)| {
                    (
                        scope
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), *v))
                            .collect(),
                        at,
                    )
                })
                .collect(),
            resolved: self
                .resolved
                .iter()
                .map(|(f, m, at)| (f.as_str().to_owned(), m.clone(), *at))
                .collect(),
            last_tick: self.last_tick,
            last_volume_min: self.last_volume_min,
        }
    }

    /// A detector that continues from `snapshot` (taken by [`Self::export`]), with `open` the
    /// incidents that are open now (from the incident book, the newer truth: incidents opened
    /// or resolved after the snapshot was taken are taken from there) and incident ids
    /// continuing from at least `next_id`. An inconsistent snapshot is refused whole.
    pub fn restore(
        cfg: DetectorConfig,
        snapshot: DetectorSnapshot,
        open: Vec<Incident>,
        next_id: IncidentId,
    ) -> Result<Self, SnapshotError> {
        if snapshot.version != DETECTOR_SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(snapshot.version));
        }
        let s = snapshot;
        let mut d = Detector::new(cfg);
        check(s.labels.len() == NDIM, "dimensions")?;
        check(s.dirty.len() == NFAM && s.tried.len() == NFAM, "families")?;
        let nterms = s.terms.len();
        let ngroups = s.groups.len();
        let mut st = State::new(d.cfg.baseline_half_life_ms);
        st.interner.ids = s
            .labels
            .iter()
            .map(|vals| {
                vals.iter()
                    .enumerate()
                    .map(|(i, v)| (v.clone(), i as u32))
                    .collect()
            })
            .collect();
        st.interner.values = s.labels;
        for g in s.groups {
            let dimset = g.dimset as usize;
            check(dimset < DIMSETS.len(), "dimset")?;
            for (i, key) in DIMSETS[dimset].iter().enumerate() {
                let n = st.interner.cardinality(*key);
                check((g.values[i] as usize) < n, "group value")?;
            }
            check(
                g.members.iter().all(|&m| (m as usize) < nterms)
                    && g.members.windows(2).all(|w| w[0] < w[1]),
                "group members",
            )?;
            check(g.ring.windows(2).all(|w| w[0].0 < w[1].0), "window minutes")?;
            let windowed = dimset > 0 && dimset < super::state::WINDOWED;
            check(g.vol.is_some() == windowed, "volume")?;
            st.group_ids
                .insert((dimset, g.values), st.groups.len() as u32);
            st.groups.push(Group {
                dimset,
                values: g.values,
                members: g.members,
                ring: g
                    .ring
                    .into_iter()
                    .map(|(minute, attempts, fails)| Bucket {
                        minute,
                        attempts,
                        fails,
                    })
                    .collect(),
                base_attempts: g.base_attempts,
                base_fails: g.base_fails,
                base_fam_attempts: g.base_fam_attempts,
                base_minute: g.base_minute,
                excluded_until: g.excluded_until,
                run: g.run,
                vol: g.vol.map(|v| {
                    Box::new(Volume {
                        per_hour: v.per_hour,
                        days: v.days,
                        hour: v.hour,
                        partial: v.partial,
                        acc: v.acc,
                    })
                }),
            });
        }
        for (ti, t) in s.terms.into_iter().enumerate() {
            let id = TerminalId::new(&t.id).map_err(|_| SnapshotError::Inconsistent("terminal"))?;
            check(t.groups.len() == DIMSETS.len(), "terminal groups")?;
            check(
                t.groups.iter().all(|&g| (g as usize) < ngroups),
                "terminal group",
            )?;
            for (i, key) in super::state::DIMS.iter().enumerate() {
                check(
                    (t.labels[i] as usize) < st.interner.cardinality(*key),
                    "terminal label",
                )?;
            }
            let recent = t
                .recent
                .into_iter()
                .map(|(time, f, scheme, code)| {
                    Ok((
                        time,
                        Family::parse(&f).ok_or(SnapshotError::Inconsistent("family"))?,
                        scheme,
                        code,
                    ))
                })
                .collect::<Result<Vec<_>, SnapshotError>>()?;
            check(
                st.by_id.insert(id.clone(), ti as u32).is_none(),
                "duplicate terminal",
            )?;
            st.terms.push(Term {
                id,
                labels: t.labels,
                groups: t.groups,
                last_arrival: t.last_arrival,
                last_hb_obs: t.last_hb_obs,
                hb_interval_ms: t.hb_interval_ms,
                gaps_seen: t.gaps_seen,
                short_gap: t.short_gap,
                rtt_ms: t.net[0],
                loss_percent: t.net[1],
                rtt_base: t.net[2],
                loss_base: t.net[3],
                recent,
                last_approval: t.last_approval,
                nq: t.nq.into_iter().collect::<VecDeque<_>>(),
                health: Health {
                    cpu_base: t.health[0],
                    temp_base: t.health[1],
                    cpu: t.health[2],
                    temp: t.health[3],
                    healthy_seen: t.health_counts[0],
                    run: t.health_counts[1],
                    since: t.health_times[0],
                    last: t.health_times[1],
                },
            });
        }
        check(s.hot.iter().all(|&t| (t as usize) < nterms), "hot terminal")?;
        st.hot = s.hot.into_iter().collect::<BTreeSet<_>>();
        st.fleet_attempts = s.fleet_attempts;
        st.fleet_fails = s.fleet_fails;
        st.fleet_fam_attempts = s.fleet_fam_attempts;
        st.fleet_minute = s.fleet_minute;
        st.beats = s.beats;
        st.missed = s.missed;
        st.fleet_exclusions = s.fleet_exclusions;
        st.nq_bad_share = s.nq_bad_share;
        st.hot_share = s.hot_share;
        d.st = st;
        for (fi, (dirty, tried)) in s.dirty.into_iter().zip(s.tried).enumerate() {
            check(
                dirty.iter().all(|&(g, _)| (g as usize) < ngroups)
                    && tried.iter().all(|&(g, _)| (g as usize) < ngroups),
                "dirty group",
            )?;
            d.dirty[fi] = dirty.into_iter().collect();
            d.tried[fi] = tried.into_iter().collect();
        }
        d.last_localize = s.last_localize;
        for (scope, at) in s.pending {
            let scope = scope
                .into_iter()
                .map(|(k, v)| Ok((key_of(&k)?, v)))
                .collect::<Result<Vec<_>, SnapshotError>>()?;
            d.pending.insert(scope, at);
        }
        for (f, members, at) in s.resolved {
            let family = Family::parse(&f).ok_or(SnapshotError::Inconsistent("family"))?;
            check(
                members.iter().all(|&t| (t as usize) < nterms),
                "resolved terminal",
            )?;
            d.resolved.push((family, members, at));
        }
        d.last_tick = s.last_tick;
        d.last_volume_min = s.last_volume_min;
        for w in s.windows {
            let scope = w
                .scope
                .into_iter()
                .map(|(k, v)| Ok((key_of(&k)?, v)))
                .collect::<Result<Vec<_>, SnapshotError>>()?;
            d.windows.push(MaintenanceWindow {
                scope,
                start_ms: w.start_ms,
                end_ms: w.end_ms,
            });
        }
        let books: HashMap<IncidentId, OpenSnapshot> =
            s.open.into_iter().map(|o| (o.id, o)).collect();
        d.next_id = s.next_id.max(next_id).max(1);
        d.reopen(open, &books)?;
        Ok(d)
    }

    /// A detector with no learned history that continues the `open` incidents (when there is
    /// no snapshot: the shell then replays the store's recent records into it) and numbers new
    /// incidents from at least `next_id`.
    pub fn resume(cfg: DetectorConfig, open: Vec<Incident>, next_id: IncidentId) -> Self {
        let mut d = Detector::new(cfg);
        d.next_id = next_id.max(1);
        // Without a snapshot nothing is bookkept yet; `reopen` cannot fail on an empty map.
        let _ = d.reopen(open, &HashMap::new());
        d
    }

    /// Re-opens `open` (incidents the book shows open), with the detector's bookkeeping from
    /// `books` where the snapshot has it and fresh bookkeeping otherwise. Scopes are interned
    /// (a label not seen yet gets an id; its group fills as terminals say Hello).
    fn reopen(
        &mut self,
        open: Vec<Incident>,
        books: &HashMap<IncidentId, OpenSnapshot>,
    ) -> Result<(), SnapshotError> {
        self.open.clear();
        for inc in open {
            self.next_id = self.next_id.max(inc.id.saturating_add(1));
            let kept = books.get(&inc.id);
            let scope_ids = match kept {
                Some(o) => o
                    .scope_ids
                    .iter()
                    .map(|(k, v)| Ok((key_of(k)?, *v)))
                    .collect::<Result<Vec<_>, SnapshotError>>()?,
                None => inc
                    .scope
                    .iter()
                    .map(|(k, v)| (*k, self.st.interner.intern(*k, v)))
                    .collect(),
            };
            for (k, v) in &scope_ids {
                check(
                    (*v as usize) < self.st.interner.cardinality(*k),
                    "open incident scope",
                )?;
            }
            let members = self.st.members_of(&scope_ids);
            let family = kept
                .and_then(|o| Family::parse(&o.family))
                .unwrap_or(inc.evidence.family);
            let at = inc.updated_ms;
            let open_rate = kept.map_or_else(|| inc.evidence.observed_rate(), |o| o.open_rate);
            self.open.push(Open {
                family,
                scope_ids,
                members,
                last_active: kept.map_or(at, |o| o.last_active),
                last_attempt: kept.map_or(at, |o| o.last_attempt),
                last_emit: kept.map_or(at, |o| o.last_emit),
                last_refresh: kept.map_or(at, |o| o.last_refresh),
                open_rate,
                inc,
            });
        }
        Ok(())
    }

    /// Re-computes open incidents' members after terminals said Hello (restored scopes whose
    /// terminals were not known yet).
    pub fn refresh_members(&mut self) {
        for i in 0..self.open.len() {
            let members = self.st.members_of(&self.open[i].scope_ids);
            self.open[i].members = members;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_round_trip() {
        for f in [
            Family::MerchantConfig,
            Family::TerminalConfig,
            Family::TerminalFault,
            Family::Availability,
            Family::Settlement,
            Family::Silence,
            Family::Volume,
        ] {
            assert_eq!(Family::parse(f.as_str()), Some(f));
        }
        assert_eq!(Family::parse("nope"), None);
    }
}
