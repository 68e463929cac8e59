//! Marks the tests that need ONNX Runtime: without it (and outside CI) `cfg(no_onnxruntime)` is
//! set and they show as ignored, with the reason, in cargo's summary.

use ferroserve_probe::{build::ignore_unless, Need};

fn main() {
    ignore_unless("no_onnxruntime", Need::OnnxRuntime);
}
