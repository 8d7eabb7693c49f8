//! Network-quality bookkeeping: jitter from successive RTT samples and loss from cumulative
//! packet counters. Pure; the shell feeds in samples read from the QUIC connection.

/// Collects RTT samples between two network-quality reports.
#[derive(Debug, Clone, Default)]
pub struct RttTracker {
    /// Last sample of the previous report, so jitter spans report boundaries.
    carry: Option<f32>,
    samples: Vec<f32>,
}

/// Computes loss between reports from cumulative (lost, sent) packet counters of a connection.
#[derive(Debug, Clone, Default)]
pub struct LossTracker {
    last: Option<(u64, u64, u64)>,
}

/// Most samples kept between two reports.
const MAX_SAMPLES: usize = 256;

impl RttTracker {
    /// Records one RTT sample, milliseconds.
    pub fn push(&mut self, rtt_ms: f32) {
        if !rtt_ms.is_finite() || rtt_ms < 0.0 {
            return;
        }
        if self.samples.len() >= MAX_SAMPLES {
            self.samples.remove(0);
        }
        self.samples.push(rtt_ms);
    }

    /// Ends a report period: returns (latest RTT, jitter), where jitter is the mean absolute
    /// difference between successive samples (`None` with fewer than two samples).
    pub fn take(&mut self) -> (Option<f32>, Option<f32>) {
        let mut all: Vec<f32> = self.carry.into_iter().collect();
        all.append(&mut self.samples);
        let latest = all.last().copied();
        let jitter = if all.len() >= 2 {
            let sum: f32 = all.windows(2).map(|w| (w[1] - w[0]).abs()).sum();
            Some(sum / (all.len() - 1) as f32)
        } else {
            None
        };
        self.carry = latest;
        (latest, jitter)
    }

    /// Forgets the carried sample (the connection was lost).
    pub fn reset(&mut self) {
        self.carry = None;
        self.samples.clear();
    }
}

impl LossTracker {
    /// Loss in percent since the previous call for the same connection (or since the
    /// connection started), `None` if no packet was sent in between.
    pub fn sample(&mut self, connection_id: u64, lost: u64, sent: u64) -> Option<f32> {
        let (dl, ds) = match self.last {
            Some((id, l, s)) if id == connection_id && lost >= l && sent >= s => {
                (lost - l, sent - s)
            }
            _ => (lost, sent),
        };
        self.last = Some((connection_id, lost, sent));
        if ds == 0 {
            return None;
        }
        Some((dl as f32 / ds as f32 * 100.0).clamp(0.0, 100.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_mean_abs_difference_across_reports() {
        let mut t = RttTracker::default();
        assert_eq!(t.take(), (None, None));
        t.push(10.0);
        assert_eq!(t.take(), (Some(10.0), None));
        t.push(14.0);
        t.push(12.0);
        assert_eq!(t.take(), (Some(12.0), Some(3.0)));
    }

    #[test]
    fn loss_uses_deltas_per_connection() {
        let mut l = LossTracker::default();
        assert_eq!(l.sample(1, 1, 100), Some(1.0));
        assert_eq!(l.sample(1, 1, 100), None);
        assert_eq!(l.sample(1, 3, 110), Some(20.0));
        assert_eq!(l.sample(2, 0, 10), Some(0.0));
    }
}
