//! Python predictors end to end: the real binary on 127.0.0.1, real Python worker processes.
//! The Ray Serve tutorial's four predictors (examples/python_models) answer its exact requests;
//! workers killed with `kill -9`, predictors that raise, hang or need a missing package fail
//! only what they must; DataFrame columns, dtypes and NaN reach the predictor as sent.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{repo_root, Server};
use serde_json::{json, Value};

const NEEDS: &str = "needs python3 with numpy and pandas (pip install numpy pandas)";

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn post(s: &Server, path: &str, body: Option<&Value>) -> (u16, Value) {
    post_to(&s.base, path, body)
}

/// [`post`] by the server's base URL (threads cannot share a `Server`).
fn post_to(base: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut r = http().post(format!("{base}{path}"));
    if let Some(b) = body {
        r = r.json(b);
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

fn get(s: &Server, path: &str) -> (u16, Value) {
    let resp = http().get(s.url(path)).send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// Serves one model of examples/python_models.
fn tutorial(model: &str) -> Server {
    let repo = repo_root().join("examples/python_models");
    Server::start(
        &[
            "--repository",
            repo.to_str().unwrap(),
            "--model-control-mode",
            "explicit",
            "--load-model",
            model,
        ],
        &[],
    )
}

/// Writes `<repo>/<name>/model.toml` and `<repo>/<name>/1/model.py`.
fn write_model(repo: &Path, name: &str, toml: &str, code: &str) {
    let dir = repo.join(name);
    std::fs::create_dir_all(dir.join("1")).unwrap();
    std::fs::write(dir.join("model.toml"), toml).unwrap();
    std::fs::write(dir.join("1/model.py"), code).unwrap();
}

fn serve_repo(repo: &Path) -> Server {
    Server::start(&["--repository", repo.to_str().unwrap()], &[])
}

/// Waits (at most `limit`) until `f` holds.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn alive(pid: i32) -> bool {
    // A zombie is not alive: read its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
#[cfg_attr(
    no_python_numpy,
    ignore = "needs python3 with numpy and pandas (pip install numpy pandas)"
)]
fn adder_answers_the_tutorial_request_and_v2() {
    let s = tutorial("adder");
    let (st, v) = post(&s, "/", Some(&json!({"array": [40]})));
    assert_eq!((st, v), (200, json!([42.0])), "{NEEDS}");
    // Over v2, with NaN (null) preserved.
    let (st, v) = post(
        &s,
        "/v2/models/adder/infer",
        Some(
            &json!({"inputs": [{"name": "array", "datatype": "FP64", "shape": [3, 1], "data": [1.5, null, -2]}]}),
        ),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outputs"][0]["name"], "output");
    assert_eq!(v["outputs"][0]["datatype"], "FP64");
    assert_eq!(v["outputs"][0]["shape"], json!([3, 1]));
    assert_eq!(v["outputs"][0]["data"], json!([3.5, null, 0.0]));
    let (_, meta) = get(&s, "/v2/models/adder");
    assert_eq!(meta["platform"], "python");
    assert_eq!(meta["inputs"][0]["name"], "array");
    // Triton's model configuration names its Python backend "python".
    let (_, config) = get(&s, "/v2/models/adder/config");
    assert_eq!(config["backend"], "python", "{config}");
    // A shape the model does not take is refused before Python sees it.
    let (st, _) = post(
        &s,
        "/v2/models/adder/infer",
        Some(
            &json!({"inputs": [{"name": "array", "datatype": "FP64", "shape": [1, 2], "data": [1, 2]}]}),
        ),
    );
    assert_eq!(st, 400);
}

#[test]
#[cfg_attr(
    no_python_numpy,
    ignore = "needs python3 with numpy and pandas (pip install numpy pandas)"
)]
fn dataframe_predictor_answers_pandas_records() {
    let s = tutorial("dataframe");
    let (st, v) = post(
        &s,
        "/?orient=records",
        Some(&json!([{"base": 1, "multiplier": 2}, {"base": 3, "multiplier": 4}])),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!([{"base": 1, "multiplier": 2, "prediction": 4}, {"base": 3, "multiplier": 4, "prediction": 14}])
    );
}

#[test]
#[cfg_attr(
    no_python_numpy,
    ignore = "needs python3 with numpy and pandas (pip install numpy pandas)"
)]
fn http_adapter_reads_query_parameters() {
    let s = tutorial("dataframe_adapter");
    let (st, v) = post(&s, "/?base=10&multiplier=4", None);
    assert_eq!(
        (st, v),
        (
            200,
            json!([{"base": 10, "multiplier": 4, "prediction": 42}])
        )
    );
    // From the JSON body too, by key.
    let (st, v) = post(&s, "/", Some(&json!({"base": 2, "multiplier": 5})));
    assert_eq!(
        (st, v),
        (200, json!([{"base": 2, "multiplier": 5, "prediction": 12}]))
    );
    // A missing or malformed parameter is the client's fault, named.
    let (st, v) = post(&s, "/?base=10", None);
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("'multiplier' (int)"),
        "{v}"
    );
    let (st, v) = post(&s, "/?base=ten&multiplier=4", None);
    assert_eq!(st, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("expected int"), "{v}");
    // v2 does not go through the adapter.
    let (st, v) = post(
        &s,
        "/v2/models/dataframe_adapter/infer",
        Some(
            &json!({"inputs": [{"name": "input", "datatype": "INT64", "shape": [1, 2], "data": [10, 4]}]}),
        ),
    );
    assert_eq!(st, 200, "{v}");
    let prediction = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "prediction")
        .unwrap()
        .clone();
    assert_eq!(prediction["data"], json!([42]));
    assert_eq!(prediction["datatype"], "INT64");
}

#[test]
#[cfg_attr(
    no_python_numpy,
    ignore = "needs python3 with numpy and pandas (pip install numpy pandas)"
)]
fn concurrent_requests_form_one_batch() {
    let s = tutorial("batch_size");
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..10)
            .map(|i| {
                let base = s.base.as_str();
                scope.spawn(move || post_to(base, "/", Some(&json!({"array": [i]}))))
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                let (st, v) = h.join().unwrap();
                assert_eq!(st, 200, "{v}");
                v
            })
            .collect()
    });
    for (i, a) in answers.iter().enumerate() {
        // [row, batch size, batch]: the tutorial's print.
        assert_eq!(a[0], json!([i as f64]), "{a}");
        assert_eq!(a[1], json!(10), "all ten requests in one batch: {a}");
        let mut group: Vec<f64> = a[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_f64().unwrap())
            .collect();
        group.sort_by(f64::total_cmp);
        assert_eq!(group, (0..10).map(f64::from).collect::<Vec<_>>());
    }
}

const PID_MODEL: &str = r#"
import os, time
import numpy as np

class Slow:
    def load(self):
        print("pid model loaded", flush=True)

    def predict(self, x):
        d = os.environ["MARKS"]
        open(os.path.join(d, f"busy-{os.getpid()}"), "w").close()
        time.sleep(float(x[0, 0]))
        return np.full((len(x), 1), os.getpid(), dtype=np.int64)
"#;

#[test]
#[cfg_attr(
    no_python_numpy,
    ignore = "needs python3 with numpy and pandas (pip install numpy pandas)"
)]
fn killed_worker_fails_only_its_batch_and_comes_back() {
    let repo = tempfile::tempdir().unwrap();
    let marks = tempfile::tempdir().unwrap();
    write_model(
        repo.path(),
        "slow",
        "backend = \"python\"\npredictor = \"model:Slow\"\ninstances = 2\n[batching]\nmax_batch_size = 1\n[[inputs]]\nname = \"input\"\ndatatype = \"FP64\"\nshape = [-1, 1]\n[[outputs]]\nname = \"output\"\ndatatype = \"INT64\"\nshape = [-1, 1]\n",
        PID_MODEL,
    );
    let s = Server::start(
        &["--repository", repo.path().to_str().unwrap()],
        &[("MARKS", marks.path().to_str().unwrap())],
    );
    let body = |secs: f64| json!({"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 1], "data": [secs]}]});
    let busy = |d: &Path| -> Vec<i32> {
        std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_prefix("busy-")?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let base = s.base.as_str();
    let (victim, answers) = std::thread::scope(|scope| {
        let ha = scope.spawn(|| post_to(base, "/v2/models/slow/infer", Some(&body(3.0))));
        let hb = scope.spawn(|| post_to(base, "/v2/models/slow/infer", Some(&body(3.0))));
        // Both workers busy: kill one of them.
        assert!(
            eventually(Duration::from_secs(10), || busy(marks.path()).len() == 2),
            "both workers should be running a batch"
        );
        let victim = busy(marks.path())[0];
        // SAFETY: kill has no memory effects; the pid is a worker of the server we started.
        unsafe { libc::kill(victim, libc::SIGKILL) };
        (victim, vec![ha.join().unwrap(), hb.join().unwrap()])
    });
    let failed: Vec<&(u16, Value)> = answers.iter().filter(|(st, _)| *st != 200).collect();
    assert_eq!(
        failed.len(),
        1,
        "only the killed worker's request fails: {answers:?}"
    );
    assert_eq!(failed[0].0, 503);
    let msg = failed[0].1["error"].as_str().unwrap();
    assert!(msg.contains("signal 9"), "{msg}");
    let ok = answers.iter().find(|(st, _)| *st == 200).unwrap();
    assert_ne!(ok.1["outputs"][0]["data"][0], json!(victim));
    // The model serves again within seconds, on a new worker.
    assert!(eventually(Duration::from_secs(10), || {
        let (st, v) = post(&s, "/v2/models/slow/infer", Some(&body(0.0)));
        st == 200 && v["outputs"][0]["data"][0] != json!(victim)
    }));
    let logs: Vec<String> = s.stderr.try_iter().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("pid model loaded") && l.contains("slow")),
        "the worker's stdout reaches the log, tagged with the model"
    );
    // Shutdown stops the workers.
    let before: Vec<i32> = workers_of(&s);
    assert!(!before.is_empty());
    s.terminate();
    assert!(
        eventually(Duration::from_secs(5), || before.iter().all(|p| !alive(*p))),
        "workers outlived the server: {before:?}"
    );
}

/// The server's Python worker processes (its children running python).
fn workers_of(s: &Server) -> Vec<i32> {
    let me = s.child.id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        if after.split(' ').nth(1) == Some(me.as_str()) {
            out.push(pid);
        }
    }
    out
}

const FAULTY: &str = r#"
import time
import numpy as np

class Faulty:
    def load(self):
        pass

    def predict(self, x):
        v = float(x[0, 0])
        if v < 0:
            raise ValueError(f"negative input {v}")
        if v > 100:
            time.sleep(v)
        return x * 2
"#;

#[test]
#[cfg_attr(
    no_python_numpy,
    ignore = "needs python3 with numpy and pandas (pip install numpy pandas)"
)]
fn raising_and_hanging_predictors_fail_their_requests_only() {
    let repo = tempfile::tempdir().unwrap();
    write_model(
        repo.path(),
        "faulty",
        "backend = \"python\"\npredictor = \"model:Faulty\"\nworker_timeout = \"1s\"\n[[inputs]]\nname = \"input\"\ndatatype = \"FP64\"\nshape = [-1, 1]\n",
        FAULTY,
    );
    let s = serve_repo(repo.path());
    let body = |v: f64| json!({"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 1], "data": [v]}]});
    let (st, v) = post(&s, "/v2/models/faulty/infer", Some(&body(-1.0)));
    assert_eq!(st, 500, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("ValueError") && msg.contains("negative input -1"),
        "{msg}"
    );
    assert!(
        !msg.contains("Traceback") && !msg.contains(".py"),
        "no traceback or path in answers: {msg}"
    );
    let (st, v) = post(&s, "/v2/models/faulty/infer", Some(&body(2.0)));
    assert_eq!((st, &v["outputs"][0]["data"]), (200, &json!([4.0])), "{v}");
    // A hang: killed at worker_timeout, answered 503, and the next worker serves.
    let t = Instant::now();
    let (st, v) = post(&s, "/v2/models/faulty/infer", Some(&body(1000.0)));
    assert_eq!(st, 503, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("worker_timeout"),
        "{v}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(eventually(Duration::from_secs(10), || {
        post(&s, "/v2/models/faulty/infer", Some(&body(3.0))).0 == 200
    }));
}

#[test]
#[cfg_attr(
    no_python_numpy,
    ignore = "needs python3 with numpy and pandas (pip install numpy pandas)"
)]
fn a_missing_package_makes_only_that_model_not_ready() {
    let repo = tempfile::tempdir().unwrap();
    write_model(
        repo.path(),
        "needs_pkg",
        "backend = \"python\"\npredictor = \"model:P\"\n",
        "import not_a_module_ferroserve_knows\nclass P:\n    def predict(self, x):\n        return x\n",
    );
    ferroserve_testkit::copy_dir(
        &common::examples().join("diabetes"),
        &repo.path().join("diabetes"),
    );
    let s = serve_repo(repo.path());
    let (st, _) = get(&s, "/v2/models/diabetes/ready");
    assert_eq!(st, 200);
    let (st, _) = get(&s, "/v2/models/needs_pkg/ready");
    assert_ne!(st, 200);
    let (_, index) = post(&s, "/v2/repository/index", Some(&json!({})));
    let entry = index
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "needs_pkg")
        .unwrap()
        .clone();
    assert_eq!(entry["state"], "UNAVAILABLE");
    let reason = entry["reason"].as_str().unwrap();
    assert!(
        reason.contains("not_a_module_ferroserve_knows") && reason.contains("pip install"),
        "{reason}"
    );
    assert!(
        !reason.contains(repo.path().to_str().unwrap()),
        "no paths: {reason}"
    );
}

const COLUMNS: &str = r#"
import numpy as np
import pandas as pd

class Columns:
    def load(self):
        pass

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        desc = ",".join(f"{c}:{df[c].dtype}" for c in df.columns)
        return pd.DataFrame({
            "columns": [desc] * len(df),
            "b": df["b"],
            "b_is_nan": df["b"].isna(),
            "s": df["s"].str.upper(),
        })
"#;

#[test]
#[cfg_attr(
    no_python_numpy,
    ignore = "needs python3 with numpy and pandas (pip install numpy pandas)"
)]
fn dataframe_columns_dtypes_and_nan_are_preserved() {
    let repo = tempfile::tempdir().unwrap();
    write_model(
        repo.path(),
        "columns",
        "backend = \"python\"\npredictor = \"model:Columns\"\n\
         [[inputs]]\nname = \"a\"\ndatatype = \"INT32\"\nshape = [-1]\n\
         [[inputs]]\nname = \"b\"\ndatatype = \"FP64\"\nshape = [-1]\n\
         [[inputs]]\nname = \"s\"\ndatatype = \"BYTES\"\nshape = [-1]\n",
        COLUMNS,
    );
    let s = serve_repo(repo.path());
    let (st, v) = post(
        &s,
        "/v2/models/columns/infer",
        Some(&json!({"inputs": [
            {"name": "a", "datatype": "INT32", "shape": [2], "data": [1, 2]},
            {"name": "b", "datatype": "FP64", "shape": [2], "data": [0.5, null]},
            {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["x", "yz"]}
        ]})),
    );
    assert_eq!(st, 200, "{v}");
    let out = |n: &str| {
        v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == n)
            .unwrap_or_else(|| panic!("no output {n}: {v}"))
            .clone()
    };
    // Text columns: `object`, or pandas 3's `str`.
    let columns = out("columns")["data"][0].as_str().unwrap().to_string();
    assert!(
        ["a:int32,b:float64,s:object", "a:int32,b:float64,s:str"].contains(&columns.as_str()),
        "{columns}"
    );
    assert_eq!(out("b")["data"], json!([0.5, null]));
    assert_eq!(out("b_is_nan")["data"], json!([false, true]));
    assert_eq!(out("b_is_nan")["datatype"], "BOOL");
    assert_eq!(out("s")["data"], json!(["X", "YZ"]));
    // The friendly routes send one table of numbers: this model is refused there with where
    // to go instead, and keeps serving v2.
    let (st, e) = post(
        &s,
        "/models/columns/predict",
        Some(&json!({"a": 1, "b": 0.5, "s": "x"})),
    );
    assert_eq!(st, 400, "{e}");
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|m| m.contains("/v2/models/columns/infer")),
        "{e}"
    );
}
