//! The search: every element (attribute=value combination) of every cuboid up to
//! `max_attributes` is scored from per-leaf sums in one pass per cuboid, and root causes are
//! taken greedily, best penalised score first, their leaves explained away before the next
//! round.

use std::collections::HashMap;

use super::cube::Cube;
use super::noise;
use super::{Attribute, Direction, Params, RootCause};

/// Largest cuboid (product of cardinalities) indexed through a dense table; larger ones go
/// through a hash map.
const DENSE_LIMIT: u64 = 1 << 22;

/// One cuboid: a set of attributes, and for each informative leaf the element it falls in.
#[derive(Debug)]
struct Cuboid {
    dims: Vec<usize>,
    /// Element index of each informative leaf (parallel to `Lattice::leaves`).
    leaf_elem: Vec<u32>,
    /// For each element, one leaf (cube index) in it, to read its attribute values back.
    elem_leaf: Vec<u32>,
}

/// All cuboids up to the attribute limit, built once per call.
#[derive(Debug)]
struct Lattice {
    cuboids: Vec<Cuboid>,
    /// Cube indices of the informative leaves (expected value > 0).
    leaves: Vec<u32>,
    /// Penalty per layer (index = number of attributes): 2 ln(number of elements in the layer),
    /// the price of having looked at that many candidates.
    penalty: Vec<f64>,
}

/// Best candidate of a round.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    cuboid: usize,
    elem: u32,
    score: f64,
    gain: f64,
    ratio: f64,
}

/// Runs the localisation. The caller checked that the cube is not empty.
pub(crate) fn run(cube: &Cube, params: &Params) -> Vec<RootCause> {
    let (observed, expected) = cube.observed_expected();
    let alpha = noise::dispersion(&observed, &expected);
    let lattice = Lattice::build(cube, &expected, params.max_attributes);
    if lattice.leaves.is_empty() {
        return Vec::new();
    }

    // Score-test sums per informative leaf, for the model `observed = rho * expected`:
    // a = w (r - p) p and b = w p^2 with w = 1 / var(p). An element's gain (the drop of the
    // weighted squared error when its rho is fitted) is (sum a)^2 / sum b, its rho 1 + sum a /
    // sum b. Explaining a leaf away zeroes both.
    let n_leaves = lattice.leaves.len();
    let (mut a, mut b) = (Vec::with_capacity(n_leaves), Vec::with_capacity(n_leaves));
    let (mut obs, mut exp) = (Vec::with_capacity(n_leaves), Vec::with_capacity(n_leaves));
    for &leaf in &lattice.leaves {
        let (r, p) = (observed[leaf as usize], expected[leaf as usize]);
        let w = 1.0 / noise::variance(p, alpha);
        a.push(w * (r - p) * p);
        b.push(w * p * p);
        obs.push(r);
        exp.push(p);
    }

    let mut causes = Vec::new();
    let (mut acc_a, mut acc_b) = (Vec::new(), Vec::new());
    let (mut acc_r, mut acc_p) = (Vec::new(), Vec::new());
    while causes.len() < params.max_causes {
        let mut best: Option<Candidate> = None;
        for (ci, cuboid) in lattice.cuboids.iter().enumerate() {
            let n = cuboid.elem_leaf.len();
            acc_a.clear();
            acc_a.resize(n, 0.0);
            acc_b.clear();
            acc_b.resize(n, 0.0);
            acc_r.clear();
            acc_r.resize(n, 0.0);
            acc_p.clear();
            acc_p.resize(n, 0.0);
            for (k, &e) in cuboid.leaf_elem.iter().enumerate() {
                let e = e as usize;
                acc_a[e] += a[k];
                acc_b[e] += b[k];
                acc_r[e] += obs[k];
                acc_p[e] += exp[k];
            }
            let pen = lattice.penalty[cuboid.dims.len()];
            for (e, (&sa, &sb)) in acc_a.iter().zip(&acc_b).enumerate() {
                if sb <= 0.0 {
                    continue;
                }
                let ratio = 1.0 + sa / sb;
                if !direction_ok(params.direction, ratio)
                    || (ratio - 1.0).abs() < params.min_relative_change
                {
                    continue;
                }
                let gain = sa * sa / sb * tail_correction(acc_r[e], acc_p[e]);
                let score = gain - pen;
                // Strictly better only: on a tie the earlier cuboid (fewer attributes, then
                // attribute order) wins, so the simpler of two equivalent causes is kept.
                if best.is_none_or(|c| score > c.score) {
                    best = Some(Candidate {
                        cuboid: ci,
                        // Element counts fit u32: they are at most the leaf count, and
                        // `Lattice::build` indexes leaves with u32.
                        elem: e as u32,
                        score,
                        gain,
                        ratio,
                    });
                }
            }
        }
        let Some(c) = best.filter(|c| c.score >= params.min_score) else {
            break;
        };
        let cuboid = &lattice.cuboids[c.cuboid];
        for (k, &e) in cuboid.leaf_elem.iter().enumerate() {
            if e == c.elem {
                a[k] = 0.0;
                b[k] = 0.0;
            }
        }
        causes.push(lattice.root_cause(cube, &observed, &expected, c));
    }
    causes
}

/// Shrinks the gain of an upward deviation to what the Poisson likelihood ratio says: for small
/// counts the squared-residual statistic overstates upward deviations (the Poisson upper tail is
/// heavier than the normal one: 8 observed against 1.65 expected is chi-square 24 by residuals,
/// 12.6 by likelihood ratio). The factor is the ratio of the Poisson deviance to Pearson's
/// statistic on the element's totals, at most 1, so downward deviations are never inflated.
fn tail_correction(observed: f64, expected: f64) -> f64 {
    if expected <= 0.0 || observed <= expected {
        return 1.0;
    }
    let pearson = (observed - expected) * (observed - expected) / expected;
    let deviance = 2.0 * (observed * (observed / expected).ln() - (observed - expected));
    (deviance / pearson).min(1.0)
}

fn direction_ok(direction: Direction, ratio: f64) -> bool {
    match direction {
        Direction::Both => true,
        Direction::Increase => ratio > 1.0,
        Direction::Decrease => ratio < 1.0,
    }
}

impl Lattice {
    fn build(cube: &Cube, expected: &[f64], max_attributes: usize) -> Self {
        let d = cube.dimensions();
        // Leaf indices are u32 throughout; `localize` rejects larger cubes.
        let leaves: Vec<u32> = (0..cube.len())
            .filter(|&i| expected[i] > 0.0)
            .map(|i| i as u32)
            .collect();
        let max_layer = max_attributes.min(d);
        let mut cuboids = Vec::new();
        for layer in 1..=max_layer {
            for dims in combinations(d, layer) {
                cuboids.push(Cuboid::build(cube, &leaves, dims));
            }
        }
        let mut per_layer = vec![0usize; max_layer + 1];
        for c in &cuboids {
            per_layer[c.dims.len()] += c.elem_leaf.len();
        }
        let penalty = per_layer
            .iter()
            .map(|&m| if m > 1 { 2.0 * (m as f64).ln() } else { 0.0 })
            .collect();
        Self {
            cuboids,
            leaves,
            penalty,
        }
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
            ratio: c.ratio,
            observed: obs,
            expected: exp,
        }
    }
}

impl Cuboid {
    fn build(cube: &Cube, leaves: &[u32], dims: Vec<usize>) -> Self {
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
        Self {
            dims,
            leaf_elem,
            elem_leaf,
        }
    }
}

/// All `k`-subsets of `0..n` in lexicographic order.
fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur: Vec<usize> = (0..k).collect();
    if k == 0 || k > n {
        return out;
    }
    loop {
        out.push(cur.clone());
        // Find the rightmost position that can still move right.
        let mut i = k;
        while i > 0 && cur[i - 1] == n - k + (i - 1) {
            i -= 1;
        }
        if i == 0 {
            return out;
        }
        cur[i - 1] += 1;
        for j in i..k {
            cur[j] = cur[j - 1] + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
