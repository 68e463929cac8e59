//! A model folder sent with a load (Triton's `file:<path>` load parameters): every path is
//! checked before anything is written — relative, `/`-separated, no empty, `.` or `..`
//! component, none longer than 255 bytes (the usual file-name limit), no NUL, and no path both
//! a file and a folder — then the files are written into a fresh private folder
//! (`<temp>/ferroserve-load-*/<model>/`, readable by the server's user only), which is loaded as
//! the model's folder and removed once the load has ended (the backends keep what they read in
//! memory).
//!
//! Failures name the path as the client sent it (cut short), never the private folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Most bytes of one path component (Linux's `NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Most files one load may send.
pub const MAX_FILES: usize = 1000;

/// One file of a model folder sent with a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// The path inside the model folder, e.g. `1/model.onnx` (as the client sent it, after
    /// `file:`).
    pub path: String,
    pub content: Vec<u8>,
}

/// A path as errors name it: at most 40 characters of it.
fn shown(path: &str) -> String {
    let mut s: String = path.chars().take(40).collect();
    if s.len() < path.len() {
        s.push_str(&format!("... ({} bytes)", path.len()));
    }
    format!("file:{s}")
}

/// The components of `path` if it is one a model folder may hold.
fn components(path: &str) -> Result<Vec<&str>, String> {
    let bad = |why: &str| Err(format!("{}: {why}", shown(path)));
    if path.is_empty() {
        return bad("an empty path");
    }
    if path.starts_with('/') || path.starts_with('\\') || Path::new(path).has_root() {
        return bad("an absolute path (paths are relative to the model folder)");
    }
    if path.contains('\0') {
        return bad("a NUL byte in the path");
    }
    if path.contains('\\') {
        return bad("a backslash in the path (separate folders with '/')");
    }
    let parts: Vec<&str> = path.split('/').collect();
    for p in &parts {
        match *p {
            "" => return bad("an empty path component"),
            "." | ".." => return bad("a '.' or '..' path component"),
            p if p.len() > MAX_COMPONENT_BYTES => {
                return bad(&format!(
                    "a path component of {} bytes (at most {MAX_COMPONENT_BYTES})",
                    p.len()
                ))
            }
            _ => {}
        }
    }
    Ok(parts)
}

/// Checks every path of `files` (see the module doc), before anything is written.
pub fn check(files: &[ModelFile]) -> Result<(), String> {
    if files.len() > MAX_FILES {
        return Err(format!(
            "{} files; a load may send at most {MAX_FILES}",
            files.len()
        ));
    }
    let mut file_paths = BTreeSet::new();
    let mut dir_paths = BTreeSet::new();
    for f in files {
        let parts = components(&f.path)?;
        for i in 1..parts.len() {
            dir_paths.insert(parts[..i].join("/"));
        }
        if !file_paths.insert(parts.join("/")) {
            return Err(format!("{}: sent twice", shown(&f.path)));
        }
    }
    if let Some(both) = file_paths.intersection(&dir_paths).next() {
        return Err(format!("{}: both a file and a folder", shown(both)));
    }
    Ok(())
}

/// A private folder holding one model folder; removed when dropped.
pub struct Written {
    dir: tempfile::TempDir,
}

impl Written {
    /// The folder to load as a repository: it holds the model folder and nothing else.
    pub fn repository(&self) -> &Path {
        self.dir.path()
    }
}

/// Checks `files`, then writes them as the folder of the model `name` in a fresh private
/// folder. The error never names the private folder (the log gets it).
pub fn write(name: &str, files: &[ModelFile]) -> Result<Written, String> {
    check(files)?;
    let cannot = |what: &str, e: std::io::Error, at: &Path| {
        tracing::warn!(path = %at.display(), error = %e, "cannot write the files of a load");
        format!("cannot {what} on the server: {}", e.kind())
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix("ferroserve-load-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let dir = builder
        .tempdir()
        .map_err(|e| cannot("make a private folder", e, &std::env::temp_dir()))?;
    let model: PathBuf = dir.path().join(name);
    std::fs::create_dir(&model).map_err(|e| cannot("make the model folder", e, &model))?;
    for f in files {
        let p = model.join(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| cannot("make a folder", e, parent))?;
        }
        std::fs::write(&p, &f.content).map_err(|e| cannot("write a file", e, &p))?;
    }
    Ok(Written { dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> ModelFile {
        ModelFile {
            path: path.into(),
            content: b"x".to_vec(),
        }
    }

    #[test]
    fn paths_are_relative_plain_and_short() {
        check(&[
            file("1/model.onnx"),
            file("model.toml"),
            file("2/sub/a.bin"),
        ])
        .unwrap();
        check(&[file(&"A".repeat(255))]).unwrap();
        for (path, says) in [
            ("", "empty path"),
            ("/etc/passwd", "absolute"),
            ("\\x", "absolute"),
            ("1//model.onnx", "empty path component"),
            ("1/", "empty path component"),
            ("../x", "'..'"),
            ("1/../../x", "'..'"),
            ("./x", "'.'"),
            ("a\0b", "NUL"),
            ("a\\..\\b", "backslash"),
        ] {
            let e = check(&[file(path)]).unwrap_err();
            assert!(e.contains(says), "{path:?}: {e}");
        }
        let long = "A".repeat(256);
        let e = check(&[file(&long)]).unwrap_err();
        assert!(
            e.contains("a path component of 256 bytes (at most 255)"),
            "{e}"
        );
        // The path is cut short in the message.
        assert!(e.len() < 160, "{e}");
        let e = check(&[file(&format!("1/{long}/m.onnx"))]).unwrap_err();
        assert!(e.contains("256 bytes"), "{e}");
        let e = check(&[file("1/m"), file("1/m")]).unwrap_err();
        assert!(e.contains("sent twice"), "{e}");
        let e = check(&[file("1/m"), file("1/m/x")]).unwrap_err();
        assert!(e.contains("file:1/m: both a file and a folder"), "{e}");
        let many: Vec<ModelFile> = (0..=MAX_FILES).map(|i| file(&format!("f{i}"))).collect();
        assert!(check(&many).unwrap_err().contains("at most"));
    }

    #[test]
    fn files_are_written_into_a_private_folder_removed_when_dropped() {
        let w = write(
            "m",
            &[
                ModelFile {
                    path: "1/model.json".into(),
                    content: b"{}".to_vec(),
                },
                file("model.toml"),
            ],
        )
        .unwrap();
        let repo = w.repository().to_path_buf();
        assert_eq!(std::fs::read(repo.join("m/1/model.json")).unwrap(), b"{}");
        assert_eq!(std::fs::read(repo.join("m/model.toml")).unwrap(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&repo).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        drop(w);
        assert!(!repo.exists());
        // Nothing is written when a path is refused.
        assert!(write("m", &[file("ok"), file("../bad")]).is_err());
    }
}
