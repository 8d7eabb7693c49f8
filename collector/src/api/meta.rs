//! About the collector and the API itself: `GET /healthz`, `GET /metrics` (Prometheus),
//! `GET /api/v1/whoami` (the caller's role) and `GET /api/v1/labels` (the label vocabulary,
//! so clients such as the dashboard keep no copy of it). The OpenAPI document's route is in
//! `api.rs`, beside the code that builds it.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use storepulse_shared::LabelKey;
use utoipa::ToSchema;

use super::common::{ApiState, LabelName, TerminalLabel};
use crate::auth::Caller;
use crate::config::TokenRole;
use crate::now_unix_ms;

/// The calling token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhoAmI {
    /// The token's configured name (`anonymous` when the API has no tokens).
    pub token: String,
    /// What it may do.
    pub role: Role,
    /// Whether it may change things (create or end silences and maintenance windows).
    pub can_change: bool,
}

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May read.
    Read,
    /// May read and change.
    Admin,
}

/// The label vocabulary.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// The labels a terminal carries besides its id, in `Identity` order: the filters of
    /// `/api/v1/terminals` and the `by` of `/api/v1/breakdown`.
    pub labels: Vec<TerminalLabel>,
    /// Old short names still accepted as input, and the canonical name each stands for.
    pub aliases: BTreeMap<String, LabelName>,
}

/// `GET /healthz`: `ok`, or 503 while the store cannot write (nothing is being acknowledged).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    summary = "Liveness: ok, or 503 while the store cannot write",
    security(()),
    responses(
        (status = 200, description = "ok", body = String, content_type = "text/plain"),
        (status = 503, description = "The store's last write failed; nothing is acknowledged",
            body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn healthz(State(s): State<ApiState>) -> Response {
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

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    summary = "Prometheus metrics; public when http.public_metrics is set",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format 0.0.4",
            body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let now = now_unix_ms();
    let (online, stale, offline) = state
        .fleet
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .state_counts(now);
    let body = state
        .metrics
        .render(&[("online", online), ("stale", stale), ("offline", offline)]);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// `GET /api/v1/whoami`: the calling token's name and role, so a client (the dashboard) can
/// offer changes only to admins instead of learning it from a 403.
#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    tag = "meta",
    summary = "The calling token's name and role",
    responses((status = 200, description = "The caller", body = WhoAmI))
)]
pub(crate) async fn whoami(caller: Option<Extension<Caller>>) -> Json<WhoAmI> {
    let (token, role) = match caller {
        Some(Extension(c)) => (c.name, c.role),
        // Unreachable behind the middleware; say the least.
        None => ("unknown".to_owned(), TokenRole::Read),
    };
    let role = match role {
        TokenRole::Read => Role::Read,
        TokenRole::Admin => Role::Admin,
    };
    Json(WhoAmI {
        token,
        role,
        can_change: role == Role::Admin,
    })
}

/// `GET /api/v1/labels`: the label vocabulary, so clients (the dashboard) need no copy of it.
#[utoipa::path(
    get,
    path = "/api/v1/labels",
    tag = "meta",
    summary = "The label vocabulary: the labels a terminal carries and the old names still accepted",
    responses((status = 200, description = "Labels in Identity order, and aliases", body = Labels))
)]
pub(crate) async fn labels() -> Json<Labels> {
    Json(Labels {
        labels: LabelKey::TERMINAL_LABELS.map(TerminalLabel).to_vec(),
        aliases: LabelKey::ALIASES
            .iter()
            .map(|&(alias, k)| (alias.to_owned(), LabelName(k)))
            .collect(),
    })
}
