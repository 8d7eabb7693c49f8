//! The delivery outbox as pure logic: which stored notification to send next, and what an
//! attempt's outcome means (delivered, retry at a jittered backoff honouring `Retry-After`, or
//! give up). The IO shell persists every change this returns before acting on it.
//!
//! Call order: [`Outbox::push`] (then persist the entry), [`Outbox::poll_due`] until `None`
//! (send each), [`Outbox::handle_result`] for each finished attempt (then persist or delete
//! what it returns), and sleep until [`Outbox::next_wakeup`].
//!
//! Per (incident, receiver) the outbox is first-in first-out: a later notification waits
//! until the earlier one left, so a receiver never sees a resolution before the page it
//! resolves (an Alertmanager alert re-posted as firing after its resolution would re-open).

use std::collections::{BTreeMap, BTreeSet};

use super::Notification;

/// Retry bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay cap of the first retry, milliseconds.
    pub initial_backoff_ms: i64,
    /// Cap of any backoff delay (and of an honoured `Retry-After`), milliseconds.
    pub max_backoff_ms: i64,
    /// Attempts after which a notification is given up.
    pub max_attempts: u32,
    /// Age after which a failing notification is given up, milliseconds.
    pub max_age_ms: i64,
}

/// A notification waiting in the outbox, with its delivery state.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Outbox order, unique for the store's lifetime.
    pub id: u64,
    /// What to deliver.
    pub notification: Notification,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this time, Unix ms.
    pub next_at_ms: i64,
    /// The last attempt's error.
    pub last_error: Option<String>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver accepted it (2xx, and a zero `errcode` where the receiver has one).
    Delivered,
    /// It failed.
    Failed {
        /// Whether trying again may help (429, 5xx, 408, timeouts, connection errors).
        retryable: bool,
        /// The receiver's `Retry-After`, milliseconds.
        retry_after_ms: Option<i64>,
        /// What went wrong, for history (never contains URLs or secrets).
        error: String,
    },
}

/// What to do with an entry after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Delete it: delivered.
    Delivered(OutboxEntry),
    /// Persist its new state; it is tried again at `next_at_ms`.
    Retry(OutboxEntry),
    /// Delete it: given up (counted).
    GaveUp(OutboxEntry),
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Notifications delivered.
    pub delivered: u64,
    /// Failed attempts that will be retried.
    pub retries: u64,
    /// Notifications given up.
    pub gave_up: u64,
}

/// The outbox state machine. Holds the pending entries; the shell mirrors them durably.
#[derive(Debug)]
pub struct Outbox {
    policy: RetryPolicy,
    entries: BTreeMap<u64, OutboxEntry>,
    in_flight: BTreeSet<u64>,
    next_id: u64,
    rng: SplitMix64,
    stats: OutboxStats,
}

/// A small seeded generator (SplitMix64) for backoff jitter.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (max >= 0).
    pub fn upto(&mut self, max: i64) -> i64 {
        let span = u64::try_from(max.max(0)).unwrap_or(0).saturating_add(1);
        i64::try_from(self.next_u64() % span).unwrap_or(0)
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempts` (1 = after the first failure): "equal jitter",
    /// `cap/2 + uniform(0, cap/2)` with `cap = min(max, initial * 2^(attempts-1))`. Half the
    /// cap is kept so a struggling receiver is never hammered by near-zero delays.
    pub fn backoff_ms(&self, attempts: u32, rng: &mut SplitMix64) -> i64 {
        let shift = attempts.saturating_sub(1).min(30);
        let cap = self
            .initial_backoff_ms
            .max(1)
            .saturating_mul(1i64 << shift)
            .min(self.max_backoff_ms.max(1));
        cap / 2 + rng.upto(cap - cap / 2)
    }
}

impl Outbox {
    /// An empty outbox; `seed` drives the jitter.
    pub fn new(policy: RetryPolicy, seed: u64) -> Self {
        Self {
            policy,
            entries: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            next_id: 1,
            rng: SplitMix64::new(seed),
            stats: OutboxStats::default(),
        }
    }

    /// Re-adds an entry read back from the store after a restart.
    pub fn restore(&mut self, entry: OutboxEntry) {
        self.next_id = self.next_id.max(entry.id.saturating_add(1));
        self.entries.insert(entry.id, entry);
    }

    /// Makes sure new ids start above `id` (ids of delivered entries are never reused).
    pub fn reserve_ids_through(&mut self, id: u64) {
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    /// Adds a new notification, due now. Persist the returned entry before polling.
    pub fn push(&mut self, now_ms: i64, notification: Notification) -> OutboxEntry {
        let entry = OutboxEntry {
            id: self.next_id,
            notification,
            attempts: 0,
            next_at_ms: now_ms,
            last_error: None,
        };
        self.next_id += 1;
        self.entries.insert(entry.id, entry.clone());
        entry
    }

    /// Drops an entry that could not be persisted (it was never sent).
    pub fn forget(&mut self, id: u64) {
        self.entries.remove(&id);
        self.in_flight.remove(&id);
    }

    /// The next entry to send now, marked in flight: due, not in flight, and the oldest of its
    /// (incident, receiver) pair.
    pub fn poll_due(&mut self, now_ms: i64) -> Option<OutboxEntry> {
        let mut blocked: BTreeSet<(&str, &str)> = BTreeSet::new();
        let mut found = None;
        for e in self.entries.values() {
            let pair = (
                e.notification.incident_id.as_str(),
                e.notification.receiver.as_str(),
            );
            if blocked.contains(&pair) {
                continue;
            }
            blocked.insert(pair);
            if !self.in_flight.contains(&e.id) && e.next_at_ms <= now_ms {
                found = Some(e.id);
                break;
            }
        }
        let id = found?;
        self.in_flight.insert(id);
        self.entries.get(&id).cloned()
    }

    /// Applies an attempt's outcome.
    pub fn handle_result(
        &mut self,
        now_ms: i64,
        id: u64,
        outcome: AttemptOutcome,
    ) -> Option<Disposition> {
        self.in_flight.remove(&id);
        let mut entry = self.entries.remove(&id)?;
        entry.attempts = entry.attempts.saturating_add(1);
        match outcome {
            AttemptOutcome::Delivered => {
                self.stats.delivered += 1;
                entry.last_error = None;
                Some(Disposition::Delivered(entry))
            }
            AttemptOutcome::Failed {
                retryable,
                retry_after_ms,
                error,
            } => {
                entry.last_error = Some(error);
                let age = now_ms.saturating_sub(entry.notification.created_at_ms);
                if !retryable
                    || entry.attempts >= self.policy.max_attempts
                    || age >= self.policy.max_age_ms
                {
                    self.stats.gave_up += 1;
                    return Some(Disposition::GaveUp(entry));
                }
                let backoff = self.policy.backoff_ms(entry.attempts, &mut self.rng);
                let honoured = retry_after_ms
                    .unwrap_or(0)
                    .clamp(0, self.policy.max_backoff_ms);
                entry.next_at_ms = now_ms.saturating_add(backoff.max(honoured));
                self.stats.retries += 1;
                self.entries.insert(id, entry.clone());
                Some(Disposition::Retry(entry))
            }
        }
    }

    /// When the earliest waiting entry (not in flight) becomes due.
    /// Only the oldest entry of each (incident, receiver) pair counts.
    pub fn next_wakeup(&self) -> Option<i64> {
        let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
        self.entries
            .values()
            .filter(|e| {
                seen.insert((
                    e.notification.incident_id.as_str(),
                    e.notification.receiver.as_str(),
                ))
            })
            .filter(|e| !self.in_flight.contains(&e.id))
            .map(|e| e.next_at_ms)
            .min()
    }

    /// Pending entries, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &OutboxEntry> {
        self.entries.values()
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counters since start.
    pub fn stats(&self) -> OutboxStats {
        self.stats
    }
}
