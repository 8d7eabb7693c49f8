//! Encodings of store keys and values: the record key, postcard values, the registry entry.
//! Values of older layouts are read through `super::legacy`.

use serde::{Deserialize, Serialize};
use storepulse_collector_core::{DropTotals, TerminalEntry};
use storepulse_shared::{Identity, Label, LinkType, TerminalId};

use super::legacy::{StoredRecordV1, StoredTerminalV1};
use super::{RecordKey, StoreError, StoredRecord};

/// A registry entry as stored (postcard, fields in order).
#[derive(Serialize, Deserialize)]
pub(super) struct StoredTerminal {
    pub(super) labels: Option<StoredLabels>,
    pub(super) first_seen_unix_ms: i64,
    pub(super) last_seen_unix_ms: i64,
    pub(super) last_heartbeat_unix_ms: Option<i64>,
    pub(super) agent_version: String,
    pub(super) spool_epoch: Option<u64>,
    pub(super) records_received: u64,
    pub(super) drops_heartbeats: u64,
    pub(super) drops_net_quality: u64,
    pub(super) drops_txn_outcomes: u64,
    // Appended later; absent from older values (see `decode_terminal`).
    pub(super) clock_offset_ms: Option<i64>,
    pub(super) clock_skewed: bool,
}

/// A terminal's labels as stored (postcard, fields in order): the `Identity` fields after the
/// terminal id (the id is the registry key). A frozen on-disk layout: its fields and their
/// order are the store format, whatever the label vocabulary becomes.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredLabels {
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

impl StoredLabels {
    fn from_identity(id: &Identity) -> Self {
        Self {
            merchant_id: id.merchant_id.clone(),
            store_id: id.store_id.clone(),
            region: id.region.clone(),
            city: id.city.clone(),
            acquirer: id.acquirer.clone(),
            qr_channel: id.qr_channel.clone(),
            carrier: id.carrier.clone(),
            link: id.link,
            model: id.model.clone(),
            firmware: id.firmware.clone(),
            app_version: id.app_version.clone(),
        }
    }

    fn into_identity(self, terminal_id: TerminalId) -> Identity {
        Identity {
            terminal_id,
            merchant_id: self.merchant_id,
            store_id: self.store_id,
            region: self.region,
            city: self.city,
            acquirer: self.acquirer,
            qr_channel: self.qr_channel,
            carrier: self.carrier,
            link: self.link,
            model: self.model,
            firmware: self.firmware,
            app_version: self.app_version,
        }
    }
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

/// The key prefix of every record of `t`: its id and the 0x00 separator.
pub(super) fn terminal_prefix(t: &TerminalId) -> Vec<u8> {
    let mut k = Vec::with_capacity(t.as_str().len() + RecordKey::TAIL);
    k.extend_from_slice(t.as_str().as_bytes());
    k.push(0);
    k
}

/// The key of record (`t`, `epoch`, `seq`).
pub(super) fn key_of(t: &TerminalId, epoch: u64, seq: u64) -> Vec<u8> {
    RecordKey {
        terminal: t.clone(),
        epoch,
        seq,
    }
    .encode()
}

/// The smallest key after every key starting with `prefix` (prefix ends in 0x00, so bumping
/// its last byte is enough).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// Decodes a record value of either layout.
pub(super) fn decode_record(bytes: &[u8]) -> Result<StoredRecord, StoreError> {
    if let Ok(r) = postcard::from_bytes::<StoredRecord>(bytes) {
        return Ok(r);
    }
    Ok(decode::<StoredRecordV1>(bytes)?.into())
}

/// Decodes a registry value of either layout.
pub(super) fn decode_terminal(bytes: &[u8]) -> Result<StoredTerminal, StoreError> {
    if let Ok(t) = postcard::from_bytes::<StoredTerminal>(bytes) {
        return Ok(t);
    }
    Ok(decode::<StoredTerminalV1>(bytes)?.into())
}

/// Encodes a value (postcard).
pub(super) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(v).map_err(|e| StoreError::Corrupt(format!("encode: {e}")))
}

/// Decodes a value (postcard).
pub(super) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(format!("decode: {e}")))
}

impl From<&TerminalEntry> for StoredTerminal {
    fn from(e: &TerminalEntry) -> Self {
        Self {
            labels: e.identity.as_ref().map(StoredLabels::from_identity),
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

impl StoredTerminal {
    /// The registry entry of terminal `id` (the registry key).
    pub(super) fn into_entry(self, id: &TerminalId) -> TerminalEntry {
        let s = self;
        let mut e = TerminalEntry::new(s.first_seen_unix_ms);
        e.identity = s.labels.map(|l| l.into_identity(id.clone()));
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
    use super::*;

    fn key(t: &str, epoch: u64, seq: u64) -> RecordKey {
        RecordKey {
            terminal: TerminalId::new(t).expect("valid"),
            epoch,
            seq,
        }
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
