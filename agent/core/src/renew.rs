//! When to renew the terminal certificate (PROTOCOL.md 5.5), as a sans-IO schedule.
//!
//! Times are wall-clock Unix milliseconds (a certificate's validity is wall-clock time), passed
//! in by the caller; randomness is a number in `[0, 1)` the caller draws from a seeded RNG.
//!
//! Call order: [`Renewal::new`] with the current certificate's validity; whenever a connection
//! that may renew (message set 2) is up, ask [`Renewal::poll_renew`] at [`Renewal::poll_timeout`];
//! when it says yes, send a `RenewRequest`, then report the answer with
//! [`Renewal::handle_renewed`] (new certificate stored), [`Renewal::handle_refused`], or
//! [`Renewal::handle_lost`] (the connection ended before an answer).

/// Share of the lifetime after which renewal starts (two thirds).
const RENEW_AT_NUM: i64 = 2;
const RENEW_AT_DEN: i64 = 3;
/// Largest random delay added to the renewal time, as a share of the lifetime (1 %).
const JITTER_DEN: f64 = 100.0;
/// First retry delay after a refusal without a hint, milliseconds.
const RETRY_MIN_MS: i64 = 60_000;
/// Longest retry delay after refusals, milliseconds.
const RETRY_MAX_MS: i64 = 3_600_000;
/// Retry delay after a connection was lost with a request in flight, milliseconds.
const RETRY_LOST_MS: i64 = 5_000;

/// The renewal schedule of one certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct Renewal {
    not_before_ms: i64,
    not_after_ms: i64,
    /// Earliest time of the next request.
    next_ms: i64,
    in_flight: bool,
    failures: u32,
}

impl Renewal {
    /// The schedule of a certificate valid from `not_before_ms` to `not_after_ms`: the first
    /// request goes at two thirds of its lifetime plus `jitter` (in `[0, 1)`) × 1 % of it.
    pub fn new(not_before_ms: i64, not_after_ms: i64, jitter: f64) -> Self {
        let lifetime = not_after_ms.saturating_sub(not_before_ms).max(0);
        let jitter = jitter.clamp(0.0, 1.0);
        // Lifetimes are far below 2^52 ms, so the float product is exact enough.
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let extra = (lifetime as f64 * jitter / JITTER_DEN) as i64;
        Self {
            not_before_ms,
            not_after_ms,
            next_ms: not_before_ms
                .saturating_add(lifetime / RENEW_AT_DEN * RENEW_AT_NUM)
                .saturating_add(extra),
            in_flight: false,
            failures: 0,
        }
    }

    /// When the current certificate expires, Unix ms.
    pub fn not_after_ms(&self) -> i64 {
        self.not_after_ms
    }

    /// When the current certificate became valid, Unix ms.
    pub fn not_before_ms(&self) -> i64 {
        self.not_before_ms
    }

    /// Whether a request is waiting for its answer.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// True if a `RenewRequest` should be sent now; the schedule then waits for its answer.
    pub fn poll_renew(&mut self, now_ms: i64) -> bool {
        if self.in_flight || now_ms < self.next_ms {
            return false;
        }
        self.in_flight = true;
        true
    }

    /// When [`Self::poll_renew`] may next say yes (`None` while a request is in flight).
    pub fn poll_timeout(&self) -> Option<i64> {
        (!self.in_flight).then_some(self.next_ms)
    }

    /// A new certificate was stored: schedule its renewal.
    pub fn handle_renewed(&mut self, not_before_ms: i64, not_after_ms: i64, jitter: f64) {
        *self = Self::new(not_before_ms, not_after_ms, jitter);
    }

    /// The collector refused; ask again after `retry_after_secs` (0: a backoff from one minute,
    /// doubling per refusal, up to an hour).
    pub fn handle_refused(&mut self, now_ms: i64, retry_after_secs: u32) {
        self.in_flight = false;
        self.failures = self.failures.saturating_add(1);
        let backoff = RETRY_MIN_MS
            .saturating_mul(1i64 << self.failures.saturating_sub(1).min(20))
            .min(RETRY_MAX_MS);
        let hint = i64::from(retry_after_secs).saturating_mul(1000);
        let wait = if hint > 0 { hint } else { backoff };
        self.next_ms = now_ms.saturating_add(wait);
    }

    /// The connection ended before an answer: ask again soon on the next connection.
    pub fn handle_lost(&mut self, now_ms: i64) {
        if self.in_flight {
            self.in_flight = false;
            self.next_ms = self.next_ms.max(now_ms.saturating_add(RETRY_LOST_MS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn renews_at_two_thirds_plus_jitter() {
        let r = Renewal::new(0, 90 * DAY, 0.0);
        assert_eq!(r.poll_timeout(), Some(60 * DAY));
        let r = Renewal::new(0, 90 * DAY, 0.5);
        // Half of 1 % of 90 days: 10.8 hours.
        assert_eq!(r.poll_timeout(), Some(60 * DAY + 45 * DAY / 100));
        let r = Renewal::new(1000, 1000 + 30_000, 0.999);
        assert!(
            r.poll_timeout()
                .is_some_and(|t| (21_000..21_300).contains(&t))
        );
    }

    #[test]
    fn one_request_at_a_time_then_the_new_certificate() {
        let mut r = Renewal::new(0, 3000, 0.0);
        assert!(!r.poll_renew(1999));
        assert!(r.poll_renew(2000));
        assert!(r.in_flight());
        assert_eq!(r.poll_timeout(), None);
        assert!(!r.poll_renew(2500), "waits for the answer");
        r.handle_renewed(2600, 5600, 0.0);
        assert!(!r.in_flight());
        assert_eq!(r.poll_timeout(), Some(4600));
        assert_eq!(r.not_after_ms(), 5600);
    }

    #[test]
    fn refusals_back_off_or_follow_the_hint() {
        let mut r = Renewal::new(0, 90 * DAY, 0.0);
        let t = 60 * DAY;
        assert!(r.poll_renew(t));
        r.handle_refused(t, 0);
        assert_eq!(r.poll_timeout(), Some(t + 60_000));
        assert!(r.poll_renew(t + 60_000));
        r.handle_refused(t + 60_000, 0);
        assert_eq!(r.poll_timeout(), Some(t + 60_000 + 120_000));
        for _ in 0..10 {
            let at = r.poll_timeout().expect("scheduled");
            assert!(r.poll_renew(at));
            r.handle_refused(at, 0);
        }
        let at = r.poll_timeout().expect("scheduled");
        assert!(r.poll_renew(at));
        r.handle_refused(at, 0);
        assert_eq!(r.poll_timeout(), Some(at + 3_600_000), "capped at an hour");
        let at = at + 3_600_000;
        assert!(r.poll_renew(at));
        r.handle_refused(at, 7);
        assert_eq!(
            r.poll_timeout(),
            Some(at + 7000),
            "the collector's hint wins"
        );
    }

    #[test]
    fn a_lost_connection_retries_soon() {
        let mut r = Renewal::new(0, 3000, 0.0);
        r.handle_lost(100);
        assert_eq!(r.poll_timeout(), Some(2000), "nothing in flight: unchanged");
        assert!(r.poll_renew(2000));
        r.handle_lost(2100);
        assert_eq!(r.poll_timeout(), Some(7100));
    }
}
