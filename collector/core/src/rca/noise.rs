//! The noise model: how far a normal leaf's observed value strays from its expectation.
//!
//! A leaf's residual `r - p` is judged on the leaf's own scale `m = (max(r, 0) + p) / 2` (the
//! midpoint of observed and expected, so a leaf forecast at 0 that saw traffic, and a leaf
//! forecast at 100 that saw none, are on the same footing), with variance
//! `v(m) = gamma + beta m + alpha m^2`: an absolute part (`gamma`, a measurement offset), a
//! count-like part (`beta`, Poisson for counts) and a relative part (`alpha`, a constant
//! relative forecast error). Both are estimated on every call from
//! the forecast error seen on the leaves themselves, robustly (medians over leaves grouped by
//! size), so the anomalous leaves, a minority, do not inflate them. Nothing is assumed about
//! the unit: the same model fits failure counts, where `beta` comes out near 1, and amounts
//! with a purely relative error, where it comes out near 0 and a small leaf is judged relative
//! to its own size, not to the total.

/// Median of the chi-square distribution with one degree of freedom: the median of a squared
/// standard normal residual.
const CHI2_1_MEDIAN: f64 = 0.454_936_423_119_572_7;

/// Fewest leaves the noise is estimated from at all.
const MIN_LEAVES: usize = 10;

/// Fewest leaves in one size group of the fit.
const MIN_GROUP: usize = 40;

/// Most size groups of the fit.
const MAX_GROUPS: usize = 24;

/// The fitted variance function `v(m) = gamma + beta m + alpha m^2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseModel {
    /// Absolute part: variance every leaf has whatever its size (a measurement offset).
    pub gamma: f64,
    /// Count-like part: variance per unit of the leaf's scale (1 for Poisson counts).
    pub beta: f64,
    /// Relative part: squared relative forecast error of large leaves.
    pub alpha: f64,
}

impl NoiseModel {
    /// The variance of a leaf on scale `m`, never zero for a leaf with `m > 0`.
    pub(crate) fn variance(&self, m: f64) -> f64 {
        let v = self.gamma + self.beta * m + self.alpha * m * m;
        // A floor a millionth of the leaf's own scale squared: a leaf forecast exactly right
        // everywhere else still has finite weight.
        v.max(1e-12 * m * m).max(f64::MIN_POSITIVE)
    }

    /// Fits the model to leaves given as `(m, residual)` pairs with `m > 0`. `poisson_floor`
    /// keeps `beta` at least 1 (the measure counts events, so its variance is at least
    /// Poisson). With fewer than 80 leaves only the relative part is fitted (a median over
    /// leaves); with fewer than 10 nothing is: counts are Poisson and other measures get a
    /// 10 % relative error.
    pub(crate) fn fit(leaves: &mut [(f64, f64)], poisson_floor: bool) -> Self {
        let floor = if poisson_floor { 1.0 } else { 0.0 };
        if leaves.len() < MIN_LEAVES {
            // Too few leaves to tell noise from the anomaly: counts are Poisson, other
            // measures get a 10 % relative error.
            return Self {
                gamma: 0.0,
                beta: floor,
                alpha: if poisson_floor { 0.0 } else { 0.01 },
            };
        }
        if leaves.len() < 2 * MIN_GROUP {
            return if poisson_floor {
                Self {
                    gamma: 0.0,
                    beta: 1.0,
                    alpha: robust_alpha(leaves, 1.0),
                }
            } else {
                Self {
                    gamma: 0.0,
                    beta: 0.0,
                    alpha: robust_alpha(leaves, 0.0).max(1e-4),
                }
            };
        }
        leaves.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let groups = (leaves.len() / MIN_GROUP).clamp(2, MAX_GROUPS);
        // Per size group: median scale, robust variance (median squared residual over the
        // chi-square median).
        let mut pts: Vec<(f64, f64)> = Vec::with_capacity(groups);
        let mut scratch = Vec::new();
        for g in 0..groups {
            let lo = g * leaves.len() / groups;
            let hi = (g + 1) * leaves.len() / groups;
            let chunk = &leaves[lo..hi];
            let m = chunk[chunk.len() / 2].0;
            scratch.clear();
            scratch.extend(chunk.iter().map(|&(_, e)| e * e));
            let mid = scratch.len() / 2;
            let (_, med, _) = scratch.select_nth_unstable_by(mid, f64::total_cmp);
            let v = *med / CHI2_1_MEDIAN;
            if m > 0.0 && v > 0.0 {
                pts.push((m, v));
            }
        }
        let (gamma, beta, alpha) = fit_points(&pts);
        Self {
            gamma,
            beta: beta.max(floor),
            alpha,
        }
    }
}

/// Least squares of `gamma + beta m + alpha m^2` against the group variances in relative
/// terms (every group counts alike whatever its scale), every part non-negative: the best of
/// the fits on each subset of the three parts whose coefficients all come out non-negative.
fn fit_points(pts: &[(f64, f64)]) -> (f64, f64, f64) {
    if pts.is_empty() {
        return (0.0, 0.0, 1e-4);
    }
    // Rows x = (1 / v, m / v, m^2 / v), target 1.
    let rows: Vec<[f64; 3]> = pts
        .iter()
        .map(|&(m, v)| [1.0 / v, m / v, m * m / v])
        .collect();
    let sse = |c: &[f64; 3]| -> f64 {
        rows.iter()
            .map(|x| {
                let d = c[0] * x[0] + c[1] * x[1] + c[2] * x[2] - 1.0;
                d * d
            })
            .sum()
    };
    let mut best: Option<([f64; 3], f64)> = None;
    for subset in 1u8..8 {
        let idx: Vec<usize> = (0..3).filter(|i| subset & (1 << i) != 0).collect();
        let k = idx.len();
        // Normal equations of the subset.
        let mut a = [[0.0f64; 4]; 3];
        for x in &rows {
            for (r, &i) in idx.iter().enumerate() {
                for (c, &j) in idx.iter().enumerate() {
                    a[r][c] += x[i] * x[j];
                }
                a[r][k] += x[i];
            }
        }
        let Some(sol) = solve(&mut a, k) else {
            continue;
        };
        if sol[..k].iter().any(|&v| v < 0.0 || !v.is_finite()) {
            continue;
        }
        let mut c = [0.0; 3];
        for (r, &i) in idx.iter().enumerate() {
            c[i] = sol[r];
        }
        let e = sse(&c);
        if best.is_none_or(|(_, be)| e < be) {
            best = Some((c, e));
        }
    }
    best.map_or((0.0, 0.0, 1e-4), |(c, _)| (c[0], c[1], c[2]))
}

/// Gaussian elimination with partial pivoting on a `k x (k + 1)` augmented system.
fn solve(a: &mut [[f64; 4]; 3], k: usize) -> Option<[f64; 3]> {
    for col in 0..k {
        let pivot = (col..k).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        for r in 0..k {
            if r != col {
                let f = a[r][col] / a[col][col];
                let pivot_row = a[col];
                for (x, p) in a[r].iter_mut().zip(pivot_row).skip(col).take(k + 1 - col) {
                    *x -= f * p;
                }
            }
        }
    }
    let mut out = [0.0; 3];
    for (i, o) in out.iter_mut().enumerate().take(k) {
        *o = a[i][k] / a[i][i];
    }
    Some(out)
}

/// The relative part alone, given `beta`, from the median standardised residual of all
/// leaves (few leaves: no size groups).
fn robust_alpha(leaves: &[(f64, f64)], beta: f64) -> f64 {
    if leaves.is_empty() {
        return 0.0;
    }
    // Per leaf, the alpha that would make its squared residual typical; the median of those.
    let mut need: Vec<f64> = leaves
        .iter()
        .map(|&(m, e)| ((e * e / CHI2_1_MEDIAN - beta * m) / (m * m)).max(0.0))
        .collect();
    let mid = need.len() / 2;
    let (_, med, _) = need.select_nth_unstable_by(mid, f64::total_cmp);
    *med
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-normal deviates (sum of 12 uniforms from an LCG, minus 6).
    fn normals(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                (0..12)
                    .map(|_| {
                        s = s
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        (s >> 11) as f64 / (1u64 << 53) as f64
                    })
                    .sum::<f64>()
                    - 6.0
            })
            .collect()
    }

    #[test]
    fn poisson_like_noise_gives_beta_near_one() {
        let z = normals(4000, 1);
        let mut leaves: Vec<(f64, f64)> = z
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let m = 1.0 + (i % 200) as f64;
                (m, z * m.sqrt())
            })
            .collect();
        let model = NoiseModel::fit(&mut leaves, false);
        assert!((model.beta - 1.0).abs() < 0.25, "{model:?}");
        assert!(model.alpha < 2e-3, "{model:?}");
    }

    #[test]
    fn relative_noise_gives_alpha_and_no_beta() {
        let z = normals(4000, 2);
        let mut leaves: Vec<(f64, f64)> = z
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let m = 0.01 * 1.01f64.powi((i % 900) as i32);
                (m, 0.1 * z * m)
            })
            .collect();
        let model = NoiseModel::fit(&mut leaves, false);
        assert!((model.alpha.sqrt() - 0.1).abs() < 0.02, "{model:?}");
        assert!(model.beta < 1e-3, "{model:?}");
        // With the Poisson floor a count measure keeps beta at 1.
        assert_eq!(NoiseModel::fit(&mut leaves, true).beta, 1.0);
    }

    #[test]
    fn anomalous_minority_does_not_inflate_the_fit() {
        let z = normals(4000, 3);
        let mut leaves: Vec<(f64, f64)> = z
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let m = 10.0 + (i % 97) as f64;
                let e = if i % 10 == 0 { -0.8 * m } else { 0.05 * z * m };
                (m, e)
            })
            .collect();
        let model = NoiseModel::fit(&mut leaves, false);
        let rel = (model.alpha + model.beta / 50.0).sqrt();
        assert!(rel < 0.08, "{model:?}");
    }
}
