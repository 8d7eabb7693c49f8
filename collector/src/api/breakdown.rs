//! The failure breakdown by label: `GET /api/v1/breakdown` (failure rate per label value over
//! time, a heat table of values by time buckets), read from the in-memory rollup
//! (`storepulse_collector_core::rollup`), so its work is bounded by the rollup's size.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use storepulse_collector_core::rollup::{self, Breakdown, BreakdownError, Cell, RETENTION_MS};
use storepulse_shared::LabelKey;
use storepulse_shared::taxonomy::ErrorClass;
use utoipa::{IntoParams, ToSchema};

use super::common::{self, ApiError, ApiState, Class, ErrorBody, TerminalLabel};
use crate::now_unix_ms;

/// Values returned by the breakdown when `limit` is not given.
pub const DEFAULT_BREAKDOWN_LIMIT: usize = 50;
/// Most values returned by the breakdown.
pub const MAX_BREAKDOWN_LIMIT: usize = 1000;
/// The breakdown's range when `from` is not given, ms before `to`.
pub const DEFAULT_BREAKDOWN_RANGE_MS: i64 = 6 * 3_600_000;

/// Query of the breakdown.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BreakdownQuery {
    /// The label to group by (required; a string here so a missing or unknown one gets a
    /// 400 that lists the labels).
    #[param(value_type = TerminalLabel, inline, required = true)]
    by: Option<String>,
    /// Start, Unix ms; default `to` minus 6 h.
    from: Option<i64>,
    /// End, Unix ms; default now.
    to: Option<i64>,
    /// Bucket width such as `10m` or `1h` (a multiple of the label's base bucket).
    bucket: Option<String>,
    /// Most values returned (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Failure rates by label value over time.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakdownBody {
    /// The label grouped by.
    pub by: TerminalLabel,
    /// Range covered, Unix ms (`from` clipped to the retention, aligned to buckets).
    pub from_unix_ms: i64,
    /// End of the range, Unix ms (exclusive).
    pub to_unix_ms: i64,
    /// Whether `from` was before the retained data and was moved forward.
    pub clipped: bool,
    /// The oldest time still retained, Unix ms.
    pub retained_from_unix_ms: i64,
    /// How long the rollup keeps data, ms.
    pub retention_ms: i64,
    /// Width of the buckets, ms.
    pub bucket_ms: i64,
    /// Start of each bucket, Unix ms.
    pub buckets: Vec<i64>,
    /// The `limit` used.
    pub limit: usize,
    /// Values with outcomes in the range (before `limit`).
    pub total_values: usize,
    /// The top `limit` values by failures (low-cardinality labels then sorted by value).
    pub values: Vec<BreakdownValue>,
}

/// One label value's outcomes over the range.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakdownValue {
    /// The label value.
    pub value: String,
    /// Payment outcomes.
    pub attempts: u32,
    /// Approved.
    pub approved: u32,
    /// Outcomes of alertable codes in the classes detection watches.
    pub failures: u32,
    /// Cardholder and fraud/risk declines (never alerting).
    pub declines: u32,
    /// Other outcomes that were not approved (unknown or non-alertable codes).
    pub other_failures: u32,
    /// failures / attempts (0 without attempts).
    pub failure_rate: f64,
    /// Failures by taxonomy class.
    pub failures_by_class: BTreeMap<Class, u32>,
    /// Per bucket, aligned with `buckets`.
    pub series: Series,
}

/// Counts per bucket.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Series {
    /// Payment outcomes.
    pub attempts: Vec<u32>,
    /// Failures.
    pub failures: Vec<u32>,
    /// Declines.
    pub declines: Vec<u32>,
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
#[utoipa::path(
    get,
    path = "/api/v1/breakdown",
    tag = "fleet",
    summary = "Failure rate by label value over time (a heat table: values by time buckets)",
    description = "Kept in memory for 24 h: 10-minute buckets for region, city, acquirer, \
        qr_channel, carrier, link, model, firmware and app_version; hourly buckets for \
        merchant_id and store_id. A `from` before the retained data is moved forward and \
        `clipped` is true; a range wholly before it is a 400. Values are the top `limit` by \
        failures (low-cardinality labels then sorted by value).",
    params(BreakdownQuery),
    responses(
        (status = 200, description = "The breakdown", body = BreakdownBody),
        (status = 400, description = "Missing or unknown label, bad range, bucket or parameter",
            body = ErrorBody),
    )
)]
pub(crate) async fn breakdown(
    State(state): State<ApiState>,
    query: Result<Query<BreakdownQuery>, QueryRejection>,
) -> Result<Json<BreakdownBody>, ApiError> {
    let q = common::query(query)?;
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
    let limit = common::limit(q.limit, DEFAULT_BREAKDOWN_LIMIT, MAX_BREAKDOWN_LIMIT)?;
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
    Ok(Json(body(&b, limit)))
}

fn value(r: &rollup::ValueRow) -> BreakdownValue {
    let c: &Cell = &r.total;
    BreakdownValue {
        value: r.value.clone(),
        attempts: c.attempts,
        approved: c.approved,
        failures: c.failures,
        declines: c.declines,
        other_failures: c.other,
        failure_rate: c.failure_rate(),
        // The rollup names classes with `ErrorClass::as_str`, so every name parses.
        failures_by_class: r
            .failures_by_class
            .iter()
            .filter_map(|&(c, n)| Some((Class(ErrorClass::parse(c)?), n)))
            .collect(),
        series: Series {
            attempts: r.series.iter().map(|c| c.attempts).collect(),
            failures: r.series.iter().map(|c| c.failures).collect(),
            declines: r.series.iter().map(|c| c.declines).collect(),
        },
    }
}

fn body(b: &Breakdown, limit: usize) -> BreakdownBody {
    BreakdownBody {
        by: TerminalLabel(b.label),
        from_unix_ms: b.from_ms,
        to_unix_ms: b.to_ms,
        clipped: b.clipped,
        retained_from_unix_ms: b.retained_from_ms,
        retention_ms: RETENTION_MS,
        bucket_ms: b.bucket_ms,
        buckets: b.buckets.clone(),
        limit,
        total_values: b.total_values,
        values: b.rows.iter().map(value).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_durations() {
        assert_eq!(parse_bucket("10m"), Some(600_000));
        assert_eq!(parse_bucket("2h"), Some(7_200_000));
        assert_eq!(parse_bucket("600000"), Some(600_000));
        assert_eq!(parse_bucket("x"), None);
    }
}
