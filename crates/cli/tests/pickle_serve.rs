//! `MODEL_FILE=/data/model.pkl ferroserve serve` end to end, with the real binary and a real
//! scikit-learn: the Flask tutorial's kind of pickle (an iris classifier answering species
//! names) is converted and verified on the first start, answers the tutorial's
//! `GET /prediction?slength=..` (the route from a model.toml beside the pickle) and v2; the
//! second start is served from the cache without running Python (a counting interpreter proves
//! it); two servers starting at once on one cache leave one whole entry; `--no-pickle` refuses
//! the file naming the flag; a corrupt pickle and a missing interpreter leave the server up with
//! the model not ready and a reason that names no path and quotes no content; a pickle the
//! converter cannot convert is cached as a Python backend folder, and `ferroserve import
//! --python` writes the same folder into a repository.
//!
//! The tests that need Python with the training libraries show as ignored, with the reason,
//! where they are missing (`cfg(no_python_ml)`, from build.rs). Those that serve through the
//! Python backend are ignored until it lands (issue 12, crates/python).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{client, Server};
use ferroserve_testkit::{require, Need, PYTHON_ML};
use serde_json::{json, Value};

/// The Flask tutorial's request.
const FLASK_QUERY: &str = "/prediction?slength=1.5&swidth=0.7&plength=1.3&pwidth=0.3";

/// The route the Flask tutorial's api.py serves, as a model.toml beside the pickle declares it.
const FLASK_ROUTE: &str = r#"
[[routes]]
method = "GET"
path = "/prediction"
features = ["slength", "swidth", "plength", "pwidth"]
response_key = "prediction"
unwrap_single = true
"#;

fn python() -> String {
    std::env::var("FERROSERVE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn run_python(code: &str, args: &[&Path], envs: &[(&str, &Path)]) {
    let mut cmd = Command::new(python());
    cmd.arg("-c").arg(code).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("run python");
    assert!(
        o.status.success(),
        "python failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Trains the Flask tutorial's kind of model (an iris classifier on the four measurements,
/// answering species names) and pickles it to `path`; returns what scikit-learn predicts for the
/// tutorial's row.
fn flask_pickle(path: &Path) -> String {
    let want = path.with_extension("want");
    run_python(
        "import pickle, sys\n\
         from sklearn.datasets import load_iris\n\
         from sklearn.tree import DecisionTreeClassifier\n\
         d = load_iris()\n\
         names = ['Iris-setosa', 'Iris-versicolor', 'Iris-virginica']\n\
         y = [names[t] for t in d.target]\n\
         m = DecisionTreeClassifier(random_state=0).fit(d.data, y)\n\
         pickle.dump(m, open(sys.argv[1], 'wb'))\n\
         open(sys.argv[2], 'w').write(m.predict([[1.5, 0.7, 1.3, 0.3]])[0])\n",
        &[path, &want],
        &[],
    );
    std::fs::read_to_string(want).unwrap()
}

/// An interpreter that counts its runs in `counter`, then runs the real one.
fn counting_python(dir: &Path, counter: &Path) -> PathBuf {
    let p = dir.join("counting-python");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho run >> '{}'\nexec {} \"$@\"\n",
            counter.display(),
            python()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    p
}

fn runs(counter: &Path) -> usize {
    std::fs::read_to_string(counter)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// The cache entries and the other names in `<data>/pickles`.
fn cache_listing(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("pickles"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn index(c: &reqwest::Client, s: &Server) -> Value {
    c.post(s.url("/v2/repository/index"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn status(c: &reqwest::Client, s: &Server, path: &str) -> u16 {
    c.get(s.url(path)).send().await.unwrap().status().as_u16()
}

/// The server's log lines so far.
fn log(s: &Server) -> String {
    s.stderr.try_iter().collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// One reason each (two `ignore`s on one test are refused by clippy): Python's first.
#[cfg_attr(
    all(no_onnxruntime, not(no_python_ml)),
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
#[cfg_attr(
    no_python_ml,
    ignore = "needs Python with the training libraries: pip install -r requirements-dev.txt"
)]
async fn model_file_pickle_is_converted_once_and_served_from_the_cache_without_python() {
    require(Need::PythonModules(PYTHON_ML), "serving a pickle");
    let dir = tempfile::tempdir().unwrap();
    let pickle = dir.path().join("model.pkl");
    let want = flask_pickle(&pickle);
    std::fs::write(dir.path().join("model.toml"), FLASK_ROUTE).unwrap();
    let data = dir.path().join("data");
    let counter = dir.path().join("runs");
    let py = counting_python(dir.path(), &counter);
    let envs = [
        ("MODEL_FILE", pickle.to_str().unwrap()),
        ("FERROSERVE_DATA_DIR", data.to_str().unwrap()),
        ("FERROSERVE_PYTHON", py.to_str().unwrap()),
    ];
    let c = client();

    // First start: converted and verified.
    let s = Server::start(&[], &envs);
    let r = c.get(s.url(FLASK_QUERY)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "prediction": want })
    );
    // v2 as for any model: the file stem is the model's name.
    let r = c
        .post(s.url("/v2/models/model/infer"))
        .json(
            &json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                                   "data": [1.5, 0.7, 1.3, 0.3]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let label = body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "label")
        .unwrap_or_else(|| panic!("no label in {body}"));
    assert_eq!(label["data"], json!([want]));
    assert!(s.terminate().success());
    let first_runs = runs(&counter);
    assert!(first_runs > 0, "the first start ran no Python");
    let listing = cache_listing(&data);
    assert_eq!(listing.len(), 1, "one entry, no staging left: {listing:?}");
    let entry = data.join("pickles").join(&listing[0]);
    assert_eq!(listing[0].len(), 64, "a SHA-256 key: {listing:?}");
    for f in ["model.toml", "entry.json", "verify.json", "1/model.onnx"] {
        assert!(entry.join(f).is_file(), "the entry has no {f}");
    }
    let record: Value =
        serde_json::from_slice(&std::fs::read(entry.join("entry.json")).unwrap()).unwrap();
    assert_eq!(record["kind"], "converted");
    assert_eq!(record["n_features"], 4);

    // Second start: served from the cache, Python never runs.
    let s = Server::start(&[], &envs);
    let r = c.get(s.url(FLASK_QUERY)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "prediction": want })
    );
    let logs = log(&s);
    assert!(s.terminate().success());
    assert_eq!(runs(&counter), first_runs, "the cached start ran Python");
    assert!(logs.contains("no Python run"), "{logs}");
    assert!(logs.contains("runs code stored in the file"), "{logs}");

    // --model and --model-name, a .joblib name, the same bytes: the same entry serves.
    let joblib = dir.path().join("iris.joblib");
    std::fs::copy(&pickle, &joblib).unwrap();
    let s = Server::start(
        &[
            "--model",
            joblib.to_str().unwrap(),
            "--model-name",
            "flask",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[("FERROSERVE_PYTHON", py.to_str().unwrap())],
    );
    assert_eq!(status(&c, &s, "/v2/models/flask/ready").await, 200);
    assert!(s.terminate().success());
    assert_eq!(runs(&counter), first_runs, "the same bytes converted again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// One reason each (two `ignore`s on one test are refused by clippy): Python's first.
#[cfg_attr(
    all(no_onnxruntime, not(no_python_ml)),
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
#[cfg_attr(
    no_python_ml,
    ignore = "needs Python with the training libraries: pip install -r requirements-dev.txt"
)]
async fn two_servers_starting_at_once_on_one_cache_leave_one_whole_entry() {
    require(Need::PythonModules(PYTHON_ML), "the cache race");
    let dir = tempfile::tempdir().unwrap();
    let pickle = dir.path().join("model.pkl");
    let want = flask_pickle(&pickle);
    std::fs::write(dir.path().join("model.toml"), FLASK_ROUTE).unwrap();
    let data = dir.path().join("data");
    let args = [
        "--model",
        pickle.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let a = Server::start_unloaded(&args, &[]);
    let b = Server::start_unloaded(&args, &[]);
    a.wait_loaded();
    b.wait_loaded();
    let c = client();
    let mut logs = String::new();
    for s in [&a, &b] {
        let r = c.get(s.url(FLASK_QUERY)).send().await.unwrap();
        logs.push_str(&log(s));
        assert_eq!(r.status(), 200, "{logs}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({ "prediction": want })
        );
    }
    // Both converted and the second to publish served the first's entry, or (on a machine so
    // slow that one had finished before the other looked) the second was served from the cache.
    assert!(
        logs.contains("another server cached this pickle at the same time")
            || logs.contains("no Python run"),
        "{logs}"
    );
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    let listing = cache_listing(&data);
    assert_eq!(listing.len(), 1, "one entry and no staging: {listing:?}");
    let entry = data.join("pickles").join(&listing[0]);
    let record: Value =
        serde_json::from_slice(&std::fs::read(entry.join("entry.json")).unwrap()).unwrap();
    assert_eq!(record["kind"], "converted");
    assert!(entry.join("1/model.onnx").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pickle_refuses_the_file_naming_the_flag_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let pickle = dir.path().join("model.pkl");
    std::fs::write(&pickle, b"\x80\x04not run").unwrap();
    let data = dir.path().join("data");
    let c = client();
    for (args, envs) in [
        (vec!["--no-pickle"], vec![]),
        (vec![], vec![("FERROSERVE_NO_PICKLE", "true")]),
    ] {
        let mut all = vec![
            "--model",
            pickle.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ];
        all.extend(args);
        // An interpreter that would fail the test if it ran.
        let mut envs = envs;
        envs.push(("FERROSERVE_PYTHON", "/nonexistent/python3"));
        let s = Server::start(&all, &envs);
        let idx = index(&c, &s).await;
        let reason = idx[0]["reason"].as_str().unwrap_or_default().to_string();
        assert_eq!(idx[0]["name"], "model");
        assert!(reason.contains("--no-pickle"), "{reason}");
        assert!(reason.contains("FERROSERVE_NO_PICKLE"), "{reason}");
        assert!(reason.contains("runs code"), "{reason}");
        assert!(
            !reason.contains("was not found"),
            "Python was asked: {reason}"
        );
        assert!(!reason.contains(&*dir.path().to_string_lossy()), "{reason}");
        assert_eq!(status(&c, &s, "/v2/health/live").await, 200);
        assert_eq!(status(&c, &s, "/v2/health/ready").await, 503);
        assert_ne!(status(&c, &s, "/v2/models/model/ready").await, 200);
        assert!(s.terminate().success());
    }
    assert!(!data.exists(), "--no-pickle wrote into the data folder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_python_the_model_is_not_ready_with_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let pickle = dir.path().join("model.pkl");
    std::fs::write(&pickle, b"\x80\x04whatever").unwrap();
    let data = dir.path().join("data");
    let s = Server::start(
        &[
            "--model",
            pickle.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--python-interpreter",
            "/nonexistent/bin/python3",
        ],
        &[],
    );
    let c = client();
    let idx = index(&c, &s).await;
    let reason = idx[0]["reason"].as_str().unwrap_or_default();
    assert_eq!(idx[0]["state"], "UNAVAILABLE");
    assert!(reason.contains("Install Python 3"), "{reason}");
    assert!(reason.contains("pip install"), "{reason}");
    assert!(reason.contains("scikit-learn"), "{reason}");
    assert!(
        !reason.contains("/nonexistent"),
        "a path in the answer: {reason}"
    );
    assert_eq!(status(&c, &s, "/v2/health/live").await, 200);
    assert_eq!(status(&c, &s, "/v2/health/ready").await, 503);
    assert!(s.terminate().success());
    // Nothing cached: the next start (with Python installed) converts.
    assert!(
        cache_listing(&data).is_empty(),
        "{:?}",
        cache_listing(&data)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_python_ml,
    ignore = "needs Python with the training libraries: pip install -r requirements-dev.txt"
)]
async fn a_corrupt_pickle_is_not_ready_with_a_reason_naming_no_path_and_no_content() {
    require(Need::PythonModules(PYTHON_ML), "the corrupt pickle test");
    let dir = tempfile::tempdir().unwrap();
    let pickle = dir.path().join("broken.pkl");
    std::fs::write(&pickle, b"SECRET-CONTENT-7f3a is not a pickle\n").unwrap();
    let data = dir.path().join("data");
    let s = Server::start(
        &[
            "--model",
            pickle.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let c = client();
    let idx = index(&c, &s).await;
    let reason = idx[0]["reason"].as_str().unwrap_or_default().to_string();
    assert_eq!(idx[0]["name"], "broken");
    assert!(
        reason.contains("broken.pkl cannot be unpickled"),
        "{reason}"
    );
    let mut answers = vec![idx.to_string()];
    for path in [
        "/v2/models/broken/ready",
        "/v2/models/broken",
        "/models/broken",
    ] {
        answers.push(
            c.get(s.url(path))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    let r = c
        .post(s.url("/v2/models/broken/infer"))
        .json(&json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1], "data": [1]}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error() || r.status().is_server_error());
    answers.push(r.text().await.unwrap());
    let place = dir.path().to_string_lossy().into_owned();
    for a in &answers {
        assert!(!a.contains("SECRET"), "file content in an answer: {a}");
        assert!(!a.contains(&place), "a path in an answer: {a}");
    }
    assert_eq!(status(&c, &s, "/v2/health/live").await, 200);
    assert!(s.terminate().success());
    assert!(
        cache_listing(&data).is_empty(),
        "{:?}",
        cache_listing(&data)
    );
}

/// A module with a custom transformer skl2onnx has no converter for, in `dir`.
const CUSTOM: &str = r#"from sklearn.base import BaseEstimator, TransformerMixin


class Doubler(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):
        self.n_features_in_ = len(X[0])
        return self

    def transform(self, X):
        return [[2 * v for v in row] for row in X]
"#;

/// Pickles a Pipeline (custom Doubler, LogisticRegression) on iris to `path`; the custom
/// module is written into `dir` (which must be on PYTHONPATH to unpickle it).
fn custom_pickle(dir: &Path, path: &Path) {
    std::fs::write(dir.join("custom_steps.py"), CUSTOM).unwrap();
    run_python(
        "import pickle, sys\n\
         from sklearn.datasets import load_iris\n\
         from sklearn.linear_model import LogisticRegression\n\
         from sklearn.pipeline import make_pipeline\n\
         from custom_steps import Doubler\n\
         d = load_iris()\n\
         m = make_pipeline(Doubler(), LogisticRegression(max_iter=1000)).fit(d.data.tolist(), d.target)\n\
         pickle.dump(m, open(sys.argv[1], 'wb'))\n",
        &[path],
        &[("PYTHONPATH", dir)],
    );
}

/// Checks a Python backend folder: model.toml as the backend's contract says, the pickle
/// copied in byte for byte.
fn assert_python_folder(model_dir: &Path, vdir: &Path, pickle: &Path) {
    let toml = std::fs::read_to_string(model_dir.join("model.toml")).unwrap();
    let t: toml::Table = toml.parse().unwrap();
    assert_eq!(t["backend"].as_str(), Some("python"), "{toml}");
    assert_eq!(
        t["predictor"].as_str(),
        Some("ferroserve:PicklePredictor"),
        "{toml}"
    );
    assert_eq!(
        t["checkpoint"]["file"].as_str(),
        Some("model.pkl"),
        "{toml}"
    );
    assert_eq!(t["batch_format"].as_str(), Some("numpy"), "{toml}");
    let input = &t["inputs"].as_array().unwrap()[0];
    assert_eq!(input["datatype"].as_str(), Some("FP64"), "{toml}");
    assert_eq!(
        input["shape"].as_array().unwrap(),
        &vec![toml::Value::Integer(-1), toml::Value::Integer(4)],
        "{toml}"
    );
    assert_eq!(
        std::fs::read(vdir.join("model.pkl")).unwrap(),
        std::fs::read(pickle).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_python_ml,
    ignore = "needs Python with the training libraries: pip install -r requirements-dev.txt"
)]
async fn an_unconvertible_pickle_is_cached_as_a_python_backend_folder_with_a_warning() {
    require(Need::PythonModules(PYTHON_ML), "the Python fallback");
    let dir = tempfile::tempdir().unwrap();
    let pickle = dir.path().join("custom.pkl");
    custom_pickle(dir.path(), &pickle);
    let data = dir.path().join("data");
    let s = Server::start(
        &[
            "--model",
            pickle.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[("PYTHONPATH", dir.path().to_str().unwrap())],
    );
    let logs = log(&s);
    assert!(s.terminate().success());
    assert!(logs.contains("runs in Python"), "{logs}");
    assert!(logs.contains("skl2onnx cannot convert"), "{logs}");
    let listing = cache_listing(&data);
    assert_eq!(listing.len(), 1, "{listing:?}");
    let entry = data.join("pickles").join(&listing[0]);
    assert_python_folder(&entry, &entry.join("1"), &pickle);
    let record: Value =
        serde_json::from_slice(&std::fs::read(entry.join("entry.json")).unwrap()).unwrap();
    assert_eq!(record["kind"], "python");
    assert!(
        record["why_python"]
            .as_str()
            .unwrap()
            .contains("skl2onnx cannot convert"),
        "{record}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_python_ml,
    ignore = "needs Python with the training libraries: pip install -r requirements-dev.txt"
)]
async fn import_python_writes_the_python_backend_folder_without_converting() {
    require(Need::PythonModules(PYTHON_ML), "import --python");
    let dir = tempfile::tempdir().unwrap();
    let pickle = dir.path().join("custom.pkl");
    custom_pickle(dir.path(), &pickle);
    let out = dir.path().join("repo/custom");
    // Without --python the import refuses and says what --python does.
    let o = common::ferroserve()
        .arg("import")
        .arg(&pickle)
        .arg("--out")
        .arg(&out)
        .env("PYTHONPATH", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("skl2onnx cannot convert"), "{text}");
    assert!(text.contains("--python"), "{text}");
    assert!(!out.exists());
    let o = common::ferroserve()
        .arg("import")
        .arg("--python")
        .arg(&pickle)
        .arg("--out")
        .arg(&out)
        .env("PYTHONPATH", dir.path())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_python_folder(&out, &out.join("1"), &pickle);
}

/// The iris rows the Python backend's tests ask for, and what the pipeline predicts for them.
async fn assert_answers_like_scikit_learn(c: &reqwest::Client, s: &Server, model: &str) {
    let rows = [
        [5.1, 3.5, 1.4, 0.2],
        [7.0, 3.2, 4.7, 1.4],
        [6.3, 3.3, 6.0, 2.5],
    ];
    let r = c
        .post(s.url(&format!("/v2/models/{model}/infer")))
        .json(
            &json!({"inputs": [{"name": "input", "datatype": "FP64", "shape": [3, 4],
                                   "data": rows.concat()}]}),
        )
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let got = ferroserve_testkit::numbers(&body["outputs"][0]["data"]);
    assert_eq!(got, vec![0.0, 1.0, 2.0], "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_python_ml,
    ignore = "needs Python with the training libraries: pip install -r requirements-dev.txt"
)]
async fn an_unconvertible_pickle_answers_through_the_python_backend() {
    require(Need::PythonModules(PYTHON_ML), "the Python fallback");
    let dir = tempfile::tempdir().unwrap();
    let pickle = dir.path().join("custom.pkl");
    custom_pickle(dir.path(), &pickle);
    let data = dir.path().join("data");
    let envs = [
        ("MODEL_FILE", pickle.to_str().unwrap()),
        ("FERROSERVE_DATA_DIR", data.to_str().unwrap()),
        ("PYTHONPATH", dir.path().to_str().unwrap()),
    ];
    let c = client();
    for _start in 0..2 {
        let s = Server::start(&[], &envs);
        wait_ready(&c, &s, "custom").await;
        assert_answers_like_scikit_learn(&c, &s, "custom").await;
        assert!(s.terminate().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_python_ml,
    ignore = "needs Python with the training libraries: pip install -r requirements-dev.txt"
)]
async fn a_repository_written_by_import_python_serves_the_pickle() {
    require(Need::PythonModules(PYTHON_ML), "import --python");
    let dir = tempfile::tempdir().unwrap();
    let pickle = dir.path().join("custom.pkl");
    custom_pickle(dir.path(), &pickle);
    let repo = dir.path().join("repo");
    let o = common::ferroserve()
        .arg("import")
        .arg("--python")
        .arg(&pickle)
        .arg("--out")
        .arg(repo.join("custom"))
        .env("PYTHONPATH", dir.path())
        .output()
        .unwrap();
    assert!(o.status.success());
    let s = Server::start(
        &["--repository", repo.to_str().unwrap()],
        &[("PYTHONPATH", dir.path().to_str().unwrap())],
    );
    let c = client();
    wait_ready(&c, &s, "custom").await;
    assert_answers_like_scikit_learn(&c, &s, "custom").await;
    assert!(s.terminate().success());
}

/// Waits (at most 60 s) for the model to be ready: Python workers may start after the load.
async fn wait_ready(c: &reqwest::Client, s: &Server, model: &str) {
    let t = Instant::now();
    while status(c, s, &format!("/v2/models/{model}/ready")).await != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{model} not ready after 60 s: {}",
            index(c, s).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
