//! The prediction log end to end: the real binary on 127.0.0.1 writing a real SQLite file under
//! --data-dir. After a load and a graceful shutdown the file holds exactly one record per
//! request, equal to what was sent and answered, errors included; a model whose model.toml
//! says `record = "none"` has none; and `GET /v2/models/{m}/predictions` pages through them.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{examples, free_port, Redis, Server};
use ferroserve_testkit::copy_dir;
use serde_json::{json, Value};

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn post(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = http().post(s.url(path)).json(body).send().unwrap();
    let st = r.status().as_u16();
    (st, r.json().unwrap_or(Value::Null))
}

fn get(s: &Server, path: &str) -> (u16, Value) {
    let r = http().get(s.url(path)).send().unwrap();
    let st = r.status().as_u16();
    (st, r.json().unwrap_or(Value::Null))
}

/// iris, and diabetes with `[prediction_log] record = "none"`.
fn repository(dir: &Path) {
    copy_dir(&examples().join("iris"), &dir.join("iris"));
    copy_dir(&examples().join("diabetes"), &dir.join("diabetes"));
    let toml = dir.join("diabetes/model.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap_or_default();
    text.push_str("\n[prediction_log]\nrecord = \"none\"\n");
    std::fs::write(toml, text).unwrap();
}

fn row(i: usize) -> Vec<f64> {
    let f = i as f64;
    vec![
        4.3 + (f * 0.37) % 3.6,
        2.0 + (f * 0.11) % 2.4,
        1.0 + (f * 0.53) % 5.9,
        0.1 + (f * 0.07) % 2.4,
    ]
}

/// The numbers of a record's or an answer's tensor `name`, as f32 (the model's type: the answer
/// writes FP32 in its shortest form, the record as the f64 it widens to).
fn values(tensors: &Value, name: &str) -> Vec<Value> {
    tensors
        .as_array()
        .unwrap_or_else(|| panic!("no tensors: {tensors}"))
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tensor {name}: {tensors}"))["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| match v.as_f64() {
            Some(x) => json!(x as f32),
            None => v.clone(),
        })
        .collect()
}

#[test]
fn every_request_is_recorded_in_sqlite_and_read_back() {
    let repo = tempfile::tempdir().unwrap();
    repository(repo.path());
    let data = tempfile::tempdir().unwrap();
    let args = [
        "--repository",
        repo.path().to_str().unwrap(),
        "--prediction-log",
        "sqlite",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--prediction-log-record",
        "all",
    ];
    let s = Server::start(&args, &[]);
    let mut answers = Vec::new();
    for i in 0..40 {
        let x = row(i);
        let (st, v) = post(
            &s,
            "/v2/models/iris/infer",
            &json!({"id": format!("req-{i}"), "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": x}]}),
        );
        assert_eq!(st, 200, "{v}");
        answers.push((format!("req-{i}"), x, v));
    }
    // Without ids, through a friendly route, a batch of 3 rows, and two refused requests.
    for i in 40..45 {
        let (st, v) = post(
            &s,
            "/v2/models/iris/infer",
            &json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": row(i)}]}),
        );
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = post(
        &s,
        "/models/iris/predict",
        &json!({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}),
    );
    assert_eq!(st, 200, "{v}");
    let rows3: Vec<f64> = (0..3).flat_map(row).collect();
    let (st, batch) = post(
        &s,
        "/v2/models/iris/infer",
        &json!({"id": "three", "inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 4], "data": rows3}]}),
    );
    assert_eq!(st, 200, "{batch}");
    for id in ["bad-1", "bad-2"] {
        let (st, _) = post(
            &s,
            "/v2/models/iris/infer",
            &json!({"id": id, "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}),
        );
        assert_eq!(st, 400);
    }
    for _ in 0..3 {
        let body =
            std::fs::read(common::repo_root().join("examples/requests/diabetes_v2.json")).unwrap();
        let (st, v) = post(
            &s,
            "/v2/models/diabetes/infer",
            &serde_json::from_slice(&body).unwrap(),
        );
        assert_eq!(st, 200, "{v}");
    }
    let (_, metrics) = (
        0,
        http()
            .get(s.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
    );
    assert!(
        metrics.contains(
            "ferroserve_prediction_log_records_total{sink=\"sqlite\",target=\"predictions.sqlite\",result=\"dropped\"} 0"
        ),
        "{metrics}"
    );
    // Graceful shutdown writes whatever is still queued.
    assert!(s.terminate().success());

    // The file itself, read with SQLite, not with the server's reader.
    let db = rusqlite::Connection::open(data.path().join("predictions.sqlite")).unwrap();
    let count = |model: &str| -> i64 {
        db.query_row(
            "SELECT COUNT(*) FROM predictions WHERE model = ?1",
            [model],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(
        count("iris"),
        49,
        "40 + 5 + 1 friendly + 1 batch + 2 refused"
    );
    assert_eq!(count("diabetes"), 0, "record = \"none\"");
    for (id, x, answer) in &answers {
        let (status, inputs, outputs, protocol, route): (i64, String, String, String, String) = db
            .query_row(
                "SELECT status, inputs, outputs, protocol, route FROM predictions WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            (status, protocol.as_str(), route.as_str()),
            (200, "http_v2", "/v2/models/iris/infer")
        );
        let inputs: Value = serde_json::from_str(&inputs).unwrap();
        let sent: Vec<Value> = x.iter().map(|v| json!(*v as f32)).collect();
        assert_eq!(values(&inputs, "input"), sent, "{id}");
        let outputs: Value = serde_json::from_str(&outputs).unwrap();
        for o in answer["outputs"].as_array().unwrap() {
            let name = o["name"].as_str().unwrap();
            assert_eq!(
                values(&outputs, name),
                values(&answer["outputs"], name),
                "{id} {name}"
            );
        }
    }
    let (rows, error): (i64, String) = db
        .query_row(
            "SELECT rows, error FROM predictions WHERE id = 'bad-1' AND status = 400",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows, 1);
    assert!(error.contains("shape"), "{error}");
    let rows: i64 = db
        .query_row("SELECT rows FROM predictions WHERE id = 'three'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(rows, 3);
    let generated: i64 = db
        .query_row(
            "SELECT COUNT(DISTINCT id) FROM predictions WHERE id LIKE 'fs-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        generated, 6,
        "5 v2 requests without ids and the friendly one"
    );
    drop(db);

    // Read back over HTTP by a server started again on the same data folder.
    let s = Server::start(&args, &[]);
    let mut ids = Vec::new();
    let mut cursor = String::new();
    for _ in 0..20 {
        let (st, page) = get(&s, &format!("/v2/models/iris/predictions?limit=7{cursor}"));
        assert_eq!(st, 200, "{page}");
        ids.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => break,
        }
    }
    assert_eq!(ids.len(), 49);
    assert_eq!(ids[..3], ["req-0", "req-1", "req-2"], "oldest first");
    let (_, errors) = get(&s, "/v2/models/iris/predictions?outcome=error");
    let bad: Vec<&str> = errors["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(bad, ["bad-1", "bad-2"]);
    assert_eq!(errors["records"][0]["status"], 400);
    let (_, later) = get(&s, "/v2/models/iris/predictions?since=2999-01-01");
    assert_eq!(later["records"], json!([]));
    let (st, e) = get(&s, "/v2/models/iris/predictions?limit=0");
    assert_eq!(st, 400);
    assert!(e["error"].as_str().unwrap().contains("limit"), "{e}");
    let (_, one) = get(&s, "/v2/models/iris/predictions?limit=1");
    let r = &one["records"][0];
    assert_eq!(r["model"], "iris");
    assert_eq!(r["version"], "1");
    assert!(r["time"].as_str().unwrap().ends_with('Z'), "{r}");
    assert!(r["latency_us"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn without_a_sqlite_log_the_read_back_route_says_how_to_turn_it_on() {
    let repo = tempfile::tempdir().unwrap();
    repository(repo.path());
    let s = Server::start(&["--repository", repo.path().to_str().unwrap()], &[]);
    let (st, e) = get(&s, "/v2/models/iris/predictions");
    assert_eq!(st, 404);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("--prediction-log sqlite"),
        "{e}"
    );
    // Inference is untouched.
    let (st, _) = post(
        &s,
        "/v2/models/iris/infer",
        &json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": row(0)}]}),
    );
    assert_eq!(st, 200);
}

/// The start of the line of the Redis sink's records counter for `result`.
fn redis_metric(url: &str, result: &str) -> String {
    format!("ferroserve_prediction_log_records_total{{sink=\"redis\",target=\"{url}\",result=\"{result}\"}} ")
}

fn metric(s: &Server, line_start: &str) -> u64 {
    let text = http()
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(line_start)
                .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        })
        .unwrap_or_else(|| panic!("no metric {line_start}"))
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "needs redis-server (on Debian: apt-get install redis-server)"
)]
fn the_tutorials_requests_appear_in_redis_and_a_redis_outage_only_drops_counted_records() {
    let port = free_port();
    let redis = Redis::start(port);
    let repo = tempfile::tempdir().unwrap();
    repository(repo.path());
    let url = format!("redis://127.0.0.1:{port}");
    let s = Server::start(
        &[
            "--repository",
            repo.path().to_str().unwrap(),
            "--prediction-log",
            &url,
        ],
        &[],
    );
    // The Flasgger tutorial's request, which its Flask app records in Redis.
    let mut answers = Vec::new();
    for i in 0..10 {
        let x = row(i);
        let q = format!(
            "/predict?s_length={}&s_width={}&p_length={}&p_width={}",
            x[0], x[1], x[2], x[3]
        );
        let r = http().get(s.url(&q)).send().unwrap();
        assert_eq!(r.status(), 200);
        answers.push(r.text().unwrap());
    }
    let written = redis_metric(&url, "written");
    let dropped = redis_metric(&url, "dropped");
    let (written, dropped) = (written.as_str(), dropped.as_str());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&s, written) < 10 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        redis.cli(&["XLEN", "ferroserve:predictions:iris"]).trim(),
        "10"
    );
    let entries = redis.cli(&["XRANGE", "ferroserve:predictions:iris", "-", "+"]);
    for field in [
        "route", "/predict", "status", "200", "protocol", "friendly", "outputs",
    ] {
        assert!(entries.contains(field), "{field} not in {entries}");
    }
    // What the model computed for each request is recorded: the friendly route asked it for
    // the probabilities and answered the most likely class ("[1]").
    let labels: Vec<String> = entries
        .lines()
        .skip_while(|l| *l != "outputs")
        .step_by(1)
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "outputs")
        .map(|w| w[1].to_string())
        .collect();
    assert_eq!(labels.len(), 10, "{entries}");
    for (answer, outputs) in answers.iter().zip(&labels) {
        let outputs: Value = serde_json::from_str(outputs).unwrap();
        let p = values(&outputs, "probabilities");
        let p: Vec<f64> = p.iter().map(|v| v.as_f64().unwrap()).collect();
        let best = (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b });
        assert_eq!(format!("[{best}]"), *answer, "{outputs}");
    }

    // Redis goes away: the server keeps answering at once, and what it cannot write is counted.
    redis.stop();
    let before = metric(&s, dropped);
    let started = std::time::Instant::now();
    for i in 0..50 {
        let (st, _) = post(
            &s,
            "/v2/models/iris/infer",
            &json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": row(i)}]}),
        );
        assert_eq!(st, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answers were delayed: {:?}",
        started.elapsed()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&s, dropped) - before < 50 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        metric(&s, dropped) - before,
        50,
        "every record Redis missed is counted"
    );
    // Back on the same port: new records arrive again (after the back-off, at most 10 s).
    let redis = Redis::start(port);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = 0;
    while std::time::Instant::now() < deadline {
        let (st, _) = post(
            &s,
            "/v2/models/iris/infer",
            &json!({"id": "after", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": row(1)}]}),
        );
        assert_eq!(st, 200);
        seen = redis
            .cli(&["XLEN", "ferroserve:predictions:iris"])
            .trim()
            .parse()
            .unwrap_or(0);
        if seen > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(seen > 0, "no record reached the restarted Redis");
    assert!(redis
        .cli(&["XRANGE", "ferroserve:predictions:iris", "-", "+"])
        .contains("after"));
}

#[test]
fn log_tail_prints_the_last_records_then_follows_new_ones() {
    let repo = tempfile::tempdir().unwrap();
    repository(repo.path());
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let args = [
        "--repository",
        repo.path().to_str().unwrap(),
        "--prediction-log",
        "sqlite",
        "--data-dir",
        dir,
    ];
    let infer = |s: &Server, id: &str| {
        let (st, v) = post(
            s,
            "/v2/models/iris/infer",
            &json!({"id": id, "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": row(3)}]}),
        );
        assert_eq!(st, 200, "{v}");
    };
    let s = Server::start(&args, &[]);
    for i in 0..3 {
        infer(&s, &format!("t-{i}"));
    }
    assert!(s.terminate().success());
    let out = common::ferroserve()
        .args([
            "log",
            "tail",
            "--model",
            "iris",
            "--data-dir",
            dir,
            "--last",
            "2",
            "--no-follow",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["t-1", "t-2"]);

    // Following: records written after the tail started arrive on its stdout.
    let mut tail = common::ferroserve()
        .args([
            "log",
            "tail",
            "--model",
            "iris",
            "--data-dir",
            dir,
            "--last",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let s = Server::start(&args, &[]);
    infer(&s, "new-0");
    infer(&s, "new-1");
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while got.len() < 2 && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            got.push(
                serde_json::from_str::<Value>(&line).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(got, ["new-0", "new-1"]);
}

/// The `id` fields of every entry of `stream`, in order.
fn stream_ids(redis: &Redis, stream: &str) -> Vec<String> {
    let entries = redis.cli(&["XRANGE", stream, "-", "+"]);
    let lines: Vec<&str> = entries.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "id")
        .map(|w| w[1].to_string())
        .collect()
}

fn infer_row(s: &Server, id: &str, i: usize) -> (u16, Value) {
    post(
        s,
        "/v2/models/iris/infer",
        &json!({"id": id, "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": row(i)}]}),
    )
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "needs redis-server (on Debian: apt-get install redis-server)"
)]
fn durable_records_survive_a_redis_outage_and_a_kill_9_of_the_server() {
    let port = free_port();
    let redis_dir = tempfile::tempdir().unwrap();
    let redis = Redis::start_persistent(port, redis_dir.path());
    let repo = tempfile::tempdir().unwrap();
    repository(repo.path());
    let data = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    let args = [
        "--repository",
        repo.path().to_str().unwrap(),
        "--prediction-log",
        &url,
        "--prediction-log-mode",
        "durable",
        "--data-dir",
        data.path().to_str().unwrap(),
    ];
    let s = Server::start(&args, &[]);
    let stream = "ferroserve:predictions:iris";
    let wait_for = |redis: &Redis, n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ids = stream_ids(redis, stream);
            if ids.len() >= n || std::time::Instant::now() > deadline {
                return ids;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut answered = Vec::new();
    for i in 0..20 {
        let id = format!("d-{i}");
        assert_eq!(infer_row(&s, &id, i).0, 200);
        answered.push(id);
    }
    assert_eq!(wait_for(&redis, 20), answered, "delivered in order");

    // Redis goes down: answers go on, their records wait in the spool.
    redis.stop();
    let started = std::time::Instant::now();
    for i in 20..50 {
        let id = format!("d-{i}");
        assert_eq!(infer_row(&s, &id, i).0, 200);
        answered.push(id);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answers were delayed: {:?}",
        started.elapsed()
    );
    assert_eq!(metric(&s, &redis_metric(&url, "spooled")), 50);
    assert_eq!(metric(&s, &redis_metric(&url, "dropped")), 0);
    assert!(metric(&s, "ferroserve_prediction_log_spool_bytes ") > 0);
    // kill -9: no shutdown, no flush. Every answered record is in the spool on disk.
    s.kill();

    // Redis back (with what it had), the server started again on the same data folder: the
    // 30 records it could not deliver arrive, once each, after the 20 it had.
    let redis = Redis::start_persistent(port, redis_dir.path());
    let s = Server::start(&args, &[]);
    let ids = wait_for(&redis, 50);
    assert_eq!(ids, answered, "every answered record, in order, once");
    // New requests are recorded as before.
    assert_eq!(infer_row(&s, "after", 1).0, 200);
    assert_eq!(
        wait_for(&redis, 51).last().map(String::as_str),
        Some("after")
    );
    assert!(s.terminate().success());
}

#[test]
fn a_full_durable_spool_refuses_requests_with_503_and_the_server_keeps_serving() {
    // A sink that is never there (nothing listens on the port), a 1 MB spool, whole inputs.
    let port = free_port();
    let repo = tempfile::tempdir().unwrap();
    repository(repo.path());
    let data = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    let s = Server::start(
        &[
            "--repository",
            repo.path().to_str().unwrap(),
            "--prediction-log",
            &url,
            "--prediction-log-mode",
            "durable",
            "--prediction-log-record",
            "all",
            "--prediction-log-spool-max-mb",
            "1",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        &[],
    );
    let rows: Vec<f64> = (0..100).flat_map(row).collect();
    let body =
        json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [100, 4], "data": rows}]});
    let mut answered = 0;
    let refusal = (0..2000).find_map(|_| {
        let (st, v) = post(&s, "/v2/models/iris/infer", &body);
        match st {
            200 => {
                answered += 1;
                None
            }
            _ => Some((st, v)),
        }
    });
    let (st, v) = refusal.expect("the spool never filled");
    assert_eq!(st, 503, "{v}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(msg.contains("spool is full"), "{msg}");
    assert!(
        !msg.contains(data.path().to_str().unwrap()),
        "a path: {msg}"
    );
    assert!(answered > 10, "{answered} answered before the spool filled");
    assert_eq!(
        metric(&s, &redis_metric(&url, "spooled")),
        answered,
        "every answered request's record is in the spool"
    );
    // Still full: refused again; the server and a model that records nothing still answer.
    assert_eq!(post(&s, "/v2/models/iris/infer", &body).0, 503);
    assert_eq!(get(&s, "/v2/health/live").0, 200);
    let diabetes =
        std::fs::read(common::repo_root().join("examples/requests/diabetes_v2.json")).unwrap();
    let (st, v) = post(
        &s,
        "/v2/models/diabetes/infer",
        &serde_json::from_slice(&diabetes).unwrap(),
    );
    assert_eq!(st, 200, "{v}");
    assert!(s.terminate().success());
}

/// `tests/python/cloudevents_receiver.py` running: the port it listens on, and the events it
/// printed (one JSON object per line) once its stdin is closed.
struct Receiver {
    child: std::process::Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Receiver {
    fn start() -> Receiver {
        use std::io::BufRead;
        let mut child = std::process::Command::new(
            std::env::var("FERROSERVE_PYTHON").unwrap_or_else(|_| "python3".into()),
        )
        .arg(common::repo_root().join("tests/python/cloudevents_receiver.py"))
        .args(["--seconds", "120"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the CloudEvents receiver");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(l);
            }
        });
        let port = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the receiver printed no port")
            .trim()
            .parse()
            .unwrap();
        Receiver { child, port, lines }
    }

    /// Waits (at most 20 s) for `n` events.
    fn events(&self, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => out.push(serde_json::from_str(&l).unwrap()),
                Err(_) => break,
            }
        }
        out
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[cfg_attr(
    no_python_cloudevents,
    ignore = "needs python3 with the CloudEvents SDK (pip install cloudevents)"
)]
fn records_go_out_as_kserve_logger_cloudevents_and_as_json_lines() {
    let receiver = Receiver::start();
    let repo = tempfile::tempdir().unwrap();
    repository(repo.path());
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("log/predictions.jsonl");
    let url = format!("http://127.0.0.1:{}/events", receiver.port);
    let file_sink = format!("file:{}", file.display());
    let s = Server::start(
        &[
            "--repository",
            repo.path().to_str().unwrap(),
            "--prediction-log",
            &url,
            "--prediction-log",
            &file_sink,
            "--prediction-log",
            "sqlite",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--prediction-log-record",
            "all",
        ],
        &[],
    );
    let mut answers = Vec::new();
    for i in 0..4 {
        let id = format!("ce-{i}");
        let (st, v) = infer_row(&s, &id, i);
        assert_eq!(st, 200, "{v}");
        answers.push((id, row(i), v));
    }
    let (st, _) = post(
        &s,
        "/v2/models/iris/infer",
        &json!({"id": "ce-bad", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}),
    );
    assert_eq!(st, 400);
    // The SQLite writer takes records in batches (at most 20 ms later): wait for all five.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let page = loop {
        let (_, page) = get(&s, "/v2/models/iris/predictions?limit=100");
        let n = page["records"].as_array().map_or(0, Vec::len);
        if n >= 5 || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(s.terminate().success(), "a graceful stop");

    // Two events per request: the request (inputs recorded), then the response.
    let events = receiver.events(10);
    assert_eq!(events.len(), 10, "{events:?}");
    for e in &events {
        assert!(e.get("invalid").is_none(), "the SDK refused an event: {e}");
    }
    for (k, (id, x, answer)) in answers.iter().enumerate() {
        let (req, resp) = (&events[2 * k], &events[2 * k + 1]);
        let a = &req["attributes"];
        assert_eq!(a["type"], "org.kubeflow.serving.inference.request", "{req}");
        assert_eq!(a["id"], id.as_str());
        assert_eq!(a["specversion"], "1.0");
        assert_eq!(a["inferenceservicename"], "iris");
        assert_eq!(a["source"], "/v2/models/iris/infer");
        let sent: Vec<Value> = x.iter().map(|v| json!(*v as f32)).collect();
        assert_eq!(values(&req["data"]["inputs"], "input"), sent);
        let a = &resp["attributes"];
        assert_eq!(
            a["type"], "org.kubeflow.serving.inference.response",
            "{resp}"
        );
        assert_eq!(a["id"], id.as_str());
        assert_eq!(a["status"], "200");
        assert_eq!(resp["data"]["model_name"], "iris");
        assert_eq!(resp["data"]["id"], id.as_str());
        for out in answer["outputs"].as_array().unwrap() {
            let name = out["name"].as_str().unwrap();
            assert_eq!(
                values(&resp["data"]["outputs"], name),
                values(&answer["outputs"], name),
                "{name}"
            );
        }
    }
    // The refused request: its inputs, and a response event with the error and its status.
    assert_eq!(events[8]["attributes"]["id"], "ce-bad");
    let bad = &events[9];
    assert_eq!(bad["attributes"]["status"], "400");
    assert!(
        bad["data"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("shape"),
        "{bad}"
    );

    // The JSON Lines file: one line per request, each the object the read-back route answers.
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines, page["records"].as_array().unwrap().clone());
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "needs redis-server (on Debian: apt-get install redis-server)"
)]
fn log_tail_reads_a_redis_stream_too() {
    let port = free_port();
    let redis = Redis::start(port);
    let repo = tempfile::tempdir().unwrap();
    repository(repo.path());
    let url = format!("redis://127.0.0.1:{port}");
    let s = Server::start(
        &[
            "--repository",
            repo.path().to_str().unwrap(),
            "--prediction-log",
            &url,
        ],
        &[],
    );
    for i in 0..3 {
        assert_eq!(infer_row(&s, &format!("r-{i}"), i).0, 200);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stream_ids(&redis, "ferroserve:predictions:iris").len() < 3
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let tail = |extra: &[&str]| {
        let mut c = common::ferroserve();
        c.args(["log", "tail", "--model", "iris", "--redis", &url])
            .args(extra);
        c
    };
    let out = tail(&["--last", "2", "--no-follow"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["r-1", "r-2"]);
    // The same shape as the read-back route: numbers as numbers, outputs as JSON, no error.
    assert_eq!(recs[0]["status"], 200);
    assert_eq!(recs[0]["error"], Value::Null);
    assert!(recs[0]["outputs"].is_array(), "{}", recs[0]);

    // Following: entries added after it started arrive.
    let mut child = tail(&["--last", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(infer_row(&s, "r-new", 4).0, 200);
    let line = rx.recv_timeout(Duration::from_secs(15));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("the tail printed nothing new");
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["id"], "r-new");
}
