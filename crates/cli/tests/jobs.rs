//! End-to-end: batch jobs (`POST /jobs`) against the real binary over HTTP, with the jobs'
//! SQLite store in a temporary `--data-dir`: a job of a million rows gives the online answers,
//! row for row in input order; cancel; `kill -9` mid-job and a restart finish the job with every
//! row exactly once; bad rows fail their chunk, not the job's other rows; the Cortex tutorial's
//! batch endpoint (a route alias with `job = true`) through its own `test.py`; two servers
//! sharing one job through a real `redis-server` (`--jobs-redis`), one of them killed mid-job.

mod common;

use std::time::{Duration, Instant};

use common::{client, examples, free_port, multipart, repo_root, Redis, Server};
use serde_json::{json, Value};

/// `n` iris rows (a fixed generator), every 97th with an empty (missing) cell, as CSV with a
/// header row.
fn csv_rows(n: usize) -> Vec<u8> {
    let mut out = String::from("sepal_length,sepal_width,petal_length,petal_width\n");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..n {
        let mut cells = Vec::with_capacity(4);
        for c in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 97 == 0 && c == 2 {
                cells.push(String::from("nan"));
            } else {
                cells.push(format!("{:.2}", (x % 800) as f64 / 100.0));
            }
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

fn long_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

async fn submit_csv(s: &Server, csv: &[u8], fields: &[(&str, &str)]) -> Value {
    let (ct, file_part) = multipart("file", "rows.csv", csv);
    // The option fields go before the file, in the same body.
    let boundary = ct.rsplit('=').next().unwrap().to_string();
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(&file_part);
    let r = long_client()
        .post(s.url("/jobs"))
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "POST /jobs");
    r.json().await.unwrap()
}

async fn status(s: &Server, id: &str) -> Value {
    client()
        .get(s.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the job (at most `secs`) until `done` says so.
async fn wait_for(s: &Server, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        let st = status(s, id).await;
        if done(&st) {
            return st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "job {id} not there after {secs} s: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn finished(st: &Value) -> bool {
    matches!(
        st["state"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

async fn results(s: &Server, id: &str) -> Vec<Value> {
    let text = long_client()
        .get(s.url(&format!("/jobs/{id}/results")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The online answers (`POST /models/iris/predict`, CSV) for the rows of `csv`.
async fn online(s: &Server, csv: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(csv).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let mut out = Vec::with_capacity(rows.len());
    for part in rows.chunks(50_000) {
        let body = format!("{header}\n{}\n", part.join("\n"));
        let r = long_client()
            .post(s.url("/models/iris/predict"))
            .header("Content-Type", "text/csv")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        out.extend(v["predictions"].as_array().unwrap().iter().cloned());
    }
    out
}

/// Every row once, in order, with the online answer.
fn assert_rows(got: &[Value], want: &[Value]) {
    assert_eq!(got.len(), want.len(), "one result line per input row");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g["row"], json!(i), "line {i} is row {i}");
        assert_eq!(&g["prediction"], w, "row {i}");
    }
}

fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_job_gives_the_online_answers_in_order() {
    let dir = data_dir();
    let d = dir.path().to_str().unwrap();
    let s = Server::start(&["--data-dir", d], &[]);
    let csv = csv_rows(1_000_000);
    let job = submit_csv(&s, &csv, &[("model", "iris"), ("chunk_rows", "10000")]).await;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["rows_total"], 1_000_000);
    assert_eq!(job["chunks_total"], 100);
    assert_eq!(job["url"], format!("/jobs/{id}"));
    // The upload went to disk and was removed once stored.
    let st = wait_for(&s, &id, 600, finished).await;
    assert_eq!(st["state"], "succeeded", "{st}");
    assert_eq!(st["rows_done"], 1_000_000);
    assert_eq!(st["chunks_done"], 100);
    assert_eq!(st["errors"], json!([]));
    let got = results(&s, &id).await;
    let want = online(&s, &csv).await;
    assert_rows(&got, &want);
    let uploads = dir.path().join("jobs-uploads");
    assert_eq!(std::fs::read_dir(uploads).unwrap().count(), 0);
    // Listed; and CSV on request.
    let list: Value = client()
        .get(s.url("/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["jobs"][0]["id"], id);
    let r = long_client()
        .get(s.url(&format!("/jobs/{id}/results")))
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv");
    let text = r.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("row,prediction,error"));
    assert_eq!(
        lines.next().unwrap(),
        format!("0,{},", want[0].as_str().unwrap())
    );
    assert_eq!(text.lines().count(), 1_000_001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_jobs_options_and_bad_requests() {
    let dir = data_dir();
    let s = Server::start(&["--data-dir", dir.path().to_str().unwrap()], &[]);
    let c = client();
    // Records, with probabilities.
    let r = c
        .post(s.url("/jobs"))
        .json(&json!({
            "model": "iris",
            "records": [
                {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.5, "petal_width": 0.3},
                {"sepal_length": 6.4, "sepal_width": 3.4, "petal_length": 6.1, "petal_width": 2.6},
            ],
            "chunk_rows": 1,
            "outputs": ["prediction", "probabilities"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let st = wait_for(&s, &id, 60, finished).await;
    assert_eq!(st["state"], "succeeded");
    let got = results(&s, &id).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["prediction"], "setosa");
    assert_eq!(got[1]["prediction"], "virginica");
    let p: Vec<f64> = got[1]["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(p.len(), 3);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4);

    // A chunk with a bad row fails alone, with the rows it covers; the others are answered.
    let r = c
        .post(s.url("/jobs"))
        .json(&json!({
            "model": "iris",
            "rows": [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], ["x", 1, 2, 3], [6.3, 3.3, 6.0, 2.5]],
            "chunk_rows": 2,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let st = wait_for(&s, &id, 60, finished).await;
    assert_eq!(st["state"], "failed", "{st}");
    assert_eq!(st["rows_failed"], 2);
    assert_eq!(st["errors"][0]["chunk"], 1);
    assert_eq!(st["errors"][0]["rows"], json!([2, 3]));
    let got = results(&s, &id).await;
    assert_eq!(got.len(), 4);
    assert_eq!(got[0]["prediction"], "setosa");
    assert!(
        got[2]["error"].as_str().unwrap().contains("row"),
        "{}",
        got[2]
    );
    assert!(got[3]["error"].is_string());

    // Refusals: which field, what was expected.
    for (body, status, says) in [
        (json!({"rows": [[1, 2, 3, 4]]}), 400, "'model'"),
        (
            json!({"model": "nope", "rows": [[1, 2, 3, 4]]}),
            404,
            "nope",
        ),
        (json!({"model": "iris"}), 400, "'rows'"),
        (
            json!({"model": "iris", "rows": [[1, 2, 3, 4]], "chunk_rows": 0}),
            400,
            "'chunk_rows'",
        ),
        (
            json!({"model": "iris", "rows": [[1, 2, 3, 4]], "outputs": ["x"]}),
            400,
            "'outputs'",
        ),
        (
            json!({"model": "iris", "rows": [[1, 2, 3, 4]], "concurrency": 1000}),
            400,
            "'concurrency'",
        ),
    ] {
        let r = c.post(s.url("/jobs")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), status, "{body}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains(says), "{body}: {e}");
    }
    let r = c.get(s.url("/jobs/job-none")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(s.url("/jobs"))
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // A file that is not text (what a fuzzer sent): a 400 that says so, and the server serves on.
    let (ct, mut body) = multipart("file", "file.png", b"\x89PNG\r\n\x1a\n\x00\xff\xfe\n");
    let boundary = ct.rsplit('=').next().unwrap().to_string();
    let mut with_model =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\niris\r\n")
            .into_bytes();
    with_model.append(&mut body);
    let r = c
        .post(s.url("/jobs"))
        .header("Content-Type", ct)
        .body(with_model)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("as text"), "{e}");
    let r = c.get(s.url("/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_stops() {
    let dir = data_dir();
    let s = Server::start(&["--data-dir", dir.path().to_str().unwrap()], &[]);
    let csv = csv_rows(200_000);
    let job = submit_csv(
        &s,
        &csv,
        &[
            ("model", "iris"),
            ("chunk_rows", "100"),
            ("concurrency", "1"),
        ],
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    let r = client()
        .post(s.url(&format!("/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let st: Value = r.json().await.unwrap();
    assert_eq!(st["state"], "cancelled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = status(&s, &id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = status(&s, &id).await;
    assert_eq!(a["rows_done"], b["rows_done"], "no work after cancel");
    assert!(b["rows_done"].as_u64().unwrap() < 200_000);
    assert_eq!(b["state"], "cancelled");
    // What was done before the cancel stays readable, in order.
    let got = results(&s, &id).await;
    assert!(got.len() as u64 <= b["rows_done"].as_u64().unwrap());
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g["row"], json!(i));
    }
    let r = client()
        .post(s.url(&format!("/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a finished job is not cancelled again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_mid_way_finishes_after_a_restart_with_every_row_once() {
    let dir = data_dir();
    let d = dir.path().to_str().unwrap().to_string();
    let s = Server::start(&["--data-dir", &d], &[]);
    let csv = csv_rows(300_000);
    let job = submit_csv(
        &s,
        &csv,
        &[
            ("model", "iris"),
            ("chunk_rows", "500"),
            ("concurrency", "1"),
        ],
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    let st = wait_for(&s, &id, 120, |st| st["rows_done"].as_u64().unwrap_or(0) > 0).await;
    assert_eq!(st["state"], "running", "killed mid-job: {st}");
    // kill -9: no shutdown of any kind.
    s.kill();
    let s = Server::start(&["--data-dir", &d], &[]);
    let st = wait_for(&s, &id, 300, finished).await;
    assert_eq!(st["state"], "succeeded", "{st}");
    assert_eq!(st["rows_done"], 300_000);
    let got = results(&s, &id).await;
    let want = online(&s, &csv).await;
    assert_rows(&got, &want);
}

/// The `test.py` of the Cortex batch-runner tutorial, read from the tutorial itself.
fn cortex_test_py() -> Option<String> {
    let seeds = repo_root().join("../shared/seeds");
    let text = std::fs::read_dir(seeds)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("002_"))
        .find_map(|e| std::fs::read_to_string(e.path()).ok())?;
    let after = text.split("## `test.py`").nth(1)?;
    let code = after.split("```python").nth(1)?.split("```").next()?;
    Some(code.to_string())
}

#[cfg_attr(
    no_python_requests,
    ignore = "needs Python with requests (pip install -r requirements-dev.txt)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cortex_batch_endpoint_starts_a_job_with_the_tutorials_test_py() {
    let dir = data_dir();
    let s = Server::start(&["--data-dir", dir.path().to_str().unwrap()], &[]);
    let script = dir.path().join("test.py");
    std::fs::write(&script, cortex_test_py().expect("the tutorial's test.py")).unwrap();
    let url = s.url("/iris-classifier-batch");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(&script)
            .arg(url)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!said.contains("an error occurred"), "{said}");
    // The job it started: the tutorial's three records, answered as online.
    let list: Value = client()
        .get(s.url("/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["jobs"][0]["id"].as_str().expect("a job").to_string();
    let st = wait_for(&s, &id, 60, finished).await;
    assert_eq!(st["state"], "succeeded");
    assert_eq!(st["model"], "iris");
    let got = results(&s, &id).await;
    let names: Vec<&str> = got
        .iter()
        .map(|g| g["prediction"].as_str().unwrap())
        .collect();
    let online: Value = client()
        .post(s.url("/iris-classifier"))
        .json(&json!([
            {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.5, "petal_width": 0.3},
            {"sepal_length": 7.1, "sepal_width": 3.3, "petal_length": 4.8, "petal_width": 1.5},
            {"sepal_length": 6.4, "sepal_width": 3.4, "petal_length": 6.1, "petal_width": 2.6},
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json!(names), online);
    let _ = examples();
}

/// Rows the iris model of `s` has answered so far (its v2 statistics).
async fn rows_answered(s: &Server) -> u64 {
    let v: Value = client()
        .get(s.url("/v2/models/iris/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["model_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["inference_count"].as_u64().unwrap_or(0))
        .sum()
}

/// `line` without its terminal colours (`ESC [ ... m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for e in chars.by_ref() {
                if e == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The server's name in the jobs' consumer group (from its start-up log).
fn consumer_of(s: &Server) -> String {
    let t = Instant::now();
    loop {
        if let Ok(line) = s.stderr.recv_timeout(Duration::from_secs(1)) {
            let line = plain(&line);
            if let Some(rest) = line.split("consumer=").nth(1) {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no consumer name logged"
        );
    }
}

/// Chunks the consumer `name` holds (delivered, not acknowledged).
fn pending_of(redis: &Redis, name: &str) -> u64 {
    let out = redis.cli(&["XPENDING", "ferroserve:jobs:chunks", "ferroserve"]);
    let words: Vec<&str> = out.split_whitespace().collect();
    words
        .iter()
        .position(|w| *w == name)
        .and_then(|i| words.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg_attr(
    no_redis,
    ignore = "needs redis-server (on Debian: apt-get install redis-server)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_a_job_through_redis_and_finish_it_when_one_is_killed() {
    let redis = Redis::start(free_port());
    let url = redis.url();
    let (da, db) = (data_dir(), data_dir());
    let args = |d: &tempfile::TempDir| {
        vec![
            "--data-dir".to_string(),
            d.path().to_str().unwrap().to_string(),
            "--jobs-redis".to_string(),
            url.clone(),
            "--jobs-redis-visibility-secs".to_string(),
            "2".to_string(),
        ]
    };
    let (aa, ab) = (args(&da), args(&db));
    let a = Server::start(&aa.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let b = Server::start(&ab.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let csv = csv_rows(200_000);
    let job = submit_csv(&a, &csv, &[("model", "iris"), ("chunk_rows", "250")]).await;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["chunks_total"], 800);
    // Both servers take chunks of the job A was given; B reads the same job.
    let t = Instant::now();
    while rows_answered(&b).await == 0 || rows_answered(&a).await == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "both servers should take chunks: A {}, B {}",
            rows_answered(&a).await,
            rows_answered(&b).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen_by_b = status(&b, &id).await;
    assert_eq!(seen_by_b["id"], json!(id), "{seen_by_b}");
    assert_ne!(
        seen_by_b["state"], "succeeded",
        "killed mid-job: {seen_by_b}"
    );
    // kill -9 of B, holding chunks: A takes them over after the visibility timeout.
    let b_name = consumer_of(&b);
    b.kill();
    let held = pending_of(&redis, &b_name);
    eprintln!("B held {held} chunks when killed");
    let st = wait_for(&a, &id, 300, finished).await;
    assert_eq!(st["state"], "succeeded", "{st}");
    assert_eq!(st["rows_done"], 200_000);
    assert_eq!(st["chunks_done"], 800);
    let got = results(&a, &id).await;
    let want = online(&a, &csv).await;
    assert_rows(&got, &want);
    if held > 0 {
        let log: Vec<String> = a.stderr.try_iter().collect();
        assert!(
            log.iter().any(|l| l.contains("taken over")),
            "B held {held} chunks when killed; A should say it took them over:\n{}",
            log.join("\n")
        );
    }
    // Nothing left in the stream once every chunk committed.
    assert_eq!(redis.cli(&["XLEN", "ferroserve:jobs:chunks"]).trim(), "0");

    // A job cancelled through another server stops everywhere.
    let c = Server::start(&ab.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let job = submit_csv(&a, &csv, &[("model", "iris"), ("chunk_rows", "100")]).await;
    let id = job["id"].as_str().unwrap().to_string();
    let r = client()
        .post(c.url(&format!("/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let st = wait_for(&a, &id, 60, finished).await;
    assert_eq!(st["state"], "cancelled", "{st}");
    let listed: Value = client()
        .get(c.url("/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 2, "{listed}");
    let got = results(&a, &id).await;
    assert!(got.len() < 200_000, "cancelled before the end");
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g["row"], json!(i));
    }
    redis.stop();
}
