//! The input of localisation: a cube of leaves (full label combinations, interned to small
//! integer ids) carrying an additive KPI or a ratio KPI whose numerator and denominator are kept
//! apart.

use std::collections::HashMap;

use super::RcaError;

/// Which kind of KPI a [`Cube`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KpiKind {
    /// One additive measure per leaf (counts, amounts): observed and forecast.
    Additive,
    /// A ratio measure (failures / attempts), numerator and denominator each observed and
    /// forecast (baseline).
    Ratio,
}

/// One leaf of a ratio KPI: numerator and denominator, each observed (`*_real`) and
/// forecast or baseline (`*_predict`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioSample {
    /// Observed numerator (failures).
    pub num_real: f64,
    /// Forecast numerator (expected failures).
    pub num_predict: f64,
    /// Observed denominator (attempts).
    pub den_real: f64,
    /// Forecast denominator (expected attempts).
    pub den_predict: f64,
}

/// One attribute (label dimension) and its interned values.
#[derive(Debug, Clone)]
struct Dimension {
    name: String,
    values: Vec<String>,
    ids: HashMap<String, u32>,
}

/// Per-leaf measures, stored column-wise.
#[derive(Debug, Clone)]
enum Measures {
    Additive {
        real: Vec<f64>,
        predict: Vec<f64>,
    },
    Ratio {
        num_real: Vec<f64>,
        num_predict: Vec<f64>,
        den_real: Vec<f64>,
        den_predict: Vec<f64>,
    },
}

/// Leaves of a multi-dimensional KPI, ready for [`localize`](super::localize).
///
/// Build it with [`Cube::new`], intern labels with [`Cube::intern`] (or pass ids you interned
/// yourself, `0..n` per dimension, registered with [`Cube::intern`] first), then push one leaf per
/// full combination of attribute values. A combination may be pushed more than once; the
/// localisation treats the pushes as separate leaves of the same elements, which is harmless.
#[derive(Debug, Clone)]
pub struct Cube {
    dims: Vec<Dimension>,
    /// Leaf-major attribute value ids, `dims.len()` per leaf.
    coords: Vec<u32>,
    measures: Measures,
}

impl Cube {
    /// An empty cube over the named attributes.
    pub fn new<S: AsRef<str>>(dimension_names: &[S], kind: KpiKind) -> Self {
        let dims = dimension_names
            .iter()
            .map(|n| Dimension {
                name: n.as_ref().to_owned(),
                values: Vec::new(),
                ids: HashMap::new(),
            })
            .collect();
        let measures = match kind {
            KpiKind::Additive => Measures::Additive {
                real: Vec::new(),
                predict: Vec::new(),
            },
            KpiKind::Ratio => Measures::Ratio {
                num_real: Vec::new(),
                num_predict: Vec::new(),
                den_real: Vec::new(),
                den_predict: Vec::new(),
            },
        };
        Self {
            dims,
            coords: Vec::new(),
            measures,
        }
    }

    /// The KPI kind this cube carries.
    pub fn kind(&self) -> KpiKind {
        match self.measures {
            Measures::Additive { .. } => KpiKind::Additive,
            Measures::Ratio { .. } => KpiKind::Ratio,
        }
    }

    /// Number of attributes.
    pub fn dimensions(&self) -> usize {
        self.dims.len()
    }

    /// Name of attribute `dim`.
    pub fn dimension_name(&self, dim: usize) -> Option<&str> {
        self.dims.get(dim).map(|d| d.name.as_str())
    }

    /// Number of distinct values interned for attribute `dim` (0 for an unknown attribute).
    pub fn cardinality(&self, dim: usize) -> usize {
        self.dims.get(dim).map_or(0, |d| d.values.len())
    }

    /// The label of value `id` of attribute `dim`.
    pub fn value_label(&self, dim: usize, id: u32) -> Option<&str> {
        self.dims
            .get(dim)
            .and_then(|d| d.values.get(id as usize))
            .map(String::as_str)
    }

    /// Number of leaves pushed.
    pub fn len(&self) -> usize {
        match &self.measures {
            Measures::Additive { real, .. } => real.len(),
            Measures::Ratio { num_real, .. } => num_real.len(),
        }
    }

    /// Whether no leaf was pushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of `label` in attribute `dim`, interning it if new.
    pub fn intern(&mut self, dim: usize, label: &str) -> Result<u32, RcaError> {
        let d = self
            .dims
            .get_mut(dim)
            .ok_or(RcaError::UnknownDimension { dim })?;
        if let Some(&id) = d.ids.get(label) {
            return Ok(id);
        }
        let id = u32::try_from(d.values.len()).map_err(|_| RcaError::TooManyValues { dim })?;
        d.values.push(label.to_owned());
        d.ids.insert(label.to_owned(), id);
        Ok(id)
    }

    /// The id of `label` in attribute `dim`, if interned.
    pub fn lookup(&self, dim: usize, label: &str) -> Option<u32> {
        self.dims.get(dim).and_then(|d| d.ids.get(label).copied())
    }

    /// Adds a leaf of an additive KPI, its attribute value ids in attribute order.
    ///
    /// The observed value may be negative (an amount, or a measurement or forecast artefact:
    /// the search judges residuals and counts such leaves in
    /// [`Localization::negative_leaves`](super::Localization::negative_leaves)); the forecast
    /// must not be, since a cause is a relative change of it.
    pub fn push_additive(&mut self, ids: &[u32], real: f64, predict: f64) -> Result<(), RcaError> {
        if !real.is_finite() {
            return Err(RcaError::NonFinite);
        }
        check_value(predict)?;
        self.check_ids(ids)?;
        let Measures::Additive {
            real: r,
            predict: p,
        } = &mut self.measures
        else {
            return Err(RcaError::KindMismatch);
        };
        r.push(real);
        p.push(predict);
        self.coords.extend_from_slice(ids);
        Ok(())
    }

    /// Adds a leaf of a ratio KPI, its attribute value ids in attribute order. Numerator and
    /// denominator count events: a negative one is an error.
    pub fn push_ratio(&mut self, ids: &[u32], sample: RatioSample) -> Result<(), RcaError> {
        for v in [
            sample.num_real,
            sample.num_predict,
            sample.den_real,
            sample.den_predict,
        ] {
            check_value(v)?;
        }
        self.check_ids(ids)?;
        let Measures::Ratio {
            num_real,
            num_predict,
            den_real,
            den_predict,
        } = &mut self.measures
        else {
            return Err(RcaError::KindMismatch);
        };
        num_real.push(sample.num_real);
        num_predict.push(sample.num_predict);
        den_real.push(sample.den_real);
        den_predict.push(sample.den_predict);
        self.coords.extend_from_slice(ids);
        Ok(())
    }

    /// Adds a leaf of an additive KPI by its labels, interning them.
    pub fn push_additive_labels<S: AsRef<str>>(
        &mut self,
        labels: &[S],
        real: f64,
        predict: f64,
    ) -> Result<(), RcaError> {
        let ids = self.intern_all(labels)?;
        self.push_additive(&ids, real, predict)
    }

    /// Adds a leaf of a ratio KPI by its labels, interning them.
    pub fn push_ratio_labels<S: AsRef<str>>(
        &mut self,
        labels: &[S],
        sample: RatioSample,
    ) -> Result<(), RcaError> {
        let ids = self.intern_all(labels)?;
        self.push_ratio(&ids, sample)
    }

    /// Attribute value ids of leaf `leaf`.
    pub(crate) fn leaf_coords(&self, leaf: usize) -> &[u32] {
        let d = self.dims.len();
        &self.coords[leaf * d..(leaf + 1) * d]
    }

    /// The additive view the search works on: per leaf, the observed value and the value
    /// expected if nothing were wrong.
    ///
    /// For a ratio KPI the expected numerator is the baseline rate times the observed
    /// denominator (expected failures given the attempts that really happened), so a change
    /// of traffic alone is not an anomaly. A leaf's baseline rate is shrunk towards the global
    /// one (empirical Bayes): the prior weighs as much as [`RATE_PRIOR_EVENTS`] baseline
    /// numerator events, so a low-volume leaf whose baseline saw 0 failures is not expected
    /// to see exactly none, while a high-volume leaf keeps its own rate.
    pub(crate) fn observed_expected(&self) -> (Vec<f64>, Vec<f64>) {
        match &self.measures {
            Measures::Additive { real, predict } => (real.clone(), predict.clone()),
            Measures::Ratio {
                num_real,
                num_predict,
                den_real,
                den_predict,
            } => {
                let num_p: f64 = num_predict.iter().sum();
                let den_p: f64 = den_predict.iter().sum();
                let global = if den_p > 0.0 {
                    num_p / den_p
                } else {
                    let den_r: f64 = den_real.iter().sum();
                    if den_r > 0.0 {
                        num_real.iter().sum::<f64>() / den_r
                    } else {
                        0.0
                    }
                };
                // Prior weight in denominator units: PRIOR_EVENTS numerator events at the
                // global rate.
                let prior = if global > 0.0 {
                    RATE_PRIOR_EVENTS / global
                } else {
                    1.0
                };
                let expected = num_predict
                    .iter()
                    .zip(den_predict)
                    .zip(den_real)
                    .map(|((&np, &dp), &dr)| {
                        let rate = (np + prior * global) / (dp + prior);
                        rate * dr
                    })
                    .collect();
                (num_real.clone(), expected)
            }
        }
    }

    fn intern_all<S: AsRef<str>>(&mut self, labels: &[S]) -> Result<Vec<u32>, RcaError> {
        if labels.len() != self.dims.len() {
            return Err(RcaError::WrongArity {
                expected: self.dims.len(),
                got: labels.len(),
            });
        }
        labels
            .iter()
            .enumerate()
            .map(|(dim, l)| self.intern(dim, l.as_ref()))
            .collect()
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), RcaError> {
        if ids.len() != self.dims.len() {
            return Err(RcaError::WrongArity {
                expected: self.dims.len(),
                got: ids.len(),
            });
        }
        for (dim, (&id, d)) in ids.iter().zip(&self.dims).enumerate() {
            if id as usize >= d.values.len() {
                return Err(RcaError::UnknownValue { dim, id });
            }
        }
        Ok(())
    }
}

/// Strength of the prior that shrinks a leaf's baseline rate towards the global baseline rate,
/// in numerator events (failures): a leaf's own baseline outweighs it once it has seen more
/// than this many baseline failures.
pub const RATE_PRIOR_EVENTS: f64 = 5.0;

fn check_value(v: f64) -> Result<(), RcaError> {
    if !v.is_finite() {
        return Err(RcaError::NonFinite);
    }
    if v < 0.0 {
        return Err(RcaError::Negative);
    }
    Ok(())
}
