//! `ferroserve serve --config FILE`: a TOML file of flag settings, under the environment and
//! the command line; an unknown key or a bad value refused at start, naming it.

mod common;

use std::time::Duration;

use common::{examples, Server};
use serde_json::{json, Value};

fn predictions(s: &Server) -> Vec<Value> {
    let r = reqwest::blocking::Client::new()
        .get(s.url("/v2/models/iris/predictions"))
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().unwrap()["records"]
        .as_array()
        .unwrap()
        .clone()
}

/// The records once there are more than `n` (the writer takes them in batches, a moment later).
fn predictions_past(s: &Server, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let recs = predictions(s);
        if recs.len() > n || std::time::Instant::now() > deadline {
            return recs;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn infer(s: &Server) {
    let r = reqwest::blocking::Client::new()
        .post(s.url("/v2/models/iris/infer"))
        .json(&json!({"id": "c-1", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}))
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn settings_come_from_the_file_under_the_environment_and_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ferroserve.toml");
    std::fs::write(
        &config,
        format!(
            "# ferroserve serve's flags, by their long names\nrepository = {:?}\ndata-dir = {:?}\nprediction-log = [\"sqlite\"]\nprediction_log_record = \"all\"\nrequest-log = \"off\"\n",
            examples().to_str().unwrap(),
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();

    // From the file alone: the log is on, in its data folder, with the inputs.
    let s = Server::start(&["--config", c], &[]);
    infer(&s);
    assert!(s.terminate().success());
    assert!(data.join("predictions.sqlite").exists());

    let s = Server::start(&[], &[("FERROSERVE_CONFIG", c)]);
    let recs = predictions(&s);
    assert_eq!(
        recs.len(),
        1,
        "the file named by FERROSERVE_CONFIG: {recs:?}"
    );
    assert!(recs[0]["inputs"].is_array(), "{}", recs[0]);
    drop(s);

    // The environment wins over the file; the command line over both.
    let env = [("FERROSERVE_PREDICTION_LOG_RECORD", "outputs")];
    let s = Server::start(&["--config", c], &env);
    infer(&s);
    let recs = predictions_past(&s, 1);
    assert_eq!(recs.len(), 2);
    assert!(recs[1]["inputs"].is_null(), "{}", recs[1]);
    assert!(s.terminate().success());
    let s = Server::start(&["--config", c, "--prediction-log-record", "all"], &env);
    infer(&s);
    let recs = predictions_past(&s, 2);
    assert_eq!(recs.len(), 3);
    assert!(recs[2]["inputs"].is_array(), "{}", recs[2]);
}

#[test]
fn an_unknown_key_or_a_bad_value_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        ("http-prot = 8000\n", "unknown key `http-prot`"),
        ("http-port = \"eighty\"\n", "eighty"),
        (
            "prediction-log = [{ a = 1 }]\n",
            "`prediction-log`: expected a list",
        ),
        ("http-port = [1, 2]\n", "`http-port` takes one value"),
        ("= nonsense", "--config ferroserve.toml"),
    ] {
        let config = dir.path().join("ferroserve.toml");
        std::fs::write(&config, text).unwrap();
        let out = common::ferroserve()
            .args(["serve", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}: started");
        assert!(err.contains(expected), "{text}: {err}");
        assert!(
            !err.contains(dir.path().to_str().unwrap()),
            "a path in: {err}"
        );
    }
}
