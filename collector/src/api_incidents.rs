//! HTTP API for incidents: `GET /api/v1/incidents` (active, then recently resolved) and
//! `GET /api/v1/incidents/{id}` (detail with evidence and timeline). DTOs are built here from
//! the detection core's types, which derive no `Serialize` (serialization marks a boundary).

use std::sync::PoisonError;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use storepulse_collector_core::detect::Incident;
use storepulse_collector_core::incident::{IncidentRecord, TimelineEntry};

use crate::api::{ApiError, ApiState};

/// Query of the incident list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// `active` (default), `resolved` or `all`.
    state: Option<String>,
    /// Most incidents returned (default 100, at most 1000).
    limit: Option<usize>,
}

fn incident_json(inc: &Incident, state: &str) -> Value {
    let e = &inc.evidence;
    let scope: serde_json::Map<String, Value> = inc
        .scope
        .iter()
        .map(|(d, v)| (d.as_str().to_owned(), Value::String(v.clone())))
        .collect();
    json!({
        "id": inc.id,
        "state": state,
        "kind": inc.kind.as_str(),
        "scope": scope,
        "scope_text": inc.scope_text(),
        "affected": {
            "terminals": inc.affected_terminals,
            "stores": inc.affected_stores,
            "merchants": inc.affected_merchants,
            "terminals_in_scope": inc.scope_terminals,
        },
        "started_unix_ms": inc.started_ms,
        "opened_unix_ms": inc.opened_ms,
        "updated_unix_ms": inc.updated_ms,
        "resolved_unix_ms": inc.resolved_ms,
        "explanation": { "en": inc.explanation_en, "zh": inc.explanation_zh },
        "remediation": { "en": inc.remediation_en, "zh": inc.remediation_zh },
        "evidence": {
            "family": e.family.as_str(),
            "window_secs": e.window_ms / 1000,
            "attempts": e.attempts,
            "failures": e.observed,
            "expected_failures": e.expected,
            "baseline_rate": e.baseline_rate,
            "observed_rate": e.observed_rate(),
            "significance": e.significance,
            "silent_terminals": e.silent_terminals,
            "rtt_ms": e.rtt_ms.map(|(now, base)| json!({"now": now, "baseline": base})),
            "loss_percent": e.loss_percent.map(|(now, base)| json!({"now": now, "baseline": base})),
            "device": e.device.map(|d| json!({
                "temperature_c": {"now": d.temperature_c, "baseline": d.temperature_baseline_c},
                "cpu_percent": {"now": d.cpu_percent, "baseline": d.cpu_baseline_percent},
            })),
            "top_codes": e.top_codes.iter().map(|c| json!({
                "scheme": c.scheme.as_str(),
                "code": c.code,
                "class": c.class.as_str(),
                "count": c.count,
                "meaning": { "en": c.meaning_en, "zh": c.meaning_zh },
            })).collect::<Vec<_>>(),
            "examples": e.examples.iter().map(|x| json!({
                "terminal_id": x.terminal.as_str(),
                "time_unix_ms": x.time_ms,
                "scheme": x.scheme.as_str(),
                "code": x.code,
            })).collect::<Vec<_>>(),
        },
    })
}

fn timeline_json(t: &TimelineEntry) -> Value {
    json!({
        "at_unix_ms": t.at_ms,
        "event": t.what,
        "explanation": { "en": t.explanation_en, "zh": t.explanation_zh },
        "affected_terminals": t.affected_terminals,
    })
}

fn record_state(r: &IncidentRecord) -> &'static str {
    if r.incident.resolved_ms.is_some() {
        "resolved"
    } else {
        "active"
    }
}

/// `GET /api/v1/incidents?state=active|resolved|all&limit=N`.
pub(crate) async fn list(
    State(state): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    let which = q.state.as_deref().unwrap_or("active");
    let book = state
        .incidents
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let records: Vec<&IncidentRecord> = match which {
        "active" => book.active().collect(),
        "resolved" => book.resolved().collect(),
        "all" => book.active().chain(book.resolved()).collect(),
        other => {
            return Err(ApiError::BadRequest(format!(
                "state must be active, resolved or all, not {other:?}"
            )));
        }
    };
    let list: Vec<Value> = records
        .into_iter()
        .take(limit)
        .map(|r| incident_json(&r.incident, record_state(r)))
        .collect();
    Ok(Json(json!({ "incidents": list })))
}

/// `GET /api/v1/incidents/{id}`.
pub(crate) async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no incident {id:?}")))?;
    let book = state
        .incidents
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let r = book
        .get(id)
        .ok_or_else(|| ApiError::NotFound(format!("no incident {id}")))?;
    let mut v = incident_json(&r.incident, record_state(r));
    if let Value::Object(m) = &mut v {
        m.insert(
            "timeline".into(),
            Value::Array(r.timeline.iter().map(timeline_json).collect()),
        );
    }
    Ok(Json(v))
}
