//! `ferroserve-core` owns the vocabulary every other crate shares: the v2 data types and
//! tensors, inference requests and responses, model metadata and configuration (`model.toml`, and
//! what one load may change in it),
//! the [`Backend`], [`LoadedModel`] and [`Instance`] traits backends implement, and the
//! transport-neutral [`ErrorKind`] that HTTP and gRPC each map exactly once. It has no async
//! runtime and no HTTP.

pub mod config;
pub mod datatype;
pub mod error;
pub mod model;
pub mod overrides;
pub mod raw;
pub mod task;
pub mod tensor;

pub use config::{ConfigError, ModelConfig};
pub use datatype::DataType;
pub use error::{BackendError, ErrorDetail, ErrorKind, InferError, Problem};
pub use model::{
    Adapter, AdapterRequest, Backend, Instance, LoadedModel, ModelMetadata, TensorMeta,
};
pub use overrides::ConfigOverride;
pub use task::{ClassLabels, Classifier, Regressor, Task};
pub use tensor::{
    InferRequest, InferResponse, Param, Parameters, RequestedOutput, Tensor, TensorData,
};
