//! The fjall backend: records, the registry and the alert keyspaces in one fjall database,
//! every commit fsync'd; reopens itself after a failed write once the disk takes writes again.
//!
//! A record commit is one fjall batch with `PersistMode::SyncAll`: fjall writes it to its
//! journal, fsyncs it and only then inserts it into the memtables, so a reader never sees a
//! group that is not durable (`tests/disk_full.rs` checks it on a full disk). Writing and
//! persisting in two calls would time the fsync apart but show the group to readers before it,
//! and keep showing it if the fsync fails; so the commit is timed as one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Instant;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::codec::prefix_end;
use super::{AlertOp, AlertSpace, Backend, CommitTimes, KeyValue, RecordVisitor, StoreError};

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
    /// Records kept apart (`super::StoredQuarantine`), keyed like records.
    quarantine: Keyspace,
    records: Keyspace,
    terminals: Keyspace,
    alerts: [Keyspace; 5],
}

/// Size of the probe written before reopening a failed store: a few large commits' worth.
const SPACE_PROBE_BYTES: usize = 4 << 20;

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
        let quarantine = db.keyspace("quarantine", memtable(SMALL_MEMTABLE_BYTES))?;
        let records = db.keyspace("records", memtable(RECORDS_MEMTABLE_BYTES))?;
        let terminals = db.keyspace("terminals", memtable(SMALL_MEMTABLE_BYTES))?;
        let alerts = [
            db.keyspace("alerts_outbox", memtable(SMALL_MEMTABLE_BYTES))?,
            db.keyspace("alerts_history", memtable(SMALL_MEMTABLE_BYTES))?,
            db.keyspace("alerts_state", memtable(SMALL_MEMTABLE_BYTES))?,
            db.keyspace("incidents", memtable(SMALL_MEMTABLE_BYTES))?,
            db.keyspace("detection", memtable(SMALL_MEMTABLE_BYTES))?,
        ];
        Ok(Self {
            db,
            quarantine,
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

    fn commit(
        &self,
        records: &[KeyValue],
        terminals: &[KeyValue],
    ) -> Result<CommitTimes, StoreError> {
        self.write(|h| {
            let started = Instant::now();
            let mut batch = h.db.batch().durability(Some(PersistMode::SyncAll));
            for (k, v) in records {
                batch.insert(&h.records, k.as_slice(), v.as_slice());
            }
            for (k, v) in terminals {
                batch.insert(&h.terminals, k.as_slice(), v.as_slice());
            }
            let built = Instant::now();
            batch.commit()?;
            Ok(CommitTimes {
                encode: built.duration_since(started),
                commit: built.elapsed(),
            })
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

    fn quarantine_exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.with(|h| Ok(h.quarantine.contains_key(key)?))
    }

    fn quarantine_commit(&self, entries: &[KeyValue]) -> Result<(), StoreError> {
        self.write(|h| {
            let mut batch = h.db.batch().durability(Some(PersistMode::SyncAll));
            for (k, v) in entries {
                batch.insert(&h.quarantine, k.as_slice(), v.as_slice());
            }
            batch.commit()?;
            Ok(())
        })
    }

    fn quarantine_between(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        self.with(|h| {
            h.quarantine
                .range(from..to)
                .take(limit)
                .map(|g| {
                    let (k, v) = g.into_inner()?;
                    Ok((k.to_vec(), v.to_vec()))
                })
                .collect()
        })
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
