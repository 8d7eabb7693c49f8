//! The fleet registry: per terminal labels, first/last seen, last heartbeat, records received,
//! spool drops, the agent's clock offset, and the derived online/stale/offline state.
//!
//! Clock skew: each accepted `Hello` carries the agent's clock; the collector measures
//! `offset = agent clock - collector clock at receipt` (exact up to the one-way delay, so
//! within the handshake RTT). When `|offset|` exceeds [`ClockPolicy::skew_threshold_ms`] the
//! terminal is flagged and [`ClockPolicy::correct`] shifts its record times onto the
//! collector's clock before they are stored or reach detection. Whatever the offset, a record
//! time later than its receipt (plus the threshold) or older than
//! [`ClockPolicy::max_record_age_ms`] is clamped, so a wild clock never lands a record in a
//! detection window far away.

use std::collections::BTreeMap;

use storepulse_shared::{Identity, Record, RecordBody, TerminalId};

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

/// How record times are checked against the collector's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockPolicy {
    /// An agent clock off by more than this (either way) is corrected, milliseconds.
    pub skew_threshold_ms: i64,
    /// A record time older than this before its receipt is clamped to it, milliseconds.
    pub max_record_age_ms: i64,
}

/// What [`ClockPolicy::correct`] did to a record time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFix {
    /// The agent's time was kept.
    Kept,
    /// Shifted by the terminal's measured clock offset.
    Corrected,
    /// Still implausible (after any correction): clamped to the receipt time, or to
    /// `max_record_age_ms` before it.
    Clamped,
}

impl Default for ClockPolicy {
    fn default() -> Self {
        Self {
            skew_threshold_ms: 120_000,
            max_record_age_ms: 7 * 24 * 3_600_000,
        }
    }
}

impl ClockPolicy {
    /// Whether a measured offset counts as skewed.
    pub fn is_skewed(&self, offset_ms: i64) -> bool {
        offset_ms.unsigned_abs() > self.skew_threshold_ms.unsigned_abs()
    }

    /// The time to store and detect on for a record stamped `agent_time_unix_ms` by a terminal
    /// whose clock is `offset_ms` ahead of the collector's (`None`: not measured), received at
    /// `received_unix_ms` (collector clock).
    pub fn correct(
        &self,
        agent_time_unix_ms: i64,
        received_unix_ms: i64,
        offset_ms: Option<i64>,
    ) -> (i64, TimeFix) {
        let (mut t, mut fix) = match offset_ms {
            Some(off) if self.is_skewed(off) => {
                (agent_time_unix_ms.saturating_sub(off), TimeFix::Corrected)
            }
            _ => (agent_time_unix_ms, TimeFix::Kept),
        };
        let latest = received_unix_ms.saturating_add(self.skew_threshold_ms.max(0));
        let earliest = received_unix_ms.saturating_sub(self.max_record_age_ms.max(0));
        if t > latest {
            (t, fix) = (received_unix_ms, TimeFix::Clamped);
        } else if t < earliest {
            (t, fix) = (earliest, TimeFix::Clamped);
        }
        (t, fix)
    }
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
    /// Identity and labels from the last accepted `Hello` (read a label with
    /// [`Identity::label`]); `None` until one was accepted.
    pub identity: Option<Identity>,
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
    /// Agent clock minus collector clock at the last `Hello`, milliseconds (`None` until
    /// measured).
    pub clock_offset_ms: Option<i64>,
    /// The offset exceeded the skew threshold: record times are being corrected.
    pub clock_skewed: bool,
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

impl TerminalEntry {
    /// A terminal first heard from at `now_unix_ms`.
    pub fn new(now_unix_ms: i64) -> Self {
        Self {
            identity: None,
            first_seen_unix_ms: now_unix_ms,
            last_seen_unix_ms: now_unix_ms,
            last_heartbeat_unix_ms: None,
            agent_version: String::new(),
            spool_epoch: None,
            records_received: 0,
            spool_drops: DropTotals::default(),
            clock_offset_ms: None,
            clock_skewed: false,
        }
    }

    /// A `Hello` stamped `agent_time_unix_ms` by the agent arrived at `now_unix_ms`: measures
    /// the clock offset and flags the terminal if it is beyond the policy's threshold.
    pub fn observe_clock(
        &mut self,
        now_unix_ms: i64,
        agent_time_unix_ms: i64,
        policy: &ClockPolicy,
    ) {
        let offset = agent_time_unix_ms.saturating_sub(now_unix_ms);
        self.clock_offset_ms = Some(offset);
        self.clock_skewed = policy.is_skewed(offset);
    }

    /// The offset to correct this terminal's record times by, if its clock is skewed.
    pub fn clock_correction_ms(&self) -> Option<i64> {
        self.clock_offset_ms.filter(|_| self.clock_skewed)
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
        self.identity = Some(identity.clone());
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

    /// How many terminals are online, stale and offline at `now_unix_ms`, in that order.
    pub fn state_counts(&self, now_unix_ms: i64) -> (u64, u64, u64) {
        let mut counts = (0, 0, 0);
        for e in self.terminals.values() {
            match e.state(now_unix_ms, self.thresholds) {
                TerminalState::Online => counts.0 += 1,
                TerminalState::Stale => counts.1 += 1,
                TerminalState::Offline => counts.2 += 1,
            }
        }
        counts
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
    use storepulse_shared::{Heartbeat, Label, LinkType, Seq, SpoolDrops};

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
        let id = e.identity.as_ref().expect("labels set");
        assert_eq!(id.city.as_str(), "上海");
        assert_eq!(id.link, LinkType::Cellular);
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
    fn skewed_clocks_are_measured_flagged_and_corrected() {
        let policy = ClockPolicy::default();
        let now = 1_700_000_000_000;
        let hour = 3_600_000;
        for (agent_offset, skewed) in [(hour, true), (-hour, true), (90_000, false), (0, false)] {
            let mut e = TerminalEntry::new(now);
            e.observe_clock(now, now + agent_offset, &policy);
            assert_eq!(e.clock_offset_ms, Some(agent_offset));
            assert_eq!(e.clock_skewed, skewed, "offset {agent_offset}");
            // A payment observed 10 s before receipt, stamped with the agent's clock.
            let observed = now - 10_000;
            let (t, fix) = policy.correct(observed + agent_offset, now, e.clock_correction_ms());
            if skewed {
                assert_eq!((t, fix), (observed, TimeFix::Corrected));
            } else {
                assert_eq!((t, fix), (observed + agent_offset, TimeFix::Kept));
            }
        }
        // A backlog record from 3 hours ago by a clock one hour behind: 3 hours ago.
        let (t, fix) = policy.correct(now - 4 * hour, now, Some(-hour));
        assert_eq!((t, fix), (now - 3 * hour, TimeFix::Corrected));
        // Unmeasured offset: small differences are kept as they are.
        assert_eq!(
            policy.correct(now + 5_000, now, None),
            (now + 5_000, TimeFix::Kept)
        );
    }

    #[test]
    fn implausible_record_times_are_clamped_never_far_away() {
        let policy = ClockPolicy::default();
        let now = 1_700_000_000_000;
        // The clock jumped a day ahead after the Hello: clamped to the receipt time.
        assert_eq!(
            policy.correct(now + 86_400_000, now, Some(0)),
            (now, TimeFix::Clamped)
        );
        // A dead RTC stamping 1970, not explained by the Hello: clamped to the oldest allowed.
        assert_eq!(
            policy.correct(0, now, None),
            (now - policy.max_record_age_ms, TimeFix::Clamped)
        );
        // Corrected but still in the future: clamped.
        assert_eq!(
            policy.correct(now + 7_200_000, now, Some(3_600_000)),
            (now, TimeFix::Clamped)
        );
        // Extreme values do not overflow.
        assert_eq!(
            policy.correct(i64::MAX, now, Some(i64::MIN)).1,
            TimeFix::Clamped
        );
        assert_eq!(
            policy.correct(i64::MIN, now, Some(i64::MAX)).1,
            TimeFix::Clamped
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
