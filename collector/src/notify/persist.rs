//! The notifier's store records (JSON in the `alerts_*` keyspaces) and their conversions to
//! and from core types. Keys: outbox `id u64 BE`; history `incident id ++ 0x00 ++ outbox id
//! BE ++ attempt u32 BE`; state `silence/<id>`, `window/<id>`, `incident/<id>`, `meta/...`.

use serde::{Deserialize, Serialize};
use storepulse_collector_core::notify::{
    IncidentExport, IncidentSnapshot, MaintenanceWindow, Matcher, Notification, NotificationKind,
    OutboxEntry, ReceiverMark, Severity, Silence,
};

use crate::store::{AlertOp, AlertSpace, StoreError};

/// State key of the next outbox id.
pub const META_NEXT_ID: &[u8] = b"meta/next_outbox_id";
/// State key of the count of notifications given up, ever.
pub const META_GAVE_UP: &[u8] = b"meta/gave_up_total";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotRec {
    id: String,
    kind: String,
    severity: String,
    scope: Vec<(String, String)>,
    summary_en: String,
    summary_zh: String,
    remediation_en: String,
    remediation_zh: String,
    affected_terminals: u32,
    affected_stores: u32,
    affected_merchants: u32,
    started_at_ms: i64,
    resolved_at_ms: Option<i64>,
    explained_by: Option<String>,
    #[serde(default)]
    merged_into: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NotificationRec {
    idempotency_key: String,
    receiver: String,
    incident_id: String,
    incident_key: String,
    kind: String,
    created_at_ms: i64,
    incident: SnapshotRec,
    maintenance: Option<String>,
    repeat_interval_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OutboxRec {
    id: u64,
    notification: NotificationRec,
    attempts: u32,
    next_at_ms: i64,
    last_error: Option<String>,
}

/// One line of an incident's notification history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryRec {
    /// When, Unix ms.
    pub at_ms: i64,
    /// Receiver name.
    pub receiver: String,
    /// firing, update, repeat or resolved.
    pub notification: String,
    /// The idempotency key.
    pub idempotency_key: String,
    /// Attempt number (0 = queued).
    pub attempt: u32,
    /// `queued`, `delivered`, `retrying` or `gave_up`.
    pub result: String,
    /// The error of a failed attempt.
    pub error: Option<String>,
    /// When the next attempt is due, for `retrying`.
    pub next_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SilenceRec {
    pub(crate) id: String,
    pub(crate) matchers: Vec<String>,
    pub(crate) starts_at_ms: i64,
    pub(crate) ends_at_ms: i64,
    pub(crate) author: String,
    pub(crate) comment: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WindowRec {
    pub(crate) id: String,
    pub(crate) scope: Vec<(String, String)>,
    pub(crate) starts_at_ms: i64,
    pub(crate) ends_at_ms: i64,
    pub(crate) announcement: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MarkRec {
    receiver: String,
    sent: u32,
    last_sent_ms: i64,
    last_update_ms: i64,
    severity: String,
    scope: Vec<(String, String)>,
    affected_terminals: u32,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    maintenance: Option<String>,
    #[serde(default)]
    generation: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IncidentRec {
    snapshot: SnapshotRec,
    first_seen_ms: i64,
    marks: Vec<MarkRec>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("alerts: {what}"))
}

fn severity(s: &str) -> Result<Severity, StoreError> {
    Severity::parse(s).ok_or_else(|| corrupt("severity"))
}

/// JSON bytes of a record.
pub(crate) fn to_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| corrupt(&format!("encode: {e}")))
}

/// A record from JSON bytes.
pub(crate) fn from_bytes<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| corrupt(&format!("decode: {e}")))
}

impl From<&IncidentSnapshot> for SnapshotRec {
    fn from(s: &IncidentSnapshot) -> Self {
        Self {
            id: s.id.clone(),
            kind: s.kind.clone(),
            severity: s.severity.as_str().into(),
            scope: s.scope.clone(),
            summary_en: s.summary_en.clone(),
            summary_zh: s.summary_zh.clone(),
            remediation_en: s.remediation_en.clone(),
            remediation_zh: s.remediation_zh.clone(),
            affected_terminals: s.affected_terminals,
            affected_stores: s.affected_stores,
            affected_merchants: s.affected_merchants,
            started_at_ms: s.started_at_ms,
            resolved_at_ms: s.resolved_at_ms,
            explained_by: s.explained_by.clone(),
            merged_into: s.merged_into.clone(),
        }
    }
}

impl TryFrom<SnapshotRec> for IncidentSnapshot {
    type Error = StoreError;
    fn try_from(s: SnapshotRec) -> Result<Self, StoreError> {
        Ok(Self {
            severity: severity(&s.severity)?,
            id: s.id,
            kind: s.kind,
            scope: s.scope,
            summary_en: s.summary_en,
            summary_zh: s.summary_zh,
            remediation_en: s.remediation_en,
            remediation_zh: s.remediation_zh,
            affected_terminals: s.affected_terminals,
            affected_stores: s.affected_stores,
            affected_merchants: s.affected_merchants,
            started_at_ms: s.started_at_ms,
            resolved_at_ms: s.resolved_at_ms,
            explained_by: s.explained_by,
            merged_into: s.merged_into,
        })
    }
}

impl From<&OutboxEntry> for OutboxRec {
    fn from(e: &OutboxEntry) -> Self {
        let n = &e.notification;
        Self {
            id: e.id,
            notification: NotificationRec {
                idempotency_key: n.idempotency_key.clone(),
                receiver: n.receiver.clone(),
                incident_id: n.incident_id.clone(),
                incident_key: n.incident_key.clone(),
                kind: n.kind.as_str().into(),
                created_at_ms: n.created_at_ms,
                incident: (&n.incident).into(),
                maintenance: n.maintenance.clone(),
                repeat_interval_ms: n.repeat_interval_ms,
            },
            attempts: e.attempts,
            next_at_ms: e.next_at_ms,
            last_error: e.last_error.clone(),
        }
    }
}

impl TryFrom<OutboxRec> for OutboxEntry {
    type Error = StoreError;
    fn try_from(r: OutboxRec) -> Result<Self, StoreError> {
        let n = r.notification;
        Ok(Self {
            id: r.id,
            notification: Notification {
                kind: NotificationKind::parse(&n.kind).ok_or_else(|| corrupt("kind"))?,
                idempotency_key: n.idempotency_key,
                receiver: n.receiver,
                incident_id: n.incident_id,
                incident_key: n.incident_key,
                created_at_ms: n.created_at_ms,
                incident: n.incident.try_into()?,
                maintenance: n.maintenance,
                repeat_interval_ms: n.repeat_interval_ms,
            },
            attempts: r.attempts,
            next_at_ms: r.next_at_ms,
            last_error: r.last_error,
        })
    }
}

impl From<&IncidentExport> for IncidentRec {
    fn from(e: &IncidentExport) -> Self {
        Self {
            snapshot: (&e.snapshot).into(),
            first_seen_ms: e.first_seen_ms,
            marks: e
                .marks
                .iter()
                .map(|m| MarkRec {
                    receiver: m.receiver.clone(),
                    sent: m.sent,
                    last_sent_ms: m.last_sent_ms,
                    last_update_ms: m.last_update_ms,
                    severity: m.severity.as_str().into(),
                    scope: m.scope.clone(),
                    affected_terminals: m.affected_terminals,
                    kind: m.kind.clone(),
                    maintenance: m.maintenance.clone(),
                    generation: m.generation,
                })
                .collect(),
        }
    }
}

impl TryFrom<IncidentRec> for IncidentExport {
    type Error = StoreError;
    fn try_from(r: IncidentRec) -> Result<Self, StoreError> {
        Ok(Self {
            snapshot: r.snapshot.try_into()?,
            first_seen_ms: r.first_seen_ms,
            marks: r
                .marks
                .into_iter()
                .map(|m| {
                    Ok(ReceiverMark {
                        severity: severity(&m.severity)?,
                        receiver: m.receiver,
                        sent: m.sent,
                        last_sent_ms: m.last_sent_ms,
                        last_update_ms: m.last_update_ms,
                        scope: m.scope,
                        affected_terminals: m.affected_terminals,
                        kind: m.kind,
                        maintenance: m.maintenance,
                        generation: m.generation,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        })
    }
}

impl From<&Silence> for SilenceRec {
    fn from(s: &Silence) -> Self {
        Self {
            id: s.id.clone(),
            matchers: s.matchers.iter().map(ToString::to_string).collect(),
            starts_at_ms: s.starts_at_ms,
            ends_at_ms: s.ends_at_ms,
            author: s.author.clone(),
            comment: s.comment.clone(),
        }
    }
}

impl TryFrom<SilenceRec> for Silence {
    type Error = StoreError;
    fn try_from(s: SilenceRec) -> Result<Self, StoreError> {
        Ok(Self {
            matchers: s
                .matchers
                .iter()
                .map(|m| Matcher::parse(m).map_err(|_| corrupt("matcher")))
                .collect::<Result<_, _>>()?,
            id: s.id,
            starts_at_ms: s.starts_at_ms,
            ends_at_ms: s.ends_at_ms,
            author: s.author,
            comment: s.comment,
        })
    }
}

impl From<&MaintenanceWindow> for WindowRec {
    fn from(w: &MaintenanceWindow) -> Self {
        Self {
            id: w.id.clone(),
            scope: w.scope.clone(),
            starts_at_ms: w.starts_at_ms,
            ends_at_ms: w.ends_at_ms,
            announcement: w.announcement.clone(),
        }
    }
}

impl From<WindowRec> for MaintenanceWindow {
    fn from(w: WindowRec) -> Self {
        Self {
            id: w.id,
            scope: w.scope,
            starts_at_ms: w.starts_at_ms,
            ends_at_ms: w.ends_at_ms,
            announcement: w.announcement,
        }
    }
}

/// History key prefix of an incident.
pub(crate) fn history_prefix(incident_id: &str) -> Vec<u8> {
    let mut k = incident_id.as_bytes().to_vec();
    k.push(0);
    k
}

/// The history put for one step of one outbox entry.
pub(crate) fn history_op(
    e: &OutboxEntry,
    at_ms: i64,
    result: &str,
    next_at_ms: Option<i64>,
) -> Result<AlertOp, StoreError> {
    let mut key = history_prefix(&e.notification.incident_id);
    key.extend_from_slice(&e.id.to_be_bytes());
    key.extend_from_slice(&e.attempts.to_be_bytes());
    let rec = HistoryRec {
        at_ms,
        receiver: e.notification.receiver.clone(),
        notification: e.notification.kind.as_str().into(),
        idempotency_key: e.notification.idempotency_key.clone(),
        attempt: e.attempts,
        result: result.into(),
        error: e.last_error.clone(),
        next_at_ms,
    };
    Ok((AlertSpace::History, key, Some(to_bytes(&rec)?)))
}

/// The outbox put of an entry.
pub(crate) fn outbox_put(e: &OutboxEntry) -> Result<AlertOp, StoreError> {
    Ok((
        AlertSpace::Outbox,
        e.id.to_be_bytes().to_vec(),
        Some(to_bytes(&OutboxRec::from(e))?),
    ))
}

/// The outbox delete of an entry.
pub(crate) fn outbox_delete(id: u64) -> AlertOp {
    (AlertSpace::Outbox, id.to_be_bytes().to_vec(), None)
}

/// A state key.
pub(crate) fn state_key(kind: &str, id: &str) -> Vec<u8> {
    format!("{kind}/{id}").into_bytes()
}

/// Decodes an outbox value.
pub(crate) fn outbox_entry(v: &[u8]) -> Result<OutboxEntry, StoreError> {
    from_bytes::<OutboxRec>(v)?.try_into()
}

/// A u64 counter value.
pub(crate) fn counter(v: Option<&[u8]>) -> u64 {
    v.and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}
