//! The spool shedding policy: which records to evict when a new one does not fit.
//!
//! Order of sacrifice, oldest first within each step:
//! 1. heartbeats and network-quality records not in flight,
//! 2. heartbeats and network-quality records in flight,
//! 3. only for a new transaction outcome or `SpoolDrops` record: transaction outcomes and
//!    `SpoolDrops` records not in flight, then those in flight.
//!
//! A new telemetry record that would need step 3 is dropped itself instead, and so is any record
//! larger than the whole bound. Nothing is evicted when the new record is dropped.

use std::collections::{BTreeMap, BTreeSet};

use storepulse_shared::Seq;

use crate::spool::{EntryInfo, RecordKind};

/// Index of a spool's records by class, with their sizes: what the policy decides on.
#[derive(Debug, Clone, Default)]
pub struct SpoolIndex {
    /// Heartbeats and network-quality records: seq → (kind, bytes).
    telemetry: BTreeMap<u64, (RecordKind, u32)>,
    /// Transaction outcomes and `SpoolDrops` records: seq → (kind, bytes).
    precious: BTreeMap<u64, (RecordKind, u32)>,
    bytes: u64,
}

/// The policy's decision for one new record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShedPlan {
    /// Store the new record after evicting these (possibly none), in this order.
    Admit(Vec<EntryInfo>),
    /// Do not store the new record; evict nothing.
    DropNew,
}

impl SpoolIndex {
    /// Builds an index from entries.
    pub fn from_entries(entries: impl IntoIterator<Item = EntryInfo>) -> Self {
        let mut index = Self::default();
        for e in entries {
            index.insert(e);
        }
        index
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        (self.telemetry.len() + self.precious.len()) as u64
    }

    /// True when the spool is empty.
    pub fn is_empty(&self) -> bool {
        self.telemetry.is_empty() && self.precious.is_empty()
    }

    /// Sum of the records' logical sizes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds an entry (replacing any entry with the same seq).
    pub fn insert(&mut self, e: EntryInfo) {
        self.remove(e.seq);
        let map = if e.kind.is_telemetry() {
            &mut self.telemetry
        } else {
            &mut self.precious
        };
        map.insert(e.seq.0, (e.kind, e.bytes));
        self.bytes += u64::from(e.bytes);
    }

    /// Removes an entry, returning it if it was present.
    pub fn remove(&mut self, seq: Seq) -> Option<EntryInfo> {
        let (kind, bytes) = self
            .telemetry
            .remove(&seq.0)
            .or_else(|| self.precious.remove(&seq.0))?;
        self.bytes -= u64::from(bytes);
        Some(EntryInfo { seq, kind, bytes })
    }

    /// The entry for `seq`, if present.
    pub fn entry(&self, seq: Seq) -> Option<EntryInfo> {
        self.telemetry
            .get(&seq.0)
            .or_else(|| self.precious.get(&seq.0))
            .map(|&(kind, bytes)| EntryInfo { seq, kind, bytes })
    }

    /// Every entry, ascending by seq.
    pub fn entries(&self) -> Vec<EntryInfo> {
        let mut v: Vec<EntryInfo> = self
            .telemetry
            .iter()
            .chain(self.precious.iter())
            .map(|(&s, &(kind, bytes))| EntryInfo {
                seq: Seq(s),
                kind,
                bytes,
            })
            .collect();
        v.sort_by_key(|e| e.seq);
        v
    }

    /// Decides what to do with a new record of `kind` and `bytes` under `max_bytes`. Pure.
    pub fn plan(
        &self,
        kind: RecordKind,
        bytes: u32,
        max_bytes: u64,
        in_flight: &BTreeSet<Seq>,
    ) -> ShedPlan {
        let bytes = u64::from(bytes);
        if bytes > max_bytes {
            return ShedPlan::DropNew;
        }
        let mut need = (self.bytes + bytes).saturating_sub(max_bytes);
        if need == 0 {
            return ShedPlan::Admit(Vec::new());
        }
        let mut classes = vec![&self.telemetry];
        if !kind.is_telemetry() {
            classes.push(&self.precious);
        }
        let mut evict = Vec::new();
        for map in classes {
            for want_in_flight in [false, true] {
                for (&s, &(k, b)) in map {
                    if in_flight.contains(&Seq(s)) != want_in_flight {
                        continue;
                    }
                    evict.push(EntryInfo {
                        seq: Seq(s),
                        kind: k,
                        bytes: b,
                    });
                    need = need.saturating_sub(u64::from(b));
                    if need == 0 {
                        return ShedPlan::Admit(evict);
                    }
                }
            }
        }
        ShedPlan::DropNew
    }

    /// Applies [`Self::plan`]: on admission evicts the planned entries, inserts the new one and
    /// returns the evicted entries; returns `None` if the new record is to be dropped.
    pub fn admit(
        &mut self,
        new: EntryInfo,
        max_bytes: u64,
        in_flight: &BTreeSet<Seq>,
    ) -> Option<Vec<EntryInfo>> {
        match self.plan(new.kind, new.bytes, max_bytes, in_flight) {
            ShedPlan::DropNew => None,
            ShedPlan::Admit(evict) => {
                for e in &evict {
                    self.remove(e.seq);
                }
                self.insert(new);
                Some(evict)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn e(seq: u64, kind: RecordKind, bytes: u32) -> EntryInfo {
        EntryInfo {
            seq: Seq(seq),
            kind,
            bytes,
        }
    }

    const HB: RecordKind = RecordKind::Heartbeat;
    const NQ: RecordKind = RecordKind::NetQuality;
    const TX: RecordKind = RecordKind::TxnOutcome;
    const SD: RecordKind = RecordKind::SpoolDrops;

    fn seqs(plan: &ShedPlan) -> Vec<u64> {
        match plan {
            ShedPlan::Admit(v) => v.iter().map(|e| e.seq.0).collect(),
            ShedPlan::DropNew => panic!("expected admission"),
        }
    }

    #[test]
    fn fits_without_eviction() {
        let idx = SpoolIndex::from_entries([e(0, TX, 10)]);
        assert_eq!(
            idx.plan(HB, 10, 20, &BTreeSet::new()),
            ShedPlan::Admit(vec![])
        );
    }

    #[test]
    fn oldest_telemetry_goes_first_and_in_flight_last() {
        let idx =
            SpoolIndex::from_entries([e(0, TX, 10), e(1, HB, 10), e(2, NQ, 10), e(3, HB, 10)]);
        let in_flight = BTreeSet::from([Seq(1)]);
        let plan = idx.plan(TX, 20, 40, &in_flight);
        assert_eq!(seqs(&plan), vec![2, 3]);
        let plan = idx.plan(TX, 30, 40, &in_flight);
        assert_eq!(seqs(&plan), vec![2, 3, 1]);
    }

    #[test]
    fn txn_outcomes_go_only_when_no_telemetry_is_left() {
        let idx = SpoolIndex::from_entries([e(0, TX, 10), e(1, SD, 10), e(2, HB, 10)]);
        assert_eq!(seqs(&idx.plan(TX, 20, 30, &BTreeSet::new())), vec![2, 0]);
        assert_eq!(seqs(&idx.plan(SD, 30, 30, &BTreeSet::new())), vec![2, 0, 1]);
    }

    #[test]
    fn new_telemetry_is_dropped_when_only_txn_outcomes_remain() {
        let idx = SpoolIndex::from_entries([e(0, TX, 10), e(1, TX, 10), e(2, NQ, 5)]);
        assert_eq!(idx.plan(HB, 10, 20, &BTreeSet::new()), ShedPlan::DropNew);
        assert_eq!(seqs(&idx.plan(HB, 5, 25, &BTreeSet::new())), vec![2]);
    }

    #[test]
    fn oversized_record_is_dropped() {
        let idx = SpoolIndex::default();
        assert_eq!(idx.plan(TX, 11, 10, &BTreeSet::new()), ShedPlan::DropNew);
    }

    fn kind() -> impl Strategy<Value = RecordKind> {
        prop_oneof![Just(HB), Just(NQ), Just(TX), Just(SD)]
    }

    proptest! {
        /// Admission never exceeds the bound, never evicts precious records for telemetry, and
        /// evicts telemetry before any precious record.
        #[test]
        fn policy_invariants(
            existing in proptest::collection::vec((kind(), 1u32..50, any::<bool>()), 0..40),
            new_kind in kind(),
            new_bytes in 1u32..80,
            max_bytes in 0u64..800,
        ) {
            let mut idx = SpoolIndex::default();
            let mut in_flight = BTreeSet::new();
            for (i, (k, b, f)) in existing.iter().enumerate() {
                let probe = idx.plan(*k, *b, max_bytes, &in_flight);
                if let ShedPlan::Admit(_) = probe {
                    idx.admit(e(i as u64, *k, *b), max_bytes, &in_flight);
                    if *f { in_flight.insert(Seq(i as u64)); }
                }
                prop_assert!(idx.bytes() <= max_bytes);
            }
            let before = idx.clone();
            match idx.plan(new_kind, new_bytes, max_bytes, &in_flight) {
                ShedPlan::DropNew => {
                    let tele: u64 = before.telemetry.values().map(|&(_, b)| u64::from(b)).sum();
                    let room = if new_kind.is_telemetry() { max_bytes - before.bytes() + tele } else { max_bytes };
                    prop_assert!(u64::from(new_bytes) > room);
                }
                ShedPlan::Admit(evict) => {
                    let freed: u64 = evict.iter().map(|e| u64::from(e.bytes)).sum();
                    prop_assert!(before.bytes() - freed + u64::from(new_bytes) <= max_bytes);
                    if new_kind.is_telemetry() {
                        prop_assert!(evict.iter().all(|e| e.kind.is_telemetry()));
                    }
                    let first_precious = evict.iter().position(|e| !e.kind.is_telemetry());
                    if let Some(p) = first_precious {
                        prop_assert!(evict[p..].iter().all(|e| !e.kind.is_telemetry()));
                        prop_assert_eq!(p, before.telemetry.len(), "all telemetry goes first");
                    }
                }
            }
        }
    }
}
