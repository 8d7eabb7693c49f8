//! The outbox state machine: which spooled records go into which batch, and when to reconnect.
//!
//! [`Uplink`] knows every record in the spool that is not yet acknowledged (seq, kind, size),
//! which of them are in flight in which batch, and the connection state. It does no IO.
//!
//! How the shell drives it (one loop, all calls take `now`):
//! 1. After every spool append call [`Uplink::handle_appended`]; give the spool
//!    [`Uplink::in_flight_seqs`] so it avoids evicting records in flight.
//! 2. While disconnected, wait until [`Uplink::poll_timeout`], then when
//!    [`Uplink::poll_connect`] says so, call [`Uplink::handle_connecting`] and try to connect.
//! 3. After the `Welcome`, call [`Uplink::handle_connected`]. Then repeatedly call
//!    [`Uplink::poll_batch`] until it returns `None`, read the records it names from the spool
//!    and send them; on an `Ack` call [`Uplink::handle_ack`] and delete the seqs it returns;
//!    sleep until [`Uplink::poll_timeout`] or until new records are appended.
//! 4. On any error or `Goodbye` call [`Uplink::handle_disconnected`] (every batch in flight
//!    becomes pending again; the collector deduplicates replays) and go back to 2.
//!
//! Ordering: at connect time `live_from = next_seq`. Records with `seq >= live_from` (live) are
//! sent as soon as they exist; older ones (backlog) are sent only when no live record is
//! pending, at most `backlog_records_per_sec` on average (token bucket).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use storepulse_shared::{Ack, Seq, Welcome};

use crate::backoff::{Backoff, BackoffConfig};
use crate::spool::{Appended, EntryInfo};

/// Upper bound accepted for `max_batch_records` from config or `Welcome`.
pub const MAX_BATCH_RECORDS_LIMIT: u32 = 10_000;

/// Fixed bytes a `Batch` frame adds around its records (header, batch id, vector length),
/// rounded up.
const BATCH_OVERHEAD_BYTES: u64 = 5 + 10 + 5;

/// Tunables of the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkConfig {
    /// Most records in one batch.
    pub max_batch_records: u32,
    /// Most encoded bytes in one batch frame (a single larger record still goes alone).
    pub max_batch_bytes: u32,
    /// Most batches sent and not yet acknowledged.
    pub max_in_flight: usize,
    /// Backlog replay rate, records per second.
    pub backlog_records_per_sec: u32,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
}

/// A batch to send: read these records from the spool, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    /// The batch id to put in the `Batch` frame.
    pub batch_id: u64,
    /// The records' sequence numbers, ascending.
    pub seqs: Vec<Seq>,
    /// True for backlog (replay) batches, false for live ones.
    pub backlog: bool,
}

/// Why an `Ack` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No connection is up.
    #[error("ack received while not connected")]
    NotConnected,
    /// The batch id is not in flight on this connection.
    #[error("ack for batch {0}, which is not in flight")]
    UnknownBatch(u64),
}

/// Connection state.
#[derive(Debug, Clone)]
enum LinkState {
    /// Not connected; connect at or after `retry_at` (`None`: now).
    Idle { retry_at: Option<Instant> },
    /// A connection attempt is under way.
    Connecting,
    /// Connected (the `Welcome` was received).
    Connected {
        since: Instant,
        live_from: u64,
        next_batch_id: u64,
    },
}

/// Token bucket limiting the backlog replay rate.
#[derive(Debug, Clone)]
struct TokenBucket {
    tokens: f64,
    last: Instant,
}

/// The outbox state machine; see the module documentation for the calling order.
#[derive(Debug)]
pub struct Uplink {
    config: UplinkConfig,
    /// Unacknowledged records in the spool that are not in flight.
    pending: BTreeMap<u64, EntryInfo>,
    /// Batches in flight on the current connection: batch id → records (evicted ones removed).
    in_flight: BTreeMap<u64, Vec<EntryInfo>>,
    /// seq → batch id, for every record in flight.
    in_flight_seqs: BTreeMap<u64, u64>,
    next_seq: u64,
    state: LinkState,
    backoff: Backoff,
    bucket: TokenBucket,
    rng: SmallRng,
    acked_total: u64,
}

impl TokenBucket {
    fn refill(&mut self, now: Instant, rate: f64, capacity: f64) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(capacity);
        self.last = self.last.max(now);
    }
}

impl Uplink {
    /// A disconnected uplink that will connect at once, knowing the spool's current contents.
    pub fn new(
        config: UplinkConfig,
        next_seq: Seq,
        entries: impl IntoIterator<Item = EntryInfo>,
        now: Instant,
        rng_seed: u64,
    ) -> Self {
        let pending: BTreeMap<u64, EntryInfo> = entries.into_iter().map(|e| (e.seq.0, e)).collect();
        let max_seen = pending.keys().next_back().map_or(0, |s| s + 1);
        Self {
            config: sanitize(config),
            pending,
            in_flight: BTreeMap::new(),
            in_flight_seqs: BTreeMap::new(),
            next_seq: next_seq.0.max(max_seen),
            state: LinkState::Idle { retry_at: None },
            backoff: Backoff::new(config.backoff),
            bucket: TokenBucket {
                tokens: 0.0,
                last: now,
            },
            rng: SmallRng::seed_from_u64(rng_seed),
            acked_total: 0,
        }
    }

    /// Current tunables (after any `Welcome`).
    pub fn config(&self) -> &UplinkConfig {
        &self.config
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, LinkState::Connected { .. })
    }

    /// Unacknowledged records not in flight.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Batches in flight.
    pub fn in_flight_batches(&self) -> usize {
        self.in_flight.len()
    }

    /// Records acknowledged since this uplink was created.
    pub fn acked_total(&self) -> u64 {
        self.acked_total
    }

    /// The next sequence number the spool will assign, as far as the uplink knows.
    pub fn next_seq(&self) -> Seq {
        Seq(self.next_seq)
    }

    /// Sequence numbers in flight; pass to the spool's append so it spares them if it can.
    pub fn in_flight_seqs(&self) -> BTreeSet<Seq> {
        self.in_flight_seqs.keys().map(|s| Seq(*s)).collect()
    }

    /// The spool committed an append: new records become pending, evicted ones are forgotten.
    pub fn handle_appended(&mut self, appended: &Appended) {
        self.next_seq = self.next_seq.max(appended.first_seq.0 + appended.count);
        for seq in &appended.evicted {
            self.forget(*seq);
        }
        for e in &appended.stored {
            self.next_seq = self.next_seq.max(e.seq.0 + 1);
            self.pending.insert(e.seq.0, *e);
        }
    }

    /// Forgets a record that left the spool without an ack (evicted).
    fn forget(&mut self, seq: Seq) {
        self.pending.remove(&seq.0);
        if let Some(batch) = self.in_flight_seqs.remove(&seq.0)
            && let Some(list) = self.in_flight.get_mut(&batch)
        {
            list.retain(|e| e.seq != seq);
        }
    }

    /// True when a connection attempt should start now.
    pub fn poll_connect(&self, now: Instant) -> bool {
        match self.state {
            LinkState::Idle { retry_at } => retry_at.is_none_or(|t| now >= t),
            _ => false,
        }
    }

    /// A connection attempt started.
    pub fn handle_connecting(&mut self, _now: Instant) {
        self.state = LinkState::Connecting;
    }

    /// The connection is up and the `Welcome` (if any) received: applies its settings, marks
    /// every record that exists now as backlog, and starts batch ids at 1.
    pub fn handle_connected(&mut self, now: Instant, welcome: Option<&Welcome>) {
        if let Some(w) = welcome {
            self.apply_welcome(w);
        }
        self.requeue_in_flight();
        self.state = LinkState::Connected {
            since: now,
            live_from: self.next_seq,
            next_batch_id: 1,
        };
        self.bucket = TokenBucket {
            tokens: self.capacity(),
            last: now,
        };
    }

    /// Applies the collector's settings (clamped to sane bounds).
    pub fn apply_welcome(&mut self, w: &Welcome) {
        self.config.max_batch_records = w.max_batch_records;
        self.config.backlog_records_per_sec = w.backlog_records_per_sec;
        self.config = sanitize(self.config);
    }

    /// The connection attempt failed or the connection was lost. `retry_after` is the floor
    /// from a `Goodbye`, if one was received. Returns the reconnect delay.
    pub fn handle_disconnected(&mut self, now: Instant, retry_after: Option<Duration>) -> Duration {
        let delay = match self.state {
            LinkState::Connected { since, .. } => self.backoff.after_loss(
                &mut self.rng,
                now.saturating_duration_since(since),
                retry_after,
            ),
            LinkState::Connecting | LinkState::Idle { .. } => {
                self.backoff.after_failure(&mut self.rng, retry_after)
            }
        };
        self.requeue_in_flight();
        self.state = LinkState::Idle {
            retry_at: Some(now + delay),
        };
        delay
    }

    fn requeue_in_flight(&mut self) {
        for (_, list) in std::mem::take(&mut self.in_flight) {
            for e in list {
                self.pending.insert(e.seq.0, e);
            }
        }
        self.in_flight_seqs.clear();
    }

    /// The collector acknowledged a batch: returns the seqs to delete from the spool. Only
    /// records of that batch up to `highest_seq` are returned; any above it become pending
    /// again.
    pub fn handle_ack(&mut self, _now: Instant, ack: &Ack) -> Result<Vec<Seq>, AckError> {
        if !self.is_connected() {
            return Err(AckError::NotConnected);
        }
        let list = self
            .in_flight
            .remove(&ack.batch_id)
            .ok_or(AckError::UnknownBatch(ack.batch_id))?;
        let mut done = Vec::with_capacity(list.len());
        for e in list {
            self.in_flight_seqs.remove(&e.seq.0);
            if e.seq <= ack.highest_seq {
                done.push(e.seq);
            } else {
                self.pending.insert(e.seq.0, e);
            }
        }
        self.acked_total += done.len() as u64;
        Ok(done)
    }

    /// The next batch to send, if any may go now.
    pub fn poll_batch(&mut self, now: Instant) -> Option<PlannedBatch> {
        let LinkState::Connected {
            live_from,
            next_batch_id,
            ..
        } = self.state
        else {
            return None;
        };
        if self.in_flight.len() >= self.config.max_in_flight {
            return None;
        }
        let max_records = self.config.max_batch_records as usize;
        let (entries, backlog) = if self.pending.range(live_from..).next().is_some() {
            (self.take_batch(live_from.., max_records), false)
        } else {
            let backlog_len = self.pending.range(..live_from).count();
            if backlog_len == 0 {
                return None;
            }
            let rate = f64::from(self.config.backlog_records_per_sec);
            let capacity = self.capacity();
            self.bucket.refill(now, rate, capacity);
            let target = (backlog_len.min(max_records) as f64).min(capacity);
            if self.bucket.tokens < target {
                return None;
            }
            // `target >= 1` because capacity >= 1 and backlog_len >= 1.
            let take = self.take_batch(..live_from, target as usize);
            self.bucket.tokens -= take.len() as f64;
            (take, true)
        };
        if entries.is_empty() {
            return None;
        }
        let batch_id = next_batch_id;
        if let LinkState::Connected { next_batch_id, .. } = &mut self.state {
            *next_batch_id += 1;
        }
        for e in &entries {
            self.pending.remove(&e.seq.0);
            self.in_flight_seqs.insert(e.seq.0, batch_id);
        }
        let seqs = entries.iter().map(|e| e.seq).collect();
        self.in_flight.insert(batch_id, entries);
        Some(PlannedBatch {
            batch_id,
            seqs,
            backlog,
        })
    }

    /// Picks up to `max` pending entries in `range`, ascending, within the batch byte bound.
    fn take_batch(&self, range: impl std::ops::RangeBounds<u64>, max: usize) -> Vec<EntryInfo> {
        let mut bytes = BATCH_OVERHEAD_BYTES;
        let mut out = Vec::new();
        for e in self.pending.range(range).map(|(_, e)| *e) {
            if out.len() >= max {
                break;
            }
            let next = bytes + u64::from(e.bytes) + 5;
            if !out.is_empty() && next > u64::from(self.config.max_batch_bytes) {
                break;
            }
            bytes = next;
            out.push(e);
        }
        out
    }

    /// When the shell must call in again even if nothing happens: the reconnect time while
    /// disconnected, or when the token bucket allows the next backlog batch.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            LinkState::Idle { retry_at } => *retry_at,
            LinkState::Connecting => None,
            LinkState::Connected { live_from, .. } => {
                if self.in_flight.len() >= self.config.max_in_flight
                    || self.pending.range(*live_from..).next().is_some()
                {
                    return None;
                }
                let backlog_len = self.pending.range(..*live_from).count();
                if backlog_len == 0 {
                    return None;
                }
                let rate = f64::from(self.config.backlog_records_per_sec);
                let capacity = self.capacity();
                let target =
                    (backlog_len.min(self.config.max_batch_records as usize) as f64).min(capacity);
                let missing = (target - self.bucket.tokens).max(0.0);
                // The bucket state is as of `bucket.last`; round up so the shell never wakes
                // early and spins.
                let wait = Duration::from_secs_f64(missing / rate) + Duration::from_millis(1);
                Some(self.bucket.last + wait)
            }
        }
    }

    /// Token bucket capacity: one batch, at most one second's worth, at least one record.
    fn capacity(&self) -> f64 {
        f64::from(
            self.config
                .backlog_records_per_sec
                .min(self.config.max_batch_records)
                .max(1),
        )
    }
}

fn sanitize(mut c: UplinkConfig) -> UplinkConfig {
    c.max_batch_records = c.max_batch_records.clamp(1, MAX_BATCH_RECORDS_LIMIT);
    c.backlog_records_per_sec = c.backlog_records_per_sec.max(1);
    c.max_in_flight = c.max_in_flight.max(1);
    c
}

#[cfg(test)]
mod tests;
