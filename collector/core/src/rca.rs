//! Multi-dimensional root-cause localisation: given leaves (full label combinations) of a KPI
//! with observed and expected values, find the few attribute=value combinations
//! (`{acquirer=A}`, `{carrier=X, region=R}`) that explain an anomaly.
//!
//! # Method
//!
//! **Noise.** Each leaf's observed value `r` is judged against its expectation `p` on the
//! leaf's own scale `m` (for an additive KPI the midpoint `(max(r, 0) + p) / 2`, so a leaf
//! forecast at zero that saw traffic counts too; for a ratio KPI the expected count `p`), with
//! variance `gamma + beta m + alpha m^2`: absolute, count-like and relative parts, all three
//! fitted on every call from the forecast error of the leaves themselves, robustly (medians
//! over leaves grouped by size; see `noise`). Nothing is assumed about the unit: for failure
//! counts `beta` comes out near 1 (and is kept at least 1 for a ratio KPI), for amounts with a
//! relative forecast error near 0, and then a small leaf is judged relative to its own size,
//! not to the total.
//!
//! **Scores.** A candidate root cause is an element of a cuboid (one value for each of a set of
//! attributes); the hypothesis "this element is the cause" is the ripple model of Squeeze and
//! RiskLoc: all its leaves move by the same relative amount, `r - p = delta m`. Fitting `delta`
//! by weighted least squares lowers the weighted squared error by
//! `gain = (sum w (r - p) m)^2 / sum w m^2` (`w = 1 / variance`), a score statistic in
//! chi-square units that needs two sums per element; every element of every cuboid is summed
//! once, and explaining a cause away subtracts its leaves from every cuboid's sums. For a ratio
//! KPI, upward deviations are scored no higher than the Poisson likelihood ratio allows.
//!
//! **Significance.** A candidate's score is `-2 ln` of the number of elements of its layer
//! expected to reach its gain by noise alone: chi-square with one degree of freedom over the
//! layer's `M_k` elements (`gain - 2 ln M_k`, the price of having looked at that many), and, on
//! the layer whose elements are single leaves, also the empirical tail of the gains of the other
//! leaves (most leaves are normal), extrapolated from two upper quantiles; the smaller score is
//! kept. So a one-leaf cause must stand out from the forecast error actually seen, which has
//! heavier tails than any variance model (a forecast 80 % off on a few leaves in ten thousand),
//! while a cause on a small leaf is still found when its own deviation is far outside that.
//! The best candidate is taken if its score is at least [`Params::min_score`] and it moves the
//! KPI by at least [`Params::min_relative_change`]; its leaves are explained away and the next
//! round starts, until nothing significant is left.
//!
//! **Succinctness.** After the search a cause becomes its parent (one attribute fewer) when the
//! rest of the parent moved with it: when its residuals sit closer to the cause's change than
//! to none, or, when several found causes are siblings under that parent, when the rest moved
//! the same way, significantly on its own or as the smaller part of the parent's weight. Real faults do not move every leaf by one factor, and
//! the greedy search would otherwise report their largest children one by one.
//!
//! **Bounds.** Causes may have any number of attributes and there may be any number of them.
//! The search is bounded by data and by [`Params::work_budget`] (leaf visits, the time budget
//! of a sans-IO core): a set of attributes that already names single leaves is not extended
//! (every deeper element would be the same leaf with more attributes); a layer is searched
//! whole only if it fits half the budget, and rounds stop when the budget is spent. Every bound
//! met is returned in [`Localization::limits`].
//!
//! Ratio KPIs (failures / attempts) are turned into counts judged against the baseline rate
//! times the observed attempts (see [`Cube`]), so traffic changes alone are not anomalies and
//! a rise of the rate in a small segment is found even when its failures are not more than
//! usual. An additive KPI may have negative observed values (counted, kept); a negative count
//! or forecast is an error.
//!
//! The method owes its ingredients to Squeeze (the ripple effect), RiskLoc (causes found one at
//! a time, their leaves explained away) and HotSpot (scoring how much of the anomaly an element
//! explains); unlike RiskLoc all layers compete in one ranking, and the statistic, the noise
//! model, the empirical null and the generalisation step are ours. Cost: one pass over the
//! informative leaves per cuboid, then per cause found a scan of the elements and the removal
//! of its leaves.

mod cube;
mod noise;
mod search;

pub use cube::{Cube, KpiKind, RATE_PRIOR_EVENTS, RatioSample};
pub use noise::NoiseModel;

/// Default [`Params::work_budget`]: 20 million leaf visits, a few tens of milliseconds on one
/// core of the test machine (a 48,000-leaf, 5-attribute cube needs 1.5 million to search every
/// depth).
pub const DEFAULT_WORK_BUDGET: u64 = 20_000_000;

/// What [`localize_detailed`] found, and where the search stopped short, if it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Localization {
    /// The root causes, best first.
    pub causes: Vec<RootCause>,
    /// The bounds the search met (empty: every depth searched, every significant cause taken).
    pub limits: Vec<Limit>,
    /// The noise model fitted to the leaves.
    pub noise: NoiseModel,
    /// Leaves whose observed value is negative (kept: an additive measure may dip below zero
    /// through forecast or measurement artefacts; only counts must not).
    pub negative_leaves: usize,
    /// Deepest layer (attributes per cause) searched.
    pub depth_searched: usize,
}

/// A bound that cut the search short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Deeper layers did not fit the work budget: causes were searched up to `searched`
    /// attributes of `attributes`.
    Depth {
        /// Deepest layer searched.
        searched: usize,
        /// Deepest layer wanted.
        attributes: usize,
    },
    /// The work budget ran out after `causes` causes; more may be significant.
    Budget {
        /// Causes found before it ran out.
        causes: usize,
    },
    /// The caller's [`Params::max_causes`] was reached.
    Causes {
        /// The cap.
        max: usize,
    },
}

/// Which anomalies to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Elements above or below their expectation.
    #[default]
    Both,
    /// Only elements above their expectation (more failures than expected).
    Increase,
    /// Only elements below their expectation (lost traffic).
    Decrease,
}

/// Parameters of [`localize`]. The defaults are meant for every dataset; there is no
/// per-dataset tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Largest number of attributes in one root cause a caller wants (`usize::MAX`, the
    /// default: no cap; the search still bounds itself by [`Params::work_budget`]).
    pub max_attributes: usize,
    /// Most root causes a caller wants (`usize::MAX`, the default: as many as the data
    /// supports, within [`Params::work_budget`]).
    pub max_causes: usize,
    /// The time budget, as work: how many leaf visits (one leaf added into one cuboid's sums)
    /// the search may spend. The depth searched and the rounds run follow from it and from
    /// the data; when it cuts the search short, [`Localization::limits`] says where.
    pub work_budget: u64,
    /// Least score a root cause needs: `-2 ln` of the number of elements of its layer expected
    /// to reach its gain by noise alone (10: about one in 150).
    pub min_score: f64,
    /// Least relative change of the KPI in a root cause, `|rho - 1|` with `rho` observed over
    /// expected in the leaves not yet explained (0.1 = 10 %).
    pub min_relative_change: f64,
    /// Which anomalies to look for.
    pub direction: Direction,
}

/// One attribute=value pair of a root cause, as ids of the [`Cube`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attribute {
    /// Attribute (dimension) index.
    pub dim: usize,
    /// Value id within the attribute.
    pub value: u32,
}

/// A localised root cause: a combination of attribute values and how strongly it explains the
/// anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct RootCause {
    /// The attribute=value pairs, in attribute order.
    pub attributes: Vec<Attribute>,
    /// Score: `-2 ln` of the number of elements of its layer expected to reach its gain by
    /// noise alone (see the module doc). Causes come out in the order they were found, which
    /// is descending score at the time (a cause generalised to its parent keeps the best score
    /// of the causes it absorbed).
    pub score: f64,
    /// Drop of the weighted squared error when this element gets its own factor (chi-square
    /// units).
    pub gain: f64,
    /// Factor `rho`: observed over expected in this element, all its leaves (0.2 = down 80 %;
    /// infinite when nothing was expected).
    pub ratio: f64,
    /// Observed total of the element (for a ratio KPI: the numerator).
    pub observed: f64,
    /// Expected total of the element (for a ratio KPI: baseline rate times observed
    /// denominator).
    pub expected: f64,
}

/// Why a cube cannot be localised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RcaError {
    /// A leaf has a different number of attribute values than the cube has attributes.
    #[error("leaf has {got} attribute values, the cube has {expected} attributes")]
    WrongArity {
        /// Attributes of the cube.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// An attribute index beyond the cube's attributes.
    #[error("unknown attribute {dim}")]
    UnknownDimension {
        /// The attribute index.
        dim: usize,
    },
    /// A value id that was never interned for its attribute.
    #[error("unknown value id {id} for attribute {dim}")]
    UnknownValue {
        /// The attribute index.
        dim: usize,
        /// The value id.
        id: u32,
    },
    /// More than 2^32 distinct values in one attribute.
    #[error("too many distinct values for attribute {dim}")]
    TooManyValues {
        /// The attribute index.
        dim: usize,
    },
    /// More than 2^32 leaves.
    #[error("too many leaves")]
    TooManyLeaves,
    /// A NaN or infinite measure.
    #[error("measure is not finite")]
    NonFinite,
    /// A negative count of a ratio KPI, or a negative forecast.
    #[error("measure is negative (a count or a forecast)")]
    Negative,
    /// A ratio leaf pushed into an additive cube or the other way round.
    #[error("leaf kind does not match the cube's KPI kind")]
    KindMismatch,
    /// Parameters out of range.
    #[error("invalid parameters: {0}")]
    InvalidParams(&'static str),
}

impl Default for Params {
    fn default() -> Self {
        Self {
            max_attributes: usize::MAX,
            max_causes: usize::MAX,
            work_budget: DEFAULT_WORK_BUDGET,
            min_score: 10.0,
            min_relative_change: 0.1,
            direction: Direction::Both,
        }
    }
}

impl RootCause {
    /// The cause as `(attribute name, value label)` pairs.
    pub fn labels<'a>(&self, cube: &'a Cube) -> Vec<(&'a str, &'a str)> {
        self.attributes
            .iter()
            .filter_map(|a| {
                Some((
                    cube.dimension_name(a.dim)?,
                    cube.value_label(a.dim, a.value)?,
                ))
            })
            .collect()
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Depth {
                searched,
                attributes,
            } => write!(
                f,
                "depth bound: causes searched up to {searched} of {attributes} attributes (work budget)"
            ),
            Self::Budget { causes } => {
                write!(f, "work budget spent after {causes} causes; more may exist")
            }
            Self::Causes { max } => write!(f, "cause cap {max} reached"),
        }
    }
}

/// Localises the root causes of the anomaly in `cube`. Returns them best first; empty when
/// nothing significant deviates. Pure: no IO, no clock, deterministic.
pub fn localize(cube: &Cube, params: &Params) -> Result<Vec<RootCause>, RcaError> {
    localize_detailed(cube, params).map(|l| l.causes)
}

/// [`localize`], with the bounds the search met and the fitted noise model.
pub fn localize_detailed(cube: &Cube, params: &Params) -> Result<Localization, RcaError> {
    if params.max_attributes == 0 {
        return Err(RcaError::InvalidParams("max_attributes must be at least 1"));
    }
    if !params.min_score.is_finite() || !params.min_relative_change.is_finite() {
        return Err(RcaError::InvalidParams("thresholds must be finite"));
    }
    if u32::try_from(cube.len()).is_err() {
        return Err(RcaError::TooManyLeaves);
    }
    if cube.is_empty() || cube.dimensions() == 0 {
        return Ok(Localization {
            causes: Vec::new(),
            limits: Vec::new(),
            noise: NoiseModel {
                gamma: 0.0,
                beta: 0.0,
                alpha: 0.0,
            },
            negative_leaves: 0,
            depth_searched: 0,
        });
    }
    Ok(search::run(cube, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: a tiny seeded generator, so the tests need no RNG crate.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Roughly normal: sum of 12 uniforms minus 6.
        fn normal(&mut self) -> f64 {
            (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
        }

        /// Poisson by inversion (small means only).
        fn poisson(&mut self, mean: f64) -> f64 {
            let (mut k, mut p, mut cdf) = (0.0, (-mean).exp(), 0.0);
            let u = self.unit();
            loop {
                cdf += p;
                if u < cdf || k > 1000.0 {
                    return k;
                }
                k += 1.0;
                p *= mean / k;
            }
        }
    }

    /// A cause as attribute=value pairs, and a cause with the factor it scales its leaves by.
    type Pairs<'a> = &'a [(&'a str, &'a str)];
    type Injected<'a> = (Pairs<'a>, f64);

    const NAMES: [&str; 4] = ["a", "b", "c", "d"];
    const CARD: [u32; 4] = [5, 8, 6, 4];

    /// Every leaf of the 5 x 8 x 6 x 4 cube with its labels.
    fn leaves() -> Vec<[String; 4]> {
        let mut out = Vec::new();
        for a in 0..CARD[0] {
            for b in 0..CARD[1] {
                for c in 0..CARD[2] {
                    for d in 0..CARD[3] {
                        out.push([
                            format!("a{a}"),
                            format!("b{b}"),
                            format!("c{c}"),
                            format!("d{d}"),
                        ]);
                    }
                }
            }
        }
        out
    }

    fn matches(labels: &[String; 4], cause: &[(&str, &str)]) -> bool {
        cause.iter().all(|(k, v)| {
            let dim = NAMES.iter().position(|n| n == k).expect("known attribute");
            labels[dim] == *v
        })
    }

    /// An additive cube: lognormal volumes, 2 % relative noise, and each `(cause, factor)`
    /// scaling its leaves.
    fn additive(seed: u64, causes: &[(&[(&str, &str)], f64)]) -> Cube {
        let mut rng = Rng(seed);
        let mut cube = Cube::new(&NAMES, KpiKind::Additive);
        for labels in leaves() {
            let predict = (4.0 + 1.5 * rng.normal()).exp().round();
            let mut real = predict * (1.0 + 0.02 * rng.normal());
            for (cause, factor) in causes {
                if matches(&labels, cause) {
                    real *= factor;
                }
            }
            cube.push_additive_labels(&labels, real.max(0.0), predict)
                .expect("valid leaf");
        }
        cube
    }

    fn found(cube: &Cube, params: &Params) -> Vec<Vec<(String, String)>> {
        let mut out: Vec<Vec<(String, String)>> = localize(cube, params)
            .expect("localize")
            .iter()
            .map(|c| {
                c.labels(cube)
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .collect();
        out.sort();
        out
    }

    fn expect(causes: &[&[(&str, &str)]]) -> Vec<Vec<(String, String)>> {
        let mut out: Vec<Vec<(String, String)>> = causes
            .iter()
            .map(|c| {
                c.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn no_anomaly_returns_nothing() {
        for seed in 0..5 {
            let cube = additive(seed, &[]);
            assert!(found(&cube, &Params::default()).is_empty(), "seed {seed}");
        }
    }

    #[test]
    fn single_cause_is_found_exactly() {
        let cause: &[(&str, &str)] = &[("b", "b3")];
        let cube = additive(1, &[(cause, 0.5)]);
        assert_eq!(found(&cube, &Params::default()), expect(&[cause]));
        let rc = &localize(&cube, &Params::default()).expect("localize")[0];
        assert!((rc.ratio - 0.5).abs() < 0.05, "ratio {}", rc.ratio);
        assert!(rc.observed < rc.expected);
    }

    #[test]
    fn two_causes_are_found() {
        let first: &[(&str, &str)] = &[("a", "a1")];
        let second: &[(&str, &str)] = &[("c", "c2")];
        let cube = additive(2, &[(first, 0.3), (second, 1.8)]);
        assert_eq!(found(&cube, &Params::default()), expect(&[first, second]));
    }

    #[test]
    fn two_attribute_cause_is_neither_parent_nor_child() {
        let cause: &[(&str, &str)] = &[("a", "a2"), ("d", "d1")];
        let cube = additive(3, &[(cause, 0.3)]);
        assert_eq!(found(&cube, &Params::default()), expect(&[cause]));
    }

    #[test]
    fn three_attribute_cause_in_low_volume_counts() {
        // Poisson counts around 3 per leaf: single leaves say little, the element does.
        let cause: &[(&str, &str)] = &[("a", "a0"), ("b", "b5"), ("c", "c3")];
        let mut rng = Rng(4);
        let mut cube = Cube::new(&NAMES, KpiKind::Additive);
        for labels in leaves() {
            let mean = 3.0;
            let real = if matches(&labels, cause) {
                rng.poisson(mean * 6.0)
            } else {
                rng.poisson(mean)
            };
            cube.push_additive_labels(&labels, real, mean)
                .expect("valid leaf");
        }
        assert_eq!(found(&cube, &Params::default()), expect(&[cause]));
    }

    #[test]
    fn ratio_kpi_finds_the_failure_rate_not_the_traffic() {
        // Attempts double in d=d0 (failures follow: not an anomaly); the failure rate is five
        // times the baseline in {b=b4, c=c1}. Low volume: a couple of failures per leaf.
        let cause: &[(&str, &str)] = &[("b", "b4"), ("c", "c1")];
        let mut rng = Rng(5);
        let mut cube = Cube::new(&NAMES, KpiKind::Ratio);
        for labels in leaves() {
            let den_predict = (4.0 + 0.8 * rng.normal()).exp().round().max(1.0);
            let traffic = if labels[3] == "d0" { 2.0 } else { 1.0 };
            let den_real = rng.poisson(den_predict * traffic);
            let base_rate = 0.03;
            let rate = if matches(&labels, cause) {
                base_rate * 5.0
            } else {
                base_rate
            };
            let num_real = rng.poisson(den_real * rate);
            let num_predict = rng.poisson(den_predict * base_rate);
            let sample = RatioSample {
                num_real,
                num_predict,
                den_real,
                den_predict,
            };
            cube.push_ratio_labels(&labels, sample).expect("valid leaf");
        }
        assert_eq!(found(&cube, &Params::default()), expect(&[cause]));
        let up = Params {
            direction: Direction::Increase,
            ..Params::default()
        };
        assert_eq!(found(&cube, &up), expect(&[cause]));
        let down = Params {
            direction: Direction::Decrease,
            ..Params::default()
        };
        assert!(found(&cube, &down).is_empty());
    }

    #[test]
    fn equivalent_causes_resolve_to_the_simplest() {
        // store determines merchant: {merchant=m1} and {merchant=m1, store=s2} cover the same
        // leaves when m1 has one store; the one-attribute cause must win.
        let mut cube = Cube::new(&["merchant", "store", "acquirer"], KpiKind::Additive);
        let mut rng = Rng(6);
        for m in 0..6 {
            let stores: Vec<u32> = if m == 1 {
                vec![2]
            } else {
                vec![m * 10, m * 10 + 1]
            };
            for s in stores {
                for acq in 0..3 {
                    let predict: f64 = 200.0;
                    let mut real = predict * (1.0 + 0.02 * rng.normal());
                    if m == 1 {
                        real *= 4.0;
                    }
                    let labels = [format!("m{m}"), format!("s{s}"), format!("A{acq}")];
                    cube.push_additive_labels(&labels, real, predict)
                        .expect("valid leaf");
                }
            }
        }
        let causes = localize(&cube, &Params::default()).expect("localize");
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].labels(&cube), vec![("merchant", "m1")]);
    }

    #[test]
    fn cube_rejects_bad_leaves() {
        let mut cube = Cube::new(&["a", "b"], KpiKind::Additive);
        assert_eq!(
            cube.push_additive_labels(&["x"], 1.0, 1.0),
            Err(RcaError::WrongArity {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            cube.push_additive_labels(&["x", "y"], 1.0, -1.0),
            Err(RcaError::Negative)
        );
        assert_eq!(
            cube.push_additive_labels(&["x", "y"], f64::NAN, 1.0),
            Err(RcaError::NonFinite)
        );
        assert_eq!(
            cube.push_additive(&[0, 7], 1.0, 1.0),
            Err(RcaError::UnknownValue { dim: 1, id: 7 })
        );
        let sample = RatioSample {
            num_real: 1.0,
            num_predict: 1.0,
            den_real: 1.0,
            den_predict: 1.0,
        };
        assert_eq!(
            cube.push_ratio_labels(&["x", "y"], sample),
            Err(RcaError::KindMismatch)
        );
        assert_eq!(
            cube.intern(5, "z"),
            Err(RcaError::UnknownDimension { dim: 5 })
        );
        assert!(
            localize(&cube, &Params::default())
                .expect("empty")
                .is_empty()
        );
        let bad = Params {
            max_attributes: 0,
            ..Params::default()
        };
        assert!(matches!(
            localize(&cube, &bad),
            Err(RcaError::InvalidParams(_))
        ));
    }

    /// Every leaf of a cube with the given cardinalities, labels `<name><value>`.
    fn grid(names: &[&str], card: &[u32]) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = vec![Vec::new()];
        for (name, &n) in names.iter().zip(card) {
            out = out
                .into_iter()
                .flat_map(|prefix| {
                    (0..n).map(move |v| {
                        let mut l = prefix.clone();
                        l.push(format!("{name}{v}"));
                        l
                    })
                })
                .collect();
        }
        out
    }

    fn in_cause(names: &[&str], labels: &[String], cause: &[(&str, &str)]) -> bool {
        cause.iter().all(|(k, v)| {
            let dim = names.iter().position(|n| n == k).expect("known attribute");
            labels[dim] == *v
        })
    }

    #[test]
    fn five_attribute_cause_is_found() {
        // Amounts with a 5 % relative forecast error and no count-like noise: one leaf of a
        // 5-attribute cube falls by 70 %.
        let names = ["a", "b", "c", "d", "e"];
        let cause: &[(&str, &str)] = &[
            ("a", "a1"),
            ("b", "b3"),
            ("c", "c0"),
            ("d", "d2"),
            ("e", "e1"),
        ];
        let mut misses = Vec::new();
        for seed in 0..5 {
            let mut rng = Rng(40 + seed);
            let mut cube = Cube::new(&names, KpiKind::Additive);
            for labels in grid(&names, &[4, 6, 3, 5, 3]) {
                let predict = (3.0 + 1.5 * rng.normal()).exp();
                let mut real = predict * (1.0 + 0.05 * rng.normal());
                if in_cause(&names, &labels, cause) {
                    real = predict * 0.3;
                }
                cube.push_additive_labels(&labels, real, predict)
                    .expect("valid leaf");
            }
            let got = found(&cube, &Params::default());
            if got != expect(&[cause]) {
                misses.push(format!("seed {seed}: {got:?}"));
            }
        }
        assert!(misses.is_empty(), "{misses:#?}");
    }

    #[test]
    fn cause_in_a_leaf_carrying_half_a_percent_is_found() {
        // A 4-attribute leaf carrying 0.5 % of the total drops to a tenth; the total moves by
        // 0.45 %, well inside the forecast error of the big leaves.
        let cause: &[(&str, &str)] = &[("a", "a3"), ("b", "b6"), ("c", "c2"), ("d", "d1")];
        let mut rng = Rng(8);
        let all = leaves();
        let predicts: Vec<f64> = all
            .iter()
            .map(|_| (4.0 + 1.5 * rng.normal()).exp())
            .collect();
        let target = all
            .iter()
            .position(|l| matches(l, cause))
            .expect("cause leaf exists");
        let others: f64 = predicts
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != target)
            .map(|(_, p)| p)
            .sum();
        let mut cube = Cube::new(&NAMES, KpiKind::Additive);
        for (i, labels) in all.iter().enumerate() {
            let predict = if i == target {
                others * 0.005 / 0.995
            } else {
                predicts[i]
            };
            let mut real = predict * (1.0 + 0.03 * rng.normal());
            if i == target {
                real = predict * 0.1;
            }
            cube.push_additive_labels(labels, real, predict)
                .expect("valid leaf");
        }
        assert_eq!(found(&cube, &Params::default()), expect(&[cause]));
    }

    #[test]
    fn ratio_cause_in_a_small_segment_with_unchanged_counts() {
        // In {b=b4, c=c1} (about 2 % of the traffic) attempts halve while failures stay what
        // they always were: the count of failures is unchanged, the failure rate doubles.
        // As a ratio it is the cause; as a count of failures there is nothing to see.
        let cause: &[(&str, &str)] = &[("b", "b4"), ("c", "c1")];
        let mut rng = Rng(9);
        let mut ratio = Cube::new(&NAMES, KpiKind::Ratio);
        let mut failures = Cube::new(&NAMES, KpiKind::Additive);
        for labels in leaves() {
            let den_predict = (5.0 + 0.5 * rng.normal()).exp().round().max(1.0);
            let rate = 0.05;
            let num_predict = den_predict * rate;
            let (den_real, num_real) = if matches(&labels, cause) {
                ((den_predict * 0.5).round(), num_predict.round())
            } else {
                let d = rng.poisson(den_predict.min(600.0));
                (d, rng.poisson(d * rate))
            };
            let sample = RatioSample {
                num_real,
                num_predict,
                den_real,
                den_predict,
            };
            ratio
                .push_ratio_labels(&labels, sample)
                .expect("valid leaf");
            failures
                .push_additive_labels(&labels, num_real, num_predict)
                .expect("valid leaf");
        }
        assert_eq!(found(&ratio, &Params::default()), expect(&[cause]));
        assert!(
            !found(&failures, &Params::default())
                .iter()
                .any(|c| c.iter().any(|(k, v)| k == "b" && v == "b4")),
            "failure counts alone should not point at the segment"
        );
    }

    #[test]
    fn negative_values_are_kept_or_refused_by_kind() {
        // An additive KPI measured with an absolute error of about 0.5 on leaves expected at 1
        // to 3 (a net amount, or a count with a measurement offset): many leaves come out
        // below zero. The case is localised and the negative leaves are counted.
        let cause: &[(&str, &str)] = &[("a", "a2"), ("c", "c4")];
        let mut rng = Rng(10);
        let mut cube = Cube::new(&NAMES, KpiKind::Additive);
        let mut negatives = 0;
        for labels in leaves() {
            let predict = 1.0 + 2.0 * rng.unit();
            let mut real = predict + 0.5 * rng.normal();
            if matches(&labels, cause) {
                real += 2.0 * predict;
            }
            if real < 0.0 {
                negatives += 1;
            }
            cube.push_additive_labels(&labels, real, predict)
                .expect("a negative observed amount is accepted");
        }
        let out = localize_detailed(&cube, &Params::default()).expect("localize");
        assert_eq!(out.negative_leaves, negatives);
        assert!(negatives > 0);
        assert_eq!(found(&cube, &Params::default()), expect(&[cause]));
        // Counts cannot be negative: a ratio leaf with one is refused with a clear error.
        let mut ratio = Cube::new(&NAMES, KpiKind::Ratio);
        let bad = RatioSample {
            num_real: -1.0,
            num_predict: 1.0,
            den_real: 10.0,
            den_predict: 10.0,
        };
        assert_eq!(
            ratio.push_ratio_labels(&["a0", "b0", "c0", "d0"], bad),
            Err(RcaError::Negative)
        );
    }

    #[test]
    fn a_small_budget_bounds_the_depth_and_says_so() {
        let cause: &[(&str, &str)] = &[("b", "b3")];
        let cube = additive(11, &[(cause, 0.5)]);
        let tight = Params {
            work_budget: 8_000,
            ..Params::default()
        };
        let out = localize_detailed(&cube, &tight).expect("localize");
        assert!(
            out.limits.iter().any(|l| matches!(l, Limit::Depth { .. })),
            "{:?}",
            out.limits
        );
        assert!(out.depth_searched < 4);
        let full = localize_detailed(&cube, &Params::default()).expect("localize");
        assert!(full.limits.is_empty(), "{:?}", full.limits);
        assert_eq!(full.depth_searched, 4);
    }

    #[test]
    fn scenarios_hold_across_seeds() {
        let one: &[(&str, &str)] = &[("b", "b3")];
        let two: &[(&str, &str)] = &[("a", "a2"), ("d", "d1")];
        let three: &[(&str, &str)] = &[("a", "a0"), ("b", "b5"), ("c", "c3")];
        let scenarios: [&[Injected<'_>]; 5] = [
            &[],
            &[(one, 0.5)],
            &[(one, 0.5), (two, 1.6)],
            &[(three, 0.3)],
            &[(one, 0.6), (two, 0.3), (three, 2.0)],
        ];
        let mut misses = Vec::new();
        for seed in 100..110 {
            for (i, causes) in scenarios.iter().enumerate() {
                let cube = additive(seed, causes);
                let want: Vec<&[(&str, &str)]> = causes.iter().map(|c| c.0).collect();
                let got = found(&cube, &Params::default());
                if got != expect(&want) {
                    misses.push(format!("seed {seed} scenario {i}: {got:?}"));
                }
            }
        }
        assert!(misses.is_empty(), "{misses:#?}");
    }
}
