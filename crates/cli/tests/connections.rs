//! Slow, silent, stalled and too many connections against the real binary: each timeout closes
//! what it should, a slowloris run does not stop normal requests, SIGTERM with stalled clients
//! exits by the drain deadline, stalled uploads hold bounded memory, SIGHUP does not kill.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_string()
}

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(addr(s)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c
}

/// Reads until the server closes the connection; returns how long that took and what came.
fn until_closed(c: &mut TcpStream) -> (Duration, Vec<u8>) {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return (t.elapsed(), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        assert!(t.elapsed() < Duration::from_secs(20), "not closed in 20 s");
    }
}

fn metric(s: &Server, name_and_labels: &str) -> f64 {
    let text = reqwest::blocking::get(s.url("/metrics"))
        .and_then(|r| r.text())
        .expect("GET /metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name_and_labels} in /metrics"))
}

fn limit_count(s: &Server, front: &str, limit: &str) -> f64 {
    metric(
        s,
        &format!("ferroserve_connection_limits_total{{front=\"{front}\",limit=\"{limit}\"}}"),
    )
}

fn live(s: &Server) -> u16 {
    reqwest::blocking::Client::new()
        .get(s.url("/v2/health/live"))
        .timeout(Duration::from_secs(5))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

const IRIS: &str =
    r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;

#[test]
fn each_timeout_closes_the_connections_it_is_for() {
    let s = Server::start(
        &[
            "--header-read-timeout",
            "0.5",
            "--idle-timeout",
            "1",
            "--body-read-timeout",
            "0.5",
        ],
        &[],
    );
    // Silent: closed at the header timeout, with nothing said.
    let mut c = connect(&s);
    let (t, got) = until_closed(&mut c);
    assert!(
        t >= Duration::from_millis(400) && t < Duration::from_secs(3),
        "silent connection closed after {t:?}"
    );
    assert!(got.is_empty());

    // Half a head, then nothing: closed at the header timeout.
    let mut c = connect(&s);
    c.write_all(b"GET /v2 HTTP/1.1\r\nHost: x\r\n").unwrap();
    let (t, _) = until_closed(&mut c);
    assert!(t < Duration::from_secs(3), "slow head closed after {t:?}");

    // One request answered, then idle: closed at the idle timeout, not the header timeout.
    let mut c = connect(&s);
    c.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (t, got) = until_closed(&mut c);
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        t >= Duration::from_millis(900) && t < Duration::from_secs(4),
        "idle connection closed after {t:?}"
    );

    // A body that stops arriving: 408, in the v2 error shape, naming the flag.
    let mut c = connect(&s);
    c.write_all(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"inputs\":")
        .unwrap();
    let (t, got) = until_closed(&mut c);
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--body-read-timeout"),
        "{body}"
    );
    assert!(t < Duration::from_secs(4), "{t:?}");

    // Each counted, and the server still serves.
    for limit in ["header_timeout", "idle_timeout", "body_timeout"] {
        assert!(limit_count(&s, "http", limit) >= 1.0, "{limit} not counted");
    }
    let r = reqwest::blocking::Client::new()
        .post(s.url("/v2/models/iris/infer"))
        .body(IRIS)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Counted again as a timeout on the request statistics? No: the body never reached a
    // model's statistics as a success.
    let warned: Vec<String> = s.stderr.try_iter().collect();
    assert!(
        warned.iter().any(|l| l.contains("--body-read-timeout")),
        "no warning logged:\n{}",
        warned.join("\n")
    );
}

/// 500 connections trickling a head byte by byte, with the cap at 100: new clients take the
/// place of the slowest, and every normal request is answered.
#[test]
fn a_slowloris_run_does_not_stop_normal_requests() {
    let s = Server::start(&["--max-connections", "100"], &[]);
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = Vec::new();
    let mut answered = 0;
    for round in 0..10 {
        // 50 more slow clients each round, each sending one more byte of a head.
        for _ in 0..50 {
            if let Ok(mut c) = TcpStream::connect(addr(&s)) {
                let _ = c.write_all(b"GET /v2 HTTP/1.1\r\nX-");
                slow.push(c);
            }
        }
        for c in slow.iter_mut() {
            let _ = c.write_all(b"a");
        }
        for _ in 0..5 {
            assert_eq!(live(&s), 200, "round {round}: a normal request failed");
            answered += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    assert_eq!(answered, 50);
    assert!(metric(&s, "ferroserve_connections_open{front=\"http\"}") <= 164.0);
    assert!(limit_count(&s, "http", "evicted") >= 300.0);
    drop(slow);
}

/// Without a cap in the way, the header timeout alone frees what slow clients hold.
#[test]
fn slow_heads_are_closed_by_the_header_timeout_while_serving() {
    let s = Server::start(&["--header-read-timeout", "1"], &[]);
    let mut slow: Vec<TcpStream> = (0..500)
        .filter_map(|_| TcpStream::connect(addr(&s)).ok())
        .collect();
    assert_eq!(slow.len(), 500);
    for c in slow.iter_mut() {
        let _ = c.write_all(b"POST /v2/models/iris/infer HTTP/1.1\r\n");
    }
    for _ in 0..10 {
        assert_eq!(live(&s), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&s, "ferroserve_connections_open{front=\"http\"}") > 1.0 {
        assert!(Instant::now() < deadline, "slow connections still open");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(limit_count(&s, "http", "header_timeout") >= 500.0);
}

fn sigterm_and_time(s: &mut Server) -> (Duration, std::process::ExitStatus) {
    let pid = s.child.id().to_string();
    let t = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    loop {
        if let Ok(Some(st)) = s.child.try_wait() {
            return (t.elapsed(), st);
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no exit 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigterm_with_stalled_clients_exits_by_the_drain_deadline() {
    let mut s = Server::start(&["--drain-timeout", "1", "--body-read-timeout", "60"], &[]);
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut c = connect(&s);
        c.write_all(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\":")
            .unwrap();
        held.push(c);
    }
    for _ in 0..5 {
        held.push(connect(&s));
    }
    // The uploads are in flight before the signal.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&s, "ferroserve_connections_open{front=\"http\"}") < 11.0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (t, st) = sigterm_and_time(&mut s);
    assert!(st.success(), "{st}");
    assert!(
        t >= Duration::from_millis(900) && t < Duration::from_millis(2500),
        "exited {t:?} after SIGTERM with a 1 s drain deadline"
    );
    let log: Vec<String> = s.stderr.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("--drain-timeout")),
        "{}",
        log.join("\n")
    );
}

#[test]
fn an_idle_server_exits_promptly_on_sigterm() {
    let mut s = Server::start(&[], &[]);
    assert_eq!(live(&s), 200);
    let (t, st) = sigterm_and_time(&mut s);
    assert!(st.success(), "{st}");
    assert!(t < Duration::from_millis(700), "idle exit took {t:?}");
}

#[test]
fn a_request_in_flight_is_answered_during_the_drain() {
    let mut s = Server::start(&["--drain-timeout", "5"], &[]);
    // A whole head and half a body; the rest is sent after SIGTERM.
    let mut c = connect(&s);
    let body = IRIS.as_bytes();
    let (first, rest) = body.split_at(20);
    write!(
        c,
        "POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    c.write_all(first).unwrap();
    // In flight: this request and the scrape asking.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&s, "ferroserve_requests_in_flight{front=\"http\"}") < 2.0 {
        assert!(Instant::now() < deadline, "the request never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = s.child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    c.write_all(rest).unwrap();
    let (_, got) = until_closed(&mut c);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (t, st) = sigterm_and_time(&mut s);
    assert!(st.success() && t < Duration::from_secs(2), "{st} {t:?}");
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// 16 clients each stalling after 50 MB of a 63 MB upload: what they can hold is the
/// buffered-bytes cap, not 16 × 50 MB; those past it are answered 503 at once.
#[test]
fn stalled_uploads_hold_bounded_memory() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let s = Server::start(
        &[
            "--max-buffered-bytes",
            "134217728",
            "--body-read-timeout",
            "30",
        ],
        &[],
    );
    let pid = s.child.id();
    let before = rss_mb(pid);
    let chunk = vec![b' '; 1 << 20];
    let mut refused = 0;
    let mut stalled = Vec::new();
    for i in 0..16 {
        let mut c = connect(&s);
        // Half with a declared length, half chunked (no length to check up front).
        let chunked = i % 2 == 1;
        if chunked {
            c.write_all(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap();
        } else {
            c.write_all(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 66060288\r\n\r\n")
                .unwrap();
        }
        let mut sent_ok = true;
        for _ in 0..50 {
            let w = if chunked {
                c.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .and_then(|_| c.write_all(&chunk))
                    .and_then(|_| c.write_all(b"\r\n"))
            } else {
                c.write_all(&chunk)
            };
            if w.is_err() {
                sent_ok = false;
                break;
            }
        }
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 512];
        match c.read(&mut buf) {
            Ok(n) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 503"), "{text}");
                assert!(text.contains("--max-buffered-bytes"), "{text}");
                refused += 1;
            }
            _ if !sent_ok => refused += 1,
            _ => stalled.push(c),
        }
    }
    let held = metric(&s, "ferroserve_request_body_buffered_bytes");
    assert!(held <= 134217728.0, "{held} bytes buffered");
    let after = rss_mb(pid);
    eprintln!(
        "RSS {before:.0} MB -> {after:.0} MB; {refused} of 16 refused; {held} bytes buffered"
    );
    assert!(
        after - before < 400.0,
        "RSS grew from {before:.0} MB to {after:.0} MB under stalled uploads"
    );
    assert!(refused >= 12, "only {refused} of 16 refused");
    assert!(limit_count(&s, "http", "max_buffered_bytes") >= refused as f64);
    assert_eq!(live(&s), 200);
    drop(stalled);
}

#[test]
fn sighup_is_ignored() {
    let s = Server::start(&[], &[]);
    let pid = s.child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(live(&s), 200);
    let log: Vec<String> = s.stderr.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("SIGHUP ignored")),
        "{}",
        log.join("\n")
    );
}

#[test]
fn the_default_request_log_writes_no_line_per_request() {
    let quiet = Server::start(&[], &[]);
    let loud = Server::start(&["--request-log", "info"], &[]);
    for s in [&quiet, &loud] {
        for _ in 0..20 {
            assert_eq!(live(s), 200);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let lines = |s: &Server| {
        s.stderr
            .try_iter()
            .filter(|l| l.contains("ferroserve::request"))
            .count()
    };
    assert_eq!(lines(&quiet), 0);
    assert!(lines(&loud) >= 20);
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A 60 MB JSON body with far more rows than the model takes is refused (413) once its data
/// passes the limit: memory peaks at about the body, not at the body plus every value parsed.
#[test]
fn data_over_the_row_limit_is_refused_without_parsing_all_of_it() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let s = Server::start(&[], &[]);
    let pid = s.child.id();
    assert_eq!(live(&s), 200);
    let before = peak_rss_mb(pid);
    let rows = 3_000_000;
    let mut body = String::with_capacity(64 << 20);
    body.push_str(&format!(
        r#"{{"inputs":[{{"name":"input","shape":[{rows},4],"datatype":"FP32","data":["#
    ));
    for i in 0..rows {
        if i > 0 {
            body.push(',');
        }
        body.push_str("5.1,3.5,1.4,0.2");
    }
    body.push_str("]}]}");
    let mb = body.len() as f64 / 1048576.0;
    let r = reqwest::blocking::Client::new()
        .post(s.url("/v2/models/iris/infer"))
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    let e: Value = r.json().unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("max_request_rows"),
        "{e}"
    );
    let grew = peak_rss_mb(pid) - before;
    eprintln!("a {mb:.0} MB body over the row limit: peak RSS grew by {grew:.0} MB");
    assert!(
        grew < mb * 2.0,
        "peak RSS grew by {grew:.0} MB for a {mb:.0} MB body"
    );
    assert_eq!(live(&s), 200);
}

/// A client that sends requests and never reads the answers: once the socket's buffers are
/// full the server's writes stall, and the connection is closed after the idle timeout.
#[test]
fn a_client_that_stops_reading_is_closed() {
    let s = Server::start(&["--idle-timeout", "1"], &[]);
    let mut c = connect(&s);
    c.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    // /openapi.json is about 170 kB: a few hundred unread fill any socket buffer.
    let burst = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100);
    for _ in 0..20 {
        if c.write_all(&burst).is_err() || limit_count(&s, "http", "write_stalled") >= 1.0 {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while limit_count(&s, "http", "write_stalled") < 1.0 {
        assert!(Instant::now() < deadline, "not closed for a stalled write");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("closed for a stalled write after {:?}", started.elapsed());
    assert_eq!(live(&s), 200);
}
