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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Accumulate, SourceFormat};

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    fn transformed(t: PostTransform, v: &[f64]) -> Vec<f64> {
        let mut v = v.to_vec();
        transform(t, &mut v);
        v
    }

    #[test]
    fn elementwise_transforms() {
        assert_eq!(
            transformed(PostTransform::Identity, &[-1.5, 2.0]),
            [-1.5, 2.0]
        );
        let l = transformed(PostTransform::Logistic, &[0.0, 2.0, -2.0]);
        assert_eq!(l[0], 0.5);
        assert!(close(l[1], 0.8807970779778823, 1e-15), "{l:?}");
        assert!(close(l[2], 0.11920292202211755, 1e-15), "{l:?}");
        let e = transformed(PostTransform::Exp, &[0.0, 1.0, -1.0]);
        assert_eq!(e[0], 1.0);
        assert!(close(e[1], std::f64::consts::E, 1e-15), "{e:?}");
        assert!(close(e[2], 1.0 / std::f64::consts::E, 1e-15), "{e:?}");
    }

    #[test]
    fn softmax_sums_to_one_in_proportion() {
        let s = transformed(PostTransform::Softmax, &[1.0, 2.0, 3.0]);
        let want = [0.09003057317038046, 0.24472847105479764, 0.6652409557748219];
        for (g, w) in s.iter().zip(want) {
            assert!(close(*g, w, 1e-15), "{s:?}");
        }
        // Large scores do not overflow (the maximum is subtracted first).
        let s = transformed(PostTransform::Softmax, &[1000.0, 1000.0]);
        assert_eq!(s, [0.5, 0.5]);
    }

    #[test]
    fn softmax_zero_leaves_zero_scores_out() {
        let e1 = (-1.0f64).exp();
        let s = transformed(PostTransform::SoftmaxZero, &[0.0, 1.0, 2.0]);
        assert_eq!(s[0], 0.0);
        assert!(close(s[1], e1 / (e1 + 1.0), 1e-15), "{s:?}");
        assert!(close(s[2], 1.0 / (e1 + 1.0), 1e-15), "{s:?}");
        // Negative scores are not zero.
        let s = transformed(PostTransform::SoftmaxZero, &[-1.0, 0.0, 1.0]);
        let e2 = (-2.0f64).exp();
        assert!(close(s[0], e2 / (e2 + 1.0), 1e-15), "{s:?}");
        assert_eq!(s[1], 0.0);
        assert!(close(s[2], 1.0 / (e2 + 1.0), 1e-15), "{s:?}");
        // The band edges: exactly 1e-7 counts as zero, scaled by exp(-max) and kept out of
        // the sum; just beyond it counts.
        let s = transformed(PostTransform::SoftmaxZero, &[1e-7, 1.0]);
        assert!(close(s[0], 1e-7 * e1, 1e-22), "{s:?}");
        assert_eq!(s[1], 1.0);
        let s = transformed(PostTransform::SoftmaxZero, &[-1e-7, 1.0]);
        assert!(close(s[0], -1e-7 * e1, 1e-22), "{s:?}");
        assert_eq!(s[1], 1.0);
        let s = transformed(PostTransform::SoftmaxZero, &[2e-7, 1.0]);
        assert!(s[0] > 0.26 && s[0] < 0.27, "{s:?}");
    }

    #[test]
    fn probit_is_the_normal_quantile() {
        // Standard normal quantiles; Winitzki's approximation is good to a few 1e-3.
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959963984540054),
            (0.8413447460685429, 1.0),
            (0.1, -1.2815515655446004),
            (0.01, -2.3263478740408408),
            (0.999, 3.090232306167813),
        ] {
            let got = transformed(PostTransform::Probit, &[p])[0];
            assert!(
                close(got, z, 4e-3 * z.abs().max(1.0)),
                "probit({p}) = {got}, want {z}"
            );
        }
        // The middle is +0, as ONNX Runtime answers (its sign shows in JSON as "-0.0").
        let mid = transformed(PostTransform::Probit, &[0.5])[0];
        assert_eq!(mid.to_bits(), 0.0f64.to_bits(), "{mid}");
        // Odd around 0.5, exactly.
        let a = transformed(PostTransform::Probit, &[0.3, 0.7]);
        assert_eq!(a[0], -a[1]);
        // The value ONNX Runtime's formula gives (computed from the formula by hand).
        let x: f64 = 2.0 * 0.9 - 1.0;
        let ln = ((1.0 - x) * (1.0 + x)).ln();
        let v = 2.0 / (std::f64::consts::PI * 0.147) + 0.5 * ln;
        let want = std::f64::consts::SQRT_2 * (-v + (v * v - 1.0 / 0.147 * ln).sqrt()).sqrt();
        assert_eq!(transformed(PostTransform::Probit, &[0.9])[0], want);
    }

    #[test]
    fn argmax_takes_the_first_maximum_and_never_nan() {
        assert_eq!(argmax(&[1.0, 5.0, 5.0]), 1);
        assert_eq!(argmax(&[3.0, 3.0]), 0);
        assert_eq!(argmax(&[0.2, 0.1, 0.7]), 2);
        assert_eq!(argmax(&[f64::NAN, 1.0, 2.0]), 2);
        assert_eq!(argmax(&[f64::NAN, 1.0, f64::NAN]), 1);
        assert_eq!(argmax(&[1.0, f64::NAN, 3.0]), 2);
        assert_eq!(argmax(&[4.0, f64::NAN, 3.0]), 0);
        assert_eq!(argmax(&[f64::NAN, f64::NAN]), 0);
        assert_eq!(argmax(&[-2.0]), 0);
    }

    #[test]
    fn aggregates_start_step_and_end() {
        use Aggregate::*;
        assert_eq!(aggregate_start(Sum), 0.0);
        assert_eq!(aggregate_start(Average), 0.0);
        assert_eq!(aggregate_start(Min), f64::INFINITY);
        assert_eq!(aggregate_start(Max), f64::NEG_INFINITY);
        assert_eq!(aggregate_step(Sum, 1.5, 2.0), 3.5);
        assert_eq!(aggregate_step(Average, 1.5, 2.0), 3.5);
        assert_eq!(aggregate_step(Min, 1.5, 2.0), 1.5);
        assert_eq!(aggregate_step(Max, 1.5, 2.0), 2.0);
        assert_eq!(aggregate_end(Average, 6.0, 4, 0.5), 2.0);
        assert_eq!(aggregate_end(Sum, 6.0, 4, 0.5), 6.5);
        assert_eq!(aggregate_end(Min, 6.0, 4, 0.5), 6.5);
        assert_eq!(aggregate_end(Max, -6.0, 4, 0.5), -5.5);
        // f32: sums start from the base score and end as they are.
        assert_eq!(aggregate_start_f32(Sum, 0.5), 0.5);
        assert_eq!(aggregate_start_f32(Average, 0.5), 0.0);
        assert_eq!(aggregate_start_f32(Min, 0.5), f32::INFINITY);
        assert_eq!(aggregate_start_f32(Max, 0.5), f32::NEG_INFINITY);
        assert_eq!(aggregate_step_f32(Sum, 1.5, 2.0), 3.5);
        assert_eq!(aggregate_step_f32(Average, 1.5, 2.0), 3.5);
        assert_eq!(aggregate_step_f32(Min, 1.5, 2.0), 1.5);
        assert_eq!(aggregate_step_f32(Max, 1.5, 2.0), 2.0);
        assert_eq!(aggregate_end_f32(Sum, 6.5, 4, 0.5), 6.5);
        assert_eq!(aggregate_end_f32(Average, 6.0, 4, 0.5), 2.0);
        assert_eq!(aggregate_end_f32(Min, 6.0, 4, 0.5), 6.5);
        assert_eq!(aggregate_end_f32(Max, -6.0, 4, 0.5), -5.5);
    }

    fn forest(n_outputs: usize, post: PostTransform, task: Task) -> Forest {
        Forest {
            n_features: 1,
            feature_names: None,
            categorical_features: vec![],
            n_outputs,
            base_score: vec![0.0; n_outputs],
            aggregate: Aggregate::Sum,
            accumulate: Accumulate::F64,
            post_transform: post,
            task,
            class_labels: None,
            trees: vec![],
            predicts_label_only: false,
            source: SourceFormat::OnnxMl,
        }
    }

    fn finished(f: &Forest, raw: Vec<f64>) -> Predictions {
        let mut p = Predictions {
            n_rows: raw.len() / f.n_outputs,
            n_outputs: f.n_outputs,
            raw,
            n_scores: 0,
            scores: vec![],
            labels: None,
        };
        finish(f, &mut p);
        p
    }

    #[test]
    fn regressors_answer_their_transformed_raw_scores() {
        let f = forest(2, PostTransform::Exp, Task::Regression);
        let p = finished(&f, vec![0.0, 1.0, -1.0, 2.0]);
        assert_eq!(p.n_scores, 2);
        assert_eq!(p.labels, None);
        assert_eq!(p.scores_row(0), [1.0, std::f64::consts::E]);
        assert_eq!(p.scores_row(1)[0], (-1.0f64).exp());
        assert_eq!(p.scores_row(1)[1], 2.0f64.exp());
        assert_eq!(p.raw_row(1), [-1.0, 2.0]);
        assert_eq!(p.raw_row(0), [0.0, 1.0]);
    }

    #[test]
    fn binary_classifiers_answer_two_probabilities() {
        let one_minus = Task::Classification {
            n_classes: 2,
            binary: BinaryScores::OneMinus,
        };
        let f = forest(1, PostTransform::Logistic, one_minus);
        let p = finished(&f, vec![0.0, 2.0, -2.0]);
        assert_eq!(p.n_scores, 2);
        assert_eq!(p.scores_row(0), [0.5, 0.5]);
        let s = 0.8807970779778823;
        assert!(close(p.scores_row(1)[1], s, 1e-15) && close(p.scores_row(1)[0], 1.0 - s, 1e-15));
        assert!(close(p.scores_row(2)[0], s, 1e-15) && close(p.scores_row(2)[1], 1.0 - s, 1e-15));
        assert_eq!(p.labels, Some(vec![0, 1, 0]));
        // ONNX Runtime's rule: scores [-s, s], then the transform.
        let negate = Task::Classification {
            n_classes: 2,
            binary: BinaryScores::NegatePositive,
        };
        let f = forest(1, PostTransform::Softmax, negate.clone());
        let p = finished(&f, vec![1.0, -0.5]);
        let e = (-2.0f64).exp();
        assert!(
            close(p.scores_row(0)[0], e / (1.0 + e), 1e-15),
            "{:?}",
            p.scores
        );
        assert!(
            close(p.scores_row(0)[1], 1.0 / (1.0 + e), 1e-15),
            "{:?}",
            p.scores
        );
        assert_eq!(p.labels, Some(vec![1, 0]));
        let f = forest(1, PostTransform::Identity, negate);
        let p = finished(&f, vec![0.25]);
        assert_eq!(p.scores, [-0.25, 0.25]);
    }

    #[test]
    fn multiclass_scores_and_labels_per_row() {
        let task = Task::Classification {
            n_classes: 3,
            binary: BinaryScores::PerClass,
        };
        let f = forest(3, PostTransform::Softmax, task);
        let p = finished(&f, vec![1.0, 2.0, 3.0, 0.0, 0.0, -1.0]);
        assert_eq!(p.n_scores, 3);
        assert!(close(p.scores_row(0)[2], 0.6652409557748219, 1e-15));
        assert!(close(p.scores_row(1)[0], p.scores_row(1)[1], 0.0));
        let sum: f64 = p.scores_row(1).iter().sum();
        assert!(close(sum, 1.0, 1e-15));
        assert_eq!(p.labels, Some(vec![2, 0]));
    }
}
