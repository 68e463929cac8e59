//! The v2 HTTP calls the runner makes (model metadata, infer), with retries: exponential
//! back-off with full jitter (a delay drawn from 0 to min(cap, base × 2^attempt)), or the
//! server's `Retry-After` when it sends one, on 429, 502, 503, 504, connection errors and
//! timeouts. Any other error status fails at once.

use std::time::{Duration, SystemTime};

use reqwest::{StatusCode, Url};

/// First back-off ceiling.
pub const BASE: Duration = Duration::from_millis(100);
/// Largest back-off ceiling.
pub const CAP: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

/// The ceiling of the back-off before retry number `attempt` (0 for the first retry).
pub fn backoff_ceiling(attempt: u32, base: Duration, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << attempt.min(30)).min(cap)
}

/// Full jitter: a uniform draw (`unit` in [0, 1)) below the ceiling.
pub fn backoff(attempt: u32, unit: f64) -> Duration {
    backoff_ceiling(attempt, BASE, CAP).mul_f64(unit.clamp(0.0, 1.0))
}

/// A `Retry-After` value: seconds, or an HTTP date (then the time until it, from `now`).
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(RETRY_AFTER_MAX))
}

fn retryable(s: StatusCode) -> bool {
    matches!(s.as_u16(), 429 | 502 | 503 | 504)
}

/// What one call ended with, once retries are done.
pub enum Outcome {
    /// A 2xx answer's body.
    Ok(bytes::Bytes),
    /// The status (if one came) and the message: the server's `error`, else the body.
    Failed(Option<StatusCode>, String),
}

/// One call to make, possibly several times.
pub struct Call<'a> {
    pub client: &'a reqwest::Client,
    pub url: &'a Url,
    /// `None`: GET; else POST with this JSON body (shared by the attempts, not copied).
    pub body: Option<bytes::Bytes>,
    pub retries: u32,
}

/// The message of an error answer: the v2 `{"error": "..."}`, else the body's first 500 bytes.
pub fn error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        error: String,
    }
    let msg = match serde_json::from_slice::<E>(body) {
        Ok(e) => e.error,
        Err(_) => {
            let t = String::from_utf8_lossy(&body[..body.len().min(500)]);
            t.trim().to_string()
        }
    };
    if msg.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {msg}")
    }
}

impl Call<'_> {
    /// Makes the call, retrying as the module says; `retried` counts the retries made.
    pub async fn run(&self, retried: &std::sync::atomic::AtomicU64) -> Outcome {
        let mut attempt = 0u32;
        loop {
            let req = match &self.body {
                None => self.client.get(self.url.clone()),
                Some(b) => self
                    .client
                    .post(self.url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone()),
            };
            let (again, status, msg, retry_after) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    match resp.bytes().await {
                        Ok(body) if status.is_success() => return Outcome::Ok(body),
                        Ok(body) => (
                            retryable(status),
                            Some(status),
                            error_message(status, &body),
                            retry_after,
                        ),
                        Err(e) => (true, Some(status), format!("reading the answer: {e}"), None),
                    }
                }
                Err(e) => (true, None, describe(&e), None),
            };
            if !again || attempt >= self.retries {
                let msg = if attempt > 0 && again {
                    format!("{msg} (after {} attempts)", attempt + 1)
                } else {
                    msg
                };
                return Outcome::Failed(status, msg);
            }
            let wait = retry_after.unwrap_or_else(|| backoff(attempt, fastrand::f64()));
            retried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// A transport error in words, with its causes.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut s = format!("{what}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

/// `{base}/v2/models/{model}[/versions/{v}][/infer]`, each name a path segment (escaped).
pub fn model_url(base: &Url, model: &str, version: Option<&str>, infer: bool) -> Url {
    let mut u = base.clone();
    if let Ok(mut p) = u.path_segments_mut() {
        p.pop_if_empty().extend(["v2", "models", model]);
        if let Some(v) = version {
            p.extend(["versions", v]);
        }
        if infer {
            p.push("infer");
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_its_cap_and_jitter_stays_below() {
        let c: Vec<u64> = (0..12)
            .map(|a| backoff_ceiling(a, BASE, CAP).as_millis() as u64)
            .collect();
        assert_eq!(
            c,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]
        );
        assert_eq!(backoff_ceiling(200, BASE, CAP), CAP);
        assert_eq!(backoff(3, 0.0), Duration::ZERO);
        assert_eq!(backoff(3, 0.5), Duration::from_millis(400));
        assert!(backoff(40, 0.999_999) < CAP);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999", now), Some(RETRY_AFTER_MAX));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn error_messages_quote_the_v2_error() {
        let s = StatusCode::BAD_REQUEST;
        assert_eq!(
            error_message(s, br#"{"error":"bad row"}"#),
            "400 Bad Request: bad row"
        );
        assert_eq!(
            error_message(s, b"plain text\n"),
            "400 Bad Request: plain text"
        );
        assert_eq!(error_message(s, b""), "400 Bad Request");
    }

    #[test]
    fn model_urls() {
        let b = Url::parse("http://h:8000/prefix/").unwrap();
        assert_eq!(
            model_url(&b, "iris", None, false).as_str(),
            "http://h:8000/prefix/v2/models/iris"
        );
        assert_eq!(
            model_url(&b, "a b", Some("2"), true).as_str(),
            "http://h:8000/prefix/v2/models/a%20b/versions/2/infer"
        );
        let b = Url::parse("http://h:8000").unwrap();
        assert_eq!(
            model_url(&b, "iris", None, true).as_str(),
            "http://h:8000/v2/models/iris/infer"
        );
    }
}
