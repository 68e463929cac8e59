//! `ferroserve-onnx-proto` owns the ONNX file format as data and nothing else: a hand-written
//! subset of `onnx.proto` (ONNX's protobuf schema) as `prost` messages, enough to read a model's
//! graph, its nodes and their attributes, the declared inputs and outputs with their element
//! types and shapes, and initializers. Field numbers are those of `onnx.proto` (proto2; repeated
//! numbers are accepted packed or unpacked). Fields nobody here needs (sub-graphs, sparse
//! tensors, functions, training info, doc strings ...) are left out and skipped when decoding, as
//! protobuf allows. There is no build script and no `protoc`: these types are the schema. Two
//! peers read ONNX files through it: the tree engine's ONNX-ML loader
//! (`ferroserve_trees::loaders::onnx_ml`) and the ONNX Runtime backend, which reads what the
//! session does not say (ZipMap and classifier labels, producer, operators) from the same bytes.
//!
//! Enumerations (`AttributeProto.type`, `TensorProto.data_type`) stay raw `i32` in the messages;
//! [`AttributeType::from_i32`] and [`DataType::from_i32`] decode them with an exhaustive match.

/// `ModelProto`: the top-level ONNX file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// The IR version the file was written for.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Operator sets the graph uses (domain and version).
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    /// The computation.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Free-form key/value metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `OperatorSetIdProto`: one imported operator set. The empty domain is the default
/// `ai.onnx` set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `StringStringEntryProto`: a metadata entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `GraphProto`: nodes in topological order, declared inputs and outputs, constant tensors.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constant tensors. Older IR versions also list them in `input`.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `NodeProto`: one operator application.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// The operator's domain: empty (or `ai.onnx`) for the default set, `ai.onnx.ml` for the
    /// classical machine-learning operators.
    #[prost(string, tag = "7")]
    pub domain: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// `AttributeProto`: a named attribute; `type` says which of the value fields is in use.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    /// An [`AttributeType`] code.
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// A string, as bytes (ONNX says UTF-8, but node modes are compared as bytes).
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
}

/// `AttributeProto.AttributeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    Undefined,
    Float,
    Int,
    String,
    Tensor,
    Graph,
    SparseTensor,
    TypeProto,
    Floats,
    Ints,
    Strings,
    Tensors,
    Graphs,
    SparseTensors,
    TypeProtos,
}

impl AttributeType {
    /// Decodes the wire code; `None` for a code `onnx.proto` does not define.
    pub fn from_i32(code: i32) -> Option<AttributeType> {
        Some(match code {
            0 => AttributeType::Undefined,
            1 => AttributeType::Float,
            2 => AttributeType::Int,
            3 => AttributeType::String,
            4 => AttributeType::Tensor,
            5 => AttributeType::Graph,
            11 => AttributeType::SparseTensor,
            13 => AttributeType::TypeProto,
            6 => AttributeType::Floats,
            7 => AttributeType::Ints,
            8 => AttributeType::Strings,
            9 => AttributeType::Tensors,
            10 => AttributeType::Graphs,
            12 => AttributeType::SparseTensors,
            14 => AttributeType::TypeProtos,
            _ => return None,
        })
    }

    /// The name `onnx.proto` gives the type, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeType::Undefined => "UNDEFINED",
            AttributeType::Float => "FLOAT",
            AttributeType::Int => "INT",
            AttributeType::String => "STRING",
            AttributeType::Tensor => "TENSOR",
            AttributeType::Graph => "GRAPH",
            AttributeType::SparseTensor => "SPARSE_TENSOR",
            AttributeType::TypeProto => "TYPE_PROTO",
            AttributeType::Floats => "FLOATS",
            AttributeType::Ints => "INTS",
            AttributeType::Strings => "STRINGS",
            AttributeType::Tensors => "TENSORS",
            AttributeType::Graphs => "GRAPHS",
            AttributeType::SparseTensors => "SPARSE_TENSORS",
            AttributeType::TypeProtos => "TYPE_PROTOS",
        }
    }
}

/// `TensorProto`: a constant tensor. Values are in the typed field matching `data_type`
/// (`float_data`, `int64_data`, `double_data`, `string_data`) or little-endian in `raw_data`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// A [`DataType`] code.
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    /// 0 = DEFAULT (the data is in this message), 1 = EXTERNAL (in another file).
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// `TensorProto.DataType`: element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Undefined,
    Float,
    Uint8,
    Int8,
    Uint16,
    Int16,
    Int32,
    Int64,
    String,
    Bool,
    Float16,
    Double,
    Uint32,
    Uint64,
    Complex64,
    Complex128,
    Bfloat16,
    Float8E4M3Fn,
    Float8E4M3Fnuz,
    Float8E5M2,
    Float8E5M2Fnuz,
    Uint4,
    Int4,
    Float4E2M1,
    Float8E8M0,
    Uint2,
    Int2,
    Float6E2M3,
    Float6E3M2,
}

impl DataType {
    /// Decodes the wire code; `None` for a code `onnx.proto` does not define.
    pub fn from_i32(code: i32) -> Option<DataType> {
        Some(match code {
            0 => DataType::Undefined,
            1 => DataType::Float,
            2 => DataType::Uint8,
            3 => DataType::Int8,
            4 => DataType::Uint16,
            5 => DataType::Int16,
            6 => DataType::Int32,
            7 => DataType::Int64,
            8 => DataType::String,
            9 => DataType::Bool,
            10 => DataType::Float16,
            11 => DataType::Double,
            12 => DataType::Uint32,
            13 => DataType::Uint64,
            14 => DataType::Complex64,
            15 => DataType::Complex128,
            16 => DataType::Bfloat16,
            17 => DataType::Float8E4M3Fn,
            18 => DataType::Float8E4M3Fnuz,
            19 => DataType::Float8E5M2,
            20 => DataType::Float8E5M2Fnuz,
            21 => DataType::Uint4,
            22 => DataType::Int4,
            23 => DataType::Float4E2M1,
            24 => DataType::Float8E8M0,
            25 => DataType::Uint2,
            26 => DataType::Int2,
            27 => DataType::Float6E2M3,
            28 => DataType::Float6E3M2,
            _ => return None,
        })
    }

    /// The name `onnx.proto` gives the type, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Undefined => "UNDEFINED",
            DataType::Float => "FLOAT",
            DataType::Uint8 => "UINT8",
            DataType::Int8 => "INT8",
            DataType::Uint16 => "UINT16",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::String => "STRING",
            DataType::Bool => "BOOL",
            DataType::Float16 => "FLOAT16",
            DataType::Double => "DOUBLE",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Complex64 => "COMPLEX64",
            DataType::Complex128 => "COMPLEX128",
            DataType::Bfloat16 => "BFLOAT16",
            DataType::Float8E4M3Fn => "FLOAT8E4M3FN",
            DataType::Float8E4M3Fnuz => "FLOAT8E4M3FNUZ",
            DataType::Float8E5M2 => "FLOAT8E5M2",
            DataType::Float8E5M2Fnuz => "FLOAT8E5M2FNUZ",
            DataType::Uint4 => "UINT4",
            DataType::Int4 => "INT4",
            DataType::Float4E2M1 => "FLOAT4E2M1",
            DataType::Float8E8M0 => "FLOAT8E8M0",
            DataType::Uint2 => "UINT2",
            DataType::Int2 => "INT2",
            DataType::Float6E2M3 => "FLOAT6E2M3",
            DataType::Float6E3M2 => "FLOAT6E3M2",
        }
    }
}

/// `ValueInfoProto`: a named value (graph input or output) and its type.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `TypeProto`. In `onnx.proto` the value is a `oneof` (tensor, sequence, map, optional,
/// sparse tensor, opaque); only the tensor member (field 1) is read here, so a value of
/// another kind reads as `tensor_type: None`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

/// `TypeProto.Tensor`: element type and (possibly partly symbolic) shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProtoTensor {
    /// A [`DataType`] code.
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`: a fixed size, a symbolic name, or neither (unknown). In
/// `onnx.proto` `dim_value` and `dim_param` form a `oneof`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}
