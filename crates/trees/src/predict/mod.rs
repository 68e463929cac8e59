//! Predictors over a [`Forest`]: the reference (obvious, slow, the oracle) and the fast one.
//! Both produce raw aggregated scores; [`finish`] turns those into answers the same way for both.

pub mod fast;
pub mod reference;

use crate::ir::{Aggregate, BinaryScores, Forest, PostTransform, Task};

/// The answers for a batch of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub n_rows: usize,
    /// Raw score columns per row (the margin: aggregated leaves plus base score).
    pub n_outputs: usize,
    /// `n_rows * n_outputs`, row-major.
    pub raw: Vec<f64>,
    /// Transformed score columns per row: `n_classes` for classifiers, `n_outputs` otherwise.
    pub n_scores: usize,
    /// `n_rows * n_scores`, row-major: class probabilities for classifiers, predicted values
    /// for regressors.
    pub scores: Vec<f64>,
    /// For classifiers, the predicted class index per row (first maximum of the
    /// probabilities, as `numpy.argmax`).
    pub labels: Option<Vec<u32>>,
}

impl Predictions {
    pub fn raw_row(&self, row: usize) -> &[f64] {
        &self.raw[row * self.n_outputs..(row + 1) * self.n_outputs]
    }

    pub fn scores_row(&self, row: usize) -> &[f64] {
        &self.scores[row * self.n_scores..(row + 1) * self.n_scores]
    }
}

/// Initial value of a running aggregate before the first tree.
pub(crate) fn aggregate_start(agg: Aggregate) -> f64 {
    match agg {
        Aggregate::Sum | Aggregate::Average => 0.0,
        Aggregate::Min => f64::INFINITY,
        Aggregate::Max => f64::NEG_INFINITY,
    }
}

/// Combines the running aggregate with one tree's leaf value (f64 accumulation).
#[inline]
pub(crate) fn aggregate_step(agg: Aggregate, acc: f64, v: f64) -> f64 {
    match agg {
        Aggregate::Sum | Aggregate::Average => acc + v,
        Aggregate::Min => acc.min(v),
        Aggregate::Max => acc.max(v),
    }
}

/// Turns an aggregate over `n_trees` into the raw score (mean for averages, then base score).
#[inline]
pub(crate) fn aggregate_end(agg: Aggregate, acc: f64, n_trees: usize, base: f64) -> f64 {
    match agg {
        Aggregate::Average => acc / n_trees as f64 + base,
        _ => acc + base,
    }
}

/// Initial value of an `f32` running aggregate. For sums it is the base score, as XGBoost
/// starts from the base margin and adds each tree's leaf in order.
pub(crate) fn aggregate_start_f32(agg: Aggregate, base: f64) -> f32 {
    match agg {
        Aggregate::Sum => base as f32,
        Aggregate::Average => 0.0,
        Aggregate::Min => f32::INFINITY,
        Aggregate::Max => f32::NEG_INFINITY,
    }
}

#[inline]
pub(crate) fn aggregate_step_f32(agg: Aggregate, acc: f32, v: f32) -> f32 {
    match agg {
        Aggregate::Sum | Aggregate::Average => acc + v,
        Aggregate::Min => acc.min(v),
        Aggregate::Max => acc.max(v),
    }
}

/// Ends an `f32` aggregate (see [`aggregate_start_f32`]).
#[inline]
pub(crate) fn aggregate_end_f32(agg: Aggregate, acc: f32, n_trees: usize, base: f32) -> f32 {
    match agg {
        Aggregate::Average => acc / n_trees as f32 + base,
        Aggregate::Sum => acc,
        _ => acc + base,
    }
}

/// Fills `scores` and `labels` of `p` from its raw scores.
pub(crate) fn finish(forest: &Forest, p: &mut Predictions) {
    let n_scores = forest.n_scores();
    p.n_scores = n_scores;
    p.scores = vec![0.0; p.n_rows * n_scores];
    let mut tmp = vec![0.0f64; n_scores.max(2)];
    for r in 0..p.n_rows {
        let raw = &p.raw[r * p.n_outputs..(r + 1) * p.n_outputs];
        let out = &mut p.scores[r * n_scores..(r + 1) * n_scores];
        match &forest.task {
            Task::Regression => {
                out.copy_from_slice(raw);
                transform(forest.post_transform, out);
            }
            Task::Classification { binary, .. } => match binary {
                BinaryScores::PerClass => {
                    out.copy_from_slice(raw);
                    transform(forest.post_transform, out);
                }
                BinaryScores::OneMinus => {
                    let mut s = [raw[0]];
                    transform(forest.post_transform, &mut s);
                    out[0] = 1.0 - s[0];
                    out[1] = s[0];
                }
                BinaryScores::NegatePositive => {
                    tmp[0] = -raw[0];
                    tmp[1] = raw[0];
                    transform(forest.post_transform, &mut tmp[..2]);
                    out.copy_from_slice(&tmp[..2]);
                }
            },
        }
    }
    p.labels = forest.n_classes().map(|_| {
        (0..p.n_rows)
            .map(|r| argmax(&p.scores[r * n_scores..(r + 1) * n_scores]))
            .collect()
    });
}

/// Index of the first maximum; NaN never wins.
pub fn argmax(v: &[f64]) -> u32 {
    let mut best = 0usize;
    for i in 1..v.len() {
        if v[i] > v[best] || (v[best].is_nan() && !v[i].is_nan()) {
            best = i;
        }
    }
    best as u32
}

/// Applies a post-transform in place to one row of scores.
pub fn transform(t: PostTransform, v: &mut [f64]) {
    match t {
        PostTransform::Identity => {}
        PostTransform::Logistic => {
            for x in v.iter_mut() {
                *x = 1.0 / (1.0 + (-*x).exp());
            }
        }
        PostTransform::Exp => {
            for x in v.iter_mut() {
                *x = x.exp();
            }
        }
        PostTransform::Softmax => {
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            for x in v.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            for x in v.iter_mut() {
                *x /= sum;
            }
        }
        PostTransform::SoftmaxZero => {
            // ONNX Runtime: entries that are (nearly) zero stay (nearly) zero and are left out
            // of the sum; an all-zero row divides by zero there too.
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exp_neg_max = (-max).exp();
            let mut sum = 0.0;
            for x in v.iter_mut() {
                if *x > 1e-7 || *x < -1e-7 {
                    *x = (*x - max).exp();
                    sum += *x;
                } else {
                    *x *= exp_neg_max;
                }
            }
            for x in v.iter_mut() {
                *x /= sum;
            }
        }
        PostTransform::Probit => {
            for x in v.iter_mut() {
                *x = std::f64::consts::SQRT_2 * erf_inv(2.0 * *x - 1.0);
            }
        }
    }
}

/// The inverse error function as ONNX Runtime computes it for `PROBIT` (Winitzki's
/// approximation, a ≈ 0.147), so that answers match the runtime that defines the operator.
fn erf_inv(x: f64) -> f64 {
    let sgn = if x < 0.0 { -1.0 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f64::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}
