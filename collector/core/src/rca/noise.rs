//! The noise model: a leaf's observed value scatters around its expectation `p` with variance
//! `p + alpha * p^2` (negative-binomial, "NB2"), Poisson for small counts, a constant relative
//! error for large ones. `alpha` is estimated from the data on every call, robustly.

/// Median of the chi-square distribution with one degree of freedom: the median of a squared
/// standard normal residual.
const CHI2_1_MEDIAN: f64 = 0.454_936_423_119_572_7;

/// Fewest leaves the dispersion is estimated from; below that `alpha` is 0 (pure Poisson).
const MIN_LEAVES: usize = 10;

/// The variance of a leaf with expectation `p` under dispersion `alpha`.
pub(crate) fn variance(p: f64, alpha: f64) -> f64 {
    p + alpha * p * p
}

/// Estimates the dispersion `alpha` of the NB2 model from the largest leaves.
///
/// Only the largest leaves carry information about the relative part of the noise; below them
/// the Poisson part dominates. `alpha` is chosen so that the median squared standardised
/// residual of the leaves where the relative part dominates is the chi-square median: a
/// median, so the anomalous leaves (a minority) do not inflate it.
pub(crate) fn dispersion(observed: &[f64], expected: &[f64]) -> f64 {
    let mut leaves: Vec<(f64, f64)> = expected
        .iter()
        .zip(observed)
        .filter(|(p, _)| **p > 0.0)
        .map(|(&p, &r)| (p, (r - p) * (r - p)))
        .collect();
    if leaves.len() < MIN_LEAVES {
        return 0.0;
    }
    leaves.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    // First fit on the top 2 %; then refit on the leaves where the relative term dominates
    // under the current fit (alpha p >= 1), at least 30 of them, until that set settles.
    let mut top = (leaves.len() / 50).max(MIN_FIT).min(leaves.len());
    let mut alpha = fit(&leaves[..top]);
    for _ in 0..4 {
        let dominated = leaves.partition_point(|&(p, _)| alpha * p >= 1.0);
        let next = dominated.max(MIN_FIT).min(leaves.len());
        if next == top {
            break;
        }
        top = next;
        alpha = fit(&leaves[..top]);
    }
    alpha
}

/// Fewest leaves a dispersion fit uses.
const MIN_FIT: usize = 30;

/// The `alpha` that makes the median squared standardised residual of `leaves` (pairs of
/// expectation and squared residual) the chi-square median; 0 if Poisson noise already
/// accounts for it.
fn fit(leaves: &[(f64, f64)]) -> f64 {
    let mut scratch = Vec::with_capacity(leaves.len());
    let mut median_z2 = |alpha: f64| {
        scratch.clear();
        scratch.extend(leaves.iter().map(|&(p, e2)| e2 / variance(p, alpha)));
        let mid = scratch.len() / 2;
        let (_, m, _) = scratch.select_nth_unstable_by(mid, f64::total_cmp);
        *m
    };
    if median_z2(0.0) <= CHI2_1_MEDIAN {
        return 0.0;
    }
    // The median is decreasing in alpha: bracket, then bisect on a log scale.
    let mut lo = 0.0_f64;
    let mut hi = 1e-6_f64;
    while median_z2(hi) > CHI2_1_MEDIAN {
        lo = hi;
        hi *= 10.0;
        if hi > 1e6 {
            return hi;
        }
    }
    for _ in 0..40 {
        let mid = if lo == 0.0 {
            hi / 2.0
        } else {
            (lo * hi).sqrt()
        };
        if median_z2(mid) > CHI2_1_MEDIAN {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_counts_give_no_extra_dispersion() {
        // Residuals well inside Poisson noise.
        let expected: Vec<f64> = (0..200).map(|i| 10.0 + f64::from(i)).collect();
        let observed: Vec<f64> = expected
            .iter()
            .enumerate()
            .map(|(i, p)| if i % 2 == 0 { p + 0.5 } else { p - 0.5 })
            .collect();
        assert_eq!(dispersion(&observed, &expected), 0.0);
    }

    #[test]
    fn relative_noise_is_recovered() {
        // 5 % relative error on large values: alpha near 0.05^2 / 0.455 * median factor.
        let expected: Vec<f64> = (0..400).map(|i| 1e5 + f64::from(i)).collect();
        let observed: Vec<f64> = expected
            .iter()
            .enumerate()
            .map(|(i, p)| p * (1.0 + 0.05 * (f64::from(i as u32 % 7) - 3.0) / 3.0))
            .collect();
        let alpha = dispersion(&observed, &expected);
        assert!(alpha > 1e-4 && alpha < 1e-2, "alpha {alpha}");
    }
}
