//! Reading request bodies: content type checked, `Content-Encoding` (gzip, deflate) undone,
//! size limited (after decompression too), every failure a v2 error; and compressing an answer
//! for a client whose `Accept-Encoding` asks for it.

use std::io::Write;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use bytes::Bytes;
use ferroserve_core::{ErrorKind, InferError};
use futures_util::StreamExt;

use crate::error::ApiError;

/// What a body claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    OctetStream,
}

/// Accepts JSON (or no content type at all, as many clients send); `octet_ok` also accepts
/// `application/octet-stream`.
pub fn body_kind(headers: &HeaderMap, octet_ok: bool) -> Result<BodyKind, ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/json" || essence.ends_with("+json") || essence.is_empty() {
        Ok(BodyKind::Json)
    } else if octet_ok && essence == "application/octet-stream" {
        Ok(BodyKind::OctetStream)
    } else {
        Err(ApiError(InferError::new(
            ErrorKind::UnsupportedMediaType,
            if octet_ok {
                format!("unsupported Content-Type '{essence}': send 'application/json', or 'application/octet-stream' with an Inference-Header-Content-Length header")
            } else {
                format!(
                    "unsupported Content-Type '{essence}': send 'Content-Type: application/json'"
                )
            },
        )))
    }
}

/// An HTTP content coding this server reads and writes (`deflate` is the zlib format, as
/// RFC 9110 and tritonclient have it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
}

impl Coding {
    fn parse(token: &str) -> Option<Self> {
        if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            Some(Coding::Gzip)
        } else if token.eq_ignore_ascii_case("deflate") {
            Some(Coding::Deflate)
        } else {
            None
        }
    }

    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        })
    }
}

/// The request's `Content-Encoding`: `None` for none (or `identity`).
fn content_coding(headers: &HeaderMap) -> Result<Option<Coding>, ApiError> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or("").trim();
    if v.is_empty() || v.eq_ignore_ascii_case("identity") {
        return Ok(None);
    }
    Coding::parse(v).map(Some).ok_or_else(|| {
        ApiError(InferError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "unsupported Content-Encoding '{v}': send gzip, deflate or an uncompressed body"
            ),
        ))
    })
}

/// The coding an answer may be compressed with: the first of gzip or deflate that
/// `Accept-Encoding` names without `q=0`.
pub fn accepted_coding(headers: &HeaderMap) -> Option<Coding> {
    let v = headers.get(header::ACCEPT_ENCODING)?.to_str().ok()?;
    v.split(',').find_map(|item| {
        let mut parts = item.split(';');
        let coding = Coding::parse(parts.next()?.trim())?;
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (!refused).then_some(coding)
    })
}

/// Compresses an answer body; returns it with its `Content-Encoding`.
pub fn compress(body: &[u8], coding: Coding) -> (Vec<u8>, HeaderValue) {
    let out = Vec::with_capacity(body.len() / 2 + 64);
    let level = flate2::Compression::fast();
    let out = match coding {
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, level);
            e.write_all(body).and_then(|_| e.finish())
        }
        Coding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(out, level);
            e.write_all(body).and_then(|_| e.finish())
        }
    }
    .expect("compressing into memory cannot fail");
    (out, coding.header())
}

/// A body that could not be read: a connection limit that fired (408 for a body too slow,
/// 503 when the bodies in flight hold all the memory allowed), or a broken upload (400).
pub fn unreadable(e: &(dyn std::error::Error + 'static)) -> ApiError {
    match crate::conn::fault_of(e) {
        Some(f) => ApiError(InferError::new(
            if f.limit == crate::conn::Limit::Body {
                ErrorKind::RequestTimeout
            } else {
                ErrorKind::Unavailable
            },
            f.to_string(),
        )),
        None => ApiError::invalid(format!("could not read the request body: {e}")),
    }
}

/// The most bytes a body may hold, and what sets it (named in the error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub bytes: usize,
    /// The flag or rule the error names.
    pub source: &'static str,
}

impl Limit {
    /// The server's `--max-body-bytes`.
    pub fn flag(bytes: usize) -> Limit {
        Limit {
            bytes,
            source: "--max-body-bytes",
        }
    }

    /// `rule`'s own `bytes`, unless `--max-body-bytes` (`flag`) is smaller.
    pub fn fixed(bytes: usize, rule: &'static str, flag: usize) -> Limit {
        if flag <= bytes {
            Limit::flag(flag)
        } else {
            Limit {
                bytes,
                source: rule,
            }
        }
    }
}

fn too_large(limit: Limit, what: &str) -> ApiError {
    ApiError(InferError::new(
        ErrorKind::TooLarge,
        format!(
            "request body{what} is larger than the limit of {} bytes ({})",
            limit.bytes, limit.source
        ),
    ))
}

/// Reads the whole body, refusing more than the limit, compressed or decompressed.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: Limit) -> Result<Bytes, ApiError> {
    let coding = content_coding(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit.bytes as u64) {
        return Err(too_large(limit, ""));
    }
    if let Some(coding) = coding {
        return inflate(body, coding, limit).await;
    }
    collect(body, declared.map_or(0, |n| n as usize), limit).await
}

/// The body's bytes: a body of one frame as it came (no copy); a longer one copied frame by
/// frame into one buffer of the declared length (so that memory peaks at the body, not at its
/// frames plus a copy of them), refused as soon as it passes the limit.
async fn collect(mut body: Body, declared: usize, limit: Limit) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| unreadable(&e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if first.is_none() && buf.is_empty() {
            if data.len() > limit.bytes {
                return Err(too_large(limit, ""));
            }
            first = Some(data);
            continue;
        }
        if let Some(f) = first.take() {
            buf.reserve_exact(declared.max(f.len() + data.len()).min(limit.bytes));
            buf.extend_from_slice(&f);
        }
        if buf.len() + data.len() > limit.bytes {
            return Err(too_large(limit, ""));
        }
        buf.extend_from_slice(&data);
    }
    Ok(first.unwrap_or_else(|| Bytes::from(buf)))
}

/// Memory that refuses to hold more than `limit` bytes (a zip bomb stops here, as soon as it
/// passes the limit, not after it has been inflated).
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("decompressed body over the limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decompresses the body as it arrives, frame by frame.
async fn inflate(body: Body, coding: Coding, limit: Limit) -> Result<Bytes, ApiError> {
    enum Decoder {
        Gzip(flate2::write::GzDecoder<Bounded>),
        Deflate(flate2::write::ZlibDecoder<Bounded>),
    }
    impl Decoder {
        fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
            match self {
                Decoder::Gzip(d) => d.write_all(data),
                Decoder::Deflate(d) => d.write_all(data),
            }
        }
        fn finish(self) -> Result<Bounded, (std::io::Error, bool)> {
            match self {
                Decoder::Gzip(mut d) => match d.try_finish() {
                    Ok(()) => d.finish().map_err(|e| (e, false)),
                    Err(e) => Err((e, d.get_ref().exceeded)),
                },
                Decoder::Deflate(mut d) => match d.try_finish() {
                    Ok(()) => d.finish().map_err(|e| (e, false)),
                    Err(e) => Err((e, d.get_ref().exceeded)),
                },
            }
        }
        fn exceeded(&self) -> bool {
            match self {
                Decoder::Gzip(d) => d.get_ref().exceeded,
                Decoder::Deflate(d) => d.get_ref().exceeded,
            }
        }
    }
    let out = Bounded {
        buf: Vec::new(),
        limit: limit.bytes,
        exceeded: false,
    };
    let mut d = match coding {
        Coding::Gzip => Decoder::Gzip(flate2::write::GzDecoder::new(out)),
        Coding::Deflate => Decoder::Deflate(flate2::write::ZlibDecoder::new(out)),
    };
    let name = match coding {
        Coding::Gzip => "gzip",
        Coding::Deflate => "deflate (zlib)",
    };
    let corrupt = |e: std::io::Error| {
        ApiError::invalid(format!(
            "the request body is not valid {name} data (Content-Encoding): {e}"
        ))
    };
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unreadable(&e))?;
        read += chunk.len();
        if read > limit.bytes {
            return Err(too_large(limit, ""));
        }
        if let Err(e) = d.write_all(&chunk) {
            return Err(if d.exceeded() {
                too_large(limit, " once decompressed")
            } else {
                corrupt(e)
            });
        }
    }
    match d.finish() {
        Ok(out) => Ok(Bytes::from(out.buf)),
        Err((_, true)) => Err(too_large(limit, " once decompressed")),
        Err((e, false)) => Err(corrupt(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[tokio::test]
    async fn gzip_and_deflate_bodies_are_decompressed() {
        let plain = br#"{"inputs":[]}"#.repeat(100);
        let gz = gzip(&plain);
        let h = headers(&[(header::CONTENT_ENCODING, "gzip")]);
        let got = read_body(Body::from(gz), &h, Limit::flag(1 << 20))
            .await
            .unwrap();
        assert_eq!(&got[..], &plain[..]);
        let (z, ce) = compress(&plain, Coding::Deflate);
        assert_eq!(ce, "deflate");
        let h = headers(&[(header::CONTENT_ENCODING, "deflate")]);
        let got = read_body(Body::from(z), &h, Limit::flag(1 << 20))
            .await
            .unwrap();
        assert_eq!(&got[..], &plain[..]);
    }

    #[tokio::test]
    async fn a_zip_bomb_is_refused_at_the_limit() {
        let bomb = gzip(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 64 << 10);
        let h = headers(&[(header::CONTENT_ENCODING, "gzip")]);
        let e = read_body(Body::from(bomb), &h, Limit::flag(1 << 20))
            .await
            .unwrap_err();
        assert_eq!(e.0.kind, ErrorKind::TooLarge);
        assert!(e.0.message.contains("once decompressed"), "{}", e.0.message);
    }

    #[tokio::test]
    async fn bad_codings_and_bad_data_are_named() {
        let h = headers(&[(header::CONTENT_ENCODING, "br")]);
        let e = read_body(Body::from("x"), &h, Limit::flag(100))
            .await
            .unwrap_err();
        assert_eq!(e.0.kind, ErrorKind::UnsupportedMediaType);
        let h = headers(&[(header::CONTENT_ENCODING, "gzip")]);
        let e = read_body(Body::from("not gzip"), &h, Limit::flag(100))
            .await
            .unwrap_err();
        assert_eq!(e.0.kind, ErrorKind::InvalidInput);
        assert!(e.0.message.contains("not valid gzip"), "{}", e.0.message);
        // Truncated: the gzip trailer is missing.
        let mut gz = gzip(b"hello world");
        gz.truncate(gz.len() - 4);
        let e = read_body(Body::from(gz), &h, Limit::flag(100))
            .await
            .unwrap_err();
        assert_eq!(e.0.kind, ErrorKind::InvalidInput, "{}", e.0.message);
    }

    #[tokio::test]
    async fn the_limit_error_names_what_sets_the_limit() {
        let big = Body::from(vec![b' '; 200]);
        let e = read_body(big, &HeaderMap::new(), Limit::flag(100))
            .await
            .unwrap_err();
        assert_eq!(
            e.0.message,
            "request body is larger than the limit of 100 bytes (--max-body-bytes)"
        );
        let rule = Limit::fixed(100, "its own rule", 1000);
        assert_eq!((rule.bytes, rule.source), (100, "its own rule"));
        let h = headers(&[(header::CONTENT_LENGTH, "200")]);
        let e = read_body(Body::from(vec![b' '; 200]), &h, rule)
            .await
            .unwrap_err();
        assert_eq!(
            e.0.message,
            "request body is larger than the limit of 100 bytes (its own rule)"
        );
        // The flag, when it is the smaller.
        assert_eq!(Limit::fixed(100, "its own rule", 50), Limit::flag(50));
        assert_eq!(Limit::fixed(100, "its own rule", 100), Limit::flag(100));
    }

    #[test]
    fn accept_encoding_picks_the_first_acceptable() {
        let a = |v: &str| accepted_coding(&headers(&[(header::ACCEPT_ENCODING, v)]));
        assert_eq!(a("gzip"), Some(Coding::Gzip));
        assert_eq!(a("br, deflate;q=0.5, gzip"), Some(Coding::Deflate));
        assert_eq!(a("gzip;q=0, deflate"), Some(Coding::Deflate));
        assert_eq!(a("identity"), None);
        assert_eq!(accepted_coding(&HeaderMap::new()), None);
    }
}
