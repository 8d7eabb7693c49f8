//! What detection keeps in the store so a restart continues where it stopped (issue 16 item 1,
//! issue 14 root 8): the incident book and the detector's snapshot.
//!
//! Keyspace `incidents` ([`AlertSpace::Incidents`]): `incident/<id u64 BE>` = one incident
//! with its timeline ([`RecordData`]), written at every change; `meta/next_id` = the first
//! incident id not used (u64 BE), so ids never repeat; `meta/bridge` = the alert bridge's held
//! resolutions and continued ids (JSON). Keyspace `detection` ([`AlertSpace::Detection`]):
//! `snapshot/head` = the detector snapshot's version, time, size and chunk count;
//! `snapshot/chunk/<n u32 BE>` = its postcard bytes in chunks of at most [`CHUNK`];
//! `minutes` = the summary's per-minute outcome counts. A snapshot is written whole in one
//! fsync'd batch (head last in key order, all at once), so a crash leaves the previous one.
//!
//! Values carry a leading format byte ([`FORMAT`]); a value of another format, or one that does
//! not decode, is logged and skipped, never a panic: without a snapshot the shell replays the
//! store's recent records instead.

use serde::{Deserialize, Serialize};
use storepulse_collector_core::detect::{DETECTOR_SNAPSHOT_VERSION, DetectorSnapshot};
use storepulse_collector_core::incident::{BookExport, BridgeExport, MinuteData, RecordData};
use storepulse_collector_core::notify::IncidentSnapshot;
use tracing::warn;

use crate::notify::persist::SnapshotRec;
use crate::store::{AlertOp, AlertSpace, Store, StoreError};

/// Format byte in front of every value written here.
pub(crate) const FORMAT: u8 = 1;
/// Largest chunk of a detector snapshot, bytes.
pub(crate) const CHUNK: usize = 1 << 20;

const NEXT_ID: &[u8] = b"meta/next_id";
const BRIDGE: &[u8] = b"meta/bridge";
const HEAD: &[u8] = b"snapshot/head";
const CHUNK_PREFIX: &[u8] = b"snapshot/chunk/";
const MINUTES: &[u8] = b"minutes";

/// The head of a stored detector snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Head {
    version: u32,
    taken_ms: i64,
    bytes: u64,
    chunks: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BridgeRec {
    held: Vec<(SnapshotRec, i64)>,
    alias: Vec<(u64, String, i64)>,
}

/// What was loaded at start.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) records: Vec<RecordData>,
    pub(crate) next_id: u64,
    pub(crate) bridge: BridgeExport,
    pub(crate) detector: Option<DetectorSnapshot>,
    pub(crate) minutes: Vec<MinuteData>,
    /// Values that did not decode (logged).
    pub(crate) skipped: usize,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![FORMAT];
    out.extend(postcard::to_stdvec(v).map_err(|e| StoreError::Corrupt(format!("detection: {e}")))?);
    Ok(out)
}

fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Option<T> {
    match b.split_first() {
        Some((&FORMAT, rest)) => postcard::from_bytes(rest).ok(),
        _ => None,
    }
}

fn incident_key(id: u64) -> Vec<u8> {
    let mut k = b"incident/".to_vec();
    k.extend(id.to_be_bytes());
    k
}

/// The writes for the book's changes, the id counter and the bridge's state.
pub(crate) fn book_ops(
    changes: &BookExport,
    next_id: u64,
    bridge: &BridgeExport,
) -> Result<Vec<AlertOp>, StoreError> {
    let mut ops = Vec::with_capacity(changes.records.len() + changes.evicted.len() + 2);
    for r in &changes.records {
        ops.push((
            AlertSpace::Incidents,
            incident_key(r.incident.id),
            Some(encode(r)?),
        ));
    }
    for id in &changes.evicted {
        ops.push((AlertSpace::Incidents, incident_key(*id), None));
    }
    ops.push((
        AlertSpace::Incidents,
        NEXT_ID.to_vec(),
        Some(next_id.to_be_bytes().to_vec()),
    ));
    let rec = BridgeRec {
        held: bridge
            .held
            .iter()
            .map(|(s, at)| (SnapshotRec::from(s), *at))
            .collect(),
        alias: bridge.alias.clone(),
    };
    ops.push((
        AlertSpace::Incidents,
        BRIDGE.to_vec(),
        Some(crate::notify::persist::to_bytes(&rec)?),
    ));
    Ok(ops)
}

/// The writes for a detector snapshot and the summary's minutes (replacing the last ones).
pub(crate) fn snapshot_ops(
    store: &Store,
    snap: &DetectorSnapshot,
    minutes: &[MinuteData],
) -> Result<Vec<AlertOp>, StoreError> {
    let bytes =
        postcard::to_stdvec(snap).map_err(|e| StoreError::Corrupt(format!("detection: {e}")))?;
    let mut ops = Vec::new();
    let old = store.alerts_scan(AlertSpace::Detection, CHUNK_PREFIX)?;
    let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
    for (k, _) in old.iter().skip(chunks.len()) {
        ops.push((AlertSpace::Detection, k.clone(), None));
    }
    for (i, c) in chunks.iter().enumerate() {
        let mut k = CHUNK_PREFIX.to_vec();
        k.extend((i as u32).to_be_bytes());
        ops.push((AlertSpace::Detection, k, Some(c.to_vec())));
    }
    let head = Head {
        version: snap.version,
        taken_ms: snap.taken_ms,
        bytes: bytes.len() as u64,
        chunks: chunks.len() as u32,
    };
    ops.push((AlertSpace::Detection, HEAD.to_vec(), Some(encode(&head)?)));
    ops.push((
        AlertSpace::Detection,
        MINUTES.to_vec(),
        Some(encode(&minutes.to_vec())?),
    ));
    Ok(ops)
}

/// Reads the book, the counters, the bridge and the latest snapshot. Nothing that fails to
/// decode stops the start: it is logged and left out.
pub(crate) fn load(store: &Store) -> Result<Loaded, StoreError> {
    let mut out = Loaded::default();
    for (k, v) in store.alerts_scan(AlertSpace::Incidents, b"")? {
        if k.starts_with(b"incident/") {
            match decode::<RecordData>(&v) {
                Some(r) => out.records.push(r),
                None => {
                    out.skipped += 1;
                    warn!(key = %String::from_utf8_lossy(&k), "Stored incident does not decode; skipped");
                }
            }
        } else if k == NEXT_ID {
            out.next_id = v.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0);
        } else if k == BRIDGE {
            let rec: Result<BridgeRec, _> = crate::notify::persist::from_bytes(&v);
            let held = rec.map(|r| {
                let held: Vec<(IncidentSnapshot, i64)> = r
                    .held
                    .into_iter()
                    .filter_map(|(s, at)| Some((IncidentSnapshot::try_from(s).ok()?, at)))
                    .collect();
                BridgeExport {
                    held,
                    alias: r.alias,
                }
            });
            match held {
                Ok(b) => out.bridge = b,
                Err(e) => warn!(error = %e, "Stored alert bridge does not decode; skipped"),
            }
        }
    }
    let det = store.alerts_scan(AlertSpace::Detection, b"")?;
    let head = det
        .iter()
        .find(|(k, _)| k == HEAD)
        .and_then(|(_, v)| decode::<Head>(v));
    if let Some((_, v)) = det.iter().find(|(k, _)| k == MINUTES) {
        match decode::<Vec<MinuteData>>(v) {
            Some(m) => out.minutes = m,
            None => warn!("Stored summary minutes do not decode; skipped"),
        }
    }
    match head {
        None if det.iter().any(|(k, _)| k == HEAD) => {
            warn!("Detector snapshot head does not decode; replaying history instead");
        }
        None => {}
        Some(h) if h.version != DETECTOR_SNAPSHOT_VERSION => {
            warn!(
                version = h.version,
                expected = DETECTOR_SNAPSHOT_VERSION,
                "Detector snapshot of another version; replaying history instead"
            );
        }
        Some(h) => {
            let mut bytes = Vec::with_capacity(usize::try_from(h.bytes).unwrap_or(0));
            for (k, v) in &det {
                if k.starts_with(CHUNK_PREFIX) {
                    bytes.extend_from_slice(v);
                }
            }
            let chunks = det
                .iter()
                .filter(|(k, _)| k.starts_with(CHUNK_PREFIX))
                .count();
            if bytes.len() as u64 != h.bytes || chunks != h.chunks as usize {
                warn!(
                    expected = h.bytes,
                    found = bytes.len(),
                    "Detector snapshot incomplete; replaying history instead"
                );
            } else {
                match postcard::from_bytes::<DetectorSnapshot>(&bytes) {
                    Ok(s) => out.detector = Some(s),
                    Err(e) => {
                        warn!(error = %e, "Detector snapshot does not decode; replaying history instead");
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_another_format_are_refused() {
        let bytes = encode(&5u32).expect("encode");
        assert_eq!(decode::<u32>(&bytes), Some(5));
        let mut other = bytes.clone();
        other[0] = FORMAT + 1;
        assert_eq!(decode::<u32>(&other), None);
        assert_eq!(decode::<u32>(&[]), None);
    }

    #[test]
    fn a_damaged_snapshot_is_skipped_not_fatal() {
        let store = Store::in_memory();
        let snap = storepulse_collector_core::detect::Detector::new(Default::default()).export(7);
        let ops = snapshot_ops(&store, &snap, &[]).expect("ops");
        store.alerts_commit(&ops).expect("commit");
        let loaded = load(&store).expect("load");
        assert_eq!(loaded.detector.as_ref().map(|s| s.taken_ms), Some(7));
        // Garble the first chunk: the load still succeeds, without a snapshot.
        let mut k = CHUNK_PREFIX.to_vec();
        k.extend(0u32.to_be_bytes());
        store
            .alerts_commit(&[(AlertSpace::Detection, k, Some(vec![0xff; 3]))])
            .expect("commit");
        let loaded = load(&store).expect("load");
        assert!(loaded.detector.is_none());
    }
}
