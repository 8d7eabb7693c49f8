//! A terminal's stored records: `GET /api/v1/terminals/{id}/records` (paged with an opaque
//! cursor over (epoch, seq)), its quarantined records: `GET /api/v1/terminals/{id}/quarantined`,
//! and the [`Record`] DTO (also what `storepulse-collector dump` writes). Record bodies are typed here from the wire
//! types of `storepulse-shared` (serialization marks a boundary: the wire types stay as they
//! are, the API spells enums in lowercase).

use std::sync::PoisonError;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use storepulse_shared::{
    self as shared, DropReason, PayMethod, ProbeError, RecordBody, Scheme, TerminalId,
};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::common::{self, ApiError, ApiState, ErrorBody};
use crate::store::{QuarantineRow, RecordKey, RecordRow};

/// Records returned when `limit` is not given.
pub const DEFAULT_RECORDS_LIMIT: usize = 100;
/// Most records returned by one request.
pub const MAX_RECORDS_LIMIT: usize = 1000;

/// Query of the record list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// Cursor: records after this one (the previous page's `next`; opaque).
    after: Option<String>,
    /// Most records returned (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// One page of a terminal's records.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordPage {
    /// Records in (epoch, seq) order.
    pub records: Vec<Record>,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<String>,
}

/// One page of a terminal's quarantined records.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantinePage {
    /// Quarantined records in (epoch, seq) order.
    pub records: Vec<QuarantinedRecord>,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<String>,
}

/// A record the collector kept apart instead of storing it, because one of its values broke
/// a rule of PROTOCOL.md (a bad label, a number out of range or not finite). Its batch was
/// acknowledged; the record is not counted and detection never sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantinedRecord {
    /// The agent's spool epoch.
    pub epoch: u64,
    /// Sequence number within the epoch.
    pub seq: u64,
    /// The record's time as the agent sent it, Unix ms (agent clock, not corrected).
    pub time_unix_ms: i64,
    /// When the collector received it, Unix ms.
    pub received_unix_ms: i64,
    /// The record kind.
    pub kind: RecordKind,
    /// The field that broke its rule (`route`, `cpu_percent`, `endpoints[0].dns_ms`).
    pub field: String,
    /// Why (`must not be empty`, `is 150, must be from 0 to 100`).
    pub reason: String,
    /// The body as received, in Rust debug notation (`NaN` shows as `NaN`); for people, not
    /// for parsing.
    pub body: String,
}

/// A record kind.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Host health.
    Heartbeat,
    /// Network quality.
    NetQuality,
    /// A payment's outcome.
    TxnOutcome,
    /// Records the agent had to drop.
    SpoolDrops,
}

/// A stored record. `kind` says which body it carries.
#[derive(Debug, Serialize)]
pub struct Record {
    /// The agent's spool epoch.
    pub epoch: u64,
    /// Sequence number within the epoch.
    pub seq: u64,
    /// When observed, Unix ms (collector clock; corrected for a skewed agent clock).
    pub time_unix_ms: i64,
    /// The agent's own time stamp when `time_unix_ms` was corrected for clock skew or
    /// clamped, else null.
    pub agent_time_unix_ms: Option<i64>,
    /// `kind` and `body`.
    #[serde(flatten)]
    pub body: Body,
}

/// A record's kind and body (`{"kind": "heartbeat", "body": {...}}`).
#[derive(Debug, Serialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum Body {
    /// Host health.
    Heartbeat(Heartbeat),
    /// Network quality.
    NetQuality(NetQuality),
    /// A payment's outcome.
    TxnOutcome(TxnOutcome),
    /// Records the agent had to drop.
    SpoolDrops(SpoolDrops),
}

/// Host health, sampled every heartbeat interval.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// CPU use over the last interval, percent of all cores.
    #[schema(minimum = 0, maximum = 100)]
    pub cpu_percent: f32,
    /// Memory in use, bytes.
    pub mem_used_bytes: u64,
    /// Memory installed, bytes.
    pub mem_total_bytes: u64,
    /// Free space on the spool's disk, bytes.
    pub disk_free_bytes: u64,
    /// Host uptime, seconds.
    pub uptime_secs: u64,
    /// Hottest temperature sensor, degrees Celsius (null: no sensor).
    #[schema(minimum = -100, maximum = 200)]
    pub temperature_c: Option<f32>,
    /// Battery charge, percent (null: no battery).
    #[schema(minimum = 0, maximum = 100)]
    pub battery_percent: Option<f32>,
    /// Records waiting in the agent's spool.
    pub spool_records: u64,
}

/// Network quality.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetQuality {
    /// Round-trip time to the collector, ms (null when offline).
    #[schema(minimum = 0, maximum = 3600000)]
    pub rtt_ms: Option<f32>,
    /// Mean difference between successive RTT samples, ms.
    #[schema(minimum = 0, maximum = 3600000)]
    pub jitter_ms: Option<f32>,
    /// Probes or packets lost, percent.
    #[schema(minimum = 0, maximum = 100)]
    pub loss_percent: Option<f32>,
    /// One entry per configured payment endpoint.
    pub endpoints: Vec<EndpointProbe>,
}

/// DNS and TCP connect timing to one payment endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointProbe {
    /// The endpoint's configured name.
    pub name: String,
    /// DNS resolution time, ms.
    #[schema(minimum = 0, maximum = 3600000)]
    pub dns_ms: Option<f32>,
    /// TCP connect time, ms.
    #[schema(minimum = 0, maximum = 3600000)]
    pub tcp_connect_ms: Option<f32>,
    /// Why the probe failed, if it did.
    pub error: Option<ProbeFailure>,
}

/// Why an endpoint probe failed.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeFailure {
    /// The name did not resolve.
    DnsFailed,
    /// The connect timed out.
    Timeout,
    /// The connection was refused.
    Refused,
    /// Another network error.
    Other,
}

/// A payment's outcome (response code, never card data).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TxnOutcome {
    /// The response-code table.
    pub scheme: PayScheme,
    /// The response code as returned.
    pub code: String,
    /// Request to response, ms (0: unknown).
    pub latency_ms: u32,
    /// Card or QR.
    pub method: Method,
    /// The acquirer or channel that handled it, when known.
    pub route: Option<String>,
}

/// A payment scheme (whose response-code table a code belongs to).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayScheme {
    /// ISO 8583 (card acquirers).
    Iso8583,
    /// China UnionPay.
    Cup,
    /// WeChat Pay.
    Wechatpay,
    /// Alipay.
    Alipay,
}

/// How a payment was made.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A card.
    Card,
    /// A QR code.
    Qr,
}

/// Records the agent dropped since its previous report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpoolDrops {
    /// Why.
    pub reason: DropCause,
    /// Heartbeats dropped.
    pub heartbeats: u64,
    /// Network-quality samples dropped.
    pub net_quality: u64,
    /// Payment outcomes dropped.
    pub txn_outcomes: u64,
}

/// Why an agent dropped records.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DropCause {
    /// The spool reached its size bound.
    SpoolFull,
    /// The spool's disk could not be written.
    DiskError,
}

impl RecordKind {
    fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "heartbeat" => Self::Heartbeat,
            "net_quality" => Self::NetQuality,
            "txn_outcome" => Self::TxnOutcome,
            "spool_drops" => Self::SpoolDrops,
            _ => return None,
        })
    }
}

/// The opaque cursor of a record key: epoch and seq in hex (`<epoch>-<seq>`).
fn cursor(key: &RecordKey) -> String {
    format!("{:x}-{:x}", key.epoch, key.seq)
}

/// Parses a cursor of [`cursor`] for `terminal`.
fn parse_cursor(terminal: &TerminalId, s: &str) -> Result<RecordKey, ApiError> {
    let bad = || ApiError::BadRequest(format!("after: {s:?} is not a cursor from `next`"));
    let (e, q) = s.split_once('-').ok_or_else(bad)?;
    Ok(RecordKey {
        terminal: terminal.clone(),
        epoch: u64::from_str_radix(e, 16).map_err(|_| bad())?,
        seq: u64::from_str_radix(q, 16).map_err(|_| bad())?,
    })
}

impl From<&QuarantineRow> for QuarantinedRecord {
    fn from(row: &QuarantineRow) -> Self {
        Self {
            epoch: row.key.epoch,
            seq: row.key.seq,
            time_unix_ms: row.entry.time_unix_ms,
            received_unix_ms: row.entry.received_unix_ms,
            kind: RecordKind::parse(&row.entry.kind).unwrap_or(RecordKind::TxnOutcome),
            field: row.entry.field.clone(),
            reason: row.entry.reason.clone(),
            body: row.entry.body.clone(),
        }
    }
}

impl From<&RecordRow> for Record {
    fn from(row: &RecordRow) -> Self {
        Self {
            epoch: row.key.epoch,
            seq: row.key.seq,
            time_unix_ms: row.record.time_unix_ms,
            agent_time_unix_ms: row.record.agent_time_unix_ms,
            body: Body::from(&row.record.body),
        }
    }
}

impl From<&RecordBody> for Body {
    fn from(body: &RecordBody) -> Self {
        match body {
            RecordBody::Heartbeat(h) => Self::Heartbeat(h.into()),
            RecordBody::NetQuality(n) => Self::NetQuality(n.into()),
            RecordBody::TxnOutcome(t) => Self::TxnOutcome(TxnOutcome {
                scheme: t.scheme.into(),
                code: t.code.clone(),
                latency_ms: t.latency_ms,
                method: t.method.into(),
                route: t.route.as_ref().map(|r| r.as_str().to_owned()),
            }),
            RecordBody::SpoolDrops(d) => Self::SpoolDrops(SpoolDrops {
                reason: d.reason.into(),
                heartbeats: d.heartbeats,
                net_quality: d.net_quality,
                txn_outcomes: d.txn_outcomes,
            }),
        }
    }
}

impl From<&shared::Heartbeat> for Heartbeat {
    fn from(h: &shared::Heartbeat) -> Self {
        Self {
            cpu_percent: h.cpu_percent,
            mem_used_bytes: h.mem_used_bytes,
            mem_total_bytes: h.mem_total_bytes,
            disk_free_bytes: h.disk_free_bytes,
            uptime_secs: h.uptime_secs,
            temperature_c: h.temperature_c,
            battery_percent: h.battery_percent,
            spool_records: h.spool_records,
        }
    }
}

impl From<&shared::NetQuality> for NetQuality {
    fn from(n: &shared::NetQuality) -> Self {
        Self {
            rtt_ms: n.rtt_ms,
            jitter_ms: n.jitter_ms,
            loss_percent: n.loss_percent,
            endpoints: n
                .endpoints
                .iter()
                .map(|p| EndpointProbe {
                    name: p.name.clone(),
                    dns_ms: p.dns_ms,
                    tcp_connect_ms: p.tcp_connect_ms,
                    error: p.error.map(ProbeFailure::from),
                })
                .collect(),
        }
    }
}

impl From<ProbeError> for ProbeFailure {
    fn from(e: ProbeError) -> Self {
        match e {
            ProbeError::DnsFailed => Self::DnsFailed,
            ProbeError::Timeout => Self::Timeout,
            ProbeError::Refused => Self::Refused,
            ProbeError::Other => Self::Other,
        }
    }
}

impl From<Scheme> for PayScheme {
    fn from(s: Scheme) -> Self {
        match s {
            Scheme::Iso8583 => Self::Iso8583,
            Scheme::Cup => Self::Cup,
            Scheme::Wechatpay => Self::Wechatpay,
            Scheme::Alipay => Self::Alipay,
        }
    }
}

impl From<PayMethod> for Method {
    fn from(m: PayMethod) -> Self {
        match m {
            PayMethod::Card => Self::Card,
            PayMethod::Qr => Self::Qr,
        }
    }
}

impl From<DropReason> for DropCause {
    fn from(r: DropReason) -> Self {
        match r {
            DropReason::SpoolFull => Self::SpoolFull,
            DropReason::DiskError => Self::DiskError,
        }
    }
}

impl PartialSchema for Record {
    /// One closed object per kind: the record's fields with `kind` and the body that kind
    /// carries (utoipa's `allOf` for a flattened enum could not be closed to other fields).
    fn schema() -> RefOr<Schema> {
        let head = || {
            ObjectBuilder::new()
                .property("epoch", u64::schema())
                .required("epoch")
                .property("seq", u64::schema())
                .required("seq")
                .property("time_unix_ms", i64::schema())
                .required("time_unix_ms")
                .property(
                    "agent_time_unix_ms",
                    ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                            Type::Integer,
                            Type::Null,
                        ]))
                        .description(Some(
                            "The agent's own time stamp when time_unix_ms was corrected or clamped",
                        )),
                )
        };
        let kinds = [
            ("heartbeat", Heartbeat::name()),
            ("net_quality", NetQuality::name()),
            ("txn_outcome", TxnOutcome::name()),
            ("spool_drops", SpoolDrops::name()),
        ];
        let mut one_of = OneOfBuilder::new()
            .description(Some("A stored record; `kind` says which body it carries"));
        for (kind, body) in kinds {
            let item = head()
                .property("kind", common::string_enum("The record kind", [kind]))
                .required("kind")
                .property(
                    "body",
                    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(body)),
                )
                .required("body")
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                ));
            one_of = one_of.item(item);
        }
        one_of.into()
    }
}

impl ToSchema for Record {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        common::register::<Heartbeat>(schemas);
        common::register::<NetQuality>(schemas);
        common::register::<TxnOutcome>(schemas);
        common::register::<SpoolDrops>(schemas);
    }
}

/// `GET /api/v1/terminals/{id}/records`.
#[utoipa::path(
    get,
    path = "/api/v1/terminals/{id}/records",
    tag = "terminals",
    summary = "A terminal's stored records in (epoch, seq) order, a page at a time",
    params(("id" = String, Path, description = "Terminal id"), RecordsQuery),
    responses(
        (status = 200, description = "Records", body = RecordPage),
        (status = 400, description = "Unknown parameter or bad value", body = ErrorBody),
        (status = 404, description = "Unknown terminal", body = ErrorBody),
    )
)]
pub(crate) async fn records(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> Result<Json<RecordPage>, ApiError> {
    let (terminal, after, limit) = page_query(&state, id, query)?;
    let store = state.store.clone();
    let mut rows = common::blocking("records", move || {
        store.records_after(&terminal, after.as_ref(), limit + 1)
    })
    .await?;
    let next = next_cursor(&mut rows, limit, |r| &r.key);
    Ok(Json(RecordPage {
        records: rows.iter().map(Record::from).collect(),
        next,
    }))
}

/// `GET /api/v1/terminals/{id}/quarantined`.
#[utoipa::path(
    get,
    path = "/api/v1/terminals/{id}/quarantined",
    tag = "terminals",
    summary = "A terminal's quarantined records (kept apart for a bad value), in (epoch, seq) order",
    params(("id" = String, Path, description = "Terminal id"), RecordsQuery),
    responses(
        (status = 200, description = "Quarantined records", body = QuarantinePage),
        (status = 400, description = "Unknown parameter or bad value", body = ErrorBody),
        (status = 404, description = "Unknown terminal", body = ErrorBody),
    )
)]
pub(crate) async fn quarantined(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> Result<Json<QuarantinePage>, ApiError> {
    let (terminal, after, limit) = page_query(&state, id, query)?;
    let store = state.store.clone();
    let mut rows = common::blocking("quarantined", move || {
        store.quarantined(&terminal, after.as_ref(), limit + 1)
    })
    .await?;
    let next = next_cursor(&mut rows, limit, |r| &r.key);
    Ok(Json(QuarantinePage {
        records: rows.iter().map(QuarantinedRecord::from).collect(),
        next,
    }))
}

/// The terminal (known, else 404), the cursor and the limit of a page request.
fn page_query(
    state: &ApiState,
    id: String,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> Result<(TerminalId, Option<RecordKey>, usize), ApiError> {
    let q = common::query(query)?;
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
    let limit = common::limit(q.limit, DEFAULT_RECORDS_LIMIT, MAX_RECORDS_LIMIT)?;
    let after = q
        .after
        .as_deref()
        .map(|a| parse_cursor(&terminal, a))
        .transpose()?;
    Ok((terminal, after, limit))
}

/// Cuts `rows` (read with `limit + 1`) to `limit` and says where the next page starts.
fn next_cursor<T>(
    rows: &mut Vec<T>,
    limit: usize,
    key: impl Fn(&T) -> &RecordKey,
) -> Option<String> {
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(|r| cursor(key(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let t = TerminalId::new("T1").expect("valid");
        for (epoch, seq) in [(0, 0), (7, 300), (u64::MAX, u64::MAX)] {
            let k = RecordKey {
                terminal: t.clone(),
                epoch,
                seq,
            };
            assert_eq!(parse_cursor(&t, &cursor(&k)).expect("parses"), k);
        }
        for bad in ["", "12", "x-1", "1-", "-1", "1-2-3"] {
            assert!(parse_cursor(&t, bad).is_err(), "{bad}");
        }
    }
}
