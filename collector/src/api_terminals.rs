//! The terminal search, the terminal detail and the failure breakdown by label:
//! `GET /api/v1/terminals` (filters, pagination), `GET /api/v1/terminals/{id}` (labels, state
//! history, recent health and network quality, outcomes by class, recent errors) and
//! `GET /api/v1/breakdown` (failure rate per label value over time, from `storepulse_collector_core::rollup`).
//! Every handler bounds its work: the list scans the registry once, the detail reads at most
//! [`DETAIL_MAX_RECORDS`] records, the breakdown reads the in-memory rollup.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use storepulse_collector_core::{TerminalEntry, TerminalState, Thresholds};
use storepulse_shared::taxonomy;
use storepulse_shared::{LabelKey, RecordBody, Scheme, TerminalId};
use tracing::error;

use crate::api::{ApiError, ApiState, body_json, terminal_json};
use crate::now_unix_ms;
use crate::store::{RecordKey, RecordRow};
use storepulse_collector_core::rollup::{self, Breakdown, BreakdownError, Cell, RETENTION_MS};

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
/// Values returned by the breakdown when `limit` is not given.
pub const DEFAULT_BREAKDOWN_LIMIT: usize = 50;
/// Most values returned by the breakdown.
pub const MAX_BREAKDOWN_LIMIT: usize = 1000;
/// The breakdown's range when `from` is not given, ms before `to`.
pub const DEFAULT_BREAKDOWN_RANGE_MS: i64 = 6 * 3_600_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    merchant_id: Option<String>,
    store_id: Option<String>,
    region: Option<String>,
    city: Option<String>,
    acquirer: Option<String>,
    qr_channel: Option<String>,
    carrier: Option<String>,
    link: Option<String>,
    model: Option<String>,
    firmware: Option<String>,
    app_version: Option<String>,
    state: Option<String>,
    q: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

fn bad_query(e: &QueryRejection) -> ApiError {
    ApiError::BadRequest(e.body_text())
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
pub(crate) async fn list(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let limit = q.limit.unwrap_or(DEFAULT_TERMINALS_LIMIT);
    if limit == 0 || limit > MAX_TERMINALS_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_TERMINALS_LIMIT}"
        )));
    }
    let want_state = match q.state.as_deref() {
        None => None,
        Some("online") => Some(TerminalState::Online),
        Some("stale") => Some(TerminalState::Stale),
        Some("offline") => Some(TerminalState::Offline),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "state {other:?} is not one of online, stale, offline"
            )));
        }
    };
    let needle = q.q.as_deref().map(str::to_lowercase).unwrap_or_default();
    let now = now_unix_ms();
    let fleet = state.fleet.read().unwrap_or_else(PoisonError::into_inner);
    let th = fleet.thresholds();
    let mut total = 0usize;
    let mut page = Vec::new();
    let mut more = false;
    for (id, e) in fleet.iter() {
        let s = e.state(now, th);
        let matches = want_state.is_none_or(|w| w == s)
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
            page.push(terminal_json(id, e, s));
        } else {
            more = true;
        }
    }
    let next = if more {
        page.last()
            .and_then(|t| t["terminal_id"].as_str())
            .map(str::to_owned)
    } else {
        None
    };
    Ok(Json(json!({
        "terminals": page,
        "total": total,
        "limit": limit,
        "next": next,
    })))
}

/// `GET /api/v1/terminals/{id}`.
pub(crate) async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let unknown = || ApiError::NotFound(format!("unknown terminal {id:?}"));
    let terminal = TerminalId::new(id.clone()).map_err(|_| unknown())?;
    let now = now_unix_ms();
    let (summary, thresholds, first_seen) = {
        let fleet = state.fleet.read().unwrap_or_else(PoisonError::into_inner);
        let th = fleet.thresholds();
        let e = fleet.entry(&terminal).ok_or_else(unknown)?;
        (
            terminal_json(&terminal, e, e.state(now, th)),
            th,
            e.first_seen_unix_ms,
        )
    };
    let store = state.store.clone();
    let t = terminal.clone();
    let since = now - DETAIL_WINDOW_MS;
    let (rows, truncated) = tokio::task::spawn_blocking(move || read_recent(&store, &t, since))
        .await
        .map_err(|e| {
            error!(error = %e, "Terminal detail task failed");
            ApiError::Internal
        })?
        .map_err(|e| {
            error!(error = %e, "Terminal detail query failed");
            ApiError::Internal
        })?;
    let mut body = detail_json(&rows, now, thresholds, first_seen, truncated);
    if let (Value::Object(out), Value::Object(s)) = (&mut body, summary) {
        for (k, v) in s {
            out.insert(k, v);
        }
    }
    Ok(Json(body))
}

/// The terminal's records of the last day, newest first, at most [`DETAIL_MAX_RECORDS`];
/// `true` if the cap cut the day short.
fn read_recent(
    store: &crate::store::Store,
    terminal: &TerminalId,
    since_ms: i64,
) -> Result<(Vec<RecordRow>, bool), crate::store::StoreError> {
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

fn scheme_name(s: Scheme) -> &'static str {
    match s {
        Scheme::Iso8583 => "iso8583",
        Scheme::Cup => "cup",
        Scheme::Wechatpay => "wechatpay",
        Scheme::Alipay => "alipay",
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
) -> Vec<(i64, i64, &'static str)> {
    arrivals.sort_unstable();
    let mut out: Vec<(i64, i64, &'static str)> = Vec::new();
    let mut push = |a: i64, b: i64, s: &'static str| {
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
        push(from, first_seen.min(lead_end), "unknown");
    }
    // Before the first arrival in the window, the previous one (if any) is older than the
    // window: treat the lead as offline once registered.
    push(first_seen.max(from), lead_end, "offline");
    let inside: Vec<i64> = arrivals.iter().copied().filter(|&t| t >= from).collect();
    for (i, &t) in inside.iter().enumerate() {
        let next = inside.get(i + 1).copied().unwrap_or(now);
        let online_end = (t + th.stale_after_ms).min(next);
        let stale_end = (t + th.offline_after_ms).min(next);
        push(t, online_end, "online");
        push(online_end, stale_end, "stale");
        push(stale_end, next, "offline");
    }
    out
}

fn detail_json(
    rows: &[RecordRow],
    now: i64,
    th: Thresholds,
    first_seen: i64,
    truncated: bool,
) -> Value {
    let from = now - DETAIL_WINDOW_MS;
    let history_from = if truncated {
        rows.last()
            .map_or(from, |r| r.record.received_unix_ms.max(from))
    } else {
        from
    };
    let mut arrivals: Vec<i64> = rows.iter().map(|r| r.record.received_unix_ms).collect();
    let history: Vec<Value> = state_history(&mut arrivals, history_from, now, th, first_seen)
        .into_iter()
        .map(|(a, b, s)| json!({ "from_unix_ms": a, "to_unix_ms": b, "state": s }))
        .collect();
    let mut health = Vec::new();
    let mut network = Vec::new();
    let mut errors = Vec::new();
    let mut attempts = 0u64;
    let mut approved = 0u64;
    let mut by_class: BTreeMap<&'static str, u64> = BTreeMap::new();
    for r in rows {
        let at = r.record.time_unix_ms;
        match &r.record.body {
            RecordBody::Heartbeat(_) if health.len() < DETAIL_RECENT => {
                let (_, b) = body_json(&r.record.body);
                health.push(json!({ "time_unix_ms": at, "heartbeat": b }));
            }
            RecordBody::NetQuality(_) if network.len() < DETAIL_RECENT => {
                let (_, b) = body_json(&r.record.body);
                network.push(json!({ "time_unix_ms": at, "net_quality": b }));
            }
            RecordBody::TxnOutcome(t) if at >= from => {
                let c = taxonomy::classify(t.scheme, &t.code);
                attempts += 1;
                if c.approved {
                    approved += 1;
                    continue;
                }
                *by_class.entry(c.class.as_str()).or_default() += 1;
                if errors.len() < DETAIL_ERRORS {
                    let info = taxonomy::lookup(t.scheme, &t.code);
                    errors.push(json!({
                        "time_unix_ms": at,
                        "scheme": scheme_name(t.scheme),
                        "code": t.code,
                        "class": c.class.as_str(),
                        "alertable": c.alertable,
                        "known": c.known,
                        "meaning": {
                            "en": info.map(|i| i.meaning_en.as_str()),
                            "zh": info.map(|i| i.meaning_zh.as_str()),
                        },
                        "route": t.route.as_ref().map(|r| r.as_str()),
                    }));
                }
            }
            _ => {}
        }
    }
    json!({
        "window": {
            "from_unix_ms": from,
            "to_unix_ms": now,
            "records_read": rows.len(),
            "truncated": truncated,
            "history_from_unix_ms": history_from,
        },
        "state_history": history,
        "health": health,
        "network": network,
        "outcomes": {
            "attempts": attempts,
            "approved": approved,
            "by_class": by_class,
        },
        "recent_errors": errors,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakdownQuery {
    by: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    bucket: Option<String>,
    limit: Option<usize>,
}

/// Parses a bucket width: `10m`, `1h`, or milliseconds.
fn parse_bucket(s: &str) -> Option<i64> {
    let (n, unit) = if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1)
    };
    n.parse::<i64>().ok()?.checked_mul(unit)
}

/// `GET /api/v1/breakdown?by=<label>&from=&to=&bucket=&limit=`.
pub(crate) async fn breakdown(
    State(state): State<ApiState>,
    query: Result<Query<BreakdownQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let labels = || {
        rollup::LABELS
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let by = q
        .by
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest(format!("`by` is required: one of {}", labels())))?;
    let label = LabelKey::parse(by)
        .filter(|l| rollup::LABELS.contains(l))
        .ok_or_else(|| ApiError::BadRequest(format!("`by` {by:?} is not one of {}", labels())))?;
    let limit = q.limit.unwrap_or(DEFAULT_BREAKDOWN_LIMIT);
    if limit == 0 || limit > MAX_BREAKDOWN_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_BREAKDOWN_LIMIT}"
        )));
    }
    let bucket = match q.bucket.as_deref() {
        None => None,
        Some(b) => Some(parse_bucket(b).ok_or_else(|| {
            ApiError::BadRequest(format!("bucket {b:?} is not a duration such as 10m or 1h"))
        })?),
    };
    let now = now_unix_ms();
    let to = q.to.unwrap_or(now).min(now + 1);
    let from = q.from.unwrap_or(to - DEFAULT_BREAKDOWN_RANGE_MS);
    let result = state
        .incidents
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .rollup
        .breakdown_at(now, label, from, to, bucket, limit);
    let b = result.map_err(|e| match e {
        BreakdownError::TooOld => {
            ApiError::BadRequest(format!("{e}: `to` must be after {}", now - RETENTION_MS))
        }
        e => ApiError::BadRequest(e.to_string()),
    })?;
    Ok(Json(breakdown_json(&b, limit)))
}

fn cell_json(c: &Cell) -> Value {
    json!({
        "attempts": c.attempts,
        "approved": c.approved,
        "failures": c.failures,
        "declines": c.declines,
        "other_failures": c.other,
        "failure_rate": c.failure_rate(),
    })
}

fn breakdown_json(b: &Breakdown, limit: usize) -> Value {
    let values: Vec<Value> = b
        .rows
        .iter()
        .map(|r| {
            let mut v = cell_json(&r.total);
            if let Value::Object(m) = &mut v {
                m.insert("value".into(), json!(r.value));
                m.insert(
                    "failures_by_class".into(),
                    json!(
                        r.failures_by_class
                            .iter()
                            .map(|(c, n)| ((*c).to_owned(), json!(n)))
                            .collect::<serde_json::Map<_, _>>()
                    ),
                );
                m.insert(
                    "series".into(),
                    json!({
                        "attempts": r.series.iter().map(|c| c.attempts).collect::<Vec<_>>(),
                        "failures": r.series.iter().map(|c| c.failures).collect::<Vec<_>>(),
                        "declines": r.series.iter().map(|c| c.declines).collect::<Vec<_>>(),
                    }),
                );
            }
            v
        })
        .collect();
    json!({
        "by": b.label.as_str(),
        "from_unix_ms": b.from_ms,
        "to_unix_ms": b.to_ms,
        "clipped": b.clipped,
        "retained_from_unix_ms": b.retained_from_ms,
        "retention_ms": RETENTION_MS,
        "bucket_ms": b.bucket_ms,
        "buckets": b.buckets,
        "limit": limit,
        "total_values": b.total_values,
        "values": values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
                (-60_000, 0, "offline"),
                (0, 600_000 + 90_000, "online"),
                (690_000, 900_000, "stale"),
                (900_000, 1_800_000, "offline"),
                (1_800_000, now, "online"),
            ]
        );
        // A terminal registered inside the window is unknown before.
        let mut a = vec![500_000];
        let h = state_history(&mut a, 0, 600_000, TH, 500_000);
        assert_eq!(
            h,
            vec![
                (0, 500_000, "unknown"),
                (500_000, 590_000, "online"),
                (590_000, 600_000, "stale")
            ]
        );
    }

    #[test]
    fn bucket_durations() {
        assert_eq!(parse_bucket("10m"), Some(600_000));
        assert_eq!(parse_bucket("2h"), Some(7_200_000));
        assert_eq!(parse_bucket("600000"), Some(600_000));
        assert_eq!(parse_bucket("x"), None);
    }
}
