//! Large-batch benchmark: the same rows sent to the real `ferroserve` binary as v2 JSON, as
//! binary HTTP (binary tensor data extension) and as gRPC (`raw_input_contents`), in one run,
//! reported in rows/s with ratios; plus the model alone in-process (the ceiling no protocol can
//! beat).
//!
//! ```text
//! bench/protocols/run.sh [--rows 1000,100000] [--seconds 5] [--model breast_cancer]
//! ```
//!
//! The rows are the model's sample rows from `examples/models/expected.json` (real values with
//! their real number of digits), repeated. Request bodies are encoded once, before timing; each
//! timed call is one request: sending it, the server parsing, validating, computing and encoding,
//! and the client reading the whole answer and decoding the `probabilities` output into `f32`s
//! (JSON parsed with serde, binary and gRPC read as little-endian floats). Calls run one after
//! another, in rounds of one call of each kind, so noise from other work on the machine hits
//! every protocol alike (keep-alive connections); each figure is the median call. Client and
//! server share the machine. Only loopback traffic; the server is started here on port 0 and
//! stopped with SIGTERM by its PID.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use ferroserve_core::model::Batch;
use ferroserve_core::{Tensor, TensorData};
use ferroserve_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferroserve_server::grpc::proto::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use ferroserve_server::grpc::proto::ModelInferRequest;
use serde::Deserialize;

struct Args {
    bin: PathBuf,
    rows: Vec<usize>,
    seconds: f64,
    model: String,
    max_calls: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut a = Args {
        bin: root.join("target/release/ferroserve"),
        rows: vec![1_000, 100_000],
        seconds: 5.0,
        model: "breast_cancer".into(),
        max_calls: 2_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--bin" => a.bin = PathBuf::from(v()?),
            "--rows" => {
                a.rows = v()?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--seconds" => a.seconds = v()?.parse()?,
            "--model" => a.model = v()?,
            "--max-calls" => a.max_calls = v()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// The server process; stopped with SIGTERM when dropped.
struct Server {
    child: Child,
    http: String,
    grpc: String,
}

impl Server {
    fn start(bin: &Path) -> anyhow::Result<Server> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--http-port",
                "0",
                "--grpc-port",
                "0",
            ])
            .args(["--request-log", "off", "--log", "warn"])
            .env_remove("MODEL_FILE")
            .env_remove("FERROSERVE_REPOSITORY")
            .current_dir(&root)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let out = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(out).lines();
        let (mut http, mut grpc) = (None, None);
        while http.is_none() || grpc.is_none() {
            let line = lines.next().context("server exited before listening")??;
            if let Some(a) = line.strip_prefix("ferroserve: HTTP listening on ") {
                http = Some(format!("http://{a}"));
            }
            if let Some(a) = line.strip_prefix("ferroserve: gRPC listening on ") {
                grpc = Some(format!("http://{a}"));
            }
        }
        Ok(Server {
            child,
            http: http.unwrap_or_default(),
            grpc: grpc.unwrap_or_default(),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The model's sample rows, repeated to `n` rows.
fn rows(model: &str, n: usize) -> anyhow::Result<(Vec<f32>, usize)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("examples/models/expected.json"))?)?;
    let sample = exp[model]["rows"]
        .as_array()
        .with_context(|| format!("no sample rows for {model} in expected.json"))?;
    let f = sample[0].as_array().map_or(0, |r| r.len());
    let flat: Vec<f32> = sample
        .iter()
        .flat_map(|r| r.as_array().into_iter().flatten())
        .map(|x| x.as_f64().unwrap_or(0.0) as f32)
        .collect();
    Ok((flat.iter().copied().cycle().take(n * f).collect(), f))
}

#[derive(serde::Serialize)]
struct JsonRequest<'a> {
    inputs: [JsonInput<'a>; 1],
    outputs: [JsonOutputName; 1],
}

#[derive(serde::Serialize)]
struct JsonInput<'a> {
    name: &'static str,
    shape: [usize; 2],
    datatype: &'static str,
    data: &'a [f32],
}

#[derive(serde::Serialize)]
struct JsonOutputName {
    name: &'static str,
}

#[derive(Deserialize)]
struct JsonAnswer {
    outputs: Vec<JsonOutput>,
}

#[derive(Deserialize)]
struct JsonOutput {
    #[serde(default)]
    data: Option<Vec<f32>>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

fn le_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

type Call<'a> = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = anyhow::Result<usize>> + 'a>> + 'a>;

fn call<'a>(
    f: impl FnMut() -> Pin<Box<dyn Future<Output = anyhow::Result<usize>> + 'a>> + 'a,
) -> Call<'a> {
    Box::new(f)
}

/// Runs the calls in rounds, one of each per round, for `seconds` per call kind in total (at
/// least 3 rounds, at most `max`), so that noise from other work on the machine hits every
/// protocol alike; returns each one's median call and count.
async fn interleaved(
    seconds: f64,
    max: usize,
    calls: &mut [(&'static str, usize, Call<'_>)],
) -> anyhow::Result<Vec<(Duration, usize)>> {
    for (_, _, f) in calls.iter_mut() {
        f().await?; // warm-up
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); calls.len()];
    let budget = seconds * calls.len() as f64;
    let started = Instant::now();
    while times[0].len() < 3 || (started.elapsed().as_secs_f64() < budget && times[0].len() < max) {
        for (i, (_, _, f)) in calls.iter_mut().enumerate() {
            let t = Instant::now();
            f().await?;
            times[i].push(t.elapsed());
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort();
            (t[t.len() / 2], t.len())
        })
        .collect())
}

struct Cell {
    rows: usize,
    what: &'static str,
    request_bytes: usize,
    median: Duration,
    calls: usize,
}

impl Cell {
    fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.median.as_secs_f64()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let server = Server::start(&args.bin)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    // HTTP/2 flow-control windows as grpcio's BDP probing grows them for large messages
    // (tonic's client otherwise keeps h2's 64 KiB default).
    let channel = tonic::transport::Endpoint::from_shared(server.grpc.clone())?
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .tcp_nodelay(true)
        .connect()
        .await?;
    let grpc = GrpcInferenceServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let url = format!("{}/v2/models/{}/infer", server.http, args.model);
    // The model in-process: the ceiling.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let found =
        ferroserve_runtime::scan_repository(&root.join("examples/models"), &Default::default())
            .map_err(anyhow::Error::msg)?;
    let runtime = ferroserve_runtime::Runtime::start(found, &Default::default());
    let served = runtime
        .version(&args.model, None)
        .map_err(anyhow::Error::msg)?;

    let mut cells = Vec::new();
    for &n in &args.rows {
        let (x, f) = rows(&args.model, n)?;
        let shape = [n, f];
        let mut calls: Vec<(&'static str, usize, Call<'_>)> = Vec::new();

        let batch = Batch {
            inputs: vec![Tensor::new(
                "input",
                vec![n as i64, f as i64],
                TensorData::Fp32(x.clone()),
            )],
            rows: n,
            outputs: vec!["probabilities".into()],
        };
        let mut model = served
            .model
            .clone()
            .instance()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        calls.push((
            "model alone, in-process (ceiling)",
            0,
            call(move || {
                let out = model.run(&batch);
                Box::pin(async move { Ok(out.map_err(|e| anyhow::anyhow!("{e}"))?.len()) })
            }),
        ));

        // Serialized from the f32 values (shortest form: `0.07871`, not the f64 digits of the
        // same float), the smallest JSON a client can send.
        let json_body = Bytes::from(serde_json::to_vec(&JsonRequest {
            inputs: [JsonInput {
                name: "input",
                shape,
                datatype: "FP32",
                data: &x,
            }],
            outputs: [JsonOutputName {
                name: "probabilities",
            }],
        })?);
        let (http1, url1) = (http.clone(), url.clone());
        calls.push((
            "v2 JSON (HTTP)",
            json_body.len(),
            call(move || {
                let req = http1
                    .post(&url1)
                    .header("Content-Type", "application/json")
                    .body(json_body.clone());
                Box::pin(async move {
                    let r = req.send().await?.error_for_status()?.bytes().await?;
                    let a: JsonAnswer = serde_json::from_slice(&r)?;
                    let p = a.outputs[0].data.as_ref().context("no data")?;
                    if p.len() != 2 * n {
                        bail!("{} values for {n} rows", p.len());
                    }
                    Ok(p.len())
                })
            }),
        ));

        let mut bin_body = serde_json::to_vec(&serde_json::json!({
            "inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                        "parameters": {"binary_data_size": n * f * 4}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}],
        }))?;
        let header_len = bin_body.len();
        bin_body.extend(x.iter().flat_map(|v| v.to_le_bytes()));
        let bin_body = Bytes::from(bin_body);
        let (http2, url2) = (http.clone(), url.clone());
        calls.push((
            "binary tensor data (HTTP)",
            bin_body.len(),
            call(move || {
                let req = http2
                    .post(&url2)
                    .header("Content-Type", "application/octet-stream")
                    .header("Inference-Header-Content-Length", header_len)
                    .body(bin_body.clone());
                Box::pin(async move {
                    let r = req.send().await?.error_for_status()?;
                    let hl: usize = r
                        .headers()
                        .get("inference-header-content-length")
                        .context("no Inference-Header-Content-Length")?
                        .to_str()?
                        .parse()?;
                    let body = r.bytes().await?;
                    let head: JsonAnswer = serde_json::from_slice(&body[..hl])?;
                    let size = head.outputs[0]
                        .parameters
                        .as_ref()
                        .and_then(|p| p.get("binary_data_size"))
                        .and_then(|v| v.as_u64())
                        .context("no binary_data_size")? as usize;
                    let p = le_f32(&body[hl..hl + size]);
                    if p.len() != 2 * n {
                        bail!("{} values for {n} rows", p.len());
                    }
                    Ok(p.len())
                })
            }),
        ));

        let raw = Bytes::from(x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        let grpc_req = ModelInferRequest {
            model_name: args.model.clone(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![n as i64, f as i64],
                ..Default::default()
            }],
            outputs: vec![InferRequestedOutputTensor {
                name: "probabilities".into(),
                ..Default::default()
            }],
            raw_input_contents: vec![raw.clone()],
            ..Default::default()
        };
        let grpc_bytes = raw.len() + 64;
        let grpc1 = grpc.clone();
        calls.push((
            "gRPC, raw_input_contents",
            grpc_bytes,
            call(move || {
                let mut c = grpc1.clone();
                let req = grpc_req.clone();
                Box::pin(async move {
                    let r = c.model_infer(req).await?.into_inner();
                    let p = le_f32(r.raw_output_contents.first().context("no raw output")?);
                    if p.len() != 2 * n {
                        bail!("{} values for {n} rows", p.len());
                    }
                    Ok(p.len())
                })
            }),
        ));
        let results = interleaved(args.seconds, args.max_calls, &mut calls).await?;
        for ((what, request_bytes, _), (median, count)) in calls.iter().zip(results) {
            cells.push(Cell {
                rows: n,
                what,
                request_bytes: *request_bytes,
                median,
                calls: count,
            });
        }
    }
    drop(server);

    println!("| rows per request | protocol | request size | median call | rows/s | vs JSON | share of the ceiling |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for n in &args.rows {
        let of_n: Vec<&Cell> = cells.iter().filter(|c| c.rows == *n).collect();
        let json = of_n
            .iter()
            .find(|c| c.what.starts_with("v2 JSON"))
            .map(|c| c.rows_per_s());
        let ceiling = of_n
            .iter()
            .find(|c| c.what.starts_with("model alone"))
            .map(|c| c.rows_per_s());
        for c in of_n {
            let size = if c.request_bytes == 0 {
                "—".to_string()
            } else {
                format!("{:.2} MB", c.request_bytes as f64 / 1e6)
            };
            let ratio = |base: Option<f64>| {
                base.map_or("—".into(), |b| format!("{:.2}×", c.rows_per_s() / b))
            };
            println!(
                "| {} | {} | {} | {:.2} ms ({} calls) | {:.0} | {} | {} |",
                n,
                c.what,
                size,
                c.median.as_secs_f64() * 1e3,
                c.calls,
                c.rows_per_s(),
                if c.what.starts_with("model alone") {
                    "—".into()
                } else {
                    ratio(json)
                },
                ratio(ceiling),
            );
        }
    }
    Ok(())
}
