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
    python: String,
    /// Replace an existing version folder.
    #[arg(long)]
    force: bool,
}

/// A temporary folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("ferroserve-import-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
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

/// Runs the import; `Ok` only when the model was verified and written.
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

    // The Python side.
    match Command::new(&args.python).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => bail!(
            "`{}` was not found: ferroserve import needs Python 3 with the model's libraries. \
             Install Python 3, then: {PIP_ALL} (or name the interpreter with --python / FERROSERVE_PYTHON)",
            args.python
        ),
    }
    let tmp = TempDir::new()?;
    let helper = match std::env::var_os("FERROSERVE_IMPORT_HELPER") {
        Some(p) => PathBuf::from(p),
        None => {
            let p = tmp.0.join("ferroserve_import.py");
            std::fs::write(&p, HELPER).with_context(|| format!("writing {}", p.display()))?;
            p
        }
    };
    let stage = tmp.0.join("stage");
    let is_pickle = args
        .model
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| {
            ferroserve_runtime::repository::PICKLE_EXTENSIONS
                .contains(&e.to_ascii_lowercase().as_str())
        });
    eprintln!(
        "ferroserve import: reading {} with {}{}",
        args.model.display(),
        args.python,
        if is_pickle {
            " (loading a pickle runs code stored in it: import only files you trust)"
        } else {
            ""
        }
    );
    let out = Command::new(&args.python)
        .arg(&helper)
        .arg("--model")
        .arg(&args.model)
        .arg("--stage")
        .arg(&stage)
        .args(["--rows", &args.rows.max(1).to_string()])
        .output()
        .with_context(|| format!("running {}", args.python))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let msg = stderr.trim();
        match out.status.code() {
            Some(3) => bail!("{msg}\n(all the importer can use: {PIP_ALL})"),
            _ => bail!("the import helper failed:\n{msg}"),
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            anyhow!("the import helper gave no answer; its output:\n{stdout}{stderr}")
        })?;
    let artifact = answer["artifact"]
        .as_str()
        .ok_or_else(|| anyhow!("the import helper named no artifact: {answer}"))?
        .to_string();

    // Load it as `serve` would, and check it.
    let toml_text = std::fs::read_to_string(stage.join("model.toml"))
        .context("the import helper wrote no model.toml")?;
    let cfg = ModelConfig::from_toml(&toml_text).map_err(|e| anyhow!("model.toml: {e}"))?;
    let model = ferroserve_runtime::repository::load_artifact(&cfg, &stage.join(&artifact))
        .map_err(|e| anyhow!("ferroserve cannot load the converted model: {e}"))?;
    let verify: Value = serde_json::from_slice(
        &std::fs::read(stage.join("verify.json"))
            .context("the import helper wrote no verify.json")?,
    )?;
    let report = verify_model(&model, &verify)?;
    let library = verify["library"].as_str().unwrap_or("the original library");
    if let Some(fail) = &report.failure {
        bail!(
            "refused: ferroserve's answers differ from {library}'s beyond tolerance: {fail}. \
             Nothing was written."
        );
    }

    // Move into the repository.
    std::fs::create_dir_all(&vdir).with_context(|| format!("creating {}", vdir.display()))?;
    std::fs::copy(stage.join(&artifact), vdir.join(&artifact))
        .with_context(|| format!("writing {}", vdir.join(&artifact).display()))?;
    let toml_path = args.out.join("model.toml");
    if toml_path.exists() {
        eprintln!("ferroserve import: replacing {}", toml_path.display());
    }
    std::fs::write(&toml_path, toml_text)
        .with_context(|| format!("writing {}", toml_path.display()))?;
    let backend = &model.metadata().platform;
    println!(
        "imported {} as {} ({backend}); verified on {} rows against {library}: {}",
        args.model.display(),
        vdir.join(&artifact).display(),
        report.rows,
        report.summary
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
