//! The terminal search and the terminal detail: `GET /api/v1/terminals` (filters, pagination)
//! and `GET /api/v1/terminals/{id}` (labels, state history, recent health and network
//! quality, outcomes by class, recent errors). Every handler bounds its work: the list scans
//! the registry once, the detail reads at most [`DETAIL_MAX_RECORDS`] records.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use storepulse_collector_core::{TerminalEntry, TerminalState, Thresholds};
use storepulse_shared::taxonomy;
use storepulse_shared::{Identity, LabelKey, RecordBody, TerminalId};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::common::{self, ApiError, ApiState, Class, ErrorBody};
use super::records::{Heartbeat, NetQuality, PayScheme};
use crate::now_unix_ms;
use crate::store::{RecordKey, RecordRow, Store, StoreError};

/// Terminals returned when `limit` is not given.
pub const DEFAULT_TERMINALS_LIMIT: usize = 100;
/// Most terminals returned by one request.
pub const MAX_TERMINALS_LIMIT: usize = 1000;
/// The terminal detail looks back this far, ms.
pub const DETAIL_WINDOW_MS: i64 = 24 * 3_600_000;
/// Most records the terminal detail reads (newest first); older history is cut and flagged.
pub const DETAIL_MAX_RECORDS: usize = 20_000;
/// Heartbeats and network samples shown in the detail.
pub const DETAIL_RECENT: usize = 20;
/// Recent errors shown in the detail.
pub const DETAIL_ERRORS: usize = 20;

/// Query of the terminal list: every label filter is an exact match.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only terminals with this `merchant_id` label.
    merchant_id: Option<String>,
    /// Only terminals with this `store_id` label.
    store_id: Option<String>,
    /// Only terminals with this `region` label.
    region: Option<String>,
    /// Only terminals with this `city` label.
    city: Option<String>,
    /// Only terminals with this `acquirer` label.
    acquirer: Option<String>,
    /// Only terminals with this `qr_channel` label.
    qr_channel: Option<String>,
    /// Only terminals with this `carrier` label.
    carrier: Option<String>,
    /// Only terminals with this `link` label (`wired`, `wifi`, `cellular`, `unknown`).
    link: Option<String>,
    /// Only terminals with this `model` label.
    model: Option<String>,
    /// Only terminals with this `firmware` label.
    firmware: Option<String>,
    /// Only terminals with this `app_version` label.
    app_version: Option<String>,
    /// Only terminals in this state (`online`, `stale` or `offline`).
    #[param(inline)]
    state: Option<StateFilter>,
    /// A substring of the terminal id (case-insensitive).
    q: Option<String>,
    /// Terminals per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Cursor: terminals after this id (the previous page's `next`).
    after: Option<String>,
}

/// One page of terminals.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminalPage {
    /// Terminals sorted by id.
    pub terminals: Vec<Terminal>,
    /// Terminals matching the filters (all pages).
    pub total: usize,
    /// The page size used.
    pub limit: usize,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<String>,
}

/// A terminal as the registry knows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Terminal {
    /// The terminal id (its certificate's common name).
    pub terminal_id: String,
    /// Its labels from its last Hello; null before the first.
    pub labels: Option<TerminalLabels>,
    /// Online, stale or offline, from the time it was last heard.
    pub state: Liveness,
    /// First seen, Unix ms.
    pub first_seen_unix_ms: i64,
    /// Last heard, Unix ms.
    pub last_seen_unix_ms: i64,
    /// Last heartbeat, Unix ms.
    pub last_heartbeat_unix_ms: Option<i64>,
    /// The agent's version from its last Hello.
    pub agent_version: String,
    /// Records stored.
    pub records_received: u64,
    /// Agent clock minus collector clock at the last Hello, ms.
    pub clock_offset_ms: Option<i64>,
    /// The offset exceeds `ingest.clock_skew_threshold_secs`: record times are corrected.
    pub clock_skewed: bool,
    /// Records the agent reported dropping, in total.
    pub spool_drops: DroppedRecords,
}

/// A terminal's labels (every label of `GET /api/v1/labels`), in `Identity` order.
#[derive(Debug)]
pub struct TerminalLabels(Vec<(LabelKey, String)>);

/// Records an agent reported dropping.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DroppedRecords {
    /// Heartbeats.
    pub heartbeats: u64,
    /// Network-quality samples.
    pub net_quality: u64,
    /// Payment outcomes.
    pub txn_outcomes: u64,
}

/// Whether a terminal is heard from (`unknown`: not registered yet, in the state history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Heard from within `stale_after`.
    Online,
    /// Silent for longer than `stale_after`.
    Stale,
    /// Silent for `offline_after` or longer.
    Offline,
    /// Not registered yet (state history only).
    Unknown,
}

/// The states a listed terminal can be in (the `state` filter of the list). `unknown` exists
/// only in a terminal's state history (before it registered), so it is no filter value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateFilter {
    /// Heard from within `stale_after`.
    Online,
    /// Silent for longer than `stale_after`.
    Stale,
    /// Silent for `offline_after` or longer.
    Offline,
}

impl From<StateFilter> for Liveness {
    fn from(s: StateFilter) -> Self {
        match s {
            StateFilter::Online => Self::Online,
            StateFilter::Stale => Self::Stale,
            StateFilter::Offline => Self::Offline,
        }
    }
}

/// One terminal with its last day.
#[derive(Debug, Serialize)]
pub struct TerminalDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub terminal: Terminal,
    /// The last day.
    #[serde(flatten)]
    pub detail: Detail,
}

/// The detail's part beyond the list's fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct Detail {
    /// What was read.
    pub window: Window,
    /// Online, stale and offline intervals from the gaps between the collector's receipts,
    /// with the fleet's thresholds.
    pub state_history: Vec<Interval>,
    /// The newest heartbeats (up to 20), newest first.
    pub health: Vec<HealthSample>,
    /// The newest network-quality samples (up to 20), newest first.
    pub network: Vec<NetworkSample>,
    /// Payment outcomes of the window.
    pub outcomes: Outcomes,
    /// The last 20 outcomes that were not approvals, newest first.
    pub recent_errors: Vec<RecentError>,
}

/// The last 24 h; at most 20,000 records are read, `truncated` says the day was cut.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Start, Unix ms.
    pub from_unix_ms: i64,
    /// End (now), Unix ms.
    pub to_unix_ms: i64,
    /// Records read.
    pub records_read: usize,
    /// Whether the record cap cut the day short.
    pub truncated: bool,
    /// Where the state history starts, Unix ms.
    pub history_from_unix_ms: i64,
}

/// One interval of the state history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    /// Start, Unix ms.
    pub from_unix_ms: i64,
    /// End, Unix ms.
    pub to_unix_ms: i64,
    /// The state in it.
    pub state: Liveness,
}

/// A heartbeat and when it was observed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthSample {
    /// Unix ms.
    pub time_unix_ms: i64,
    /// The heartbeat.
    pub heartbeat: Heartbeat,
}

/// A network-quality sample and when it was observed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSample {
    /// Unix ms.
    pub time_unix_ms: i64,
    /// The sample.
    pub net_quality: NetQuality,
}

/// Payment outcomes by class.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Outcomes {
    /// Outcomes.
    pub attempts: u64,
    /// Approved.
    pub approved: u64,
    /// Outcomes that were not approvals, by taxonomy class.
    pub by_class: BTreeMap<Class, u64>,
}

/// An outcome that was not an approval.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecentError {
    /// Unix ms.
    pub time_unix_ms: i64,
    /// The response-code table.
    pub scheme: PayScheme,
    /// The code.
    pub code: String,
    /// Its taxonomy class.
    pub class: Class,
    /// Whether detection alerts on this code.
    pub alertable: bool,
    /// Whether the taxonomy knows the code.
    pub known: bool,
    /// What it means (null for unknown codes).
    pub meaning: Meaning,
    /// The acquirer or channel that handled it, when known.
    pub route: Option<String>,
}

/// A code's meaning in English and Chinese; null when unknown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Meaning {
    /// English.
    pub en: Option<String>,
    /// Simplified Chinese.
    pub zh: Option<String>,
}

impl ListQuery {
    /// The filter on one label, if given (the terminal id is searched with `q`).
    fn label(&self, key: LabelKey) -> Option<&str> {
        match key {
            LabelKey::TerminalId => None,
            LabelKey::MerchantId => self.merchant_id.as_deref(),
            LabelKey::StoreId => self.store_id.as_deref(),
            LabelKey::Region => self.region.as_deref(),
            LabelKey::City => self.city.as_deref(),
            LabelKey::Acquirer => self.acquirer.as_deref(),
            LabelKey::QrChannel => self.qr_channel.as_deref(),
            LabelKey::Carrier => self.carrier.as_deref(),
            LabelKey::Link => self.link.as_deref(),
            LabelKey::Model => self.model.as_deref(),
            LabelKey::Firmware => self.firmware.as_deref(),
            LabelKey::AppVersion => self.app_version.as_deref(),
        }
    }
}

impl Terminal {
    /// A registry entry as the API shows it.
    pub fn new(id: &TerminalId, e: &TerminalEntry, state: TerminalState) -> Self {
        Self {
            terminal_id: id.as_str().to_owned(),
            labels: e.identity.as_ref().map(TerminalLabels::of),
            state: state.into(),
            first_seen_unix_ms: e.first_seen_unix_ms,
            last_seen_unix_ms: e.last_seen_unix_ms,
            last_heartbeat_unix_ms: e.last_heartbeat_unix_ms,
            agent_version: e.agent_version.clone(),
            records_received: e.records_received,
            clock_offset_ms: e.clock_offset_ms,
            clock_skewed: e.clock_skewed,
            spool_drops: DroppedRecords {
                heartbeats: e.spool_drops.heartbeats,
                net_quality: e.spool_drops.net_quality,
                txn_outcomes: e.spool_drops.txn_outcomes,
            },
        }
    }
}

impl TerminalLabels {
    fn of(id: &Identity) -> Self {
        Self(
            LabelKey::TERMINAL_LABELS
                .iter()
                .map(|&k| (k, id.label(k).to_owned()))
                .collect(),
        )
    }
}

impl From<TerminalState> for Liveness {
    fn from(s: TerminalState) -> Self {
        match s {
            TerminalState::Online => Self::Online,
            TerminalState::Stale => Self::Stale,
            TerminalState::Offline => Self::Offline,
        }
    }
}

impl Serialize for TerminalLabels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k.as_str(), v)?;
        }
        m.end()
    }
}

impl PartialSchema for TerminalLabels {
    /// Every label of the vocabulary as a required string, nothing else.
    fn schema() -> RefOr<Schema> {
        let mut o = ObjectBuilder::new()
            .description(Some("A terminal's labels (label key = value)"))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for k in LabelKey::TERMINAL_LABELS {
            o = o
                .property(k.as_str(), ObjectBuilder::new().schema_type(Type::String))
                .required(k.as_str());
        }
        o.into()
    }
}

impl ToSchema for TerminalLabels {}

impl PartialSchema for TerminalDetail {
    fn schema() -> RefOr<Schema> {
        common::merged(
            [Terminal::schema(), Detail::schema()],
            "One terminal: what the list shows, and its last day",
        )
    }
}

impl ToSchema for TerminalDetail {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        Terminal::schemas(schemas);
        Detail::schemas(schemas);
    }
}

/// Whether a terminal matches every given label filter (a terminal without labels matches
/// none).
fn labels_match(e: &TerminalEntry, q: &ListQuery) -> bool {
    LabelKey::TERMINAL_LABELS.iter().all(|&k| {
        q.label(k)
            .is_none_or(|want| e.identity.as_ref().is_some_and(|id| id.label(k) == want))
    })
}

/// `GET /api/v1/terminals`: terminals sorted by id, filtered by labels (exact), `state` and
/// `q` (a substring of the terminal id), `limit` at a time after the cursor `after`.
#[utoipa::path(
    get,
    path = "/api/v1/terminals",
    operation_id = "list_terminals",
    tag = "terminals",
    summary = "Terminals sorted by id, filtered by labels, state and id, one page at a time",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of terminals", body = TerminalPage),
        (status = 400, description = "Unknown parameter or bad value", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<TerminalPage>, ApiError> {
    let q = common::query(query)?;
    let limit = common::limit(q.limit, DEFAULT_TERMINALS_LIMIT, MAX_TERMINALS_LIMIT)?;
    let needle = q.q.as_deref().map(str::to_lowercase).unwrap_or_default();
    let now = now_unix_ms();
    let fleet = state.fleet.read().unwrap_or_else(PoisonError::into_inner);
    let th = fleet.thresholds();
    let mut total = 0usize;
    let mut page = Vec::new();
    let mut more = false;
    for (id, e) in fleet.iter() {
        let s = e.state(now, th);
        let matches = q.state.is_none_or(|w| Liveness::from(w) == s.into())
            && (needle.is_empty() || id.as_str().to_lowercase().contains(&needle))
            && labels_match(e, &q);
        if !matches {
            continue;
        }
        total += 1;
        if q.after.as_deref().is_some_and(|a| id.as_str() <= a) {
            continue;
        }
        if page.len() < limit {
            page.push(Terminal::new(id, e, s));
        } else {
            more = true;
        }
    }
    let next = if more {
        page.last().map(|t| t.terminal_id.clone())
    } else {
        None
    };
    Ok(Json(TerminalPage {
        terminals: page,
        total,
        limit,
        next,
    }))
}

/// `GET /api/v1/terminals/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/terminals/{id}",
    operation_id = "terminal",
    tag = "terminals",
    summary = "One terminal: labels, state, state history, recent health and network quality, outcomes by class, recent errors",
    params(("id" = String, Path, description = "Terminal id")),
    responses(
        (status = 200, description = "The terminal and its last day", body = TerminalDetail),
        (status = 404, description = "Unknown terminal", body = ErrorBody),
    )
)]
pub(crate) async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<TerminalDetail>, ApiError> {
    let unknown = || ApiError::NotFound(format!("unknown terminal {id:?}"));
    let terminal = TerminalId::new(id.clone()).map_err(|_| unknown())?;
    let now = now_unix_ms();
    let (summary, thresholds, first_seen) = {
        let fleet = state.fleet.read().unwrap_or_else(PoisonError::into_inner);
        let th = fleet.thresholds();
        let e = fleet.entry(&terminal).ok_or_else(unknown)?;
        (
            Terminal::new(&terminal, e, e.state(now, th)),
            th,
            e.first_seen_unix_ms,
        )
    };
    let store = state.store.clone();
    let since = now - DETAIL_WINDOW_MS;
    let (rows, truncated) = common::blocking("terminal detail", move || {
        read_recent(&store, &terminal, since)
    })
    .await?;
    Ok(Json(TerminalDetail {
        terminal: summary,
        detail: detail_of(&rows, now, thresholds, first_seen, truncated),
    }))
}

/// The terminal's records of the last day, newest first, at most [`DETAIL_MAX_RECORDS`];
/// `true` if the cap cut the day short.
fn read_recent(
    store: &Store,
    terminal: &TerminalId,
    since_ms: i64,
) -> Result<(Vec<RecordRow>, bool), StoreError> {
    const PAGE: usize = 2000;
    let mut out: Vec<RecordRow> = Vec::new();
    let mut before: Option<RecordKey> = None;
    loop {
        let want = PAGE.min(DETAIL_MAX_RECORDS - out.len());
        let page = store.records_newest_first(terminal, before.as_ref(), want)?;
        let n = page.len();
        before = page.last().map(|r| r.key.clone());
        let mut any_recent = false;
        for r in page {
            if r.record.received_unix_ms >= since_ms || r.record.time_unix_ms >= since_ms {
                any_recent = true;
                out.push(r);
            }
        }
        if n < want || !any_recent {
            return Ok((out, false));
        }
        if out.len() >= DETAIL_MAX_RECORDS {
            return Ok((out, true));
        }
    }
}

/// Online / stale / offline intervals over `[from, now)`, from the arrival times of the
/// terminal's records (heartbeats every interval while connected), with the fleet's
/// thresholds: after each arrival the terminal is online for `stale_after`, stale until
/// `offline_after`, then offline until the next arrival. Before its first registration it is
/// `unknown`. Adjacent intervals of one state are merged.
pub fn state_history(
    arrivals: &mut [i64],
    from: i64,
    now: i64,
    th: Thresholds,
    first_seen: i64,
) -> Vec<(i64, i64, Liveness)> {
    arrivals.sort_unstable();
    let mut out: Vec<(i64, i64, Liveness)> = Vec::new();
    let mut push = |a: i64, b: i64, s: Liveness| {
        let (a, b) = (a.max(from), b.min(now));
        if b <= a {
            return;
        }
        match out.last_mut() {
            Some(last) if last.2 == s && last.1 >= a => last.1 = last.1.max(b),
            _ => out.push((a, b, s)),
        }
    };
    let first = arrivals.iter().copied().find(|&t| t >= from);
    let lead_end = first.unwrap_or(now);
    if first_seen > from {
        push(from, first_seen.min(lead_end), Liveness::Unknown);
    }
    // Before the first arrival in the window, the previous one (if any) is older than the
    // window: treat the lead as offline once registered.
    push(first_seen.max(from), lead_end, Liveness::Offline);
    let inside: Vec<i64> = arrivals.iter().copied().filter(|&t| t >= from).collect();
    for (i, &t) in inside.iter().enumerate() {
        let next = inside.get(i + 1).copied().unwrap_or(now);
        let online_end = (t + th.stale_after_ms).min(next);
        let stale_end = (t + th.offline_after_ms).min(next);
        push(t, online_end, Liveness::Online);
        push(online_end, stale_end, Liveness::Stale);
        push(stale_end, next, Liveness::Offline);
    }
    out
}

fn detail_of(
    rows: &[RecordRow],
    now: i64,
    th: Thresholds,
    first_seen: i64,
    truncated: bool,
) -> Detail {
    let from = now - DETAIL_WINDOW_MS;
    let history_from = if truncated {
        rows.last()
            .map_or(from, |r| r.record.received_unix_ms.max(from))
    } else {
        from
    };
    let mut arrivals: Vec<i64> = rows.iter().map(|r| r.record.received_unix_ms).collect();
    let state_history = state_history(&mut arrivals, history_from, now, th, first_seen)
        .into_iter()
        .map(|(a, b, state)| Interval {
            from_unix_ms: a,
            to_unix_ms: b,
            state,
        })
        .collect();
    let mut health = Vec::new();
    let mut network = Vec::new();
    let mut errors = Vec::new();
    let mut attempts = 0u64;
    let mut approved = 0u64;
    let mut by_class: BTreeMap<Class, u64> = BTreeMap::new();
    for r in rows {
        let at = r.record.time_unix_ms;
        match &r.record.body {
            RecordBody::Heartbeat(h) if health.len() < DETAIL_RECENT => {
                health.push(HealthSample {
                    time_unix_ms: at,
                    heartbeat: h.into(),
                });
            }
            RecordBody::NetQuality(n) if network.len() < DETAIL_RECENT => {
                network.push(NetworkSample {
                    time_unix_ms: at,
                    net_quality: n.into(),
                });
            }
            RecordBody::TxnOutcome(t) if at >= from => {
                let c = taxonomy::classify(t.scheme, &t.code);
                attempts += 1;
                if c.approved {
                    approved += 1;
                    continue;
                }
                *by_class.entry(Class(c.class)).or_default() += 1;
                if errors.len() < DETAIL_ERRORS {
                    let info = taxonomy::lookup(t.scheme, &t.code);
                    errors.push(RecentError {
                        time_unix_ms: at,
                        scheme: t.scheme.into(),
                        code: t.code.clone(),
                        class: Class(c.class),
                        alertable: c.alertable,
                        known: c.known,
                        meaning: Meaning {
                            en: info.map(|i| i.meaning_en.clone()),
                            zh: info.map(|i| i.meaning_zh.clone()),
                        },
                        route: t.route.as_ref().map(|r| r.as_str().to_owned()),
                    });
                }
            }
            _ => {}
        }
    }
    Detail {
        window: Window {
            from_unix_ms: from,
            to_unix_ms: now,
            records_read: rows.len(),
            truncated,
            history_from_unix_ms: history_from,
        },
        state_history,
        health,
        network,
        outcomes: Outcomes {
            attempts,
            approved,
            by_class,
        },
        recent_errors: errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Liveness::{Offline, Online, Stale, Unknown};

    const TH: Thresholds = Thresholds {
        stale_after_ms: 90_000,
        offline_after_ms: 300_000,
    };

    #[test]
    fn history_from_arrival_gaps() {
        // Heard every 30 s from 0 to 600 s, then silent for 20 min, then again to now.
        let mut a: Vec<i64> = (0..=20).map(|i| i * 30_000).collect();
        a.extend((0..=10).map(|i| 1_800_000 + i * 30_000));
        let now = 2_100_000 + 10_000;
        let h = state_history(&mut a, -60_000, now, TH, -1_000_000);
        assert_eq!(
            h,
            vec![
                (-60_000, 0, Offline),
                (0, 600_000 + 90_000, Online),
                (690_000, 900_000, Stale),
                (900_000, 1_800_000, Offline),
                (1_800_000, now, Online),
            ]
        );
        // A terminal registered inside the window is unknown before.
        let mut a = vec![500_000];
        let h = state_history(&mut a, 0, 600_000, TH, 500_000);
        assert_eq!(
            h,
            vec![
                (0, 500_000, Unknown),
                (500_000, 590_000, Online),
                (590_000, 600_000, Stale)
            ]
        );
    }
}
