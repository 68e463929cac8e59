//! End-to-end over HTTP for the ONNX Runtime backend: the bundled ONNX Runtime examples
//! (`wine_pipeline`, `iris_mlp`) answer what scikit-learn answered (examples/models/expected.json);
//! a graph with one input per column, a string column among them, takes BYTES and numbers in one
//! request; a ZipMap graph with string classes answers BYTES labels and an FP32 probabilities
//! tensor; `backend = "onnx"` forces ONNX Runtime on a tree ensemble and answers what the native
//! engine answers; and a server that cannot find ONNX Runtime keeps serving its tree models while
//! the ONNX ones say how to install it (that one needs no ONNX Runtime and always runs).

mod common;

use std::path::Path;

use common::{client, examples, repo_root, Server};
use ferroserve_testkit::{assert_close, numbers, require, Need, Tol};
use serde_json::{json, Value};

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(examples().join("expected.json")).unwrap()).unwrap()
}

fn output<'a>(resp: &'a Value, name: &str) -> &'a Value {
    resp["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {resp}"))
}

async fn post(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = client().post(s.url(path)).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
async fn bundled_onnx_examples_answer_what_sklearn_answers() {
    require(Need::OnnxRuntime, "the bundled ONNX examples over HTTP");
    let s = Server::start(&["--instances", "2"], &[]);
    let exp = expected();
    for name in ["wine_pipeline", "iris_mlp"] {
        let e = &exp[name];
        let meta: Value = client()
            .get(s.url(&format!("/v2/models/{name}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(meta["platform"], "onnxruntime_onnx", "{meta}");
        let nf = e["rows"][0].as_array().unwrap().len();
        assert_eq!(meta["inputs"][0]["shape"], json!([-1, nf]));
        assert_eq!(meta["parameters"]["feature_names"], e["feature_names"]);
        let rows = e["rows"].as_array().unwrap();
        let body = json!({"inputs": [{"name": "input", "shape": [rows.len(), nf], "datatype": "FP64", "data": rows}]});
        let (st, out) = post(&s, &format!("/v2/models/{name}/infer"), &body).await;
        assert_eq!(st, 200, "{out}");
        assert_close(
            &format!("{name} labels vs scikit-learn"),
            &numbers(&output(&out, "label")["data"]),
            &numbers(&e["label"]),
            Tol::EXACT,
        );
        let tol = e["tolerance"].as_f64().unwrap();
        assert_close(
            &format!("{name} probabilities vs scikit-learn"),
            &numbers(&output(&out, "probabilities")["data"]),
            &numbers(&e["probabilities"]),
            Tol::abs(tol),
        );
        assert_eq!(
            output(&out, "probabilities")["shape"],
            json!([rows.len(), 3])
        );
    }
    // The ready-made request file.
    let body: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("examples/requests/wine_pipeline_v2.json")).unwrap(),
    )
    .unwrap();
    let (st, out) = post(&s, "/v2/models/wine_pipeline/infer", &body).await;
    assert_eq!(st, 200, "{out}");
    let want = &exp["wine_pipeline"]["requests"]["wine_pipeline_v2.json"];
    assert_close(
        "wine_pipeline_v2.json labels vs scikit-learn",
        &numbers(&output(&out, "label")["data"]),
        &numbers(&want["label"]),
        Tol::EXACT,
    );
    // A bad request gets a v2 error and the model keeps serving.
    let bad = json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]});
    let (st, out) = post(&s, "/v2/models/wine_pipeline/infer", &bad).await;
    assert_eq!(st, 400, "{out}");
    assert!(out["error"].is_string());
    let (st, _) = post(&s, "/v2/models/wine_pipeline/infer", &body).await;
    assert_eq!(st, 200);
    assert!(s.terminate().success());
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
async fn columns_strings_and_forced_onnx_backend() {
    require(
        Need::OnnxRuntime,
        "ONNX columns and forced backend over HTTP",
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let fixtures = repo_root().join("crates/onnx/tests/fixtures");
    copy(
        &fixtures.join("columns.onnx"),
        &repo.join("columns/1/model.onnx"),
    );
    copy(
        &fixtures.join("zipmap_str.onnx"),
        &repo.join("zipmap_str/1/model.onnx"),
    );
    copy(
        &examples().join("iris/1/model.onnx"),
        &repo.join("iris_ort/1/model.onnx"),
    );
    std::fs::write(repo.join("iris_ort/model.toml"), "backend = \"onnx\"\n").unwrap();
    copy(
        &examples().join("iris/1/model.onnx"),
        &repo.join("iris_trees/1/model.onnx"),
    );
    let s = Server::start(&["--repository", repo.to_str().unwrap()], &[]);

    let golden: Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("golden.json")).unwrap()).unwrap();
    let case = &golden["columns"];
    let (st, out) = post(
        &s,
        "/v2/models/columns/infer",
        &json!({"inputs": case["inputs"]}),
    )
    .await;
    assert_eq!(st, 200, "{out}");
    assert_close(
        "columns vs onnxruntime",
        &numbers(&output(&out, "probabilities")["data"]),
        &numbers(&case["outputs"]["probabilities"]["data"]),
        Tol::abs(1e-6),
    );
    // Several inputs: names must match.
    let mut wrong = case["inputs"].clone();
    wrong[0]["name"] = json!("colour");
    let (st, out) = post(&s, "/v2/models/columns/infer", &json!({"inputs": wrong})).await;
    assert_eq!(st, 400, "{out}");

    // ZipMap with string classes: BYTES labels and an FP32 [rows, classes] probabilities tensor.
    let case = &golden["zipmap_str"];
    let (st, out) = post(
        &s,
        "/v2/models/zipmap_str/infer",
        &json!({"inputs": case["inputs"]}),
    )
    .await;
    assert_eq!(st, 200, "{out}");
    let label = output(&out, "output_label");
    assert_eq!(label["datatype"], "BYTES");
    assert_eq!(label["data"], case["outputs"]["output_label"]["data"]);
    let probs = output(&out, "output_probability");
    assert_eq!(probs["datatype"], "FP32");
    assert_eq!(
        probs["shape"],
        case["outputs"]["output_probability"]["shape"]
    );
    assert_close(
        "zipmap_str vs onnxruntime",
        &numbers(&probs["data"]),
        &numbers(&case["outputs"]["output_probability"]["data"]),
        Tol::abs(1e-6),
    );
    let meta: Value = client()
        .get(s.url("/v2/models/zipmap_str"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["parameters"]["class_labels"],
        json!(["setosa", "versicolor", "virginica"])
    );
    // The friendly routes read the graph's task, not its output names: skl2onnx's
    // `output_label` and ZipMap `output_probability` answer as the trees' `label` and
    // `probabilities` do.
    let x = &case["inputs"][0];
    let width = x["shape"][1].as_u64().unwrap() as usize;
    let rows: Vec<Value> = x["data"]
        .as_array()
        .unwrap()
        .chunks(width)
        .map(|r| json!(r))
        .collect();
    let (st, out) = post(
        &s,
        "/models/zipmap_str/predict?probabilities=true",
        &json!(rows),
    )
    .await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["predictions"], case["outputs"]["output_label"]["data"]);
    let probs: Vec<f64> = out["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| numbers(r))
        .collect();
    assert_close(
        "zipmap_str friendly probabilities vs onnxruntime",
        &probs,
        &numbers(&case["outputs"]["output_probability"]["data"]),
        Tol::abs(1e-6),
    );

    // Forced ONNX Runtime answers what the native engine answers on the same tree ensemble.
    let meta: Value = client()
        .get(s.url("/v2/models/iris_ort"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["platform"], "onnxruntime_onnx");
    let body = json!({"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32",
        "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3, 5.9, 3.0, 4.2, 1.5]}]});
    let (_, ort) = post(&s, "/v2/models/iris_ort/infer", &body).await;
    let (_, trees) = post(&s, "/v2/models/iris_trees/infer", &body).await;
    assert_close(
        "forced onnx vs trees",
        &numbers(&output(&ort, "probabilities")["data"]),
        &numbers(&output(&trees, "probabilities")["data"]),
        Tol::abs(1e-5),
    );
    assert_eq!(
        output(&ort, "label")["data"],
        output(&trees, "label")["data"]
    );
    assert!(s.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_onnx_runtime_tree_models_serve_and_onnx_models_say_what_to_install() {
    let s = Server::start(&[], &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")]);
    let index: Value = client()
        .post(s.url("/v2/repository/index"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for m in index.as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        if ["wine_pipeline", "iris_mlp"].contains(&name) {
            assert_eq!(m["state"], "UNAVAILABLE", "{m}");
            let reason = m["reason"].as_str().unwrap();
            assert!(reason.contains("pip install onnxruntime"), "{reason}");
            assert!(reason.contains("ORT_DYLIB_PATH"), "{reason}");
        } else {
            assert_eq!(m["state"], "READY", "{m}");
        }
    }
    let body = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]});
    let (st, out) = post(&s, "/v2/models/iris_mlp/infer", &body).await;
    assert_eq!(st, 503, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("pip install onnxruntime"),
        "{out}"
    );
    let (st, _) = post(&s, "/v2/models/iris/infer", &body).await;
    assert_eq!(st, 200);
    assert!(s.terminate().success());
}
