//! Loading the ONNX Runtime shared library, once per process. Where it is looked for is
//! `ferroserve_probe::onnx_runtime_library` (`ORT_DYLIB_PATH`, the `onnxruntime` wheel, the
//! system library folders); nothing is downloaded. The search runs the first time a model needs
//! ONNX Runtime, so a server with only tree models never looks.

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::OnnxError;

pub use ferroserve_probe::{
    onnx_runtime_library as find_library, ORT_INSTALL_HINT as INSTALL_HINT,
};

/// The loaded library: where it came from, its version and the process-wide environment.
pub struct Runtime {
    pub path: PathBuf,
    pub version: String,
    pub(crate) env: Environment,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The process's ONNX Runtime, found and loaded on first use. The outcome (success or the
/// reason for failure) is kept: every later call answers the same.
pub fn runtime() -> Result<&'static Runtime, OnnxError> {
    RUNTIME
        .get_or_init(load)
        .as_ref()
        .map_err(|e| OnnxError::Library(e.clone()))
}

/// Loads the library. The reasons returned reach clients (a model's not-ready reason), so they
/// never name the file; the log does.
fn load() -> Result<Runtime, String> {
    let path = find_library()?;
    let builder = ort::init_from(&path).map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "cannot load ONNX Runtime");
        format!("the ONNX Runtime library found could not be loaded (the server log says why); {INSTALL_HINT}")
    })?;
    let env = builder.with_name("ferroserve").build().map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "ONNX Runtime failed to start");
        format!("ONNX Runtime failed to start: {e}")
    })?;
    let version = ferroserve_probe::library_version(&path);
    tracing::info!(path = %path.display(), %version, "ONNX Runtime loaded");
    Ok(Runtime { path, version, env })
}
