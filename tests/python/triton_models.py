"""The models Triton's client examples and perf_analyzer runs expect, built as ONNX graphs (with
the `onnx` package) into a model repository for ferroserve to serve on ONNX Runtime:

- `simple`: INT32 [-1, 16] INPUT0, INPUT1 -> OUTPUT0 = sum, OUTPUT1 = difference
- `simple_int8`: the same in INT8
- `simple_string`: the same on numbers written as BYTES strings
- `simple_identity`: BYTES in, the same BYTES out

Used by tests/python/test_triton_examples.py and tests/perf_analyzer/run.sh
(`python3 tests/python/triton_models.py DIR`).

`build_model_control_repository(repo, count)` builds the repository Triton's model control
examples expect: `count` models, among them `simple` with Triton's `max_batch_size: 8`
(`max_request_rows = 8`), the three others above, and more of the same sum and difference in
other integer and float types (`simple_int16`, `simple_int64`, `simple_fp32`, `simple_fp64`).
Used by tests/python/test_model_control.py.
"""
import os
import sys

import onnx
from onnx import TensorProto, helper


def _save(repo, name, nodes, inputs, outputs, toml=""):
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(os.path.join(repo, name, "1"))
    with open(os.path.join(repo, name, "model.toml"), "w") as f:
        f.write('backend = "onnx"\n' + toml)
    onnx.save(model, os.path.join(repo, name, "1", "model.onnx"))


def _tensor(name, elem):
    return helper.make_tensor_value_info(name, elem, ["batch", 16])


def _sum_and_difference(repo, name, elem, toml=""):
    _save(repo, name,
          [helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
           helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"])],
          [_tensor("INPUT0", elem), _tensor("INPUT1", elem)],
          [_tensor("OUTPUT0", elem), _tensor("OUTPUT1", elem)], toml)


def build_repository(repo, simple_toml=""):
    """`simple_toml`: more model.toml lines for `simple`."""
    _sum_and_difference(repo, "simple", TensorProto.INT32, simple_toml)
    _sum_and_difference(repo, "simple_int8", TensorProto.INT8)
    s = TensorProto.STRING
    _save(repo, "simple_string",
          [helper.make_node("Cast", ["INPUT0"], ["a"], to=TensorProto.INT32),
           helper.make_node("Cast", ["INPUT1"], ["b"], to=TensorProto.INT32),
           helper.make_node("Add", ["a", "b"], ["sum"]),
           helper.make_node("Sub", ["a", "b"], ["diff"]),
           helper.make_node("Cast", ["sum"], ["OUTPUT0"], to=s),
           helper.make_node("Cast", ["diff"], ["OUTPUT1"], to=s)],
          [_tensor("INPUT0", s), _tensor("INPUT1", s)],
          [_tensor("OUTPUT0", s), _tensor("OUTPUT1", s)])
    _save(repo, "simple_identity", [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
          [_tensor("INPUT0", s)], [_tensor("OUTPUT0", s)])


# Triton's `simple` says `max_batch_size: 8`: the rows one request may carry, and one batch.
SIMPLE_MAX_BATCH_SIZE_8 = "max_request_rows = 8\n[batching]\nmax_batch_size = 8\n"

_MORE = [("simple_int16", TensorProto.INT16), ("simple_int64", TensorProto.INT64),
         ("simple_fp32", TensorProto.FLOAT), ("simple_fp64", TensorProto.DOUBLE)]


def build_model_control_repository(repo, count):
    """`count` (4 to 8) models; `simple` as Triton's example repository has it."""
    assert 4 <= count <= 4 + len(_MORE), count
    build_repository(repo, SIMPLE_MAX_BATCH_SIZE_8)
    for name, elem in _MORE[:count - 4]:
        _sum_and_difference(repo, name, elem)


if __name__ == "__main__":
    build_repository(sys.argv[1])
