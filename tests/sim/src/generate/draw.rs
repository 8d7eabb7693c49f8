//! The generator's own random draws: SplitMix64, so a seed gives the same scenario whatever
//! version of `rand` the workspace uses.

/// A seeded stream of draws.
#[derive(Debug, Clone)]
pub(super) struct Draw {
    state: u64,
}

impl Draw {
    pub(super) fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x6745_4E45_5241_5445,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(super) fn unit(&mut self) -> f64 {
        // The top 53 bits as a fraction: exact in f64.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub(super) fn int(&mut self, lo: u32, hi: u32) -> u32 {
        if hi <= lo {
            return lo;
        }
        let span = u64::from(hi - lo) + 1;
        // The remainder is below `span`, which fits in u32 plus one.
        lo + (self.next_u64() % span) as u32
    }

    /// Uniform in `[lo, hi)`.
    pub(super) fn float(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Log-uniform in `[lo, hi)`, `lo > 0`.
    pub(super) fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.unit()).exp()
    }

    /// One element of a non-empty slice.
    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let n = u32::try_from(items.len()).unwrap_or(u32::MAX).max(1);
        &items[(self.int(0, n - 1) as usize).min(items.len() - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_stable_and_in_range() {
        let mut a = Draw::new(7);
        let mut b = Draw::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Draw::new(1).next_u64(), Draw::new(2).next_u64());
        let mut d = Draw::new(3);
        for _ in 0..1000 {
            let x = d.int(5, 9);
            assert!((5..=9).contains(&x));
            let u = d.unit();
            assert!((0.0..1.0).contains(&u));
            let l = d.log_uniform(0.2, 3.0);
            assert!((0.2..3.0).contains(&l));
        }
    }
}
