//! What an API key check costs a request, in-process: `http_need` (classifying the route) plus
//! `Auth::check` (hashing the presented key, comparing it with every configured key, the key's
//! rate bucket, the model check, the counters), against 1 and 20 configured keys. The HTTP
//! figures are bench/auth.py's (docs/benchmarks.md).
//!
//! ```text
//! cargo bench -p ferroserve-server --bench auth
//! ```

use axum::http::{HeaderMap, Method};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ferroserve_server::auth::{http_need, sha256_hex, Auth, AuthConfig};

fn auth_with(keys: usize) -> (tempfile::TempDir, Auth) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("keys.toml");
    let mut text = String::new();
    for i in 0..keys {
        text += &format!(
            "[[keys]]\nname = \"k{i}\"\nsha256 = \"{}\"\nscopes = [\"infer\"]\nmodels = [\"iris\", \"wine\"]\nrate = \"1000000000/s\"\n\n",
            sha256_hex(&format!("bench-key-{i}"))
        );
    }
    std::fs::write(&p, text).unwrap();
    let auth = Auth::new(AuthConfig {
        keys_file: Some(p),
        ..AuthConfig::default()
    })
    .unwrap();
    (dir, auth)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("auth");
    for keys in [1usize, 20] {
        let (_dir, auth) = auth_with(keys);
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer bench-key-{}", keys - 1).parse().unwrap(),
        );
        g.bench_function(format!("classify + check, {keys} keys"), |b| {
            b.iter(|| {
                let need = http_need(
                    &Method::POST,
                    Some("/v2/models/{model}/infer"),
                    black_box("/v2/models/iris/infer"),
                );
                black_box(auth.check(black_box(&headers), &need).unwrap());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
