#!/usr/bin/env python3
"""Compares freshly generated fixture files with the committed ones.

    python3 .ci/compare_generated.py FRESH_DIR COMMITTED_DIR [--ignore NAME ...]

Every file under FRESH_DIR must exist under COMMITTED_DIR and match it, and every file under
COMMITTED_DIR must have been generated (except the names given with --ignore, such as the
generator script itself). "Match" means:

- identical bytes, or else
- JSON (`.json`): the same structure (keys in the same order, lists of the same length, the same
  strings, booleans and integers), and floating-point numbers within the tolerance: the value of
  the nearest `"tolerance"` key in an enclosing object, else 1e-5. Strings holding numbers (as
  XGBoost writes `"[5E-1]"`) are compared as text below;
- ONNX (`.onnx`): the decoded model (graph, nodes, attributes, initializers, opsets, metadata)
  compared as JSON above, tensors as lists of numbers;
- text (`.txt`, `.toml`, `.csv`, ...): the same lines with the same text between the numbers,
  integers equal and other numbers within 1e-5;
- anything else: identical bytes.

A number `a` is within `tol` of `b` when |a - b| <= tol * max(1, |a|, |b|): an absolute tolerance
for numbers up to 1 (probabilities), a relative one above (regression values, thresholds).

Prints one line per file and, for each differing file, its key path (or line) and worst
difference; exits 1 when anything differs.
"""
import argparse
import json
import math
import re
import sys
from pathlib import Path

DEFAULT_TOL = 1e-5
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)\b", re.I)
INTEGER = re.compile(r"[-+]?\d+$")
TEXT_SUFFIXES = {".txt", ".toml", ".csv", ".md", ".py", ".lua", ".cfg", ".ini", ".yaml", ".yml"}


class Diffs:
    """The differences found in one file: hard ones (structure, text) and the worst number."""

    def __init__(self):
        self.hard = []          # (path, message)
        self.worst = None       # (excess ratio, |diff|, tol, path, a, b)

    def fail(self, path, msg):
        self.hard.append((path, msg))

    def number(self, path, a, b, tol):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return
        if a == b:
            return
        d = abs(a - b)
        if math.isnan(d):
            self.fail(path, f"{a!r} vs {b!r}")
            return
        allowed = tol * max(1.0, abs(a), abs(b))
        ratio = d / allowed if allowed else math.inf
        if self.worst is None or ratio > self.worst[0]:
            self.worst = (ratio, d, tol, path, a, b)

    @property
    def ok(self):
        return not self.hard and (self.worst is None or self.worst[0] <= 1.0)


def compare_text_line(diffs, path, a, b, tol):
    """Text with numbers: the text between numbers equal, numbers close."""
    ta, tb = NUMBER.split(a), NUMBER.split(b)
    na, nb = NUMBER.findall(a), NUMBER.findall(b)
    if ta != tb or len(na) != len(nb):
        diffs.fail(path, f"{a[:120]!r} vs {b[:120]!r}")
        return
    for i, (x, y) in enumerate(zip(na, nb)):
        if x == y:
            continue
        if INTEGER.match(x) and INTEGER.match(y):
            diffs.fail(f"{path} number {i}", f"{x} vs {y}")
        else:
            diffs.number(f"{path} number {i}", float(x), float(y), tol)


def compare_json(diffs, a, b, path="", tol=DEFAULT_TOL):
    if isinstance(a, dict) and isinstance(b, dict):
        t = a.get("tolerance")
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            tol = float(t)
        if list(a) != list(b):
            diffs.fail(path or "/", f"keys {list(a)} vs {list(b)}")
        for k in a:
            if k in b:
                compare_json(diffs, a[k], b[k], f"{path}/{k}", tol)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.fail(path, f"length {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            compare_json(diffs, x, y, f"{path}[{i}]", tol)
    elif isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        if a is not b:
            diffs.fail(path, f"{a!r} vs {b!r}")
    elif isinstance(a, int) and isinstance(b, int):
        if a != b:
            diffs.fail(path, f"{a} vs {b}")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        diffs.number(path, float(a), float(b), tol)
    elif isinstance(a, str) and isinstance(b, str):
        if a != b:
            compare_text_line(diffs, path, a, b, tol)
    else:
        diffs.fail(path, f"{type(a).__name__} {a!r:.60} vs {type(b).__name__} {b!r:.60}")


def onnx_as_json(path):
    """An ONNX model as plain JSON values, tensors decoded to lists of numbers."""
    import onnx
    from onnx import helper, numpy_helper
    from google.protobuf.json_format import MessageToDict

    def tensor(t):
        arr = numpy_helper.to_array(t)
        values = arr.ravel().tolist()
        if arr.dtype.kind in "OSU":
            values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                      for v in values]
        return {"name": t.name, "data_type": t.data_type, "dims": list(t.dims), "values": values}

    def value(v):
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if isinstance(v, onnx.TensorProto):
            return tensor(v)
        if isinstance(v, onnx.GraphProto):
            return graph(v)
        if isinstance(v, (list, tuple)):
            return [value(x) for x in v]
        if isinstance(v, (int, float, str)):
            return v
        return MessageToDict(v, preserving_proto_field_name=True)

    def graph(g):
        return {
            "name": g.name,
            "doc_string": g.doc_string,
            "input": [MessageToDict(x, preserving_proto_field_name=True) for x in g.input],
            "output": [MessageToDict(x, preserving_proto_field_name=True) for x in g.output],
            "value_info": [MessageToDict(x, preserving_proto_field_name=True)
                           for x in g.value_info],
            "initializer": [tensor(t) for t in g.initializer],
            "node": [{
                "name": n.name, "op_type": n.op_type, "domain": n.domain,
                "input": list(n.input), "output": list(n.output),
                "attribute": {a.name: value(helper.get_attribute_value(a)) for a in n.attribute},
            } for n in g.node],
        }

    m = onnx.load(str(path))
    return {
        "ir_version": m.ir_version,
        "producer_name": m.producer_name,
        "producer_version": m.producer_version,
        "domain": m.domain,
        "model_version": m.model_version,
        "doc_string": m.doc_string,
        "opset_import": [[o.domain, o.version] for o in m.opset_import],
        "metadata_props": [[p.key, p.value] for p in m.metadata_props],
        "functions": [MessageToDict(f, preserving_proto_field_name=True) for f in m.functions],
        "graph": graph(m.graph),
    }


def compare_file(fresh, committed):
    diffs = Diffs()
    a, b = fresh.read_bytes(), committed.read_bytes()
    if a == b:
        return diffs
    suffix = fresh.suffix.lower()
    if suffix == ".json":
        try:
            ja, jb = json.loads(a), json.loads(b)
        except ValueError as e:
            diffs.fail("/", f"not JSON: {e}")
            return diffs
        compare_json(diffs, ja, jb)
    elif suffix == ".onnx":
        try:
            compare_json(diffs, onnx_as_json(fresh), onnx_as_json(committed))
        except Exception as e:  # a file onnx cannot read differs in a way to show
            diffs.fail("/", f"cannot decode ONNX: {e}")
    elif suffix in TEXT_SUFFIXES:
        la, lb = a.decode("utf-8").splitlines(), b.decode("utf-8").splitlines()
        if len(la) != len(lb):
            diffs.fail("/", f"{len(la)} lines vs {len(lb)}")
        for i, (x, y) in enumerate(zip(la, lb), 1):
            if x != y:
                compare_text_line(diffs, f"line {i}", x, y, DEFAULT_TOL)
    else:
        diffs.fail("/", f"bytes differ ({len(a)} vs {len(b)} bytes)")
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fresh", type=Path, help="the folder the generator just wrote")
    ap.add_argument("committed", type=Path, help="the committed folder")
    ap.add_argument("--ignore", action="append", default=[],
                    help="a committed file (relative path) that is not generated")
    ap.add_argument("--label", help="the committed folder's name in messages")
    a = ap.parse_args()
    label = a.label or str(a.committed)

    fresh = {p.relative_to(a.fresh).as_posix() for p in a.fresh.rglob("*") if p.is_file()}
    committed = {p.relative_to(a.committed).as_posix()
                 for p in a.committed.rglob("*") if p.is_file()}
    committed -= set(a.ignore)
    committed = {p for p in committed if "__pycache__" not in p}
    bad = 0
    for rel in sorted(fresh - committed):
        print(f"DIFFERS {label}/{rel}: generated but not committed")
        bad += 1
    for rel in sorted(committed - fresh):
        print(f"DIFFERS {label}/{rel}: committed but no longer generated")
        bad += 1
    for rel in sorted(fresh & committed):
        d = compare_file(a.fresh / rel, a.committed / rel)
        name = f"{label}/{rel}"
        w = d.worst
        worst = (f"worst |diff| {w[1]:.3g} at {w[3]} ({w[4]!r} vs committed {w[5]!r}, "
                 f"tolerance {w[2]:g})") if w else ""
        if d.ok:
            print(f"ok      {name}: " + (f"within tolerance, {worst}" if w else "identical"))
            continue
        bad += 1
        print(f"DIFFERS {name} (generated vs committed):")
        for path, msg in d.hard[:20]:
            print(f"    {path}: {msg}")
        if len(d.hard) > 20:
            print(f"    ... and {len(d.hard) - 20} more")
        if w and w[0] > 1.0:
            print(f"    {worst}: beyond tolerance")
        elif w:
            print(f"    (numbers: {worst})")
    if bad:
        print(f"{bad} file(s) under {label} differ from what the generator writes now; "
              "regenerate them and commit, or find out why the generator changed.")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
