//! End-to-end: the binary tensor data extension and the classification extension over real
//! HTTP: binary requests and responses agree with JSON ones, framing errors are clean v2 errors
//! (and the server keeps serving), and 100,000-row requests (the default `max_request_rows`) work.

mod common;

use common::{client, examples, Server};
use serde_json::{json, Value};

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(examples().join("expected.json")).unwrap()).unwrap()
}

fn rows_of(model: &str) -> (Vec<f32>, usize, usize) {
    let exp = expected();
    let rows = exp[model]["rows"].as_array().unwrap().clone();
    let f = rows[0].as_array().unwrap().len();
    let flat: Vec<f32> = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect();
    (flat, rows.len(), f)
}

fn le(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A binary request body: the JSON header, then `bin`; returns (body, header length).
fn binary_body(header: &Value, bin: &[u8]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(header).unwrap();
    let n = body.len();
    body.extend_from_slice(bin);
    (body, n)
}

struct Answer {
    status: u16,
    header_len: Option<usize>,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        let end = self.header_len.unwrap_or(self.body.len());
        serde_json::from_slice(&self.body[..end]).unwrap()
    }

    /// The binary data of output `name` (outputs' data follow the header in output order).
    fn binary(&self, name: &str) -> &[u8] {
        let head = self.json();
        let mut at = self.header_len.unwrap();
        for o in head["outputs"].as_array().unwrap() {
            let Some(size) = o["parameters"]["binary_data_size"].as_u64() else {
                continue;
            };
            if o["name"] == name {
                return &self.body[at..at + size as usize];
            }
            at += size as usize;
        }
        panic!("no binary output {name}")
    }
}

async fn post(
    s: &Server,
    model: &str,
    body: Vec<u8>,
    header_len: Option<usize>,
    ct: Option<&str>,
) -> Answer {
    let mut r = client()
        .post(s.url(&format!("/v2/models/{model}/infer")))
        .body(body);
    if let Some(n) = header_len {
        r = r.header("Inference-Header-Content-Length", n.to_string());
    }
    if let Some(ct) = ct {
        r = r.header("Content-Type", ct);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let header_len = resp
        .headers()
        .get("inference-header-content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.bytes().await.unwrap().to_vec();
    Answer {
        status,
        header_len,
        content_type,
        body,
    }
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn strings(b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = b;
    while rest.len() >= 4 {
        let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        out.push(String::from_utf8(rest[4..4 + n].to_vec()).unwrap());
        rest = &rest[4 + n..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_requests_and_responses_agree_with_json() {
    let s = Server::start(&[], &[]);
    let (x, n, f) = rows_of("breast_cancer");
    let rows: Vec<&[f32]> = x.chunks(f).collect();
    let plain = post(
        &s,
        "breast_cancer",
        serde_json::to_vec(&json!({"inputs": [{"name": "input", "shape": [n, f], "datatype": "FP32", "data": rows}]})).unwrap(),
        None,
        Some("application/json"),
    )
    .await;
    assert_eq!(plain.status, 200);
    let json_p: Vec<f32> = plain.json()["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();

    // Binary input, every output binary (what tritonclient sends when no outputs are named).
    let head = json!({"id": "b-1", "parameters": {"binary_data_output": true},
        "inputs": [{"name": "input", "shape": [n, f], "datatype": "FP32", "parameters": {"binary_data_size": n * f * 4}}]});
    let (body, hl) = binary_body(&head, &le(&x));
    let a = post(&s, "breast_cancer", body.clone(), Some(hl), None).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.content_type, "application/octet-stream");
    let h = a.json();
    assert_eq!(h["id"], "b-1");
    assert!(h["outputs"][0].get("data").is_none());
    assert_eq!(f32s(a.binary("probabilities")), json_p);
    let labels = strings(a.binary("label"));
    assert_eq!(labels.len(), n);
    let want: Vec<String> =
        serde_json::from_value(expected()["breast_cancer"]["label_names"].clone()).unwrap();
    assert_eq!(labels, want, "the library's labels");
    // The same with Content-Type: application/octet-stream.
    let a = post(
        &s,
        "breast_cancer",
        body,
        Some(hl),
        Some("application/octet-stream"),
    )
    .await;
    assert_eq!(a.status, 200);

    // Binary input, JSON output unless asked per output.
    let head = json!({"inputs": [{"name": "input", "shape": [n, f], "datatype": "FP32", "parameters": {"binary_data_size": n * f * 4}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}, {"name": "label"}]});
    let (body, hl) = binary_body(&head, &le(&x));
    let a = post(&s, "breast_cancer", body, Some(hl), None).await;
    assert_eq!(a.status, 200);
    assert_eq!(f32s(a.binary("probabilities")), json_p);
    let h = a.json();
    let label = h["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "label")
        .unwrap();
    assert_eq!(label["data"].as_array().unwrap().len(), n);

    // JSON input, no binary output asked: a plain JSON answer.
    let head = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": false}}]});
    let a = post(&s, "iris", serde_json::to_vec(&head).unwrap(), None, None).await;
    assert_eq!(
        (a.status, a.header_len, a.content_type.as_str()),
        (200, None, "application/json")
    );
    assert_eq!(a.json()["outputs"][0]["data"], json!([1.0, 0.0, 0.0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classification_over_json_and_binary() {
    let s = Server::start(&[], &[]);
    let x = [5.1f32, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3];
    let head = json!({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": x}],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}]});
    let a = post(&s, "iris", serde_json::to_vec(&head).unwrap(), None, None).await;
    assert_eq!(a.status, 200);
    let o = &a.json()["outputs"][0];
    assert_eq!(
        (o["datatype"].clone(), o["shape"].clone()),
        (json!("BYTES"), json!([2, 2]))
    );
    let top: Vec<String> = o["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(top[0], "1:0:setosa");
    assert!(top[2].ends_with(":2:virginica"), "{top:?}");
    let head = json!({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 2, "binary_data": true}}]});
    let (body, hl) = binary_body(&head, &le(&x));
    let b = post(&s, "iris", body, Some(hl), None).await;
    assert_eq!(b.status, 200);
    assert_eq!(strings(b.binary("probabilities")), top);
    // A regressor has no labels: "score:index".
    let zeros = [0.0f32; 10];
    let head = json!({"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", "data": zeros}],
        "outputs": [{"name": "value", "parameters": {"classification": 1}}]});
    let a = post(
        &s,
        "diabetes",
        serde_json::to_vec(&head).unwrap(),
        None,
        None,
    )
    .await;
    let v = a.json()["outputs"][0]["data"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(v.ends_with(":0") && v.split(':').count() == 2, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_errors_are_clean_v2_errors() {
    let s = Server::start(&[], &[]);
    let x = [5.1f32, 3.5, 1.4, 0.2];
    let head = |size: i64| json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": size}}]});
    let (good, hl) = binary_body(&head(16), &le(&x));
    /// What, body, Inference-Header-Content-Length, Content-Type, part of the error message.
    type Case<'a> = (&'a str, Vec<u8>, Option<String>, Option<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        ("header beyond body", good.clone(), Some((good.len() + 1).to_string()), None, "only"),
        ("header not a number", good.clone(), Some("abc".into()), None, "byte count"),
        ("header too short", good.clone(), Some((hl - 3).to_string()), None, "JSON"),
        ("too few bytes", binary_body(&head(16), &le(&x[..3])).0, Some(hl.to_string()), None, "only 12 byte(s)"),
        ("bytes left over", binary_body(&head(16), &le(&[x, x].concat())).0, Some(hl.to_string()), None, "add up to 16"),
        ("size vs shape", binary_body(&head(12), &le(&x[..3])).0, Some(binary_body(&head(12), &[]).1.to_string()), None, "need 16 bytes"),
        ("negative size", binary_body(&head(-4), &[]).0, Some(binary_body(&head(-4), &[]).1.to_string()), None, "byte count"),
        ("no binary part", serde_json::to_vec(&head(16)).unwrap(), None, None, "only 0 byte(s)"),
        ("octet-stream without header", good.clone(), None, Some("application/octet-stream"), "Inference-Header-Content-Length"),
        ("bad JSON header", { let mut b = b"{\"inputs\": [".to_vec(); b.extend(le(&x)); b }, Some("12".into()), None, "JSON"),
        ("data and binary", serde_json::to_vec(&json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": x, "parameters": {"binary_data_size": 16}}]})).unwrap(), None, None, "both"),
        ("bad binary_data_output", serde_json::to_vec(&json!({"parameters": {"binary_data_output": 3}, "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": x}]})).unwrap(), None, None, "binary_data_output"),
        ("BYTES framing", { let h = json!({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]}); let (mut b, _) = binary_body(&h, &[]); b.extend([9, 0, 0, 0, 1, 2]); b }, Some(binary_body(&json!({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]}), &[]).1.to_string()), None, "claims 9 bytes"),
        ("classification of BYTES", serde_json::to_vec(&json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": x}], "outputs": [{"name": "label", "parameters": {"classification": 1}}]})).unwrap(), None, None, "BYTES"),
    ];
    for (what, body, header, ct, msg) in cases {
        let mut r = client().post(s.url("/v2/models/iris/infer")).body(body);
        if let Some(h) = header {
            r = r.header("Inference-Header-Content-Length", h);
        }
        if let Some(ct) = ct {
            r = r.header("Content-Type", ct);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 400, "{what}");
        let v: Value = resp.json().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let m = v["error"].as_str().unwrap_or_else(|| panic!("{what}: {v}"));
        assert!(m.contains(msg), "{what}: {m}");
        // Still serving, binary included.
        let a = post(&s, "iris", good.clone(), Some(hl), None).await;
        assert_eq!(a.status, 200, "{what}: server stopped serving");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_rows_fit_and_one_more_does_not() {
    let s = Server::start(&[], &[]);
    let (x, _, f) = rows_of("breast_cancer");
    for (n, status) in [(100_000usize, 200u16), (100_001, 413)] {
        let big: Vec<f32> = x.iter().copied().cycle().take(n * f).collect();
        let head = json!({"parameters": {"binary_data_output": true},
            "inputs": [{"name": "input", "shape": [n, f], "datatype": "FP32", "parameters": {"binary_data_size": n * f * 4}}]});
        let (body, hl) = binary_body(&head, &le(&big));
        let a = post(&s, "breast_cancer", body, Some(hl), None).await;
        assert_eq!(a.status, status, "{n} rows");
        if status == 200 {
            assert_eq!(f32s(a.binary("probabilities")).len(), 2 * n);
        } else {
            assert!(a.json()["error"]
                .as_str()
                .unwrap()
                .contains("max_request_rows"));
        }
    }
}
