//! End-to-end: every request the five tutorials show, replayed exactly (URLs, parameter names,
//! bodies, headers) against the bundled examples served by the real binary, and against a
//! one-model server started the way the Flask tutorial starts its own (`MODEL_FILE`). Answers
//! are compared with the training libraries' (examples/models/expected.json, which also holds
//! the tutorials' own rows that are not dataset rows).

mod common;

use common::{client, examples, expected, multipart, request_file, Server};
use serde_json::{json, Value};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5
}

fn floats(v: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Number(n) => out.push(n.as_f64().unwrap()),
            other => panic!("not a number: {other}"),
        }
    }
    walk(v, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tutorial_request_works_against_the_bundled_server() {
    let s = Server::start(&[], &[]);
    let c = client();
    let exp = expected();

    // FastAPI (wine, with batches): the server says it is up at /, then
    // curl -X POST http://localhost:81/predict -d @./wine-examples/batch_1.json -H "Content-Type: application/json"
    let r = c.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let welcome: Value = r.json().await.unwrap();
    assert_eq!(welcome["message"], "ferroserve is up");
    // The same body is KServe v1's liveness answer.
    assert_eq!(welcome["status"], "alive");
    let r = c
        .post(s.url("/predict"))
        .header("Content-Type", "application/json")
        .body(request_file("wine_batch_1.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(
        out,
        json!({"Prediction": exp["wine"]["requests"]["wine_batch_1.json"]["label"]}),
        "the 32-row wine batch"
    );

    // Flask + MODEL_FILE: http://localhost:5000/prediction?slength=1.5&swidth=0.7&plength=1.3&pwidth=0.3
    let r = c
        .get(s.url("/prediction?slength=1.5&swidth=0.7&plength=1.3&pwidth=0.3"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    let want = &exp["iris"]["requests"]["flask_query"]["label_names"][0];
    assert_eq!(out, json!({ "prediction": want }));

    // Flasgger: GET /predict?s_length=..&s_width=..&p_length=..&p_width=.. answers str(prediction)
    let iris = &exp["iris"];
    for (i, row) in iris["rows"].as_array().unwrap().iter().enumerate() {
        let v = floats(row);
        let url = format!(
            "/predict?s_length={}&s_width={}&p_length={}&p_width={}",
            v[0], v[1], v[2], v[3]
        );
        let r = c.get(s.url(&url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(
            r.text().await.unwrap(),
            format!("[{}]", iris["label"][i]),
            "{url}"
        );
    }
    // ... and POST /predict_file with the CSV (no header) in the form field input_file.
    let (ct, body) = multipart("input_file", "iris.csv", &request_file("iris.csv"));
    let r = c
        .post(s.url("/predict_file"))
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let want = &iris["requests"]["iris.csv"]["label"];
    assert_eq!(r.json::<Value>().await.unwrap(), *want);

    // Cortex: the batch runner posts each record, as requests.post(endpoint, data=json.dumps(batch))
    // (no Content-Type), to the iris-classifier, which answers the species.
    let records: Value = serde_json::from_slice(&request_file("iris_records.json")).unwrap();
    let names = &iris["requests"]["iris_records.json"]["label_names"];
    for (i, rec) in records.as_array().unwrap().iter().enumerate() {
        let r = c
            .post(s.url("/iris-classifier"))
            .body(serde_json::to_vec(rec).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), names[i]);
    }
    // ... and here the whole list goes in one request, no batch runner needed.
    for path in ["/iris-classifier", "/models/iris/predict"] {
        let r = c
            .post(s.url(path))
            .body(request_file("iris_records.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let out: Value = r.json().await.unwrap();
        let got = if path == "/iris-classifier" {
            out
        } else {
            out["predictions"].clone()
        };
        assert_eq!(got, *names, "{path}");
    }

    // Ray Serve: requests.post("http://localhost:8000/", json=[sample_input]).json()
    // → [{'predictions': <probability>}], with and without params={"orient": "records"}.
    let p = exp["breast_cancer"]["requests"]["breast_cancer_records.json"]["probabilities"][0][1]
        .as_f64()
        .unwrap();
    for path in ["/", "/?orient=records"] {
        let r = c
            .post(s.url(path))
            .header("Content-Type", "application/json")
            .body(request_file("breast_cancer_records.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let out: Value = r.json().await.unwrap();
        let got = out[0]["predictions"].as_f64().unwrap();
        assert_eq!(out.as_array().unwrap().len(), 1);
        assert!(close(got, p), "{path}: {got} vs {p}");
    }
    // ... and the array form json={"array": [...]}, here one row of the 30 features.
    let rec: Value = serde_json::from_slice(&request_file("breast_cancer_records.json")).unwrap();
    let names30 = exp["breast_cancer"]["feature_names"].as_array().unwrap();
    let row: Vec<f64> = names30
        .iter()
        .map(|n| rec[0][n.as_str().unwrap()].as_f64().unwrap())
        .collect();
    let r = c
        .post(s.url("/"))
        .json(&json!({ "array": row }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert!(close(out[0]["predictions"].as_f64().unwrap(), p));
    // ... and the query-parameter adapter: requests.post(url, params={...}) with no body.
    let q: Vec<String> = names30
        .iter()
        .zip(&row)
        .map(|(n, v)| format!("{}={v}", n.as_str().unwrap().replace(' ', "%20")))
        .collect();
    let r = c
        .post(s.url(&format!("/?{}", q.join("&"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert!(close(out[0]["predictions"].as_f64().unwrap(), p));

    // Flasgger's Swagger UI lives at /apidocs (ferroserve's also at /docs).
    for path in ["/apidocs/", "/docs/"] {
        let r = c.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.text().await.unwrap().contains("swagger-ui"), "{path}");
    }
    assert!(s.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_model_servers_run_as_the_tutorials_run_theirs() {
    let c = client();
    // The Flask tutorial: MODEL_FILE=/path/to/model python api.py; the model.toml of the
    // model folder applies to a file in one of its version folders.
    let iris = examples().join("iris/1/model.onnx");
    let s = Server::start(&[], &[("MODEL_FILE", iris.to_str().unwrap())]);
    let r = c
        .get(s.url("/prediction?slength=1.5&swidth=0.7&plength=1.3&pwidth=0.3"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    let want = &expected()["iris"]["requests"]["flask_query"]["label_names"][0];
    assert_eq!(out, json!({ "prediction": want }));
    drop(s);
    // The FastAPI tutorial's server holds only the wine model.
    let wine = examples().join("wine/1/model.onnx");
    let s = Server::start(&["--model", wine.to_str().unwrap()], &[]);
    let r = c
        .post(s.url("/predict"))
        .header("Content-Type", "application/json")
        .body(request_file("wine_batch_1.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(
        out["Prediction"],
        expected()["wine"]["requests"]["wine_batch_1.json"]["label"]
    );
}
