//! The on-disk spool: a redb implementation of [`storepulse_agent_core::Spool`].
//!
//! Every append and every delete is one write transaction committed with
//! [`Durability::Immediate`] (fsync'd) before the caller sees the result, so a record is durable
//! before it can be sent and is removed only after the collector acknowledged it.
//!
//! Layout: table `meta` (`&str` → `u64`: `spool_epoch`, `next_seq`, pending and total drop
//! counters) and table `records` (`u64` seq → kind byte followed by the postcard-encoded
//! [`Record`]). The logical size of a record is the length of its postcard encoding. An
//! in-memory [`SpoolIndex`] mirrors the `records` table and is rebuilt on open.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use storepulse_agent_core::shed::SpoolIndex;
use storepulse_agent_core::{
    Appended, DropCounts, EntryInfo, NewRecord, RecordKind, Spool, SpoolMeta,
};
use storepulse_shared::{DropReason, Record, RecordBody, Seq};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");

const K_EPOCH: &str = "spool_epoch";
const K_NEXT_SEQ: &str = "next_seq";
const K_PENDING: [&str; 3] = [
    "pending_heartbeats",
    "pending_net_quality",
    "pending_txn_outcomes",
];
const K_TOTAL: [&str; 3] = [
    "dropped_heartbeats",
    "dropped_net_quality",
    "dropped_txn_outcomes",
];

/// A spool operation failed; the spool's state is what the last successful commit left.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// redb failed (IO error, full disk, corruption detected by redb, ...).
    #[error("spool storage: {0}")]
    Storage(#[from] redb::Error),
    /// A stored value could not be decoded.
    #[error("spool record {seq} is corrupt: {reason}")]
    Corrupt {
        /// The record's seq.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record could not be encoded.
    #[error("cannot encode record: {0}")]
    Encode(postcard::Error),
}

/// The redb-backed spool.
pub struct RedbSpool {
    /// `None` only while a reopen after a disk error failed (every operation then fails).
    db: Option<Database>,
    path: PathBuf,
    max_bytes: u64,
    epoch: u64,
    next_seq: u64,
    pending: DropCounts,
    total: DropCounts,
    index: SpoolIndex,
    /// Records lost because the disk failed (full, IO error) and not yet reported in a
    /// `SpoolDrops` record with reason `DiskError`. In memory only: the disk is what failed.
    disk_drops: DropCounts,
    /// A write failed with a storage error: redb refuses further writes (`PreviousIo`) until
    /// the file is checked and repaired, which the next write attempts first.
    broken: bool,
}

/// Mutable state of one write transaction, applied to `self` only after the commit.
struct TxnState {
    next_seq: u64,
    pending: DropCounts,
    total: DropCounts,
}

macro_rules! storage {
    ($e:expr) => {
        $e.map_err(|e| SpoolError::Storage(e.into()))
    };
}

impl RedbSpool {
    /// Opens the spool at `path`, creating it (with epoch `new_epoch`) if it does not exist.
    /// `max_bytes` bounds the logical record bytes.
    pub fn open(path: &Path, max_bytes: u64, new_epoch: u64) -> Result<Self, SpoolError> {
        let db = storage!(Database::create(path))?;
        let mut txn = storage!(db.begin_write())?;
        storage!(txn.set_durability(Durability::Immediate))?;
        {
            let mut meta = storage!(txn.open_table(META))?;
            if storage!(meta.get(K_EPOCH))?.is_none() {
                storage!(meta.insert(K_EPOCH, new_epoch))?;
                storage!(meta.insert(K_NEXT_SEQ, 0))?;
            }
            let _ = storage!(txn.open_table(RECORDS))?;
        }
        storage!(txn.commit())?;
        let mut spool = Self {
            db: Some(db),
            path: path.to_path_buf(),
            max_bytes,
            epoch: 0,
            next_seq: 0,
            pending: DropCounts::default(),
            total: DropCounts::default(),
            index: SpoolIndex::default(),
            disk_drops: DropCounts::default(),
            broken: false,
        };
        spool.reload()?;
        Ok(spool)
    }

    /// Re-reads metadata and the index from disk.
    fn reload(&mut self) -> Result<(), SpoolError> {
        let txn = storage!(self.db()?.begin_read())?;
        let meta = storage!(txn.open_table(META))?;
        let get = |k: &str| -> Result<u64, SpoolError> {
            Ok(storage!(meta.get(k))?.map(|v| v.value()).unwrap_or(0))
        };
        self.epoch = get(K_EPOCH)?;
        self.next_seq = get(K_NEXT_SEQ)?;
        self.pending = counts(get(K_PENDING[0])?, get(K_PENDING[1])?, get(K_PENDING[2])?);
        self.total = counts(get(K_TOTAL[0])?, get(K_TOTAL[1])?, get(K_TOTAL[2])?);
        let records = storage!(txn.open_table(RECORDS))?;
        let mut index = SpoolIndex::default();
        for item in storage!(records.iter())? {
            let (k, v) = storage!(item)?;
            let seq = k.value();
            let (kind, body) = split_value(seq, v.value())?;
            index.insert(EntryInfo {
                seq: Seq(seq),
                kind,
                bytes: len_u32(body.len()),
            });
            self.next_seq = self.next_seq.max(seq + 1);
        }
        self.index = index;
        Ok(())
    }

    /// One durable write transaction appending `records` (after turning pending drops into a
    /// `SpoolDrops` record first when `flush_at` is set).
    fn write(
        &mut self,
        records: Vec<NewRecord>,
        in_flight: &BTreeSet<Seq>,
        flush_at: Option<i64>,
    ) -> Result<Option<Appended>, SpoolError> {
        // Telemetry the disk costs is reported later as `SpoolDrops { reason: DiskError }`.
        // Transaction outcomes are not counted: the intake refuses them (503), so the POS
        // application still holds them.
        let mut lost = DropCounts::default();
        for r in &records {
            match RecordKind::of(&r.body) {
                RecordKind::TxnOutcome | RecordKind::SpoolDrops => {}
                k => lost.count(k),
            }
        }
        if let Err(e) = self.repair() {
            self.disk_drops.add(&lost);
            return Err(e);
        }
        let result = self.write_inner(records, in_flight, flush_at);
        if let Err(e) = &result {
            if matches!(e, SpoolError::Storage(_)) {
                self.disk_drops.add(&lost);
                self.mark_broken(e);
            }
            // The index was updated in place (cloning it per append would cost O(n)); the
            // transaction did not commit, so rebuild it from disk.
            if let Err(error) = self.reload() {
                tracing::error!(%error, "Spool reload after a failed write failed");
            }
        }
        result
    }

    fn db(&self) -> Result<&Database, SpoolError> {
        self.db
            .as_ref()
            .ok_or(SpoolError::Storage(redb::Error::PreviousIo))
    }

    /// After an IO error redb refuses every write (`PreviousIo`) until the database is closed
    /// and reopened (which repairs it); do that before the next write. Fails, and stays
    /// broken, while the disk is still unusable.
    fn repair(&mut self) -> Result<(), SpoolError> {
        if !self.broken {
            return Ok(());
        }
        // Keep the old handle (reads still work through it, so the link keeps sending what
        // is spooled) until the disk takes a write again.
        probe_space(&self.path).map_err(|e| SpoolError::Storage(e.into()))?;
        // The file lock must be released before the file can be opened again.
        self.db = None;
        self.db = Some(storage!(Database::create(&self.path))?);
        self.broken = false;
        self.reload()?;
        tracing::info!(
            records = self.index.len(),
            "Spool is writable again after a disk error"
        );
        Ok(())
    }

    /// Records that a write failed on the disk; logs the first failure of a streak.
    fn mark_broken(&mut self, error: &SpoolError) {
        if !self.broken {
            tracing::error!(
                %error,
                "Spool write failed: the disk holding the spool (spool.path) may be full or \
                 failing. Free space there; the agent keeps sending what is already spooled, \
                 refuses new transaction outcomes (503) and counts lost heartbeats and network \
                 samples as SpoolDrops with reason disk_error. It retries on every write."
            );
        }
        self.broken = true;
    }

    fn delete_inner(&mut self, seqs: &[Seq]) -> Result<u64, SpoolError> {
        let mut txn = storage!(self.db()?.begin_write())?;
        storage!(txn.set_durability(Durability::Immediate))?;
        let mut removed = Vec::new();
        {
            let mut table = storage!(txn.open_table(RECORDS))?;
            for s in seqs {
                if storage!(table.remove(s.0))?.is_some() {
                    removed.push(*s);
                }
            }
        }
        storage!(txn.commit())?;
        for s in &removed {
            self.index.remove(*s);
        }
        Ok(removed.len() as u64)
    }

    /// Telemetry records lost to disk errors and not yet reported to the collector.
    pub fn disk_error_drops(&self) -> DropCounts {
        self.disk_drops
    }

    /// Whether the last write failed on the disk (and the next one will first try a repair).
    pub fn is_failing(&self) -> bool {
        self.broken
    }

    fn write_inner(
        &mut self,
        mut records: Vec<NewRecord>,
        in_flight: &BTreeSet<Seq>,
        flush_at: Option<i64>,
    ) -> Result<Option<Appended>, SpoolError> {
        let mut st = TxnState {
            next_seq: self.next_seq,
            pending: self.pending,
            total: self.total,
        };
        let mut disk_reported = false;
        if let Some(time_unix_ms) = flush_at {
            let mut flushed = Vec::new();
            if !st.pending.is_zero() {
                flushed.push(NewRecord {
                    time_unix_ms,
                    body: st.pending.to_body(),
                });
                st.pending = DropCounts::default();
            }
            if !self.disk_drops.is_zero() {
                let mut body = self.disk_drops.to_body();
                if let RecordBody::SpoolDrops(d) = &mut body {
                    d.reason = DropReason::DiskError;
                }
                flushed.push(NewRecord { time_unix_ms, body });
                disk_reported = true;
            }
            if flushed.is_empty() {
                return Ok(None);
            }
            records.splice(0..0, flushed);
        }
        let mut out = Appended {
            first_seq: Seq(st.next_seq),
            count: 0,
            stored: Vec::new(),
            evicted: Vec::new(),
        };
        let mut new_seqs = BTreeSet::new();
        let mut txn = storage!(self.db()?.begin_write())?;
        storage!(txn.set_durability(Durability::Immediate))?;
        {
            let mut table = storage!(txn.open_table(RECORDS))?;
            for nr in records {
                let seq = st.next_seq;
                st.next_seq += 1;
                out.count += 1;
                let record = Record {
                    seq: Seq(seq),
                    time_unix_ms: nr.time_unix_ms,
                    body: nr.body,
                };
                let kind = RecordKind::of(&record.body);
                let mut value = vec![kind.as_byte()];
                value = postcard::to_extend(&record, value).map_err(SpoolError::Encode)?;
                let entry = EntryInfo {
                    seq: Seq(seq),
                    kind,
                    bytes: len_u32(value.len() - 1),
                };
                let mut dropped = Vec::new();
                match self.index.admit(entry, self.max_bytes, in_flight) {
                    Some(evicted) => {
                        for e in evicted {
                            if let Some(old) = storage!(table.remove(e.seq.0))?
                                && e.kind == RecordKind::SpoolDrops
                            {
                                let r = decode(e.seq.0, old.value())?;
                                st.pending.add(&DropCounts::of_body(&r.body));
                            }
                            dropped.push(e.kind);
                            if !new_seqs.remove(&e.seq.0) {
                                out.evicted.push(e.seq);
                            }
                        }
                        storage!(table.insert(seq, value.as_slice()))?;
                        new_seqs.insert(seq);
                    }
                    None => {
                        st.pending.add(&DropCounts::of_body(&record.body));
                        dropped.push(kind);
                    }
                }
                for k in dropped {
                    let mut c = DropCounts::default();
                    c.count(k);
                    st.pending.add(&c);
                    st.total.add(&c);
                }
            }
            let mut meta = storage!(txn.open_table(META))?;
            storage!(meta.insert(K_NEXT_SEQ, st.next_seq))?;
            write_counts(&mut meta, &K_PENDING, &st.pending)?;
            write_counts(&mut meta, &K_TOTAL, &st.total)?;
        }
        storage!(txn.commit())?;
        out.stored = new_seqs
            .iter()
            .filter_map(|s| self.index.entry(Seq(*s)))
            .collect();
        out.evicted.sort();
        self.next_seq = st.next_seq;
        self.pending = st.pending;
        self.total = st.total;
        if disk_reported {
            self.disk_drops = DropCounts::default();
        }
        Ok(Some(out))
    }
}

/// Writes, fsyncs and removes a 256 KiB probe file beside the spool file.
fn probe_space(spool: &Path) -> std::io::Result<()> {
    use std::io::Write;
    // On the spool's own disk, also when the spool path is a symlink.
    let spool = std::fs::canonicalize(spool).unwrap_or_else(|_| spool.to_path_buf());
    let mut name = spool.file_name().unwrap_or_default().to_os_string();
    name.push(".space-probe");
    let path = spool.with_file_name(name);
    let result = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&[0u8; 4096].repeat(64))?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    result
}

fn counts(heartbeats: u64, net_quality: u64, txn_outcomes: u64) -> DropCounts {
    DropCounts {
        heartbeats,
        net_quality,
        txn_outcomes,
    }
}

fn write_counts(
    meta: &mut redb::Table<'_, &'static str, u64>,
    keys: &[&'static str; 3],
    c: &DropCounts,
) -> Result<(), SpoolError> {
    storage!(meta.insert(keys[0], c.heartbeats))?;
    storage!(meta.insert(keys[1], c.net_quality))?;
    storage!(meta.insert(keys[2], c.txn_outcomes))?;
    Ok(())
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn split_value(seq: u64, v: &[u8]) -> Result<(RecordKind, &[u8]), SpoolError> {
    let (&k, body) = v.split_first().ok_or_else(|| SpoolError::Corrupt {
        seq,
        reason: "empty value".into(),
    })?;
    let kind = RecordKind::from_byte(k).ok_or_else(|| SpoolError::Corrupt {
        seq,
        reason: format!("unknown kind byte {k}"),
    })?;
    Ok((kind, body))
}

fn decode(seq: u64, v: &[u8]) -> Result<Record, SpoolError> {
    let (_, body) = split_value(seq, v)?;
    postcard::from_bytes(body).map_err(|e| SpoolError::Corrupt {
        seq,
        reason: e.to_string(),
    })
}

impl std::fmt::Debug for RedbSpool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbSpool")
            .field("epoch", &self.epoch)
            .field("next_seq", &self.next_seq)
            .field("records", &self.index.len())
            .field("bytes", &self.index.bytes())
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Spool for RedbSpool {
    type Error = SpoolError;

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
    ) -> Result<Appended, SpoolError> {
        let first_seq = Seq(self.next_seq);
        Ok(self.write(records, in_flight, None)?.unwrap_or(Appended {
            first_seq,
            count: 0,
            stored: Vec::new(),
            evicted: Vec::new(),
        }))
    }

    fn flush_drops(
        &mut self,
        time_unix_ms: i64,
        in_flight: &BTreeSet<Seq>,
    ) -> Result<Option<Appended>, SpoolError> {
        self.write(Vec::new(), in_flight, Some(time_unix_ms))
    }

    fn delete(&mut self, seqs: &[Seq]) -> Result<u64, SpoolError> {
        self.repair()?;
        let result = self.delete_inner(seqs);
        if let Err(e) = &result
            && matches!(e, SpoolError::Storage(_))
        {
            self.mark_broken(e);
        }
        result
    }

    fn read(&self, seqs: &[Seq]) -> Result<Vec<Record>, SpoolError> {
        let mut seqs = seqs.to_vec();
        seqs.sort();
        let txn = storage!(self.db()?.begin_read())?;
        let table = storage!(txn.open_table(RECORDS))?;
        let mut out = Vec::with_capacity(seqs.len());
        for s in seqs {
            if let Some(v) = storage!(table.get(s.0))? {
                out.push(decode(s.0, v.value())?);
            }
        }
        Ok(out)
    }

    fn records(&self) -> Result<Vec<Record>, SpoolError> {
        let txn = storage!(self.db()?.begin_read())?;
        let table = storage!(txn.open_table(RECORDS))?;
        let mut out = Vec::new();
        for item in storage!(table.iter())? {
            let (k, v) = storage!(item)?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use storepulse_agent_core::{MemSpool, encoded_len};
    use storepulse_shared::{
        EndpointProbe, Heartbeat, NetQuality, PayMethod, ProbeError, RecordBody, Scheme, TxnOutcome,
    };

    use super::*;

    fn body(kind: u8, n: u32) -> RecordBody {
        match kind % 3 {
            0 => RecordBody::Heartbeat(Heartbeat {
                cpu_percent: n as f32,
                mem_used_bytes: u64::from(n),
                mem_total_bytes: 1 << 30,
                disk_free_bytes: 1 << 33,
                uptime_secs: u64::from(n) * 7,
                temperature_c: Some(40.5),
                battery_percent: None,
                spool_records: 3,
            }),
            1 => RecordBody::NetQuality(NetQuality {
                rtt_ms: Some(20.0),
                jitter_ms: None,
                loss_percent: Some(0.5),
                endpoints: vec![EndpointProbe {
                    name: "cup".into(),
                    dns_ms: None,
                    tcp_connect_ms: None,
                    error: Some(ProbeError::Timeout),
                }],
            }),
            _ => RecordBody::TxnOutcome(TxnOutcome {
                scheme: Scheme::Alipay,
                code: format!("C{n}"),
                latency_ms: n,
                method: PayMethod::Qr,
                route: None,
            }),
        }
    }

    #[test]
    fn logical_size_matches_the_core() {
        let r = Record {
            seq: Seq(300),
            time_unix_ms: 1_700_000_000_000,
            body: body(1, 5),
        };
        let enc = postcard::to_stdvec(&r).expect("encode");
        assert_eq!(enc.len() as u32, encoded_len(&r));
    }

    #[test]
    fn survives_reopen_and_keeps_epoch_and_seq() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spool.redb");
        let none = BTreeSet::new();
        {
            let mut s = RedbSpool::open(&path, 1 << 20, 42).expect("open");
            let a = s
                .append(
                    vec![
                        NewRecord {
                            time_unix_ms: 5,
                            body: body(2, 1)
                        };
                        3
                    ],
                    &none,
                )
                .expect("append");
            assert_eq!((a.first_seq, a.count), (Seq(0), 3));
            assert_eq!(s.delete(&[Seq(0), Seq(1), Seq(2)]).expect("delete"), 3);
        }
        let mut s = RedbSpool::open(&path, 1 << 20, 99).expect("reopen");
        assert_eq!(s.meta().epoch, 42, "the epoch is fixed at creation");
        assert_eq!(s.meta().next_seq, Seq(3), "seqs are never reused");
        let a = s
            .append(
                vec![NewRecord {
                    time_unix_ms: 5,
                    body: body(2, 1),
                }],
                &none,
            )
            .expect("append");
        assert_eq!(a.first_seq, Seq(3));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(Vec<(u8, u32)>),
        Delete(Vec<u8>),
        Flush,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => proptest::collection::vec((any::<u8>(), 0u32..100_000), 1..8).prop_map(Op::Append),
            2 => proptest::collection::vec(any::<u8>(), 1..6).prop_map(Op::Delete),
            1 => Just(Op::Flush),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The redb spool and MemSpool agree on contents and metadata after any op sequence,
        /// including reopening the database.
        #[test]
        fn redb_matches_the_model(ops in proptest::collection::vec(op(), 1..25), in_flight_mod in 2u64..5) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("spool.redb");
            let max_bytes = 2_000;
            let mut real = RedbSpool::open(&path, max_bytes, 7).expect("open");
            let mut model = MemSpool::new(7, max_bytes);
            let mut t = 0i64;
            for op in ops {
                // Pretend every in_flight_mod-th record is in flight.
                let in_flight: BTreeSet<Seq> = model.entries().iter().map(|e| e.seq).filter(|s| s.0 % in_flight_mod == 0).collect();
                t += 1;
                match op {
                    Op::Append(items) => {
                        let recs: Vec<NewRecord> = items.iter().map(|&(k, n)| NewRecord { time_unix_ms: t, body: body(k, n) }).collect();
                        let a = real.append(recs.clone(), &in_flight).expect("append");
                        let Ok(b) = model.append(recs, &in_flight);
                        prop_assert_eq!(a, b);
                    }
                    Op::Delete(picks) => {
                        let entries = model.entries();
                        if entries.is_empty() { continue; }
                        let seqs: Vec<Seq> = picks.iter().map(|p| entries[*p as usize % entries.len()].seq).collect();
                        let a = real.delete(&seqs).expect("delete");
                        let Ok(b) = model.delete(&seqs);
                        prop_assert_eq!(a, b);
                    }
                    Op::Flush => {
                        let a = real.flush_drops(t, &in_flight).expect("flush");
                        let Ok(b) = model.flush_drops(t, &in_flight);
                        prop_assert_eq!(a, b);
                    }
                    Op::Reopen => {
                        drop(real);
                        real = RedbSpool::open(&path, max_bytes, 8).expect("reopen");
                    }
                }
                prop_assert_eq!(real.meta(), model.meta());
                prop_assert_eq!(real.entries(), model.entries());
                let Ok(model_records) = model.records();
                prop_assert_eq!(real.records().expect("records"), model_records);
            }
        }
    }
}
