//! HTTP API of alerting: silences and maintenance windows (list, create, expire), the
//! delivery outbox, and each incident's notification history. Its routes carry their own
//! state (the [`Alerts`] handle); `api.rs` documents them with the rest.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use storepulse_collector_core::notify::{
    MaintenanceWindow, Matcher, Mute, NotificationKind, Silence, rfc3339,
};
use utoipa::ToSchema;

use super::common::{ApiError, ErrorBody};
use crate::notify::Alerts;
use crate::notify::persist::HistoryRec;
use crate::now_unix_ms;

/// A new silence.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// `name=value`, `name!=value` or `name=~a|b` (one of); label names as in
    /// `/api/v1/labels` (`merchant`, `store` and `terminal` are accepted for `merchant_id`,
    /// `store_id` and `terminal_id` and stored canonically).
    matchers: Vec<String>,
    /// Start, RFC 3339 (default now).
    #[serde(default)]
    #[schema(format = DateTime)]
    starts_at: Option<String>,
    /// End, RFC 3339.
    #[schema(format = DateTime)]
    ends_at: String,
    /// Who sets it.
    author: String,
    /// Why.
    #[serde(default)]
    comment: String,
}

/// A new maintenance window.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWindow {
    /// Label = value, e.g. `acquirer`, `region` or `merchant_id` (the short names
    /// `merchant`, `store` and `terminal` are accepted and stored canonically).
    scope: BTreeMap<String, String>,
    /// Start, RFC 3339 (default now).
    #[serde(default)]
    #[schema(format = DateTime)]
    starts_at: Option<String>,
    /// End, RFC 3339.
    #[schema(format = DateTime)]
    ends_at: String,
    /// Shown with notifications of incidents inside the window.
    #[serde(default)]
    announcement: String,
}

/// Active and future silences.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceList {
    /// Silences not yet ended.
    pub silences: Vec<SilenceView>,
}

/// A silence: mutes notifications of matching incidents (never hides them).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Silence)]
pub struct SilenceView {
    /// Id (for `DELETE`).
    pub id: String,
    /// Matchers in canonical spelling; all must match.
    pub matchers: Vec<String>,
    /// Start, RFC 3339.
    #[schema(format = DateTime)]
    pub starts_at: String,
    /// End, RFC 3339.
    #[schema(format = DateTime)]
    pub ends_at: String,
    /// Who set it.
    pub author: String,
    /// Why.
    pub comment: String,
}

/// Active and future maintenance windows.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowList {
    /// Windows not yet ended.
    pub maintenance: Vec<WindowView>,
}

/// An announced maintenance window.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MaintenanceWindow)]
pub struct WindowView {
    /// Id (for `DELETE`).
    pub id: String,
    /// Label = value pairs an incident's scope must contain.
    pub scope: BTreeMap<String, String>,
    /// Start, RFC 3339.
    #[schema(format = DateTime)]
    pub starts_at: String,
    /// End, RFC 3339.
    #[schema(format = DateTime)]
    pub ends_at: String,
    /// The announcement.
    pub announcement: String,
}

/// The delivery outbox.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Outbox {
    /// Notifications waiting for delivery, oldest first.
    pub pending: Vec<Pending>,
    /// Delivered since start.
    pub delivered: u64,
    /// Failed attempts since start that will be retried.
    pub retries: u64,
    /// Given up since start.
    pub gave_up: u64,
    /// Given up, ever.
    pub gave_up_total: u64,
    /// Incidents whose notifications are muted now, by incident id.
    pub muted_incidents: BTreeMap<String, Muted>,
}

/// A notification waiting for delivery.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// Outbox id.
    pub id: u64,
    /// The incident.
    pub incident_id: String,
    /// The receiver.
    pub receiver: String,
    /// What it says.
    pub notification: Notice,
    /// Receivers deduplicate by this key.
    pub idempotency_key: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Next attempt, RFC 3339.
    #[schema(format = DateTime)]
    pub next_at: String,
    /// The last attempt's error.
    pub last_error: Option<String>,
}

/// Why an incident is not paged now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Muted {
    /// The reason.
    pub reason: MuteReason,
    /// The silence, wider incident or maintenance window that mutes it (its id).
    pub by: String,
}

/// Why an incident is muted.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MuteReason {
    /// A silence matches.
    Silenced,
    /// A wider active incident explains it.
    Inhibited,
    /// It is inside a maintenance window in mute mode.
    Maintenance,
}

/// What a notification says about its incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// The first page to this receiver.
    Firing,
    /// Scope, severity or size changed materially.
    Update,
    /// Still going on.
    Repeat,
    /// Over.
    Resolved,
}

/// Every notification step of an incident.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationHistory {
    /// The incident.
    pub incident_id: String,
    /// Steps, oldest first.
    pub notifications: Vec<Step>,
}

/// One step of a notification: queued, or one delivery attempt's result.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// When, RFC 3339.
    #[schema(format = DateTime)]
    pub at: String,
    /// The receiver.
    pub receiver: String,
    /// What the notification says.
    pub notification: Notice,
    /// Receivers deduplicate by this key.
    pub idempotency_key: String,
    /// Attempt number (0: queued).
    pub attempt: u32,
    /// What happened.
    pub result: Delivery,
    /// The error of a failed attempt.
    pub error: Option<String>,
    /// When the next attempt is due, for `retrying`.
    #[schema(format = DateTime)]
    pub next_at: Option<String>,
}

/// What happened to a notification at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Stored in the outbox.
    Queued,
    /// The receiver accepted it.
    Delivered,
    /// An attempt failed; it will be tried again.
    Retrying,
    /// Given up.
    GaveUp,
}

impl From<NotificationKind> for Notice {
    fn from(k: NotificationKind) -> Self {
        match k {
            NotificationKind::Firing => Self::Firing,
            NotificationKind::Update => Self::Update,
            NotificationKind::Repeat => Self::Repeat,
            NotificationKind::Resolved => Self::Resolved,
        }
    }
}

impl Delivery {
    /// The notifier's name for a step (`queued`, `delivered`, `retrying`, `gave_up`).
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "delivered" => Self::Delivered,
            "retrying" => Self::Retrying,
            "gave_up" => Self::GaveUp,
            _ => return None,
        })
    }
}

impl From<&Silence> for SilenceView {
    fn from(s: &Silence) -> Self {
        Self {
            id: s.id.clone(),
            matchers: s.matchers.iter().map(ToString::to_string).collect(),
            starts_at: rfc3339::format_ms(s.starts_at_ms),
            ends_at: rfc3339::format_ms(s.ends_at_ms),
            author: s.author.clone(),
            comment: s.comment.clone(),
        }
    }
}

impl From<&MaintenanceWindow> for WindowView {
    fn from(w: &MaintenanceWindow) -> Self {
        Self {
            id: w.id.clone(),
            scope: w.scope.iter().cloned().collect(),
            starts_at: rfc3339::format_ms(w.starts_at_ms),
            ends_at: rfc3339::format_ms(w.ends_at_ms),
            announcement: w.announcement.clone(),
        }
    }
}

impl TryFrom<&HistoryRec> for Step {
    type Error = String;

    fn try_from(h: &HistoryRec) -> Result<Self, String> {
        Ok(Self {
            at: rfc3339::format_ms(h.at_ms),
            receiver: h.receiver.clone(),
            notification: NotificationKind::parse(&h.notification)
                .ok_or_else(|| format!("stored notification {:?}", h.notification))?
                .into(),
            idempotency_key: h.idempotency_key.clone(),
            attempt: h.attempt,
            result: Delivery::parse(&h.result)
                .ok_or_else(|| format!("stored delivery result {:?}", h.result))?,
            error: h.error.clone(),
            next_at: h.next_at_ms.map(rfc3339::format_ms),
        })
    }
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::BadRequest(m.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("alerts store operation", e)
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

/// `GET /api/v1/alerts/silences`.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/silences",
    tag = "alerts",
    summary = "Active and future silences",
    responses((status = 200, description = "Silences", body = SilenceList))
)]
pub(crate) async fn list_silences(State(alerts): State<Alerts>) -> Json<SilenceList> {
    Json(SilenceList {
        silences: alerts.silences().iter().map(SilenceView::from).collect(),
    })
}

/// `POST /api/v1/alerts/silences`.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/silences",
    tag = "alerts",
    summary = "Create a silence (admin)",
    request_body = NewSilence,
    responses(
        (status = 201, description = "Created", body = SilenceView),
        (status = 400, description = "Bad body, matcher or time", body = ErrorBody),
    )
)]
pub(crate) async fn create_silence(
    State(alerts): State<Alerts>,
    body: Result<Json<NewSilence>, JsonRejection>,
) -> Result<(StatusCode, Json<SilenceView>), ApiError> {
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
    Ok((StatusCode::CREATED, Json(SilenceView::from(&silence))))
}

/// `DELETE /api/v1/alerts/silences/{id}`.
#[utoipa::path(
    delete,
    path = "/api/v1/alerts/silences/{id}",
    tag = "alerts",
    summary = "End a silence (admin)",
    params(("id" = String, Path, description = "Silence id")),
    responses(
        (status = 204, description = "Ended"),
        (status = 404, description = "No such silence", body = ErrorBody),
    )
)]
pub(crate) async fn expire_silence(
    State(alerts): State<Alerts>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match alerts.expire_silence(&id).await.map_err(internal)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound(format!("no silence {id:?}"))),
    }
}

/// `GET /api/v1/alerts/maintenance`.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/maintenance",
    tag = "alerts",
    summary = "Active and future maintenance windows",
    responses((status = 200, description = "Windows", body = WindowList))
)]
pub(crate) async fn list_windows(State(alerts): State<Alerts>) -> Json<WindowList> {
    Json(WindowList {
        maintenance: alerts.windows().iter().map(WindowView::from).collect(),
    })
}

/// `POST /api/v1/alerts/maintenance`.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/maintenance",
    tag = "alerts",
    summary = "Announce a maintenance window (admin)",
    request_body = NewWindow,
    responses(
        (status = 201, description = "Created", body = WindowView),
        (status = 400, description = "Bad body, scope or time", body = ErrorBody),
    )
)]
pub(crate) async fn create_window(
    State(alerts): State<Alerts>,
    body: Result<Json<NewWindow>, JsonRejection>,
) -> Result<(StatusCode, Json<WindowView>), ApiError> {
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
    Ok((StatusCode::CREATED, Json(WindowView::from(&window))))
}

/// `DELETE /api/v1/alerts/maintenance/{id}`.
#[utoipa::path(
    delete,
    path = "/api/v1/alerts/maintenance/{id}",
    tag = "alerts",
    summary = "End a maintenance window (admin)",
    params(("id" = String, Path, description = "Window id")),
    responses(
        (status = 204, description = "Ended"),
        (status = 404, description = "No such window", body = ErrorBody),
    )
)]
pub(crate) async fn expire_window(
    State(alerts): State<Alerts>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match alerts.expire_window(&id).await.map_err(internal)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound(format!("no maintenance window {id:?}"))),
    }
}

/// `GET /api/v1/alerts/outbox`.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/outbox",
    tag = "alerts",
    summary = "Pending notifications, delivery counters and muted incidents",
    responses((status = 200, description = "The outbox", body = Outbox))
)]
pub(crate) async fn outbox(State(alerts): State<Alerts>) -> Json<Outbox> {
    let o = alerts.outbox();
    let pending = o
        .pending
        .iter()
        .map(|p| Pending {
            id: p.id,
            incident_id: p.incident_id.clone(),
            receiver: p.receiver.clone(),
            notification: p.notification.into(),
            idempotency_key: p.idempotency_key.clone(),
            attempts: p.attempts,
            next_at: rfc3339::format_ms(p.next_at_ms),
            last_error: p.last_error.clone(),
        })
        .collect();
    let muted_incidents = alerts
        .mutes()
        .into_iter()
        .map(|(id, m)| {
            let (reason, by) = match m {
                Mute::Silenced(s) => (MuteReason::Silenced, s),
                Mute::Inhibited(i) => (MuteReason::Inhibited, i),
                Mute::Maintenance(w) => (MuteReason::Maintenance, w),
            };
            (id, Muted { reason, by })
        })
        .collect();
    Json(Outbox {
        pending,
        delivered: o.stats.delivered,
        retries: o.stats.retries,
        gave_up: o.stats.gave_up,
        gave_up_total: o.gave_up_total,
        muted_incidents,
    })
}

/// `GET /api/v1/incidents/{id}/notifications`.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}/notifications",
    tag = "alerts",
    summary = "Every notification about an incident and its delivery attempts",
    params(("id" = String, Path, description = "Incident id")),
    responses((status = 200, description = "The history (empty for an incident never notified)",
        body = NotificationHistory))
)]
pub(crate) async fn history(
    State(alerts): State<Alerts>,
    Path(id): Path<String>,
) -> Result<Json<NotificationHistory>, ApiError> {
    let rows = alerts.history(&id).await.map_err(internal)?;
    let notifications = rows
        .iter()
        .map(Step::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    Ok(Json(NotificationHistory {
        incident_id: id,
        notifications,
    }))
}

/// The alerting routes with their documentation.
pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<Alerts> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(list_silences, create_silence))
        .routes(routes!(expire_silence))
        .routes(routes!(list_windows, create_window))
        .routes(routes!(expire_window))
        .routes(routes!(outbox))
        .routes(routes!(history))
}

/// The alerting routes, for any outer router state (merged into the main API router).
pub fn router<S: Clone + Send + Sync + 'static>(alerts: Alerts) -> axum::Router<S> {
    routes().split_for_parts().0.with_state(alerts)
}
