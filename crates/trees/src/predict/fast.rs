//! The fast batch predictor.
//!
//! At load time ([`CompiledForest::new`]) every tree is flattened into one array of 16-byte nodes
//! whose two children sit side by side, and every ordinary split is rewritten as "second child
//! unless `y < u`" on `f32`, where `y` is `x`, or `-x` when missing values go left (thresholds
//! rounded in the direction that keeps each decision identical to the `f64` comparison of the
//! IR, children swapped to match). NaN fails every compare, so it takes the second child: missing
//! values cost nothing. A leaf has a NaN threshold and points at itself as second child, so a
//! walk can run a fixed number of levels without asking whether it has arrived. The rare splits
//! that do not fit (category sets, `==`/`!=`, LightGBM's zero band) are flagged, and trees holding
//! one are walked row by row with those splits decided by the reference code.
//!
//! Rows are walked in blocks: for each tree, the block's rows eight at a time in lockstep (one
//! level for all eight, then the next), so the processor overlaps eight independent chains of
//! loads and no branch depends on the data. The last rows of a batch (a single row, say) go the
//! other way: one row through eight trees in lockstep, in one of two ways chosen per forest at
//! load time ([`Walk::choose`] on the forest's [`Shape`]): eight consecutive trees each run to
//! the deepest leaf of the group for full trees, or, for lopsided forests, eight trees of about
//! the same depth stopped once all eight sit on leaves. Leaves are added in tree order per row,
//! so sums are bit-for-bit the reference's. Large batches are split across threads (`std::thread::scope`),
//! each writing its own rows of the output. Nothing is allocated per row.

use super::{aggregate_end, aggregate_end_f32, aggregate_start, aggregate_start_f32, finish};
use super::{reference, Predictions};
use crate::ir::{Accumulate, Aggregate, Cmp, Forest, LeafKind, Missing};

/// The split compares `-x` rather than `x` (the sign bit of an `f32`, so flipping it is one XOR).
const NEGATE: u32 = 1 << 31;
const LEAF: u32 = 1 << 30;
const COMPLEX: u32 = 1 << 29;

/// Rows walked together through one tree.
const BLOCK_ROWS: usize = 64;

/// Rows walked through a tree in lockstep, one level at a time: their node loads are independent,
/// so the processor overlaps them instead of waiting on one chain of loads.
const LANES: usize = 8;

/// `tree_depth` of a tree holding a complex split.
const COMPLEX_TREE: u32 = u32::MAX;

/// Trees per window of the early-exit single-row walk: it sorts the trees of a window by depth
/// and keeps their leaves in a stack array of this size until it adds them in tree order.
const WINDOW: usize = 256;

/// Below this many rows a batch is never split across threads: a thread costs more than it
/// saves.
pub const PARALLEL_MIN_ROWS: usize = 2048;

#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Node {
    /// Simple split: take the first child when `y < threshold` (see [`goes_second`]). Leaf:
    /// NaN. Complex split: `f32::from_bits(index)` into `CompiledForest::complex`.
    threshold: f32,
    /// The feature a split reads (0 for leaves).
    feature: u32,
    /// Flags: [`NEGATE`] for simple splits, which the walk XORs straight into the input's bits
    /// (so no other flag may be set on them), [`LEAF`], [`COMPLEX`].
    meta: u32,
    /// Split: index of the left child (the right child follows it). Leaf: its own index minus
    /// one (wrapping), so that a leaf, whose threshold is NaN and so always "goes right", is its
    /// own right child: walking past a leaf stays on it.
    child: u32,
}

/// How one row goes through the trees (a single-row request, and the last `n % 8` rows of a
/// batch; the rows of a batch go eight at a time through each tree in lockstep whatever the
/// walk). Both walks give the same answers, bit for bit; they differ in what they spend on
/// levels a row does not need. [`Walk::choose`] picks one per forest at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// Eight consecutive trees in lockstep, each group run to its deepest leaf without a branch:
    /// a walk that arrives early steps on the spot. Best when every tree is full, its leaves
    /// all at about the same depth (XGBoost's depth-wise trees).
    Lockstep,
    /// Eight trees of about the same depth in lockstep (the trees sorted by depth once, at load
    /// time; the leaves are still added in tree order), stopped as soon as a level moves none
    /// of the eight. Best when rows reach leaves far above the deepest (LightGBM's leaf-wise
    /// trees, random forests).
    EarlyExit,
}

impl Walk {
    /// Every walk, for tests and benchmarks.
    pub const ALL: [Walk; 2] = [Walk::Lockstep, Walk::EarlyExit];

    /// Below this ratio of [`Shape::mean_path_depth`] to [`Shape::mean_max_depth`], a forest
    /// is lopsided and gets [`Walk::EarlyExit`]. Measured on the benchmark and example models
    /// (docs/benchmarks.md, single row): full XGBoost trees sit at 0.87-0.99 and would lose
    /// 1-13% with the early exit; the LightGBM boosters (0.31-0.32) and the iris forest (0.44)
    /// gain 12-22%; the small diabetes (0.38) and wine (0.57) forests are even either way.
    pub const LOPSIDED: f64 = 0.75;

    /// The walk for a forest of this shape.
    pub fn choose(shape: &Shape) -> Walk {
        if shape.mean_path_depth < Self::LOPSIDED * shape.mean_max_depth {
            Walk::EarlyExit
        } else {
            Walk::Lockstep
        }
    }
}

/// What [`Walk::choose`] decides from, measured when a forest is compiled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub trees: usize,
    /// Mean over the trees of the depth of the deepest leaf: the levels a lockstep walk runs.
    pub mean_max_depth: f64,
    /// Mean over the trees of the depth a row reaches when every split sends it either way
    /// with equal odds (the sum over leaves of depth * 2^-depth): about what a walk that stops
    /// at the leaf runs. Far below `mean_max_depth` for lopsided trees.
    pub mean_path_depth: f64,
}

/// `LANES` trees that the single-row walk takes in lockstep.
#[derive(Clone, Copy, Debug)]
struct Group {
    trees: [u32; LANES],
    roots: [u32; LANES],
    /// The deepest of their leaves.
    depth: u32,
    /// The level from which [`Walk::EarlyExit`] asks whether all eight walks sit on leaves
    /// (at most `depth`).
    from: u32,
}

/// A split decided by the reference code: (tree, node in the IR tree).
#[derive(Clone, Copy, Debug)]
struct Complex {
    tree: u32,
    node: u32,
}

/// A forest compiled for fast prediction. Immutable; share it behind an `Arc`.
pub struct CompiledForest {
    forest: Forest,
    nodes: Vec<Node>,
    /// Index of each tree's root in `nodes`.
    roots: Vec<u32>,
    /// The output column of each scalar tree; `u32::MAX` for vector trees.
    tree_output: Vec<u32>,
    /// Depth of each tree (its deepest leaf), or [`COMPLEX_TREE`] for trees holding a complex
    /// split, which are walked row by row.
    tree_depth: Vec<u32>,
    /// [`Walk::Lockstep`]: each whole group of `LANES` consecutive trees (`depth` is
    /// [`COMPLEX_TREE`] when one of them holds a complex split); the trees after the last
    /// whole group are walked one at a time.
    groups_in_order: Vec<Group>,
    /// [`Walk::EarlyExit`], window by window of [`WINDOW`] consecutive trees: the window's
    /// trees without complex splits, `LANES` at a time in order of depth, so that the trees of
    /// a group are alike.
    groups_by_depth: Vec<Group>,
    /// [`Walk::EarlyExit`], window by window: the trees walked one at a time (those holding a
    /// complex split, and the fewer than `LANES` left over after the window's groups).
    singles: Vec<u32>,
    /// [`Walk::EarlyExit`]: where each window's groups and singles end in `groups_by_depth`
    /// and `singles`.
    windows: Vec<(u32, u32)>,
    /// How the trees are walked, chosen at load time from the forest's shape.
    walk: Walk,
    shape: Shape,
    /// For each leaf in `nodes`, the index of its first value in `leaf_values` (0 for splits).
    leaf_at: Vec<u32>,
    leaf_values: Vec<f64>,
    leaf_values_f32: Vec<f32>,
    complex: Vec<Complex>,
    /// Divisor of averages, per output column.
    trees_per_output: Vec<usize>,
    threads: usize,
}

/// Largest `f32` that is `<= t` (for finite `t`).
fn f32_round_down(t: f64) -> f32 {
    let f = t as f32;
    if (f as f64) > t {
        f.next_down()
    } else {
        f
    }
}

/// Smallest `f32` that is `>= t` (for finite `t`).
fn f32_round_up(t: f64) -> f32 {
    let f = t as f32;
    if (f as f64) < t {
        f.next_up()
    } else {
        f
    }
}

/// For an input `x: f32`, the threshold `u` such that `x < u` is exactly `(x as f64) < t`
/// (`strict`) or `(x as f64) <= t` (not strict). `None` when no such `f32` exists.
fn strict_threshold(t: f64, strict: bool) -> Option<f32> {
    if t.is_nan() {
        return None;
    }
    let u = if strict {
        // x < t  <=>  x < (smallest f32 >= t)
        f32_round_up(t)
    } else {
        // x <= t  <=>  x <= (largest f32 <= t)  <=>  x < next_up(that)
        let d = f32_round_down(t);
        if d == f32::INFINITY {
            return None;
        }
        d.next_up()
    };
    Some(u)
}

impl CompiledForest {
    /// Compiles `forest`. The forest must have passed [`Forest::validate`] (every loader does
    /// this).
    pub fn new(forest: Forest) -> Self {
        let mut nodes = Vec::new();
        let mut roots = Vec::with_capacity(forest.trees.len());
        let mut tree_output = Vec::with_capacity(forest.trees.len());
        let mut leaf_values = Vec::new();
        let mut leaf_at = Vec::new();
        let mut tree_depth = Vec::with_capacity(forest.trees.len());
        let mut tree_path_depth = Vec::with_capacity(forest.trees.len());
        let (mut max_depth_sum, mut path_depth_sum) = (0.0f64, 0.0f64);
        let mut complex = Vec::new();
        for (ti, tree) in forest.trees.iter().enumerate() {
            let width = forest.leaf_width(tree);
            tree_output.push(match tree.leaf_kind {
                LeafKind::Scalar { output } => output,
                LeafKind::Vector => u32::MAX,
            });
            let root = nodes.len();
            roots.push(root as u32);
            // Breadth-first, so that each split's children can be placed side by side.
            // `queue` holds (IR node, slot in `nodes` reserved for it).
            nodes.push(Node {
                threshold: 0.0,
                feature: 0,
                meta: 0,
                child: 0,
            });
            leaf_at.push(0);
            // Depth of each slot of this tree, by slot - root.
            let mut depth_of = vec![0u32];
            let (mut depth, mut has_complex) = (0u32, false);
            let mut path_depth = 0.0f64;
            let mut queue = std::collections::VecDeque::from([(0usize, root)]);
            while let Some((i, slot)) = queue.pop_front() {
                let d = depth_of[slot - root];
                depth = depth.max(d);
                if tree.is_leaf[i] {
                    path_depth += d as f64 * 0.5f64.powi(d as i32);
                    let at = leaf_values.len() as u32;
                    leaf_values.extend_from_slice(&tree.values[i * width..(i + 1) * width]);
                    leaf_at[slot] = at;
                    nodes[slot] = Node {
                        threshold: f32::NAN,
                        feature: 0,
                        meta: LEAF,
                        child: (slot as u32).wrapping_sub(1),
                    };
                    continue;
                }
                let (mut left, mut right) = (tree.left[i] as usize, tree.right[i] as usize);
                let mut default_left = tree.default_left[i];
                let t = tree.threshold[i];
                // Rewrite as `x < u` with the children in the right order, or flag as complex.
                let simple = match (tree.missing[i], tree.cmp[i]) {
                    (Missing::ZeroOrNan, _) | (_, Cmp::Eq | Cmp::Ne | Cmp::InSet(_)) => None,
                    (missing, cmp) => {
                        let (strict, swap) = match cmp {
                            Cmp::Lt => (true, false),
                            Cmp::Le => (false, false),
                            // x > t  <=>  !(x <= t);  x >= t  <=>  !(x < t)
                            Cmp::Gt => (false, true),
                            Cmp::Ge => (true, true),
                            Cmp::Eq | Cmp::Ne | Cmp::InSet(_) => unreachable!("matched above"),
                        };
                        if missing == Missing::AsZero {
                            // NaN is compared as 0.0: it goes where 0.0 goes.
                            default_left = reference::goes_left(tree, i, 0.0);
                        }
                        // NaN going left is decided on `-x`, which needs `-u` below +inf.
                        strict_threshold(t, strict)
                            .filter(|&u| !(u == f32::NEG_INFINITY && default_left != swap))
                            .map(|u| (u, swap))
                    }
                };
                let feature = tree.feature[i];
                // The lockstep walk reads features without bounds checks (see `step`).
                assert!(
                    (feature as usize) < forest.n_features,
                    "feature {feature} of {} (forest not validated)",
                    forest.n_features
                );
                let base = nodes.len() as u32;
                let node = match simple {
                    Some((u, swap)) => {
                        if swap {
                            std::mem::swap(&mut left, &mut right);
                            default_left = !default_left;
                        }
                        // Now: left when `x < u`, NaN to the default side. The step goes to
                        // the second child unless `y < u'`, so NaN always takes the second.
                        // NaN right: `y = x`, `u' = u`, children (left, right).
                        // NaN left: `y = -x`, `-x < u'` exactly when `x >= u`, children
                        // (right, left).
                        if default_left {
                            std::mem::swap(&mut left, &mut right);
                        }
                        Node {
                            threshold: if default_left { (-u).next_up() } else { u },
                            feature,
                            meta: if default_left { NEGATE } else { 0 },
                            child: base,
                        }
                    }
                    None => {
                        has_complex = true;
                        complex.push(Complex {
                            tree: ti as u32,
                            node: i as u32,
                        });
                        Node {
                            threshold: f32::from_bits(complex.len() as u32 - 1),
                            feature,
                            meta: COMPLEX,
                            child: base,
                        }
                    }
                };
                nodes[slot] = node;
                nodes.push(node); // placeholders, overwritten when popped
                nodes.push(node);
                leaf_at.extend([0, 0]);
                depth_of.extend([d + 1, d + 1]);
                queue.push_back((left, base as usize));
                queue.push_back((right, base as usize + 1));
            }
            tree_depth.push(if has_complex { COMPLEX_TREE } else { depth });
            tree_path_depth.push(path_depth);
            max_depth_sum += depth as f64;
            path_depth_sum += path_depth;
        }
        let leaf_values_f32 = leaf_values.iter().map(|&v| v as f32).collect();
        let trees_per_output = forest.trees_per_output();
        let group = |g: &[u32]| {
            let trees: [u32; LANES] = g.try_into().expect("whole group");
            Group {
                trees,
                roots: trees.map(|t| roots[t as usize]),
                depth: trees
                    .iter()
                    .map(|&t| tree_depth[t as usize])
                    .max()
                    .unwrap_or(0),
                // Asking earlier than the deepest of the trees' even-odds path depths would
                // mostly be answered no. (A path depth is a mean of leaf depths, so this lies
                // between the shallowest leaf and `depth`.)
                from: trees
                    .iter()
                    .map(|&t| tree_path_depth[t as usize] as u32)
                    .max()
                    .unwrap_or(0),
            }
        };
        let in_order: Vec<u32> = (0..forest.trees.len() as u32).collect();
        let groups_in_order = in_order.chunks_exact(LANES).map(group).collect();
        let (mut groups_by_depth, mut singles, mut windows) = (Vec::new(), Vec::new(), Vec::new());
        for window in in_order.chunks(WINDOW) {
            // The window's trees without complex splits by depth (ties in tree order).
            let mut by_depth: Vec<u32> = window
                .iter()
                .copied()
                .filter(|&t| tree_depth[t as usize] != COMPLEX_TREE)
                .collect();
            by_depth.sort_by_key(|&t| tree_depth[t as usize]);
            groups_by_depth.extend(by_depth.chunks_exact(LANES).map(group));
            let rest = by_depth.chunks_exact(LANES).remainder();
            singles.extend(
                window
                    .iter()
                    .copied()
                    .filter(|&t| tree_depth[t as usize] == COMPLEX_TREE || rest.contains(&t)),
            );
            windows.push((groups_by_depth.len() as u32, singles.len() as u32));
        }
        let n_trees = forest.trees.len().max(1) as f64;
        let shape = Shape {
            trees: forest.trees.len(),
            mean_max_depth: max_depth_sum / n_trees,
            mean_path_depth: path_depth_sum / n_trees,
        };
        CompiledForest {
            walk: Walk::choose(&shape),
            shape,
            groups_in_order,
            groups_by_depth,
            singles,
            windows,
            trees_per_output,
            forest,
            nodes,
            roots,
            tree_output,
            tree_depth,
            leaf_at,
            leaf_values,
            leaf_values_f32,
            complex,
            threads: 1,
        }
    }

    /// Walks the trees this way rather than the way [`Walk::choose`] picked (every walk gives the
    /// same answers; tests and benchmarks compare them).
    pub fn with_walk(mut self, walk: Walk) -> Self {
        self.walk = walk;
        self
    }

    /// The walk in use.
    pub fn walk(&self) -> Walk {
        self.walk
    }

    /// The forest's shape, measured at load time.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Sets how many threads a large batch may use (at least 1; default 1).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn forest(&self) -> &Forest {
        &self.forest
    }

    /// Predicts `rows` (row-major, `n_features` values per row, NaN for missing).
    ///
    /// # Panics
    /// If `rows.len()` is not a multiple of the number of features; callers validate shapes.
    pub fn predict(&self, rows: &[f32]) -> Predictions {
        let nf = self.forest.n_features;
        assert!(rows.len().is_multiple_of(nf), "rows must be whole rows");
        let n_rows = rows.len() / nf;
        let n_out = self.forest.n_outputs;
        let mut raw = vec![0.0f64; n_rows * n_out];
        self.predict_raw_into(rows, &mut raw);
        let mut p = Predictions {
            n_rows,
            n_outputs: n_out,
            raw,
            n_scores: 0,
            scores: Vec::new(),
            labels: None,
        };
        finish(&self.forest, &mut p);
        p
    }

    /// Writes the raw scores (aggregated leaves plus base score) of `rows` into `out`
    /// (`n_rows * n_outputs`), using up to the configured number of threads.
    pub fn predict_raw_into(&self, rows: &[f32], out: &mut [f64]) {
        let nf = self.forest.n_features;
        let n_out = self.forest.n_outputs;
        let n_rows = rows.len() / nf;
        assert_eq!(out.len(), n_rows * n_out, "output size");
        let Some(per) = rows_per_thread(self.threads, n_rows) else {
            self.raw_serial(rows, out);
            return;
        };
        std::thread::scope(|s| {
            for (r, o) in rows.chunks(per * nf).zip(out.chunks_mut(per * n_out)) {
                s.spawn(move || self.raw_serial(r, o));
            }
        });
    }

    fn raw_serial(&self, rows: &[f32], out: &mut [f64]) {
        let nf = self.forest.n_features;
        let n_out = self.forest.n_outputs;
        for (r, o) in rows
            .chunks(BLOCK_ROWS * nf)
            .zip(out.chunks_mut(BLOCK_ROWS * n_out))
        {
            match (self.forest.accumulate, self.forest.aggregate) {
                (Accumulate::F64, Aggregate::Sum | Aggregate::Average) => {
                    self.block::<f64, ADD>(r, o)
                }
                (Accumulate::F64, Aggregate::Min) => self.block::<f64, MIN>(r, o),
                (Accumulate::F64, Aggregate::Max) => self.block::<f64, MAX>(r, o),
                (Accumulate::F32, Aggregate::Sum | Aggregate::Average) => {
                    self.block::<f32, ADD>(r, o)
                }
                (Accumulate::F32, Aggregate::Min) => self.block::<f32, MIN>(r, o),
                (Accumulate::F32, Aggregate::Max) => self.block::<f32, MAX>(r, o),
            }
        }
    }

    /// One block of at most [`BLOCK_ROWS`] rows.
    fn block<A: Acc, const OP: u8>(&self, rows: &[f32], out: &mut [f64]) {
        let f = &self.forest;
        let nf = f.n_features;
        let n_out = f.n_outputs;
        let n = rows.len() / nf;
        // Running aggregates on the stack; a small array for a single row, where clearing the
        // block-sized one would cost as much as a few trees.
        let (mut small, mut block, mut big);
        let acc: &mut [A] = if n * n_out <= 16 {
            small = [A::ZERO; 16];
            &mut small[..n * n_out]
        } else if n * n_out <= BLOCK_ROWS * 4 {
            block = [A::ZERO; BLOCK_ROWS * 4];
            &mut block[..n * n_out]
        } else {
            big = vec![A::ZERO; n * n_out];
            &mut big
        };
        for r in 0..n {
            for o in 0..n_out {
                acc[r * n_out + o] = A::start(f.aggregate, f.base_score[o]);
            }
        }
        let leaves = A::leaves(self);
        // Whole groups of `LANES` rows: tree by tree, the rows of a group in lockstep.
        let full = n / LANES * LANES;
        for (t, &root) in self.roots.iter().enumerate() {
            let output = self.tree_output[t];
            let depth = self.tree_depth[t];
            if depth == COMPLEX_TREE {
                for r in 0..full {
                    let leaf = self.walk_one(root, &rows[r * nf..(r + 1) * nf]);
                    add_leaf::<A, OP>(&mut acc[r * n_out..(r + 1) * n_out], output, leaves, leaf);
                }
                continue;
            }
            for r in (0..full).step_by(LANES) {
                let ends = self.walk_lanes::<LANES>(root, depth, &rows[r * nf..(r + LANES) * nf]);
                for (k, &end) in ends.iter().enumerate() {
                    let a = &mut acc[(r + k) * n_out..(r + k + 1) * n_out];
                    add_leaf::<A, OP>(a, output, leaves, self.leaf_at[end as usize] as usize);
                }
            }
        }
        // The last few rows (all of them for a single row): row by row, `LANES` trees at a time
        // in lockstep, so that one row still gets independent chains of loads.
        match self.walk {
            Walk::Lockstep => {
                for r in full..n {
                    let row = &rows[r * nf..(r + 1) * nf];
                    self.row_in_order::<A, OP>(row, &mut acc[r * n_out..(r + 1) * n_out]);
                }
            }
            Walk::EarlyExit => {
                for r in full..n {
                    let row = &rows[r * nf..(r + 1) * nf];
                    self.row_by_depth::<A, OP>(row, &mut acc[r * n_out..(r + 1) * n_out]);
                }
            }
        }
        for r in 0..n {
            for o in 0..n_out {
                out[r * n_out + o] = A::end(
                    f.aggregate,
                    acc[r * n_out + o],
                    self.trees_per_output[o],
                    f.base_score[o],
                );
            }
        }
    }

    /// [`Walk::Lockstep`] for one row: `LANES` consecutive trees at a time, each group to its
    /// deepest leaf, adding each leaf to the row's aggregates `a` as it is reached.
    #[inline(always)]
    fn row_in_order<A: Acc, const OP: u8>(&self, row: &[f32], a: &mut [A]) {
        let leaves = A::leaves(self);
        for (g, t) in self.groups_in_order.iter().zip((0..).step_by(LANES)) {
            if g.depth == COMPLEX_TREE {
                for (k, &root) in g.roots.iter().enumerate() {
                    let leaf = self.walk_one(root, row);
                    add_leaf::<A, OP>(a, self.tree_output[t + k], leaves, leaf);
                }
            } else {
                let ends = self.walk_trees::<LANES, false>(&g.roots, 0, g.depth, row);
                for (k, &end) in ends.iter().enumerate() {
                    let leaf = self.leaf_at[end as usize] as usize;
                    add_leaf::<A, OP>(a, self.tree_output[t + k], leaves, leaf);
                }
            }
        }
        let rest = self.groups_in_order.len() * LANES;
        for (t, &root) in self.roots.iter().enumerate().skip(rest) {
            add_leaf::<A, OP>(a, self.tree_output[t], leaves, self.walk_one(root, row));
        }
    }

    /// [`Walk::EarlyExit`] for one row: window by window of [`WINDOW`] trees, the window's
    /// groups of trees of about the same depth, each stopped when all its walks sit on leaves;
    /// each tree's leaf is noted first and the window's leaves are added in tree order after, so
    /// that sums are the reference's, bit for bit.
    #[inline(always)]
    fn row_by_depth<A: Acc, const OP: u8>(&self, row: &[f32], a: &mut [A]) {
        let leaves = A::leaves(self);
        let mut leaf_of = [0u32; WINDOW];
        let (mut groups, mut singles) = (0, 0);
        for (w, &(groups_end, singles_end)) in self.windows.iter().enumerate() {
            let start = w * WINDOW;
            for g in &self.groups_by_depth[groups..groups_end as usize] {
                let ends = self.walk_trees::<LANES, true>(&g.roots, g.from, g.depth, row);
                for (&t, &end) in g.trees.iter().zip(&ends) {
                    leaf_of[t as usize - start] = self.leaf_at[end as usize];
                }
            }
            for &t in &self.singles[singles..singles_end as usize] {
                leaf_of[t as usize - start] = self.walk_one(self.roots[t as usize], row) as u32;
            }
            let outputs = self.tree_output[start..].iter().take(WINDOW);
            for (&leaf, &output) in leaf_of.iter().zip(outputs) {
                add_leaf::<A, OP>(a, output, leaves, leaf as usize);
            }
            (groups, singles) = (groups_end as usize, singles_end as usize);
        }
    }

    /// Walks `K` rows (`rows` holds exactly `K` rows) through a tree without complex splits,
    /// `depth` levels in lockstep, without a branch: a row that reaches a leaf early stays on it.
    /// Returns the leaf node of each row.
    #[inline(always)]
    fn walk_lanes<const K: usize>(&self, root: u32, depth: u32, rows: &[f32]) -> [u32; K] {
        let nodes = &self.nodes[..];
        let nf = self.forest.n_features;
        // Whole rows, checked once here (`step` relies on it).
        let lanes: [&[f32]; K] = std::array::from_fn(|k| &rows[k * nf..(k + 1) * nf]);
        let mut at = [root; K];
        for _ in 0..depth {
            for k in 0..K {
                at[k] = step(nodes, lanes[k], at[k]);
            }
        }
        at
    }

    /// Walks one row through `K` trees without complex splits, `depth` levels (the deepest of
    /// the trees) in lockstep, without a branch. With `EXIT`, from level `from` on, stops as
    /// soon as a level moves none of the walks: a leaf steps to itself, so that means all of
    /// them sit on leaves. Returns the leaf node reached in each tree.
    #[inline(always)]
    fn walk_trees<const K: usize, const EXIT: bool>(
        &self,
        roots: &[u32; K],
        from: u32,
        depth: u32,
        row: &[f32],
    ) -> [u32; K] {
        let nodes = &self.nodes[..];
        // A whole row, checked once here (`step` relies on it).
        let row = &row[..self.forest.n_features];
        let mut at = *roots;
        let sure = if EXIT { from } else { depth };
        for _ in 0..sure {
            for i in at.iter_mut() {
                *i = step(nodes, row, *i);
            }
        }
        if EXIT {
            for _ in sure..depth {
                let mut moved = false;
                for i in at.iter_mut() {
                    let next = step(nodes, row, *i);
                    moved |= next != *i;
                    *i = next;
                }
                if !moved {
                    break;
                }
            }
        }
        at
    }

    /// Walks one tree from `root` for one row, deciding complex splits with the reference code;
    /// returns the leaf's first value index.
    fn walk_one(&self, root: u32, row: &[f32]) -> usize {
        let nodes = &self.nodes[..];
        let mut i = root as usize;
        loop {
            let n = nodes[i];
            if n.meta & LEAF != 0 {
                return self.leaf_at[i] as usize;
            }
            let x = row[n.feature as usize];
            let second = if n.meta & COMPLEX == 0 {
                goes_second(n, x)
            } else {
                let c = self.complex[n.threshold.to_bits() as usize];
                !reference::goes_left(&self.forest.trees[c.tree as usize], c.node as usize, x)
            };
            i = n.child as usize + usize::from(second);
        }
    }
}

/// How a batch of `n_rows` rows is split across at most `threads` threads: `None` to compute it
/// on the caller's thread, else the rows each thread takes (whole blocks; the last thread takes
/// what is left). One thread per `PARALLEL_MIN_ROWS / 2` rows, none below `PARALLEL_MIN_ROWS`.
fn rows_per_thread(threads: usize, n_rows: usize) -> Option<usize> {
    let threads = threads.min(n_rows / (PARALLEL_MIN_ROWS / 2)).max(1);
    if threads <= 1 || n_rows < PARALLEL_MIN_ROWS {
        return None;
    }
    Some(n_rows.div_ceil(threads).div_ceil(BLOCK_ROWS) * BLOCK_ROWS)
}

/// One level of a lockstep walk: from node `i` of a tree without complex splits to the child
/// that `row` goes to (a leaf to itself).
#[inline(always)]
fn step(nodes: &[Node], row: &[f32], i: u32) -> u32 {
    debug_assert!((i as usize) < nodes.len());
    // SAFETY: both indices are in bounds by construction, so the checks are skipped on the
    // hottest line of the engine (about 10% of batch time):
    // - `i` is a root from `roots` or a value this function returned. `CompiledForest::new`
    //   places both children of every split inside `nodes` and gives each leaf `child = own
    //   index - 1` with a NaN threshold, so that it always steps to `child + 1`, itself.
    // - The feature of a split is below `n_features` (asserted by `CompiledForest::new`), and
    //   callers pass whole rows of `n_features` values. Leaves read feature 0, which exists:
    //   a walk only steps when some tree of the walk has a split, so `n_features >= 1`.
    let n = unsafe { *nodes.get_unchecked(i as usize) };
    let f = n.feature as usize;
    debug_assert!(f < row.len());
    let x = unsafe { *row.get_unchecked(f) };
    n.child.wrapping_add(u32::from(goes_second(n, x)))
}

/// Whether `x` goes to the second child of a simple split (a leaf is its own second child).
/// NaN always does: that is why the comparison is negated rather than flipped.
#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn goes_second(n: Node, x: f32) -> bool {
    let y = f32::from_bits(x.to_bits() ^ n.meta);
    !(y < n.threshold)
}

/// Adds a tree's leaf (its first value at `leaf`) to one row's running aggregates `acc`: to
/// column `output` for a scalar tree, to every column for a vector tree (`output == u32::MAX`).
#[inline(always)]
fn add_leaf<A: Acc, const OP: u8>(acc: &mut [A], output: u32, leaves: &[A], leaf: usize) {
    if output != u32::MAX {
        let a = &mut acc[output as usize];
        *a = A::step::<OP>(*a, leaves[leaf]);
    } else {
        // Random forests: few columns, known at compile time for the common widths.
        match acc.len() {
            2 => add_vector::<A, OP, 2>(acc, leaves, leaf),
            3 => add_vector::<A, OP, 3>(acc, leaves, leaf),
            4 => add_vector::<A, OP, 4>(acc, leaves, leaf),
            _ => {
                for (a, &v) in acc.iter_mut().zip(&leaves[leaf..]) {
                    *a = A::step::<OP>(*a, v);
                }
            }
        }
    }
}

/// [`add_leaf`] for a vector leaf of `W` values.
#[inline(always)]
fn add_vector<A: Acc, const OP: u8, const W: usize>(acc: &mut [A], leaves: &[A], leaf: usize) {
    let acc: &mut [A; W] = acc.try_into().expect("row width");
    let v: &[A; W] = leaves[leaf..leaf + W].try_into().expect("leaf width");
    for j in 0..W {
        acc[j] = A::step::<OP>(acc[j], v[j]);
    }
}

const ADD: u8 = 0;
const MIN: u8 = 1;
const MAX: u8 = 2;

/// The running-sum precision (see [`Accumulate`]).
trait Acc: Copy {
    const ZERO: Self;
    fn start(agg: Aggregate, base: f64) -> Self;
    fn step<const OP: u8>(acc: Self, v: Self) -> Self;
    fn end(agg: Aggregate, acc: Self, n_trees: usize, base: f64) -> f64;
    fn leaves(f: &CompiledForest) -> &[Self];
}

impl Acc for f64 {
    const ZERO: Self = 0.0;
    fn start(agg: Aggregate, _base: f64) -> Self {
        aggregate_start(agg)
    }
    #[inline(always)]
    fn step<const OP: u8>(acc: Self, v: Self) -> Self {
        match OP {
            ADD => acc + v,
            MIN => acc.min(v),
            _ => acc.max(v),
        }
    }
    fn end(agg: Aggregate, acc: Self, n_trees: usize, base: f64) -> f64 {
        aggregate_end(agg, acc, n_trees, base)
    }
    fn leaves(f: &CompiledForest) -> &[Self] {
        &f.leaf_values
    }
}

impl Acc for f32 {
    const ZERO: Self = 0.0;
    fn start(agg: Aggregate, base: f64) -> Self {
        aggregate_start_f32(agg, base)
    }
    #[inline(always)]
    fn step<const OP: u8>(acc: Self, v: Self) -> Self {
        match OP {
            ADD => acc + v,
            MIN => acc.min(v),
            _ => acc.max(v),
        }
    }
    fn end(agg: Aggregate, acc: Self, n_trees: usize, base: f64) -> f64 {
        aggregate_end_f32(agg, acc, n_trees, base as f32) as f64
    }
    fn leaves(f: &CompiledForest) -> &[Self] {
        &f.leaf_values_f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_keep_every_decision() {
        let ts = [
            0.1f64,
            -0.1,
            1.0,
            0.0,
            -0.0,
            1e-40,
            3.4028234663852886e38,
            1e39,
            -1e39,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.30000001192092896,
        ];
        for &t in &ts {
            let d = t as f32;
            let candidates = [
                d,
                d.next_up(),
                d.next_down(),
                0.0,
                -0.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::MAX,
                f32::MIN,
            ];
            for strict in [true, false] {
                let Some(u) = strict_threshold(t, strict) else {
                    // Only `x <= t` for a `t` at or beyond the largest f32 has no such `u`.
                    assert!(
                        !strict && t as f32 == f32::INFINITY,
                        "t={t} strict={strict}"
                    );
                    continue;
                };
                for &x in &candidates {
                    let want = if strict {
                        (x as f64) < t
                    } else {
                        (x as f64) <= t
                    };
                    assert_eq!(x < u, want, "t={t} strict={strict} x={x} u={u}");
                }
            }
        }
    }

    use crate::ir::{BinaryScores, PostTransform, SourceFormat, Task, Tree};

    /// A stump on `feature`: left when `x < t` (NaN right).
    fn stump(feature: u32, t: f64, left: &[f64], right: &[f64], kind: LeafKind) -> Tree {
        let mut tree = Tree {
            leaf_kind: kind,
            ..Tree::default()
        };
        let id = tree.push_split(
            feature,
            Cmp::Lt,
            t,
            Missing::Default,
            false,
            0,
            0,
            left.len(),
        );
        let l = tree.push_leaf(left);
        let r = tree.push_leaf(right);
        tree.set_children(id, l, r);
        tree
    }

    /// Five classes: ten scalar stumps (two per class) and one vector stump.
    fn five_classes() -> Forest {
        let mut trees: Vec<Tree> = (0..10u32)
            .map(|t| {
                let v = t as f64 * 0.125;
                stump(
                    t % 3,
                    0.5 - v,
                    &[v],
                    &[-v],
                    LeafKind::Scalar { output: t % 5 },
                )
            })
            .collect();
        trees.push(stump(
            1,
            0.0,
            &[0.5, 0.25, 0.0, -0.25, -0.5],
            &[-1.0, 0.0, 1.0, 2.0, 3.0],
            LeafKind::Vector,
        ));
        Forest {
            n_features: 3,
            feature_names: None,
            categorical_features: vec![],
            n_outputs: 5,
            base_score: vec![0.0, 0.1, 0.2, 0.3, 0.4],
            aggregate: Aggregate::Sum,
            accumulate: Accumulate::F64,
            post_transform: PostTransform::Softmax,
            task: Task::Classification {
                n_classes: 5,
                binary: BinaryScores::PerClass,
            },
            class_labels: None,
            trees,
            predicts_label_only: false,
            source: SourceFormat::OnnxMl,
        }
    }

    #[test]
    fn wide_rows_fill_whole_blocks_as_the_reference_does() {
        let forest = five_classes();
        forest.validate().unwrap();
        // 150 rows: two whole blocks of 64 (5 columns each: more than a block's stack array
        // holds) and a last block of 22, whose last 6 rows go row by row.
        let rows: Vec<f32> = (0..150 * 3)
            .map(|i| match i % 11 {
                0 => f32::NAN,
                k => (k as f32 - 5.0) * 0.2,
            })
            .collect();
        let want = reference::predict_reference(&forest, &rows);
        let got = CompiledForest::new(forest).predict(&rows);
        assert_eq!(got.n_rows, 150);
        assert_eq!(got.raw.len(), 150 * 5);
        for (i, (g, w)) in got.raw.iter().zip(&want.raw).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "raw[{i}]: fast {g} reference {w}");
        }
        assert_eq!(got.labels, want.labels);
        // One row by hand: x = (NaN, -0.8, -0.6) goes right on every feature-0 stump (NaN),
        // and on the others by its value.
        let row = [f32::NAN, -0.8, -0.6];
        let one = reference::predict_reference(&five_classes(), &row);
        let mut raw = [0.0, 0.1, 0.2, 0.3, 0.4];
        for t in 0..10 {
            let v = t as f64 * 0.125;
            let x = row[t % 3] as f64;
            raw[t % 5] += if x < 0.5 - v { v } else { -v };
        }
        for (o, add) in [0.5, 0.25, 0.0, -0.25, -0.5].iter().enumerate() {
            raw[o] += add;
        }
        for (g, w) in one.raw.iter().zip(raw) {
            assert!((g - w).abs() < 1e-12, "{:?} {raw:?}", one.raw);
        }
    }

    #[test]
    fn thresholds_for_exact_and_inexact_values() {
        assert_eq!(strict_threshold(0.5, true), Some(0.5));
        assert_eq!(strict_threshold(0.5, false), Some(0.5f32.next_up()));
        // 0.1 lies between two f32s: `x < 0.1` is `x < the one above`, `x <= 0.1` is `x <=
        // the one below`.
        assert_eq!(strict_threshold(0.1, true), Some(0.1f32));
        assert_eq!(strict_threshold(0.1, false), Some(0.1f32));
        assert_eq!(strict_threshold(f64::NAN, true), None);
        assert_eq!(strict_threshold(f64::INFINITY, true), Some(f32::INFINITY));
        assert_eq!(strict_threshold(f64::INFINITY, false), None);
    }

    #[test]
    fn large_batches_split_into_whole_blocks_per_thread() {
        assert_eq!(rows_per_thread(1, 100_000), None);
        assert_eq!(rows_per_thread(4, 2047), None);
        assert_eq!(rows_per_thread(4, 100), None);
        // From 2048 rows: one thread per 1024 rows, at most the configured number, each
        // taking a whole number of 64-row blocks.
        assert_eq!(rows_per_thread(4, 2048), Some(1024));
        assert_eq!(rows_per_thread(8, 3000), Some(1536));
        assert_eq!(rows_per_thread(4, 5000), Some(1280));
        assert_eq!(rows_per_thread(3, 100_000), Some(33344));
    }

    #[test]
    fn lopsided_forests_get_the_early_exit() {
        let shape = |max, path| Shape {
            trees: 100,
            mean_max_depth: max,
            mean_path_depth: path,
        };
        // The benchmark's XGBoost (full trees) and LightGBM (leaf-wise) boosters, iris.
        assert_eq!(Walk::choose(&shape(6.0, 5.24)), Walk::Lockstep);
        assert_eq!(Walk::choose(&shape(2.0, 1.93)), Walk::Lockstep);
        assert_eq!(Walk::choose(&shape(13.09, 4.14)), Walk::EarlyExit);
        assert_eq!(Walk::choose(&shape(5.40, 2.39)), Walk::EarlyExit);
        // The edge: exactly at the ratio stays in lockstep.
        assert_eq!(Walk::choose(&shape(8.0, 6.0)), Walk::Lockstep);
        assert_eq!(Walk::choose(&shape(8.0, 5.999)), Walk::EarlyExit);
        // Stumps and single leaves.
        assert_eq!(Walk::choose(&shape(1.0, 1.0)), Walk::Lockstep);
        assert_eq!(Walk::choose(&shape(0.0, 0.0)), Walk::Lockstep);
    }

    /// A chain: at each of `depth` levels a leaf on the left, the rest on the right.
    fn chain(depth: usize) -> Tree {
        let mut tree = Tree::default();
        let mut parent = None;
        for d in 0..depth {
            let id = tree.push_split(0, Cmp::Lt, d as f64, Missing::Default, false, 0, 0, 1);
            if let Some(p) = parent {
                let l = tree.left[p as usize];
                tree.set_children(p, l, id);
            }
            let leaf = tree.push_leaf(&[d as f64]);
            tree.set_children(id, leaf, 0);
            parent = Some(id);
        }
        let last = tree.push_leaf(&[-1.0]);
        if let Some(p) = parent {
            let l = tree.left[p as usize];
            tree.set_children(p, l, last);
        }
        tree
    }

    #[test]
    fn shape_is_measured_at_load() {
        let mut forest = five_classes();
        // Eleven stumps: every leaf at depth 1.
        let stumps = CompiledForest::new(forest.clone());
        assert_eq!(
            stumps.shape(),
            Shape {
                trees: 11,
                mean_max_depth: 1.0,
                mean_path_depth: 1.0,
            }
        );
        assert_eq!(stumps.walk(), Walk::Lockstep);
        // Plus a chain of depth 3 and a single leaf: leaves of the chain at depths 1, 2, 3, 3,
        // reached with odds 1/2, 1/4, 1/8, 1/8.
        forest.trees.push(chain(3));
        forest.trees.push(chain(0));
        forest.validate().unwrap();
        let f = CompiledForest::new(forest);
        let s = f.shape();
        assert_eq!(s.trees, 13);
        assert_eq!(s.mean_max_depth, (11.0 + 3.0) / 13.0);
        assert_eq!(s.mean_path_depth, (11.0 + 0.5 + 0.5 + 0.75) / 13.0);
        assert_eq!(f.walk(), Walk::Lockstep);
        // Forced, and chosen for a forest that is mostly chains.
        assert_eq!(f.with_walk(Walk::EarlyExit).walk(), Walk::EarlyExit);
        let mut chains = five_classes();
        chains.trees = (0..9).map(|d| chain(d % 5 + 2)).collect();
        assert_eq!(CompiledForest::new(chains).walk(), Walk::EarlyExit);
    }

    #[test]
    fn threads_are_at_least_one() {
        let f = CompiledForest::new(five_classes());
        assert_eq!(f.threads(), 1);
        assert_eq!(f.with_threads(3).threads(), 3);
        assert_eq!(
            CompiledForest::new(five_classes())
                .with_threads(0)
                .threads(),
            1
        );
    }
}
