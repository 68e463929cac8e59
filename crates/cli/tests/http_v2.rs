//! End-to-end: the real binary on 127.0.0.1:0, the bundled example repository, every v2
//! endpoint and every error class over real HTTP; after each bad request the server must still
//! answer. Predictions are compared with the training libraries' own (examples/models/expected.json).

mod common;

use common::{assert_outputs_match, client, examples, Server};
use serde_json::{json, Value};

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(examples().join("expected.json")).unwrap()).unwrap()
}

async fn still_serving(s: &Server) {
    let r = client().get(s.url("/v2/health/live")).send().await.unwrap();
    assert_eq!(r.status(), 200, "server stopped answering");
    let body = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]});
    let r = client()
        .post(s.url("/v2/models/iris/infer"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "inference stopped working");
}

fn v2_body(rows: &Value) -> Value {
    let rows = rows.as_array().unwrap();
    let n = rows.len();
    let f = rows[0].as_array().unwrap().len();
    json!({"id": "t-1", "inputs": [{"name": "input", "shape": [n, f], "datatype": "FP32", "data": rows}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_and_predictions_match_the_libraries() {
    let s = Server::start(&[], &[]);
    let c = client();
    let meta: Value = c
        .get(s.url("/v2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["name"], "ferroserve");
    assert!(meta["extensions"].is_array());
    // The Open Inference Protocol's OpenAPI document gives the path as `/v2/`.
    let slash: Value = c
        .get(s.url("/v2/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(slash, meta);
    assert_eq!(
        c.get(s.url("/v2/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(s.url("/v2/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let index: Value = c
        .post(s.url("/v2/repository/index"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "breast_cancer",
            "diabetes",
            "iris",
            "iris_mlp",
            "wine",
            "wine_pipeline"
        ]
    );
    // The tree models always serve; the two ONNX Runtime examples serve when the library is
    // installed (tests/onnx_http.rs checks them), and otherwise say how to install it.
    // Under CI=true `no_onnxruntime` is never set: there ONNX Runtime must be installed.
    let ort = !cfg!(no_onnxruntime);
    for m in index.as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        if ort || !["iris_mlp", "wine_pipeline"].contains(&name) {
            assert_eq!(m["state"], "READY", "{m}");
        } else {
            assert_eq!(m["state"], "UNAVAILABLE", "{m}");
            assert!(
                m["reason"]
                    .as_str()
                    .unwrap()
                    .contains("pip install onnxruntime"),
                "{m}"
            );
        }
    }

    let exp = expected();
    let tol = exp["tolerance"].as_f64().unwrap();
    for model in ["iris", "wine", "breast_cancer", "diabetes"] {
        let e = &exp[model];
        // Metadata: latest and by version.
        let m: Value = c
            .get(s.url(&format!("/v2/models/{model}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(m["name"], model);
        assert_eq!(m["versions"], json!(["1"]));
        let nf = e["rows"][0].as_array().unwrap().len() as i64;
        assert_eq!(m["inputs"][0]["shape"], json!([-1, nf]));
        assert_eq!(m["parameters"]["feature_names"], e["feature_names"]);
        let mv: Value = c
            .get(s.url(&format!("/v2/models/{model}/versions/1")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(m, mv);
        for path in [
            format!("/v2/models/{model}/ready"),
            format!("/v2/models/{model}/versions/1/ready"),
        ] {
            let r = c.get(s.url(&path)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
        }
        // Inference on the sample rows, unversioned and versioned.
        for path in [
            format!("/v2/models/{model}/infer"),
            format!("/v2/models/{model}/versions/1/infer"),
        ] {
            let r = c
                .post(s.url(&path))
                .json(&v2_body(&e["rows"]))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let out: Value = r.json().await.unwrap();
            assert_eq!(out["model_name"], model);
            assert_eq!(out["model_version"], "1");
            assert_eq!(out["id"], "t-1");
            assert_outputs_match(&format!("{model} {path}"), &out, e, tol);
        }
    }

    // The ready-made request files in examples/requests answer what expected.json says.
    for (file, model) in [
        ("iris_v2.json", "iris"),
        ("iris_v2_batch.json", "iris"),
        ("wine_v2.json", "wine"),
        ("breast_cancer_v2.json", "breast_cancer"),
        ("diabetes_v2.json", "diabetes"),
    ] {
        let body = std::fs::read(common::repo_root().join("examples/requests").join(file)).unwrap();
        let r = c
            .post(s.url(&format!("/v2/models/{model}/infer")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{file}");
        let out: Value = r.json().await.unwrap();
        assert_outputs_match(file, &out, &exp[model]["requests"][file], tol);
    }

    // Outputs selection, nested data, other numeric types, a single row without batch dimension.
    let r: Value = c.post(s.url("/v2/models/iris/infer"))
        .json(&json!({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP64", "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}], "outputs": [{"name": "probabilities"}]}))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(r["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(r["outputs"][0]["name"], "probabilities");
    assert_eq!(r["outputs"][0]["shape"], json!([2, 3]));
    let r: Value = c.post(s.url("/v2/models/iris/infer"))
        .json(&json!({"inputs": [{"name": "input", "shape": [4], "datatype": "INT32", "data": [6, 3, 5, 2]}]}))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(r["outputs"][0]["shape"], json!([1]));

    assert!(
        s.terminate().success(),
        "SIGTERM must end the server with status 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_a_v2_error_and_the_server_keeps_serving() {
    let s = Server::start(&["--max-body-bytes", "4096"], &[]);
    let c = client();
    let good = |shape: Value, data: Value| json!({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": data}]});
    struct Case {
        what: &'static str,
        method: &'static str,
        path: &'static str,
        content_type: Option<&'static str>,
        body: Vec<u8>,
        status: u16,
        says: &'static str,
    }
    let j = |v: Value| serde_json::to_vec(&v).unwrap();
    let cases = vec![
        Case {
            what: "malformed JSON",
            method: "POST",
            path: "/v2/models/iris/infer",
            content_type: Some("application/json"),
            body: b"{\"inputs\": [".to_vec(),
            status: 400,
            says: "JSON",
        },
        Case {
            what: "empty body",
            method: "POST",
            path: "/v2/models/iris/infer",
            content_type: Some("application/json"),
            body: vec![],
            status: 400,
            says: "empty",
        },
        Case {
            what: "wrong content type",
            method: "POST",
            path: "/v2/models/iris/infer",
            content_type: Some("text/plain"),
            body: j(good(json!([1, 4]), json!([1, 2, 3, 4]))),
            status: 415,
            says: "Content-Type",
        },
        Case {
            what: "unknown model",
            method: "POST",
            path: "/v2/models/nope/infer",
            content_type: Some("application/json"),
            body: j(good(json!([1, 4]), json!([1, 2, 3, 4]))),
            status: 404,
            says: "nope",
        },
        Case {
            what: "unknown version",
            method: "POST",
            path: "/v2/models/iris/versions/7/infer",
            content_type: Some("application/json"),
            body: j(good(json!([1, 4]), json!([1, 2, 3, 4]))),
            status: 404,
            says: "version 7",
        },
        Case {
            what: "non-numeric version",
            method: "GET",
            path: "/v2/models/iris/versions/latest",
            content_type: None,
            body: vec![],
            status: 404,
            says: "latest",
        },
        Case {
            what: "unknown model metadata",
            method: "GET",
            path: "/v2/models/nope",
            content_type: None,
            body: vec![],
            status: 404,
            says: "nope",
        },
        Case {
            what: "wrong feature count",
            method: "POST",
            path: "/v2/models/iris/infer",
            content_type: Some("application/json"),
            body: j(good(json!([1, 3]), json!([1, 2, 3]))),
            status: 400,
            says: "dimension 1 is 3",
        },
        Case {
            what: "shape and data disagree",
            method: "POST",
            path: "/v2/models/iris/infer",
            content_type: Some("application/json"),
            body: j(good(json!([2, 4]), json!([1, 2, 3, 4]))),
            status: 400,
            says: "needs 8 values",
        },
        Case {
            what: "strings for numbers",
            method: "POST",
            path: "/v2/models/iris/infer",
            content_type: Some("application/json"),
            body: j(
                json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ["a", "b", "c", "d"]}]}),
            ),
            status: 400,
            says: "expects numbers",
        },
        Case {
            what: "unknown datatype",
            method: "POST",
            path: "/v2/models/iris/infer",
            content_type: Some("application/json"),
            body: j(
                json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FLOAT", "data": [1, 2, 3, 4]}]}),
            ),
            status: 400,
            says: "unknown datatype",
        },
        Case {
            what: "unknown output",
            method: "POST",
            path: "/v2/models/iris/infer",
            content_type: Some("application/json"),
            body: j(
                json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "bogus"}]}),
            ),
            status: 400,
            says: "bogus",
        },
        Case {
            what: "two inputs for a one-input model",
            method: "POST",
            path: "/v2/models/iris/infer",
            content_type: Some("application/json"),
            body: j(
                json!({"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}, {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
            ),
            status: 400,
            says: "expected 1 input",
        },
        Case {
            // Unknown fields are ignored (the KServe SDK sends model_name): what is left must
            // still be a request, and the error names the inputs the model expects.
            what: "no inputs beside unknown fields",
            method: "POST",
            path: "/v2/models/iris/infer",
            content_type: Some("application/json"),
            body: j(json!({"inputs": [], "input": [], "model_name": "iris"})),
            status: 400,
            says: "expected 1 input(s) (input), got 0",
        },
        Case {
            what: "body over the limit",
            method: "POST",
            path: "/v2/models/iris/infer",
            content_type: Some("application/json"),
            body: j(good(json!([1000, 4]), json!(vec![1.5; 4000]))),
            status: 413,
            says: "limit",
        },
        Case {
            what: "unknown route",
            method: "GET",
            path: "/v3/whatever",
            content_type: None,
            body: vec![],
            status: 404,
            says: "no route",
        },
        Case {
            what: "wrong method",
            method: "GET",
            path: "/v2/models/iris/infer",
            content_type: None,
            body: vec![],
            status: 405,
            says: "not allowed",
        },
    ];
    for case in cases {
        let mut rb = match case.method {
            "POST" => c.post(s.url(case.path)).body(case.body.clone()),
            _ => c.get(s.url(case.path)),
        };
        if let Some(ct) = case.content_type {
            rb = rb.header("content-type", ct);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status().as_u16(), case.status, "{}", case.what);
        let body: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("{}: body is not JSON: {e}", case.what));
        let msg = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no \"error\" in {body}", case.what));
        assert!(
            msg.contains(case.says),
            "{}: {msg:?} should mention {:?}",
            case.what,
            case.says
        );
        still_serving(&s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_model_is_reported_not_ready_while_the_others_serve() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    // A good model, copied from the examples.
    std::fs::create_dir_all(repo.join("good/1")).unwrap();
    std::fs::copy(
        examples().join("breast_cancer/1/model.json"),
        repo.join("good/1/model.json"),
    )
    .unwrap();
    // A corrupt artifact.
    std::fs::create_dir_all(repo.join("corrupt/1")).unwrap();
    std::fs::write(repo.join("corrupt/1/model.json"), b"{\"learner\": 12").unwrap();
    // A model.toml with a typo.
    std::fs::create_dir_all(repo.join("typo/1")).unwrap();
    std::fs::copy(
        examples().join("breast_cancer/1/model.json"),
        repo.join("typo/1/model.json"),
    )
    .unwrap();
    std::fs::write(repo.join("typo/model.toml"), "feature_nmes = []\n").unwrap();
    // A pickle, which must be imported first.
    std::fs::create_dir_all(repo.join("pickled/1")).unwrap();
    std::fs::write(repo.join("pickled/1/model.pkl"), b"\x80\x04not really").unwrap();
    // Two versions, latest = 2 served by default policy only the newest.
    std::fs::create_dir_all(repo.join("versions/1")).unwrap();
    std::fs::create_dir_all(repo.join("versions/2")).unwrap();
    std::fs::copy(
        examples().join("breast_cancer/1/model.json"),
        repo.join("versions/1/model.json"),
    )
    .unwrap();
    std::fs::copy(
        examples().join("breast_cancer/1/model.json"),
        repo.join("versions/2/model.json"),
    )
    .unwrap();
    std::fs::write(
        repo.join("versions/model.toml"),
        "version_policy = \"all\"\n",
    )
    .unwrap();

    let s = Server::start(&["--repository", repo.to_str().unwrap()], &[]);
    let c = client();
    assert_eq!(
        c.get(s.url("/v2/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let index: Value = c
        .post(s.url("/v2/repository/index"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let state = |name: &str| {
        index
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {index}"))
            .clone()
    };
    assert_eq!(state("good")["state"], "READY");
    for (name, says) in [
        ("corrupt", "malformed"),
        ("typo", "feature_nmes"),
        ("pickled", "ferroserve import"),
    ] {
        let e = state(name);
        assert_eq!(e["state"], "UNAVAILABLE", "{name}");
        assert!(
            e["reason"].as_str().unwrap().contains(says),
            "{name}: {}",
            e["reason"]
        );
        let r = c
            .get(s.url(&format!("/v2/models/{name}/ready")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{name}");
        let r = c
            .post(s.url(&format!("/v2/models/{name}/infer")))
            .json(&json!({"inputs": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{name}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{name}: {body}"
        );
    }
    let versions: Vec<Value> = index
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "versions")
        .map(|m| m["version"].clone())
        .collect();
    assert_eq!(versions, [json!("1"), json!("2")]);
    for v in ["1", "2"] {
        let r = c
            .get(s.url(&format!("/v2/models/versions/versions/{v}/ready")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Strict readiness turns the broken models into a not-ready server.
    drop(s);
    let s = Server::start(
        &["--repository", repo.to_str().unwrap(), "--strict-readiness"],
        &[],
    );
    let r = c.get(s.url("/v2/health/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("corrupt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_file_env_serves_one_model_like_the_flask_tutorial() {
    let file = examples().join("breast_cancer/1/model.json");
    let s = Server::start(&[], &[("MODEL_FILE", file.to_str().unwrap())]);
    let c = client();
    let index: Value = c
        .post(s.url("/v2/repository/index"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index.as_array().unwrap().len(), 1);
    assert_eq!(index[0]["name"], "model");
    let exp = expected();
    let r = c
        .post(s.url("/v2/models/model/infer"))
        .json(&v2_body(&exp["breast_cancer"]["rows"]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
