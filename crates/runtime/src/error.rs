//! The runtime's errors: why an artifact cannot be loaded ([`LoadError`]) and what is wrong with
//! a repository's folders and files ([`RepositoryError`]). A model or version that cannot be
//! served keeps its [`Failure`](crate::Failure): the reason answers give (the path named relative
//! to the repository, then one of these messages, which never quote a file) and the detail the
//! log gets.

use std::path::PathBuf;

use ferroserve_core::BackendError;

/// Why an artifact could not be loaded. The messages do not name the file: the caller does.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A Python pickle, which is never unpickled; the message says how to import it.
    #[error("{}", crate::repository::pickle_help(.name))]
    Pickle {
        /// The file's name.
        name: String,
    },
    /// The backend that took the artifact could not load it.
    #[error(transparent)]
    Backend(BackendError),
    /// The first backend offered the artifact passed it on (`why`), and the next one, which
    /// the model therefore needs, could not load it either (`error`).
    #[error("{error} (it needs {needs} because {why})")]
    Needs {
        needs: &'static str,
        why: BackendError,
        error: BackendError,
    },
    /// The artifact loaded but `model.toml` does not fit it (feature counts, classes).
    #[error("model.toml: {0}")]
    Config(String),
}

/// What is wrong with a repository, or with one of its folders or files (whose path the
/// failure's reason names before this message).
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The repository itself cannot be read.
    #[error("cannot read model repository {}: {error}", .path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A folder or file cannot be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The artifact `model.toml` names is not there.
    #[error("does not exist (model.toml file = {0:?})")]
    NoSuchFile(String),
    /// A version folder holds no model file.
    #[error("no model file (expected one of .{})", .0.join(", ."))]
    NoModelFile(Vec<&'static str>),
    /// A version folder holds several model files and `model.toml` names none of them.
    #[error("{0} model files; name one with `file = \"...\"` in model.toml")]
    SeveralModelFiles(usize),
    /// `model.toml`'s `name` is not its folder's.
    #[error("name = {name:?} but the folder is {folder:?}; they must match")]
    NameMismatch { name: String, folder: String },
    /// `version_policy` names versions without a folder.
    #[error("version_policy names versions {0:?} that have no folder")]
    MissingVersions(Vec<u64>),
    /// The artifact cannot be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages answers quote, word for word.
    #[test]
    fn messages() {
        let e = LoadError::Needs {
            needs: "ONNX Runtime",
            why: BackendError::Unsupported("unsupported onnx model: operator 'MatMul'".into()),
            error: BackendError::Load("ONNX Runtime is not installed".into()),
        };
        assert_eq!(
            e.to_string(),
            "ONNX Runtime is not installed (it needs ONNX Runtime because unsupported onnx model: operator 'MatMul')"
        );
        assert_eq!(
            LoadError::Config("class_labels has 2 labels".into()).to_string(),
            "model.toml: class_labels has 2 labels"
        );
        assert_eq!(
            LoadError::Backend(BackendError::Load("bad".into())).to_string(),
            "bad"
        );
        assert!(LoadError::Pickle {
            name: "m.pkl".into()
        }
        .to_string()
        .starts_with("m.pkl is a Python pickle"));
        assert_eq!(
            RepositoryError::NoModelFile(vec!["json", "onnx"]).to_string(),
            "no model file (expected one of .json, .onnx)"
        );
        assert_eq!(
            RepositoryError::SeveralModelFiles(2).to_string(),
            "2 model files; name one with `file = \"...\"` in model.toml"
        );
        assert_eq!(
            RepositoryError::NoSuchFile("x.json".into()).to_string(),
            "does not exist (model.toml file = \"x.json\")"
        );
        assert_eq!(
            RepositoryError::NameMismatch {
                name: "a".into(),
                folder: "b".into()
            }
            .to_string(),
            "name = \"a\" but the folder is \"b\"; they must match"
        );
        assert_eq!(
            RepositoryError::MissingVersions(vec![3, 4]).to_string(),
            "version_policy names versions [3, 4] that have no folder"
        );
        let e = RepositoryError::Unreadable {
            path: PathBuf::from("/r"),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(e.to_string(), "cannot read model repository /r: gone");
    }
}
