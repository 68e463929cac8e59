//! `GET /v2/models/{model}/predictions`: the prediction log read back, one page at a time,
//! oldest first: `{"records": [...], "next": CURSOR}` (`next` is null after the last record;
//! pass it as `cursor` for the next page, and again later to follow new records).
//!
//! Query parameters: `since` and `until` (RFC 3339 UTC times such as `2026-12-02T10:00:00Z`,
//! dates, or milliseconds since the epoch; `until` is exclusive), `version`, `outcome`
//! (`success`, `error` or a status), `limit` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`])
//! and `cursor`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use ferroserve_core::InferError;
use ferroserve_predlog::record::parse_time;
use ferroserve_predlog::sqlite::{OutcomeFilter, Query};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;
use crate::v2::ok_json;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

pub async fn route(
    State(st): State<Arc<AppState>>,
    Path(model): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let Some(reader) = st.predictions.clone() else {
        return Err(ApiError::not_found(
            "the prediction log is not kept in SQLite on this server: start it with --prediction-log sqlite",
        ));
    };
    let q = parse(model, raw.as_deref().unwrap_or(""))?;
    let page = tokio::task::spawn_blocking(move || reader.page(&q))
        .await
        .map_err(|_| ApiError(InferError::internal("reading the prediction log failed")))?
        .map_err(|e| {
            tracing::warn!(error = %e, "reading the prediction log failed");
            ApiError(InferError::internal("reading the prediction log failed"))
        })?;
    Ok(ok_json(json!({
        "records": page.records,
        "next": page.next.map(|n| n.to_string()),
    })))
}

fn parse(model: String, raw: &str) -> Result<Query, ApiError> {
    let bad = |key: &str, v: &str, want: &str| {
        ApiError(InferError::invalid(format!(
            "query parameter {key}={v:?}: expected {want}"
        )))
    };
    let mut q = Query {
        model,
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match k.as_ref() {
            "since" => q.since = Some(parse_time(&v).ok_or_else(|| bad("since", &v, TIME))?),
            "until" => q.until = Some(parse_time(&v).ok_or_else(|| bad("until", &v, TIME))?),
            "version" => {
                q.version = Some(v.parse().map_err(|_| bad("version", &v, "a version number"))?)
            }
            "outcome" => {
                q.outcome = Some(
                    OutcomeFilter::parse(&v)
                        .ok_or_else(|| bad("outcome", &v, "success, error or a status such as 400"))?,
                )
            }
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad("limit", &v, "1 to 1000"))?
            }
            "cursor" => {
                q.cursor = Some(
                    v.parse()
                        .ok()
                        .filter(|n: &i64| *n >= 0)
                        .ok_or_else(|| bad("cursor", &v, "the `next` of a previous answer"))?,
                )
            }
            other => {
                return Err(ApiError(InferError::invalid(format!(
                    "unknown query parameter {other:?}: expected since, until, version, outcome, limit or cursor"
                ))))
            }
        }
    }
    Ok(q)
}

const TIME: &str =
    "an RFC 3339 UTC time (2026-12-02T10:00:00Z), a date, or milliseconds since the epoch";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_read_or_refused_by_name() {
        let q = parse(
            "m".into(),
            "since=2026-12-02&until=1700000000000&version=2&outcome=error&limit=5&cursor=9",
        )
        .unwrap();
        assert_eq!(q.since, parse_time("2026-12-02"));
        assert_eq!(q.until, Some(1_700_000_000_000));
        assert_eq!(q.version, Some(2));
        assert_eq!(q.outcome, Some(OutcomeFilter::Error));
        assert_eq!((q.limit, q.cursor), (5, Some(9)));
        for (raw, key) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("since=yesterday", "since"),
            ("outcome=maybe", "outcome"),
            ("cursor=-1", "cursor"),
            ("colour=red", "colour"),
        ] {
            let e = parse("m".into(), raw).unwrap_err();
            assert!(e.0.message.contains(key), "{raw}: {}", e.0.message);
        }
    }
}
