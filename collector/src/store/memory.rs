//! The in-memory twin of the fjall backend (tests, tools): the same [`Backend`] semantics
//! over `BTreeMap`s.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use super::codec::prefix_end;
use super::{AlertOp, AlertSpace, Backend, CommitTimes, KeyValue, RecordVisitor, StoreError};

/// The in-memory twin of [`FjallBackend`].
#[derive(Debug, Default)]
pub struct MemoryBackend {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    quarantine: BTreeMap<Vec<u8>, Vec<u8>>,
    terminals: BTreeMap<Vec<u8>, Vec<u8>>,
    alerts: BTreeMap<AlertSpace, BTreeMap<Vec<u8>, Vec<u8>>>,
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

    fn commit(
        &self,
        records: &[KeyValue],
        terminals: &[KeyValue],
    ) -> Result<CommitTimes, StoreError> {
        let started = std::time::Instant::now();
        let mut inner = self.lock();
        inner.records.extend(records.iter().cloned());
        inner.terminals.extend(terminals.iter().cloned());
        Ok(CommitTimes {
            encode: std::time::Duration::ZERO,
            commit: started.elapsed(),
        })
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

    fn quarantine_exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.lock().quarantine.contains_key(key))
    }

    fn quarantine_commit(&self, entries: &[KeyValue]) -> Result<(), StoreError> {
        self.lock().quarantine.extend(entries.iter().cloned());
        Ok(())
    }

    fn quarantine_between(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(self
            .lock()
            .quarantine
            .range(from.to_vec()..to.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
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
