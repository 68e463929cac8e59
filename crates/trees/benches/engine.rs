//! Criterion benchmarks of the fast predictor on one thread: a 10,000-row batch and single-row
//! latency, per model.
//!
//! Models: the files named in `FERROSERVE_BENCH_MODELS` (comma-separated paths; `bash
//! bench/trees/run.sh` leaves the harness's models in `bench/out/trees/`), otherwise a few
//! committed fixtures. Rows: `FERROSERVE_BENCH_ROWS` (raw little-endian `f32`, whole rows of the
//! model's width) when set, otherwise 10,000 deterministic rows drawn from the range of each
//! feature's thresholds in the model, so that every branch is taken.
//!
//! ```text
//! cargo bench -p ferroserve-trees --bench engine
//! FERROSERVE_BENCH_MODELS=bench/out/trees/xgb_binary.json cargo bench -p ferroserve-trees --bench engine
//! ```
//!
//! The library-vs-ferroserve ratios live in `bench/trees/` (see `docs/benchmarks.md`).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferroserve_trees::{load_path, CompiledForest, Forest};

const BATCH_ROWS: usize = 10_000;

fn models() -> Vec<PathBuf> {
    if let Ok(list) = std::env::var("FERROSERVE_BENCH_MODELS") {
        return list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| PathBuf::from(s.trim()))
            .collect();
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    [
        "xgb_breast_cancer.json",
        "xgb_iris_softprob.json",
        "lgb_binary.txt",
        "lgb_multiclass.txt",
        "skl_iris_rf.onnx",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}

/// A small deterministic generator (xorshift64*), so the rows are the same in every run.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Rows whose feature values span the thresholds the model splits on (a margin either side).
fn synthetic_rows(forest: &Forest, n: usize) -> Vec<f32> {
    let nf = forest.n_features;
    let mut lo = vec![f64::INFINITY; nf];
    let mut hi = vec![f64::NEG_INFINITY; nf];
    for tree in &forest.trees {
        for i in 0..tree.len() {
            let t = tree.threshold[i];
            if !tree.is_leaf[i] && t.is_finite() {
                let f = tree.feature[i] as usize;
                lo[f] = lo[f].min(t);
                hi[f] = hi[f].max(t);
            }
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rows = Vec::with_capacity(n * nf);
    for _ in 0..n {
        for f in 0..nf {
            let (a, b) = if lo[f] <= hi[f] {
                let m = (hi[f] - lo[f]).max(1e-3) * 0.1;
                (lo[f] - m, hi[f] + m)
            } else {
                (0.0, 1.0)
            };
            rows.push((a + (b - a) * rng.next_f64()) as f32);
        }
    }
    rows
}

fn rows_for(forest: &Forest) -> Vec<f32> {
    match std::env::var_os("FERROSERVE_BENCH_ROWS") {
        Some(p) => {
            let bytes = std::fs::read(&p).expect("FERROSERVE_BENCH_ROWS");
            let rows: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            assert!(
                rows.len().is_multiple_of(forest.n_features),
                "not whole rows"
            );
            rows
        }
        None => synthetic_rows(forest, BATCH_ROWS),
    }
}

fn engine(c: &mut Criterion) {
    for path in models() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let forest = load_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let rows = rows_for(&forest);
        let engine = CompiledForest::new(forest).with_threads(1);
        let nf = engine.forest().n_features;
        let n_rows = rows.len() / nf;

        let mut g = c.benchmark_group(format!("trees/{name}"));
        g.sample_size(20);
        g.throughput(Throughput::Elements(n_rows as u64));
        g.bench_function(BenchmarkId::new("batch", n_rows), |b| {
            b.iter(|| black_box(engine.predict(black_box(&rows))))
        });
        // Single rows: one call per row, cycling through the rows so the path changes.
        g.throughput(Throughput::Elements(1));
        let mut r = 0usize;
        g.bench_function("single_row", |b| {
            b.iter(|| {
                r = if r + 1 == n_rows { 0 } else { r + 1 };
                black_box(engine.predict(black_box(&rows[r * nf..(r + 1) * nf])))
            })
        });
        g.finish();
    }
}

criterion_group!(benches, engine);
criterion_main!(benches);
