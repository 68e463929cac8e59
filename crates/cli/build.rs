//! Marks the end-to-end tests that need what a machine with only Rust lacks: ONNX Runtime
//! (`cfg(no_onnxruntime)`), Python with the training libraries (`cfg(no_python_ml)`) and Python
//! with NumPy and pandas, for Python predictors (`cfg(no_python_numpy)`), redis-server
//! (`cfg(no_redis)`), curl (`cfg(no_curl)`), Python's CloudEvents SDK (`cfg(no_python_cloudevents)`) and requests (`cfg(no_python_requests)`). Where
//! they are missing (and outside CI) the tests show as ignored, with the reason, in cargo's
//! summary.

use ferroserve_probe::{build::ignore_unless, Need, PYTHON_ML};

fn main() {
    ignore_unless("no_onnxruntime", Need::OnnxRuntime);
    ignore_unless("no_python_ml", Need::PythonModules(PYTHON_ML));
    ignore_unless("no_python_numpy", Need::PythonModules(&["numpy", "pandas"]));
    ignore_unless("no_redis", Need::Program("redis-server"));
    ignore_unless("no_curl", Need::Program("curl"));
    ignore_unless("no_python_requests", Need::PythonModules(&["requests"]));
    ignore_unless(
        "no_python_cloudevents",
        Need::PythonModules(&["cloudevents"]),
    );
}
