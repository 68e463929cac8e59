//! Times ferroserve's ONNX Runtime backend on one model, for `bench/onnx/bench.py`: single-row
//! latency (median and p99 over many calls) and the time of one 10,000-row batch (median of
//! several), with the request → ONNX Runtime → response conversions included. Prints one JSON
//! line.
//!
//! `cargo run --release -p ferroserve-onnx --example time_onnx -- MODEL.onnx N_FEATURES [SINGLE_CALLS] [BATCH_REPEATS]`

use std::time::Instant;

use ferroserve_core::model::Batch;
use ferroserve_core::{ModelConfig, Tensor, TensorData};
use ferroserve_onnx::OnnxModel;

fn rows(n: usize, nf: usize) -> Vec<f32> {
    // Deterministic values in a plausible range (what the benchmark feeds both sides).
    (0..n * nf)
        .map(|i| ((i * 7919 % 1000) as f32 / 100.0) - 5.0)
        .collect()
}

fn batch(n: usize, nf: usize) -> Batch {
    Batch {
        inputs: vec![Tensor::new(
            "input",
            vec![n as i64, nf as i64],
            TensorData::Fp32(rows(n, nf)),
        )],
        rows: n,
        outputs: vec![],
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: time_onnx MODEL.onnx N_FEATURES [SINGLE_CALLS] [BATCH_REPEATS]");
        std::process::exit(2);
    }
    let nf: usize = args[2].parse().expect("N_FEATURES");
    let calls: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let repeats: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(20);
    let model = OnnxModel::load(&ModelConfig::default(), std::path::Path::new(&args[1]))
        .unwrap_or_else(|e| panic!("{e}"));
    // One instance, as one instance thread of the server runs it.
    let mut model = std::sync::Arc::new(model)
        .new_instance()
        .unwrap_or_else(|e| panic!("{e}"));

    let one = batch(1, nf);
    for _ in 0..1000 {
        model.run(&one).expect("run");
    }
    let mut lat = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        std::hint::black_box(model.run(&one).expect("run"));
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);

    let big = batch(10_000, nf);
    model.run(&big).expect("run");
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        std::hint::black_box(model.run(&big).expect("run"));
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let batch_s = percentile(&times, 0.5);
    println!(
        "{{\"single_median_us\": {:.3}, \"single_p99_us\": {:.3}, \"batch10k_ms\": {:.3}, \"rows_per_s\": {:.0}}}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        batch_s * 1e3,
        10_000.0 / batch_s
    );
}
