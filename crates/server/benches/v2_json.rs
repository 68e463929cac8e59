//! Reading a 1,000-row v2 JSON request (the bundled `breast_cancer` model's 30 features, its
//! sample rows repeated, each float in its shortest form as clients write them) in-process:
//! `parse_request` against, in the same run, serde_json only checking the body
//! (`IgnoredAny`, the floor of any serde-based reader) and serde_json computing the same data
//! as `f64`s and narrowing them (the way the request was read before).
//!
//! ```text
//! cargo bench -p ferroserve-server --bench v2_json
//! ```

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferroserve_server::v2::json::parse_request;
use serde::de::IgnoredAny;
use serde::Deserialize;

fn body(rows: usize) -> Vec<u8> {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/models/expected.json"
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(root).unwrap()).unwrap();
    let sample = doc["breast_cancer"]["rows"].as_array().unwrap();
    let cols = sample[0].as_array().unwrap().len();
    let mut data = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for x in sample[r % sample.len()].as_array().unwrap() {
            data.push(x.as_f64().unwrap() as f32);
        }
    }
    // Written from `f32`s, so each number is the shortest text of its f32 (serde_json's `json!`
    // would widen them to f64 and write 17 digits).
    #[derive(serde::Serialize)]
    struct In<'a> {
        name: &'a str,
        shape: [usize; 2],
        datatype: &'a str,
        data: Vec<f32>,
    }
    #[derive(serde::Serialize)]
    struct Req<'a> {
        inputs: [In<'a>; 1],
    }
    serde_json::to_vec(&Req {
        inputs: [In {
            name: "input",
            shape: [rows, cols],
            datatype: "FP32",
            data,
        }],
    })
    .unwrap()
}

#[derive(Deserialize)]
struct OldInput {
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    shape: Vec<i64>,
    #[allow(dead_code)]
    datatype: String,
    data: Vec<f64>,
}

#[derive(Deserialize)]
struct OldRequest {
    inputs: Vec<OldInput>,
}

fn bench(c: &mut Criterion) {
    let b = body(1000);
    let mut g = c.benchmark_group("v2_json_1000_rows");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("serde_json check only (IgnoredAny)", |bn| {
        bn.iter(|| serde_json::from_slice::<IgnoredAny>(black_box(&b)).unwrap())
    });
    g.bench_function("serde_json f64 then f32 (before)", |bn| {
        bn.iter(|| {
            let r: OldRequest = serde_json::from_slice(black_box(&b)).unwrap();
            r.inputs[0]
                .data
                .iter()
                .map(|&x| x as f32)
                .collect::<Vec<f32>>()
        })
    });
    g.bench_function("parse_request", |bn| {
        bn.iter(|| parse_request(black_box(&b)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
