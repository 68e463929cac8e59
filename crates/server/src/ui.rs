//! The dashboard at `/ui/`: one page (`ui/index.html`, `ui/app.js`, `ui/app.css`, compiled
//! into the binary) that shows the models, their live traffic from the history route, a form
//! to try a model, the recorded predictions and the batch jobs. It calls the same public
//! routes any client calls, with the key the user gives it, so scopes apply to it as to anyone;
//! the files themselves hold no data and are served to anyone (auth class `Assets`).
//!
//! Each file is gzipped once, on first use, and answered compressed to clients that accept
//! it, with an `ETag` (304 on `If-None-Match`) and a Content-Security-Policy that lets the page
//! load and call nothing but this server.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::extract::Path;

/// The dashboard's files: (name, content type, content).
const FILES: [(&str, &str, &[u8]); 4] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../ui/app.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../ui/icon.svg"),
    ),
];

/// What the page may load and call: this server only, no inline script, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The budget for every file compressed, in bytes (issue: 300 KB).
pub const BUDGET_BYTES: usize = 300 * 1024;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    plain: &'static [u8],
    gzip: Vec<u8>,
    etag: HeaderValue,
}

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        FILES
            .iter()
            .map(|&(name, content_type, plain)| {
                let digest = Sha256::digest(plain);
                let tag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                Asset {
                    name,
                    content_type,
                    plain,
                    gzip: gzip(plain),
                    etag: HeaderValue::from_str(&format!("\"{tag}\""))
                        .unwrap_or(HeaderValue::from_static("\"0\"")),
                }
            })
            .collect()
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Every file's (name, plain size, gzipped size): what the size budget is measured on.
pub fn sizes() -> Vec<(&'static str, usize, usize)> {
    assets()
        .iter()
        .map(|a| (a.name, a.plain.len(), a.gzip.len()))
        .collect()
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|c| {
            let mut parts = c.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(a) = assets().iter().find(|a| a.name == name) else {
        return ApiError::not_found(format!(
            "no dashboard file '{name}': the dashboard is at /ui/"
        ))
        .into_response();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(headers) {
        let mut r = (StatusCode::OK, a.gzip.clone()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        (StatusCode::OK, a.plain).into_response()
    };
    let h = resp.headers_mut();
    if !fresh {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        );
    }
    h.insert(header::ETAG, a.etag.clone());
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// `/ui` (redirect), `/ui/` (the page) and `/ui/{file}`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/ui/{*file}",
            get(
                |Path(file): Path<String>, headers: HeaderMap| async move {
                    serve(&file, &headers)
                },
            ),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_fits_its_size_budget() {
        let sizes = sizes();
        let gz: usize = sizes.iter().map(|s| s.2).sum();
        let plain: usize = sizes.iter().map(|s| s.1).sum();
        for (name, p, g) in &sizes {
            println!("ui/{name}: {p} bytes, {g} gzipped");
        }
        println!("dashboard: {plain} bytes, {gz} gzipped (budget {BUDGET_BYTES})");
        assert!(gz > 1000, "the files are there ({gz} bytes)");
        assert!(
            gz <= BUDGET_BYTES,
            "the dashboard is {gz} bytes gzipped, over its budget of {BUDGET_BYTES}"
        );
    }

    #[test]
    fn gzip_is_answered_only_to_clients_that_take_it() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(accepts_gzip(&h("gzip, deflate, br")));
        assert!(accepts_gzip(&h("br;q=1.0, gzip;q=0.5")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("br, identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn every_file_is_answered_with_its_type_and_an_etag_that_revalidates() {
        for (name, content_type, plain) in FILES {
            let r = serve(name, &HeaderMap::new());
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], content_type, "{name}");
            assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
            assert!(r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("connect-src 'self'"));
            let etag = r.headers()[header::ETAG].clone();
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, etag);
            assert_eq!(serve(name, &h).status(), StatusCode::NOT_MODIFIED, "{name}");
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            h.remove(header::IF_NONE_MATCH);
            let z = serve(name, &h);
            assert_eq!(z.headers()[header::CONTENT_ENCODING], "gzip");
            let a = assets().iter().find(|a| a.name == name).unwrap();
            let mut back = Vec::new();
            use std::io::Read;
            flate2::read::GzDecoder::new(&a.gzip[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, plain, "{name}");
        }
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
