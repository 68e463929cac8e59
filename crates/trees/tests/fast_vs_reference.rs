//! Property test: the fast predictor gives bit-for-bit the reference predictor's answers, on
//! random forests (every comparison, missing mode, category sets, scalar and vector leaves, every
//! aggregate and both accumulation precisions) and random rows (NaN, zeros, infinities, values
//! on thresholds), single-threaded and split across threads.

use ferroserve_trees::ir::{
    Accumulate, Aggregate, BinaryScores, Cmp, Forest, LeafKind, Missing, PostTransform,
    SourceFormat, Task, Tree,
};
use ferroserve_trees::{predict_reference, CompiledForest, Walk};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

const N_FEATURES: usize = 5;

/// Interesting values: the thresholds the trees use, their neighbours, specials.
fn value_pool() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        2.0,
        3.0,
        1e-36,
        -1e-36,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    for t in [0.1f32, 0.5, 1.0, 2.5, -0.3] {
        v.extend([t, t.next_up(), t.next_down()]);
    }
    v
}

fn thresholds() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(0.5),
        Just(1.0),
        Just(2.5),
        Just(-0.3),
        Just(0.1f64),        // not an f32
        Just(0.1f32 as f64), // exactly an f32
        Just(1e39),          // beyond f32
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        -3.0f64..3.0,
    ]
}

fn cmp_kind() -> impl Strategy<Value = u8> {
    0u8..8
}

fn missing_kind() -> impl Strategy<Value = Missing> {
    prop_oneof![
        4 => Just(Missing::Default),
        1 => Just(Missing::AsZero),
        1 => Just(Missing::ZeroOrNan)
    ]
}

#[derive(Debug, Clone)]
struct SplitSpec {
    feature: u32,
    cmp: u8,
    threshold: f64,
    missing: Missing,
    default_left: bool,
    set: Vec<u32>,
}

fn split_spec() -> impl Strategy<Value = SplitSpec> {
    (
        0..N_FEATURES as u32,
        cmp_kind(),
        thresholds(),
        missing_kind(),
        any::<bool>(),
        proptest::collection::btree_set(0u32..6, 0..4),
    )
        .prop_map(
            |(feature, cmp, threshold, missing, default_left, set)| SplitSpec {
                feature,
                cmp,
                threshold,
                missing,
                default_left,
                set: set.into_iter().collect(),
            },
        )
}

/// How a random tree is grown.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Only `<`, `<=`, `>`, `>=` splits without LightGBM's zero band: no complex splits.
    simple: bool,
    /// 0: every leaf at the full depth; higher: more leaves higher up.
    early: u8,
}

/// A random tree of the given depth, grown from a flat list of split specs and leaf values.
fn build_tree(
    splits: &[SplitSpec],
    leaves: &[f64],
    depth: usize,
    width: usize,
    kind: LeafKind,
    shape: Shape,
) -> Tree {
    let mut tree = Tree {
        leaf_kind: kind,
        ..Tree::default()
    };
    let mut si = 0;
    let mut li = 0;
    #[allow(clippy::too_many_arguments)]
    fn grow(
        tree: &mut Tree,
        splits: &[SplitSpec],
        leaves: &[f64],
        si: &mut usize,
        li: &mut usize,
        depth: usize,
        width: usize,
        shape: Shape,
    ) -> u32 {
        // Some leaves above the bottom level, so that trees are unbalanced.
        let early = (*si * 7 + depth) % 5 < shape.early as usize;
        if depth == 0 || *si >= splits.len() || (*si > 0 && early) {
            let vals: Vec<f64> = (0..width)
                .map(|k| leaves[(*li + k) % leaves.len()])
                .collect();
            *li += width;
            return tree.push_leaf(&vals);
        }
        let s = splits[*si].clone();
        *si += 1;
        let cmp = match if shape.simple { s.cmp % 4 } else { s.cmp } {
            0 => Cmp::Lt,
            1 => Cmp::Le,
            2 => Cmp::Gt,
            3 => Cmp::Ge,
            4 => Cmp::Eq,
            5 => Cmp::Ne,
            _ => {
                tree.cat_sets.push(s.set.clone());
                Cmp::InSet(tree.cat_sets.len() as u32 - 1)
            }
        };
        let missing = match s.missing {
            Missing::ZeroOrNan if shape.simple => Missing::Default,
            m => m,
        };
        let id = tree.push_split(
            s.feature,
            cmp,
            s.threshold,
            missing,
            s.default_left,
            0,
            0,
            width,
        );
        let l = grow(tree, splits, leaves, si, li, depth - 1, width, shape);
        let r = grow(tree, splits, leaves, si, li, depth - 1, width, shape);
        tree.set_children(id, l, r);
        id
    }
    grow(
        &mut tree, splits, leaves, &mut si, &mut li, depth, width, shape,
    );
    tree
}

fn forest_strategy() -> impl Strategy<Value = Forest> {
    (
        1usize..4,  // n_outputs
        1usize..20, // trees (past one lockstep group of 8)
        0usize..5,  // depth
        proptest::collection::vec(split_spec(), 40),
        proptest::collection::vec(-2.0f64..2.0, 1..20),
        prop_oneof![
            Just(Aggregate::Sum),
            Just(Aggregate::Average),
            Just(Aggregate::Min),
            Just(Aggregate::Max)
        ],
        prop_oneof![Just(Accumulate::F32), Just(Accumulate::F64)],
        any::<bool>(), // vector leaves
        proptest::collection::vec(-1.0f64..1.0, 3),
        any::<bool>(), // only splits the fast predictor decides itself
        0u8..3,        // how often a leaf comes early
    )
        .prop_map(
            |(
                n_out,
                n_trees,
                depth,
                splits,
                leaves,
                aggregate,
                accumulate,
                vector,
                base,
                simple,
                early,
            )| {
                let trees = (0..n_trees)
                    .map(|t| {
                        let (kind, width) = if vector {
                            (LeafKind::Vector, n_out)
                        } else {
                            (
                                LeafKind::Scalar {
                                    output: (t % n_out) as u32,
                                },
                                1,
                            )
                        };
                        let off = (t * 7) % splits.len();
                        let mut rotated = splits[off..].to_vec();
                        rotated.extend_from_slice(&splits[..off]);
                        let shape = Shape { simple, early };
                        build_tree(&rotated, &leaves, (depth + t) % 6, width, kind, shape)
                    })
                    .collect();
                Forest {
                    n_features: N_FEATURES,
                    feature_names: None,
                    categorical_features: vec![],
                    n_outputs: n_out,
                    base_score: base[..n_out].to_vec(),
                    aggregate,
                    accumulate,
                    post_transform: if n_out > 1 {
                        PostTransform::Softmax
                    } else {
                        PostTransform::Logistic
                    },
                    task: if n_out > 1 {
                        Task::Classification {
                            n_classes: n_out,
                            binary: BinaryScores::PerClass,
                        }
                    } else {
                        Task::Classification {
                            n_classes: 2,
                            binary: BinaryScores::OneMinus,
                        }
                    },
                    class_labels: None,
                    trees,
                    predicts_label_only: false,
                    source: SourceFormat::OnnxMl,
                }
            },
        )
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn fast_equals_reference(forest in forest_strategy(), picks in (1usize..80).prop_flat_map(|n| proptest::collection::vec(0usize..1000, N_FEATURES * n))) {
        forest.validate().unwrap();
        let pool = value_pool();
        let rows: Vec<f32> = picks.iter().map(|&i| pool[i % pool.len()]).collect();
        let want = predict_reference(&forest, &rows);
        // Every walk, whichever this forest would get.
        for walk in Walk::ALL {
            let fast = CompiledForest::new(forest.clone()).with_walk(walk);
            let got = fast.predict(&rows);
            prop_assert_eq!(got.n_rows, want.n_rows);
            for (i, (g, w)) in got.raw.iter().zip(&want.raw).enumerate() {
                prop_assert!(same(*g, *w), "{:?} raw[{}]: fast {} reference {}", walk, i, g, w);
            }
            prop_assert_eq!(&got.labels, &want.labels);
        }
    }
}

/// A batch large enough to be split across threads answers exactly as one thread does.
#[test]
fn threads_do_not_change_answers() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let pool = value_pool();
    for case in 0..8 {
        let forest = forest_strategy().new_tree(&mut runner).unwrap().current();
        let n_rows = 5000 + case * 37;
        let rows: Vec<f32> = (0..n_rows * N_FEATURES)
            .map(|i| pool[((i * 2654435761usize) >> 7) % pool.len()])
            .collect();
        let one = CompiledForest::new(forest.clone()).predict(&rows);
        for walk in Walk::ALL {
            let four = CompiledForest::new(forest.clone())
                .with_walk(walk)
                .with_threads(4)
                .predict(&rows);
            assert_eq!(one.raw.len(), four.raw.len());
            assert!(one.raw.iter().zip(&four.raw).all(|(a, b)| same(*a, *b)));
        }
    }
}

/// Forests past the single-row walk's stack buffer of leaves (256 trees), their trees of every
/// depth in no order: each walk answers the reference's bits, row by row and in blocks.
#[test]
fn many_trees_of_mixed_depth_answer_alike_on_every_walk() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let pool = value_pool();
    for case in 0..4 {
        let mut forest = forest_strategy().new_tree(&mut runner).unwrap().current();
        let base = forest.trees.clone();
        while forest.trees.len() < 300 + case {
            let t = forest.trees.len();
            forest.trees.push(base[(t * 7 + case) % base.len()].clone());
        }
        forest.validate().unwrap();
        let n_rows = 13 + case;
        let rows: Vec<f32> = (0..n_rows * N_FEATURES)
            .map(|i| pool[((i * 2654435761usize) >> 5) % pool.len()])
            .collect();
        let want = predict_reference(&forest, &rows);
        for walk in Walk::ALL {
            let fast = CompiledForest::new(forest.clone()).with_walk(walk);
            let got = fast.predict(&rows);
            assert!(
                got.raw.iter().zip(&want.raw).all(|(g, w)| same(*g, *w)),
                "{walk:?}, {} trees",
                forest.trees.len()
            );
            for r in 0..n_rows {
                let one = fast.predict(&rows[r * N_FEATURES..(r + 1) * N_FEATURES]);
                assert!(one
                    .raw
                    .iter()
                    .zip(want.raw_row(r))
                    .all(|(g, w)| same(*g, *w)));
            }
        }
    }
}
