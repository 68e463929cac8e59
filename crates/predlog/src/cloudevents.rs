//! The CloudEvents sink (`--prediction-log http(s)://...`): each record is POSTed as the
//! CloudEvents (v1.0, HTTP binary mode) KServe's inference logger sends, so that receivers of
//! KServe inference logs take them unchanged: a request event (`ce-type:
//! org.kubeflow.serving.inference.request`, the v2 inference request as its JSON body) when the
//! inputs are recorded, then a response event (`org.kubeflow.serving.inference.response`, the
//! v2 response), both with the request's id as `ce-id` and the model as
//! `ce-inferenceservicename`.
//!
//! Where it differs from KServe's logger: a request that failed is sent too, its response
//! event's body `{"error": "..."}` (KServe sends nothing); bodies are the recorded values
//! written again as v2 JSON (cut to `max_rows`), not the bytes the client sent; `ce-source` is
//! the route; `ce-endpoint` is `default`; extensions `modelversion`, `protocol`, `status`,
//! `latencyus`, `rows` and `rowsomitted` are added.
//!
//! A receiver that answers anything but 2xx, or cannot be reached, fails the batch. After a
//! connection failure the next batches fail at once for a back-off that doubles from 100 ms to
//! 10 s, so a receiver that is down costs no time.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::record::{self, Record};
use crate::{Backoff, Sink};

pub const REQUEST_TYPE: &str = "org.kubeflow.serving.inference.request";
pub const RESPONSE_TYPE: &str = "org.kubeflow.serving.inference.response";

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct CloudEventsSink {
    /// Made on the first batch, on the writer's thread (a blocking client runs a runtime of
    /// its own, which may be neither made nor dropped on the server's).
    client: Option<reqwest::blocking::Client>,
    url: String,
    shown: String,
    backoff: Backoff,
}

impl CloudEventsSink {
    /// A sink POSTing to `url` (`http://` or `https://`).
    pub fn new(url: &str) -> Result<CloudEventsSink, String> {
        let shown = shown(url);
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{shown}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(format!("{shown}: expected http(s)://HOST[:PORT]/PATH"));
        }
        Ok(CloudEventsSink {
            client: None,
            url: url.to_string(),
            shown,
            backoff: Backoff::new(),
        })
    }

    /// The URL without a password or query.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn post(&mut self, r: &Record, kind: &str, body: String) -> Result<(), String> {
        if self.client.is_none() {
            let c = reqwest::blocking::Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| format!("{}: {e}", self.shown))?;
            self.client = Some(c);
        }
        let client = self.client.as_ref().expect("made above");
        let mut req = client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("ce-specversion", "1.0")
            .header("ce-id", header_value(&r.id))
            .header("ce-type", kind)
            .header("ce-source", header_value(&r.route))
            .header("ce-time", record::rfc3339(r.time_ms))
            .header("ce-inferenceservicename", header_value(&r.model))
            .header("ce-component", "predictor")
            .header("ce-endpoint", "default")
            .header("ce-metadata", "{}")
            .header("ce-modelversion", r.version.to_string())
            .header("ce-protocol", r.protocol);
        if kind == RESPONSE_TYPE {
            req = req
                .header("ce-status", r.status.to_string())
                .header("ce-latencyus", r.latency_us.to_string())
                .header("ce-rows", r.rows.to_string())
                .header("ce-rowsomitted", r.rows_omitted.to_string());
        }
        let resp = req.body(body).send().map_err(|e| {
            let e = e.without_url();
            format!("{}: {e}", self.shown)
        })?;
        let st = resp.status();
        if st.is_success() {
            Ok(())
        } else {
            Err(format!("{} answered {st}", self.shown))
        }
    }
}

impl Sink for CloudEventsSink {
    fn write(&mut self, batch: &[Arc<Record>]) -> Result<(), String> {
        self.backoff.check(&self.shown)?;
        for r in batch {
            let sent = request_body(r)
                .map_or(Ok(()), |b| self.post(r, REQUEST_TYPE, b))
                .and_then(|()| self.post(r, RESPONSE_TYPE, response_body(r)));
            if let Err(e) = sent {
                self.backoff.failed();
                return Err(e);
            }
        }
        if self.backoff.succeeded() {
            tracing::info!(url = %self.shown, "prediction log: the CloudEvents receiver is back");
        }
        Ok(())
    }
}

/// The v2 inference request of `r`, when its inputs were recorded.
fn request_body(r: &Record) -> Option<String> {
    let inputs = r.inputs_text()?;
    let mut s = String::with_capacity(inputs.len() + 64);
    s.push_str("{\"id\":");
    crate::text::push_json_str(&mut s, &r.id);
    s.push_str(",\"inputs\":");
    s.push_str(&inputs);
    s.push('}');
    Some(s)
}

/// The v2 response of `r`, or `{"error": ...}` for a request that failed.
fn response_body(r: &Record) -> String {
    let mut s = String::new();
    if let Some(e) = &r.error {
        s.push_str("{\"error\":");
        crate::text::push_json_str(&mut s, e);
        s.push('}');
        return s;
    }
    s.push_str("{\"model_name\":");
    crate::text::push_json_str(&mut s, &r.model);
    let _ = write!(s, ",\"model_version\":\"{}\",\"id\":", r.version);
    crate::text::push_json_str(&mut s, &r.id);
    s.push_str(",\"outputs\":");
    s.push_str(r.outputs_text().as_deref().unwrap_or("[]"));
    s.push('}');
    s
}

/// A CloudEvents HTTP header value: printable ASCII as is, the rest (and `"`, `%`)
/// percent-encoded, as the HTTP binding asks.
fn header_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for b in v.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'%' {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

/// `url` without user, password or query.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => url.split(['?', '@']).next().unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Values;

    #[test]
    fn bodies_are_v2_and_headers_are_encoded() {
        let mut r = Record {
            id: "a b\"%é".into(),
            time_ms: 0,
            model: "iris".into(),
            version: 3,
            protocol: "http_v2",
            route: "/v2/models/iris/infer".into(),
            status: 200,
            error: None,
            latency_us: 1,
            rows: 1,
            rows_omitted: 0,
            inputs: Some(Values::Json(r#"[{"name":"x"}]"#.into())),
            outputs: Some(Values::Json(r#"[{"name":"y"}]"#.into())),
        };
        assert_eq!(header_value(&r.id), "a b%22%25%C3%A9");
        let req: serde_json::Value = serde_json::from_str(&request_body(&r).unwrap()).unwrap();
        assert_eq!(
            req,
            serde_json::json!({"id": "a b\"%é", "inputs": [{"name": "x"}]})
        );
        let resp: serde_json::Value = serde_json::from_str(&response_body(&r)).unwrap();
        assert_eq!(
            resp,
            serde_json::json!({"model_name": "iris", "model_version": "3", "id": "a b\"%é", "outputs": [{"name": "y"}]})
        );
        r.inputs = None;
        r.error = Some("bad \"shape\"".into());
        assert_eq!(request_body(&r), None);
        assert_eq!(response_body(&r), r#"{"error":"bad \"shape\""}"#);
        assert_eq!(
            shown("https://user:pw@host:8443/path?token=x"),
            "https://host:8443/path"
        );
        assert!(CloudEventsSink::new("ftp://host/").is_err());
        assert!(CloudEventsSink::new("http://127.0.0.1:1/events").is_ok());
    }
}
