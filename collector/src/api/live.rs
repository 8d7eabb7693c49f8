//! The fleet overview and the live event stream the dashboard uses:
//! `GET /api/v1/summary` (terminals by state, active incidents, payments and failures by class
//! per minute) and `GET /api/v1/events` (Server-Sent Events: `update` as soon as incidents
//! change, `tick` every few seconds so counters stay fresh; each event's data is a
//! [`LiveEvent`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use storepulse_shared::taxonomy::ErrorClass;
use utoipa::ToSchema;

use super::common::{ApiState, Class};
use crate::now_unix_ms;

/// How often the stream checks for changes.
const POLL: Duration = Duration::from_millis(500);
/// A `tick` at least this often.
const TICK: Duration = Duration::from_secs(5);

/// The fleet overview.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Terminals by state.
    pub terminals: TerminalCounts,
    /// Open incidents.
    pub incidents_active: usize,
    /// Payments of the last hour.
    pub last_hour: LastHour,
    /// Payments per minute of the last hour, oldest first.
    pub per_minute: Vec<Minute>,
}

/// Terminals by state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminalCounts {
    /// All known terminals.
    pub total: u64,
    /// Online.
    pub online: u64,
    /// Stale.
    pub stale: u64,
    /// Offline.
    pub offline: u64,
}

/// Payments of the last hour.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LastHour {
    /// Outcomes.
    pub attempts: u64,
    /// Approved.
    pub approved: u64,
    /// approved / attempts; null without attempts.
    pub success_rate: Option<f64>,
    /// Outcomes that were not approvals, by taxonomy class.
    pub failures_by_class: BTreeMap<Class, u64>,
}

/// Payments that arrived in one minute.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Minute {
    /// Minute start, Unix ms.
    pub minute_unix_ms: i64,
    /// Outcomes.
    pub attempts: u64,
    /// Approved.
    pub approved: u64,
    /// Outcomes that were not approvals, by taxonomy class.
    pub failures: BTreeMap<Class, u64>,
}

/// The data of every `update` and `tick` event of `GET /api/v1/events`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveEvent {
    /// Grows with every change of the incidents.
    pub version: u64,
    /// Open incidents.
    pub incidents_active: usize,
}

/// Class names of the incident book as typed keys (the book names classes with
/// `ErrorClass::as_str`, so every name parses).
fn classes<'a>(
    counts: impl IntoIterator<Item = (&'a &'static str, &'a u64)>,
) -> BTreeMap<Class, u64> {
    let mut out = BTreeMap::new();
    for (c, n) in counts {
        if let Some(c) = ErrorClass::parse(c) {
            *out.entry(Class(c)).or_default() += n;
        }
    }
    out
}

/// `GET /api/v1/summary`.
#[utoipa::path(
    get,
    path = "/api/v1/summary",
    tag = "fleet",
    summary = "Fleet overview: terminals by state, active incidents, payments and failures by class per minute (last hour)",
    responses((status = 200, description = "The overview", body = Summary))
)]
pub(crate) async fn summary(State(state): State<ApiState>) -> Json<Summary> {
    let now = now_unix_ms();
    let (online, stale, offline) = state
        .fleet
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .state_counts(now);
    let book = state
        .incidents
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let hour_ago = now - 3_600_000;
    let (mut attempts, mut approved) = (0u64, 0u64);
    let mut per_minute = Vec::new();
    let mut by_class = BTreeMap::new();
    for m in book.minutes.iter().filter(|m| m.minute_ms >= hour_ago) {
        attempts += m.attempts;
        approved += m.approved;
        let failures = classes(&m.failures);
        for (c, n) in &failures {
            *by_class.entry(*c).or_default() += n;
        }
        per_minute.push(Minute {
            minute_unix_ms: m.minute_ms,
            attempts: m.attempts,
            approved: m.approved,
            failures,
        });
    }
    Json(Summary {
        terminals: TerminalCounts {
            total: online + stale + offline,
            online,
            stale,
            offline,
        },
        incidents_active: book.active().count(),
        last_hour: LastHour {
            attempts,
            approved,
            success_rate: (attempts > 0).then(|| approved as f64 / attempts as f64),
            failures_by_class: by_class,
        },
        per_minute,
    })
}

/// `GET /api/v1/events`: Server-Sent Events.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "fleet",
    summary = "Server-Sent Events: `update` when incidents change, `tick` every 5 s",
    description = "Each event's `data` is a JSON `LiveEvent` (see the schema of that name). \
        The stream ends when the collector shuts down.",
    responses((status = 200, description = "The event stream", body = String,
        content_type = "text/event-stream"))
)]
pub(crate) async fn events(
    State(state): State<ApiState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let start = (
        state,
        None::<u64>,
        Instant::now()
            .checked_sub(TICK)
            .unwrap_or_else(Instant::now),
    );
    let stream = futures_util::stream::unfold(start, |(state, seen, mut last)| async move {
        loop {
            if *state.shutdown.borrow() {
                return None;
            }
            let data = {
                let book = state
                    .incidents
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                LiveEvent {
                    version: book.version,
                    incidents_active: book.active().count(),
                }
            };
            let version = data.version;
            let event = |name: &str| {
                Event::default()
                    .event(name)
                    .json_data(&data)
                    .unwrap_or_else(|_| Event::default().event(name))
            };
            if seen != Some(version) {
                return Some((Ok(event("update")), (state, Some(version), Instant::now())));
            }
            if last.elapsed() >= TICK {
                last = Instant::now();
                return Some((Ok(event("tick")), (state, seen, last)));
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
