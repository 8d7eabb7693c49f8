//! The fleet overview and the live event stream the dashboard uses:
//! `GET /api/v1/summary` (terminals by state, active incidents, payments and failures by class
//! per minute) and `GET /api/v1/events` (Server-Sent Events: `update` as soon as incidents
//! change, `tick` every few seconds so counters stay fresh).

use std::convert::Infallible;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::{Value, json};
use storepulse_collector_core::TerminalState;

use crate::api::ApiState;
use crate::now_unix_ms;

/// How often the stream checks for changes.
const POLL: Duration = Duration::from_millis(500);
/// A `tick` at least this often.
const TICK: Duration = Duration::from_secs(5);

/// `GET /api/v1/summary`.
pub(crate) async fn summary(State(state): State<ApiState>) -> Json<Value> {
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
    let book = state
        .incidents
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let hour_ago = now - 3_600_000;
    let (mut attempts, mut approved) = (0u64, 0u64);
    let mut by_class: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    let mut per_minute = Vec::new();
    for m in book.minutes.iter().filter(|m| m.minute_ms >= hour_ago) {
        attempts += m.attempts;
        approved += m.approved;
        for (c, n) in &m.failures {
            *by_class.entry(c).or_default() += n;
        }
        per_minute.push(json!({
            "minute_unix_ms": m.minute_ms,
            "attempts": m.attempts,
            "approved": m.approved,
            "failures": m.failures,
        }));
    }
    Json(json!({
        "terminals": { "total": online + stale + offline, "online": online, "stale": stale, "offline": offline },
        "incidents_active": book.active().count(),
        "last_hour": {
            "attempts": attempts,
            "approved": approved,
            "success_rate": if attempts == 0 { Value::Null } else { json!(approved as f64 / attempts as f64) },
            "failures_by_class": by_class,
        },
        "per_minute": per_minute,
    }))
}

/// `GET /api/v1/events`: Server-Sent Events.
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
            let (version, active) = {
                let book = state
                    .incidents
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                (book.version, book.active().count())
            };
            let data = json!({ "version": version, "incidents_active": active }).to_string();
            if seen != Some(version) {
                let ev = Event::default().event("update").data(data);
                return Some((Ok(ev), (state, Some(version), Instant::now())));
            }
            if last.elapsed() >= TICK {
                last = Instant::now();
                let ev = Event::default().event("tick").data(data);
                return Some((Ok(ev), (state, seen, last)));
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
