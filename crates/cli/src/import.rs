//! `ferroserve import MODEL --out REPO/NAME`: turns a pickle, a booster file or an ONNX graph
//! into a served model, and proves it answers what the original library answers.
//!
//! The conversion runs a Python helper shipped inside the binary (`python/ferroserve_import.py`,
//! written to a temporary folder; `FERROSERVE_IMPORT_HELPER` names another copy). It writes the
//! artifact, a `model.toml` and sample rows with the original library's answers into a staging
//! folder. The model is then loaded in-process through the runtime, exactly as `serve` would load
//! it, and run on the sample rows; only when every answer is within tolerance are the files moved
//! into the repository. Otherwise nothing is written and the largest difference is shown.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use ferroserve_core::model::Batch;
use ferroserve_core::{DataType, LoadedModel, ModelConfig, Tensor, TensorData};
use serde_json::Value;

/// The helper, embedded so that the binary works wherever it is copied.
const HELPER: &str = include_str!("../../../python/ferroserve_import.py");

/// What to install for every kind of input.
const PIP_ALL: &str =
    "pip install numpy scikit-learn skl2onnx onnx onnxruntime onnxmltools xgboost lightgbm joblib pandas";

/// `ferroserve import`: convert a model file into a repository entry, verified.
/// `ferroserve import --help`.
pub const LONG_ABOUT: &str = "Imports a model file into a model repository: a scikit-learn \
pickle or joblib file (Pipelines included), a pickled XGBoost or LightGBM scikit-learn wrapper or \
Booster, a native XGBoost (.json, .ubj) or LightGBM (.txt) booster file, or an ONNX graph. Writes \
the best artifact (XGBoost JSON or LightGBM text where the native tree engine applies, else ONNX \
through skl2onnx / onnxmltools) and a model.toml with feature names and class labels, then checks \
that the model, loaded as `serve` loads it, answers what the original library answers on sample \
rows; if it does not, nothing is written and the largest difference is shown.\n\n\
With --python a pickle is not converted: its version folder gets the pickle itself and a \
model.toml for the Python backend (backend = \"python\", ferroserve:PicklePredictor), for \
models the converter cannot convert (custom transformers, estimators skl2onnx does not know).\n\n\
SECURITY: loading a pickle or joblib file runs code stored in it. Import only files you trust. \
The importer opens only the file you name, in a separate Python process.\n\n\
Needs python3 with the libraries of the model's kind (numpy, scikit-learn, skl2onnx, onnx, \
onnxruntime, onnxmltools, xgboost, lightgbm, joblib, pandas); it says which are missing.";

/// `ferroserve import`: convert a model file into a repository entry, verified.
#[derive(Args)]
pub struct ImportArgs {
    /// The model file: .pkl/.pickle/.joblib/.sav, XGBoost .json/.ubj, LightGBM .txt, or .onnx.
    /// Pickles run code when loaded: only import files you trust.
    model: PathBuf,
    /// The model's folder in a repository, e.g. models/iris (its name is the model's name).
    #[arg(long)]
    out: PathBuf,
    /// Version number to write (default: one more than the highest version already there).
    #[arg(long)]
    version: Option<u64>,
    /// Sample rows to verify with.
    #[arg(long, default_value_t = 64)]
    rows: usize,
    /// Python interpreter to run the helper with.
    #[arg(long, env = "FERROSERVE_PYTHON", default_value = "python3")]
    python_interpreter: String,
    /// Do not convert: write a version folder served by the Python backend (model.toml
    /// `backend = "python"`, the pickle copied in), for pickles the converter cannot convert
    /// (custom transformers, estimators skl2onnx does not know).
    #[arg(long)]
    python: bool,
    /// Replace an existing version folder.
    #[arg(long)]
    force: bool,
}

/// A temporary folder removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh folder named `<prefix>-<pid>-<nanos>` under `parent`.
    pub fn new_in(parent: &Path, prefix: &str) -> std::io::Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = parent.join(format!("{prefix}-{}-{nanos}-{seq}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    fn new() -> anyhow::Result<TempDir> {
        let parent = std::env::temp_dir();
        TempDir::new_in(&parent, "ferroserve-import")
            .with_context(|| format!("creating a folder in {}", parent.display()))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn next_version(out: &Path) -> u64 {
    std::fs::read_dir(out)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
        + 1
}

/// Whether `file` is a pickle (by its extension, as the repository tells them).
pub fn is_pickle(file: &Path) -> bool {
    file.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ferroserve_runtime::repository::PICKLE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
    })
}

/// How the helper is run.
#[derive(Debug, Clone)]
pub struct Helper {
    /// The Python interpreter.
    pub python: String,
    /// Sample rows to verify with.
    pub rows: usize,
    /// How long one run may take before it is killed (a pickle whose code never returns).
    pub timeout: Duration,
}

/// The default of [`Helper::timeout`].
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(600);

/// What a finished run gave: its exit code (`None` when killed by a signal), its standard
/// output and standard error.
type Finished = (Option<i32>, Vec<u8>, Vec<u8>);

/// Runs `cmd` to its end or for at most `timeout` (then kills it), or `Err` when it did not
/// start or ran out of time.
fn output_within(mut cmd: Command, timeout: Duration) -> Result<Finished, String> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {} s", timeout.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    Ok((
        status.code(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    ))
}

impl Helper {
    /// The helper's source: the embedded copy, or the file `FERROSERVE_IMPORT_HELPER` names.
    fn source() -> anyhow::Result<(Option<PathBuf>, Vec<u8>)> {
        match std::env::var_os("FERROSERVE_IMPORT_HELPER") {
            Some(p) => {
                let p = PathBuf::from(p);
                let text = std::fs::read(&p).with_context(|| {
                    format!("reading FERROSERVE_IMPORT_HELPER ({})", p.display())
                })?;
                Ok((Some(p), text))
            }
            None => Ok((None, HELPER.as_bytes().to_vec())),
        }
    }

    /// SHA-256 (hex) of the helper that converts: a changed converter makes a new cache key.
    pub fn hash() -> anyhow::Result<String> {
        use sha2::Digest;
        let (_, text) = Helper::source()?;
        Ok(crate::pickles::hex(&sha2::Sha256::digest(&text)))
    }

    /// Runs the helper with `args`; its answer (the last JSON line of its standard output), or
    /// why it failed.
    fn run(&self, model: &Path, args: &[&std::ffi::OsStr]) -> Result<Value, ConvertError> {
        match Command::new(&self.python).arg("--version").output() {
            Ok(o) if o.status.success() => {}
            _ => {
                return Err(ConvertError::NoPython {
                    python: self.python.clone(),
                })
            }
        }
        let failed = |reason: &str, detail: String| ConvertError::Failed {
            reason: reason.to_string(),
            detail,
        };
        let tmp = TempDir::new()
            .map_err(|e| failed("cannot create a temporary folder", e.to_string()))?;
        let (path, text) =
            Helper::source().map_err(|e| failed("cannot read the helper", e.to_string()))?;
        let helper = match path {
            Some(p) => p,
            None => {
                let p = tmp.0.join("ferroserve_import.py");
                std::fs::write(&p, text).map_err(|e| {
                    failed("cannot write the helper", format!("{}: {e}", p.display()))
                })?;
                p
            }
        };
        let mut cmd = Command::new(&self.python);
        cmd.arg(&helper).arg("--model").arg(model).args(args);
        let (code, stdout, stderr) = output_within(cmd, self.timeout).map_err(|e| {
            failed(
                &format!(
                    "the import helper did not run to its end ({})",
                    if e.starts_with("did not finish") {
                        e.as_str()
                    } else {
                        "it did not start"
                    }
                ),
                format!("{}: {e}", self.python),
            )
        })?;
        let stdout = String::from_utf8_lossy(&stdout);
        let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
        let answer: Option<Value> = stdout.lines().rev().find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
        });
        if code == Some(0) {
            return answer.ok_or_else(|| {
                failed(
                    "the import helper gave no answer",
                    format!("its output:\n{stdout}{stderr}"),
                )
            });
        }
        let error = answer.as_ref().map(|a| &a["error"]);
        let message = error
            .and_then(|e| e["message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| "the import helper failed; the server log has the details".into());
        let n_features = error
            .and_then(|e| e["n_features"].as_u64())
            .map(|n| n as usize);
        Err(match HelperExit::from_code(code) {
            HelperExit::Unknown => ConvertError::Unknown(message),
            HelperExit::Missing => ConvertError::Missing(message),
            HelperExit::Unconvertible => ConvertError::Unconvertible {
                reason: message,
                n_features,
            },
            HelperExit::Unreadable => ConvertError::Unreadable {
                reason: message,
                detail: stderr,
            },
            HelperExit::Failed => ConvertError::Failed {
                reason: message,
                detail: stderr,
            },
        })
    }

    /// What the file holds, converting nothing (`--inspect`): its number of features when the
    /// model records it.
    pub fn inspect(&self, model: &Path) -> Result<Option<usize>, ConvertError> {
        let answer = self.run(model, &["--inspect".as_ref()])?;
        Ok(answer["n_features"].as_u64().map(|n| n as usize))
    }

    /// Converts `model` into `stage` (the artifact, `model.toml`, `verify.json`), loads the
    /// artifact as `serve` loads it and checks its answers against the original library's on
    /// the sample rows. The one conversion `import` and `serve` (for a pickle) share.
    pub fn convert(&self, model: &Path, stage: &Path) -> Result<Converted, ConvertError> {
        let rows = self.rows.max(1).to_string();
        let answer = self.run(
            model,
            &[
                "--stage".as_ref(),
                stage.as_os_str(),
                "--rows".as_ref(),
                rows.as_ref(),
            ],
        )?;
        let n_features = answer["n_features"].as_u64().map(|n| n as usize);
        let failed = |reason: &str, detail: String| ConvertError::Failed {
            reason: reason.to_string(),
            detail,
        };
        let artifact = answer["artifact"]
            .as_str()
            .filter(|a| !a.is_empty() && !a.contains(['/', '\\']) && *a != "..")
            .ok_or_else(|| failed("the import helper named no artifact", answer.to_string()))?
            .to_string();

        // Load it as `serve` would, and check it.
        let toml = std::fs::read_to_string(stage.join("model.toml"))
            .map_err(|e| failed("the import helper wrote no model.toml", e.to_string()))?;
        let cfg = ModelConfig::from_toml(&toml)
            .map_err(|e| failed("the import helper wrote a bad model.toml", e))?;
        let loaded = ferroserve_runtime::repository::load_artifact(&cfg, &stage.join(&artifact))
            .map_err(|e| ConvertError::Disagrees {
                reason: format!("ferroserve cannot load the converted model: {e}"),
                n_features,
            })?;
        let verify: Value = std::fs::read(stage.join("verify.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| failed("the import helper wrote no verify.json", String::new()))?;
        let report = verify_model(&loaded, &verify).map_err(|e| ConvertError::Disagrees {
            reason: e.to_string(),
            n_features,
        })?;
        let library = verify["library"]
            .as_str()
            .unwrap_or("the original library")
            .to_string();
        if let Some(fail) = &report.failure {
            return Err(ConvertError::Disagrees {
                reason: format!(
                    "ferroserve's answers differ from {library}'s beyond tolerance: {fail}"
                ),
                n_features,
            });
        }
        Ok(Converted {
            artifact,
            toml,
            model: loaded,
            rows: report.rows,
            summary: report.summary,
            library,
            n_features,
        })
    }
}

/// How the helper ended (its exit status; see the helper's docstring).
enum HelperExit {
    Unknown,
    Missing,
    Unconvertible,
    Unreadable,
    Failed,
}

impl HelperExit {
    fn from_code(code: Option<i32>) -> HelperExit {
        match code {
            Some(2) => HelperExit::Unknown,
            Some(3) => HelperExit::Missing,
            Some(4) => HelperExit::Unconvertible,
            Some(5) => HelperExit::Unreadable,
            _ => HelperExit::Failed,
        }
    }
}

/// A model converted, loaded and verified (its files are in the stage folder).
pub struct Converted {
    /// The artifact's file name in the stage folder (`model.onnx`, `model.json`, `model.txt`).
    pub artifact: String,
    /// The `model.toml` the helper wrote.
    pub toml: String,
    /// The artifact, loaded as `serve` loads it.
    pub model: Arc<dyn LoadedModel>,
    /// Sample rows it was verified on, and what the comparison found.
    pub rows: usize,
    pub summary: String,
    /// The library the answers were compared with (`scikit-learn 1.9.1`).
    pub library: String,
    /// The model's number of features, when it records it.
    pub n_features: Option<usize>,
}

/// Why a conversion did not give a verified model. [`ConvertError::reason`] is what answers
/// may say: it names the model file by its base name only and never quotes its content;
/// [`ConvertError::detail`] adds what only the log gets.
#[derive(Debug, Clone)]
pub enum ConvertError {
    /// The interpreter did not start.
    NoPython { python: String },
    /// A Python library is missing; the message has the `pip install` command.
    Missing(String),
    /// Not a model file the helper knows (or an object without `predict`).
    Unknown(String),
    /// Read, but the converter cannot convert it (a custom transformer, an estimator skl2onnx
    /// does not know): the Python backend can serve it.
    Unconvertible {
        reason: String,
        n_features: Option<usize>,
    },
    /// Converted, but ferroserve cannot load the result or answers differently from the
    /// library: the Python backend can serve it.
    Disagrees {
        reason: String,
        n_features: Option<usize>,
    },
    /// The file cannot be unpickled (not a pickle, damaged, or its code is not importable).
    Unreadable { reason: String, detail: String },
    /// Anything else.
    Failed { reason: String, detail: String },
}

impl ConvertError {
    /// What answers may say.
    pub fn reason(&self) -> String {
        match self {
            // The interpreter by its name only: a path may say where things are on disk.
            ConvertError::NoPython { python } => format!(
                "`{}` was not found: converting a pickle needs Python 3 with the model's \
                 libraries. Install Python 3, then: {PIP_ALL} (or name the interpreter with \
                 --python-interpreter / FERROSERVE_PYTHON)",
                Path::new(python)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            ConvertError::Missing(m) => format!("{m} (all the importer can use: {PIP_ALL})"),
            ConvertError::Unknown(m)
            | ConvertError::Unconvertible { reason: m, .. }
            | ConvertError::Disagrees { reason: m, .. }
            | ConvertError::Unreadable { reason: m, .. }
            | ConvertError::Failed { reason: m, .. } => m.clone(),
        }
    }

    /// What the log says: the reason and the helper's own report.
    pub fn detail(&self) -> String {
        match self {
            ConvertError::NoPython { python } => format!("{python}: {}", self.reason()),
            ConvertError::Unreadable { detail, .. } | ConvertError::Failed { detail, .. }
                if !detail.is_empty() =>
            {
                format!("{}\n{detail}", self.reason())
            }
            _ => self.reason(),
        }
    }

    /// When the Python backend can serve the model instead: its number of features, if known.
    pub fn python_fallback(&self) -> Option<Option<usize>> {
        match self {
            ConvertError::Unconvertible { n_features, .. }
            | ConvertError::Disagrees { n_features, .. } => Some(*n_features),
            ConvertError::NoPython { .. }
            | ConvertError::Missing(_)
            | ConvertError::Unknown(_)
            | ConvertError::Unreadable { .. }
            | ConvertError::Failed { .. } => None,
        }
    }
}

/// The file name a pickle gets in a Python backend version folder.
pub const PYTHON_CHECKPOINT: &str = "model.pkl";

/// The `model.toml` of a pickle served by the Python backend (`ferroserve:PicklePredictor`):
/// one input `[-1, n]` FP64 when the number of features is known.
pub fn python_model_toml(description: &str, n_features: Option<usize>) -> String {
    let mut t = format!(
        "# Written by ferroserve: this pickle runs in Python (the Python backend), unconverted.\n\
         description = {}\n\
         backend = \"python\"\n\
         predictor = \"ferroserve:PicklePredictor\"\n\
         batch_format = \"numpy\"\n\n\
         [checkpoint]\n\
         file = \"{PYTHON_CHECKPOINT}\"\n",
        // A JSON string is a TOML basic string.
        serde_json::to_string(description).unwrap_or_default()
    );
    if let Some(n) = n_features {
        t.push_str(&format!(
            "\n[[inputs]]\nname = \"input\"\ndatatype = \"FP64\"\nshape = [-1, {n}]\n"
        ));
    }
    t
}

/// Writes a Python backend model folder: `model.toml` in `model_dir`, the pickle copied into
/// its version folder `vdir` as [`PYTHON_CHECKPOINT`].
pub fn write_python_folder(
    pickle: &Path,
    model_dir: &Path,
    vdir: &Path,
    description: &str,
    n_features: Option<usize>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(vdir).with_context(|| format!("creating {}", vdir.display()))?;
    let to = vdir.join(PYTHON_CHECKPOINT);
    std::fs::copy(pickle, &to).with_context(|| format!("writing {}", to.display()))?;
    let toml = model_dir.join("model.toml");
    std::fs::write(&toml, python_model_toml(description, n_features))
        .with_context(|| format!("writing {}", toml.display()))?;
    Ok(())
}

/// Runs the import; `Ok` only when the model was verified and written (or, with `--python`,
/// its Python backend folder written).
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    if !args.model.is_file() {
        bail!("{} does not exist or is not a file", args.model.display());
    }
    let version = args.version.unwrap_or_else(|| next_version(&args.out));
    let vdir = args.out.join(version.to_string());
    if vdir.exists() && !args.force {
        bail!(
            "{} already exists; choose another --version or pass --force to replace it",
            vdir.display()
        );
    }
    let helper = Helper {
        python: args.python_interpreter.clone(),
        rows: args.rows,
        timeout: HELPER_TIMEOUT,
    };
    let pickle = is_pickle(&args.model);
    let file_name = args
        .model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if args.python {
        if !pickle {
            bail!(
                "--python serves a pickle (.pkl, .pickle, .joblib, .sav) through the Python \
                 backend; {} is not one: import it without --python",
                args.model.display()
            );
        }
        eprintln!(
            "ferroserve import: reading {} with {} to count its features (loading a pickle runs \
             code stored in it: import only files you trust)",
            args.model.display(),
            helper.python
        );
        let n_features = helper
            .inspect(&args.model)
            .map_err(|e| anyhow!(e.detail()))?;
        if vdir.exists() {
            std::fs::remove_dir_all(&vdir)
                .with_context(|| format!("replacing {}", vdir.display()))?;
        }
        write_python_folder(
            &args.model,
            &args.out,
            &vdir,
            &format!("pickle {file_name}, served unconverted by the Python backend"),
            n_features,
        )?;
        println!(
            "wrote {} for the Python backend ({}; not converted, not verified: the model runs \
             in Python)",
            vdir.join(PYTHON_CHECKPOINT).display(),
            match n_features {
                Some(n) => format!("input [-1, {n}] FP64"),
                None => "its number of features is not recorded in it".into(),
            }
        );
        return Ok(());
    }

    let tmp = TempDir::new()?;
    let stage = tmp.0.join("stage");
    eprintln!(
        "ferroserve import: reading {} with {}{}",
        args.model.display(),
        helper.python,
        if pickle {
            " (loading a pickle runs code stored in it: import only files you trust)"
        } else {
            ""
        }
    );
    let converted = match helper.convert(&args.model, &stage) {
        Ok(c) => c,
        Err(e @ ConvertError::Disagrees { .. }) => bail!(
            "refused: {}. Nothing was written.{}",
            e.detail(),
            if pickle {
                " (`--python` writes it for the Python backend instead)"
            } else {
                ""
            }
        ),
        Err(e @ ConvertError::Unconvertible { .. }) if pickle => bail!(
            "{}. Nothing was written. `ferroserve import --python` writes it for the Python \
             backend instead.",
            e.detail()
        ),
        Err(e) => bail!("{}", e.detail()),
    };

    // Move into the repository.
    let artifact = &converted.artifact;
    std::fs::create_dir_all(&vdir).with_context(|| format!("creating {}", vdir.display()))?;
    std::fs::copy(stage.join(artifact), vdir.join(artifact))
        .with_context(|| format!("writing {}", vdir.join(artifact).display()))?;
    let toml_path = args.out.join("model.toml");
    if toml_path.exists() {
        eprintln!("ferroserve import: replacing {}", toml_path.display());
    }
    std::fs::write(&toml_path, &converted.toml)
        .with_context(|| format!("writing {}", toml_path.display()))?;
    let backend = &converted.model.metadata().platform;
    println!(
        "imported {} as {} ({backend}); verified on {} rows against {}: {}",
        args.model.display(),
        vdir.join(artifact).display(),
        converted.rows,
        converted.library,
        converted.summary
    );
    let repo = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    println!(
        "serve it with: ferroserve serve --repository {}",
        repo.display()
    );
    Ok(())
}

/// The outcome of comparing the loaded model with the library's answers.
struct Report {
    rows: usize,
    summary: String,
    failure: Option<String>,
}

fn tensor_from_json(v: &Value) -> anyhow::Result<Tensor> {
    let name = v["name"].as_str().unwrap_or("input").to_string();
    let shape: Vec<i64> = serde_json::from_value(v["shape"].clone())?;
    let dt = v["datatype"]
        .as_str()
        .and_then(DataType::parse)
        .ok_or_else(|| anyhow!("verify.json: bad datatype in {name}"))?;
    let data = v["data"]
        .as_array()
        .ok_or_else(|| anyhow!("verify.json: no data in {name}"))?;
    let num = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    let data = match dt {
        DataType::Bytes => TensorData::Bytes(
            data.iter()
                .map(|x| x.as_str().unwrap_or("").as_bytes().to_vec())
                .collect(),
        ),
        DataType::Fp64 => TensorData::Fp64(data.iter().map(num).collect()),
        DataType::Int64 => TensorData::Int64(data.iter().map(|x| num(x) as i64).collect()),
        DataType::Int32 => TensorData::Int32(data.iter().map(|x| num(x) as i32).collect()),
        _ => TensorData::Fp32(data.iter().map(|x| num(x) as f32).collect()),
    };
    Ok(Tensor::new(name, shape, data))
}

fn as_strings(d: &TensorData) -> Vec<String> {
    match d {
        TensorData::Bytes(v) => v
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect(),
        other => (0..other.len())
            .map(|i| {
                let x = other.get_f64(i).unwrap_or(f64::NAN);
                if x.fract() == 0.0 && x.abs() < 1e15 {
                    format!("{}", x as i64)
                } else {
                    x.to_string()
                }
            })
            .collect(),
    }
}

fn verify_model(model: &Arc<dyn LoadedModel>, verify: &Value) -> anyhow::Result<Report> {
    let meta = model.metadata();
    let mut inputs = Vec::new();
    for v in verify["inputs"].as_array().into_iter().flatten() {
        inputs.push(tensor_from_json(v)?);
    }
    // One input: whatever the model calls it.
    if let ([t], [m]) = (inputs.as_mut_slice(), meta.inputs.as_slice()) {
        t.name = m.name.clone();
    }
    let rows = inputs
        .first()
        .and_then(|t| t.shape.first())
        .copied()
        .unwrap_or(0) as usize;
    let batch = Batch {
        inputs,
        rows,
        outputs: vec![],
    };
    let out = model
        .clone()
        .instance()
        .and_then(|mut instance| instance.run(&batch))
        .map_err(|e| anyhow!("the converted model failed on the sample rows: {e}"))?;
    let abs = verify["tolerance"]["abs"].as_f64().unwrap_or(1e-4);
    let rel = verify["tolerance"]["rel"].as_f64().unwrap_or(1e-4);
    let mut worst: Option<(f64, String)> = None;
    let mut failure = None;
    let mut label_rows = 0;
    for check in verify["checks"].as_array().into_iter().flatten() {
        let name = check["output"].as_str().unwrap_or("");
        let got = out.iter().find(|t| t.name == name).ok_or_else(|| {
            let names: Vec<&str> = out.iter().map(|t| t.name.as_str()).collect();
            anyhow!("the converted model has no output '{name}' (it has {names:?})")
        })?;
        let want = check["want"].as_array().cloned().unwrap_or_default();
        if got.data.len() != want.len() {
            failure.get_or_insert(format!(
                "output '{name}' has {} values, the library gave {}",
                got.data.len(),
                want.len()
            ));
            continue;
        }
        match check["kind"].as_str() {
            Some("labels") => {
                let got = as_strings(&got.data);
                let mask = check["mask"].as_array();
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let w = w.as_str().unwrap_or("");
                    let counted = mask
                        .and_then(|m| m.get(i))
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                    if !counted {
                        continue;
                    }
                    label_rows += 1;
                    if g != w {
                        failure.get_or_insert(format!(
                            "output '{name}' row {i}: ferroserve {g:?}, the library {w:?}"
                        ));
                    }
                }
            }
            _ => {
                for (i, w) in want.iter().enumerate() {
                    let w = w.as_f64().unwrap_or(f64::NAN);
                    let g = got.data.get_f64(i).unwrap_or(f64::NAN);
                    let d = (g - w).abs();
                    let both_nan = g.is_nan() && w.is_nan();
                    let within = d <= abs + rel * w.abs();
                    let bad = !within && !both_nan;
                    let d = if both_nan { 0.0 } else { d };
                    let here = format!(
                        "{d:.3e} on output '{name}' element {i} (ferroserve {g}, library {w})"
                    );
                    if worst.as_ref().is_none_or(|(x, _)| d > *x || d.is_nan()) {
                        worst = Some((d, here.clone()));
                    }
                    if bad {
                        failure.get_or_insert(format!(
                            "largest difference {} > tolerance {abs:e} + {rel:e}·|value|",
                            worst.as_ref().map(|(_, s)| s.as_str()).unwrap_or(&here)
                        ));
                    }
                }
            }
        }
    }
    // Report the largest difference seen overall when failing on values.
    if let (Some(f), Some((_, w))) = (&mut failure, &worst) {
        if f.starts_with("largest difference") {
            *f = format!("largest difference {w} (tolerance {abs:e} + {rel:e}·|value|)");
        }
    }
    let summary = match &worst {
        Some((_, w)) => format!(
            "largest difference {w}{}",
            if label_rows > 0 {
                format!("; {label_rows} labels equal")
            } else {
                String::new()
            }
        ),
        None => format!("{label_rows} labels equal"),
    };
    Ok(Report {
        rows,
        summary,
        failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_past_its_time_is_killed_and_one_within_it_is_heard() {
        let mut cmd = Command::new("sleep");
        cmd.arg("5");
        let t = Instant::now();
        let e = output_within(cmd, Duration::from_millis(200)).unwrap_err();
        assert!(e.starts_with("did not finish"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(3));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let (code, out, err) = output_within(cmd, Duration::from_secs(10)).unwrap();
        assert_eq!(
            (code, &out[..], &err[..]),
            (Some(3), &b"out\n"[..], &b"err\n"[..])
        );
        assert!(output_within(Command::new("/nonexistent/x"), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn the_python_backend_toml_is_the_backends_contract() {
        let t: toml::Table = python_model_toml("d \"q\"", Some(4)).parse().unwrap();
        assert_eq!(t["backend"].as_str(), Some("python"));
        assert_eq!(t["predictor"].as_str(), Some("ferroserve:PicklePredictor"));
        assert_eq!(t["checkpoint"]["file"].as_str(), Some(PYTHON_CHECKPOINT));
        assert_eq!(t["description"].as_str(), Some("d \"q\""));
        assert_eq!(t["inputs"][0]["shape"].as_array().map(Vec::len), Some(2));
        let t: toml::Table = python_model_toml("d", None).parse().unwrap();
        assert!(!t.contains_key("inputs"));
    }
}
