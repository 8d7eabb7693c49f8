//! The record store: records keyed by (terminal, epoch, seq), the fleet registry and the alert
//! notifier's keyspaces, behind a narrow [`Backend`] trait with two implementations, fjall on
//! disk ([`FjallBackend`]) and an in-memory twin ([`MemoryBackend`]).
//!
//! Record key: `terminal_id bytes ++ 0x00 ++ epoch u64 BE ++ seq u64 BE` (terminal ids never
//! contain 0x00, so keys of one terminal form a contiguous, ordered range). Record value:
//! postcard [`StoredRecord`]; the `RecordBody` enum tag is the record kind. Registry key:
//! terminal id bytes; value: postcard `StoredTerminal`.
//!
//! Files: this one holds the typed [`Store`] and the trait; `store/codec.rs` the key and value
//! encodings, `store/legacy.rs` the layouts written by older versions (still read),
//! `store/fjall.rs` and `store/memory.rs` the two backends.

mod codec;
mod fjall;
mod legacy;
mod memory;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use storepulse_collector_core::{Fleet, TerminalEntry, Thresholds};
use storepulse_shared::{RecordBody, TerminalId};

use self::codec::{
    StoredTerminal, decode_record, decode_terminal, encode, key_of, prefix_end, terminal_prefix,
};
pub use self::fjall::FjallBackend;
pub use self::memory::MemoryBackend;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The fjall database failed.
    #[error("fjall: {0}")]
    Fjall(#[from] ::fjall::Error),
    /// A stored key or value could not be decoded.
    #[error("corrupt entry: {0}")]
    Corrupt(String),
    /// The store failed to write earlier and could not be reopened yet (disk still full?).
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// A raw key and value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Called with each raw record key and value.
pub type RecordVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// How long the parts of one commit took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitTimes {
    /// Encoding the group and assembling the backend's batch (CPU only, nothing written).
    pub encode: Duration,
    /// The backend's atomic, durable commit: for fjall the journal write, its fsync and then
    /// the memtable insert (fjall offers no way to time the fsync alone without showing the
    /// group to readers before it is durable).
    pub commit: Duration,
}

/// Storage primitives over raw bytes. `commit` must be atomic and durable when it returns.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Whether a record key is stored.
    fn record_exists(&self, key: &[u8]) -> Result<bool, StoreError>;
    /// Writes records and registry entries atomically and durably (fsync); says how long the
    /// write and the fsync took.
    fn commit(
        &self,
        records: &[KeyValue],
        terminals: &[KeyValue],
    ) -> Result<CommitTimes, StoreError>;
    /// The first record key `>= from` that starts with `prefix`.
    fn seek_record(&self, from: &[u8], prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` records with `from <= key < to`, in key order.
    fn records_between(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError>;
    /// Up to `limit` records with `from <= key < to`, in reverse key order (newest first).
    fn records_between_rev(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError>;
    /// Every registry entry.
    fn terminals(&self) -> Result<Vec<KeyValue>, StoreError>;
    /// Calls `f` for every record in key order.
    fn for_each_record(&self, f: &mut RecordVisitor<'_>) -> Result<(), StoreError>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Alert notifier: applies puts and deletes across its keyspaces atomically and durably.
    fn alerts_commit(&self, ops: &[AlertOp]) -> Result<(), StoreError>;
    /// Alert notifier: every entry of `space` whose key starts with `prefix`, in key order.
    fn alerts_scan(&self, space: AlertSpace, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError>;
    /// Whether the last write failed (the store refuses writes until it recovers).
    fn failing(&self) -> bool {
        false
    }
    /// Quarantine: whether a key (a record key) is stored.
    fn quarantine_exists(&self, key: &[u8]) -> Result<bool, StoreError>;
    /// Quarantine: writes entries atomically and durably (fsync).
    fn quarantine_commit(&self, entries: &[KeyValue]) -> Result<(), StoreError>;
    /// Quarantine: up to `limit` entries with `from <= key < to`, in key order.
    fn quarantine_between(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError>;
}

/// The small keyspaces apart from records and the registry: the alert notifier's (issue 5;
/// values are `crate::notify::persist` records) and detection's (issue 16: the incident book
/// and the detector's snapshots; values are `crate::detection::persist` records). All are
/// written with [`Store::alerts_commit`], atomically and with fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertSpace {
    /// Notifications not yet delivered or given up.
    Outbox,
    /// Every attempt's result, per incident.
    History,
    /// Silences, maintenance windows, tracked incidents, counters.
    State,
    /// The incident book: every incident with its timeline, the id counter, the alert
    /// bridge's held resolutions.
    Incidents,
    /// The detector's latest snapshot (in chunks) and the summary's minutes.
    Detection,
}

/// One change to an alert keyspace: a put (`Some` value) or a delete (`None`).
pub type AlertOp = (AlertSpace, Vec<u8>, Option<Vec<u8>>);

/// A record as stored.
///
/// Encoding: postcard, fields in order. `agent_time_unix_ms` was appended later: values
/// written before it end after `body` and decode with `None` (and older readers ignore it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// When observed, Unix ms: the agent's clock, corrected onto the collector's when the
    /// terminal's clock was skewed or the time implausible (then `agent_time_unix_ms` is set).
    pub time_unix_ms: i64,
    /// Collector wall clock when received, Unix ms.
    pub received_unix_ms: i64,
    /// What was observed; its variant is the record kind.
    pub body: RecordBody,
    /// The agent's own time stamp when `time_unix_ms` was corrected or clamped, else `None`.
    pub agent_time_unix_ms: Option<i64>,
}

/// A record kept apart because one of its values broke a rule (PROTOCOL.md 5.2): a bad
/// label, a number out of range or not finite. Keyed like a record, in its own keyspace
/// (`quarantine`); never counted as a record or seen by detection.
///
/// Encoding: postcard, fields in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredQuarantine {
    /// The record's time, agent clock, Unix ms (not corrected).
    pub time_unix_ms: i64,
    /// Collector wall clock when received, Unix ms.
    pub received_unix_ms: i64,
    /// Record kind (`heartbeat`, `net_quality`, `txn_outcome`, `spool_drops`).
    pub kind: String,
    /// The field that broke its rule (`route`, `cpu_percent`, `endpoints[0].dns_ms`).
    pub field: String,
    /// Why (`must not be empty`, `is 150, must be from 0 to 100`).
    pub reason: String,
    /// The body as received, in Rust debug notation (`NaN` shows as `NaN`).
    pub body: String,
}

/// A quarantined record with its key.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineRow {
    /// The key.
    pub key: RecordKey,
    /// The entry.
    pub entry: StoredQuarantine,
}

/// Identifies a record: (terminal, spool epoch, seq).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    /// Terminal.
    pub terminal: TerminalId,
    /// Spool epoch.
    pub epoch: u64,
    /// Sequence number within the epoch.
    pub seq: u64,
}

/// A stored record with its key.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {
    /// The key.
    pub key: RecordKey,
    /// The record.
    pub record: StoredRecord,
}

/// Everything one group commit writes.
#[derive(Debug, Default)]
pub struct WriteSet {
    /// New records.
    pub records: Vec<(RecordKey, StoredRecord)>,
    /// Updated registry entries.
    pub terminals: Vec<(TerminalId, TerminalEntry)>,
    /// Records kept apart (written first, in a commit of their own, only when there are any).
    pub quarantined: Vec<(RecordKey, StoredQuarantine)>,
}

/// Typed access to a [`Backend`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    /// Opens (or creates) the fjall store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Arc::new(FjallBackend::open(path)?),
        })
    }

    /// An empty in-memory store.
    pub fn in_memory() -> Self {
        Self {
            backend: Arc::new(MemoryBackend::default()),
        }
    }

    /// Whether a record is stored.
    pub fn contains(&self, key: &RecordKey) -> Result<bool, StoreError> {
        self.backend.record_exists(&key.encode())
    }

    /// Writes a group atomically and durably.
    pub fn commit(&self, set: &WriteSet) -> Result<CommitTimes, StoreError> {
        let started = Instant::now();
        let records = set
            .records
            .iter()
            .map(|(k, r)| Ok((k.encode(), encode(r)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let terminals = set
            .terminals
            .iter()
            .map(|(t, e)| {
                Ok((
                    t.as_str().as_bytes().to_vec(),
                    encode(&StoredTerminal::from(e))?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let encoded = started.elapsed();
        if !set.quarantined.is_empty() {
            // Durable before the batch can be acked; a replay after a failure below finds the
            // keys and writes nothing twice.
            let entries = set
                .quarantined
                .iter()
                .map(|(k, q)| Ok((k.encode(), encode(q)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            self.backend.quarantine_commit(&entries)?;
        }
        let mut times = self.backend.commit(&records, &terminals)?;
        times.encode += encoded;
        Ok(times)
    }

    /// The registry as persisted.
    pub fn load_fleet(&self, thresholds: Thresholds) -> Result<Fleet, StoreError> {
        let mut fleet = Fleet::new(thresholds);
        for (k, v) in self.backend.terminals()? {
            let id = std::str::from_utf8(&k)
                .ok()
                .and_then(|s| TerminalId::new(s).ok())
                .ok_or_else(|| StoreError::Corrupt(format!("registry key {k:02x?}")))?;
            let stored = decode_terminal(&v)?;
            let entry = stored.into_entry(&id);
            fleet.insert(id, entry);
        }
        Ok(fleet)
    }

    /// Up to `limit` records of `terminal` with `seq > after_seq` (every seq if `None`), in
    /// (epoch, seq) order.
    pub fn records(
        &self,
        terminal: &TerminalId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RecordRow>, StoreError> {
        let prefix = terminal_prefix(terminal);
        let end = prefix_end(&prefix);
        let first_seq = match after_seq {
            None => Some(0),
            Some(a) => a.checked_add(1),
        };
        let mut out = Vec::new();
        let mut cursor = key_of(terminal, 0, 0);
        // One seek and one range scan per epoch, skipping the part of each epoch at or below
        // `after_seq`.
        while out.len() < limit {
            let Some(k) = self.backend.seek_record(&cursor, &prefix)? else {
                break;
            };
            let epoch = RecordKey::decode(&k)?.epoch;
            let epoch_end = match epoch.checked_add(1) {
                Some(next) => key_of(terminal, next, 0),
                None => end.clone(),
            };
            if let Some(first_seq) = first_seq {
                let from = key_of(terminal, epoch, first_seq);
                for (k, v) in self
                    .backend
                    .records_between(&from, &epoch_end, limit - out.len())?
                {
                    out.push(RecordRow {
                        key: RecordKey::decode(&k)?,
                        record: decode_record(&v)?,
                    });
                }
            }
            if epoch == u64::MAX {
                break;
            }
            cursor = epoch_end;
        }
        Ok(out)
    }

    /// Up to `limit` records of `terminal` after the key `after` (exclusive; from the first if
    /// `None`), in (epoch, seq) order across every spool epoch: the cursor behind the records
    /// API. Pass the last row's key as `after` to page on.
    pub fn records_after(
        &self,
        terminal: &TerminalId,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<RecordRow>, StoreError> {
        let prefix = terminal_prefix(terminal);
        let to = prefix_end(&prefix);
        let Some(from) = key_after(terminal, after, prefix) else {
            return Ok(Vec::new());
        };
        self.backend
            .records_between(&from, &to, limit)?
            .into_iter()
            .map(|(k, v)| {
                Ok(RecordRow {
                    key: RecordKey::decode(&k)?,
                    record: decode_record(&v)?,
                })
            })
            .collect()
    }

    /// The highest seq stored for `terminal` in spool epoch `epoch`, if any (one reverse seek,
    /// nothing decoded but the key).
    pub fn last_seq(&self, terminal: &TerminalId, epoch: u64) -> Result<Option<u64>, StoreError> {
        let from = key_of(terminal, epoch, 0);
        let to = match epoch.checked_add(1) {
            Some(next) => key_of(terminal, next, 0),
            None => prefix_end(&terminal_prefix(terminal)),
        };
        match self.backend.records_between_rev(&from, &to, 1)?.first() {
            Some((k, _)) => Ok(Some(RecordKey::decode(k)?.seq)),
            None => Ok(None),
        }
    }

    /// Up to `limit` records of `terminal` before `before` (exclusive; from the newest if
    /// `None`), newest first in (epoch, seq) order: the bounded reverse scan behind the
    /// terminal detail API. Pass the last row's key as `before` to page on.
    pub fn records_newest_first(
        &self,
        terminal: &TerminalId,
        before: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<RecordRow>, StoreError> {
        let from = terminal_prefix(terminal);
        let to = match before {
            Some(k) if &k.terminal == terminal => k.encode(),
            Some(_) => return Ok(Vec::new()),
            None => prefix_end(&from),
        };
        self.backend
            .records_between_rev(&from, &to, limit)?
            .into_iter()
            .map(|(k, v)| {
                Ok(RecordRow {
                    key: RecordKey::decode(&k)?,
                    record: decode_record(&v)?,
                })
            })
            .collect()
    }

    /// Whether a quarantined record is stored under `key`.
    pub fn quarantine_contains(&self, key: &RecordKey) -> Result<bool, StoreError> {
        self.backend.quarantine_exists(&key.encode())
    }

    /// Up to `limit` quarantined records of `terminal` after `after` (exclusive; from the
    /// first if `None`), in (epoch, seq) order.
    pub fn quarantined(
        &self,
        terminal: &TerminalId,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<QuarantineRow>, StoreError> {
        let prefix = terminal_prefix(terminal);
        let to = prefix_end(&prefix);
        let Some(from) = key_after(terminal, after, prefix) else {
            return Ok(Vec::new());
        };
        self.backend
            .quarantine_between(&from, &to, limit)?
            .into_iter()
            .map(|(k, v)| {
                Ok(QuarantineRow {
                    key: RecordKey::decode(&k)?,
                    entry: postcard::from_bytes(&v)
                        .map_err(|e| StoreError::Corrupt(format!("quarantine entry: {e}")))?,
                })
            })
            .collect()
    }

    /// Calls `f` for every stored record in key order.
    pub fn for_each_record(
        &self,
        mut f: impl FnMut(RecordRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.backend.for_each_record(&mut |k, v| {
            f(RecordRow {
                key: RecordKey::decode(k)?,
                record: decode_record(v)?,
            })
        })
    }

    /// Whether the store's last write failed (it recovers by itself once its disk takes
    /// writes again; until then nothing is committed or acknowledged).
    pub fn is_failing(&self) -> bool {
        self.backend.failing()
    }

    /// Makes everything durable (called on shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.backend.flush()
    }

    /// Alert notifier: applies puts and deletes atomically and durably (fsync).
    pub fn alerts_commit(&self, ops: &[AlertOp]) -> Result<(), StoreError> {
        self.backend.alerts_commit(ops)
    }

    /// Alert notifier: entries of `space` under `prefix`, in key order.
    pub fn alerts_scan(
        &self,
        space: AlertSpace,
        prefix: &[u8],
    ) -> Result<Vec<KeyValue>, StoreError> {
        self.backend.alerts_scan(space, prefix)
    }
}

/// The first key of `terminal` after `after` (exclusive), `prefix` (the terminal's first key)
/// without one; `None` when nothing can follow (the last possible key, or another terminal's).
fn key_after(terminal: &TerminalId, after: Option<&RecordKey>, prefix: Vec<u8>) -> Option<Vec<u8>> {
    match after {
        None => Some(prefix),
        Some(k) if &k.terminal != terminal => None,
        Some(k) => match (k.seq.checked_add(1), k.epoch.checked_add(1)) {
            (Some(seq), _) => Some(key_of(terminal, k.epoch, seq)),
            (None, Some(epoch)) => Some(key_of(terminal, epoch, 0)),
            (None, None) => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use storepulse_shared::{PayMethod, Scheme, TxnOutcome};

    use super::*;

    fn tid(s: &str) -> TerminalId {
        TerminalId::new(s).expect("valid")
    }

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

    fn key(t: &str, epoch: u64, seq: u64) -> RecordKey {
        RecordKey {
            terminal: tid(t),
            epoch,
            seq,
        }
    }

    /// The same script against both backends; they must agree.
    fn check(store: &Store) {
        let mut set = WriteSet::default();
        for (t, e, s) in [
            ("T1", 5, 1),
            ("T1", 5, 2),
            ("T1", 2, 9),
            ("T1", u64::MAX, 0),
            ("T10", 0, 0),
            ("T", 0, 3),
        ] {
            set.records
                .push((key(t, e, s), rec(i64::try_from(s).expect("small"))));
        }
        let mut entry = TerminalEntry::new(10);
        entry.records_received = 4;
        set.terminals.push((tid("T1"), entry.clone()));
        store.commit(&set).expect("commit");

        assert!(store.contains(&key("T1", 5, 2)).expect("read"));
        assert!(!store.contains(&key("T1", 5, 3)).expect("read"));
        assert_eq!(store.last_seq(&tid("T1"), 5).expect("read"), Some(2));
        assert_eq!(store.last_seq(&tid("T1"), u64::MAX).expect("read"), Some(0));
        assert_eq!(store.last_seq(&tid("T1"), 3).expect("read"), None);
        assert_eq!(store.last_seq(&tid("T"), 0).expect("read"), Some(3));
        assert_eq!(store.last_seq(&tid("T9"), 0).expect("read"), None);

        let seqs = |after, limit| -> Vec<(u64, u64)> {
            store
                .records(&tid("T1"), after, limit)
                .expect("query")
                .into_iter()
                .map(|r| (r.key.epoch, r.key.seq))
                .collect()
        };
        assert_eq!(seqs(None, 100), [(2, 9), (5, 1), (5, 2), (u64::MAX, 0)]);
        assert_eq!(seqs(Some(1), 100), [(2, 9), (5, 2)]);
        assert_eq!(seqs(None, 2), [(2, 9), (5, 1)]);
        assert_eq!(seqs(Some(u64::MAX), 100), []);
        // The cursor pages across epochs and returns every record once.
        let mut paged = Vec::new();
        let mut after: Option<RecordKey> = None;
        loop {
            let page = store
                .records_after(&tid("T1"), after.as_ref(), 1)
                .expect("query");
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            paged.extend(page.iter().map(|r| (r.key.epoch, r.key.seq)));
        }
        assert_eq!(paged, [(2, 9), (5, 1), (5, 2), (u64::MAX, 0)]);
        assert_eq!(
            store
                .records_after(&tid("T1"), Some(&key("T1", u64::MAX, u64::MAX)), 9)
                .expect("query"),
            []
        );
        assert_eq!(
            store
                .records_after(&tid("T1"), Some(&key("T10", 0, 0)), 9)
                .expect("query"),
            []
        );
        // Quarantine: apart from the records, paged the same way.
        let q = |seq: u64| {
            (
                key("T1", 5, seq),
                StoredQuarantine {
                    time_unix_ms: 1,
                    received_unix_ms: 2,
                    kind: "heartbeat".into(),
                    field: "cpu_percent".into(),
                    reason: "is NaN, not a finite number".into(),
                    body: "Heartbeat(..)".into(),
                },
            )
        };
        let qset = WriteSet {
            quarantined: vec![q(7), q(8)],
            ..WriteSet::default()
        };
        store.commit(&qset).expect("commit");
        assert!(store.quarantine_contains(&key("T1", 5, 7)).expect("read"));
        assert!(!store.contains(&key("T1", 5, 7)).expect("read"));
        let rows = store.quarantined(&tid("T1"), None, 10).expect("read");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].entry, q(7).1);
        let rows = store
            .quarantined(&tid("T1"), Some(&key("T1", 5, 7)), 10)
            .expect("read");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].key.seq, 8);
        assert!(
            store
                .records(&tid("T9"), None, 10)
                .expect("query")
                .is_empty()
        );

        let fleet = store
            .load_fleet(Thresholds {
                stale_after_ms: 1,
                offline_after_ms: 2,
            })
            .expect("load");
        assert_eq!(fleet.entry(&tid("T1")), Some(&entry));

        let mut all = Vec::new();
        store
            .for_each_record(|r| {
                all.push(r.key);
                Ok(())
            })
            .expect("scan");
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], key("T", 0, 3));
        store.flush().expect("flush");
    }

    #[test]
    fn memory_backend() {
        check(&Store::in_memory());
    }

    #[test]
    fn fjall_backend_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        check(&Store::open(dir.path()).expect("open"));
        let reopened = Store::open(dir.path()).expect("reopen");
        assert!(reopened.contains(&key("T10", 0, 0)).expect("read"));
    }
}
