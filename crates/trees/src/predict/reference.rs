//! The reference predictor: the most obvious reading of the IR's semantics, one row and one node
//! at a time. It is the oracle the fast predictor is tested against; it is never on a hot path.

use super::{
    aggregate_end, aggregate_end_f32, aggregate_start, aggregate_start_f32, aggregate_step,
    aggregate_step_f32, finish, Predictions,
};
use crate::ir::{Accumulate, Cmp, Forest, LeafKind, Missing, Tree, ZERO_THRESHOLD};

/// Decides whether `x` goes to the left child of split node `i`.
pub fn goes_left(tree: &Tree, i: usize, x: f32) -> bool {
    let mut x = x as f64;
    match tree.missing[i] {
        Missing::Default => {
            if x.is_nan() {
                return tree.default_left[i];
            }
        }
        Missing::AsZero => {
            if x.is_nan() {
                x = 0.0;
            }
        }
        Missing::ZeroOrNan => {
            if x.is_nan() || (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&x) {
                return tree.default_left[i];
            }
        }
    }
    let t = tree.threshold[i];
    match tree.cmp[i] {
        Cmp::Lt => x < t,
        Cmp::Le => x <= t,
        Cmp::Gt => x > t,
        Cmp::Ge => x >= t,
        Cmp::Eq => x == t,
        Cmp::Ne => x != t,
        Cmp::InSet(s) => {
            if tree.cat_truncate_first {
                // LightGBM truncates first: (-1, 0) is category 0 there.
                x = x.trunc();
            }
            in_category_set(&tree.cat_sets[s as usize], x)
        }
    }
}

/// Whether `x` (not NaN) names a category of `set`: truncated toward zero; negative values and
/// values too large for a category are in no set.
pub fn in_category_set(set: &[u32], x: f64) -> bool {
    if !(x >= 0.0 && x < u32::MAX as f64) {
        return false;
    }
    set.binary_search(&(x as u32)).is_ok()
}

/// Walks `tree` for one row and returns the leaf's node id.
pub fn leaf_of(tree: &Tree, row: &[f32]) -> usize {
    let mut i = 0usize;
    while !tree.is_leaf[i] {
        let x = row[tree.feature[i] as usize];
        i = if goes_left(tree, i, x) {
            tree.left[i] as usize
        } else {
            tree.right[i] as usize
        };
    }
    i
}

/// Predicts `rows` (row-major, `forest.n_features` values per row; NaN is missing).
pub fn predict_reference(forest: &Forest, rows: &[f32]) -> Predictions {
    let nf = forest.n_features;
    assert!(
        nf > 0 && rows.len().is_multiple_of(nf),
        "rows must be whole rows"
    );
    let n_rows = rows.len() / nf;
    let n_out = forest.n_outputs;
    let per_output = forest.trees_per_output();
    let mut raw = vec![0.0f64; n_rows * n_out];
    for r in 0..n_rows {
        let row = &rows[r * nf..(r + 1) * nf];
        for o in 0..n_out {
            let base = forest.base_score[o];
            let n_trees = per_output[o];
            // Each tree contributes to column `o` either through a scalar leaf aimed at it or
            // through column `o` of a vector leaf.
            let contributions = forest.trees.iter().filter_map(|tree| {
                let leaf = leaf_of(tree, row);
                match tree.leaf_kind {
                    LeafKind::Scalar { output } if output as usize == o => Some(tree.values[leaf]),
                    LeafKind::Scalar { .. } => None,
                    LeafKind::Vector => Some(tree.values[leaf * n_out + o]),
                }
            });
            raw[r * n_out + o] = match forest.accumulate {
                Accumulate::F64 => {
                    let acc = contributions.fold(aggregate_start(forest.aggregate), |acc, v| {
                        aggregate_step(forest.aggregate, acc, v)
                    });
                    aggregate_end(forest.aggregate, acc, n_trees, base)
                }
                Accumulate::F32 => {
                    let acc = contributions
                        .fold(aggregate_start_f32(forest.aggregate, base), |acc, v| {
                            aggregate_step_f32(forest.aggregate, acc, v as f32)
                        });
                    aggregate_end_f32(forest.aggregate, acc, n_trees, base as f32) as f64
                }
            };
        }
    }
    let mut p = Predictions {
        n_rows,
        n_outputs: n_out,
        raw,
        n_scores: 0,
        scores: Vec::new(),
        labels: None,
    };
    finish(forest, &mut p);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_sets_hold_truncated_non_negative_values_that_fit() {
        let set = [0, 3, 7, u32::MAX - 1, u32::MAX];
        assert!(in_category_set(&set, 0.0));
        assert!(in_category_set(&set, 3.0));
        assert!(in_category_set(&set, 3.9), "truncated toward zero");
        assert!(in_category_set(&set, 7.5));
        assert!(!in_category_set(&set, 4.0));
        assert!(!in_category_set(&set, -3.0));
        assert!(!in_category_set(&set, f64::INFINITY));
        assert!(!in_category_set(&set, f64::NAN));
        assert!(in_category_set(&set, (u32::MAX - 1) as f64));
        // u32::MAX itself is too large to be a category.
        assert!(!in_category_set(&set, u32::MAX as f64));
        assert!(!in_category_set(&set, 1e10));
    }
}
