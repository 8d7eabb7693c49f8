//! Value rules for records and `Hello` labels, and the collector's tolerant reading of the
//! agent's frames.
//!
//! A `Batch` whose bytes decode is never refused for what one record says: the collector reads
//! it as a [`RawBatch`] (labels as plain strings), and [`RawRecord::check`] splits the records
//! into those it stores and those it quarantines with the field and the reason (a label that
//! breaks the label rule, a number that is not finite or out of its range). Refusing the batch
//! would stall the agent: it resends the same batch after every reconnect and everything
//! behind it waits. A `Hello` is read as a [`RawHello`], so a bad label is refused naming the
//! field instead of failing as an undecodable payload.
//!
//! The raw types encode exactly like their checked twins in [`crate::message`] (postcard has
//! no field names or tags; `Label` and `TerminalId` travel as strings).

use serde::{Deserialize, Serialize};

use crate::ids::{Label, Seq, TerminalId, validate_label};
use crate::message::{
    Batch, Heartbeat, Hello, Identity, LinkType, NetQuality, PayMethod, Record, RecordBody, Scheme,
    SpoolDrops, TxnOutcome,
};

/// Longest time a network measurement may report, milliseconds (one hour).
pub const MAX_MILLIS: f32 = 3_600_000.0;

/// A field whose value breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct FieldError {
    /// The field, as named in PROTOCOL.md (`cpu_percent`, `route`, `endpoints[0].dns_ms`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A `Batch` as the collector reads it: records with unchecked labels and numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawBatch {
    /// As [`Batch::batch_id`].
    pub batch_id: u64,
    /// As [`Batch::records`].
    pub records: Vec<RawRecord>,
}

/// A [`Record`] before its values are checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawRecord {
    /// As [`Record::seq`].
    pub seq: Seq,
    /// As [`Record::time_unix_ms`].
    pub time_unix_ms: i64,
    /// As [`Record::body`].
    pub body: RawBody,
}

/// [`RecordBody`] before its values are checked (same variants, same order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RawBody {
    /// [`RecordBody::Heartbeat`].
    Heartbeat(Heartbeat),
    /// [`RecordBody::NetQuality`].
    NetQuality(NetQuality),
    /// [`RecordBody::TxnOutcome`], its route a plain string.
    TxnOutcome(RawTxnOutcome),
    /// [`RecordBody::SpoolDrops`].
    SpoolDrops(SpoolDrops),
}

/// [`TxnOutcome`] with its route as a plain string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawTxnOutcome {
    /// As [`TxnOutcome::scheme`].
    pub scheme: Scheme,
    /// As [`TxnOutcome::code`].
    pub code: String,
    /// As [`TxnOutcome::latency_ms`].
    pub latency_ms: u32,
    /// As [`TxnOutcome::method`].
    pub method: PayMethod,
    /// As [`TxnOutcome::route`], not yet checked.
    pub route: Option<String>,
}

/// A record the collector keeps apart instead of storing it: its place, the field that broke
/// a rule and why, and the body as received (Rust debug notation, `NaN` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRecord {
    /// Its seq.
    pub seq: Seq,
    /// Its time, agent clock, Unix ms.
    pub time_unix_ms: i64,
    /// The record kind (`heartbeat`, `net_quality`, `txn_outcome`, `spool_drops`).
    pub kind: &'static str,
    /// The broken rule.
    pub error: FieldError,
    /// The body as received.
    pub body: String,
}

/// A `Hello` as the collector reads it: the identity's labels as plain strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawHello {
    /// As [`Hello::protocol_version`].
    pub protocol_version: u16,
    /// As [`Hello::agent_version`].
    pub agent_version: String,
    /// As [`Hello::spool_epoch`].
    pub spool_epoch: u64,
    /// The identity, unchecked.
    pub identity: RawIdentity,
    /// As [`Hello::agent_time_unix_ms`].
    pub agent_time_unix_ms: i64,
}

/// [`Identity`] with plain strings (same fields, same order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct RawIdentity {
    pub terminal_id: String,
    pub merchant_id: String,
    pub store_id: String,
    pub region: String,
    pub city: String,
    pub acquirer: String,
    pub qr_channel: String,
    pub carrier: String,
    pub link: LinkType,
    pub model: String,
    pub firmware: String,
    pub app_version: String,
}

fn field_error(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks that `v` is finite and within `min..=max`.
fn in_range(field: &str, v: f32, min: f32, max: f32) -> Result<(), FieldError> {
    if !v.is_finite() {
        return Err(field_error(field, format!("is {v}, not a finite number")));
    }
    if !(min..=max).contains(&v) {
        return Err(field_error(
            field,
            format!("is {v}, must be from {min} to {max}"),
        ));
    }
    Ok(())
}

fn opt_in_range(field: &str, v: Option<f32>, min: f32, max: f32) -> Result<(), FieldError> {
    v.map_or(Ok(()), |v| in_range(field, v, min, max))
}

/// Checks the numbers of a record body against PROTOCOL.md: percentages within 0-100,
/// temperatures within -100..200 °C, times within 0..1 h, none of them NaN or infinite.
/// Labels are checked by their types ([`Label`]).
pub fn check_body(body: &RecordBody) -> Result<(), FieldError> {
    match body {
        RecordBody::Heartbeat(h) => check_heartbeat(h),
        RecordBody::NetQuality(n) => check_net_quality(n),
        RecordBody::TxnOutcome(_) | RecordBody::SpoolDrops(_) => Ok(()),
    }
}

fn check_heartbeat(h: &Heartbeat) -> Result<(), FieldError> {
    in_range("cpu_percent", h.cpu_percent, 0.0, 100.0)?;
    opt_in_range("temperature_c", h.temperature_c, -100.0, 200.0)?;
    opt_in_range("battery_percent", h.battery_percent, 0.0, 100.0)
}

fn check_net_quality(n: &NetQuality) -> Result<(), FieldError> {
    opt_in_range("rtt_ms", n.rtt_ms, 0.0, MAX_MILLIS)?;
    opt_in_range("jitter_ms", n.jitter_ms, 0.0, MAX_MILLIS)?;
    opt_in_range("loss_percent", n.loss_percent, 0.0, 100.0)?;
    for (i, e) in n.endpoints.iter().enumerate() {
        for (name, v) in [("dns_ms", e.dns_ms), ("tcp_connect_ms", e.tcp_connect_ms)] {
            if let Some(v) = v
                && !(v.is_finite() && (0.0..=MAX_MILLIS).contains(&v))
            {
                return in_range(&format!("endpoints[{i}].{name}"), v, 0.0, MAX_MILLIS);
            }
        }
    }
    Ok(())
}

/// The record kind's name, as the HTTP API spells it.
pub fn kind_name(body: &RecordBody) -> &'static str {
    match body {
        RecordBody::Heartbeat(_) => "heartbeat",
        RecordBody::NetQuality(_) => "net_quality",
        RecordBody::TxnOutcome(_) => "txn_outcome",
        RecordBody::SpoolDrops(_) => "spool_drops",
    }
}

impl RawBody {
    fn kind(&self) -> &'static str {
        match self {
            Self::Heartbeat(_) => "heartbeat",
            Self::NetQuality(_) => "net_quality",
            Self::TxnOutcome(_) => "txn_outcome",
            Self::SpoolDrops(_) => "spool_drops",
        }
    }
}

impl RawRecord {
    /// The checked record, or why it must be quarantined. A transaction code that is not
    /// valid is no reason to quarantine: the collector keeps the record with the code
    /// replaced (PROTOCOL.md). Moves the body; nothing is copied unless it is quarantined.
    pub fn check(self) -> Result<Record, Box<QuarantinedRecord>> {
        let problem = match &self.body {
            RawBody::Heartbeat(h) => check_heartbeat(h),
            RawBody::NetQuality(n) => check_net_quality(n),
            RawBody::TxnOutcome(t) => t.route.as_deref().map_or(Ok(()), |r| {
                validate_label(r).map_err(|e| field_error("route", e.to_string()))
            }),
            RawBody::SpoolDrops(_) => Ok(()),
        };
        if let Err(error) = problem {
            return Err(Box::new(QuarantinedRecord {
                seq: self.seq,
                time_unix_ms: self.time_unix_ms,
                kind: self.body.kind(),
                error,
                body: format!("{:?}", self.body),
            }));
        }
        let body = match self.body {
            RawBody::Heartbeat(h) => RecordBody::Heartbeat(h),
            RawBody::NetQuality(n) => RecordBody::NetQuality(n),
            RawBody::SpoolDrops(d) => RecordBody::SpoolDrops(d),
            RawBody::TxnOutcome(t) => RecordBody::TxnOutcome(TxnOutcome {
                scheme: t.scheme,
                code: t.code,
                latency_ms: t.latency_ms,
                method: t.method,
                // Checked above: `ok()` never drops a route here.
                route: t.route.and_then(|r| Label::new(r).ok()),
            }),
        };
        Ok(Record {
            seq: self.seq,
            time_unix_ms: self.time_unix_ms,
            body,
        })
    }
}

impl From<Record> for RawRecord {
    fn from(r: Record) -> Self {
        let body = match r.body {
            RecordBody::Heartbeat(h) => RawBody::Heartbeat(h),
            RecordBody::NetQuality(n) => RawBody::NetQuality(n),
            RecordBody::SpoolDrops(d) => RawBody::SpoolDrops(d),
            RecordBody::TxnOutcome(t) => RawBody::TxnOutcome(RawTxnOutcome {
                scheme: t.scheme,
                code: t.code,
                latency_ms: t.latency_ms,
                method: t.method,
                route: t.route.map(String::from),
            }),
        };
        Self {
            seq: r.seq,
            time_unix_ms: r.time_unix_ms,
            body,
        }
    }
}

impl From<Batch> for RawBatch {
    fn from(b: Batch) -> Self {
        Self {
            batch_id: b.batch_id,
            records: b.records.into_iter().map(RawRecord::from).collect(),
        }
    }
}

impl RawHello {
    /// The checked `Hello`, or the first field that breaks its rule (ids: 1-64 bytes of
    /// `A-Z a-z 0-9 . _ : -`; labels: 1-128 bytes of UTF-8 without control characters).
    pub fn check(self) -> Result<Hello, FieldError> {
        let id = self.identity;
        let label = |field: &str, v: String| {
            Label::new(v).map_err(|e| field_error(format!("identity.{field}"), e.to_string()))
        };
        let identity = Identity {
            terminal_id: TerminalId::new(id.terminal_id)
                .map_err(|e| field_error("identity.terminal_id", e.to_string()))?,
            merchant_id: label("merchant_id", id.merchant_id)?,
            store_id: label("store_id", id.store_id)?,
            region: label("region", id.region)?,
            city: label("city", id.city)?,
            acquirer: label("acquirer", id.acquirer)?,
            qr_channel: label("qr_channel", id.qr_channel)?,
            carrier: label("carrier", id.carrier)?,
            link: id.link,
            model: label("model", id.model)?,
            firmware: label("firmware", id.firmware)?,
            app_version: label("app_version", id.app_version)?,
        };
        Ok(Hello {
            protocol_version: self.protocol_version,
            agent_version: self.agent_version,
            spool_epoch: self.spool_epoch,
            identity,
            agent_time_unix_ms: self.agent_time_unix_ms,
        })
    }
}

impl From<Hello> for RawHello {
    fn from(h: Hello) -> Self {
        let i = h.identity;
        Self {
            protocol_version: h.protocol_version,
            agent_version: h.agent_version,
            spool_epoch: h.spool_epoch,
            identity: RawIdentity {
                terminal_id: i.terminal_id.into(),
                merchant_id: i.merchant_id.into(),
                store_id: i.store_id.into(),
                region: i.region.into(),
                city: i.city.into(),
                acquirer: i.acquirer.into(),
                qr_channel: i.qr_channel.into(),
                carrier: i.carrier.into(),
                link: i.link,
                model: i.model.into(),
                firmware: i.firmware.into(),
                app_version: i.app_version.into(),
            },
            agent_time_unix_ms: h.agent_time_unix_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::EndpointProbe;

    fn heartbeat(cpu: f32) -> RecordBody {
        RecordBody::Heartbeat(Heartbeat {
            cpu_percent: cpu,
            mem_used_bytes: 1,
            mem_total_bytes: 2,
            disk_free_bytes: 3,
            uptime_secs: 4,
            temperature_c: Some(40.0),
            battery_percent: None,
            spool_records: 0,
        })
    }

    fn txn(route: Option<&str>) -> RawRecord {
        RawRecord {
            seq: Seq(3),
            time_unix_ms: 9,
            body: RawBody::TxnOutcome(RawTxnOutcome {
                scheme: Scheme::Cup,
                code: "00".into(),
                latency_ms: 1,
                method: PayMethod::Card,
                route: route.map(String::from),
            }),
        }
    }

    #[test]
    fn numbers_are_checked() {
        assert_eq!(check_body(&heartbeat(12.5)), Ok(()));
        for bad in [150.0, -1.0, f32::NAN, f32::INFINITY] {
            let e = check_body(&heartbeat(bad)).expect_err("refused");
            assert_eq!(e.field, "cpu_percent", "{bad}");
        }
        let net = RecordBody::NetQuality(NetQuality {
            rtt_ms: Some(20.0),
            jitter_ms: None,
            loss_percent: Some(0.0),
            endpoints: vec![EndpointProbe {
                name: "cup".into(),
                dns_ms: Some(f32::NAN),
                tcp_connect_ms: None,
                error: None,
            }],
        });
        assert_eq!(
            check_body(&net).expect_err("refused").field,
            "endpoints[0].dns_ms"
        );
    }

    #[test]
    fn raw_records_split_into_kept_and_quarantined() {
        let kept = txn(Some("acq-a")).check().expect("valid");
        assert_eq!(kind_name(&kept.body), "txn_outcome");
        let q = txn(Some("")).check().expect_err("empty route");
        assert_eq!(q.error.field, "route");
        assert_eq!(q.kind, "txn_outcome");
        assert_eq!(q.seq, Seq(3));
        assert!(q.body.contains("route: Some(\"\")"), "{}", q.body);
        let q = RawRecord {
            seq: Seq(4),
            time_unix_ms: 0,
            body: RawBody::Heartbeat(match heartbeat(f32::NAN) {
                RecordBody::Heartbeat(h) => h,
                _ => unreachable!(),
            }),
        }
        .check()
        .expect_err("NaN");
        assert!(q.body.contains("NaN"), "{}", q.body);
    }

    #[test]
    fn raw_types_encode_like_checked_ones() {
        let record = txn(Some("acq-a")).check().expect("valid");
        let batch = Batch {
            batch_id: 2,
            records: vec![record],
        };
        let raw = RawBatch::from(batch.clone());
        assert_eq!(
            postcard::to_stdvec(&raw).expect("encode"),
            postcard::to_stdvec(&batch).expect("encode")
        );
        let back: Batch = postcard::from_bytes(&postcard::to_stdvec(&raw).expect("encode"))
            .expect("decodes as a Batch");
        assert_eq!(back, batch);
    }

    #[test]
    fn hello_labels_are_named() {
        let mut raw = RawHello {
            protocol_version: 3,
            agent_version: "x".into(),
            spool_epoch: 1,
            identity: RawIdentity {
                terminal_id: "T1".into(),
                merchant_id: "M1".into(),
                store_id: "S1".into(),
                region: "east".into(),
                city: "上海".into(),
                acquirer: "a".into(),
                qr_channel: "q".into(),
                carrier: "c".into(),
                link: LinkType::Wired,
                model: "m".into(),
                firmware: "f".into(),
                app_version: "v".into(),
            },
            agent_time_unix_ms: 0,
        };
        let hello = raw.clone().check().expect("valid");
        assert_eq!(
            postcard::to_stdvec(&RawHello::from(hello.clone())).expect("encode"),
            postcard::to_stdvec(&hello).expect("encode")
        );
        raw.identity.city = String::new();
        assert_eq!(raw.check().expect_err("refused").field, "identity.city");
    }
}
