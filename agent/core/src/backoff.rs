//! Reconnect backoff: full-jitter exponential, with a short random pause after losing an
//! established connection so a fleet does not reconnect in lockstep.
//!
//! After the n-th consecutive failed attempt (n from 0) the delay is
//! `uniform(0, min(max, initial * 2^n))`. After losing a connection that was up for at least
//! [`STABLE_CONNECTION`], the attempt counter resets and the delay is `uniform(0, initial)`; a
//! connection that dropped sooner counts as a failed attempt. A collector's
//! `Goodbye.retry_after_secs` is a floor on the delay; above the floor the agent adds
//! `uniform(0, floor / 2)`, so a fleet sent away with the same hint does not come back in one
//! instant. A handshake the collector refused (admission control) is a failed attempt like any
//! other: jittered and growing, never a tight loop.

use std::time::Duration;

use rand::Rng;
use rand::rngs::SmallRng;

/// A connection that lasted this long resets the backoff.
pub const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// Backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Base delay.
    pub initial: Duration,
    /// Cap on the exponential part.
    pub max: Duration,
}

/// Backoff state: consecutive failures so far.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new(config: BackoffConfig) -> Self {
        Self { config, attempt: 0 }
    }

    /// Consecutive failures so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The exponential cap for the current attempt: `min(max, initial * 2^attempt)`.
    pub fn cap(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.config
            .initial
            .saturating_mul(factor)
            .min(self.config.max.max(self.config.initial))
    }

    /// Delay before the next attempt after a failed one (connect, handshake, or a connection
    /// that did not last); counts the failure.
    pub fn after_failure(&mut self, rng: &mut SmallRng, retry_after: Option<Duration>) -> Duration {
        let delay = uniform(rng, self.cap());
        self.attempt = self.attempt.saturating_add(1);
        floor(rng, delay, retry_after)
    }

    /// Delay after losing a connection that was up for `uptime`.
    pub fn after_loss(
        &mut self,
        rng: &mut SmallRng,
        uptime: Duration,
        retry_after: Option<Duration>,
    ) -> Duration {
        if uptime < STABLE_CONNECTION {
            return self.after_failure(rng, retry_after);
        }
        self.attempt = 0;
        let delay = uniform(rng, self.config.initial);
        floor(rng, delay, retry_after)
    }
}

fn uniform(rng: &mut SmallRng, cap: Duration) -> Duration {
    let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=cap_ms))
}

/// At least `retry_after` (plus up to half of it again, at random) when there is one.
fn floor(rng: &mut SmallRng, delay: Duration, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(f) if !f.is_zero() => delay.max(f + uniform(rng, f / 2)),
        _ => delay,
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn cfg() -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(1000),
            max: Duration::from_secs(60),
        }
    }

    #[test]
    fn failures_grow_the_cap_up_to_max() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut b = Backoff::new(cfg());
        for n in 0..40u32 {
            let cap = b.cap();
            let expected = Duration::from_millis(1000u64.saturating_mul(1u64 << n.min(20)))
                .min(Duration::from_secs(60));
            assert_eq!(cap, expected, "attempt {n}");
            let d = b.after_failure(&mut rng, None);
            assert!(d <= cap);
        }
    }

    #[test]
    fn loss_of_a_stable_connection_waits_at_most_initial_and_resets() {
        let mut rng = SmallRng::seed_from_u64(2);
        let mut b = Backoff::new(cfg());
        for _ in 0..5 {
            b.after_failure(&mut rng, None);
        }
        for _ in 0..100 {
            let d = b.after_loss(&mut rng, Duration::from_secs(60), None);
            assert!(d <= Duration::from_millis(1000));
            assert_eq!(b.attempt(), 0);
        }
        b.after_loss(&mut rng, Duration::from_secs(1), None);
        assert_eq!(
            b.attempt(),
            1,
            "a short-lived connection counts as a failure"
        );
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut b = Backoff::new(cfg());
        let d = b.after_failure(&mut rng, Some(Duration::from_secs(30)));
        assert!(d >= Duration::from_secs(30));
        assert!(d <= Duration::from_secs(45));
    }

    #[test]
    fn agents_sent_away_with_one_hint_come_back_spread_out() {
        // 1,000 agents told "come back in 20 s" by an overloaded collector.
        let ds: Vec<Duration> = (0..1000u64)
            .map(|seed| {
                let mut rng = SmallRng::seed_from_u64(seed);
                Backoff::new(cfg()).after_failure(&mut rng, Some(Duration::from_secs(20)))
            })
            .collect();
        assert!(ds.iter().all(|d| *d >= Duration::from_secs(20)));
        assert!(ds.iter().all(|d| *d <= Duration::from_secs(30)));
        // No second of that window takes more than a fifth of them.
        let mut per_sec = [0usize; 11];
        for d in &ds {
            per_sec[(d.as_secs() - 20) as usize] += 1;
        }
        assert!(per_sec.iter().all(|n| *n < 200), "{per_sec:?}");
    }

    #[test]
    fn refused_handshakes_back_off_with_jitter_not_in_a_tight_loop() {
        // A collector refusing every handshake: ten failures in a row wait about a minute in
        // total, and two agents do not retry in step.
        let mut a = (SmallRng::seed_from_u64(5), Backoff::new(cfg()));
        let mut b = (SmallRng::seed_from_u64(6), Backoff::new(cfg()));
        let mut total = Duration::ZERO;
        let mut same = 0;
        for _ in 0..10 {
            let da = a.1.after_failure(&mut a.0, None);
            let db = b.1.after_failure(&mut b.0, None);
            total += da;
            if da == db {
                same += 1;
            }
        }
        assert!(total >= Duration::from_secs(30), "{total:?}");
        assert!(same < 2);
    }

    #[test]
    fn delays_are_spread() {
        let mut rng = SmallRng::seed_from_u64(4);
        let mut b = Backoff::new(cfg());
        let ds: Vec<_> = (0..50)
            .map(|_| b.after_loss(&mut rng, Duration::from_secs(60), None))
            .collect();
        let min = ds.iter().min().copied().unwrap_or_default();
        let max = ds.iter().max().copied().unwrap_or_default();
        assert!(
            max - min > Duration::from_millis(500),
            "jitter spreads delays: {ds:?}"
        );
    }
}
