//! The record store: records keyed by (terminal, epoch, seq) and the fleet registry, behind a
//! narrow [`Backend`] trait with two implementations, fjall on disk and an in-memory twin.
//!
//! Record key: `terminal_id bytes ++ 0x00 ++ epoch u64 BE ++ seq u64 BE` (terminal ids never
//! contain 0x00, so keys of one terminal form a contiguous, ordered range). Record value:
//! postcard [`StoredRecord`]; the `RecordBody` enum tag is the record kind. Registry key:
//! terminal id bytes; value: postcard `StoredTerminal`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};
use storepulse_collector_core::{DropTotals, Fleet, Labels, TerminalEntry, Thresholds};
use storepulse_shared::{Label, LinkType, RecordBody, TerminalId};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The fjall database failed.
    #[error("fjall: {0}")]
    Fjall(#[from] fjall::Error),
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

/// Storage primitives over raw bytes. `commit` must be atomic and durable when it returns.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Whether a record key is stored.
    fn record_exists(&self, key: &[u8]) -> Result<bool, StoreError>;
    /// Writes records and registry entries atomically and durably (fsync).
    fn commit(&self, records: &[KeyValue], terminals: &[KeyValue]) -> Result<(), StoreError>;
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
}

/// The alert notifier's keyspaces (issue 5), apart from records and the registry. Their
/// values are the notifier's own records (`crate::notify::persist`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertSpace {
    /// Notifications not yet delivered or given up.
    Outbox,
    /// Every attempt's result, per incident.
    History,
    /// Silences, maintenance windows, tracked incidents, counters.
    State,
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

/// [`StoredRecord`] as written before `agent_time_unix_ms` existed.
#[derive(Deserialize)]
struct StoredRecordV1 {
    time_unix_ms: i64,
    received_unix_ms: i64,
    body: RecordBody,
}

/// Decodes a record value of either layout.
fn decode_record(bytes: &[u8]) -> Result<StoredRecord, StoreError> {
    if let Ok(r) = postcard::from_bytes::<StoredRecord>(bytes) {
        return Ok(r);
    }
    let v1: StoredRecordV1 = decode(bytes)?;
    Ok(StoredRecord {
        time_unix_ms: v1.time_unix_ms,
        received_unix_ms: v1.received_unix_ms,
        body: v1.body,
        agent_time_unix_ms: None,
    })
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
}

/// Typed access to a [`Backend`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

/// fjall on disk.
///
/// fjall poisons a database whose journal write or fsync failed (a full disk, an IO error):
/// every later write fails until it is reopened. So after a failed write the backend is
/// `failing`; before each later write it checks that the disk takes a write again (a probe
/// file) and then reopens the database in place, recovering from its journal. Reads keep
/// using the old handles until then.
pub struct FjallBackend {
    path: PathBuf,
    /// `None` only while a reopen failed; operations then fail with `Unavailable`.
    handles: RwLock<Option<FjallHandles>>,
    failing: AtomicBool,
}

struct FjallHandles {
    db: Database,
    records: Keyspace,
    terminals: Keyspace,
    alerts: [Keyspace; 3],
}

/// Size of the probe written before reopening a failed store: a few large commits' worth.
const SPACE_PROBE_BYTES: usize = 4 << 20;

/// The in-memory twin of [`FjallBackend`].
#[derive(Debug, Default)]
pub struct MemoryBackend {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    terminals: BTreeMap<Vec<u8>, Vec<u8>>,
    alerts: BTreeMap<AlertSpace, BTreeMap<Vec<u8>, Vec<u8>>>,
}

#[derive(Serialize, Deserialize)]
struct StoredTerminal {
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
    // Appended later; absent from older values (see `decode_terminal`).
    clock_offset_ms: Option<i64>,
    clock_skewed: bool,
}

/// `StoredTerminal` as written before the clock fields existed.
#[derive(Deserialize)]
struct StoredTerminalV1 {
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

/// Decodes a registry value of either layout.
fn decode_terminal(bytes: &[u8]) -> Result<StoredTerminal, StoreError> {
    if let Ok(t) = postcard::from_bytes::<StoredTerminal>(bytes) {
        return Ok(t);
    }
    let v1: StoredTerminalV1 = decode(bytes)?;
    Ok(StoredTerminal {
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
    })
}

#[derive(Serialize, Deserialize)]
struct StoredLabels {
    merchant_id: Label,
    store_id: Label,
    region: Label,
    city: Label,
    acquirer: Label,
    qr_channel: Label,
    carrier: Label,
    link: LinkType,
    model: Label,
    firmware: Label,
    app_version: Label,
}

impl RecordKey {
    /// Length of the key after the terminal id and separator.
    const TAIL: usize = 1 + 8 + 8;

    /// The key bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut k = terminal_prefix(&self.terminal);
        k.extend_from_slice(&self.epoch.to_be_bytes());
        k.extend_from_slice(&self.seq.to_be_bytes());
        k
    }

    /// Parses key bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt(format!("record key {bytes:02x?}"));
        let split = bytes.len().checked_sub(Self::TAIL).ok_or_else(bad)?;
        let (id, tail) = bytes.split_at(split);
        if tail[0] != 0 {
            return Err(bad());
        }
        let id = std::str::from_utf8(id).map_err(|_| bad())?;
        let terminal = TerminalId::new(id).map_err(|_| bad())?;
        let epoch = u64::from_be_bytes(tail[1..9].try_into().map_err(|_| bad())?);
        let seq = u64::from_be_bytes(tail[9..17].try_into().map_err(|_| bad())?);
        Ok(Self {
            terminal,
            epoch,
            seq,
        })
    }
}

fn terminal_prefix(t: &TerminalId) -> Vec<u8> {
    let mut k = Vec::with_capacity(t.as_str().len() + RecordKey::TAIL);
    k.extend_from_slice(t.as_str().as_bytes());
    k.push(0);
    k
}

fn key_of(t: &TerminalId, epoch: u64, seq: u64) -> Vec<u8> {
    RecordKey {
        terminal: t.clone(),
        epoch,
        seq,
    }
    .encode()
}

/// The smallest key after every key starting with `prefix` (prefix ends in 0x00, so bumping
/// its last byte is enough).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
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
    pub fn commit(&self, set: &WriteSet) -> Result<(), StoreError> {
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
        self.backend.commit(&records, &terminals)
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
            fleet.insert(id, stored.into());
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

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(v).map_err(|e| StoreError::Corrupt(format!("encode: {e}")))
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(format!("decode: {e}")))
}

impl FjallBackend {
    /// Opens or creates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            path: path.to_path_buf(),
            handles: RwLock::new(Some(FjallHandles::open(path)?)),
            failing: AtomicBool::new(false),
        })
    }

    /// Runs `f` on the open handles.
    fn with<R>(
        &self,
        f: impl FnOnce(&FjallHandles) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let guard = self.handles.read().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(h) => f(h),
            None => Err(StoreError::Unavailable(format!(
                "{} could not be reopened after a write failure",
                self.path.display()
            ))),
        }
    }

    /// A write: first recovers from an earlier failure, then marks the store failing if this
    /// write fails.
    fn write<R>(
        &self,
        f: impl FnOnce(&FjallHandles) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        if self.failing.load(Ordering::Acquire) {
            self.recover()?;
        }
        let result = self.with(f);
        if result.is_err() {
            self.failing.store(true, Ordering::Release);
        }
        result
    }

    /// Reopens a failed store once the disk takes a write again.
    fn recover(&self) -> Result<(), StoreError> {
        let mut guard = self.handles.write().unwrap_or_else(PoisonError::into_inner);
        if !self.failing.load(Ordering::Acquire) {
            return Ok(()); // another writer recovered it meanwhile
        }
        probe_space(&self.path).map_err(|e| {
            StoreError::Unavailable(format!(
                "{} still cannot be written ({e}); free space on its disk",
                self.path.display()
            ))
        })?;
        // fjall holds a lock file: the old database must be gone before it is opened again.
        *guard = None;
        *guard = Some(FjallHandles::open(&self.path)?);
        self.failing.store(false, Ordering::Release);
        tracing::warn!(store = %self.path.display(), "Store reopened after a write failure; writes resume");
        Ok(())
    }
}

/// Writes, fsyncs and removes a probe file of [`SPACE_PROBE_BYTES`] in `dir`.
fn probe_space(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(".space-probe");
    let result = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&vec![0u8; SPACE_PROBE_BYTES])?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// The store's memory is bounded, whatever the write rate: each keyspace keeps at most this
/// much of written-but-unflushed data in its memtable (fjall's default is 64 MiB per keyspace:
/// at 20,000 agents the collector's RSS grew by about 250 MB in the five minutes after they
/// connected while the records memtable filled), and
/// the block cache is fjall's default 32 MiB. The memtable size is recorded when a keyspace is
/// created: stores created before 2026-11-30 keep 64 MiB.
const RECORDS_MEMTABLE_BYTES: u64 = 16 << 20;
/// Memtable of the smaller keyspaces (terminal registry, alerts).
const SMALL_MEMTABLE_BYTES: u64 = 4 << 20;
/// Block cache shared by all keyspaces.
const CACHE_BYTES: u64 = 32 << 20;

impl FjallHandles {
    fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::builder(path).cache_size(CACHE_BYTES).open()?;
        let memtable = |bytes| move || KeyspaceCreateOptions::default().max_memtable_size(bytes);
        let records = db.keyspace("records", memtable(RECORDS_MEMTABLE_BYTES))?;
        let terminals = db.keyspace("terminals", memtable(SMALL_MEMTABLE_BYTES))?;
        let alerts = [
            db.keyspace("alerts_outbox", memtable(SMALL_MEMTABLE_BYTES))?,
            db.keyspace("alerts_history", memtable(SMALL_MEMTABLE_BYTES))?,
            db.keyspace("alerts_state", memtable(SMALL_MEMTABLE_BYTES))?,
        ];
        Ok(Self {
            db,
            records,
            terminals,
            alerts,
        })
    }
}

impl fmt::Debug for FjallBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallBackend").finish_non_exhaustive()
    }
}

impl Backend for FjallBackend {
    fn record_exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.with(|h| Ok(h.records.contains_key(key)?))
    }

    fn commit(&self, records: &[KeyValue], terminals: &[KeyValue]) -> Result<(), StoreError> {
        self.write(|h| {
            let mut batch = h.db.batch().durability(Some(PersistMode::SyncAll));
            for (k, v) in records {
                batch.insert(&h.records, k.as_slice(), v.as_slice());
            }
            for (k, v) in terminals {
                batch.insert(&h.terminals, k.as_slice(), v.as_slice());
            }
            batch.commit()?;
            Ok(())
        })
    }

    fn seek_record(&self, from: &[u8], prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let end = prefix_end(prefix);
        self.with(|h| match h.records.range(from..end.as_slice()).next() {
            Some(guard) => Ok(Some(guard.key()?.to_vec())),
            None => Ok(None),
        })
    }

    fn records_between(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        self.with(|h| {
            h.records
                .range(from..to)
                .take(limit)
                .map(|g| {
                    let (k, v) = g.into_inner()?;
                    Ok((k.to_vec(), v.to_vec()))
                })
                .collect()
        })
    }

    fn records_between_rev(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        self.with(|h| {
            h.records
                .range(from..to)
                .rev()
                .take(limit)
                .map(|g| {
                    let (k, v) = g.into_inner()?;
                    Ok((k.to_vec(), v.to_vec()))
                })
                .collect()
        })
    }

    fn terminals(&self) -> Result<Vec<KeyValue>, StoreError> {
        self.with(|h| {
            h.terminals
                .iter()
                .map(|g| {
                    let (k, v) = g.into_inner()?;
                    Ok((k.to_vec(), v.to_vec()))
                })
                .collect()
        })
    }

    fn for_each_record(&self, f: &mut RecordVisitor<'_>) -> Result<(), StoreError> {
        self.with(|h| {
            for g in h.records.iter() {
                let (k, v) = g.into_inner()?;
                f(&k, &v)?;
            }
            Ok(())
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.write(|h| Ok(h.db.persist(PersistMode::SyncAll)?))
    }

    fn alerts_commit(&self, ops: &[AlertOp]) -> Result<(), StoreError> {
        self.write(|h| {
            let mut batch = h.db.batch().durability(Some(PersistMode::SyncAll));
            for (space, k, v) in ops {
                let ks = &h.alerts[*space as usize];
                match v {
                    Some(v) => batch.insert(ks, k.as_slice(), v.as_slice()),
                    None => batch.remove(ks, k.as_slice()),
                }
            }
            batch.commit()?;
            Ok(())
        })
    }

    fn alerts_scan(&self, space: AlertSpace, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.with(|h| {
            h.alerts[space as usize]
                .prefix(prefix)
                .map(|g| {
                    let (k, v) = g.into_inner()?;
                    Ok((k.to_vec(), v.to_vec()))
                })
                .collect()
        })
    }

    fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }
}

impl MemoryBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for MemoryBackend {
    fn record_exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.lock().records.contains_key(key))
    }

    fn commit(&self, records: &[KeyValue], terminals: &[KeyValue]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.records.extend(records.iter().cloned());
        inner.terminals.extend(terminals.iter().cloned());
        Ok(())
    }

    fn seek_record(&self, from: &[u8], prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let end = prefix_end(prefix);
        Ok(self
            .lock()
            .records
            .range(from.to_vec()..end)
            .next()
            .map(|(k, _)| k.clone()))
    }

    fn records_between(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let inner = self.lock();
        Ok(inner
            .records
            .range(from.to_vec()..to.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn records_between_rev(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let inner = self.lock();
        Ok(inner
            .records
            .range(from.to_vec()..to.to_vec())
            .rev()
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn terminals(&self) -> Result<Vec<KeyValue>, StoreError> {
        Ok(self
            .lock()
            .terminals
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn for_each_record(&self, f: &mut RecordVisitor<'_>) -> Result<(), StoreError> {
        let rows: Vec<_> = self
            .lock()
            .records
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        rows.iter().try_for_each(|(k, v)| f(k, v))
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn alerts_commit(&self, ops: &[AlertOp]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for (space, k, v) in ops {
            let map = inner.alerts.entry(*space).or_default();
            match v {
                Some(v) => map.insert(k.clone(), v.clone()),
                None => map.remove(k),
            };
        }
        Ok(())
    }

    fn alerts_scan(&self, space: AlertSpace, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        Ok(self
            .lock()
            .alerts
            .get(&space)
            .map(|m| {
                m.range(prefix.to_vec()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl From<&TerminalEntry> for StoredTerminal {
    fn from(e: &TerminalEntry) -> Self {
        Self {
            labels: e.labels.as_ref().map(|l| StoredLabels {
                merchant_id: l.merchant_id.clone(),
                store_id: l.store_id.clone(),
                region: l.region.clone(),
                city: l.city.clone(),
                acquirer: l.acquirer.clone(),
                qr_channel: l.qr_channel.clone(),
                carrier: l.carrier.clone(),
                link: l.link,
                model: l.model.clone(),
                firmware: l.firmware.clone(),
                app_version: l.app_version.clone(),
            }),
            first_seen_unix_ms: e.first_seen_unix_ms,
            last_seen_unix_ms: e.last_seen_unix_ms,
            last_heartbeat_unix_ms: e.last_heartbeat_unix_ms,
            agent_version: e.agent_version.clone(),
            spool_epoch: e.spool_epoch,
            records_received: e.records_received,
            drops_heartbeats: e.spool_drops.heartbeats,
            drops_net_quality: e.spool_drops.net_quality,
            drops_txn_outcomes: e.spool_drops.txn_outcomes,
            clock_offset_ms: e.clock_offset_ms,
            clock_skewed: e.clock_skewed,
        }
    }
}

impl From<StoredTerminal> for TerminalEntry {
    fn from(s: StoredTerminal) -> Self {
        let mut e = TerminalEntry::new(s.first_seen_unix_ms);
        e.labels = s.labels.map(|l| Labels {
            merchant_id: l.merchant_id,
            store_id: l.store_id,
            region: l.region,
            city: l.city,
            acquirer: l.acquirer,
            qr_channel: l.qr_channel,
            carrier: l.carrier,
            link: l.link,
            model: l.model,
            firmware: l.firmware,
            app_version: l.app_version,
        });
        e.last_seen_unix_ms = s.last_seen_unix_ms;
        e.last_heartbeat_unix_ms = s.last_heartbeat_unix_ms;
        e.agent_version = s.agent_version;
        e.spool_epoch = s.spool_epoch;
        e.records_received = s.records_received;
        e.spool_drops = DropTotals {
            heartbeats: s.drops_heartbeats,
            net_quality: s.drops_net_quality,
            txn_outcomes: s.drops_txn_outcomes,
        };
        e.clock_offset_ms = s.clock_offset_ms;
        e.clock_skewed = s.clock_skewed;
        e
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

        let mut e = TerminalEntry::new(10);
        e.clock_offset_ms = Some(-3_600_000);
        e.clock_skewed = true;
        let bytes = encode(&StoredTerminal::from(&e)).expect("encode");
        assert_eq!(
            TerminalEntry::from(decode_terminal(&bytes).expect("new layout")),
            e
        );
        // The old layout is the new one without its two trailing fields (None, false).
        let plain = TerminalEntry::new(10);
        let bytes = encode(&StoredTerminal::from(&plain)).expect("encode");
        assert_eq!(&bytes[bytes.len() - 2..], &[0, 0]);
        let old = &bytes[..bytes.len() - 2];
        assert_eq!(
            TerminalEntry::from(decode_terminal(old).expect("old layout")),
            plain
        );
    }

    #[test]
    fn keys_roundtrip_and_order() {
        let k = key("T-1", 7, 300);
        assert_eq!(RecordKey::decode(&k.encode()).expect("decodes"), k);
        assert!(key("T", 9, 9).encode() < key("T0", 0, 0).encode());
        assert!(key("T", 1, u64::MAX).encode() < key("T", 2, 0).encode());
        assert!(RecordKey::decode(b"short").is_err());
    }
}
