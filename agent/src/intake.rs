//! The loopback HTTP intake for the POS application: `POST /v1/txn` and `GET /v1/status`
//! (connection, spool, and the till's diagnosis as `verdict`, see [`crate::diagnose`]).
//!
//! A request is all or nothing: every item is validated first, and only if all are valid are
//! they appended in one spool transaction; the 200 goes out after the commit. Anything that
//! looks like a card number is refused, so no PAN can reach the spool.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use storepulse_agent_core::NewRecord;
use storepulse_shared::{Label, PayMethod, RecordBody, Scheme, TxnOutcome};

use crate::state::{Agent, Status, unix_ms};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most items in one request.
pub const MAX_ITEMS: usize = 1000;

/// Field names that suggest a card number; refused outright.
const CARD_FIELDS: &[&str] = &[
    "pan",
    "card_number",
    "cardnumber",
    "card_no",
    "cardno",
    "card",
    "account_number",
    "track2",
    "track_2",
    "track1",
    "cvv",
    "cvv2",
    "expiry",
];

/// An HTTP error with a message safe to show the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// `POST /v1/txn` success body.
#[derive(Debug, Serialize)]
struct Accepted {
    accepted: usize,
    first_seq: u64,
    last_seq: u64,
}

/// Builds the intake's router; tests call it without a socket.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/v1/txn", post(post_txn))
        .route("/v1/status", get(get_status))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(agent)
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn item(i: usize, message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("item {i}: {message}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: &self.message,
            }),
        )
            .into_response()
    }
}

/// `GET /v1/status` body: the status fields, the link's message set and clock offset, and the
/// diagnosis.
#[derive(Debug, Serialize)]
struct StatusBody {
    #[serde(flatten)]
    status: Status,
    /// Message set of the current (or last) connection to the collector (0: none yet).
    protocol_version: u16,
    /// Agent clock minus collector clock at the last `Welcome`, ms.
    clock_offset_ms: Option<i64>,
    /// The till's diagnosis.
    verdict: crate::diagnose::VerdictJson,
}

/// `GET /v1/status` query.
#[derive(Debug, Deserialize)]
struct StatusQuery {
    /// Probe the payment hosts and ask the collector now, not from the last minute's results.
    #[serde(default)]
    fresh: bool,
}

async fn get_status(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<StatusQuery>,
) -> Json<StatusBody> {
    let verdict = crate::diagnose::diagnose(&agent, q.fresh).await;
    let (protocol_version, clock_offset_ms) = {
        let l = agent.link();
        (l.protocol_version, l.clock_offset_ms)
    };
    Json(StatusBody {
        status: agent.status(),
        protocol_version,
        clock_offset_ms,
        verdict,
    })
}

async fn post_txn(
    State(agent): State<Arc<Agent>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, ApiError> {
    let body = body.map_err(|e| {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("body exceeds {MAX_BODY_BYTES} bytes")
        } else {
            "cannot read body".to_owned()
        };
        ApiError::new(status, message)
    })?;
    let records = parse_txns(&body, unix_ms())?;
    let n = records.len();
    match agent.append(records).await {
        Ok(a) => Ok(Json(Accepted {
            accepted: n,
            first_seq: a.first_seq.0,
            last_seq: a.first_seq.0 + a.count.saturating_sub(1),
        })),
        Err(error) => {
            tracing::error!(%error, items = n, "Spool write failed, transaction outcomes refused");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "spool unavailable",
            ))
        }
    }
}

/// Parses and validates a request body: one item or an array of items. Pure.
pub fn parse_txns(body: &[u8], now_unix_ms: i64) -> Result<Vec<NewRecord>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "body must be a JSON object or an array of objects",
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no items"));
    }
    if items.len() > MAX_ITEMS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} items, at most {MAX_ITEMS} per request", items.len()),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(map) => parse_item(map, now_unix_ms).map_err(|m| ApiError::item(i, m)),
            _ => Err(ApiError::item(i, "must be a JSON object")),
        })
        .collect()
}

fn parse_item(mut map: Map<String, Value>, now_unix_ms: i64) -> Result<NewRecord, String> {
    for (k, v) in &map {
        if CARD_FIELDS.contains(&k.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "field {k:?} looks like card data; card data is never accepted"
            ));
        }
        if let Value::String(s) = v
            && looks_like_pan(s)
        {
            return Err(format!(
                "field {k:?} looks like a card number; card data is never accepted"
            ));
        }
        if !matches!(
            k.as_str(),
            "scheme" | "code" | "latency_ms" | "method" | "route" | "time_unix_ms"
        ) {
            return Err(format!("unknown field {k:?}"));
        }
    }
    let scheme = match map.remove("scheme") {
        Some(Value::String(s)) => match s.as_str() {
            "cup" => Scheme::Cup,
            "iso8583" => Scheme::Iso8583,
            "wechatpay" => Scheme::Wechatpay,
            "alipay" => Scheme::Alipay,
            other => {
                return Err(format!(
                    "scheme {other:?} is not one of cup, iso8583, wechatpay, alipay"
                ));
            }
        },
        Some(_) => return Err("scheme must be a string".into()),
        None => return Err("scheme is missing".into()),
    };
    let code = match map.remove("code") {
        Some(Value::String(s)) => s,
        Some(_) => return Err("code must be a string".into()),
        None => return Err("code is missing".into()),
    };
    if let Err(e) = storepulse_shared::validate_txn_code(&code) {
        return Err(format!(
            "code {e} (1 to {} printable ASCII characters, e.g. 03, SYSTEMERROR, ACQ.TRADE_HAS_SUCCESS)",
            storepulse_shared::MAX_TXN_CODE_BYTES
        ));
    }
    let latency_ms = match map.remove("latency_ms") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or("latency_ms must be an integer from 0 to 4294967295")?,
    };
    let method = match map.remove("method") {
        None | Some(Value::Null) => match scheme {
            Scheme::Cup | Scheme::Iso8583 => PayMethod::Card,
            Scheme::Wechatpay | Scheme::Alipay => PayMethod::Qr,
        },
        Some(Value::String(s)) if s == "card" => PayMethod::Card,
        Some(Value::String(s)) if s == "qr" => PayMethod::Qr,
        Some(_) => return Err("method must be \"card\" or \"qr\"".into()),
    };
    let route = match map.remove("route") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Label::new(s).map_err(|e| format!("route {e}"))?),
        Some(_) => return Err("route must be a string".into()),
    };
    let time_unix_ms = match map.remove("time_unix_ms") {
        None | Some(Value::Null) => now_unix_ms,
        Some(v) => v
            .as_i64()
            .filter(|t| *t >= 0)
            .ok_or("time_unix_ms must be a non-negative integer")?,
    };
    Ok(NewRecord {
        time_unix_ms,
        body: RecordBody::TxnOutcome(TxnOutcome {
            scheme,
            code,
            latency_ms,
            method,
            route,
        }),
    })
}

/// A run of 13 to 19 digits (spaces and dashes allowed between them) is treated as a card
/// number.
fn looks_like_pan(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    (13..=19).contains(&digits)
        && s.chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
}

#[cfg(test)]
mod tests;
