//! The search: every element (attribute=value combination) of every cuboid the budget allows
//! is scored from per-element sums, and root causes are taken greedily, best penalised score
//! first, their leaves explained away (subtracted from every cuboid's sums) before the next
//! round.

use std::collections::HashMap;

use super::cube::{Cube, KpiKind};
use super::noise::NoiseModel;
use super::{Attribute, Direction, Limit, Localization, Params, RootCause};

/// Largest cuboid (product of cardinalities) indexed through a dense table; larger ones go
/// through a hash map.
const DENSE_LIMIT: u64 = 1 << 22;

/// Share of the work budget the lattice itself (one pass per cuboid) may take; the rest is
/// for the rounds.
const BUILD_SHARE: f64 = 0.5;

/// One cuboid: a set of attributes, and for each informative leaf the element it falls in.
#[derive(Debug)]
struct Cuboid {
    dims: Vec<usize>,
    /// Element index of each informative leaf (parallel to `Lattice::leaves`).
    leaf_elem: Vec<u32>,
    /// For each element, one leaf (cube index) in it, to read its attribute values back.
    elem_leaf: Vec<u32>,
    /// Per element: sums of the score terms `a` and `b`, of observed and expected values, and
    /// the number of leaves not yet explained away.
    sums: Vec<Sums>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    a: f64,
    b: f64,
    r: f64,
    p: f64,
    live: u32,
}

/// Best candidate of a round.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    cuboid: usize,
    elem: u32,
    score: f64,
    gain: f64,
}

/// The null distribution of the gains of one layer's elements in a round, for the score of a
/// candidate: `-2 ln` of the number of the layer's elements expected to reach its gain by
/// noise alone. Two estimates of that number are taken and the larger kept: chi-square with
/// one degree of freedom (`M e^(-g/2)` for `M` elements: the price of having looked at that
/// many), and, where the layer has enough elements, the empirical tail of its gains (most
/// elements are normal), extrapolated exponentially from two upper quantiles. The second is
/// what separates a real cause from forecast error when the error has heavier tails than the
/// variance model says (a forecast off by 80 % on a few leaves in ten thousand).
#[derive(Debug, Clone, Copy)]
struct LayerNull {
    /// Live elements in the layer.
    elements: f64,
    /// Empirical tail: upper quantile gain `g2`, the share of elements above it, and the
    /// exponential scale `lambda` of the tail beyond it (1 for chi-square).
    tail: Option<(f64, f64, f64)>,
}

/// Per informative leaf, its contribution to the sums.
#[derive(Debug, Clone, Copy)]
struct LeafTerm {
    a: f64,
    b: f64,
    r: f64,
    p: f64,
}

/// Runs the localisation. The caller checked the parameters and that the cube is not empty.
pub(crate) fn run(cube: &Cube, params: &Params) -> Localization {
    let (observed, expected) = cube.observed_expected();
    let negative_leaves = observed.iter().filter(|&&r| r < 0.0).count();
    let kind = cube.kind();
    // Informative leaves: a positive scale (something expected or observed).
    let leaves: Vec<u32> = (0..cube.len())
        .filter(|&i| scale(observed[i], expected[i], kind) > 0.0)
        .map(|i| i as u32)
        .collect();
    let mut pairs: Vec<(f64, f64)> = leaves
        .iter()
        .map(|&i| {
            let (r, p) = (observed[i as usize], expected[i as usize]);
            (scale(r, p, kind), r - p)
        })
        .collect();
    let noise = NoiseModel::fit(&mut pairs, cube.kind() == KpiKind::Ratio);
    let mut out = Localization {
        causes: Vec::new(),
        limits: Vec::new(),
        noise,
        negative_leaves,
        depth_searched: 0,
    };
    if leaves.is_empty() {
        return out;
    }

    // Score-test sums per leaf for the ripple model "every leaf of the element moved by the
    // same relative amount delta on its own scale": r - p = delta m. With w = 1 / v(m),
    // a = w (r - p) m and b = w m^2; an element's gain (drop of the weighted squared error
    // when its delta is fitted) is (sum a)^2 / sum b, its delta sum a / sum b.
    let terms: Vec<LeafTerm> = leaves
        .iter()
        .map(|&i| {
            let (r, p) = (observed[i as usize], expected[i as usize]);
            let m = scale(r, p, kind);
            let w = 1.0 / noise.variance(m);
            LeafTerm {
                a: w * (r - p) * m,
                b: w * m * m,
                r,
                p,
            }
        })
        .collect();

    let mut work: u64 = 0;
    let (mut lattice, depth_limit) = Lattice::build(cube, &leaves, &terms, params, &mut work);
    out.depth_searched = lattice.depth;
    if let Some(l) = depth_limit {
        out.limits.push(l);
    }

    let scan_cost = lattice.elements() as u64;
    let mut scratch = Vec::new();
    loop {
        if out.causes.len() >= params.max_causes {
            out.limits.push(Limit::Causes {
                max: params.max_causes,
            });
            break;
        }
        if work.saturating_add(scan_cost) > params.work_budget {
            out.limits.push(Limit::Budget {
                causes: out.causes.len(),
            });
            break;
        }
        work += 2 * scan_cost;
        let nulls = lattice.nulls(&mut scratch);
        let Some(c) = lattice
            .best(params, &nulls)
            .filter(|c| c.score >= params.min_score)
        else {
            break;
        };
        work += lattice.explain_away(&c, &terms);
        out.causes
            .push(lattice.root_cause(cube, &observed, &expected, c));
    }
    generalize(
        cube,
        &leaves,
        &terms,
        &observed,
        &expected,
        params,
        &mut out.causes,
    );
    out
}

/// Occam's step after the search: a cause becomes its parent (one attribute fewer) when the
/// rest of the parent, the leaves no cause explains, moved with it: their residuals sit
/// closer to the cause's relative change than to no change (the weighted squared error at the
/// cause's `delta` is below the one at 0), or, when other causes are its siblings under that
/// parent, the rest moved the same way and is either significant on its own or the smaller
/// part of the parent's weight. Causes inside the new parent are absorbed. Real
/// faults rarely move every leaf by the same factor, so the greedy search can take the
/// largest children of a cause one by one; this puts them back together, and it leaves a
/// cause alone whose siblings are normal. Repeats until nothing changes.
fn generalize(
    cube: &Cube,
    leaves: &[u32],
    terms: &[LeafTerm],
    observed: &[f64],
    expected: &[f64],
    params: &Params,
    causes: &mut Vec<RootCause>,
) {
    let inside = |attrs: &[Attribute], leaf: u32| {
        let lc = cube.leaf_coords(leaf as usize);
        attrs.iter().all(|at| lc[at.dim] == at.value)
    };
    // Bounded: every change removes an attribute from a cause.
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..causes.len() {
            let attrs = causes[i].attributes.clone();
            if attrs.len() < 2 {
                continue;
            }
            let (mut a, mut b) = (0.0, 0.0);
            for (k, &leaf) in leaves.iter().enumerate() {
                if inside(&attrs, leaf) {
                    a += terms[k].a;
                    b += terms[k].b;
                }
            }
            if b <= 0.0 {
                continue;
            }
            let delta = a / b;
            let mut best: Option<(f64, usize)> = None;
            for drop in 0..attrs.len() {
                let parent: Vec<Attribute> = attrs
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != drop)
                    .map(|(_, at)| *at)
                    .collect();
                // The rest of the parent: leaves no cause explains.
                let (mut ra, mut rb, mut all_b) = (0.0, 0.0, 0.0);
                for (k, &leaf) in leaves.iter().enumerate() {
                    if inside(&parent, leaf) {
                        all_b += terms[k].b;
                        if !causes.iter().any(|c| inside(&c.attributes, leaf)) {
                            ra += terms[k].a;
                            rb += terms[k].b;
                        }
                    }
                }
                // Weighted squared error at 0 minus at delta.
                let margin = 2.0 * delta * ra - delta * delta * rb;
                // Siblings: another cause shares this parent. Then one parent instead of
                // several children is the simpler account if the rest moved the same way,
                // significantly on its own or as the smaller part (the causes carry most of
                // the parent's weight of evidence).
                let siblings = causes.iter().enumerate().any(|(j, c)| {
                    j != i
                        && c.attributes.len() == attrs.len()
                        && parent.iter().all(|p| c.attributes.contains(p))
                });
                let same_way = rb > 0.0
                    && ra * delta > 0.0
                    && (ra * ra / rb >= params.min_score || rb <= 0.5 * all_b);
                if margin > 0.0 || rb <= 0.0 || (siblings && same_way) {
                    let margin = if rb <= 0.0 { 0.0 } else { margin.max(0.0) };
                    if best.is_none_or(|(m, _)| margin > m) {
                        best = Some((margin, drop));
                    }
                }
            }
            let Some((_, drop)) = best else { continue };
            let parent: Vec<Attribute> = attrs
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != drop)
                .map(|(_, at)| *at)
                .collect();
            let (mut pa, mut pb, mut obs, mut exp) = (0.0, 0.0, 0.0, 0.0);
            for (k, &leaf) in leaves.iter().enumerate() {
                if inside(&parent, leaf) {
                    pa += terms[k].a;
                    pb += terms[k].b;
                }
            }
            for leaf in 0..cube.len() {
                if inside(&parent, leaf as u32) {
                    obs += observed[leaf];
                    exp += expected[leaf];
                }
            }
            if pb <= 0.0 || !direction_ok(params.direction, pa / pb) {
                continue;
            }
            let score = causes
                .iter()
                .filter(|c| parent.iter().all(|p| c.attributes.contains(p)))
                .map(|c| c.score)
                .fold(f64::NEG_INFINITY, f64::max);
            let merged = RootCause {
                attributes: parent.clone(),
                score,
                gain: pa * pa / pb,
                ratio: if exp > 0.0 { obs / exp } else { f64::INFINITY },
                observed: obs,
                expected: exp,
            };
            causes[i] = merged;
            let mut j = 0;
            causes.retain(|c| {
                let keep = j == i || !parent.iter().all(|p| c.attributes.contains(p));
                j += 1;
                keep
            });
            changed = true;
            break;
        }
    }
}

impl LayerNull {
    fn fit(gains: &mut [f64], empirical: bool) -> Self {
        let m = gains.len();
        let elements = m as f64;
        // Quantile pairs by how many elements there are to see a tail in.
        let (q1, q2) = if !empirical {
            return Self {
                elements,
                tail: None,
            };
        } else if m >= 10_000 {
            (0.99, 0.999)
        } else if m >= 1_000 {
            (0.9, 0.99)
        } else if m >= 100 {
            (0.5, 0.9)
        } else {
            return Self {
                elements,
                tail: None,
            };
        };
        let at = |gains: &mut [f64], q: f64| -> f64 {
            let k = ((q * elements) as usize).min(m - 1);
            let (_, v, _) = gains.select_nth_unstable_by(k, f64::total_cmp);
            *v
        };
        let g1 = at(gains, q1);
        let g2 = at(gains, q2);
        let lambda = (g2 - g1) / (2.0 * ((1.0 - q1) / (1.0 - q2)).ln());
        Self {
            elements,
            tail: (lambda > 0.0).then_some((g2, 1.0 - q2, lambda)),
        }
    }

    /// `-2 ln` of the expected number of normal elements of the layer reaching `gain`.
    fn score(&self, gain: f64) -> f64 {
        let chi2 = gain - 2.0 * self.elements.max(1.0).ln();
        match self.tail {
            Some((g2, share, lambda)) => {
                let empirical = (gain - g2) / lambda - 2.0 * (self.elements * share).ln();
                chi2.min(empirical)
            }
            None => chi2,
        }
    }
}

/// The scale of a leaf: the midpoint of observed (negative counted as 0) and expected.
///
/// A ratio KPI's leaf is judged on its expected count instead: its null is a count around the
/// baseline rate times the attempts seen, and every leaf with attempts has an expectation.
fn scale(r: f64, p: f64, kind: KpiKind) -> f64 {
    match kind {
        KpiKind::Additive => (r.max(0.0) + p) / 2.0,
        KpiKind::Ratio => p,
    }
}

/// Shrinks the gain of an upward deviation of counts to what the Poisson likelihood ratio
/// says: for small counts the squared-residual statistic overstates upward deviations (the
/// Poisson upper tail is heavier than the normal one: 8 observed against 1.65 expected is
/// chi-square 24 by residuals, 12.6 by likelihood ratio). The factor is the ratio of the
/// Poisson deviance to Pearson's statistic on the element's totals, at most 1, so downward
/// deviations are never inflated.
fn tail_correction(observed: f64, expected: f64) -> f64 {
    if expected <= 0.0 || observed <= expected {
        return 1.0;
    }
    let pearson = (observed - expected) * (observed - expected) / expected;
    let deviance = 2.0 * (observed * (observed / expected).ln() - (observed - expected));
    (deviance / pearson).min(1.0)
}

/// Whether attribute set `k` (a bit mask) is contained in `mask`.
fn subset_of(k: u64, mask: u64) -> bool {
    k & !mask == 0
}

fn direction_ok(direction: Direction, delta: f64) -> bool {
    match direction {
        Direction::Both => true,
        Direction::Increase => delta > 0.0,
        Direction::Decrease => delta < 0.0,
    }
}

/// All cuboids the budget allows, built once per call.
#[derive(Debug)]
struct Lattice {
    cuboids: Vec<Cuboid>,
    /// Cube indices of the informative leaves.
    leaves: Vec<u32>,
    /// Deepest layer built.
    depth: usize,
    /// Per informative leaf: not yet explained away.
    alive: Vec<bool>,
    /// The measure counts events (a ratio KPI's numerator): upward deviations are judged by
    /// the Poisson likelihood ratio (see [`tail_correction`]).
    counts: bool,
}

impl Lattice {
    fn build(
        cube: &Cube,
        leaves: &[u32],
        terms: &[LeafTerm],
        params: &Params,
        work: &mut u64,
    ) -> (Self, Option<Limit>) {
        let d = cube.dimensions();
        let n = leaves.len() as u64;
        let want = params.max_attributes.min(d);
        let build_budget = (params.work_budget as f64 * BUILD_SHARE) as u64;
        let mut cuboids: Vec<Cuboid> = Vec::new();
        // Attribute sets whose cuboid has one leaf per element: every deeper set containing
        // one gives the same elements with more attributes, never a better cause.
        let mut keys: Vec<u64> = Vec::new();
        let mut depth = 0;
        let mut limit = None;
        for layer in 1..=want {
            let before = cuboids.len();
            let before_work = *work;
            let mut new_keys = Vec::new();
            let mut over = false;
            for dims in Combinations::new(d, layer) {
                let mask = dims.iter().fold(0u64, |m, &x| m | (1u64 << (x % 64)));
                if keys.iter().any(|&k| subset_of(k, mask)) {
                    continue;
                }
                if layer > 1 && work.saturating_add(n) > build_budget {
                    over = true;
                    break;
                }
                let c = Cuboid::build(cube, leaves, terms, dims);
                *work += n;
                if c.elem_leaf.len() == leaves.len() && d <= 64 {
                    new_keys.push(mask);
                }
                cuboids.push(c);
            }
            if over {
                // A layer is searched whole or not at all.
                cuboids.truncate(before);
                *work = before_work;
                limit = Some(Limit::Depth {
                    searched: depth,
                    attributes: want,
                });
                break;
            }
            if cuboids.len() == before {
                break;
            }
            keys.extend(new_keys);
            depth = layer;
        }
        (
            Self {
                cuboids,
                leaves: leaves.to_vec(),
                depth,
                alive: vec![true; leaves.len()],
                counts: cube.kind() == KpiKind::Ratio,
            },
            limit,
        )
    }

    fn elements(&self) -> usize {
        self.cuboids.iter().map(|c| c.sums.len()).sum()
    }

    /// The empirical null of each layer this round: how the gains of its live elements are
    /// spread (see [`LayerNull`]).
    fn nulls(&self, scratch: &mut Vec<f64>) -> Vec<LayerNull> {
        (0..=self.depth)
            .map(|layer| {
                scratch.clear();
                let cuboids = || self.cuboids.iter().filter(|c| c.dims.len() == layer);
                // Only where elements are single leaves: a coarser layer has many elements
                // overlapping each cause, which would pass for noise.
                let leafy = cuboids().all(|c| c.elem_leaf.len() == self.leaves.len());
                for c in cuboids() {
                    scratch.extend(
                        c.sums
                            .iter()
                            .filter(|s| s.live > 0 && s.b > 0.0)
                            .map(|s| s.a * s.a / s.b),
                    );
                }
                LayerNull::fit(scratch, leafy)
            })
            .collect()
    }

    /// The best element of the round by score.
    fn best(&self, params: &Params, nulls: &[LayerNull]) -> Option<Candidate> {
        let mut best: Option<Candidate> = None;
        for (ci, cuboid) in self.cuboids.iter().enumerate() {
            let null = &nulls[cuboid.dims.len()];
            for (e, s) in cuboid.sums.iter().enumerate() {
                if s.live == 0 || s.b <= 0.0 {
                    continue;
                }
                let delta = s.a / s.b;
                if !direction_ok(params.direction, delta) {
                    continue;
                }
                // The relative change of the element's totals, observed over expected.
                let moved = if s.p > 0.0 {
                    (s.r / s.p - 1.0).abs()
                } else {
                    f64::INFINITY
                };
                if moved < params.min_relative_change {
                    continue;
                }
                let mut gain = s.a * s.a / s.b;
                if self.counts {
                    gain *= tail_correction(s.r, s.p);
                }
                let score = null.score(gain);
                // Strictly better only: on a tie the earlier cuboid (fewer attributes, then
                // attribute order) wins, so the simpler of two equivalent causes is kept.
                if best.is_none_or(|c| score > c.score) {
                    best = Some(Candidate {
                        cuboid: ci,
                        // Element counts fit u32: they are at most the leaf count, and
                        // `localize` rejects cubes of more than u32::MAX leaves.
                        elem: e as u32,
                        score,
                        gain,
                    });
                }
            }
        }
        best
    }

    /// Removes the leaves of `c` from every cuboid's sums; returns the work done.
    fn explain_away(&mut self, c: &Candidate, terms: &[LeafTerm]) -> u64 {
        let gone: Vec<usize> = self.cuboids[c.cuboid]
            .leaf_elem
            .iter()
            .enumerate()
            .filter(|&(k, &e)| e == c.elem && self.alive[k])
            .map(|(k, _)| k)
            .collect();
        for &k in &gone {
            self.alive[k] = false;
        }
        let mut work = self.leaves.len() as u64;
        for cuboid in &mut self.cuboids {
            for &k in &gone {
                let s = &mut cuboid.sums[cuboid.leaf_elem[k] as usize];
                if s.live == 0 {
                    continue;
                }
                let t = terms[k];
                s.a -= t.a;
                s.b -= t.b;
                s.r -= t.r;
                s.p -= t.p;
                s.live -= 1;
                if s.live == 0 {
                    *s = Sums::default();
                }
            }
            work += gone.len() as u64;
        }
        work
    }

    fn root_cause(
        &self,
        cube: &Cube,
        observed: &[f64],
        expected: &[f64],
        c: Candidate,
    ) -> RootCause {
        let cuboid = &self.cuboids[c.cuboid];
        let coords = cube.leaf_coords(cuboid.elem_leaf[c.elem as usize] as usize);
        let attributes: Vec<Attribute> = cuboid
            .dims
            .iter()
            .map(|&dim| Attribute {
                dim,
                value: coords[dim],
            })
            .collect();
        // Totals over every leaf of the element, empty ones included.
        let (mut obs, mut exp) = (0.0, 0.0);
        for leaf in 0..cube.len() {
            let lc = cube.leaf_coords(leaf);
            if attributes.iter().all(|at| lc[at.dim] == at.value) {
                obs += observed[leaf];
                exp += expected[leaf];
            }
        }
        RootCause {
            attributes,
            score: c.score,
            gain: c.gain,
            ratio: if exp > 0.0 { obs / exp } else { f64::INFINITY },
            observed: obs,
            expected: exp,
        }
    }
}

impl Cuboid {
    fn build(cube: &Cube, leaves: &[u32], terms: &[LeafTerm], dims: Vec<usize>) -> Self {
        let mut size: Option<u64> = Some(1);
        for &dim in &dims {
            size = size.and_then(|s| s.checked_mul(cube.cardinality(dim).max(1) as u64));
        }
        let mut leaf_elem = Vec::with_capacity(leaves.len());
        let mut elem_leaf = Vec::new();
        match size {
            Some(size) if size <= DENSE_LIMIT => {
                // `size` is at most 2^22, so it fits usize.
                let mut table = vec![u32::MAX; size as usize];
                for &leaf in leaves {
                    let coords = cube.leaf_coords(leaf as usize);
                    let mut key = 0usize;
                    for &dim in &dims {
                        key = key * cube.cardinality(dim).max(1) + coords[dim] as usize;
                    }
                    if table[key] == u32::MAX {
                        table[key] = elem_leaf.len() as u32;
                        elem_leaf.push(leaf);
                    }
                    leaf_elem.push(table[key]);
                }
            }
            _ => {
                let mut table: HashMap<Vec<u32>, u32> = HashMap::new();
                for &leaf in leaves {
                    let coords = cube.leaf_coords(leaf as usize);
                    let key: Vec<u32> = dims.iter().map(|&dim| coords[dim]).collect();
                    let next = elem_leaf.len() as u32;
                    let e = *table.entry(key).or_insert(next);
                    if e == next {
                        elem_leaf.push(leaf);
                    }
                    leaf_elem.push(e);
                }
            }
        }
        let mut sums = vec![Sums::default(); elem_leaf.len()];
        for (k, &e) in leaf_elem.iter().enumerate() {
            let s = &mut sums[e as usize];
            let t = terms[k];
            s.a += t.a;
            s.b += t.b;
            s.r += t.r;
            s.p += t.p;
            s.live += 1;
        }
        Self {
            dims,
            leaf_elem,
            elem_leaf,
            sums,
        }
    }
}

/// All `k`-subsets of `0..n` in lexicographic order, one at a time (a layer of a wide cube
/// has too many to list up front).
struct Combinations {
    n: usize,
    cur: Vec<usize>,
    done: bool,
}

impl Combinations {
    fn new(n: usize, k: usize) -> Self {
        Self {
            n,
            cur: (0..k).collect(),
            done: k == 0 || k > n,
        }
    }
}

impl Iterator for Combinations {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        if self.done {
            return None;
        }
        let out = self.cur.clone();
        let (n, k) = (self.n, self.cur.len());
        // Find the rightmost position that can still move right.
        let mut i = k;
        while i > 0 && self.cur[i - 1] == n - k + (i - 1) {
            i -= 1;
        }
        if i == 0 {
            self.done = true;
        } else {
            self.cur[i - 1] += 1;
            for j in i..k {
                self.cur[j] = self.cur[j - 1] + 1;
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
        Combinations::new(n, k).collect()
    }

    #[test]
    fn combinations_enumerate_in_order() {
        assert_eq!(
            combinations(4, 2),
            vec![
                vec![0, 1],
                vec![0, 2],
                vec![0, 3],
                vec![1, 2],
                vec![1, 3],
                vec![2, 3]
            ]
        );
        assert_eq!(combinations(3, 3), vec![vec![0, 1, 2]]);
        assert!(combinations(2, 3).is_empty());
    }
}
