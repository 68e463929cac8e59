//! Times the fast predictor on a model file and a file of input rows, for the `bench/trees`
//! harness (which times the libraries' own predict on the same files in the same run).
//!
//! ```text
//! time_engine MODEL INPUT.f32 [--reps N] [--single-reps N] [--out SCORES.f64] [--threads N]
//!             [--walk lockstep|early-exit]
//! ```
//!
//! `INPUT.f32` is raw little-endian `f32`, row-major, `n_features` values per row. Prints one JSON
//! object: the median nanoseconds of one whole-batch `predict` (probabilities and labels
//! included, as the libraries' `predict` answers them) and of one single-row `predict`, each over
//! `N` repetitions. `--out` writes the batch's transformed scores (little-endian `f64`,
//! `n_rows * n_scores`) so that the harness can check the answers before trusting the times.
//! `--walk` overrides the walk the engine chose for the forest (the JSON names the one used and
//! the forest's shape).

use std::hint::black_box;
use std::time::Instant;

use ferroserve_trees::{load_path, CompiledForest, Walk};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let (mut reps, mut single_reps, mut threads) = (7usize, 7usize, 1usize);
    let mut out = None;
    let mut walk = None;
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match a.as_str() {
            "--reps" => reps = num("--reps").max(1),
            "--single-reps" => single_reps = num("--single-reps"),
            "--threads" => threads = num("--threads").max(1),
            "--out" => out = Some(args.next().expect("--out needs a path")),
            "--walk" => {
                walk = Some(match args.next().as_deref() {
                    Some("lockstep") => Walk::Lockstep,
                    Some("early-exit") => Walk::EarlyExit,
                    w => panic!("--walk lockstep|early-exit, not {w:?}"),
                })
            }
            _ => positional.push(a),
        }
    }
    let [model, input] = positional.as_slice() else {
        eprintln!("usage: time_engine MODEL INPUT.f32 [--reps N] [--single-reps N] [--out SCORES.f64] [--threads N] [--walk lockstep|early-exit]");
        std::process::exit(2);
    };

    let t = Instant::now();
    let forest = load_path(model.as_ref()).unwrap_or_else(|e| panic!("{model}: {e}"));
    let n_trees = forest.trees.len();
    let mut engine = CompiledForest::new(forest).with_threads(threads);
    if let Some(w) = walk {
        engine = engine.with_walk(w);
    }
    let load_ms = t.elapsed().as_secs_f64() * 1e3;

    let bytes = std::fs::read(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    let rows: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let nf = engine.forest().n_features;
    assert!(
        rows.len().is_multiple_of(nf),
        "input is not whole rows of {nf}"
    );
    let n_rows = rows.len() / nf;

    // Warm-up, and the answers the harness checks.
    let p = engine.predict(&rows);
    if let Some(path) = out {
        let mut b = Vec::with_capacity(p.scores.len() * 8);
        for s in &p.scores {
            b.extend_from_slice(&s.to_le_bytes());
        }
        std::fs::write(&path, b).unwrap_or_else(|e| panic!("{path}: {e}"));
    }

    let mut batch = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        black_box(engine.predict(black_box(&rows)));
        batch.push(t.elapsed().as_nanos() as f64);
    }
    let batch_min_ns = batch.iter().copied().fold(f64::INFINITY, f64::min);
    let batch_ns = median(batch);

    // Single rows: one `predict` call per row, cycling through every row of the input so the
    // branch predictor cannot learn one path; the time of a pass divided by its rows.
    let mut single = Vec::with_capacity(single_reps);
    let pass = n_rows.min(10_000);
    for _ in 0..single_reps {
        let t = Instant::now();
        for r in 0..pass {
            black_box(engine.predict(black_box(&rows[r * nf..(r + 1) * nf])));
        }
        single.push(t.elapsed().as_nanos() as f64 / pass as f64);
    }
    // JSON has no NaN or infinity: no single-row passes print null.
    let json_ns = |v: f64| {
        if v.is_finite() {
            format!("{v:.3}")
        } else {
            "null".to_string()
        }
    };
    let single_ns = if single.is_empty() {
        f64::NAN
    } else {
        median(single.clone())
    };
    let single_min_ns = single.iter().copied().fold(f64::INFINITY, f64::min);

    let shape = engine.shape();
    println!(
        "{{\"model\":{:?},\"walk\":\"{:?}\",\"mean_max_depth\":{:.3},\"mean_path_depth\":{:.3},\"trees\":{n_trees},\"rows\":{n_rows},\"features\":{nf},\"threads\":{threads},\"reps\":{reps},\"load_ms\":{load_ms:.3},\"batch_ns\":{batch_ns:.0},\"batch_min_ns\":{batch_min_ns:.0},\"single_min_ns\":{},\"per_row_ns\":{:.3},\"single_row_ns\":{}}}",
        model,
        engine.walk(),
        shape.mean_max_depth,
        shape.mean_path_depth,
        json_ns(single_min_ns),
        batch_ns / n_rows as f64,
        json_ns(single_ns),
    );
}
