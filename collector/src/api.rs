//! HTTP API (axum): `/healthz`, per-terminal records, as JSON, and the router of every route
//! (the terminal list, detail and breakdown are in `api_terminals.rs`).
//! [`router`] builds the app without a socket so tests can call it directly.

use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use storepulse_collector_core::{Fleet, TerminalEntry, TerminalState};
use storepulse_shared::{
    DropReason, LabelKey, PayMethod, ProbeError, RecordBody, Scheme, TerminalId,
};
use tracing::error;

use crate::now_unix_ms;
use crate::store::{RecordRow, Store};

/// Records returned when `limit` is not given.
pub const DEFAULT_RECORDS_LIMIT: usize = 100;
/// Most records returned by one request.
pub const MAX_RECORDS_LIMIT: usize = 1000;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The fleet registry (written by the group commit writer).
    pub fleet: Arc<RwLock<Fleet>>,
    /// The record store.
    pub store: Store,
    /// Incidents from the detection loop.
    pub incidents: Arc<RwLock<storepulse_collector_core::incident::IncidentBook>>,
    /// Collector metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Turns true on shutdown (long-lived responses such as the event stream end then).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// An error as returned to HTTP clients: `{"error": "..."}`; internals are logged, not shown.
#[derive(Debug)]
pub enum ApiError {
    /// 404.
    NotFound(String),
    /// 400.
    BadRequest(String),
    /// 500.
    Internal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordsQuery {
    after_seq: Option<u64>,
    limit: Option<usize>,
}

/// The API routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/labels", get(labels))
        .route("/api/v1/terminals", get(crate::api_terminals::list))
        .route("/api/v1/terminals/{id}", get(crate::api_terminals::detail))
        .route("/api/v1/terminals/{id}/records", get(records))
        .route("/api/v1/breakdown", get(crate::api_terminals::breakdown))
        .route("/api/v1/summary", get(crate::api_live::summary))
        .route("/api/v1/events", get(crate::api_live::events))
        .route("/api/v1/incidents", get(crate::api_incidents::list))
        .route("/api/v1/incidents/{id}", get(crate::api_incidents::detail))
        .merge(crate::dashboard::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

/// `GET /api/v1/whoami`: the calling token's name and role, so a client (the dashboard) can
/// offer changes only to admins instead of learning it from a 403.
async fn whoami(
    caller: Option<axum::Extension<crate::auth::Caller>>,
) -> axum::Json<serde_json::Value> {
    let (name, role) = match caller {
        Some(axum::Extension(c)) => (c.name, c.role),
        // Unreachable behind the middleware; say the least.
        None => ("unknown".to_owned(), crate::config::TokenRole::Read),
    };
    let role = match role {
        crate::config::TokenRole::Read => "read",
        crate::config::TokenRole::Admin => "admin",
    };
    axum::Json(serde_json::json!({ "token": name, "role": role, "can_change": role == "admin" }))
}

/// `GET /api/v1/labels`: the label vocabulary, so clients (the dashboard) need no copy of
/// it: the labels a terminal carries (the filters of `/api/v1/terminals`, the `by` of
/// `/api/v1/breakdown`), in `Identity` order, and the old short names still accepted as input.
async fn labels() -> Json<Value> {
    let labels: Vec<&str> = LabelKey::TERMINAL_LABELS
        .iter()
        .map(|k| k.as_str())
        .collect();
    let aliases: serde_json::Map<String, Value> = LabelKey::ALIASES
        .iter()
        .map(|(alias, k)| ((*alias).to_owned(), json!(k.as_str())))
        .collect();
    Json(json!({ "labels": labels, "aliases": aliases }))
}

/// The OpenAPI 3.1 description of this API, compiled in.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /api/v1/openapi.json`.
async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let now = now_unix_ms();
    let (mut online, mut stale, mut offline) = (0u64, 0u64, 0u64);
    {
        let fleet = state.fleet.read().unwrap_or_else(PoisonError::into_inner);
        let th = fleet.thresholds();
        for (_, e) in fleet.iter() {
            match e.state(now, th) {
                TerminalState::Online => online += 1,
                TerminalState::Stale => stale += 1,
                TerminalState::Offline => offline += 1,
            }
        }
    }
    let body = state
        .metrics
        .render(&[("online", online), ("stale", stale), ("offline", offline)]);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn records(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let unknown = || ApiError::NotFound(format!("unknown terminal {id:?}"));
    let terminal = TerminalId::new(id.clone()).map_err(|_| unknown())?;
    let known = state
        .fleet
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(&terminal)
        .is_some();
    if !known {
        return Err(unknown());
    }
    let limit = q.limit.unwrap_or(DEFAULT_RECORDS_LIMIT);
    if limit == 0 || limit > MAX_RECORDS_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_RECORDS_LIMIT}"
        )));
    }
    let store = state.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.records(&terminal, q.after_seq, limit))
        .await
        .map_err(|e| {
            error!(error = %e, "Records query task failed");
            ApiError::Internal
        })?
        .map_err(|e| {
            error!(error = %e, "Records query failed");
            ApiError::Internal
        })?;
    let records: Vec<Value> = rows.iter().map(record_json).collect();
    Ok(Json(json!({ "records": records })))
}

/// A terminal as listed by `GET /api/v1/terminals`.
pub fn terminal_json(id: &TerminalId, e: &TerminalEntry, state: TerminalState) -> Value {
    let labels = e.identity.as_ref().map(|id| {
        LabelKey::TERMINAL_LABELS
            .iter()
            .map(|&k| (k.as_str().to_owned(), json!(id.label(k))))
            .collect::<serde_json::Map<_, _>>()
    });
    json!({
        "terminal_id": id.as_str(),
        "labels": labels,
        "state": match state {
            TerminalState::Online => "online",
            TerminalState::Stale => "stale",
            TerminalState::Offline => "offline",
        },
        "first_seen_unix_ms": e.first_seen_unix_ms,
        "last_seen_unix_ms": e.last_seen_unix_ms,
        "last_heartbeat_unix_ms": e.last_heartbeat_unix_ms,
        "agent_version": e.agent_version,
        "records_received": e.records_received,
        "clock_offset_ms": e.clock_offset_ms,
        "clock_skewed": e.clock_skewed,
        "spool_drops": {
            "heartbeats": e.spool_drops.heartbeats,
            "net_quality": e.spool_drops.net_quality,
            "txn_outcomes": e.spool_drops.txn_outcomes,
        },
    })
}

/// `GET /healthz`: `ok`, or 503 while the store cannot write (nothing is being acknowledged).
async fn healthz(State(s): State<ApiState>) -> Response {
    if s.store.is_failing() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "store failing: its last write failed (disk full?); nothing is acknowledged until \
             it recovers. Free space on the disk holding store.path; see the collector log.\n\
             存储写入失败（磁盘已满？），恢复前不会确认任何数据。请释放 store.path 所在磁盘的空间，并查看采集端日志。\n",
        )
            .into_response();
    }
    "ok".into_response()
}

/// A stored record as JSON: `epoch`, `seq`, `time_unix_ms`, `kind`, `body`.
pub fn record_json(row: &RecordRow) -> Value {
    let (kind, body) = body_json(&row.record.body);
    json!({
        "epoch": row.key.epoch,
        "seq": row.key.seq,
        "time_unix_ms": row.record.time_unix_ms,
        "agent_time_unix_ms": row.record.agent_time_unix_ms,
        "kind": kind,
        "body": body,
    })
}

/// The record kind name and its body as JSON (enums in lowercase).
pub fn body_json(body: &RecordBody) -> (&'static str, Value) {
    match body {
        RecordBody::Heartbeat(h) => (
            "heartbeat",
            json!({
                "cpu_percent": h.cpu_percent,
                "mem_used_bytes": h.mem_used_bytes,
                "mem_total_bytes": h.mem_total_bytes,
                "disk_free_bytes": h.disk_free_bytes,
                "uptime_secs": h.uptime_secs,
                "temperature_c": h.temperature_c,
                "battery_percent": h.battery_percent,
                "spool_records": h.spool_records,
            }),
        ),
        RecordBody::NetQuality(n) => {
            let endpoints: Vec<Value> = n
                .endpoints
                .iter()
                .map(|p| {
                    json!({
                        "name": p.name,
                        "dns_ms": p.dns_ms,
                        "tcp_connect_ms": p.tcp_connect_ms,
                        "error": p.error.map(|e| match e {
                            ProbeError::DnsFailed => "dns_failed",
                            ProbeError::Timeout => "timeout",
                            ProbeError::Refused => "refused",
                            ProbeError::Other => "other",
                        }),
                    })
                })
                .collect();
            (
                "net_quality",
                json!({
                    "rtt_ms": n.rtt_ms,
                    "jitter_ms": n.jitter_ms,
                    "loss_percent": n.loss_percent,
                    "endpoints": endpoints,
                }),
            )
        }
        RecordBody::TxnOutcome(t) => (
            "txn_outcome",
            json!({
                "scheme": match t.scheme {
                    Scheme::Iso8583 => "iso8583",
                    Scheme::Cup => "cup",
                    Scheme::Wechatpay => "wechatpay",
                    Scheme::Alipay => "alipay",
                },
                "code": t.code,
                "latency_ms": t.latency_ms,
                "method": match t.method {
                    PayMethod::Card => "card",
                    PayMethod::Qr => "qr",
                },
                "route": t.route.as_ref().map(|r| r.as_str()),
            }),
        ),
        RecordBody::SpoolDrops(d) => (
            "spool_drops",
            json!({
                "reason": match d.reason {
                    DropReason::SpoolFull => "spool_full",
                    DropReason::DiskError => "disk_error",
                },
                "heartbeats": d.heartbeats,
                "net_quality": d.net_quality,
                "txn_outcomes": d.txn_outcomes,
            }),
        ),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_owned(),
            ),
        };
        (status, Json(json!({ "error": msg }))).into_response()
    }
}
