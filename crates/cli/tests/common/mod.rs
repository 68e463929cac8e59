//! Starts the real `ferroserve` binary on 127.0.0.1 port 0 and stops it (by its PID) when
//! dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn examples() -> PathBuf {
    repo_root().join("examples/models")
}

pub struct Server {
    pub child: Child,
    pub base: String,
    /// `http://ADDR` of the gRPC port.
    pub grpc: String,
    pub stderr: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `ferroserve serve <args>`, waits (at most 20 s) for its two listening lines, then
    /// (at most 30 s) for the models loading at start to load or fail.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let s = Server::start_inner(args, envs);
        s.wait_loaded();
        s
    }

    fn start_inner(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut cmd = ferroserve();
        cmd.arg("serve")
            .args([
                "--host",
                "127.0.0.1",
                "--http-port",
                "0",
                "--grpc-port",
                "0",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .current_dir(repo_root());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start ferroserve");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("ferroserve: HTTP listening on ") {
                    let _ = tx.send(("http", addr.to_string()));
                }
                if let Some(addr) = line.strip_prefix("ferroserve: gRPC listening on ") {
                    let _ = tx.send(("grpc", addr.to_string()));
                }
            }
        });
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        let (mut http, mut grpc) = (None, None);
        while http.is_none() || grpc.is_none() {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(("http", a)) => http = Some(a),
                Ok((_, a)) => grpc = Some(a),
                Err(_) => {
                    let _ = child.kill();
                    let logs: Vec<String> = erx.try_iter().collect();
                    panic!("ferroserve did not start:\n{}", logs.join("\n"));
                }
            }
        }
        Server {
            child,
            base: format!("http://{}", http.unwrap_or_default()),
            grpc: format!("http://{}", grpc.unwrap_or_default()),
            stderr: erx,
        }
    }

    /// Starts like [`Server::start`] but returns once the ports are bound, while the models
    /// may still be loading.
    pub fn start_unloaded(args: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::start_inner(args, envs)
    }

    /// Waits (at most 30 s) until no model of the repository index is LOADING: what a client
    /// of a server that loads its models in the background waits for.
    pub fn wait_loaded(&self) {
        let addr = self.base.trim_start_matches("http://").to_string();
        let t = std::time::Instant::now();
        loop {
            match index_text(&addr) {
                Some(text) if !text.contains("\"LOADING\"") => return,
                _ if t.elapsed() > Duration::from_secs(30) => {
                    let logs: Vec<String> = self.stderr.try_iter().collect();
                    panic!("models still loading after 30 s:\n{}", logs.join("\n"));
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Kills the server with SIGKILL (`kill -9`: no shutdown of any kind) and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (at most 10 s) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("ferroserve did not stop within 10 s of SIGTERM");
    }
}

/// The body of `POST /v2/repository/index` (plain HTTP/1.1 over a socket: callable from sync
/// and async tests alike), or `None` when it cannot be had.
fn index_text(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "POST /v2/repository/index HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    c.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    c.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `ferroserve` binary under test, without what a developer's shell may set that changes
/// how it answers: every `FERROSERVE_*` variable (each flag has one) and `MODEL_FILE`.
/// `FERROSERVE_PYTHON`, which names the interpreter and changes no answer, stays.
pub fn ferroserve() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferroserve"));
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if (k.starts_with("FERROSERVE_") && k != "FERROSERVE_PYTHON") || k == "MODEL_FILE" {
            cmd.env_remove(&key);
        }
    }
    cmd
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// examples/models/expected.json: the training libraries' answers.
pub fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(examples().join("expected.json")).unwrap()).unwrap()
}

/// A file of examples/requests.
pub fn request_file(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("examples/requests").join(name)).unwrap()
}

/// A multipart/form-data body with one file field; returns (content type, body).
pub fn multipart(field: &str, filename: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "ferroserve-test-boundary-7d1f";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// What the library answered for `output` (`label`, `probabilities`, `value`) in an entry of
/// expected.json (a model's sample rows, or one request file), as numbers.
pub fn library_numbers(want: &Value, output: &str) -> Vec<f64> {
    let v = &want[output];
    assert!(!v.is_null(), "expected.json has no {output:?} in {want}");
    ferroserve_testkit::numbers(v)
}

/// The class names the library answered in an entry of expected.json.
pub fn library_names(want: &Value) -> Vec<String> {
    let v = &want["label_names"];
    assert!(!v.is_null(), "expected.json has no label_names in {want}");
    ferroserve_testkit::strings(v)
}

/// Compares every output of a v2 JSON answer with the library's answers in `want` (an entry
/// of expected.json): `label` (class names when BYTES, class numbers otherwise), `probabilities`
/// and `value`, values and shapes (`[rows]` / `[rows, classes]`). An output the library has no
/// answer for fails; so does an answer with no output.
#[track_caller]
pub fn assert_outputs_match(what: &str, answer: &Value, want: &Value, tol: f64) {
    use ferroserve_testkit::{assert_close, assert_same, numbers, strings, Tol};
    let outputs = answer["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no outputs in {answer}"));
    assert!(!outputs.is_empty(), "{what}: no outputs in {answer}");
    for out in outputs {
        let name = out["name"].as_str().unwrap_or_default();
        let what = format!("{what}, output {name}");
        let shape: Vec<i64> = out["shape"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no shape in {out}"))
            .iter()
            .map(|d| d.as_i64().unwrap())
            .collect();
        let rows = match name {
            "label" if out["datatype"] == "BYTES" => {
                let names = library_names(want);
                assert_same(&what, &strings(&out["data"]), &names);
                names.len()
            }
            "label" | "probabilities" | "value" => {
                let tol = if name == "label" {
                    Tol::EXACT
                } else {
                    Tol::abs(tol)
                };
                let lib = library_numbers(want, name);
                assert_close(&what, &numbers(&out["data"]), &lib, tol);
                match &want[name] {
                    Value::Array(r) if r.first().is_some_and(Value::is_array) => r.len(),
                    _ => lib.len(),
                }
            }
            _ => panic!("{what}: the library has no answer to compare with"),
        };
        assert_eq!(
            shape.first().copied(),
            Some(rows as i64),
            "{what}: shape {shape:?} for {rows} rows"
        );
        assert_eq!(
            shape.iter().product::<i64>() as usize,
            ferroserve_testkit::numbers_or_strings_len(&out["data"]),
            "{what}: shape {shape:?} does not hold its data"
        );
    }
}

/// A `redis-server` of this test's own on a free loopback port, stopped (by its PID) when
/// dropped.
pub struct Redis {
    child: std::process::Child,
    pub port: u16,
}

impl Redis {
    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn start(port: u16) -> Redis {
        Redis::start_with(port, &["--save", "", "--appendonly", "no"])
    }

    /// A Redis that keeps its data in `dir` (every write synced to its append-only file), so
    /// that one killed and started again has everything it acknowledged.
    pub fn start_persistent(port: u16, dir: &Path) -> Redis {
        let dir = dir.to_str().unwrap();
        let args = [
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ];
        Redis::start_with(port, &[&args[..], &["--dir", dir]].concat())
    }

    pub fn start_with(port: u16, args: &[&str]) -> Redis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        let r = Redis { child, port };
        for _ in 0..100 {
            if r.cli(&["PING"]).trim() == "PONG" {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not answer PING within 5 s");
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
