//! `ferroserve batch`, the client-side batch runner, run as a subprocess against the real
//! server on 127.0.0.1, directly or through a proxy written here (it answers 503 for a while,
//! slows answers down, and records every request, to show that only the v2 protocol is used).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ferroserve, Server};
use serde_json::{json, Value};

const IRIS_COLUMNS: &str = "sepal_length,sepal_width,petal_length,petal_width";

/// `n` iris-like rows, the same every time; about one cell in 40 is missing (NaN: the trees
/// route missing values as trained).
fn iris_rows(n: usize) -> Vec<[Option<f64>; 4]> {
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (lo, hi) = ([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5]);
    (0..n)
        .map(|_| {
            let mut r = [None; 4];
            for (j, cell) in r.iter_mut().enumerate() {
                let u = (next() % 10_000) as f64 / 10_000.0;
                if next() % 40 != 0 {
                    // One decimal, as measured.
                    *cell = Some(((lo[j] + u * (hi[j] - lo[j])) * 10.0).round() / 10.0);
                }
            }
            r
        })
        .collect()
}

fn cell(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "NaN".into())
}

fn write_csv(path: &Path, rows: &[[Option<f64>; 4]]) {
    let mut s = format!("{IRIS_COLUMNS}\n");
    for r in rows {
        let cells: Vec<String> = r.iter().map(|&c| cell(c)).collect();
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// JSON Lines: arrays, objects in column order and objects in another order, by turns.
fn write_jsonl(path: &Path, rows: &[[Option<f64>; 4]]) {
    let names: Vec<&str> = IRIS_COLUMNS.split(',').collect();
    let mut s = String::new();
    for (i, r) in rows.iter().enumerate() {
        let vals: Vec<Value> = r.iter().map(|c| json!(c)).collect();
        let line = match i % 3 {
            0 => {
                let mut m = String::from("{");
                for (j, n) in names.iter().enumerate() {
                    if j > 0 {
                        m.push(',');
                    }
                    m.push_str(&format!("\"{n}\":{}", vals[j]));
                }
                m + "}"
            }
            1 => serde_json::to_string(&vals).unwrap(),
            _ => {
                let mut m = String::from("{");
                for (j, n) in names.iter().enumerate().rev() {
                    if j < 3 {
                        m.push(',');
                    }
                    m.push_str(&format!("\"{n}\":{}", vals[j]));
                }
                m + "}"
            }
        };
        s.push_str(&line);
        s.push('\n');
        if i == 10 {
            s.push('\n'); // a blank line is not a row
        }
    }
    std::fs::write(path, s).unwrap();
}

/// The server's own answers to the rows, asked for in big v2 requests: (label, probabilities)
/// per row.
fn online(server: &Server, rows: &[[Option<f64>; 4]]) -> Vec<(Value, Vec<Value>)> {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut out = Vec::new();
    for part in rows.chunks(5000) {
        let data: Vec<Value> = part.iter().flatten().map(|c| json!(c)).collect();
        let body = json!({"inputs": [{"name": "input", "shape": [part.len(), 4], "datatype": "FP32", "data": data}]});
        let r: Value = c
            .post(server.url("/v2/models/iris/infer"))
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let outs = r["outputs"].as_array().unwrap();
        let by = |n: &str| {
            outs.iter().find(|o| o["name"] == n).unwrap()["data"]
                .as_array()
                .unwrap()
                .clone()
        };
        let (labels, probs) = (by("label"), by("probabilities"));
        for i in 0..part.len() {
            out.push((labels[i].clone(), probs[3 * i..3 * i + 3].to_vec()));
        }
    }
    out
}

struct Run {
    code: Option<i32>,
    stderr: String,
}

/// Starts `ferroserve batch ARGS` (progress off).
fn spawn_batch(args: &[&str]) -> Child {
    ferroserve()
        .arg("batch")
        .arg("--no-progress")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferroserve batch")
}

/// Runs `ferroserve batch ARGS` to its end (at most 180 s).
fn batch(args: &[&str]) -> Run {
    let child = spawn_batch(args);
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(180)) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            // Only the process this test started, by its PID.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("ferroserve batch {args:?} did not finish within 180 s");
        }
    };
    Run {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_csv_of_20000_rows_gets_the_online_answers_row_by_row_and_so_does_json_lines_to_csv() {
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let rows = iris_rows(20_000);
    assert!(rows.iter().flatten().any(Option::is_none));
    let want = online(&server, &rows);

    let input = dir.path().join("iris.csv");
    write_csv(&input, &rows);
    let out = dir.path().join("out.jsonl");
    let r = batch(&[
        "--url",
        &server.base,
        "--model",
        "iris",
        s(&input),
        "-o",
        s(&out),
        "--chunk-rows",
        "700",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("20000 rows ok, 0 rows failed"),
        "{}",
        r.stderr
    );
    let got = lines(&out);
    assert_eq!(got.len(), rows.len());
    for (i, (g, (label, probs))) in got.iter().zip(&want).enumerate() {
        assert_eq!(g["row"], i, "{g}");
        assert_eq!(&g["label"], label, "row {i}");
        assert_eq!(g["probabilities"].as_array().unwrap(), probs, "row {i}");
    }
    assert!(!dir.path().join("out.jsonl.failed.jsonl").exists());
    let ck: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out.jsonl.checkpoint")).unwrap())
            .unwrap();
    assert_eq!(ck["state"], "complete");
    assert_eq!(ck["rows_ok"], 20_000);

    // JSON Lines in (arrays and objects in any key order), CSV out, only the probabilities.
    let input = dir.path().join("iris.jsonl");
    write_jsonl(&input, &rows);
    let out = dir.path().join("out.csv");
    let r = batch(&[
        "--url",
        &server.base,
        "--model",
        "iris",
        "--version",
        "1",
        s(&input),
        "-o",
        s(&out),
        "--concurrency",
        "3",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut csv_lines = text.lines();
    assert_eq!(
        csv_lines.next(),
        Some("row,label,probabilities_0,probabilities_1,probabilities_2")
    );
    let mut n = 0;
    for (i, (line, (label, probs))) in csv_lines.zip(&want).enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[0], i.to_string());
        assert_eq!(f[1], label.as_str().unwrap(), "row {i}");
        for k in 0..3 {
            assert_eq!(
                f[2 + k].parse::<f64>().unwrap(),
                probs[k].as_f64().unwrap(),
                "row {i}"
            );
        }
        n += 1;
    }
    assert_eq!(n, rows.len());
}

/// What the proxy saw and does.
#[derive(Default)]
struct ProxyState {
    /// Infer requests answered 503 before forwarding starts.
    refuse_first: u64,
    /// Delay before each infer request is forwarded.
    delay: Duration,
    infers: AtomicU64,
    refused: AtomicU64,
    /// (method, path, body) of every request.
    seen: Mutex<Vec<(String, String, Vec<u8>)>>,
}

struct Proxy {
    base: String,
    state: Arc<ProxyState>,
    _rt: tokio::runtime::Runtime,
}

/// A proxy on 127.0.0.1 in front of `target`.
fn proxy(target: &str, refuse_first: u64, delay: Duration) -> Proxy {
    use axum::body::{to_bytes, Body};
    use axum::extract::{Request, State};
    use axum::response::Response;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = Arc::new(ProxyState {
        refuse_first,
        delay,
        ..Default::default()
    });
    let target = target.to_string();
    let client = reqwest::Client::new();
    async fn handle(
        State((st, target, client)): State<(Arc<ProxyState>, String, reqwest::Client)>,
        req: Request,
    ) -> Response {
        let (method, path) = (req.method().to_string(), req.uri().path().to_string());
        let headers = req.headers().clone();
        let body = to_bytes(req.into_body(), usize::MAX).await.unwrap();
        st.seen
            .lock()
            .unwrap()
            .push((method.clone(), path.clone(), body.to_vec()));
        if path.ends_with("/infer") {
            let n = st.infers.fetch_add(1, Ordering::SeqCst);
            if n < st.refuse_first {
                st.refused.fetch_add(1, Ordering::SeqCst);
                let mut r = Response::builder().status(503);
                if n % 3 == 0 {
                    r = r.header("retry-after", "1");
                }
                return r
                    .body(Body::from(r#"{"error":"busy, try again"}"#))
                    .unwrap();
            }
            tokio::time::sleep(st.delay).await;
        }
        let mut fwd = client.request(method.parse().unwrap(), format!("{target}{path}"));
        if let Some(ct) = headers.get("content-type") {
            fwd = fwd.header("content-type", ct.clone());
        }
        let resp = fwd.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(bytes))
            .unwrap()
    }
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state((state.clone(), target, client));
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Proxy {
        base: format!("http://{addr}"),
        state,
        _rt: rt,
    }
}

#[test]
fn a_server_answering_503_for_a_while_is_retried_and_only_v2_routes_are_used() {
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let rows = iris_rows(3000);
    let input = dir.path().join("in.csv");
    write_csv(&input, &rows);
    let p = proxy(&server.base, 6, Duration::ZERO);
    let out = dir.path().join("out.jsonl");
    let r = batch(&[
        "--url",
        &p.base,
        "--model",
        "iris",
        s(&input),
        "-o",
        s(&out),
        "--chunk-rows",
        "500",
        "--concurrency",
        "2",
        "--header",
        "X-Test: yes",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(p.state.refused.load(Ordering::SeqCst), 6);
    // Six chunks, each sent once more per 503 it got.
    assert_eq!(p.state.infers.load(Ordering::SeqCst), 6 + 6);
    assert!(r.stderr.contains("6 retries"), "{}", r.stderr);
    let got = lines(&out);
    let want = online(&server, &rows);
    assert_eq!(got.len(), 3000);
    for (i, (g, (label, probs))) in got.iter().zip(&want).enumerate() {
        assert_eq!(g["row"], i);
        assert_eq!(&g["label"], label, "row {i}");
        assert_eq!(g["probabilities"].as_array().unwrap(), probs, "row {i}");
    }
    // The v2 protocol only: model metadata, then infer with v2 JSON tensors.
    let seen = p.state.seen.lock().unwrap();
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        ("GET", "/v2/models/iris")
    );
    for (method, path, body) in seen.iter().skip(1) {
        assert_eq!(
            (method.as_str(), path.as_str()),
            ("POST", "/v2/models/iris/infer")
        );
        let b: Value = serde_json::from_slice(body).expect("the body is JSON");
        let inputs = b["inputs"].as_array().unwrap();
        assert_eq!(inputs.len(), 1, "{b}");
        let t = &inputs[0];
        assert_eq!(t["name"], "input");
        assert_eq!(t["datatype"], "FP32");
        assert_eq!(t["shape"], json!([500, 4]));
        assert_eq!(t["data"].as_array().unwrap().len(), 2000);
        for key in b.as_object().unwrap().keys() {
            assert!(
                ["inputs", "outputs", "id", "parameters"].contains(&key.as_str()),
                "{key}"
            );
        }
    }
}

fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

#[test]
fn a_killed_run_resumes_to_the_same_output_byte_for_byte() {
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let rows = iris_rows(20_000);
    let input = dir.path().join("in.csv");
    write_csv(&input, &rows);
    // The run to compare with, uninterrupted.
    let whole = dir.path().join("whole.jsonl");
    let r = batch(&[
        "--url",
        &server.base,
        "--model",
        "iris",
        s(&input),
        "-o",
        s(&whole),
        "--chunk-rows",
        "200",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    let p = proxy(&server.base, 0, Duration::from_millis(60));
    let out = dir.path().join("out.jsonl");
    let args = [
        "--url",
        &p.base,
        "--model",
        "iris",
        s(&input),
        "-o",
        s(&out),
        "--chunk-rows",
        "200",
        "--concurrency",
        "3",
    ];
    let mut child = spawn_batch(&args);
    let t = Instant::now();
    while count_lines(&out) < 2000 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no 2000 rows written within 60 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "finished too soon");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL, to the process this test started.
    child.kill().unwrap();
    child.wait().unwrap();
    let written = count_lines(&out);
    assert!(written < 20_000, "{written}");
    let ck: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out.jsonl.checkpoint")).unwrap())
            .unwrap();
    assert_eq!(ck["state"], "running");

    let r = batch(&args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("resuming after"), "{}", r.stderr);
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&whole).unwrap(),
        "the resumed output differs from the uninterrupted one"
    );
    // Requests of the second run start after what the first wrote.
    let infers = p.state.infers.load(Ordering::SeqCst);
    assert!(infers < 100 + 100, "{infers}");

    // A finished run is not run again; a changed input is not resumed.
    let r = batch(&args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("already complete"), "{}", r.stderr);
    write_csv(&input, &rows[..19_999]);
    let r = batch(&args);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("input file changed") && r.stderr.contains("--restart"),
        "{}",
        r.stderr
    );
    let mut restart = args.to_vec();
    restart.push("--restart");
    let r = batch(&restart);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count_lines(&out), 19_999);
}

#[test]
fn bad_rows_end_in_the_failed_file_and_the_exit_status_is_3() {
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let rows = iris_rows(100);
    let mut text = format!("{IRIS_COLUMNS}\n");
    for (i, r) in rows.iter().enumerate() {
        let mut cells: Vec<String> = r.iter().map(|&c| cell(c)).collect();
        match i {
            17 => cells[1] = "abc".into(),  // refused here, before sending
            55 => cells[2] = "1e39".into(), // refused by the server (beyond FP32): its chunk fails
            _ => {}
        }
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    let input = dir.path().join("in.csv");
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out.jsonl");
    let failed = dir.path().join("bad.jsonl");
    let r = batch(&[
        "--url",
        &server.base,
        "--model",
        "iris",
        s(&input),
        "-o",
        s(&out),
        "--chunk-rows",
        "10",
        "--failed",
        s(&failed),
        "--outputs",
        "label",
    ]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(
        r.stderr.contains("89 rows ok, 11 rows failed"),
        "{}",
        r.stderr
    );
    let bad = lines(&failed);
    assert_eq!(bad.len(), 11);
    assert_eq!(bad[0]["row"], 17);
    let e = bad[0]["error"].as_str().unwrap();
    assert!(
        e.contains("sepal_width") && e.contains("\"abc\" is not a number"),
        "{e}"
    );
    assert_eq!(bad[0]["input"]["sepal_width"], "abc");
    let rows_failed: Vec<u64> = bad[1..]
        .iter()
        .map(|b| b["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows_failed, (50..60).collect::<Vec<_>>());
    for b in &bad[1..] {
        let e = b["error"].as_str().unwrap();
        assert!(
            e.starts_with("400 Bad Request") && e.contains("1e39"),
            "{e}"
        );
    }
    assert_eq!(bad[6]["input"]["petal_length"], "1e39");
    let good = lines(&out);
    assert_eq!(good.len(), 89);
    let numbers: Vec<u64> = good.iter().map(|g| g["row"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (0..100)
        .filter(|i| *i != 17 && !(50..60).contains(i))
        .collect();
    assert_eq!(numbers, want);
    // Only the output asked for.
    assert_eq!(good[0].as_object().unwrap().len(), 2, "{}", good[0]);
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    write_csv(&input, &iris_rows(5));
    let out: PathBuf = dir.path().join("out.jsonl");
    let base = ["--url", &server.base, s(&input), "-o", s(&out)];

    let r = batch(&[&base[..], &["--model", "no_such_model"]].concat());
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("model \"no_such_model\" not found") && r.stderr.contains("404"),
        "{}",
        r.stderr
    );
    let r = batch(&[&base[..], &["--model", "iris", "--version", "7"]].concat());
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("version 7 not found"), "{}", r.stderr);

    // Columns that do not fit the model's input.
    let wide = dir.path().join("wide.csv");
    std::fs::write(&wide, "a,b,c,d,e\n1,2,3,4,5\n").unwrap();
    let r = batch(&[
        "--url",
        &server.base,
        "--model",
        "iris",
        s(&wide),
        "-o",
        s(&out),
    ]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("5 columns (a, b, c, d, e)") && r.stderr.contains("takes 4 values"),
        "{}",
        r.stderr
    );
    // An output the model does not have, a shard beyond the count.
    let r = batch(&[&base[..], &["--model", "iris", "--outputs", "bogus"]].concat());
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("no output bogus"), "{}", r.stderr);
    let r = batch(
        &[
            &base[..],
            &[
                "--model",
                "iris",
                "--shard-count",
                "2",
                "--shard-index",
                "2",
            ],
        ]
        .concat(),
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    // Nothing listening.
    let r = batch(&[
        "--url",
        "http://127.0.0.1:9",
        "--model",
        "iris",
        "--retries",
        "1",
        s(&input),
        "-o",
        s(&out),
    ]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("cannot connect"), "{}", r.stderr);
}

#[test]
fn shards_split_the_chunks_and_merge_back_in_row_order() {
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    write_csv(&input, &iris_rows(2500));
    let whole = dir.path().join("whole.jsonl");
    let r = batch(&[
        "--url",
        &server.base,
        "--model",
        "iris",
        s(&input),
        "-o",
        s(&whole),
        "--chunk-rows",
        "300",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let mut merged: Vec<Value> = Vec::new();
    for i in 0..3 {
        let out = dir.path().join(format!("out-{i}.jsonl"));
        let mut cmd = ferroserve();
        let st = cmd
            .args([
                "batch",
                "--no-progress",
                "--url",
                &server.base,
                "--model",
                "iris",
            ])
            .args([
                s(&input),
                "-o",
                s(&out),
                "--chunk-rows",
                "300",
                "--shard-count",
                "3",
            ])
            .env("JOB_COMPLETION_INDEX", i.to_string())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(0));
        let part = lines(&out);
        for l in &part {
            let chunk = l["row"].as_u64().unwrap() / 300;
            assert_eq!(chunk % 3, i, "{l}");
        }
        merged.extend(part);
    }
    merged.sort_by_key(|l| l["row"].as_u64().unwrap());
    assert_eq!(merged, lines(&whole));
}

/// A v2 server written here for a model of several one-column inputs (FP64 `x`, INT64 `k`
/// `[-1, 1]`, BYTES `s`): it answers `total` = x + k (FP64 `[n]`) and `echo` = s (BYTES
/// `[n, 1]`), and refuses a request whose tensors are not what the metadata says.
fn columns_server() -> (String, tokio::runtime::Runtime) {
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use axum::Json;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    async fn infer(Json(b): Json<Value>) -> (StatusCode, Json<Value>) {
        let t = |name: &str| {
            b["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == name)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let (x, k, s) = (t("x"), t("k"), t("s"));
        let n = x["data"].as_array().map(Vec::len).unwrap_or(0);
        let ok = x["datatype"] == "FP64"
            && x["shape"] == json!([n])
            && k["datatype"] == "INT64"
            && k["shape"] == json!([n, 1])
            && s["datatype"] == "BYTES"
            && s["shape"] == json!([n])
            && b["inputs"].as_array().unwrap().len() == 3;
        if !ok {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("unexpected request {b}")})),
            );
        }
        let total: Vec<Value> = (0..n)
            .map(|i| json!(x["data"][i].as_f64().unwrap() + k["data"][i].as_i64().unwrap() as f64))
            .collect();
        (
            StatusCode::OK,
            Json(json!({"model_name": "cols", "outputs": [
                {"name": "total", "datatype": "FP64", "shape": [n], "data": total},
                {"name": "echo", "datatype": "BYTES", "shape": [n, 1], "data": s["data"]},
            ]})),
        )
    }
    let app = axum::Router::new()
        .route(
            "/v2/models/cols",
            get(|| async {
                Json(
                    json!({"name": "cols", "versions": ["1"], "platform": "test",
                    "inputs": [
                        {"name": "x", "datatype": "FP64", "shape": [-1]},
                        {"name": "k", "datatype": "INT64", "shape": [-1, 1]},
                        {"name": "s", "datatype": "BYTES", "shape": [-1]}],
                    "outputs": [
                        {"name": "total", "datatype": "FP64", "shape": [-1]},
                        {"name": "echo", "datatype": "BYTES", "shape": [-1, 1]}]}),
                )
            }),
        )
        .route("/v2/models/cols/infer", post(infer));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), rt)
}

#[test]
fn several_one_column_inputs_are_matched_to_columns_by_name_with_their_datatypes() {
    let (base, _rt) = columns_server();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let mut text = String::from("s,extra,k,x\n");
    for i in 0..250 {
        text.push_str(&format!("\"name, {i}\",zz,{i},{}.5\n", i * 2));
    }
    text.push_str("bad,zz,1.5,2\n"); // row 250: 1.5 is not an INT64
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out.jsonl");
    let r = batch(&[
        "--url",
        &base,
        "--model",
        "cols",
        s(&input),
        "-o",
        s(&out),
        "--chunk-rows",
        "64",
    ]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("not sent: extra"), "{}", r.stderr);
    let got = lines(&out);
    assert_eq!(got.len(), 250);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            *g,
            json!({"row": i, "total": (i * 2) as f64 + 0.5 + i as f64, "echo": [format!("name, {i}")]})
        );
    }
    let bad = lines(&dir.path().join("out.jsonl.failed.jsonl"));
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["row"], 250);
    assert!(
        bad[0]["error"]
            .as_str()
            .unwrap()
            .contains("column k: \"1.5\" is not an integer"),
        "{}",
        bad[0]
    );

    // CSV out: one column per scalar output, name_i for the others.
    let out = dir.path().join("out.csv");
    let r = batch(&["--url", &base, "--model", "cols", s(&input), "-o", s(&out)]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut l = text.lines();
    assert_eq!(l.next(), Some("row,total,echo_0"));
    assert_eq!(l.next(), Some("0,0.5,\"name, 0\""));
}
