//! The backends the runtime knows, as peers in one list ([`BACKENDS`]): each says its name,
//! which files it takes and how it loads one (`ferroserve_core::Backend`); the runtime only picks
//! which one gets an artifact.
//!
//! The rule: `backend` in `model.toml` names it. Otherwise the artifact is offered, in list
//! order, to every backend that takes it; one that finds the file well formed but holding
//! something it does not implement ([`BackendError::Unsupported`]) passes it on to the next,
//! whose answer then says why it was needed. With the list as it is (the tree engine, then ONNX
//! Runtime): XGBoost and LightGBM files and ONNX graphs that are only a tree ensemble run on
//! `trees`, every other ONNX graph on `onnx`.

use std::path::Path;
use std::sync::Arc;

use ferroserve_core::config::BackendKind;
use ferroserve_core::{Backend, BackendError, LoadedModel, ModelConfig};
use ferroserve_onnx::OnnxBackend;
use ferroserve_python::PythonBackend;
use ferroserve_trees::backend::TreesBackend;

use crate::error::LoadError;

/// One backend of the list, with the `model.toml` value that names it.
pub struct Registered {
    pub kind: BackendKind,
    pub backend: &'static dyn Backend,
}

/// Every backend, in the order an artifact is offered to them.
pub static BACKENDS: [Registered; 3] = [
    Registered {
        kind: BackendKind::Trees,
        backend: &TreesBackend,
    },
    Registered {
        kind: BackendKind::Onnx,
        backend: &OnnxBackend,
    },
    Registered {
        kind: BackendKind::Python,
        backend: &PythonBackend,
    },
];

/// The backend `model.toml` names.
pub fn named(kind: BackendKind) -> &'static dyn Backend {
    BACKENDS
        .iter()
        .find(|r| r.kind == kind)
        .map(|r| r.backend)
        .expect("every BackendKind has a backend in BACKENDS")
}

/// Extensions of the files some backend reads, in list order, each once: what a version folder's
/// artifact may be called.
pub fn model_extensions() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = Vec::new();
    for r in &BACKENDS {
        for e in r.backend.extensions() {
            if !all.contains(e) {
                all.push(e);
            }
        }
    }
    all
}

/// Loads `file` with the backend `model.toml` names, else with the first backend that takes it
/// and does not pass it on (see the module documentation). Errors do not name the file.
pub fn load(cfg: &ModelConfig, file: &Path) -> Result<Arc<dyn LoadedModel>, LoadError> {
    if let Some(kind) = cfg.backend {
        return named(kind).load(cfg, file).map_err(LoadError::Backend);
    }
    // Why the backend before passed the file on, if it did.
    let mut passed: Option<BackendError> = None;
    for b in BACKENDS.iter().map(|r| r.backend).filter(|b| b.takes(file)) {
        let why = passed.take();
        match b.load(cfg, file) {
            Ok(model) => return Ok(model),
            Err(e @ BackendError::Unsupported(_)) => {
                tracing::debug!(file = %file.display(), backend = b.name(), reason = %e, "not for this backend: offered to the next");
                passed = Some(e);
            }
            Err(error) => {
                return Err(match why {
                    None => LoadError::Backend(error),
                    Some(why) => LoadError::Needs {
                        needs: b.title(),
                        why,
                        error,
                    },
                })
            }
        }
    }
    // The last backend passed it on too: its reason stands.
    Err(LoadError::Backend(passed.unwrap_or_else(|| {
        BackendError::Load("no backend reads this kind of file".into())
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_names_its_backend() {
        for kind in [BackendKind::Trees, BackendKind::Onnx, BackendKind::Python] {
            let b = named(kind);
            let r = BACKENDS.iter().find(|r| r.kind == kind).unwrap();
            assert_eq!(b.name(), r.backend.name());
        }
        assert_eq!(named(BackendKind::Trees).name(), "trees");
        assert_eq!(named(BackendKind::Onnx).name(), "onnx");
    }

    #[test]
    fn extensions_are_listed_once_in_list_order() {
        assert_eq!(
            model_extensions(),
            ["json", "ubj", "txt", "lgb", "onnx", "model"]
        );
    }

    #[test]
    fn onnx_graphs_are_offered_to_the_tree_engine_first() {
        let takers = |f: &str| -> Vec<&str> {
            BACKENDS
                .iter()
                .filter(|r| r.backend.takes(Path::new(f)))
                .map(|r| r.backend.name())
                .collect()
        };
        assert_eq!(takers("m/1/model.onnx"), ["trees", "onnx"]);
        assert_eq!(takers("m/1/MODEL.ONNX"), ["trees", "onnx"]);
        assert_eq!(takers("m/1/model.json"), ["trees"]);
        // Formats recognised by content: the tree engine's.
        assert_eq!(takers("m/1/model.bin"), ["trees"]);
    }
}
