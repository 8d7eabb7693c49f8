//! The fleet registry: per terminal labels, first/last seen, last heartbeat, records received,
//! spool drops, and the derived online/stale/offline state.

use std::collections::BTreeMap;

use storepulse_shared::{Identity, Label, LinkType, Record, RecordBody, TerminalId};

/// When a terminal counts as stale or offline, measured from the last time the collector heard
/// from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Silence after which a terminal is [`TerminalState::Stale`], milliseconds.
    pub stale_after_ms: i64,
    /// Silence after which a terminal is [`TerminalState::Offline`], milliseconds.
    pub offline_after_ms: i64,
}

/// Liveness of a terminal as seen by the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TerminalState {
    /// Heard from within `stale_after`.
    Online,
    /// Silent for longer than `stale_after` but less than `offline_after`.
    Stale,
    /// Silent for `offline_after` or longer.
    Offline,
}

/// The labels a terminal announced in its last `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    /// Merchant number.
    pub merchant_id: Label,
    /// Store (branch) id.
    pub store_id: Label,
    /// Region.
    pub region: Label,
    /// City.
    pub city: Label,
    /// Card acquirer.
    pub acquirer: Label,
    /// QR channel.
    pub qr_channel: Label,
    /// Carrier or ISP.
    pub carrier: Label,
    /// Link type.
    pub link: LinkType,
    /// Hardware model.
    pub model: Label,
    /// Firmware version.
    pub firmware: Label,
    /// POS application version.
    pub app_version: Label,
}

/// Totals of records agents reported as dropped from their spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropTotals {
    /// Heartbeats dropped.
    pub heartbeats: u64,
    /// Network-quality samples dropped.
    pub net_quality: u64,
    /// Transaction outcomes dropped.
    pub txn_outcomes: u64,
}

/// What the collector knows about one terminal.
///
/// `first_seen_unix_ms` and `last_seen_unix_ms` are the collector's clock; record times
/// (`last_heartbeat_unix_ms`) are the agent's clock and are informational only.
#[derive(Debug, Clone, PartialEq)]
pub struct TerminalEntry {
    /// Labels from the last accepted `Hello`; `None` until one was accepted.
    pub labels: Option<Labels>,
    /// When the collector first heard from the terminal (collector clock, Unix ms).
    pub first_seen_unix_ms: i64,
    /// When the collector last heard from the terminal (collector clock, Unix ms).
    pub last_seen_unix_ms: i64,
    /// Agent time of the newest heartbeat record stored, Unix ms.
    pub last_heartbeat_unix_ms: Option<i64>,
    /// Agent software version from the last `Hello`.
    pub agent_version: String,
    /// Spool epoch from the last `Hello`.
    pub spool_epoch: Option<u64>,
    /// Records stored for this terminal; replays of stored records are not counted again.
    pub records_received: u64,
    /// Totals from the terminal's `SpoolDrops` records.
    pub spool_drops: DropTotals,
}

/// All terminals the collector knows, keyed by terminal id.
///
/// Feed it with [`Fleet::insert`] (entries updated by the caller through the
/// [`TerminalEntry`] `observe_*` methods) and ask it with [`Fleet::state`] and [`Fleet::iter`].
#[derive(Debug, Clone)]
pub struct Fleet {
    thresholds: Thresholds,
    terminals: BTreeMap<TerminalId, TerminalEntry>,
}

impl Labels {
    /// The labels carried in a `Hello` identity.
    pub fn from_identity(identity: &Identity) -> Self {
        Self {
            merchant_id: identity.merchant_id.clone(),
            store_id: identity.store_id.clone(),
            region: identity.region.clone(),
            city: identity.city.clone(),
            acquirer: identity.acquirer.clone(),
            qr_channel: identity.qr_channel.clone(),
            carrier: identity.carrier.clone(),
            link: identity.link,
            model: identity.model.clone(),
            firmware: identity.firmware.clone(),
            app_version: identity.app_version.clone(),
        }
    }
}

impl TerminalEntry {
    /// A terminal first heard from at `now_unix_ms`.
    pub fn new(now_unix_ms: i64) -> Self {
        Self {
            labels: None,
            first_seen_unix_ms: now_unix_ms,
            last_seen_unix_ms: now_unix_ms,
            last_heartbeat_unix_ms: None,
            agent_version: String::new(),
            spool_epoch: None,
            records_received: 0,
            spool_drops: DropTotals::default(),
        }
    }

    /// An accepted `Hello` at `now_unix_ms`: labels, version and epoch are replaced.
    pub fn observe_hello(
        &mut self,
        now_unix_ms: i64,
        identity: &Identity,
        agent_version: &str,
        spool_epoch: u64,
    ) {
        self.touch(now_unix_ms);
        self.labels = Some(Labels::from_identity(identity));
        agent_version.clone_into(&mut self.agent_version);
        self.spool_epoch = Some(spool_epoch);
    }

    /// A batch arrived at `now_unix_ms` (whether or not its records were new).
    pub fn observe_batch(&mut self, now_unix_ms: i64) {
        self.touch(now_unix_ms);
    }

    /// A record was newly stored (not a replay of a stored one).
    pub fn observe_new_record(&mut self, record: &Record) {
        self.records_received = self.records_received.saturating_add(1);
        match &record.body {
            RecordBody::Heartbeat(_) => {
                let newest = self
                    .last_heartbeat_unix_ms
                    .map_or(record.time_unix_ms, |t| t.max(record.time_unix_ms));
                self.last_heartbeat_unix_ms = Some(newest);
            }
            RecordBody::SpoolDrops(d) => {
                let t = &mut self.spool_drops;
                t.heartbeats = t.heartbeats.saturating_add(d.heartbeats);
                t.net_quality = t.net_quality.saturating_add(d.net_quality);
                t.txn_outcomes = t.txn_outcomes.saturating_add(d.txn_outcomes);
            }
            RecordBody::NetQuality(_) | RecordBody::TxnOutcome(_) => {}
        }
    }

    /// Liveness at `now_unix_ms`. A clock that went backwards counts as "just heard from".
    pub fn state(&self, now_unix_ms: i64, thresholds: Thresholds) -> TerminalState {
        let silent_ms = now_unix_ms.saturating_sub(self.last_seen_unix_ms);
        if silent_ms >= thresholds.offline_after_ms {
            TerminalState::Offline
        } else if silent_ms >= thresholds.stale_after_ms {
            TerminalState::Stale
        } else {
            TerminalState::Online
        }
    }

    fn touch(&mut self, now_unix_ms: i64) {
        self.last_seen_unix_ms = self.last_seen_unix_ms.max(now_unix_ms);
        self.first_seen_unix_ms = self.first_seen_unix_ms.min(now_unix_ms);
    }
}

impl Fleet {
    /// An empty registry.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            terminals: BTreeMap::new(),
        }
    }

    /// The thresholds used by [`Self::state`].
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Inserts or replaces a terminal's entry.
    pub fn insert(&mut self, terminal: TerminalId, entry: TerminalEntry) {
        self.terminals.insert(terminal, entry);
    }

    /// One terminal's entry.
    pub fn entry(&self, terminal: &TerminalId) -> Option<&TerminalEntry> {
        self.terminals.get(terminal)
    }

    /// One terminal's liveness at `now_unix_ms`; `None` for an unknown terminal.
    pub fn state(&self, terminal: &TerminalId, now_unix_ms: i64) -> Option<TerminalState> {
        self.entry(terminal)
            .map(|e| e.state(now_unix_ms, self.thresholds))
    }

    /// All terminals in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&TerminalId, &TerminalEntry)> {
        self.terminals.iter()
    }

    /// Number of terminals known.
    pub fn len(&self) -> usize {
        self.terminals.len()
    }

    /// Whether no terminal is known.
    pub fn is_empty(&self) -> bool {
        self.terminals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use storepulse_shared::{Heartbeat, Seq, SpoolDrops};

    use super::*;

    const T: Thresholds = Thresholds {
        stale_after_ms: 90_000,
        offline_after_ms: 300_000,
    };

    fn label(s: &str) -> Label {
        Label::new(s).expect("valid label")
    }

    fn identity(id: &str) -> Identity {
        Identity {
            terminal_id: TerminalId::new(id).expect("valid id"),
            merchant_id: label("M1"),
            store_id: label("S1"),
            region: label("east"),
            city: label("上海"),
            acquirer: label("acq-a"),
            qr_channel: label("wechatpay"),
            carrier: label("cmcc"),
            link: LinkType::Cellular,
            model: label("P300"),
            firmware: label("1.0"),
            app_version: label("5.0"),
        }
    }

    fn heartbeat(seq: u64, time: i64) -> Record {
        Record {
            seq: Seq(seq),
            time_unix_ms: time,
            body: RecordBody::Heartbeat(Heartbeat {
                cpu_percent: 1.0,
                mem_used_bytes: 1,
                mem_total_bytes: 2,
                disk_free_bytes: 3,
                uptime_secs: 4,
                temperature_c: None,
                battery_percent: None,
                spool_records: 0,
            }),
        }
    }

    #[test]
    fn state_follows_silence() {
        let e = TerminalEntry::new(1_000);
        assert_eq!(e.state(1_000, T), TerminalState::Online);
        assert_eq!(e.state(1_000 + 89_999, T), TerminalState::Online);
        assert_eq!(e.state(1_000 + 90_000, T), TerminalState::Stale);
        assert_eq!(e.state(1_000 + 299_999, T), TerminalState::Stale);
        assert_eq!(e.state(1_000 + 300_000, T), TerminalState::Offline);
        assert_eq!(e.state(0, T), TerminalState::Online, "clock went backwards");
    }

    #[test]
    fn batch_brings_a_terminal_back_online() {
        let mut e = TerminalEntry::new(0);
        assert_eq!(e.state(400_000, T), TerminalState::Offline);
        e.observe_batch(400_000);
        assert_eq!(e.state(400_001, T), TerminalState::Online);
        assert_eq!(e.first_seen_unix_ms, 0);
        assert_eq!(e.last_seen_unix_ms, 400_000);
    }

    #[test]
    fn hello_sets_labels_and_version() {
        let mut e = TerminalEntry::new(5);
        e.observe_hello(10, &identity("T1"), "0.1.0", 42);
        assert_eq!(e.agent_version, "0.1.0");
        assert_eq!(e.spool_epoch, Some(42));
        let labels = e.labels.as_ref().expect("labels set");
        assert_eq!(labels.city.as_str(), "上海");
        assert_eq!(labels.link, LinkType::Cellular);
        assert_eq!(e.last_seen_unix_ms, 10);
    }

    #[test]
    fn records_are_counted_and_drops_summed() {
        let mut e = TerminalEntry::new(0);
        e.observe_new_record(&heartbeat(1, 500));
        e.observe_new_record(&heartbeat(2, 300));
        let drops = Record {
            seq: Seq(3),
            time_unix_ms: 600,
            body: RecordBody::SpoolDrops(SpoolDrops {
                reason: storepulse_shared::DropReason::SpoolFull,
                heartbeats: 2,
                net_quality: 3,
                txn_outcomes: 4,
            }),
        };
        e.observe_new_record(&drops);
        e.observe_new_record(&drops);
        assert_eq!(e.records_received, 4);
        assert_eq!(e.last_heartbeat_unix_ms, Some(500));
        assert_eq!(
            e.spool_drops,
            DropTotals {
                heartbeats: 4,
                net_quality: 6,
                txn_outcomes: 8
            }
        );
    }

    #[test]
    fn fleet_lists_in_id_order() {
        let mut f = Fleet::new(T);
        assert!(f.is_empty());
        for id in ["T2", "T1"] {
            f.insert(TerminalId::new(id).expect("valid"), TerminalEntry::new(0));
        }
        let ids: Vec<_> = f.iter().map(|(id, _)| id.as_str().to_owned()).collect();
        assert_eq!(ids, ["T1", "T2"]);
        let t1 = TerminalId::new("T1").expect("valid");
        assert_eq!(f.state(&t1, 100_000), Some(TerminalState::Stale));
        assert_eq!(f.state(&TerminalId::new("T9").expect("valid"), 0), None);
        assert_eq!(f.len(), 2);
    }
}
