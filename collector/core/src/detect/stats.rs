//! Exact small-count statistics for detection: Poisson tail probabilities in log space, so a
//! shop with three payments an hour is judged by the probability of what it saw, not by a
//! ratio over a threshold.

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, n = 9; relative error below 1e-13).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the approximation in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// `ln P(X >= k)` for `X ~ Poisson(lambda)`. Exact up to rounding for every `k` and `lambda`;
/// returns 0 for `k == 0` and `-inf` when `lambda == 0 < k`.
pub(crate) fn poisson_ln_sf(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 0.0;
    }
    if lambda <= 0.0 {
        return f64::NEG_INFINITY;
    }
    let kf = k as f64;
    let ln_pmf_k = -lambda + kf * lambda.ln() - ln_gamma(kf + 1.0);
    if kf > lambda {
        // P(X >= k) = pmf(k) * sum_n lambda^n / ((k+1)...(k+n)): terms shrink geometrically.
        let (mut term, mut sum) = (1.0_f64, 1.0_f64);
        let mut n = 1.0;
        while term > 1e-17 * sum && n < 10_000.0 {
            term *= lambda / (kf + n);
            sum += term;
            n += 1.0;
        }
        ln_pmf_k + sum.ln()
    } else {
        // The tail is at least about a half: 1 - P(X < k), the lower sum walked down from k-1.
        let (mut term, mut sum) = (1.0_f64, 0.0_f64);
        let mut j = kf - 1.0;
        // pmf(k-1) relative to pmf(k) is k / lambda.
        term *= kf / lambda;
        while j >= 0.0 && term > 1e-17 * sum.max(1e-300) {
            sum += term;
            term *= j / lambda;
            j -= 1.0;
        }
        let cdf = (ln_pmf_k + sum.ln()).exp();
        (1.0 - cdf).max(1e-300).ln()
    }
}

/// Significance of `observed` events against `expected` in `-log10 p` units (0 when the count
/// is not above expectation).
pub(crate) fn surprise(observed: f64, expected: f64) -> f64 {
    // Counts are whole numbers; rounding guards float sums.
    let k = observed.round().max(0.0) as u64;
    if (k as f64) <= expected {
        return 0.0;
    }
    -poisson_ln_sf(k, expected.max(1e-12)) / std::f64::consts::LN_10
}

/// `x ln x` with `0 ln 0 = 0`.
pub(crate) fn xlnx(x: f64) -> f64 {
    if x <= 0.0 { 0.0 } else { x * x.ln() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_matches_factorials() {
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-10);
        assert!((ln_gamma(11.0) - 3_628_800f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn poisson_tail_is_exact() {
        // P(X >= 1 | 1) = 1 - e^-1.
        assert!((poisson_ln_sf(1, 1.0).exp() - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        // P(X >= 3 | 0.5) = 1 - e^-0.5 (1 + 0.5 + 0.125).
        let want = 1.0 - (-0.5f64).exp() * 1.625;
        assert!((poisson_ln_sf(3, 0.5).exp() - want).abs() < 1e-12);
        // P(X >= 2 | 10) is almost 1.
        assert!(poisson_ln_sf(2, 10.0).exp() > 0.999);
        assert!(poisson_ln_sf(40, 10.0) < -20.0);
        assert_eq!(poisson_ln_sf(0, 3.0), 0.0);
    }

    #[test]
    fn surprise_is_zero_at_or_below_expectation() {
        assert_eq!(surprise(2.0, 3.0), 0.0);
        assert!(surprise(3.0, 0.001) > 8.0);
    }
}

/// `-log10 P(X <= k)` for `X ~ Poisson(lambda)`, for `k` below the mean (a lower tail: fewer
/// events than expected). Summed in log space from `k` down; 0 when `k >= lambda`.
pub(crate) fn deficit(k: u64, lambda: f64) -> f64 {
    let kf = k as f64;
    if lambda <= 0.0 || kf >= lambda {
        return 0.0;
    }
    // pmf(j-1) / pmf(j) = j / lambda < 1 below the mean: terms shrink walking down from k.
    let ln_pmf_k = -lambda + kf * lambda.ln() - ln_gamma(kf + 1.0);
    let (mut term, mut sum) = (1.0_f64, 1.0_f64);
    let mut j = kf;
    while j >= 1.0 && term > 1e-17 * sum {
        term *= j / lambda;
        sum += term;
        j -= 1.0;
    }
    -(ln_pmf_k + sum.ln()) / std::f64::consts::LN_10
}

#[cfg(test)]
mod deficit_tests {
    use super::deficit;

    #[test]
    fn lower_tail_matches_closed_forms() {
        // P(X = 0 | 60) = e^-60: 26.06 in -log10.
        assert!((deficit(0, 60.0) - 60.0 / std::f64::consts::LN_10).abs() < 1e-9);
        // P(X <= 2 | 30) = e^-30 (1 + 30 + 450).
        let p: f64 = (-30.0f64).exp() * 481.0;
        assert!((deficit(2, 30.0) + p.log10()).abs() < 1e-9);
        assert_eq!(deficit(40, 30.0), 0.0);
    }
}
