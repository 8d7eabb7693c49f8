//! HTTP API of alerting: silences and maintenance windows (list, create, expire), the
//! delivery outbox, and each incident's notification history. [`router`] is merged into the
//! main API router; it carries its own state (the [`Alerts`] handle).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use storepulse_collector_core::notify::{MaintenanceWindow, Matcher, Mute, Silence, rfc3339};
use tracing::error;

use crate::api::ApiError;
use crate::notify::Alerts;
use crate::now_unix_ms;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    matchers: Vec<String>,
    #[serde(default)]
    starts_at: Option<String>,
    ends_at: String,
    author: String,
    #[serde(default)]
    comment: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWindow {
    scope: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    starts_at: Option<String>,
    ends_at: String,
    #[serde(default)]
    announcement: String,
}

/// The alerting routes, for any outer router state.
pub fn router<S: Clone + Send + Sync + 'static>(alerts: Alerts) -> Router<S> {
    Router::new()
        .route(
            "/api/v1/alerts/silences",
            get(list_silences).post(create_silence),
        )
        .route("/api/v1/alerts/silences/{id}", delete(expire_silence))
        .route(
            "/api/v1/alerts/maintenance",
            get(list_windows).post(create_window),
        )
        .route("/api/v1/alerts/maintenance/{id}", delete(expire_window))
        .route("/api/v1/alerts/outbox", get(outbox))
        .route("/api/v1/incidents/{id}/notifications", get(history))
        .with_state(alerts)
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::BadRequest(m.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    error!(error = %e, "Alerts API store operation failed");
    ApiError::Internal
}

fn times(starts_at: Option<&str>, ends_at: &str) -> Result<(i64, i64), ApiError> {
    let parse =
        |t: &str| rfc3339::parse_ms(t).ok_or_else(|| bad(format!("{t:?} is not an RFC 3339 time")));
    let start = match starts_at {
        Some(t) => parse(t)?,
        None => now_unix_ms(),
    };
    let end = parse(ends_at)?;
    if end <= start {
        return Err(bad("ends_at must be after starts_at"));
    }
    Ok((start, end))
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:x}-{:04x}", now_unix_ms(), rand::random::<u16>())
}

fn silence_json(s: &Silence) -> Value {
    json!({
        "id": s.id,
        "matchers": s.matchers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "starts_at": rfc3339::format_ms(s.starts_at_ms),
        "ends_at": rfc3339::format_ms(s.ends_at_ms),
        "author": s.author,
        "comment": s.comment,
    })
}

fn window_json(w: &MaintenanceWindow) -> Value {
    json!({
        "id": w.id,
        "scope": w.scope.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "starts_at": rfc3339::format_ms(w.starts_at_ms),
        "ends_at": rfc3339::format_ms(w.ends_at_ms),
        "announcement": w.announcement,
    })
}

async fn list_silences(State(alerts): State<Alerts>) -> Json<Value> {
    let list: Vec<Value> = alerts.silences().iter().map(silence_json).collect();
    Json(json!({ "silences": list }))
}

async fn create_silence(
    State(alerts): State<Alerts>,
    body: Result<Json<NewSilence>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(b) = body.map_err(|e| bad(e.body_text()))?;
    let matchers = b
        .matchers
        .iter()
        .map(|m| Matcher::parse(m).map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if matchers.is_empty() {
        return Err(bad("a silence needs at least one matcher"));
    }
    if b.author.trim().is_empty() {
        return Err(bad("author is required"));
    }
    let (starts_at_ms, ends_at_ms) = times(b.starts_at.as_deref(), &b.ends_at)?;
    let silence = Silence {
        id: new_id("silence"),
        matchers,
        starts_at_ms,
        ends_at_ms,
        author: b.author,
        comment: b.comment,
    };
    alerts
        .add_silence(silence.clone())
        .await
        .map_err(internal)?;
    Ok((StatusCode::CREATED, Json(silence_json(&silence))))
}

async fn expire_silence(
    State(alerts): State<Alerts>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match alerts.expire_silence(&id).await.map_err(internal)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound(format!("no silence {id:?}"))),
    }
}

async fn list_windows(State(alerts): State<Alerts>) -> Json<Value> {
    let list: Vec<Value> = alerts.windows().iter().map(window_json).collect();
    Json(json!({ "maintenance": list }))
}

async fn create_window(
    State(alerts): State<Alerts>,
    body: Result<Json<NewWindow>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(b) = body.map_err(|e| bad(e.body_text()))?;
    if b.scope.is_empty() || b.scope.iter().any(|(k, v)| k.is_empty() || v.is_empty()) {
        return Err(bad(
            "scope needs at least one non-empty label, e.g. {\"acquirer\": \"ACQ-A\"}",
        ));
    }
    let (starts_at_ms, ends_at_ms) = times(b.starts_at.as_deref(), &b.ends_at)?;
    let window = MaintenanceWindow {
        id: new_id("window"),
        scope: b.scope.into_iter().collect(),
        starts_at_ms,
        ends_at_ms,
        announcement: b.announcement,
    };
    alerts.add_window(window.clone()).await.map_err(internal)?;
    Ok((StatusCode::CREATED, Json(window_json(&window))))
}

async fn expire_window(
    State(alerts): State<Alerts>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match alerts.expire_window(&id).await.map_err(internal)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound(format!("no maintenance window {id:?}"))),
    }
}

async fn outbox(State(alerts): State<Alerts>) -> Json<Value> {
    let o = alerts.outbox();
    let pending: Vec<Value> = o
        .pending
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "incident_id": p.incident_id,
                "receiver": p.receiver,
                "notification": p.notification,
                "idempotency_key": p.idempotency_key,
                "attempts": p.attempts,
                "next_at": rfc3339::format_ms(p.next_at_ms),
                "last_error": p.last_error,
            })
        })
        .collect();
    let mutes: serde_json::Map<String, Value> = alerts
        .mutes()
        .into_iter()
        .map(|(id, m)| {
            let v = match m {
                Mute::Silenced(s) => json!({ "reason": "silenced", "by": s }),
                Mute::Inhibited(i) => json!({ "reason": "inhibited", "by": i }),
                Mute::Maintenance(w) => json!({ "reason": "maintenance", "by": w }),
            };
            (id, v)
        })
        .collect();
    Json(json!({
        "pending": pending,
        "delivered": o.stats.delivered,
        "retries": o.stats.retries,
        "gave_up": o.stats.gave_up,
        "gave_up_total": o.gave_up_total,
        "muted_incidents": mutes,
    }))
}

async fn history(
    State(alerts): State<Alerts>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rows = alerts.history(&id).await.map_err(internal)?;
    let list: Vec<Value> = rows
        .iter()
        .map(|h| {
            json!({
                "at": rfc3339::format_ms(h.at_ms),
                "receiver": h.receiver,
                "notification": h.notification,
                "idempotency_key": h.idempotency_key,
                "attempt": h.attempt,
                "result": h.result,
                "error": h.error,
                "next_at": h.next_at_ms.map(rfc3339::format_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "incident_id": id, "notifications": list })))
}
