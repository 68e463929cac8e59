//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! Order: `ORT_DYLIB_PATH` (a file, or a folder holding the library); else the `onnxruntime`
//! Python wheel (`onnxruntime/capi/libonnxruntime.so*`) in the usual places (virtual and conda
//! environments, pyenv, `~/.local`, `/usr/local/lib`, `/usr/lib`), then in the site-packages
//! folders `python3` reports (asked only if needed: starting Python is slow); else a system-wide
//! `libonnxruntime.so` in the usual library folders. Nothing is downloaded. The search runs the
//! first time a model needs ONNX Runtime, so a server with only tree models never looks.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ort::environment::Environment;

use crate::OnnxError;

/// What to tell a user whose server cannot find the library.
pub const INSTALL_HINT: &str =
    "pip install onnxruntime, or set ORT_DYLIB_PATH=/path/to/libonnxruntime.so";

/// How long `python3` may take to name its site-packages folders.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The file names an ONNX Runtime library has on this platform (`libonnxruntime.so`,
/// `libonnxruntime.so.1.31.1` ...).
fn is_library_name(name: &str) -> bool {
    if cfg!(target_os = "macos") {
        name.starts_with("libonnxruntime") && name.ends_with(".dylib") && !name.contains("provider")
    } else if cfg!(windows) {
        name.eq_ignore_ascii_case("onnxruntime.dll")
    } else {
        name == "libonnxruntime.so" || name.starts_with("libonnxruntime.so.")
    }
}

/// The best library file in `dir`: the plain name if present, else the highest versioned one.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(OsStr::to_str)
                    .is_some_and(is_library_name)
        })
        .collect();
    // Longest names last: `libonnxruntime.so.1.31.1` sorts after `libonnxruntime.so`; either
    // is the same library when both exist.
    found.sort_by_key(|p| version_key(p));
    found.pop()
}

fn version_key(p: &Path) -> Vec<u64> {
    p.file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("")
        .split('.')
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Site-packages folders named by Python itself (`FERROSERVE_PYTHON`, default `python3`).
fn python_site_packages() -> Vec<PathBuf> {
    let python = std::env::var("FERROSERVE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = "import site, sys\n\
        dirs = list(getattr(site, 'getsitepackages', lambda: [])())\n\
        dirs.append(site.getusersitepackages())\n\
        dirs.extend(p for p in sys.path if p.endswith(('site-packages', 'dist-packages')))\n\
        print('\\n'.join(dirs))";
    let child = Command::new(&python)
        .args(["-I", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Vec::new();
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < PYTHON_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(None) | Err(_) => {
                tracing::warn!(%python, "python did not name its site-packages within 5 s; skipped");
                let _ = child.kill();
                let _ = child.wait();
                return Vec::new();
            }
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        let _ = stdout.read_to_string(&mut out);
    }
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Folders matching `<base>/lib/python3*/{site,dist}-packages` and `<base>/lib64/...`.
fn python_dirs_under(base: &Path, out: &mut Vec<PathBuf>) {
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(base.join(lib)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_str().is_some_and(|n| n.starts_with("python3")) {
                out.push(e.path().join("site-packages"));
                out.push(e.path().join("dist-packages"));
            }
        }
    }
}

/// The usual places Python packages live (looked at before asking `python3`, which is slow).
fn usual_site_packages() -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = std::env::var_os(var) {
            bases.push(PathBuf::from(v));
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(h) = &home {
        bases.push(h.join(".local"));
        for tool in [".pyenv/versions", "miniconda3/envs", "anaconda3/envs"] {
            if let Ok(entries) = std::fs::read_dir(h.join(tool)) {
                bases.extend(entries.flatten().map(|e| e.path()));
            }
        }
        bases.push(h.join("miniconda3"));
        bases.push(h.join("anaconda3"));
    }
    bases.extend(["/usr/local", "/usr", "/opt/conda"].map(PathBuf::from));
    let mut out = Vec::new();
    for b in &bases {
        python_dirs_under(b, &mut out);
    }
    out
}

/// Every place looked at, in order, without duplicates: the usual Python locations first (a
/// directory listing costs microseconds; any ONNX Runtime from 1.17 on serves), then the
/// folders `python3` itself names (starting Python costs tens to hundreds of milliseconds, so it
/// is asked only when the usual places have no library), then the system library folders.
fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for sp in usual_site_packages() {
        dirs.push(sp.join("onnxruntime").join("capi"));
    }
    dirs
}

/// Where Python itself says its packages are, as library folders.
fn python_candidates() -> Vec<PathBuf> {
    python_site_packages()
        .into_iter()
        .map(|sp| sp.join("onnxruntime").join("capi"))
        .collect()
}

/// System library folders.
fn system_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for lib in [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib64",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/opt/homebrew/lib",
    ] {
        dirs.push(PathBuf::from(lib));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// Where the library is, or why it could not be found.
pub fn find_library() -> Result<PathBuf, String> {
    if let Some(v) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        if p.is_file() {
            return Ok(p);
        }
        if p.is_dir() {
            return library_in(&p).ok_or_else(|| {
                format!(
                    "ORT_DYLIB_PATH={} is a folder without libonnxruntime in it; point it at the library file",
                    p.display()
                )
            });
        }
        return Err(format!(
            "ORT_DYLIB_PATH={} does not exist; {INSTALL_HINT}",
            p.display()
        ));
    }
    for dir in candidates()
        .into_iter()
        .chain(python_candidates())
        .chain(system_candidates())
    {
        if let Some(lib) = library_in(&dir) {
            return Ok(lib);
        }
    }
    Err(format!(
        "this model needs ONNX Runtime, which was not found (looked in ORT_DYLIB_PATH, Python's \
         site-packages and the system library folders): {INSTALL_HINT}"
    ))
}

fn load() -> Result<Runtime, String> {
    let path = find_library()?;
    let builder = ort::init_from(&path).map_err(|e| {
        format!(
            "cannot load ONNX Runtime from {}: {e}; {INSTALL_HINT}",
            path.display()
        )
    })?;
    let env = builder
        .with_name("ferroserve")
        .build()
        .map_err(|e| format!("ONNX Runtime from {} failed to start: {e}", path.display()))?;
    let version = version_of(&path);
    tracing::info!(path = %path.display(), %version, "ONNX Runtime loaded");
    Ok(Runtime { path, version, env })
}

/// The version in the library's file name (`libonnxruntime.so.1.31.1` → `1.31.1`), else
/// "unknown".
fn version_of(path: &Path) -> String {
    let v = version_key(path);
    if v.is_empty() {
        "unknown".into()
    } else {
        v.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_names_and_versions() {
        if cfg!(target_os = "linux") {
            assert!(is_library_name("libonnxruntime.so"));
            assert!(is_library_name("libonnxruntime.so.1.31.1"));
            assert!(!is_library_name("libonnxruntime_providers_shared.so"));
            assert!(!is_library_name("onnxruntime_pybind11_state.so"));
        }
        assert_eq!(
            version_of(Path::new("/x/libonnxruntime.so.1.31.1")),
            "1.31.1"
        );
        assert_eq!(version_of(Path::new("/x/libonnxruntime.so")), "unknown");
    }

    #[test]
    fn picks_the_highest_version_in_a_folder() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let dir = std::env::temp_dir().join(format!("fs-ortlib-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for n in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.31.1",
            "libonnxruntime_providers_shared.so",
        ] {
            std::fs::write(dir.join(n), b"").unwrap();
        }
        let got = library_in(&dir).unwrap();
        assert_eq!(got.file_name().unwrap(), "libonnxruntime.so.1.31.1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
