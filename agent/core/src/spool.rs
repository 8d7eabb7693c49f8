//! The spool abstraction: the [`Spool`] trait, its in-memory twin [`MemSpool`], and the
//! vocabulary both share (record kinds, entry sizes, drop counters).
//!
//! A spool holds records durably until the collector acknowledges them. Sequence numbers are
//! assigned by the spool from `next_seq`, are never reused within an epoch, and an append is
//! atomic: either every record of the call is committed (or shed by policy) or none is.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use storepulse_shared::{
    Batch, DropReason, Message, Record, RecordBody, Seq, SpoolDrops, encode_frame,
};

use crate::shed::SpoolIndex;

/// The kind of a spooled record; stored as one byte beside the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum RecordKind {
    /// [`RecordBody::Heartbeat`].
    Heartbeat = 1,
    /// [`RecordBody::NetQuality`].
    NetQuality = 2,
    /// [`RecordBody::TxnOutcome`].
    TxnOutcome = 3,
    /// [`RecordBody::SpoolDrops`].
    SpoolDrops = 4,
}

/// Counts of dropped records per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Heartbeat records.
    pub heartbeats: u64,
    /// Network-quality records.
    pub net_quality: u64,
    /// Transaction outcomes.
    pub txn_outcomes: u64,
}

/// What the index knows about one spooled record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryInfo {
    /// Its sequence number.
    pub seq: Seq,
    /// Its kind.
    pub kind: RecordKind,
    /// Its logical size: the postcard encoding of the [`Record`], bytes.
    pub bytes: u32,
}

/// A record to append; the spool assigns its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    /// Observation time, agent wall clock, Unix milliseconds.
    pub time_unix_ms: i64,
    /// What was observed.
    pub body: RecordBody,
}

/// The result of one append transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// First sequence number assigned (records got `first_seq .. first_seq + count`).
    pub first_seq: Seq,
    /// How many sequence numbers were assigned (one per record passed in).
    pub count: u64,
    /// The new records that are in the spool after the commit, ascending.
    pub stored: Vec<EntryInfo>,
    /// Records that were in the spool before and were evicted to make room, ascending.
    pub evicted: Vec<Seq>,
}

/// Spool metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolMeta {
    /// Random id chosen when the spool was created.
    pub epoch: u64,
    /// The sequence number the next record will get.
    pub next_seq: Seq,
    /// Drops not yet reported in a `SpoolDrops` record.
    pub pending_drops: DropCounts,
    /// Every drop since the spool was created.
    pub dropped_total: DropCounts,
    /// Records in the spool.
    pub records: u64,
    /// Logical bytes in the spool (sum of [`EntryInfo::bytes`]).
    pub bytes: u64,
}

/// Durable storage for records awaiting acknowledgement.
///
/// Implementations: the redb spool in the agent shell and [`MemSpool`] here; a property test
/// checks that both behave the same.
pub trait Spool {
    /// Storage error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Current metadata.
    fn meta(&self) -> SpoolMeta;

    /// Index of every record in the spool, ascending by seq.
    fn entries(&self) -> Vec<EntryInfo>;

    /// Appends `records` in one atomic transaction, assigning consecutive sequence numbers from
    /// `next_seq`, and sheds per [`crate::shed`] to stay within the size bound. Records in
    /// `in_flight` are evicted only if nothing else makes room.
    fn append(
        &mut self,
        records: Vec<NewRecord>,
        in_flight: &BTreeSet<Seq>,
    ) -> Result<Appended, Self::Error>;

    /// If drops are pending, appends one `SpoolDrops` record (reason `SpoolFull`) carrying them
    /// and resets the pending counters in the same transaction.
    fn flush_drops(
        &mut self,
        time_unix_ms: i64,
        in_flight: &BTreeSet<Seq>,
    ) -> Result<Option<Appended>, Self::Error>;

    /// Deletes records (acknowledged by the collector). Unknown seqs are ignored. Returns how
    /// many were deleted.
    fn delete(&mut self, seqs: &[Seq]) -> Result<u64, Self::Error>;

    /// Reads the given records, ascending; seqs not in the spool are skipped.
    fn read(&self, seqs: &[Seq]) -> Result<Vec<Record>, Self::Error>;

    /// Every record in the spool, ascending.
    fn records(&self) -> Result<Vec<Record>, Self::Error>;
}

/// In-memory [`Spool`]: the model the redb spool is checked against, and a test double.
#[derive(Debug, Clone)]
pub struct MemSpool {
    epoch: u64,
    max_bytes: u64,
    next_seq: u64,
    pending: DropCounts,
    total: DropCounts,
    index: SpoolIndex,
    records: BTreeMap<u64, Record>,
}

impl RecordKind {
    /// The kind of a record body.
    pub fn of(body: &RecordBody) -> Self {
        match body {
            RecordBody::Heartbeat(_) => Self::Heartbeat,
            RecordBody::NetQuality(_) => Self::NetQuality,
            RecordBody::TxnOutcome(_) => Self::TxnOutcome,
            RecordBody::SpoolDrops(_) => Self::SpoolDrops,
        }
    }

    /// The stored byte.
    pub fn as_byte(self) -> u8 {
        self as u8
    }

    /// Parses a stored byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Heartbeat,
            2 => Self::NetQuality,
            3 => Self::TxnOutcome,
            4 => Self::SpoolDrops,
            _ => return None,
        })
    }

    /// Telemetry (heartbeats, network quality) is shed before transaction outcomes and
    /// `SpoolDrops` records.
    pub fn is_telemetry(self) -> bool {
        matches!(self, Self::Heartbeat | Self::NetQuality)
    }
}

impl DropCounts {
    /// Counts one dropped record of `kind`. `SpoolDrops` records are not counted here: their
    /// counters are carried forward instead (see [`Self::add`]).
    pub fn count(&mut self, kind: RecordKind) {
        match kind {
            RecordKind::Heartbeat => self.heartbeats += 1,
            RecordKind::NetQuality => self.net_quality += 1,
            RecordKind::TxnOutcome => self.txn_outcomes += 1,
            RecordKind::SpoolDrops => {}
        }
    }

    /// Adds another set of counters.
    pub fn add(&mut self, other: &Self) {
        self.heartbeats += other.heartbeats;
        self.net_quality += other.net_quality;
        self.txn_outcomes += other.txn_outcomes;
    }

    /// True when nothing was dropped.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// The `SpoolDrops` body reporting these counters.
    pub fn to_body(self) -> RecordBody {
        RecordBody::SpoolDrops(SpoolDrops {
            reason: DropReason::SpoolFull,
            heartbeats: self.heartbeats,
            net_quality: self.net_quality,
            txn_outcomes: self.txn_outcomes,
        })
    }

    /// The counters of a `SpoolDrops` body (zero for any other body).
    pub fn of_body(body: &RecordBody) -> Self {
        match body {
            RecordBody::SpoolDrops(d) => Self {
                heartbeats: d.heartbeats,
                net_quality: d.net_quality,
                txn_outcomes: d.txn_outcomes,
            },
            _ => Self::default(),
        }
    }
}

/// Logical size of a record: the length of its postcard encoding, as stored and as sent.
///
/// Computed through [`encode_frame`] because the core does not depend on postcard: a batch
/// frame with `batch_id` 0 and one record is the record plus 7 bytes (5 header bytes, one byte
/// of batch id, one byte of vector length).
pub fn encoded_len(record: &Record) -> u32 {
    const OVERHEAD: usize = 7;
    let frame = encode_frame(&Message::Batch(Batch {
        batch_id: 0,
        records: vec![record.clone()],
    }));
    u32::try_from(frame.len().saturating_sub(OVERHEAD)).unwrap_or(u32::MAX)
}

impl MemSpool {
    /// An empty spool with the given epoch and size bound in logical bytes.
    pub fn new(epoch: u64, max_bytes: u64) -> Self {
        Self {
            epoch,
            max_bytes,
            next_seq: 0,
            pending: DropCounts::default(),
            total: DropCounts::default(),
            index: SpoolIndex::default(),
            records: BTreeMap::new(),
        }
    }

    fn evict(&mut self, evicted: &[EntryInfo], new_seqs: &BTreeSet<u64>, out: &mut Appended) {
        for e in evicted {
            if let Some(r) = self.records.remove(&e.seq.0) {
                self.pending.add(&DropCounts::of_body(&r.body));
            }
            let mut c = DropCounts::default();
            c.count(e.kind);
            self.pending.add(&c);
            self.total.add(&c);
            if !new_seqs.contains(&e.seq.0) {
                out.evicted.push(e.seq);
            }
        }
    }
}

impl Spool for MemSpool {
    type Error = Infallible;

    fn meta(&self) -> SpoolMeta {
        SpoolMeta {
            epoch: self.epoch,
            next_seq: Seq(self.next_seq),
            pending_drops: self.pending,
            dropped_total: self.total,
            records: self.index.len(),
            bytes: self.index.bytes(),
        }
    }

    fn entries(&self) -> Vec<EntryInfo> {
        self.index.entries()
    }

    fn append(
        &mut self,
        records: Vec<NewRecord>,
        in_flight: &BTreeSet<Seq>,
    ) -> Result<Appended, Infallible> {
        let mut out = Appended {
            first_seq: Seq(self.next_seq),
            count: 0,
            stored: Vec::new(),
            evicted: Vec::new(),
        };
        let mut new_seqs = BTreeSet::new();
        for nr in records {
            let seq = self.next_seq;
            self.next_seq += 1;
            out.count += 1;
            let record = Record {
                seq: Seq(seq),
                time_unix_ms: nr.time_unix_ms,
                body: nr.body,
            };
            let kind = RecordKind::of(&record.body);
            let entry = EntryInfo {
                seq: Seq(seq),
                kind,
                bytes: encoded_len(&record),
            };
            match self.index.admit(entry, self.max_bytes, in_flight) {
                Some(evicted) => {
                    self.evict(&evicted, &new_seqs, &mut out);
                    self.records.insert(seq, record);
                    new_seqs.insert(seq);
                }
                None => {
                    self.pending.add(&DropCounts::of_body(&record.body));
                    let mut c = DropCounts::default();
                    c.count(kind);
                    self.pending.add(&c);
                    self.total.add(&c);
                }
            }
        }
        out.stored = new_seqs
            .iter()
            .filter_map(|s| self.index.entry(Seq(*s)))
            .collect();
        out.evicted.sort();
        Ok(out)
    }

    fn flush_drops(
        &mut self,
        time_unix_ms: i64,
        in_flight: &BTreeSet<Seq>,
    ) -> Result<Option<Appended>, Infallible> {
        if self.pending.is_zero() {
            return Ok(None);
        }
        let body = self.pending.to_body();
        self.pending = DropCounts::default();
        self.append(vec![NewRecord { time_unix_ms, body }], in_flight)
            .map(Some)
    }

    fn delete(&mut self, seqs: &[Seq]) -> Result<u64, Infallible> {
        let mut n = 0;
        for s in seqs {
            if self.records.remove(&s.0).is_some() {
                self.index.remove(*s);
                n += 1;
            }
        }
        Ok(n)
    }

    fn read(&self, seqs: &[Seq]) -> Result<Vec<Record>, Infallible> {
        let mut seqs = seqs.to_vec();
        seqs.sort();
        Ok(seqs
            .iter()
            .filter_map(|s| self.records.get(&s.0).cloned())
            .collect())
    }

    fn records(&self) -> Result<Vec<Record>, Infallible> {
        Ok(self.records.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use storepulse_shared::{Heartbeat, PayMethod, Scheme, TxnOutcome};

    use super::*;

    pub(crate) fn heartbeat() -> RecordBody {
        RecordBody::Heartbeat(Heartbeat {
            cpu_percent: 1.0,
            mem_used_bytes: 1,
            mem_total_bytes: 2,
            disk_free_bytes: 3,
            uptime_secs: 4,
            temperature_c: None,
            battery_percent: None,
            spool_records: 0,
        })
    }

    pub(crate) fn txn() -> RecordBody {
        RecordBody::TxnOutcome(TxnOutcome {
            scheme: Scheme::Cup,
            code: "00".into(),
            latency_ms: 10,
            method: PayMethod::Card,
            route: None,
        })
    }

    #[test]
    fn kind_bytes_roundtrip() {
        for k in [
            RecordKind::Heartbeat,
            RecordKind::NetQuality,
            RecordKind::TxnOutcome,
            RecordKind::SpoolDrops,
        ] {
            assert_eq!(RecordKind::from_byte(k.as_byte()), Some(k));
        }
        assert_eq!(RecordKind::from_byte(0), None);
    }

    #[test]
    fn seqs_are_assigned_and_never_reused() {
        let mut s = MemSpool::new(7, 1 << 20);
        let none = BTreeSet::new();
        let a = s
            .append(
                vec![
                    NewRecord {
                        time_unix_ms: 1,
                        body: txn()
                    };
                    3
                ],
                &none,
            )
            .expect("ok");
        assert_eq!((a.first_seq, a.count, a.stored.len()), (Seq(0), 3, 3));
        assert_eq!(s.delete(&[Seq(0), Seq(1), Seq(2), Seq(9)]).expect("ok"), 3);
        let b = s
            .append(
                vec![NewRecord {
                    time_unix_ms: 1,
                    body: txn(),
                }],
                &none,
            )
            .expect("ok");
        assert_eq!(b.first_seq, Seq(3));
        assert_eq!(s.meta().next_seq, Seq(4));
    }

    #[test]
    fn full_spool_sheds_telemetry_and_reports_drops() {
        let one = encoded_len(&Record {
            seq: Seq(0),
            time_unix_ms: 1,
            body: heartbeat(),
        });
        let mut s = MemSpool::new(1, u64::from(one) * 3);
        let none = BTreeSet::new();
        for _ in 0..5 {
            s.append(
                vec![NewRecord {
                    time_unix_ms: 1,
                    body: heartbeat(),
                }],
                &none,
            )
            .expect("ok");
        }
        let m = s.meta();
        assert_eq!(m.records, 3);
        assert_eq!(m.pending_drops.heartbeats, 2);
        let flushed = s.flush_drops(2, &none).expect("ok").expect("drops pending");
        assert_eq!(flushed.stored.len(), 1);
        // The SpoolDrops record evicted heartbeats to make room, which are pending again.
        assert!(s.meta().pending_drops.heartbeats >= 1);
        assert_eq!(s.meta().dropped_total.txn_outcomes, 0);
        assert!(s.flush_drops(3, &none).expect("ok").is_some());
    }
}
