//! A request's deadline, read in one place for every front ([`Deadline::read`]): the request's
//! own `timeout` parameter (microseconds, as Triton), and what its transport says — over HTTP
//! the `X-Request-Timeout-Ms` header, over gRPC the client's `grpc-timeout`. The fronts hand
//! over what they received as it is; the checks and the messages of a bad value are here.

use std::future::Future;
use std::time::Duration;

use ferroserve_core::{ErrorKind, InferError, Parameters};

/// The request parameter holding a deadline, in microseconds (Triton's `timeout`).
pub const PARAM: &str = "timeout";

/// The HTTP header holding a deadline, in milliseconds (lowercase, as HTTP/2 writes names).
pub const HTTP_HEADER: &str = "x-request-timeout-ms";

/// What a request's transport says about its deadline, besides its `timeout` parameter.
#[derive(Debug, Clone, Copy)]
pub enum Transport<'a> {
    /// HTTP: the value of the [`HTTP_HEADER`] header, when the request has one. It is read
    /// only when the request has no `timeout` parameter, which takes precedence.
    Http { timeout_ms: Option<&'a [u8]> },
    /// gRPC: the client's `grpc-timeout`, when it sent one that reads as a duration. The
    /// earlier of it and the `timeout` parameter wins, and the call ends when it passes, as
    /// the client stops waiting then.
    Grpc { timeout: Option<Duration> },
}

/// How long a request may take, counted from when its call starts; with none, the model's
/// `default_timeout` applies (if it has one). While the request waits for its model, the
/// model's handle enforces it (a request still queued when it passes is never computed). A
/// deadline from gRPC also ends the whole call when it passes ([`Deadline::bound`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deadline {
    timeout: Option<Duration>,
    ends_call: bool,
}

impl Deadline {
    /// No deadline of the request's own (the model's `default_timeout`, if any, applies).
    pub const NONE: Deadline = Deadline {
        timeout: None,
        ends_call: false,
    };

    /// A deadline `timeout` after the call starts, enforced while the request waits for its
    /// model (as HTTP's).
    pub fn after(timeout: Duration) -> Deadline {
        Deadline {
            timeout: Some(timeout),
            ends_call: false,
        }
    }

    /// The deadline of a request with `params`, received over `transport`: its `timeout`
    /// parameter, else (HTTP) the header; over gRPC the earlier of the parameter and the
    /// client's `grpc-timeout`. A parameter or header that is not a positive number is refused.
    pub fn read(params: &Parameters, transport: Transport<'_>) -> Result<Deadline, InferError> {
        let param = match params.get(PARAM) {
            None => None,
            Some(p) => {
                let us = p.as_i64().filter(|&v| v > 0).ok_or_else(|| {
                    InferError::invalid(
                        "parameter 'timeout' must be a positive number of microseconds",
                    )
                })?;
                Some(Duration::from_micros(us as u64))
            }
        };
        Ok(match transport {
            Transport::Http { timeout_ms } => Deadline {
                timeout: match (param, timeout_ms) {
                    (Some(t), _) => Some(t),
                    (None, Some(value)) => Some(header_timeout(value)?),
                    (None, None) => None,
                },
                ends_call: false,
            },
            Transport::Grpc { timeout } => Deadline {
                timeout: match (timeout, param) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
                ends_call: true,
            },
        })
    }

    /// How long the request may take, if it has a deadline of its own.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Runs `fut` (the call) under this deadline: a gRPC deadline answers `DeadlineExceeded`
    /// when it passes first; any other leaves the call to the model's handle, which enforces
    /// it while the request waits.
    pub async fn bound<T>(
        self,
        fut: impl Future<Output = Result<T, InferError>>,
    ) -> Result<T, InferError> {
        match self.timeout.filter(|_| self.ends_call) {
            None => fut.await,
            Some(d) => tokio::time::timeout(d, fut).await.unwrap_or_else(|_| {
                Err(InferError::new(
                    ErrorKind::DeadlineExceeded,
                    format!(
                        "the request's deadline ({} ms) passed before it was answered",
                        d.as_millis()
                    ),
                ))
            }),
        }
    }
}

/// The header's value: a positive, finite number of milliseconds (surrounding spaces allowed),
/// in visible ASCII as an HTTP header value must be to be read as text.
fn header_timeout(value: &[u8]) -> Result<Duration, InferError> {
    let visible = value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    visible
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0 && v.is_finite())
        // One too large for a Duration (1e300) is refused like any other bad value.
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1e3).ok())
        .ok_or_else(|| {
            InferError::invalid(
                "header X-Request-Timeout-Ms must be a positive number of milliseconds",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_core::Param;

    fn params(timeout: Option<Param>) -> Parameters {
        let mut p = Parameters::default();
        if let Some(t) = timeout {
            p.insert(PARAM, t);
        }
        p
    }

    fn http(p: &Parameters, header: Option<&str>) -> Result<Option<Duration>, String> {
        Deadline::read(
            p,
            Transport::Http {
                timeout_ms: header.map(str::as_bytes),
            },
        )
        .map(|d| d.timeout())
        .map_err(|e| {
            assert_eq!(e.kind, ErrorKind::InvalidInput);
            e.message
        })
    }

    const BAD_PARAM: &str = "parameter 'timeout' must be a positive number of microseconds";
    const BAD_HEADER: &str =
        "header X-Request-Timeout-Ms must be a positive number of milliseconds";

    #[test]
    fn over_http_the_parameter_comes_first_then_the_header() {
        let none = params(None);
        assert_eq!(http(&none, None), Ok(None));
        assert_eq!(
            http(&params(Some(Param::Int(1500))), None),
            Ok(Some(Duration::from_micros(1500)))
        );
        // Integers in any form the parameter reads as one.
        assert_eq!(
            http(&params(Some(Param::Str("20".into()))), None),
            Ok(Some(Duration::from_micros(20)))
        );
        assert_eq!(
            http(&params(Some(Param::Float(7.0))), None),
            Ok(Some(Duration::from_micros(7)))
        );
        assert_eq!(
            http(&none, Some(" 2.5 ")),
            Ok(Some(Duration::from_micros(2500)))
        );
        // The parameter takes precedence; the header is then not read at all.
        assert_eq!(
            http(&params(Some(Param::Int(9_000_000))), Some("1")),
            Ok(Some(Duration::from_secs(9)))
        );
        assert_eq!(
            http(&params(Some(Param::Int(5))), Some("soon")),
            Ok(Some(Duration::from_micros(5)))
        );
    }

    #[test]
    fn bad_values_are_refused_with_what_was_expected() {
        for p in [
            Param::Int(0),
            Param::Int(-3),
            Param::Float(1.5),
            Param::Bool(true),
            Param::Str("soon".into()),
        ] {
            assert_eq!(
                http(&params(Some(p.clone())), None),
                Err(BAD_PARAM.into()),
                "{p:?}"
            );
            let e = Deadline::read(
                &params(Some(p)),
                Transport::Grpc {
                    timeout: Some(Duration::from_secs(1)),
                },
            )
            .unwrap_err();
            assert_eq!(e.message, BAD_PARAM);
        }
        for h in [
            "soon", "", "0", "-5", "inf", "NaN", "1e400", "1e300", "5\u{a0}",
        ] {
            assert_eq!(http(&params(None), Some(h)), Err(BAD_HEADER.into()), "{h}");
        }
        // Bytes a header may carry but not as text.
        let e = Deadline::read(
            &params(None),
            Transport::Http {
                timeout_ms: Some(b"5\xff"),
            },
        )
        .unwrap_err();
        assert_eq!(e.message, BAD_HEADER);
    }

    #[test]
    fn over_grpc_the_earlier_wins_and_ends_the_call() {
        let grpc = |p: &Parameters, t: Option<Duration>| {
            Deadline::read(p, Transport::Grpc { timeout: t }).unwrap()
        };
        let ms = Duration::from_millis;
        let d = grpc(&params(Some(Param::Int(3000))), Some(ms(100)));
        assert_eq!(d.timeout(), Some(ms(3)));
        assert!(d.ends_call);
        let d = grpc(&params(Some(Param::Int(3000))), Some(ms(1)));
        assert_eq!(d.timeout(), Some(ms(1)));
        assert_eq!(grpc(&params(None), Some(ms(4))).timeout(), Some(ms(4)));
        assert_eq!(grpc(&params(None), None).timeout(), None);
        assert_eq!(Deadline::default(), Deadline::NONE);
        assert!(!Deadline::after(ms(1)).ends_call);
    }

    #[tokio::test(start_paused = true)]
    async fn a_grpc_deadline_ends_the_call_and_an_http_one_leaves_it_to_the_model() {
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, InferError>(1)
        };
        let grpc = Deadline::read(
            &Parameters::default(),
            Transport::Grpc {
                timeout: Some(Duration::from_millis(250)),
            },
        )
        .unwrap();
        let e = grpc.bound(slow()).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::DeadlineExceeded);
        assert_eq!(
            e.message,
            "the request's deadline (250 ms) passed before it was answered"
        );
        // An HTTP deadline is the model handle's to enforce: the call itself is not cut off.
        let http = Deadline::after(Duration::from_millis(250));
        assert_eq!(http.bound(slow()).await, Ok(1));
        assert_eq!(Deadline::NONE.bound(slow()).await, Ok(1));
    }
}
