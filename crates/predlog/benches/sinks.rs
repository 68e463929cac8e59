//! What a prediction record costs the SQLite writer: batches of 512 single-row records (the
//! outputs of the bundled iris model: a label and three probabilities) written to a SQLite
//! file in a temporary folder, and the record's text alone, for comparison.
//!
//!     cargo bench -p ferroserve-predlog --bench sinks

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferroserve_core::{Tensor, TensorData};
use ferroserve_predlog::sqlite::{Retention, SqliteSink};
use ferroserve_predlog::{Record, Sink, Values};

fn record(i: u64) -> Arc<Record> {
    Arc::new(Record {
        id: format!("fs-19ad3c2e1f0-{i:x}"),
        time_ms: 1_764_670_000_000 + i as i64,
        model: "iris".into(),
        version: 1,
        protocol: "http_v2",
        route: "/v2/models/iris/infer".into(),
        status: 200,
        error: None,
        latency_us: 41,
        rows: 1,
        rows_omitted: 0,
        inputs: None,
        outputs: Some(Values::Tensors(vec![
            Tensor::new("label", vec![1], TensorData::Int64(vec![(i % 3) as i64])),
            Tensor::new(
                "probabilities",
                vec![1, 3],
                TensorData::Fp32(vec![0.93, 0.05 + (i % 7) as f32 * 0.001, 0.02]),
            ),
        ])),
    })
}

fn sinks(c: &mut Criterion) {
    let batch: Vec<Arc<Record>> = (0..512).map(record).collect();
    let mut g = c.benchmark_group("prediction log");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("record text (outputs), 512 records", |b| {
        b.iter(|| {
            batch
                .iter()
                .map(|r| r.outputs_text().map_or(0, |t| t.len()))
                .sum::<usize>()
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let mut sink = SqliteSink::open(dir.path(), Retention::default()).unwrap();
    g.bench_function("SQLite write, 512 records", |b| {
        b.iter(|| sink.write(&batch).unwrap())
    });
    g.finish();
}

criterion_group!(benches, sinks);
criterion_main!(benches);
