//! End-to-end: the friendly routes over real HTTP. Every request form (rows, records in each
//! pandas orient, KServe v1 instances, Ray arrays, CSV with and without a header, multipart,
//! query parameters, forms) answers what the training library answers; every bad request gets
//! one error body naming each problem; limits are refused cleanly; route conflicts are
//! explained; and every answer, errors included, matches `/openapi.json`.

mod common;

use common::{client, examples, expected, multipart, request_file, Server};
use ferroserve_testkit::{assert_close, assert_same, numbers, require, strings, Need, Tol};
use reqwest::Method;
use serde_json::{json, Value};

const IRIS: [&str; 4] = [
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
];

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

async fn send(
    s: &Server,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
    accept: Option<&str>,
) -> Answer {
    let mut r = client().request(method, s.url(path));
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    if let Some(a) = accept {
        r = r.header("accept", a);
    }
    let resp = r.body(body).send().await.unwrap();
    Answer {
        status: resp.status().as_u16(),
        content_type: resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: resp.bytes().await.unwrap().to_vec(),
    }
}

async fn post_json(s: &Server, path: &str, body: &Value) -> Answer {
    send(
        s,
        Method::POST,
        path,
        Some("application/json"),
        serde_json::to_vec(body).unwrap(),
        None,
    )
    .await
}

fn rows_of(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn record(names: &[&str], row: &[f64]) -> Value {
    Value::Object(
        names
            .iter()
            .zip(row)
            .map(|(n, v)| (n.to_string(), json!(v)))
            .collect(),
    )
}

fn csv(header: Option<&[&str]>, rows: &[Vec<f64>]) -> Vec<u8> {
    let mut s = String::new();
    if let Some(h) = header {
        s.push_str(&h.join(","));
        s.push('\n');
    }
    for r in rows {
        s.push_str(
            &r.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        s.push('\n');
    }
    s.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_form_answers_what_the_library_answers() {
    let s = Server::start(&[], &[]);
    let exp = expected();
    let iris = &exp["iris"];
    let rows = rows_of(&iris["rows"]);
    let names = iris["label_names"].clone();
    let probs: Vec<f64> = rows_of(&iris["probabilities"]).concat();
    let records: Vec<Value> = rows.iter().map(|r| record(&IRIS, r)).collect();
    // Columns in another order, to check that names, not positions, decide.
    let perm = [3usize, 0, 2, 1];
    let pnames: Vec<&str> = perm.iter().map(|&i| IRIS[i]).collect();
    let prow = |r: &Vec<f64>| perm.iter().map(|&i| r[i]).collect::<Vec<f64>>();
    let columns: Value = Value::Object(
        IRIS.iter()
            .enumerate()
            .map(|(j, n)| {
                let col: serde_json::Map<String, Value> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("r{i}"), json!(r[j])))
                    .collect();
                (n.to_string(), Value::Object(col))
            })
            .collect(),
    );
    let index: Value = Value::Object(
        records
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("r{i}"), r.clone()))
            .collect(),
    );
    let json_forms: Vec<(&str, &str, Value)> = vec![
        ("rows", "/models/iris/predict", json!(rows)),
        (
            "rows orient=values",
            "/models/iris/predict?orient=values",
            json!(rows),
        ),
        ("records", "/models/iris/predict", json!(records)),
        (
            "records orient=records",
            "/models/iris/predict?orient=records",
            json!(records),
        ),
        (
            "split",
            "/models/iris/predict?orient=split",
            json!({"columns": pnames, "index": (0..rows.len()).collect::<Vec<_>>(), "data": rows.iter().map(prow).collect::<Vec<_>>()}),
        ),
        (
            "split detected",
            "/models/iris/predict",
            json!({"columns": pnames, "data": rows.iter().map(prow).collect::<Vec<_>>()}),
        ),
        (
            "columns",
            "/models/iris/predict?orient=columns",
            columns.clone(),
        ),
        ("columns detected", "/models/iris/predict", columns),
        ("index", "/models/iris/predict?orient=index", index.clone()),
        ("index detected", "/models/iris/predict", index),
        (
            "instances",
            "/models/iris/predict",
            json!({"instances": rows}),
        ),
        (
            "instances of records",
            "/models/iris/predict",
            json!({"instances": records}),
        ),
        (
            "kserve v1",
            "/v1/models/iris:predict",
            json!({"instances": rows}),
        ),
        ("ray array", "/models/iris/predict", json!({"array": rows})),
        (
            "ray array reshaped",
            "/models/iris/predict",
            json!({"array": rows.concat(), "shape": [rows.len(), 4], "dtype": "float32"}),
        ),
        (
            "ray array -1",
            "/models/iris/predict",
            json!({"array": rows.concat(), "shape": [-1, 4], "dtype": "<f8"}),
        ),
    ];
    for (what, path, body) in json_forms {
        let a = post_json(&s, path, &body).await;
        assert_eq!(
            a.status,
            200,
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.json(), json!({ "predictions": names }), "{what}");
    }
    // With probabilities.
    let a = post_json(&s, "/models/iris/predict?probabilities=true", &json!(rows)).await;
    let out = a.json();
    assert_eq!(out["predictions"], names);
    assert_close(
        "iris friendly probabilities vs scikit-learn",
        &numbers(&out["probabilities"]),
        &probs,
        Tol::abs(1e-5),
    );
    // One row, one record: still a list of predictions on the built-in route.
    for body in [json!(rows[0]), records[0].clone()] {
        let a = post_json(&s, "/models/iris/predict", &body).await;
        assert_eq!(a.json(), json!({"predictions": [names[0]]}), "{body}");
    }
    // CSV bodies: no header; a header in another order; aliases in the header; multipart.
    let csv_forms: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("csv", Some("text/csv"), csv(None, &rows)),
        (
            "csv header",
            Some("text/csv; charset=utf-8"),
            csv(Some(&pnames), &rows.iter().map(prow).collect::<Vec<_>>()),
        ),
        (
            "csv aliases",
            Some("application/csv"),
            csv(
                Some(&["sepal_length", "sepal_width", "petal_length", "petal_width"]),
                &rows,
            ),
        ),
    ];
    for (what, ct, body) in csv_forms {
        let a = send(
            &s,
            Method::POST,
            "/models/iris/predict",
            ct,
            body.clone(),
            None,
        )
        .await;
        assert_eq!(
            a.status,
            200,
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.json(), json!({ "predictions": names }), "{what}");
        let (mct, mbody) = multipart("file", "rows.csv", &body);
        let a = send(
            &s,
            Method::POST,
            "/models/iris/predict",
            Some(&mct),
            mbody,
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{what} multipart");
        assert_eq!(
            a.json(),
            json!({ "predictions": names }),
            "{what} multipart"
        );
    }
    // CSV answers to clients that prefer them.
    let a = send(
        &s,
        Method::POST,
        "/models/iris/predict?probabilities=true",
        Some("text/csv"),
        csv(None, &rows[..2]),
        Some("text/csv, application/json;q=0.5"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a.content_type.starts_with("text/csv"), "{}", a.content_type);
    let text = String::from_utf8(a.body).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "prediction,probability_setosa,probability_versicolor,probability_virginica"
    );
    assert_eq!(lines.len(), 3);
    // Each line: the library's class name, then its probabilities.
    for (i, line) in lines[1..].iter().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(json!(fields[0]), names[i], "{text}");
        let got: Vec<f64> = fields[1..].iter().map(|v| v.parse().unwrap()).collect();
        assert_close(
            &format!("CSV answer line {i}"),
            &got,
            &probs[i * 3..i * 3 + 3],
            Tol::abs(1e-5),
        );
    }
    // GET with query parameters (names or aliases), a form body, POST with query parameters.
    let q = |names: &[&str], r: &[f64]| {
        names
            .iter()
            .zip(r)
            .map(|(n, v)| {
                format!(
                    "{}={v}",
                    n.replace(' ', "%20")
                        .replace('(', "%28")
                        .replace(')', "%29")
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    };
    let aliases = ["sepal_length", "sepal_width", "petal_length", "petal_width"];
    for (i, r) in rows.iter().enumerate() {
        for n in [&IRIS, &aliases] {
            let path = format!("/models/iris/predict?{}", q(n, r));
            let a = send(&s, Method::GET, &path, None, vec![], None).await;
            assert_eq!(a.status, 200, "{path}");
            assert_eq!(a.json(), json!({"predictions": [names[i]]}), "{path}");
            let a = send(&s, Method::POST, &path, None, vec![], None).await;
            assert_eq!(a.json(), json!({"predictions": [names[i]]}), "POST {path}");
        }
        let a = send(
            &s,
            Method::POST,
            "/models/iris/predict",
            Some("application/x-www-form-urlencoded"),
            q(&aliases, r).into_bytes(),
            None,
        )
        .await;
        assert_eq!(a.json(), json!({"predictions": [names[i]]}), "form");
    }
    // Regressors answer values; class names come from model.toml, class numbers without it.
    let d = &exp["diabetes"];
    let a = post_json(&s, "/models/diabetes/predict", &d["rows"]).await;
    assert_close(
        "diabetes friendly rows vs LightGBM",
        &numbers(&a.json()["predictions"]),
        &numbers(&d["value"]),
        Tol::abs(1e-5),
    );
    let w = &exp["wine"];
    let a = post_json(&s, "/models/wine/predict", &w["rows"]).await;
    assert_eq!(a.json(), json!({"predictions": w["label"]}));
    let b = &exp["breast_cancer"];
    let a = post_json(&s, "/models/breast_cancer/predict", &b["rows"]).await;
    assert_eq!(a.json(), json!({"predictions": b["label_names"]}));
    // The model cards list features, aliases, classes and routes.
    let a = send(&s, Method::GET, "/models", None, vec![], None).await;
    let cards = a.json();
    let card = cards
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "iris")
        .unwrap();
    assert_eq!(card["features"], json!(IRIS));
    assert_eq!(
        card["classes"],
        json!(["setosa", "versicolor", "virginica"])
    );
    assert_eq!(card["feature_aliases"]["sepal_length"], "sepal length (cm)");
    assert!(card["routes"]
        .as_array()
        .unwrap()
        .contains(&json!({"method": "GET", "path": "/prediction"})));
    let a = send(&s, Method::GET, "/v1/models/iris", None, vec![], None).await;
    assert_eq!(a.json(), json!({"name": "iris", "ready": true}));
}

/// What an error body must say: status, and the problems (code, row, field) it lists.
struct Bad {
    what: &'static str,
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    problems: Vec<(&'static str, Option<u64>, Option<&'static str>)>,
    says: &'static str,
}

/// A model on ONNX Runtime answers integer labels; its model.toml names the classes, and the
/// friendly answers and the OpenAPI document carry the names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
async fn an_onnx_runtime_model_answers_class_names() {
    require(Need::OnnxRuntime, "iris_mlp over the friendly routes");
    let s = Server::start(&[], &[]);
    let m = &expected()["iris_mlp"];
    let a = post_json(&s, "/models/iris_mlp/predict", &m["rows"]).await;
    assert_eq!(a.status, 200);
    assert_same(
        "iris_mlp friendly labels vs scikit-learn",
        &strings(&a.json()["predictions"]),
        &strings(&m["label_names"]),
    );
    let schema = send(&s, Method::GET, "/openapi.json", None, vec![], None)
        .await
        .json();
    assert_eq!(
        schema["components"]["schemas"]["iris_mlp.Label"]["enum"],
        json!(["setosa", "versicolor", "virginica"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_names_each_problem_and_the_server_keeps_serving() {
    let s = Server::start(&["--max-body-bytes", "65536"], &[]);
    let j = |v: Value| serde_json::to_vec(&v).unwrap();
    let json_ct = Some("application/json");
    let row = [5.1, 3.5, 1.4, 0.2];
    let cases = vec![
        Bad { what: "wrong number of features in rows", method: Method::POST, path: "/predict", content_type: json_ct,
            body: j(json!({"batches": [vec![1.0; 13], [1.0, 2.0, 3.0], vec![1.0; 14]]})), status: 422,
            problems: vec![("wrong_feature_count", Some(1), None), ("wrong_feature_count", Some(2), None)], says: "13 values" },
        Bad { what: "not a number", method: Method::POST, path: "/models/iris/predict", content_type: json_ct,
            body: j(json!([[5.1, "x", 1.4, 0.2], [5.1, 3.5, true, 0.2]])), status: 422,
            problems: vec![("not_a_number", Some(0), Some("sepal width (cm)")), ("not_a_number", Some(1), Some("petal length (cm)"))], says: "\"x\"" },
        Bad { what: "unknown and missing features", method: Method::POST, path: "/models/iris/predict", content_type: json_ct,
            body: j(json!([{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal wdth": 0.2}])), status: 422,
            problems: vec![("unknown_feature", Some(0), Some("petal wdth")), ("missing_feature", Some(0), Some("petal width (cm)"))], says: "petal wdth" },
        Bad { what: "a feature twice", method: Method::POST, path: "/models/iris/predict", content_type: json_ct,
            body: b"{\"sepal_length\": 1, \"sepal length (cm)\": 2, \"sepal width (cm)\": 3.5, \"petal length (cm)\": 1.4, \"petal width (cm)\": 0.2}".to_vec(), status: 422,
            problems: vec![("duplicate_feature", Some(0), Some("sepal length (cm)"))], says: "once" },
        Bad { what: "missing query parameter and bad value", method: Method::GET, path: "/predict?s_length=5.1&s_width=abc&p_length=1.4", content_type: None,
            body: vec![], status: 422,
            problems: vec![("not_a_number", None, Some("s_width")), ("missing_feature", None, Some("p_width"))], says: "abc" },
        Bad { what: "unknown query parameter", method: Method::GET, path: "/prediction?slength=1&swidth=1&plength=1&pwidth=1&color=red", content_type: None,
            body: vec![], status: 422, problems: vec![("unknown_feature", None, Some("color"))], says: "color" },
        Bad { what: "bad orient", method: Method::POST, path: "/models/iris/predict?orient=table", content_type: json_ct,
            body: j(json!([row])), status: 422, problems: vec![("bad_value", None, Some("orient"))], says: "records, split" },
        Bad { what: "body does not fit the orient", method: Method::POST, path: "/models/iris/predict?orient=split", content_type: json_ct,
            body: j(json!([row])), status: 422, problems: vec![("bad_shape", None, None)], says: "orient=split" },
        Bad { what: "batches key missing", method: Method::POST, path: "/predict", content_type: json_ct,
            body: j(json!({"rows": [vec![1.0; 13]]})), status: 422, problems: vec![("bad_shape", None, Some("rows")), ("bad_shape", None, None)], says: "batches" },
        Bad { what: "no rows", method: Method::POST, path: "/models/iris/predict", content_type: json_ct,
            body: j(json!([])), status: 422, problems: vec![("no_rows", None, None)], says: "at least one row" },
        Bad { what: "ray shape that does not hold the values", method: Method::POST, path: "/", content_type: json_ct,
            body: j(json!({"array": [1, 2, 3], "shape": [2, 30]})), status: 422, problems: vec![("bad_shape", None, Some("shape"))], says: "shape" },
        Bad { what: "ray unknown dtype", method: Method::POST, path: "/models/iris/predict", content_type: json_ct,
            body: j(json!({"array": row, "dtype": "complex128"})), status: 422, problems: vec![("bad_value", None, Some("dtype"))], says: "dtype" },
        Bad { what: "csv with too many columns and a bad cell", method: Method::POST, path: "/predict_file", content_type: Some("text/csv"),
            body: b"5.1,3.5,1.4,0.2,9\n5.1,x,1.4,0.2\n".to_vec(), status: 422,
            problems: vec![("too_many_columns", Some(0), None), ("not_a_number", Some(1), Some("sepal width (cm)"))], says: "5 columns" },
        Bad { what: "csv header naming an unknown column", method: Method::POST, path: "/models/iris/predict", content_type: Some("text/csv"),
            body: b"sepal length (cm),sepal width (cm),petal length (cm),colour\n1,2,3,4\n".to_vec(), status: 422,
            problems: vec![("unknown_feature", None, Some("colour")), ("missing_feature", None, Some("petal width (cm)"))], says: "colour" },
        Bad { what: "multipart without the named field", method: Method::POST, path: "/predict_file", content_type: Some("multipart/form-data; boundary=b0"),
            body: b"--b0\r\nContent-Disposition: form-data; name=\"other\"; filename=\"a.csv\"\r\n\r\n1,2,3,4\r\n--b0--\r\n".to_vec(), status: 422,
            problems: vec![("bad_shape", None, Some("input_file"))], says: "input_file" },
        Bad { what: "probabilities from a regressor", method: Method::POST, path: "/models/diabetes/predict?probabilities=true", content_type: json_ct,
            body: j(json!([vec![0.0; 10]])), status: 422, problems: vec![("bad_value", None, Some("probabilities"))], says: "regressor" },
        Bad { what: "malformed JSON", method: Method::POST, path: "/models/iris/predict", content_type: json_ct,
            body: b"[[5.1, 3.5,".to_vec(), status: 400, problems: vec![], says: "JSON" },
        Bad { what: "empty body", method: Method::POST, path: "/predict", content_type: json_ct,
            body: vec![], status: 400, problems: vec![], says: "batches" },
        Bad { what: "unsupported content type", method: Method::POST, path: "/models/iris/predict", content_type: Some("application/xml"),
            body: b"<rows/>".to_vec(), status: 415, problems: vec![], says: "Content-Type" },
        Bad { what: "csv to a JSON-only route", method: Method::POST, path: "/predict", content_type: Some("text/csv"),
            body: b"1,2\n".to_vec(), status: 415, problems: vec![], says: "JSON" },
        Bad { what: "unknown model", method: Method::POST, path: "/models/nope/predict", content_type: json_ct,
            body: j(json!([row])), status: 404, problems: vec![], says: "iris" },
        Bad { what: "unknown KServe verb", method: Method::POST, path: "/v1/models/iris:explain", content_type: json_ct,
            body: j(json!({"instances": [row]})), status: 404, problems: vec![], says: "explain" },
        Bad { what: "body over the limit", method: Method::POST, path: "/models/iris/predict", content_type: json_ct,
            body: j(json!(vec![row; 4000])), status: 413, problems: vec![], says: "limit" },
        Bad { what: "v2 errors share the body", method: Method::POST, path: "/v2/models/iris/infer", content_type: json_ct,
            body: j(json!({"inputs": []})), status: 400, problems: vec![], says: "expected 1 input" },
    ];
    for c in cases {
        let a = send(
            &s,
            c.method.clone(),
            c.path,
            c.content_type,
            c.body.clone(),
            None,
        )
        .await;
        assert_eq!(
            a.status,
            c.status,
            "{}: {}",
            c.what,
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.content_type, "application/json", "{}", c.what);
        let e = a.json();
        let msg = e["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {e}", c.what));
        assert!(msg.contains(c.says), "{}: {msg}", c.what);
        let details = e["details"].as_array().cloned().unwrap_or_default();
        assert_eq!(details.is_empty(), c.problems.is_empty(), "{}: {e}", c.what);
        for (problem, row, field) in &c.problems {
            let found = details.iter().any(|d| {
                d["problem"] == *problem
                    && row.is_none_or(|r| d["row"] == r)
                    && field.is_none_or(|f| d["field"] == f)
                    && d["message"].is_string()
                    && d["expected"].is_string()
            });
            assert!(found, "{}: no {problem} {row:?} {field:?} in {e}", c.what);
        }
        // The server keeps serving.
        let ok = post_json(&s, "/models/iris/predict", &json!([row])).await;
        assert_eq!(ok.status, 200, "after {}", c.what);
    }
    // The details are capped, the count is not.
    let many: Vec<Value> = (0..200).map(|_| json!(["x", 1, 2, 3])).collect();
    let a = post_json(&s, "/models/iris/predict", &json!(many)).await;
    assert_eq!(a.status, 422);
    let e = a.json();
    assert_eq!(e["details"].as_array().unwrap().len(), 50);
    assert!(
        e["error"].as_str().unwrap().starts_with("200 problems"),
        "{e}"
    );
}

fn repo_with(models: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, source, toml) in models {
        let from = examples().join(source);
        let to = dir.path().join(name).join("1");
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(&from, to.join(from.file_name().unwrap())).unwrap();
        std::fs::write(dir.path().join(name).join("model.toml"), toml).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_refused_cleanly_and_route_conflicts_are_explained() {
    let iris_toml = std::fs::read_to_string(examples().join("iris/model.toml")).unwrap();
    let small = format!("max_request_rows = 3\n{iris_toml}");
    let both = "[[routes]]\npath = \"/predict\"\n";
    let dir = repo_with(&[
        ("small", "iris/1/model.onnx", &small),
        ("a", "wine/1/model.onnx", both),
        ("b", "breast_cancer/1/model.json", both),
        (
            "bad_route",
            "wine/1/model.onnx",
            "[[routes]]\npath = \"/v2/mine\"\n",
        ),
        (
            "bad_features",
            "wine/1/model.onnx",
            "[[routes]]\npath = \"/x\"\nfeatures = [\"a\"]\n",
        ),
    ]);
    let repo = dir.path().to_str().unwrap();
    let s = Server::start(&["--repository", repo], &[]);
    let row = [5.1, 3.5, 1.4, 0.2];
    // Rows over the model's limit: 422 naming the limit, in every form.
    let a = post_json(&s, "/models/small/predict", &json!(vec![row; 4])).await;
    assert_eq!(a.status, 422);
    let e = a.json();
    assert_eq!(e["details"][0]["problem"], "too_many_rows");
    assert_eq!(e["details"][0]["got"], "4 rows");
    let a = send(
        &s,
        Method::POST,
        "/models/small/predict",
        Some("text/csv"),
        b"1,2,3,4\n".repeat(5),
        None,
    )
    .await;
    assert_eq!(a.status, 422);
    assert_eq!(a.json()["details"][0]["problem"], "too_many_rows");
    let a = post_json(&s, "/models/small/predict", &json!(vec![row; 3])).await;
    assert_eq!(a.status, 200);
    // Two models declaring POST /predict: not served until an owner is named, and the answer says so.
    let a = post_json(&s, "/predict", &json!([vec![1.0; 13]])).await;
    assert_eq!(a.status, 404);
    let msg = a.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("a, b") && msg.contains("--route-owner"),
        "{msg}"
    );
    // Bad routes make their model not ready, with the reason.
    let a = send(&s, Method::POST, "/v2/repository/index", None, vec![], None).await;
    let index = a.json();
    for (name, says) in [
        ("bad_route", "server's own"),
        ("bad_features", "features lists 1 names"),
    ] {
        let m = index
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap();
        assert_eq!(m["state"], "UNAVAILABLE", "{name}");
        assert!(m["reason"].as_str().unwrap().contains(says), "{name}: {m}");
    }
    drop(s);
    let s = Server::start(&["--repository", repo, "--route-owner", "/predict=b"], &[]);
    let rec: Value = serde_json::from_slice(&request_file("breast_cancer_records.json")).unwrap();
    let a = post_json(&s, "/predict", &rec).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json(), json!({"predictions": [0]}));
}

/// The operation of `/openapi.json` that answers `method path` (concrete paths first).
fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> (String, &'a Value) {
    let path = path.split('?').next().unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let m = method.to_ascii_lowercase();
    if let Some(op) = paths.get(path).and_then(|p| p.get(&m)) {
        return (path.to_string(), op);
    }
    let segs: Vec<&str> = path.split('/').collect();
    for (k, item) in paths {
        let ks: Vec<&str> = k.split('/').collect();
        let fits = ks.len() == segs.len()
            && ks
                .iter()
                .zip(&segs)
                .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}') && !b.is_empty()));
        if fits {
            if let Some(op) = item.get(&m) {
                return (k.clone(), op);
            }
        }
    }
    panic!("no operation for {method} {path} in /openapi.json");
}

/// A JSON pointer token, percent-encoded for use in a URI fragment.
fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0")
        .replace('/', "~1")
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Validates an answer against the response schema the document gives for it.
fn check_against(doc: &Value, method: &str, path: &str, a: &Answer) {
    let (key, op) = operation(doc, method, path);
    let status = a.status.to_string();
    assert!(
        op["responses"].get(&status).is_some(),
        "{method} {path}: status {status} is not documented"
    );
    let ct = a.content_type.split(';').next().unwrap().trim().to_string();
    let media = &op["responses"][&status]["content"][&ct];
    assert!(
        media.is_object(),
        "{method} {path}: {status} {ct} is not documented"
    );
    if ct != "application/json" {
        return;
    }
    let pointer = format!(
        "#/paths/{}/{}/responses/{}/content/{}/schema",
        pointer_escape(&key),
        method.to_ascii_lowercase(),
        status,
        pointer_escape(&ct)
    );
    let mut root = doc.clone();
    root["$ref"] = json!(pointer);
    let v = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema for {method} {path}: {e}"));
    let body = a.json();
    let errors: Vec<String> = v
        .iter_errors(&body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?}\n{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_real_answer_errors_included() {
    let s = Server::start(&["--max-body-bytes", "65536"], &[]);
    let doc = send(&s, Method::GET, "/openapi.json", None, vec![], None)
        .await
        .json();
    assert_eq!(doc["openapi"], "3.1.0");
    // Per-model typed schemas: feature names, classes, examples from sample_rows.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["iris.Record"]["required"], json!(IRIS),);
    assert_eq!(
        schemas["iris.Label"]["enum"],
        json!(["setosa", "versicolor", "virginica"])
    );
    assert_eq!(schemas["wine.Label"]["enum"], json!([0, 1, 2]));
    assert_eq!(
        schemas["iris.Rows"]["example"][1],
        json!([7.0, 3.2, 4.7, 1.4])
    );
    assert_eq!(schemas["breast_cancer.Row"]["minItems"], 30);
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for m in ["iris", "wine", "breast_cancer", "diabetes"] {
        assert!(tags.contains(&m), "{tags:?}");
    }
    // Route aliases are documented with their own names.
    let flask = &doc["paths"]["/prediction"]["get"]["parameters"];
    let names: Vec<&str> = flask
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(&names[..4], ["slength", "swidth", "plength", "pwidth"]);
    assert!(
        doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["properties"]["batches"]
            .is_object()
    );

    let j = |v: Value| serde_json::to_vec(&v).unwrap();
    let row = [5.1, 3.5, 1.4, 0.2];
    let (mct, mbody) = multipart("input_file", "iris.csv", &request_file("iris.csv"));
    let rec: Value = serde_json::from_slice(&request_file("breast_cancer_records.json")).unwrap();
    type Req<'a> = (Method, String, Option<String>, Vec<u8>, Option<&'a str>);
    let requests: Vec<Req> = vec![
        (Method::GET, "/".into(), None, vec![], None),
        (Method::GET, "/models".into(), None, vec![], None),
        (Method::GET, "/models/iris".into(), None, vec![], None),
        (Method::GET, "/models/nope".into(), None, vec![], None),
        (Method::POST, "/models/iris/predict".into(), Some("application/json".into()), j(json!([row])), None),
        (Method::POST, "/models/iris/predict?probabilities=true".into(), Some("application/json".into()), j(json!([row, row])), None),
        (Method::POST, "/models/iris/predict".into(), Some("text/csv".into()), request_file("iris.csv"), Some("text/csv")),
        (Method::POST, "/models/iris/predict".into(), Some("application/json".into()), j(json!([[1, "x"]])), None),
        (Method::POST, "/models/iris/predict".into(), Some("application/json".into()), b"[".to_vec(), None),
        (Method::POST, "/models/iris/predict".into(), Some("application/xml".into()), b"<a/>".to_vec(), None),
        (Method::POST, "/models/iris/predict".into(), Some("application/json".into()), j(json!(vec![row; 5000])), None),
        (Method::GET, "/models/iris/predict?sepal%20length%20(cm)=1&sepal%20width%20(cm)=2&petal%20length%20(cm)=3&petal%20width%20(cm)=4".into(), None, vec![], None),
        (Method::GET, "/models/iris/predict?sepal_length=1".into(), None, vec![], None),
        (Method::POST, "/models/diabetes/predict".into(), Some("application/json".into()), j(json!([vec![0.0; 10]])), None),
        (Method::POST, "/models/wine/predict".into(), Some("application/json".into()), j(json!([[14.23, 1.71, 2.43, 15.6, 127.0, 2.8, 3.06, 0.28, 2.29, 5.64, 1.04, 3.92, 1065.0]])), None),
        (Method::POST, "/v1/models/iris:predict".into(), Some("application/json".into()), j(json!({"instances": [row]})), None),
        (Method::GET, "/v1/models/iris".into(), None, vec![], None),
        (Method::POST, "/predict".into(), Some("application/json".into()), request_file("wine_batch_1.json"), None),
        (Method::POST, "/predict".into(), Some("application/json".into()), j(json!({"batches": [[1]]})), None),
        (Method::GET, "/predict?s_length=5.1&s_width=3.5&p_length=1.4&p_width=0.2".into(), None, vec![], None),
        (Method::GET, "/prediction?slength=1.5&swidth=0.7&plength=1.3&pwidth=0.3".into(), None, vec![], None),
        (Method::POST, "/predict_file".into(), Some(mct), mbody, None),
        (Method::POST, "/iris-classifier".into(), None, j(json!({"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.5, "petal_width": 0.3})), None),
        (Method::POST, "/iris-classifier".into(), None, request_file("iris_records.json"), None),
        (Method::POST, "/".into(), Some("application/json".into()), j(rec), None),
        (Method::POST, "/?orient=index".into(), Some("application/json".into()), j(json!([1])), None),
        (Method::GET, "/v2".into(), None, vec![], None),
        (Method::GET, "/v2/health/live".into(), None, vec![], None),
        (Method::GET, "/v2/health/ready".into(), None, vec![], None),
        (Method::GET, "/v2/models/iris".into(), None, vec![], None),
        (Method::GET, "/v2/models/iris/ready".into(), None, vec![], None),
        (Method::GET, "/v2/models/iris/versions/1".into(), None, vec![], None),
        (Method::GET, "/v2/models/iris/versions/9/ready".into(), None, vec![], None),
        (Method::POST, "/v2/models/iris/infer".into(), Some("application/json".into()), request_file("iris_v2_batch.json"), None),
        (Method::POST, "/v2/models/breast_cancer/versions/1/infer".into(), Some("application/json".into()), request_file("breast_cancer_v2.json"), None),
        (Method::POST, "/v2/models/iris/infer".into(), Some("application/json".into()), b"{}".to_vec(), None),
        (Method::POST, "/v2/models/iris/infer".into(), Some("text/plain".into()), b"{}".to_vec(), None),
        (Method::POST, "/v2/repository/index".into(), None, vec![], None),
    ];
    let mut statuses = std::collections::BTreeSet::new();
    for (method, path, ct, body, accept) in requests {
        let a = send(&s, method.clone(), &path, ct.as_deref(), body, accept).await;
        statuses.insert(a.status);
        check_against(&doc, method.as_str(), &path, &a);
    }
    // Successes and each error class were among them.
    for st in [200, 400, 404, 413, 415, 422] {
        assert!(
            statuses.contains(&st),
            "no {st} answer was checked: {statuses:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_is_served_from_the_binary() {
    let s = Server::start(&[], &[]);
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (from, to) in [("/docs", "/docs/"), ("/apidocs", "/apidocs/")] {
        let r = c.get(s.url(from)).send().await.unwrap();
        assert_eq!(r.status(), 308, "{from}");
        assert_eq!(r.headers()["location"], to);
    }
    for prefix in ["/docs/", "/apidocs/"] {
        let index = c
            .get(s.url(prefix))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(index.contains("swagger-ui"));
        let init = c
            .get(s.url(&format!("{prefix}swagger-initializer.js")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(init.contains("/openapi.json"), "{init}");
        for asset in [
            "swagger-ui.css",
            "swagger-ui-bundle.js",
            "swagger-ui-standalone-preset.js",
        ] {
            let r = c
                .get(s.url(&format!("{prefix}{asset}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{asset}");
        }
        // Nothing is loaded from anywhere else.
        for text in [&index, &init] {
            assert!(
                !text.contains("https://") && !text.contains("http://"),
                "{text}"
            );
        }
    }
    let r = c.get(s.url("/docs/nope.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
