"""The models Triton's client examples and perf_analyzer runs expect, built as ONNX graphs (with
the `onnx` package) into a model repository for ferroserve to serve on ONNX Runtime:

- `simple`: INT32 [-1, 16] INPUT0, INPUT1 -> OUTPUT0 = sum, OUTPUT1 = difference
- `simple_int8`: the same in INT8
- `simple_string`: the same on numbers written as BYTES strings
- `simple_identity`: BYTES in, the same BYTES out

Used by tests/python/test_triton_examples.py and tests/perf_analyzer/run.sh
(`python3 tests/python/triton_models.py DIR`).
"""
import os
import sys

import onnx
from onnx import TensorProto, helper


def _save(repo, name, nodes, inputs, outputs):
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(os.path.join(repo, name, "1"))
    with open(os.path.join(repo, name, "model.toml"), "w") as f:
        f.write('backend = "onnx"\n')
    onnx.save(model, os.path.join(repo, name, "1", "model.onnx"))


def _tensor(name, elem):
    return helper.make_tensor_value_info(name, elem, ["batch", 16])


def build_repository(repo):
    for name, elem in [("simple", TensorProto.INT32), ("simple_int8", TensorProto.INT8)]:
        _save(repo, name,
              [helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
               helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"])],
              [_tensor("INPUT0", elem), _tensor("INPUT1", elem)],
              [_tensor("OUTPUT0", elem), _tensor("OUTPUT1", elem)])
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


if __name__ == "__main__":
    build_repository(sys.argv[1])
