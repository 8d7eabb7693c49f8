//! Value layouts written by older collectors, still read: each decodes into today's type with
//! the fields it lacked at their "absent" value. New fields are only ever appended, so older
//! readers ignore them.

use serde::Deserialize;
use storepulse_shared::RecordBody;

use super::StoredRecord;
use super::codec::{StoredLabels, StoredTerminal};

/// [`StoredRecord`] as written before `agent_time_unix_ms` existed.
#[derive(Deserialize)]
pub(super) struct StoredRecordV1 {
    time_unix_ms: i64,
    received_unix_ms: i64,
    body: RecordBody,
}

/// `StoredTerminal` as written before the clock fields existed.
#[derive(Deserialize)]
pub(super) struct StoredTerminalV1 {
    labels: Option<StoredLabels>,
    first_seen_unix_ms: i64,
    last_seen_unix_ms: i64,
    last_heartbeat_unix_ms: Option<i64>,
    agent_version: String,
    spool_epoch: Option<u64>,
    records_received: u64,
    drops_heartbeats: u64,
    drops_net_quality: u64,
    drops_txn_outcomes: u64,
}

impl From<StoredRecordV1> for StoredRecord {
    fn from(v1: StoredRecordV1) -> Self {
        Self {
            time_unix_ms: v1.time_unix_ms,
            received_unix_ms: v1.received_unix_ms,
            body: v1.body,
            agent_time_unix_ms: None,
        }
    }
}

impl From<StoredTerminalV1> for StoredTerminal {
    fn from(v1: StoredTerminalV1) -> Self {
        Self {
            labels: v1.labels,
            first_seen_unix_ms: v1.first_seen_unix_ms,
            last_seen_unix_ms: v1.last_seen_unix_ms,
            last_heartbeat_unix_ms: v1.last_heartbeat_unix_ms,
            agent_version: v1.agent_version,
            spool_epoch: v1.spool_epoch,
            records_received: v1.records_received,
            drops_heartbeats: v1.drops_heartbeats,
            drops_net_quality: v1.drops_net_quality,
            drops_txn_outcomes: v1.drops_txn_outcomes,
            clock_offset_ms: None,
            clock_skewed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use storepulse_collector_core::TerminalEntry;
    use storepulse_shared::{Identity, Label, LinkType, PayMethod, Scheme, TerminalId, TxnOutcome};

    use super::super::codec::{decode_record, decode_terminal, encode};
    use super::*;

    fn rec(t: i64) -> StoredRecord {
        StoredRecord {
            time_unix_ms: t,
            received_unix_ms: t,
            agent_time_unix_ms: None,
            body: RecordBody::TxnOutcome(TxnOutcome {
                scheme: Scheme::Alipay,
                code: "00".into(),
                latency_ms: 3,
                method: PayMethod::Qr,
                route: None,
            }),
        }
    }

    #[test]
    fn values_written_before_the_clock_fields_still_decode() {
        #[derive(Serialize)]
        struct OldRecord {
            time_unix_ms: i64,
            received_unix_ms: i64,
            body: RecordBody,
        }
        let body = rec(1).body;
        let old = postcard::to_stdvec(&OldRecord {
            time_unix_ms: 5,
            received_unix_ms: 6,
            body: body.clone(),
        })
        .expect("encode");
        let r = decode_record(&old).expect("old record layout");
        assert_eq!(
            r,
            StoredRecord {
                time_unix_ms: 5,
                received_unix_ms: 6,
                body,
                agent_time_unix_ms: None,
            }
        );
        let new = encode(&StoredRecord {
            agent_time_unix_ms: Some(9),
            ..r
        })
        .expect("encode");
        assert_eq!(
            decode_record(&new).expect("new layout").agent_time_unix_ms,
            Some(9)
        );
        let older_reader: StoredRecordV1 = postcard::from_bytes(&new).expect("older reader");
        assert_eq!(older_reader.time_unix_ms, 5);

        let t1 = TerminalId::new("T1").expect("id");
        let l = |s: &str| Label::new(s).expect("label");
        let mut e = TerminalEntry::new(10);
        e.clock_offset_ms = Some(-3_600_000);
        e.clock_skewed = true;
        // The labels are stored without the id (the registry key) and get it back.
        e.identity = Some(Identity {
            terminal_id: t1.clone(),
            merchant_id: l("M1"),
            store_id: l("M1-S1"),
            region: l("R1"),
            city: l("上海"),
            acquirer: l("ACQ-A"),
            qr_channel: l("QR-A"),
            carrier: l("CMCC"),
            link: LinkType::Cellular,
            model: l("A920"),
            firmware: l("2.4.0"),
            app_version: l("5.1.2"),
        });
        let bytes = encode(&StoredTerminal::from(&e)).expect("encode");
        assert_eq!(
            decode_terminal(&bytes).expect("new layout").into_entry(&t1),
            e
        );
        // The old layout is the new one without its two trailing fields (None, false).
        let plain = TerminalEntry::new(10);
        let bytes = encode(&StoredTerminal::from(&plain)).expect("encode");
        assert_eq!(&bytes[bytes.len() - 2..], &[0, 0]);
        let old = &bytes[..bytes.len() - 2];
        assert_eq!(
            decode_terminal(old).expect("old layout").into_entry(&t1),
            plain
        );
    }
}
