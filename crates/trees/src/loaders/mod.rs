//! Loaders: each reads one library's file format into a [`Forest`], rejecting at load time, with
//! an error naming the construct, anything it does not implement.

pub mod lightgbm;
pub mod onnx_ml;
pub mod xgboost;

use std::path::Path;

use crate::{Forest, TreeError};

/// The file formats the engine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    XgboostJson,
    XgboostUbjson,
    LightgbmText,
    Onnx,
}

impl ModelFormat {
    /// Guesses the format from a file name and its first bytes.
    pub fn detect(path: &Path, bytes: &[u8]) -> Option<ModelFormat> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("onnx") => return Some(ModelFormat::Onnx),
            Some("ubj") | Some("ubjson") => return Some(ModelFormat::XgboostUbjson),
            Some("json") => return Some(ModelFormat::XgboostJson),
            Some("lgb") | Some("lgbm") => return Some(ModelFormat::LightgbmText),
            _ => {}
        }
        let head = &bytes[..bytes.len().min(64)];
        if head.starts_with(b"tree\n") || head.starts_with(b"tree\r\n") {
            Some(ModelFormat::LightgbmText)
        } else if head.first() == Some(&b'{') && head.get(1) != Some(&b'L') {
            let text = String::from_utf8_lossy(head);
            if text.trim_start_matches('{').trim_start().starts_with('"') {
                Some(ModelFormat::XgboostJson)
            } else {
                Some(ModelFormat::XgboostUbjson)
            }
        } else if head.first() == Some(&b'{') {
            Some(ModelFormat::XgboostUbjson)
        } else if head.first() == Some(&0x08) {
            // An ONNX ModelProto starts with field 1 (ir_version, varint).
            Some(ModelFormat::Onnx)
        } else {
            None
        }
    }
}

/// Reads a model file, detecting its format from the name and content. Errors do not name the
/// file (the caller knows how to name it: the server names it relative to its repository).
pub fn load_path(path: &Path) -> Result<Forest, TreeError> {
    let bytes = std::fs::read(path).map_err(TreeError::Io)?;
    let format = ModelFormat::detect(path, &bytes).ok_or_else(|| {
        TreeError::unsupported(
            "model",
            "cannot tell the file's format (expected XGBoost .json/.ubj, LightGBM text or ONNX)",
        )
    })?;
    load_bytes(format, &bytes)
}

/// Reads a model of a known format from memory and checks the result.
pub fn load_bytes(format: ModelFormat, bytes: &[u8]) -> Result<Forest, TreeError> {
    let forest = match format {
        ModelFormat::XgboostJson => xgboost::from_json_bytes(bytes)?,
        ModelFormat::XgboostUbjson => xgboost::from_ubjson_bytes(bytes)?,
        ModelFormat::LightgbmText => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| TreeError::parse("lightgbm", format!("not UTF-8 text: {e}")))?;
            lightgbm::from_str(text)?
        }
        ModelFormat::Onnx => onnx_ml::from_bytes(bytes)?,
    };
    forest.validate()?;
    Ok(forest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The caller names the file (the server names it relative to its repository): the errors
    /// must not give its place on disk.
    #[test]
    fn errors_do_not_name_the_file() {
        let e = load_path(Path::new("/no-such-folder/secret-place/model.json")).unwrap_err();
        assert!(matches!(e, TreeError::Io(_)), "{e:?}");
        assert!(e.to_string().starts_with("cannot read the file: "), "{e}");
        assert!(!e.to_string().contains("secret-place"), "{e}");
        let dir = std::env::temp_dir().join(format!("ferroserve-trees-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("model.bin");
        std::fs::write(&file, b"hello").unwrap();
        let e = load_path(&file).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            e.to_string().contains("cannot tell the file's format"),
            "{e}"
        );
        assert!(!e.to_string().contains("ferroserve-trees-"), "{e}");
    }
}
