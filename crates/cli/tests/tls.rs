//! TLS on both ports, end to end, against a test CA each test makes (rcgen): HTTPS with reqwest
//! and curl (HTTP/1.1 and HTTP/2 by ALPN), a gRPC call over TLS; mTLS refusing a connection
//! with no client certificate or one of another CA; the certificate rotated while serving (and
//! a broken one refused, the old one staying); plain HTTP sent to the TLS port told so; bad
//! files refused at start naming the flag. JSON Web Tokens (HS256, ES256 by JWKS) end to end:
//! valid, expired, not yet valid, badly signed, wrong audience, wrong scope, another model.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::Server;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A CA of these tests, able to sign server and client certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate and its key (PEM): for `localhost` and 127.0.0.1 (server) or a
    /// client name (client).
    fn leaf(&self, server: bool) -> (String, String) {
        self.leaf_until(server, 2040)
    }

    /// As [`Ca::leaf`], valid until January 1st of `year`.
    fn leaf_until(&self, server: bool, year: i32) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names = if server {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        } else {
            Vec::new()
        };
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(
            DnType::CommonName,
            if server { "localhost" } else { "client-1" },
        );
        p.not_after = rcgen::date_time_ymd(year, 1, 1);
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `https://127.0.0.1:PORT` of a server started with TLS.
fn https(s: &Server) -> String {
    s.base.replace("http://", "https://")
}

/// A client trusting `ca_pem`, with a client certificate when given; no pooled connections (a
/// rotation applies to new connections).
fn client(ca_pem: &str, identity: Option<&(String, String)>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn wait_ready(c: &reqwest::blocking::Client, base: &str) {
    let t = Instant::now();
    loop {
        let index = c
            .post(format!("{base}/v2/repository/index"))
            .body("{}")
            .send()
            .and_then(|r| r.text());
        if let Ok(text) = &index {
            if !text.contains("LOADING") {
                return;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "not ready: {index:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const IRIS: &str =
    r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;

fn metric(c: &reqwest::blocking::Client, base: &str, line: &str) -> f64 {
    let text = c
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in /metrics"))
}

struct Tls {
    dir: tempfile::TempDir,
    ca: Ca,
    cert: PathBuf,
    key: PathBuf,
}

fn tls_files() -> Tls {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ferroserve test CA");
    let (c, k) = ca.leaf(true);
    let cert = write(dir.path(), "server.pem", &c);
    let key = write(dir.path(), "server.key", &k);
    Tls { dir, ca, cert, key }
}

#[test]
fn https_answers_plain_http_is_told_to_use_tls_and_a_client_not_trusting_the_ca_fails() {
    let t = tls_files();
    let s = Server::start_unloaded(
        &[
            "--tls-cert",
            t.cert.to_str().unwrap(),
            "--tls-key",
            t.key.to_str().unwrap(),
        ],
        &[],
    );
    let base = https(&s);
    let c = client(&t.ca.pem(), None);
    wait_ready(&c, &base);
    let r = c
        .post(format!("{base}/v2/models/iris/infer"))
        .header("content-type", "application/json")
        .body(IRIS)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["model_name"], "iris");

    // Plain HTTP to the TLS port: a 400 saying so, in plain HTTP.
    let plain = reqwest::blocking::Client::new()
        .get(s.url("/v2/health/ready"))
        .send()
        .unwrap();
    assert_eq!(plain.status(), 400);
    assert!(plain.text().unwrap().contains("speaks TLS"));
    // A client that does not trust the CA is refused at the handshake.
    let other = client(&Ca::new("another CA").pem(), None);
    assert!(other.get(format!("{base}/v2/health/ready")).send().is_err());
    assert!(
        metric(
            &c,
            &base,
            "ferroserve_tls_handshakes_total{front=\"http\",result=\"failed\"}"
        ) >= 2.0
    );
    assert!(
        metric(
            &c,
            &base,
            "ferroserve_tls_handshakes_total{front=\"http\",result=\"ok\"}"
        ) >= 2.0
    );
}

/// curl over TLS: `(status, HTTP version, body)`.
fn curl(args: &[&str]) -> (String, String, Vec<u8>) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = out.stdout;
    let at = text.iter().rposition(|b| *b == b'\n').unwrap();
    let tail = String::from_utf8_lossy(&text[at + 1..]).into_owned();
    let (code, version) = tail.split_once(' ').unwrap();
    (code.to_string(), version.to_string(), text[..at].to_vec())
}

#[cfg_attr(no_curl, ignore = "needs curl (on Debian: apt-get install curl)")]
#[test]
fn curl_speaks_http2_by_alpn_and_grpc_runs_over_tls_with_mutual_certificates() {
    let t = tls_files();
    let (ccert, ckey) = t.ca.leaf(false);
    let client_cert = write(t.dir.path(), "client.pem", &ccert);
    let client_key = write(t.dir.path(), "client.key", &ckey);
    let stranger = Ca::new("a CA the server does not know").leaf(false);
    let ca = write(t.dir.path(), "ca.pem", &t.ca.pem());
    let s = Server::start_unloaded(
        &[
            "--tls-cert",
            t.cert.to_str().unwrap(),
            "--tls-key",
            t.key.to_str().unwrap(),
            "--tls-client-ca",
            ca.to_str().unwrap(),
        ],
        &[],
    );
    let base = https(&s);
    let me = (ccert.clone(), ckey.clone());
    let c = client(&t.ca.pem(), Some(&me));
    wait_ready(&c, &base);

    // With a client certificate of the CA: answered, over HTTP/2 (ALPN) and HTTP/1.1.
    let with_cert = [
        "--cacert",
        ca.to_str().unwrap(),
        "--cert",
        client_cert.to_str().unwrap(),
        "--key",
        client_key.to_str().unwrap(),
    ];
    let url = format!("{base}/v2/models/iris/infer");
    let mut args = with_cert.to_vec();
    args.extend(["-H", "content-type: application/json", "-d", IRIS, &url]);
    let (code, version, body) = curl(&args);
    assert_eq!((code.as_str(), version.as_str()), ("200", "2"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["outputs"][0]["name"], "label");
    let mut args = with_cert.to_vec();
    args.extend([
        "--http1.1",
        "-H",
        "content-type: application/json",
        "-d",
        IRIS,
        &url,
    ]);
    let (code, version, _) = curl(&args);
    assert_eq!((code.as_str(), version.as_str()), ("200", "1.1"));

    // gRPC over TLS (HTTP/2 by ALPN): ServerLive, framed by hand; the answer's message is
    // `live: true` (field 1, varint 1).
    let grpc_url = format!(
        "{}/inference.GRPCInferenceService/ServerLive",
        s.grpc.replace("http://", "https://")
    );
    let frame = t.dir.path().join("frame");
    std::fs::write(&frame, [0u8, 0, 0, 0, 0]).unwrap();
    let frame_arg = format!("@{}", frame.display());
    let mut args = with_cert.to_vec();
    args.extend([
        "--http2",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--data-binary",
        &frame_arg,
        &grpc_url,
    ]);
    let (code, version, body) = curl(&args);
    assert_eq!((code.as_str(), version.as_str()), ("200", "2"));
    assert_eq!(body, [0u8, 0, 0, 0, 2, 0x08, 0x01]);

    // `ferroserve batch` over mTLS: the CA and the client certificate given to it.
    let input = write(
        t.dir.path(),
        "rows.csv",
        "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n",
    );
    let out = t.dir.path().join("out.jsonl");
    let batch = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ferroserve"))
            .args(["batch", "--no-progress", "--url", &base, "--model", "iris"])
            .arg(input.to_str().unwrap())
            .args(if extra.contains(&"-o") {
                vec![]
            } else {
                vec!["-o", out.to_str().unwrap()]
            })
            .args(extra)
            .output()
            .unwrap()
    };
    let ran = batch(&[
        "--ca-cert",
        ca.to_str().unwrap(),
        "--client-cert",
        client_cert.to_str().unwrap(),
        "--client-key",
        client_key.to_str().unwrap(),
    ]);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("\"label\":\"setosa\""), "{text}");
    // (Another output: the first run's checkpoint says that one is done.)
    let out2 = t.dir.path().join("out2.jsonl");
    let refused = batch(&[
        "--ca-cert",
        ca.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
    ]);
    assert!(
        !refused.status.success(),
        "batch ran without a client certificate: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    // (TLS 1.3 refuses the missing certificate after the client's half of the handshake: the
    // client sees the alert, or only the connection closing, depending on timing.)
    assert!(said.contains("request failed"), "{said}");

    // No client certificate, or one of another CA: refused at the handshake, on both ports.
    let none = client(&t.ca.pem(), None);
    assert!(none.get(format!("{base}/v2/health/ready")).send().is_err());
    let foreign = client(&t.ca.pem(), Some(&stranger));
    assert!(foreign
        .get(format!("{base}/v2/health/ready"))
        .send()
        .is_err());
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            ca.to_str().unwrap(),
            "--http2",
        ])
        .args([
            "-H",
            "content-type: application/grpc",
            "--data-binary",
            &frame_arg,
            &grpc_url,
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "gRPC without a client certificate was answered"
    );
    assert!(
        metric(
            &c,
            &base,
            "ferroserve_tls_handshakes_total{front=\"http\",result=\"failed\"}"
        ) >= 2.0
    );
    assert!(
        metric(
            &c,
            &base,
            "ferroserve_tls_handshakes_total{front=\"grpc\",result=\"failed\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &c,
            &base,
            "ferroserve_tls_handshakes_total{front=\"grpc\",result=\"ok\"}"
        ) >= 1.0
    );
}

#[test]
fn a_rotated_certificate_is_used_by_new_connections_and_a_broken_one_is_refused() {
    let t = tls_files();
    let s = Server::start_unloaded(
        &[
            "--tls-cert",
            t.cert.to_str().unwrap(),
            "--tls-key",
            t.key.to_str().unwrap(),
        ],
        &[],
    );
    let base = https(&s);
    let old = client(&t.ca.pem(), None);
    wait_ready(&old, &base);
    let next_ca = Ca::new("the next CA");
    let next = client(&next_ca.pem(), None);
    let ready = |c: &reqwest::blocking::Client| {
        c.get(format!("{base}/v2/health/ready"))
            .send()
            .is_ok_and(|r| r.status() == 200)
    };
    assert!(!ready(&next));

    // Rotation: the key first, then the certificate (as a renewal tool writes them); the
    // server may look between the two and refuse the pair, then take it on the next look.
    let year = |y: i32| {
        let d = (y - 1970) as f64 * 365.0 + ((y - 1969) / 4) as f64;
        d * 86_400.0
    };
    let expiry = "ferroserve_tls_certificate_expiry_timestamp_seconds";
    assert_eq!(metric(&old, &base, expiry), year(2040));
    let (c2, k2) = next_ca.leaf_until(true, 2041);
    std::fs::write(&t.key, k2).unwrap();
    std::fs::write(&t.cert, c2).unwrap();
    let since = Instant::now();
    while !ready(&next) {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the rotated certificate is not in use after 10 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!ready(&old), "the old certificate is still served");
    assert_eq!(metric(&next, &base, expiry), year(2041));
    assert!(
        metric(
            &next,
            &base,
            "ferroserve_tls_reloads_total{result=\"applied\"}"
        ) >= 1.0
    );

    // A broken certificate: refused, counted, and the one in force stays.
    std::fs::write(&t.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let since = Instant::now();
    while metric(
        &next,
        &base,
        "ferroserve_tls_reloads_total{result=\"refused\"}",
    ) < 1.0
    {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the broken file was not looked at"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ready(&next));
    let logs: Vec<String> = s.stderr.try_iter().collect();
    assert!(
        logs.iter().any(|l| l.contains("TLS files not read again")),
        "{logs:?}"
    );
}

#[test]
fn bad_tls_files_are_refused_at_start_naming_the_flag() {
    let t = tls_files();
    let other_key = write(
        t.dir.path(),
        "other.key",
        &KeyPair::generate().unwrap().serialize_pem(),
    );
    let not_pem = write(t.dir.path(), "not.pem", "hello\n");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ferroserve"))
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--http-port",
                "0",
                "--grpc-port",
                "0",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cert = t.cert.to_str().unwrap();
    let key = t.key.to_str().unwrap();
    let e = run(&["--tls-cert", not_pem.to_str().unwrap(), "--tls-key", key]);
    assert!(
        e.contains("--tls-cert not.pem") && e.contains("no certificate"),
        "{e}"
    );
    let e = run(&["--tls-cert", cert, "--tls-key", not_pem.to_str().unwrap()]);
    assert!(e.contains("--tls-key not.pem"), "{e}");
    let e = run(&["--tls-cert", cert, "--tls-key", other_key.to_str().unwrap()]);
    assert!(
        e.contains("--tls-cert server.pem / --tls-key other.key"),
        "{e}"
    );
    let e = run(&["--tls-cert", cert]);
    assert!(e.contains("--tls-key"), "{e}");
    let e = run(&[
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--tls-client-ca",
        not_pem.to_str().unwrap(),
    ]);
    assert!(e.contains("--tls-client-ca not.pem"), "{e}");
}

// ---- JSON Web Tokens ----

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn status(
    c: &reqwest::blocking::Client,
    url: &str,
    token: &str,
    body: Option<&str>,
) -> (u16, String) {
    let req = match body {
        Some(b) => c
            .post(url)
            .header("content-type", "application/json")
            .body(b.to_string()),
        None => c.get(url),
    };
    let r = req.bearer_auth(token).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn json_web_tokens_of_a_secret_and_of_a_jwks_are_checked_for_time_audience_signature_and_scope() {
    use base64::Engine;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let dir = tempfile::tempdir().unwrap();
    let secret = b"a test secret of at least thirty-two bytes, HS256";
    let secret_file = dir.path().join("jwt.secret");
    std::fs::write(&secret_file, secret).unwrap();
    // An ES256 key, its public half in a JWKS file.
    let ec = KeyPair::generate().unwrap();
    let raw = ec.public_key_raw();
    assert_eq!(raw.len(), 65);
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256", "x": b64(&raw[1..33]), "y": b64(&raw[33..])}]});
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let s = Server::start(
        &[
            "--jwt-secret-file",
            secret_file.to_str().unwrap(),
            "--jwt-jwks",
            jwks_file.to_str().unwrap(),
            "--jwt-audience",
            "ferroserve-test",
            "--jwt-models-claim",
            "models",
            "--jwt-leeway-secs",
            "5",
            "--auth-open",
            "metadata",
            "--request-log",
            "off",
        ],
        &[],
    );
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let t = now();
    let claims = serde_json::json!({"sub": "alice", "aud": "ferroserve-test", "exp": t + 600, "nbf": t - 10, "scope": "openid infer", "models": ["iris"]});
    let with = |k: &str, v: serde_json::Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    let hs = |c: &serde_json::Value| {
        encode(
            &Header::new(Algorithm::HS256),
            c,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let es_key = EncodingKey::from_ec_der(&ec.serialize_der());
    let es = |c: &serde_json::Value, kid: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        encode(&h, c, &es_key).unwrap()
    };
    let iris = s.url("/v2/models/iris/infer");
    for good in [hs(&claims), es(&claims, "k1")] {
        let (code, body) = status(&c, &iris, &good, Some(IRIS));
        assert_eq!(code, 200, "{body}");
    }
    let refused = [
        (hs(&with("exp", (t - 3600).into())), 401, "expired"),
        (es(&with("exp", (t - 3600).into()), "k1"), 401, "expired"),
        (hs(&with("nbf", (t + 3600).into())), 401, "not valid yet"),
        (hs(&with("aud", "another-service".into())), 401, "aud"),
        (es(&claims, "unknown-kid"), 401, "not valid"),
        (
            encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"not the server's secret, but as long as it"),
            )
            .unwrap(),
            401,
            "not valid",
        ),
        (hs(&with("scope", "read".into())), 403, "`infer` scope"),
    ];
    for (token, want, says) in &refused {
        let (code, body) = status(&c, &iris, token, Some(IRIS));
        assert_eq!(code, *want, "{body}");
        assert!(body.contains(says), "{body}");
        assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string());
    }
    // A token limited to iris may not use another model.
    let wine = s.url("/v2/models/wine/infer");
    let (code, body) = status(&c, &wine, &hs(&claims), Some(r#"{"inputs":[]}"#));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("this token may not use this model"), "{body}");
    // An open class needs no token, but a bad one is still refused.
    assert_eq!(
        c.get(s.url("/v2/models/iris")).send().unwrap().status(),
        200
    );
    let (code, _) = status(
        &c,
        &s.url("/v2/models/iris"),
        &hs(&with("exp", (t - 3600).into())),
        None,
    );
    assert_eq!(code, 401);

    // The JWKS file rotated to another key: tokens of the old one are refused.
    let ec2 = KeyPair::generate().unwrap();
    let raw2 = ec2.public_key_raw();
    let jwks2 = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k2", "x": b64(&raw2[1..33]), "y": b64(&raw2[33..])}]});
    std::fs::write(&jwks_file, jwks2.to_string()).unwrap();
    let es2_key = EncodingKey::from_ec_der(&ec2.serialize_der());
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k2".into());
    let new_token = encode(&h, &claims, &es2_key).unwrap();
    let since = Instant::now();
    while status(&c, &iris, &new_token, Some(IRIS)).0 != 200 {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the new JWKS is not in use"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(&c, &iris, &es(&claims, "k1"), Some(IRIS)).0, 401);
    let m = c
        .get(s.url("/metrics"))
        .bearer_auth(hs(&with("scope", "read".into())))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        m.contains("ferroserve_auth_requests_total{key=\"jwt\",result=\"allowed\"}"),
        "{m}"
    );
}
