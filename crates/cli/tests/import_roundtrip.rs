//! `ferroserve import` end to end: fresh models of every accepted kind (a scikit-learn Pipeline
//! pickle, a forest and an MLP in joblib files, a ColumnTransformer pipeline with a text column,
//! a Pipeline ending in an XGBoost step, pickled XGBoost and LightGBM wrappers, native XGBoost JSON and LightGBM text boosters, an ONNX
//! graph) are trained by `tests/import_models.py`, imported with the real binary, served by the
//! real server, and answer over HTTP what their training library answered. Also: a model whose
//! answers disagree is refused with the largest difference and nothing written; a missing Python
//! library is named with the pip command; `--help` warns that pickles run code.
//!
//! Needs python3 with scikit-learn, xgboost, lightgbm, skl2onnx, onnxmltools, onnxruntime and
//! ONNX Runtime's library; without them it prints why and passes, except under `CI=true`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{client, repo_root, Server};
use ferroserve_testkit::{assert_close, numbers, require, Need, Tol, PYTHON_ML};
use serde_json::{json, Value};

fn import(model: &Path, out: &Path, envs: &[(&str, &str)]) -> Output {
    let mut cmd = common::ferroserve();
    cmd.arg("import").arg(model).arg("--out").arg(out);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run ferroserve import")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
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
async fn every_kind_of_model_file_imports_serves_and_matches_its_library() {
    require(Need::PythonModules(PYTHON_ML), "the import round trip");
    require(Need::OnnxRuntime, "the import round trip");
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    let repo = dir.path().join("repo");
    let st = Command::new("python3")
        .arg(repo_root().join("crates/cli/tests/import_models.py"))
        .arg(&files)
        .arg(repo_root())
        .output()
        .unwrap();
    assert!(st.status.success(), "training failed: {}", text(&st));
    let expected: Value =
        serde_json::from_slice(&std::fs::read(files.join("expected.json")).unwrap()).unwrap();
    let cases = expected.as_object().unwrap();
    assert_eq!(cases.len(), 10);
    // The imports run at once (each is mostly Python start-up).
    let running: Vec<(String, std::process::Child)> = cases
        .iter()
        .map(|(name, case)| {
            let child = common::ferroserve()
                .arg("import")
                .arg(files.join(case["file"].as_str().unwrap()))
                .arg("--out")
                .arg(repo.join(name))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (name.clone(), child)
        })
        .collect();
    for (name, child) in running {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "import {name} failed: {}", text(&o));
        assert!(text(&o).contains("verified on 64 rows"), "{}", text(&o));
        assert!(repo.join(&name).join("model.toml").is_file());
    }
    // Importing again makes version 2.
    let o = import(
        &files.join("xgb_native.json"),
        &repo.join("xgb_native"),
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(repo.join("xgb_native/2/model.json").is_file());

    let s = Server::start(&["--repository", repo.to_str().unwrap()], &[]);
    let c = client();
    for (name, case) in cases {
        let r = c
            .post(s.url(&format!("/v2/models/{name}/infer")))
            .json(&json!({"inputs": case["inputs"]}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{name}: {body}");
        let out = body["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == case["output"])
            .unwrap_or_else(|| panic!("{name}: no output {} in {body}", case["output"]));
        assert_close(
            &format!("{name} served against its library"),
            &numbers(&out["data"]),
            &numbers(&case["want"]),
            Tol::abs_rel(1e-4, 1e-4),
        );
    }
    assert!(s.terminate().success());
}

#[test]
// One reason each (two `ignore`s on one test are refused by clippy): Python's first.
#[cfg_attr(
    all(no_onnxruntime, not(no_python_ml)),
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
#[cfg_attr(
    no_python_ml,
    ignore = "needs Python with the training libraries: pip install -r requirements-dev.txt"
)]
fn disagreement_is_refused_and_nothing_is_written() {
    require(Need::PythonModules(PYTHON_ML), "the import refusal test");
    require(Need::OnnxRuntime, "the import refusal test");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("iris.pkl");
    let st = Command::new("python3")
        .args([
            "-c",
            "import pickle, sys; from sklearn.datasets import load_iris; \
             from sklearn.linear_model import LogisticRegression; d = load_iris(); \
             pickle.dump(LogisticRegression(max_iter=500).fit(d.data, d.target), open(sys.argv[1], 'wb'))",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", text(&st));
    // A helper that runs the real one, then makes the library's answers wrong.
    let wrapper = dir.path().join("skewed_helper.py");
    std::fs::write(
        &wrapper,
        format!(
            "import json, runpy, sys\n\
             real = {real:?}\n\
             sys.argv[0] = real\n\
             code = 0\n\
             try:\n    runpy.run_path(real, run_name='__main__')\n\
             except SystemExit as e:\n    code = e.code\n\
             stage = sys.argv[sys.argv.index('--stage') + 1]\n\
             v = json.load(open(stage + '/verify.json'))\n\
             for c in v['checks']:\n    if c['kind'] == 'values':\n        c['want'][3] += 0.25\n\
             json.dump(v, open(stage + '/verify.json', 'w'))\n\
             sys.exit(code)\n",
            real = repo_root().join("python/ferroserve_import.py")
        ),
    )
    .unwrap();
    let out = dir.path().join("repo/iris");
    let o = import(
        &model,
        &out,
        &[("FERROSERVE_IMPORT_HELPER", wrapper.to_str().unwrap())],
    );
    assert!(!o.status.success(), "{}", text(&o));
    let msg = text(&o);
    assert!(msg.contains("largest difference 2.5"), "{msg}");
    assert!(msg.contains("element 3"), "{msg}");
    assert!(!out.exists(), "a refused import wrote {}", out.display());

    // A missing library is named with its pip command.
    let shadow = dir.path().join("shadow");
    std::fs::create_dir_all(&shadow).unwrap();
    std::fs::write(
        shadow.join("skl2onnx.py"),
        "raise ImportError('hidden by the test')\n",
    )
    .unwrap();
    let o = import(&model, &out, &[("PYTHONPATH", shadow.to_str().unwrap())]);
    assert!(!o.status.success());
    assert!(text(&o).contains("pip install skl2onnx"), "{}", text(&o));
    assert!(!out.exists());
}

#[test]
fn help_says_pickles_run_code_and_no_python_says_what_to_install() {
    let o = common::ferroserve()
        .args(["import", "--help"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let help = text(&o);
    assert!(help.contains("runs code stored in it"), "{help}");
    assert!(help.contains("trust"), "{help}");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.pkl");
    std::fs::write(&model, b"not really").unwrap();
    let o = import(
        &model,
        &dir.path().join("repo/m"),
        &[("FERROSERVE_PYTHON", "/nonexistent/python3")],
    );
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("Install Python 3") && msg.contains("pip install"),
        "{msg}"
    );
}
