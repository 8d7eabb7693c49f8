//! Token buckets for the collector's admission control and per-connection rate limit, as pure
//! logic: the caller passes the time (`now`), the bucket answers how long to wait.
//!
//! - [`TokenBucket`]: `rate` tokens per second, at most `burst` saved up. Taking more than is
//!   there leaves a debt; the answer is the time until the debt is paid back.
//! - [`RateLimit`]: one connection's limit on records/s and bytes/s. After each batch the shell
//!   asks [`RateLimit::after_batch`]; the verdict is to keep reading, to stop reading for a while
//!   (QUIC flow control then pushes back on the agent), or, for an agent that has been over its
//!   limit without a pause for too long, to send it away with a retry hint.

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, at most `burst` in store, full when created.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    /// May be negative: a debt to pay back before the next take passes.
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket. A `rate` of 0 means unlimited.
    pub fn new(rate_per_sec: u64, burst: u64) -> Self {
        let burst = burst.max(1) as f64;
        Self {
            rate: rate_per_sec as f64,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Whether the bucket limits anything.
    pub fn is_unlimited(&self) -> bool {
        self.rate <= 0.0
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }

    /// Takes `n` tokens whatever the balance; returns how long until the balance is back at
    /// zero (zero when it never went below).
    pub fn take(&mut self, now: Instant, n: u64) -> Duration {
        if self.is_unlimited() {
            return Duration::ZERO;
        }
        self.refill(now);
        self.tokens -= n as f64;
        self.debt_duration()
    }

    /// Takes one token if there is one; otherwise takes nothing and returns how long until
    /// there will be one.
    pub fn try_take_one(&mut self, now: Instant) -> Result<(), Duration> {
        if self.is_unlimited() {
            return Ok(());
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    fn debt_duration(&self) -> Duration {
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Per-connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Records per second (0: unlimited).
    pub records_per_sec: u64,
    /// Frame bytes per second (0: unlimited).
    pub bytes_per_sec: u64,
    /// How many seconds of the rate may be sent at once.
    pub burst_secs: u64,
    /// An agent over its limit at every batch for this long is sent away (0: never).
    pub disconnect_after: Duration,
}

/// What the shell does after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: keep reading.
    Pass,
    /// Over the limit: read nothing more from this connection for this long.
    Delay(Duration),
    /// Over the limit for too long: send a `Goodbye` (RateLimited) asking the agent to stay
    /// away at least this many seconds, then close with RATE_LIMITED.
    Refuse {
        /// `Goodbye.retry_after_secs`.
        retry_after_secs: u32,
    },
}

/// One connection's limit on records/s and bytes/s.
#[derive(Debug, Clone)]
pub struct RateLimit {
    config: RateLimitConfig,
    records: TokenBucket,
    bytes: TokenBucket,
    /// When the current unbroken run of over-limit batches began.
    over_since: Option<Instant>,
}

impl RateLimit {
    /// A fresh limit with full buckets.
    pub fn new(config: RateLimitConfig) -> Self {
        let burst = config.burst_secs.max(1);
        Self {
            config,
            records: TokenBucket::new(
                config.records_per_sec,
                config.records_per_sec.saturating_mul(burst),
            ),
            bytes: TokenBucket::new(
                config.bytes_per_sec,
                config.bytes_per_sec.saturating_mul(burst),
            ),
            over_since: None,
        }
    }

    /// Accounts a batch of `records` records in `bytes` frame bytes received at `now`.
    pub fn after_batch(&mut self, now: Instant, records: u64, bytes: u64) -> Verdict {
        let wait = self
            .records
            .take(now, records)
            .max(self.bytes.take(now, bytes));
        if wait.is_zero() {
            self.over_since = None;
            return Verdict::Pass;
        }
        let since = *self.over_since.get_or_insert(now);
        let limit = self.config.disconnect_after;
        if !limit.is_zero() && now.saturating_duration_since(since) >= limit {
            self.over_since = None;
            let secs = wait.as_secs_f64().ceil().max(1.0);
            return Verdict::Refuse {
                retry_after_secs: secs.min(f64::from(u32::MAX)) as u32,
            };
        }
        Verdict::Delay(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bucket_starts_full_and_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 50);
        assert_eq!(b.take(t0, 50), Duration::ZERO, "the burst passes");
        // 10 more: a debt of 10 tokens = 100 ms at 100/s.
        assert_eq!(b.take(t0, 10), ms(100));
        // 100 ms later the debt is paid; 500 ms later the bucket holds 40, capped at 50.
        assert_eq!(b.take(t0 + ms(600), 40), Duration::ZERO);
        assert_eq!(b.take(t0 + ms(600), 10), Duration::ZERO);
        assert!(b.take(t0 + ms(600), 1) > Duration::ZERO);
    }

    #[test]
    fn bucket_never_saves_more_than_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 20);
        b.take(t0, 20);
        // An hour idle still only saves 20.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.take(later, 20), Duration::ZERO);
        assert_eq!(b.take(later, 1), ms(100));
    }

    #[test]
    fn try_take_one_says_when_the_next_token_comes() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4, 2);
        assert!(b.try_take_one(t0).is_ok());
        assert!(b.try_take_one(t0).is_ok());
        assert_eq!(b.try_take_one(t0), Err(ms(250)));
        assert!(b.try_take_one(t0 + ms(250)).is_ok());
        assert!(b.try_take_one(t0 + ms(250)).is_err());
    }

    #[test]
    fn time_going_backwards_does_not_mint_tokens() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(10, 10);
        b.take(t0, 10);
        assert!(b.take(t0 - Duration::from_secs(5), 1) > Duration::ZERO);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 0);
        assert_eq!(b.take(t0, u64::MAX / 2), Duration::ZERO);
        assert!(b.try_take_one(t0).is_ok());
    }

    fn cfg(disconnect_after_secs: u64) -> RateLimitConfig {
        RateLimitConfig {
            records_per_sec: 1000,
            bytes_per_sec: 100_000,
            burst_secs: 1,
            disconnect_after: Duration::from_secs(disconnect_after_secs),
        }
    }

    #[test]
    fn an_agent_within_its_limit_always_passes() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(cfg(5));
        // 500 records/s in batches of 50 every 100 ms, for a minute.
        for i in 0..600 {
            assert_eq!(r.after_batch(t0 + ms(100 * i), 50, 2_000), Verdict::Pass);
        }
    }

    #[test]
    fn a_flood_is_delayed_by_its_excess() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(cfg(0));
        assert_eq!(r.after_batch(t0, 1000, 10), Verdict::Pass, "burst");
        // 500 records over: half a second at 1000/s.
        assert_eq!(r.after_batch(t0, 500, 10), Verdict::Delay(ms(500)));
        // Bytes can be the binding limit too: 150 KB over a 100 KB/s limit.
        let mut r = RateLimit::new(cfg(0));
        assert_eq!(r.after_batch(t0, 1, 250_000), Verdict::Delay(ms(1500)));
    }

    #[test]
    fn a_flood_that_keeps_on_is_sent_away_with_a_hint_and_a_pause_resets() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(cfg(5));
        let mut now = t0;
        let mut refused = None;
        // The flooder sends 1000 records every time the delay ends: twice its limit.
        for _ in 0..100 {
            match r.after_batch(now, 2000, 10) {
                Verdict::Pass => {}
                Verdict::Delay(d) => now += d,
                Verdict::Refuse { retry_after_secs } => {
                    refused = Some((now, retry_after_secs));
                    break;
                }
            }
        }
        let (at, secs) = refused.expect("refused eventually");
        assert!(at >= t0 + Duration::from_secs(5), "not before the limit");
        assert!(
            at <= t0 + Duration::from_secs(8),
            "soon after it: {:?}",
            at - t0
        );
        assert!(secs >= 1);

        // An agent over its limit now and then, with pauses, is never sent away.
        let mut r = RateLimit::new(cfg(5));
        let mut now = t0;
        for _ in 0..100 {
            match r.after_batch(now, 1500, 10) {
                Verdict::Refuse { .. } => panic!("sent away despite pausing"),
                Verdict::Delay(d) => now += d,
                Verdict::Pass => {}
            }
            now += Duration::from_secs(2);
            assert_eq!(r.after_batch(now, 1, 1), Verdict::Pass);
        }
    }
}
