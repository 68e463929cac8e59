//! Finds what the machine offers, without loading or downloading anything: the ONNX Runtime
//! shared library, Python and the modules it can import, programs on `PATH`.
//!
//! Two kinds of caller use the same answers. The ONNX Runtime backend asks
//! [`onnx_runtime_library`] at run time, the first time a model needs it. The test crates'
//! build scripts call [`build::ignore_unless`], which turns each missing [`Need`] into a `cfg`
//! that marks the tests needing it `#[ignore = "..."]`, so cargo's own summary lists them as
//! ignored with the reason, instead of reporting them `ok` after an early return. Under
//! `CI=true` nothing is ignored: the tests run and fail, naming what is missing.
//!
//! Order of the ONNX Runtime search: `ORT_DYLIB_PATH` (a file, or a folder holding the
//! library); else the `onnxruntime` Python wheel (`onnxruntime/capi/libonnxruntime.so*`) in the
//! usual places (virtual and conda environments, pyenv, `~/.local`, `/usr/local/lib`,
//! `/usr/lib`), then in the site-packages folders `python3` reports (asked only if needed:
//! starting Python is slow); else a system-wide `libonnxruntime.so` in the usual library
//! folders.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What to tell a user whose machine lacks ONNX Runtime.
pub const ORT_INSTALL_HINT: &str =
    "pip install onnxruntime, or set ORT_DYLIB_PATH=/path/to/libonnxruntime.so";

/// The Python modules `ferroserve import` and its tests use (`requirements-dev.txt` pins them).
pub const PYTHON_ML: &[&str] = &[
    "sklearn",
    "xgboost",
    "lightgbm",
    "skl2onnx",
    "onnxmltools",
    "onnxruntime",
    "joblib",
    "pandas",
];

/// How long `python3` may take to answer a question about itself.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(10);

/// Something a test (or a backend) needs from the machine.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    /// The ONNX Runtime shared library ([`onnx_runtime_library`]).
    OnnxRuntime,
    /// `python3` (or `FERROSERVE_PYTHON`) able to import every one of these modules.
    PythonModules(&'a [&'a str]),
    /// A program on `PATH`, such as `redis-server`.
    Program(&'a str),
}

impl Need<'_> {
    /// `Ok` when the machine has it, else why not and how to get it.
    pub fn find(&self) -> Result<(), String> {
        match self {
            Need::OnnxRuntime => onnx_runtime_library().map(|_| ()),
            Need::PythonModules(modules) => python_modules(modules),
            Need::Program(name) => program(name).map(|_| ()).ok_or_else(|| {
                format!("`{name}` is not on PATH (on Debian: apt-get install {name})")
            }),
        }
    }
}

/// Whether this run is CI's (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The Python interpreter to ask: `FERROSERVE_PYTHON`, default `python3`.
pub fn python() -> String {
    std::env::var("FERROSERVE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs `python -I -c <code>` for at most [`PYTHON_TIMEOUT`]; its exit success and stdout, or
/// `None` when it could not start or did not finish in time.
fn run_python(code: &str) -> Option<(bool, String)> {
    let mut child = Command::new(python())
        .args(["-I", "-c", code])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < PYTHON_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        let _ = stdout.read_to_string(&mut out);
    }
    Some((status.success(), out))
}

/// `Ok` when Python can import every module named (located with `importlib.util.find_spec`,
/// not imported: importing them all would take seconds), else which ones it lacks.
pub fn python_modules(modules: &[&str]) -> Result<(), String> {
    python_module_files(modules).map(|_| ())
}

/// The file each module is loaded from (its `__init__.py` or module file), or which modules
/// Python lacks.
fn python_module_files(modules: &[&str]) -> Result<Vec<PathBuf>, String> {
    let code = format!(
        "import importlib.util\nfor m in {modules:?}:\n    s = importlib.util.find_spec(m)\n    print('+' + s.origin if s and s.origin else '-' + m)"
    );
    match run_python(&code) {
        Some((true, out)) => {
            let missing: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix('-')).collect();
            if missing.is_empty() {
                Ok(out
                    .lines()
                    .filter_map(|l| l.strip_prefix('+'))
                    .map(PathBuf::from)
                    .collect())
            } else {
                Err(format!(
                    "{} cannot import {} (pip install -r requirements-dev.txt)",
                    python(),
                    missing.join(", ")
                ))
            }
        }
        _ => Err(format!(
            "{} did not run (install Python 3, or set FERROSERVE_PYTHON)",
            python()
        )),
    }
}

/// The first `name` on `PATH` that is a file.
pub fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
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

/// The version in a library's file name (`libonnxruntime.so.1.31.1` → `1.31.1`), else
/// "unknown".
pub fn library_version(path: &Path) -> String {
    let v = version_key(path);
    if v.is_empty() {
        "unknown".into()
    } else {
        v.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
    }
}

/// Site-packages folders named by Python itself.
pub fn python_site_packages() -> Vec<PathBuf> {
    let script = "import site, sys\n\
        dirs = list(getattr(site, 'getsitepackages', lambda: [])())\n\
        dirs.append(site.getusersitepackages())\n\
        dirs.extend(p for p in sys.path if p.endswith(('site-packages', 'dist-packages')))\n\
        print('\\n'.join(dirs))";
    match run_python(script) {
        Some((true, out)) => out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(PathBuf::from)
            .collect(),
        _ => Vec::new(),
    }
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
pub fn usual_site_packages() -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = std::env::var_os(var) {
            bases.push(PathBuf::from(v));
        }
    }
    if let Some(h) = std::env::var_os("HOME").map(PathBuf::from) {
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

/// System library folders.
const SYSTEM_LIBRARY_DIRS: [&str; 6] = [
    "/usr/local/lib",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/opt/homebrew/lib",
];

/// Where the ONNX Runtime library is, or why it could not be found. The usual Python
/// locations come first (a directory listing costs microseconds; any ONNX Runtime from 1.17 on
/// serves), then the folders `python3` itself names (asked only when the usual places have no
/// library), then the system library folders.
pub fn onnx_runtime_library() -> Result<PathBuf, String> {
    if let Some(v) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        if p.is_file() {
            return Ok(p);
        }
        if p.is_dir() {
            return library_in(&p).ok_or_else(|| {
                "ORT_DYLIB_PATH is a folder without libonnxruntime in it; point it at the library file"
                    .to_string()
            });
        }
        return Err(format!(
            "ORT_DYLIB_PATH names nothing that exists; {ORT_INSTALL_HINT}"
        ));
    }
    let wheel = |sp: PathBuf| sp.join("onnxruntime").join("capi");
    let found = usual_site_packages()
        .into_iter()
        .map(wheel)
        .find_map(|d| library_in(&d))
        .or_else(|| {
            python_site_packages()
                .into_iter()
                .map(wheel)
                .find_map(|d| library_in(&d))
        })
        .or_else(|| {
            SYSTEM_LIBRARY_DIRS
                .iter()
                .find_map(|d| library_in(Path::new(d)))
        });
    found.ok_or_else(|| {
        format!(
            "ONNX Runtime was not found (looked in ORT_DYLIB_PATH, Python's site-packages and the \
             system library folders): {ORT_INSTALL_HINT}"
        )
    })
}

/// For the test crates' build scripts.
pub mod build {
    use super::*;

    /// Declares `cfg(<name>)` and sets it when `need` is missing from this machine (never under
    /// `CI=true`), so tests can carry `#[cfg_attr(<name>, ignore = "needs ...")]`. Also asks
    /// cargo to run the build script again when what the answer depends on changes: the
    /// environment variables read, and the files where the need was found or, when it was not,
    /// the folders an install would change (site-packages, or the `PATH` folders).
    pub fn ignore_unless(name: &str, need: Need<'_>) {
        println!("cargo:rustc-check-cfg=cfg({name})");
        for var in [
            "CI",
            "ORT_DYLIB_PATH",
            "FERROSERVE_PYTHON",
            "VIRTUAL_ENV",
            "CONDA_PREFIX",
            "PATH",
        ] {
            println!("cargo:rerun-if-env-changed={var}");
        }
        // What the answer depends on: where the need was found (a file whose removal cargo
        // notices), else the folders where installing it would change something. Folders are
        // scanned by cargo on every build, so a found need never watches site-packages.
        let found = match need {
            Need::OnnxRuntime => onnx_runtime_library().map(|p| vec![p]),
            Need::PythonModules(modules) => python_module_files(modules),
            Need::Program(name) => need.find().map(|_| program(name).into_iter().collect()),
        };
        let watched: Vec<PathBuf> = match (&found, need) {
            (Ok(files), _) => files.clone(),
            (Err(_), Need::Program(_)) => std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).filter(|d| d.is_dir()).collect())
                .unwrap_or_default(),
            (Err(_), _) => usual_site_packages()
                .into_iter()
                .chain(python_site_packages())
                .filter(|d| d.is_dir())
                .collect(),
        };
        for path in &watched {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        if in_ci() {
            return;
        }
        if let Err(reason) = found {
            println!("cargo:rustc-cfg={name}");
            println!("cargo:warning=tests that need it are ignored ({name}): {reason}");
        }
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
            library_version(Path::new("/x/libonnxruntime.so.1.31.1")),
            "1.31.1"
        );
        assert_eq!(
            library_version(Path::new("/x/libonnxruntime.so")),
            "unknown"
        );
    }

    #[test]
    #[cfg_attr(not(target_os = "linux"), ignore = "library names differ off Linux")]
    fn picks_the_highest_version_in_a_folder() {
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

    #[test]
    fn a_missing_program_and_module_say_what_is_missing() {
        assert!(program("ferroserve-no-such-program").is_none());
        let err = Need::Program("ferroserve-no-such-program")
            .find()
            .unwrap_err();
        assert!(err.contains("ferroserve-no-such-program"), "{err}");
        if program("python3").is_some() && std::env::var_os("FERROSERVE_PYTHON").is_none() {
            let err = python_modules(&["sys", "ferroserve_no_such_module"]).unwrap_err();
            assert!(err.contains("ferroserve_no_such_module"), "{err}");
            assert!(!err.contains("sys,"), "{err}");
            python_modules(&["sys", "json"]).unwrap();
        }
    }
}
