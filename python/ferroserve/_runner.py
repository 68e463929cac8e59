"""The worker side of ferroserve's Python backend (run by the server; not for users).

The server starts ``python -u -c BOOTSTRAP`` with this module and ``ferroserve`` sent on stdin
and a Unix socket at fd 3. Frames: a 4-byte little-endian body length, a 1-byte tag, the body.
Tensors travel as raw little-endian bytes (see ``crates/python/src/wire.rs``, which writes and
reads the same layout): the batch is read into one buffer and viewed by NumPy without a copy.
"""

import asyncio
import importlib
import inspect
import json
import math
import os
import platform
import socket
import struct
import sys
import traceback

PREDICT, ADAPT = 1, 2
READY, OK, ERROR, START_FAILED = 16, 17, 18, 19

# Data types by their code (their order in the server's DataType::ALL).
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "BF16", "FP32", "FP64", "BYTES"]
NUMPY = {"BOOL": "?", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
         "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2",
         "FP32": "<f4", "FP64": "<f8"}
CODE = {name: i for i, name in enumerate(DATATYPES)}
# The v2 data type of a NumPy (kind, itemsize) sent as raw bytes.
RAW = {("b", 1): "BOOL", ("u", 1): "UINT8", ("u", 2): "UINT16", ("u", 4): "UINT32",
       ("u", 8): "UINT64", ("i", 1): "INT8", ("i", 2): "INT16", ("i", 4): "INT32",
       ("i", 8): "INT64", ("f", 2): "FP16", ("f", 4): "FP32", ("f", 8): "FP64"}

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_KIND = struct.Struct("<BBB")
_FRAME = struct.Struct("<IB")
_DIMS = [struct.Struct(f"<{r}q") for r in range(9)]


class InputError(Exception):
    """The request is at fault (a parameter an adapter needs is missing or malformed)."""


np = None
pd = None


def _numpy():
    global np
    if np is None:
        import numpy

        np = numpy
    return np


def _pandas():
    global pd
    if pd is None:
        import pandas

        pd = pandas
    return pd


# ---- frames ---------------------------------------------------------------------------------

class Channel:
    def __init__(self, sock):
        self.sock = sock

    def recv_exact(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                return None
            got += k
        return buf

    def recv(self):
        head = self.recv_exact(5)
        if head is None:
            return None, None
        (n,) = _U32.unpack_from(head)
        body = self.recv_exact(n) if n else bytearray()
        if body is None:
            return None, None
        return head[4], body

    def send(self, tag, body):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.sock.sendall(struct.pack("<IB", len(body), tag) + body)

    def send_parts(self, tag, parts):
        n = sum(len(p) for p in parts)
        self.sock.sendall(b"".join([_FRAME.pack(n, tag)] + parts))


def error_json(e, blame=""):
    d = {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc(),
         "blame": blame}
    if isinstance(e, ModuleNotFoundError) and e.name:
        d["missing"] = e.name
    return d


# ---- tensors --------------------------------------------------------------------------------

def decode_tensors(body):
    """[(name, array, is_json)] from a tensors body, arrays viewing the body's bytes."""
    numpy = _numpy()
    mv = memoryview(body)
    (count,) = _U32.unpack_from(body, 0)
    at = 4
    out = []
    for _ in range(count):
        (nlen,) = _U16.unpack_from(body, at)
        at += 2
        key = bytes(mv[at:at + nlen])
        name = _NAMES.get(key)
        if name is None:
            name = key.decode("utf-8", "replace")
            if len(_NAMES) < _CACHED:
                _NAMES[key] = name
        at += nlen
        code, flags, rank = _KIND.unpack_from(body, at)
        at += 3
        shape = _DIMS[rank].unpack_from(body, at) if rank < len(_DIMS) else struct.unpack_from(
            f"<{rank}q", body, at)
        at += 8 * rank
        (size,) = _U64.unpack_from(body, at)
        at += 8
        raw = mv[at:at + size]
        at += size
        dt = DATATYPES[code]
        if dt == "BYTES":
            items = []
            i = 0
            while i < size:
                (k,) = _U32.unpack_from(raw, i)
                b = bytes(raw[i + 4:i + 4 + k])
                i += 4 + k
                try:
                    items.append(b.decode("utf-8"))
                except UnicodeDecodeError:
                    items.append(b)
            arr = numpy.empty(len(items), dtype=object)
            arr[:] = items
            arr = arr.reshape(shape)
        else:
            arr = numpy.frombuffer(raw, dtype=NUMPY[dt]).reshape(shape)
        out.append((name, arr, bool(flags & 1)))
    return out


# Tensor names seen, decoded once (a model has a handful; the caches stop growing at _CACHED).
_NAMES = {}
_CACHED = 256


def _jsonable(o):
    numpy = _numpy()
    if isinstance(o, numpy.ndarray):
        return o.tolist()
    if isinstance(o, numpy.generic):
        return o.item()
    if isinstance(o, (bytes, bytearray)):
        return o.decode("utf-8", "replace")
    if isinstance(o, (set, frozenset)):
        return list(o)
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


def _finite(o):
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def json_rows(items):
    rows = []
    for it in items:
        v = json.loads(json.dumps(it, default=_jsonable))
        rows.append(json.dumps(_finite(v), allow_nan=False).encode())
    return rows


def encode_array(name, arr, is_json=False):
    """(header, payload) parts of one tensor."""
    numpy = _numpy()
    if not is_json:
        kind = arr.dtype.kind
        if kind in "biuf":
            if kind == "f" and arr.dtype.itemsize > 8:
                arr = arr.astype("<f8")
            arr = numpy.ascontiguousarray(arr)
            if arr.dtype.byteorder == ">":
                arr = arr.astype(arr.dtype.newbyteorder("<"))
            dt = RAW[(kind, arr.dtype.itemsize)]
            payload = arr.tobytes()
            return _header(name, dt, 0, arr.shape, len(payload)), payload
        if kind == "M":
            arr = numpy.datetime_as_string(arr)
            kind = "U"
        if kind == "c":
            raise TypeError(f"output {name!r}: complex numbers have no v2 data type")
    parts = []
    if is_json:
        flat = json_rows(list(arr)) if not isinstance(arr, numpy.ndarray) else json_rows(
            list(arr.reshape(-1)) if arr.ndim else [arr.item()])
        shape = (len(flat),)
    else:
        flat = []
        for v in arr.reshape(-1):
            if isinstance(v, (bytes, bytearray)):
                flat.append(bytes(v))
            elif isinstance(v, str):
                flat.append(v.encode())
            elif v is None or (isinstance(v, float) and math.isnan(v)):
                flat.append(b"")
            else:
                flat.append(str(v).encode())
        shape = arr.shape
    for b in flat:
        parts.append(_U32.pack(len(b)))
        parts.append(b)
    payload = b"".join(parts)
    return _header(name, "BYTES", 1 if is_json else 0, shape, len(payload)), payload


def _header(name, dt, flags, shape, size):
    key = (name, dt, flags, len(shape))
    head = _HEADS.get(key)
    if head is None:
        n = name.encode()
        head = _U16.pack(len(n)) + n + _KIND.pack(CODE[dt], flags, len(shape))
        if len(_HEADS) < _CACHED:
            _HEADS[key] = head
    dims = _DIMS[len(shape)].pack(*shape) if len(shape) < len(_DIMS) else struct.pack(
        f"<{len(shape)}q", *shape)
    return head + dims + _U64.pack(size)


# The fixed start of each output's header (name, type, flags, rank), made once.
_HEADS = {}


def encode_tensors(named):
    """Body parts for [(name, array, is_json)]."""
    parts = [_U32.pack(len(named))]
    for name, arr, is_json in named:
        h, p = encode_array(name, arr, is_json)
        parts.append(h)
        parts.append(p)
    return parts


# ---- what predict is given and what it returns -------------------------------------------------

class Shapes:
    def __init__(self, cfg):
        self.inputs = cfg.get("inputs") or []
        self.outputs = cfg.get("outputs") or []
        self.features = cfg.get("feature_names")
        self.by_output = {o["name"]: o for o in self.outputs}

    def columns(self, width):
        if self.features and len(self.features) == width:
            return list(self.features)
        return [f"f{i}" for i in range(width)]

    def batch(self, tensors, fmt):
        """The batch predict gets, from the decoded input tensors."""
        if fmt == "pandas":
            pandas = _pandas()
            if len(tensors) == 1 and tensors[0][1].ndim == 2:
                arr = tensors[0][1]
                return pandas.DataFrame(arr, columns=self.columns(arr.shape[1]))
            cols = {}
            for name, arr, _ in tensors:
                if arr.ndim == 2 and arr.shape[1] == 1:
                    arr = arr[:, 0]
                if arr.ndim != 1:
                    raise InputError(f"input {name!r}: a DataFrame column needs shape [-1] or [-1, 1]")
                cols[name] = arr
            return pandas.DataFrame(cols)
        if len(tensors) == 1:
            return tensors[0][1]
        return {name: arr for name, arr, _ in tensors}

    def outputs_of(self, result, rows):
        """[(name, array, is_json)] from what predict returned."""
        numpy = _numpy()
        default = self.outputs[0]["name"] if self.outputs else "output"
        named = []
        if pd is not None and isinstance(result, pd.DataFrame):
            for c in result.columns:
                named.append((str(c), result[c].to_numpy()))
        elif pd is not None and isinstance(result, pd.Series):
            named.append((str(result.name) if result.name is not None else default,
                          result.to_numpy()))
        elif isinstance(result, dict):
            for k, v in result.items():
                named.append((str(k), v))
        else:
            named.append((default, result))
        out = []
        for name, v in named:
            out.append(self.one_output(name, v, rows, numpy))
        return out

    def one_output(self, name, v, rows, numpy):
        if isinstance(v, numpy.ndarray) and v.dtype.kind != "O":
            arr = v
        else:
            try:
                arr = numpy.asarray(v)
            except (ValueError, TypeError):
                arr = None
            if arr is None or arr.dtype.kind == "O" and not all(
                    isinstance(x, (str, bytes)) or x is None for x in arr.reshape(-1)):
                items = list(v)
                return (name, items, True)
        if arr.ndim == 0:
            raise TypeError(f"predict returned one value for {name!r}: one answer per row is needed "
                            f"(a list or array of {rows})")
        want = self.by_output.get(name)
        if want and want["datatype"] in NUMPY and arr.dtype.kind in "biuf":
            arr = arr.astype(NUMPY[want["datatype"]], copy=False)
        return (name, arr, False)

    def inputs_of(self, value):
        """The model's input tensors from what an adapter returned."""
        numpy = _numpy()
        decl = self.inputs or [{"name": "input", "datatype": "FP64", "shape": [-1, -1]}]
        if pd is not None and isinstance(value, pd.DataFrame):
            if len(decl) == 1 and len(decl[0]["shape"]) == 2:
                cols = self.features or [str(c) for c in value.columns]
                missing = [c for c in cols if c not in value.columns]
                if missing:
                    raise TypeError(f"the adapter's DataFrame has no column {missing[0]!r}")
                value = value[cols].to_numpy()
            else:
                value = {d["name"]: value[d["name"]].to_numpy() for d in decl}
        if isinstance(value, dict):
            out = []
            for d in decl:
                if d["name"] not in value:
                    raise TypeError(f"the adapter returned no input {d['name']!r}")
                out.append((d["name"], self._cast(value[d["name"]], d, numpy), False))
            return out
        if len(decl) != 1:
            raise TypeError(f"the model has {len(decl)} inputs: the adapter must return a dict "
                            "or a DataFrame with them")
        return [(decl[0]["name"], self._cast(value, decl[0], numpy), False)]

    @staticmethod
    def _cast(v, d, numpy):
        dt = d["datatype"]
        arr = numpy.asarray(v, dtype=NUMPY.get(dt, object))
        if len(d["shape"]) == 2 and arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if len(d["shape"]) == 1 and arr.ndim == 0:
            arr = arr.reshape(1)
        return arr


# ---- building the predictor ----------------------------------------------------------------

def resolve(target):
    module, _, name = target.partition(":")
    m = importlib.import_module(module)
    try:
        return getattr(m, name)
    except AttributeError:
        raise AttributeError(f"module {module!r} has no {name!r}") from None


def _overrides_from_checkpoint(cls):
    import ferroserve

    f = getattr(cls, "from_checkpoint", None)
    if f is None:
        return False
    base = ferroserve.Predictor.__dict__["from_checkpoint"].__func__
    return getattr(f, "__func__", f) is not base


def _sync(f):
    if inspect.iscoroutinefunction(f):
        loop = asyncio.new_event_loop()
        return lambda *a, **k: loop.run_until_complete(f(*a, **k))
    return f


def build(cfg):
    import ferroserve

    target = resolve(cfg["predictor"])
    ck = cfg.get("checkpoint") or {}
    if "dir" in ck:
        checkpoint = ferroserve.Checkpoint.from_directory(ck["dir"])
    else:
        checkpoint = ferroserve.Checkpoint.from_dict(ck.get("dict") or {})
    if inspect.isclass(target) and _overrides_from_checkpoint(target):
        obj = target.from_checkpoint(checkpoint)
    elif inspect.isclass(target):
        try:
            obj = target()
        except TypeError:
            obj = target(name=cfg.get("model"))
        load = getattr(obj, "load", None)
        if callable(load):
            r = load()
            if inspect.iscoroutine(r):
                asyncio.new_event_loop().run_until_complete(r)
    elif callable(target):
        class _Fn:
            predict = staticmethod(target)
        obj = _Fn()
    else:
        raise TypeError(f"{cfg['predictor']} is not a class or a function")
    predict = getattr(obj, "predict", None)
    if not callable(predict):
        raise TypeError(f"{cfg['predictor']} has no predict method")
    fmt = cfg.get("batch_format") or annotation_format(predict)
    if fmt == "pandas":
        _pandas()
    return _sync(predict), fmt


def annotation_format(f):
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        return "numpy"
    if not params:
        return "numpy"
    ann = params[0].annotation
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", "")
    return "pandas" if "DataFrame" in str(text) else "numpy"


# ---- the adapter ----------------------------------------------------------------------------

class Adapter:
    WHOLE = ("dict", "list", "Any", "DataFrame", "object")

    def __init__(self, fn):
        self.fn = _sync(fn)
        self.params = list(inspect.signature(fn).parameters.values())

    def call(self, query, body):
        q = {}
        for k, v in query:
            q[k] = v
        kwargs = {}
        for p in self.params:
            ann = p.annotation
            aname = ann if isinstance(ann, str) else getattr(ann, "__name__", "")
            if p.name in q:
                kwargs[p.name] = convert(p.name, q[p.name], ann)
            elif isinstance(body, dict) and p.name in body:
                kwargs[p.name] = convert(p.name, body[p.name], ann)
            elif body is not None and any(w in str(aname) for w in self.WHOLE):
                kwargs[p.name] = _pandas().DataFrame(body) if "DataFrame" in str(aname) else body
            elif p.default is not inspect.Parameter.empty:
                continue
            else:
                t = f" ({aname})" if aname and aname != "_empty" else ""
                raise InputError(f"missing parameter {p.name!r}{t}: send it in the query string "
                                 f"(?{p.name}=...) or as a key of the JSON body")
        return self.fn(**kwargs)


def convert(name, v, ann):
    if ann in (int, float) or ann in ("int", "float"):
        t = int if ann in (int, "int") else float
        if isinstance(v, bool):
            raise InputError(f"parameter {name!r}: expected {t.__name__}, got {v!r}")
        try:
            if t is int and isinstance(v, float):
                if v != int(v):
                    raise ValueError
                return int(v)
            return t(v)
        except (TypeError, ValueError):
            raise InputError(f"parameter {name!r}: expected {t.__name__}, got {v!r}") from None
    if ann in (bool, "bool"):
        if isinstance(v, bool):
            return v
        s = str(v).lower()
        if s in ("true", "1", "yes"):
            return True
        if s in ("false", "0", "no"):
            return False
        raise InputError(f"parameter {name!r}: expected true or false, got {v!r}")
    if ann in (str, "str"):
        return v if isinstance(v, str) else json.dumps(v)
    return v


# ---- the loop -------------------------------------------------------------------------------

def main(cfg):
    sock = socket.socket(family=socket.AF_UNIX, type=socket.SOCK_STREAM, fileno=3)
    ch = Channel(sock)
    sys.path.insert(0, os.getcwd())
    shapes = Shapes(cfg)
    adapter = None
    predict = None
    try:
        _numpy()
        if cfg.get("role") == "adapter":
            adapter = Adapter(resolve(cfg["adapter"]))
            fmt = None
        else:
            predict, fmt = build(cfg)
    except BaseException as e:  # noqa: BLE001 - every failure is reported to the server
        traceback.print_exc()
        ch.send(START_FAILED, error_json(e))
        return
    ch.send(READY, {"python": platform.python_version(), "batch_format": fmt,
                    "pid": os.getpid()})
    while True:
        tag, body = ch.recv()
        if tag is None:
            return
        try:
            if tag == PREDICT:
                tensors = decode_tensors(body)
                rows = tensors[0][1].shape[0] if tensors and tensors[0][1].ndim else 0
                result = predict(shapes.batch(tensors, fmt))
                parts = encode_tensors(shapes.outputs_of(result, rows))
            elif tag == ADAPT:
                (hlen,) = struct.unpack_from("<I", body, 0)
                head = json.loads(bytes(body[4:4 + hlen]))
                raw = bytes(body[4 + hlen:])
                payload = None
                if head.get("has_body") and raw.strip():
                    try:
                        payload = json.loads(raw)
                    except ValueError as e:
                        raise InputError(f"the body is not JSON: {e}") from None
                value = adapter.call(head.get("query") or [], payload)
                parts = encode_tensors(shapes.inputs_of(value))
            else:
                raise RuntimeError(f"unknown request {tag}")
        except InputError as e:
            ch.send(ERROR, error_json(e, "input"))
            continue
        except Exception as e:  # noqa: BLE001 - the server answers it and keeps the worker
            traceback.print_exc()
            ch.send(ERROR, error_json(e))
            continue
        ch.send_parts(OK, parts)
