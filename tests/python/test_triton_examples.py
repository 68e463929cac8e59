"""What Triton's own Python client examples (triton-inference-server/client, src/python/examples)
do, done here with the real `tritonclient` package against ferroserve serving the models those
examples expect, built as ONNX graphs in a temporary repository and run on ONNX Runtime:

- `simple`: INT32 [-1, 16] INPUT0, INPUT1 -> OUTPUT0 = sum, OUTPUT1 = difference
- `simple_int8`: the same in INT8
- `simple_string`: the same on numbers written as BYTES strings
- `simple_identity`: BYTES in, the same BYTES out

The calls are the examples' calls (typed `contents` over the raw gRPC stub and outputs read
from `raw_output_contents`; HTTP and gRPC clients with binary and JSON data; an unknown model's
error; compression both ways), written for these tests.
"""
import gzip
import os
import urllib.request
import urllib.error
import zlib

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

from conftest import Server

pytest.importorskip("onnx")
from triton_models import build_repository  # noqa: E402

MAX_BODY = 1 << 20  # --max-body-bytes for this server: small, so zip bombs are cheap


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    repo = str(tmp_path_factory.mktemp("triton_models"))
    build_repository(repo)
    s = Server(["--repository", repo, "--max-body-bytes", str(MAX_BODY)])
    try:
        h = th.InferenceServerClient(s.http)
        index = {m["name"]: m for m in h.get_model_repository_index()}
        h.close()
        not_ready = {n: m.get("reason") for n, m in index.items() if m["state"] != "READY"}
        if not_ready:
            why = f"models not ready (ONNX Runtime missing?): {not_ready}"
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true, so nothing may be skipped: {why}")
            pytest.skip(why)
        yield s
    finally:
        status = s.stop()
        assert status == 0, f"ferroserve exited with {status}:\n" + "".join(s.stderr)


@pytest.fixture
def stub(triton):
    channel = grpc.insecure_channel(triton.grpc)
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def typed_request(model, datatype, field, in0, in1):
    req = service_pb2.ModelInferRequest(model_name=model, model_version="")
    for name, data in [("INPUT0", in0), ("INPUT1", in1)]:
        t = service_pb2.ModelInferRequest().InferInputTensor(name=name, datatype=datatype,
                                                              shape=[1, 16])
        getattr(t.contents, field)[:] = data
        req.inputs.extend([t])
    for name in ["OUTPUT0", "OUTPUT1"]:
        req.outputs.extend([service_pb2.ModelInferRequest().InferRequestedOutputTensor(name=name)])
    return req


# -- gRPC stub with typed contents (grpc_explicit_*_content_client.py) --------------------------

@pytest.mark.parametrize("model,datatype,dtype", [("simple", "INT32", np.int32),
                                                  ("simple_int8", "INT8", np.int8)])
def test_typed_int_contents_come_back_in_raw_output_contents(stub, model, datatype, dtype):
    in0, in1 = list(range(16)), [1] * 16
    resp = stub.ModelInfer(typed_request(model, datatype, "int_contents", in0, in1))
    assert [o.name for o in resp.outputs] == ["OUTPUT0", "OUTPUT1"]
    assert len(resp.raw_output_contents) == 2
    out = [np.frombuffer(resp.raw_output_contents[i], dtype=dtype).reshape(list(o.shape))
           for i, o in enumerate(resp.outputs)]
    assert out[0].tolist() == [[a + b for a, b in zip(in0, in1)]]
    assert out[1].tolist() == [[a - b for a, b in zip(in0, in1)]]


def test_typed_contents_beside_raw_data_are_refused_in_tritons_words(stub):
    req = typed_request("simple", "INT32", "int_contents", list(range(16)), [1] * 16)
    req.raw_input_contents.extend([np.arange(8, dtype=np.int32).tobytes()])
    req.inputs[0].contents.int_contents[:] = list(range(8, 16))
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("contents field must not be specified when using raw_input_contents for 'INPUT0' "
            "for model 'simple'") in e.value.details()


def test_typed_bytes_contents_come_back_raw(stub):
    req = typed_request("simple_string", "BYTES", "bytes_contents",
                        [str(i).encode() for i in range(16)], [b"1"] * 16)
    resp = stub.ModelInfer(req)
    out = [deserialize_bytes_tensor(resp.raw_output_contents[i]).reshape(list(o.shape))
           for i, o in enumerate(resp.outputs)]
    assert [int(x) for x in out[0][0]] == [i + 1 for i in range(16)]
    assert [int(x) for x in out[1][0]] == [i - 1 for i in range(16)]


# -- the clients (simple_{http,grpc}_infer_client.py, ..._string_infer_client.py) ---------------

def mod_of(proto):
    return th if proto == "http" else tg


@pytest.fixture(params=["http", "grpc"])
def client(request, triton):
    mod = mod_of(request.param)
    c = mod.InferenceServerClient(triton.http if mod is th else triton.grpc)
    yield mod, c
    c.close()


def inputs(mod, in0, in1, datatype, binary=(True, True)):
    out = []
    for name, x, b in [("INPUT0", in0, binary[0]), ("INPUT1", in1, binary[1])]:
        i = mod.InferInput(name, list(x.shape), datatype)
        if mod is th:
            i.set_data_from_numpy(x, binary_data=b)
        else:
            i.set_data_from_numpy(x)
        out.append(i)
    return out


def outputs(mod, binary=(True, True)):
    if mod is th:
        return [th.InferRequestedOutput("OUTPUT0", binary_data=binary[0]),
                th.InferRequestedOutput("OUTPUT1", binary_data=binary[1])]
    return [tg.InferRequestedOutput("OUTPUT0"), tg.InferRequestedOutput("OUTPUT1")]


@pytest.mark.parametrize("binary", [(True, True), (False, False), (True, False)],
                         ids=["binary", "json", "mixed"])
def test_simple_sum_and_difference(client, binary):
    mod, c = client
    in0 = np.arange(16, dtype=np.int32).reshape(1, 16)
    in1 = np.ones((1, 16), dtype=np.int32)
    r = c.infer("simple", inputs(mod, in0, in1, "INT32", binary), outputs=outputs(mod, binary))
    assert r.as_numpy("OUTPUT0").tolist() == (in0 + in1).tolist()
    assert r.as_numpy("OUTPUT1").tolist() == (in0 - in1).tolist()
    assert r.as_numpy("OUTPUT0").dtype == np.int32


def test_simple_string(client):
    mod, c = client
    in0 = np.array([str(i).encode() for i in range(16)], dtype=np.object_).reshape(1, 16)
    in1 = np.array([b"1"] * 16, dtype=np.object_).reshape(1, 16)
    r = c.infer("simple_string", inputs(mod, in0, in1, "BYTES", (True, False)),
                outputs=outputs(mod, (True, False)))
    assert [int(x) for x in r.as_numpy("OUTPUT0")[0]] == [i + 1 for i in range(16)]
    assert [int(x) for x in r.as_numpy("OUTPUT1")[0]] == [i - 1 for i in range(16)]


def test_unknown_model_error_starts_as_tritons(client):
    mod, c = client
    x = np.zeros((1, 16), dtype=np.int32)
    with pytest.raises(InferenceServerException) as e:
        c.infer("no_such_model", inputs(mod, x, x, "INT32"))
    assert e.value.message().startswith("Request for unknown model"), e.value.message()
    assert "no_such_model" in e.value.message()


def test_a_version_that_is_not_a_number_is_refused_in_tritons_words(stub):
    req = typed_request("simple_int8", "INT8", "int_contents", list(range(16)), [1] * 16)
    req.model_version = "wrong_specification"
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req)
    assert ("failed to get model version from specified version string 'wrong_specification'"
            in e.value.details()), e.value.details()


def test_an_unknown_input_name_names_the_expected_ones(client):
    mod, c = client
    x = np.zeros((1, 16), dtype=np.int32)
    ins = inputs(mod, x, x, "INT32")
    bad = mod.InferInput("INPUTX", [1, 16], "INT32")
    bad.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as e:
        c.infer("simple", [ins[0], bad])
    assert "INPUT0, INPUT1" in e.value.message(), e.value.message()


# -- BYTES are bytes --------------------------------------------------------------------------

def test_identity_returns_the_same_bytes(client):
    mod, c = client
    x = np.array(["plain", "ünïcödé", "", "with space", "emoji \U0001F600"] + ["x"] * 11,
                 dtype=np.object_).reshape(1, 16)
    for binary in ([True, False] if mod is th else [True]):
        i = mod.InferInput("INPUT0", [1, 16], "BYTES")
        if mod is th:
            i.set_data_from_numpy(x, binary_data=binary)
            o = [th.InferRequestedOutput("OUTPUT0", binary_data=binary)]
        else:
            i.set_data_from_numpy(x)
            o = [tg.InferRequestedOutput("OUTPUT0")]
        got = c.infer("simple_identity", [i], outputs=o).as_numpy("OUTPUT0")
        got = [v.decode() if isinstance(v, bytes) else v for v in got.reshape(-1)]
        assert got == list(x.reshape(-1)), binary


def test_bytes_that_are_not_text_come_back_as_they_are(client):
    """The wire carries any bytes (binary extension, gRPC), and so does ONNX Runtime: NUL bytes
    and invalid UTF-8 go through the identity graph and come back unchanged."""
    mod, c = client
    elements = [b"he\x00llo", b"\xff\xfe", b"", b"\x00", "ünï".encode(), b"\xc3",
                bytes(range(256))]
    x = np.array((elements * 3)[:16], dtype=np.object_).reshape(1, 16)
    i = mod.InferInput("INPUT0", [1, 16], "BYTES")
    if mod is th:
        i.set_data_from_numpy(x, binary_data=True)
        o = [th.InferRequestedOutput("OUTPUT0", binary_data=True)]
    else:
        i.set_data_from_numpy(x)
        o = [tg.InferRequestedOutput("OUTPUT0")]
    got = c.infer("simple_identity", [i], outputs=o).as_numpy("OUTPUT0")
    assert list(got.reshape(-1)) == list(x.reshape(-1))


# -- compression (tritonclient's request/response_compression_algorithm) ----------------------

@pytest.mark.parametrize("req_alg", [None, "gzip", "deflate"])
@pytest.mark.parametrize("resp_alg", [None, "gzip", "deflate"])
def test_http_compression(triton, req_alg, resp_alg):
    c = th.InferenceServerClient(triton.http)
    try:
        in0 = np.arange(16, dtype=np.int32).reshape(1, 16)
        in1 = np.full((1, 16), 3, dtype=np.int32)
        for binary in [(True, True), (False, False)]:
            r = c.infer("simple", inputs(th, in0, in1, "INT32", binary),
                        outputs=outputs(th, binary),
                        request_compression_algorithm=req_alg,
                        response_compression_algorithm=resp_alg)
            assert r.as_numpy("OUTPUT0").tolist() == (in0 + in1).tolist()
            assert r.as_numpy("OUTPUT1").tolist() == (in0 - in1).tolist()
    finally:
        c.close()
    # The answer really is compressed as asked (tritonclient hides the header).
    body = (b'{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":%s},'
            b'{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":%s}]}'
            % (str(list(range(16))).encode(), str([3] * 16).encode()))
    headers = {"Content-Type": "application/json"}
    if req_alg:
        headers["Content-Encoding"] = req_alg
        body = {"gzip": gzip.compress, "deflate": zlib.compress}[req_alg](body)
    if resp_alg:
        headers["Accept-Encoding"] = resp_alg
    status, h, answer = _post(f"http://{triton.http}/v2/models/simple/infer", body, headers)
    assert status == 200, answer
    assert h.get("Content-Encoding") == resp_alg
    if resp_alg:
        answer = {"gzip": gzip.decompress, "deflate": zlib.decompress}[resp_alg](answer)
    assert b'"OUTPUT0"' in answer and b"[3,4,5," in answer, answer


@pytest.mark.parametrize("alg", ["gzip", "deflate"])
def test_grpc_compression(triton, alg):
    c = tg.InferenceServerClient(triton.grpc)
    try:
        in0 = np.arange(16, dtype=np.int32).reshape(1, 16)
        in1 = np.full((1, 16), 3, dtype=np.int32)
        r = c.infer("simple", inputs(tg, in0, in1, "INT32"), compression_algorithm=alg)
        assert r.as_numpy("OUTPUT0").tolist() == (in0 + in1).tolist()
    finally:
        c.close()


def _post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.mark.parametrize("alg,pack", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_http_zip_bomb_is_refused_with_413(triton, alg, pack):
    bomb = pack(b" " * (16 * MAX_BODY))
    assert len(bomb) < MAX_BODY // 8
    status, headers, body = _post(f"http://{triton.http}/v2/models/simple/infer", bomb,
                                  {"Content-Type": "application/json", "Content-Encoding": alg})
    assert status == 413, body
    assert b"--max-body-bytes" in body and b"once decompressed" in body
    # A corrupt body is a 400 that names the coding; the server keeps serving.
    status, _, body = _post(f"http://{triton.http}/v2/models/simple/infer", b"not compressed",
                            {"Content-Type": "application/json", "Content-Encoding": alg})
    assert status == 400 and alg.encode() in body, body
    c = th.InferenceServerClient(triton.http)
    assert c.is_model_ready("simple")
    c.close()


def test_grpc_zip_bomb_is_refused(triton):
    """A compressed message that grows past --max-body-bytes once decompressed."""
    c = tg.InferenceServerClient(triton.grpc)
    try:
        n = 4 * MAX_BODY // 64  # rows of 16 INT32: 4 MB decompressed, a few KB compressed
        x = np.zeros((n, 16), dtype=np.int32)
        with pytest.raises(InferenceServerException) as e:
            c.infer("simple", inputs(tg, x, x, "INT32"), compression_algorithm="gzip")
        assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED", e.value
        assert c.is_model_ready("simple")
    finally:
        c.close()


# -- model configuration and statistics, as perf_analyzer reads them ---------------------------

def test_model_config_in_tritons_shape(triton):
    h = th.InferenceServerClient(triton.http)
    g = tg.InferenceServerClient(triton.grpc)
    try:
        for c in [h.get_model_config("simple"), g.get_model_config("simple", as_json=True)["config"],
                  h.get_model_config("simple", "1")]:
            assert c["name"] == "simple"
            assert c["platform"] == "onnxruntime_onnx" and c["backend"] == "onnxruntime"
            assert int(c["max_batch_size"]) > 0
            # Without the batch dimension, as Triton writes it.
            assert [(i["name"], i["data_type"], [int(d) for d in i["dims"]]) for i in c["input"]] \
                == [("INPUT0", "TYPE_INT32", [16]), ("INPUT1", "TYPE_INT32", [16])]
            assert [o["name"] for o in c["output"]] == ["OUTPUT0", "OUTPUT1"]
            assert c["instance_group"][0]["kind"] == "KIND_CPU"
            assert int(c["instance_group"][0]["count"]) >= 1
        s = h.get_model_config("simple_string")
        assert s["input"][0]["data_type"] == "TYPE_STRING"
        with pytest.raises(InferenceServerException) as e:
            g.get_model_config("no_such_model")
        assert e.value.message().startswith("Request for unknown model")
    finally:
        h.close()
        g.close()


def test_statistics_count_every_request_in_queue_and_compute_phases_alike(triton):
    h = th.InferenceServerClient(triton.http)
    g = tg.InferenceServerClient(triton.grpc)
    try:
        def counts():
            out = []
            for stats in [h.get_inference_statistics("simple_int8")["model_stats"][0],
                          g.get_inference_statistics("simple_int8", as_json=True)["model_stats"][0]]:
                s = stats["inference_stats"]
                out.append({k: int(s[k].get("count", 0)) for k in
                            ["success", "queue", "compute_input", "compute_infer", "compute_output"]})
            return out
        before = counts()
        x = np.ones((1, 16), dtype=np.int8)
        for _ in range(30):
            h.infer("simple_int8", inputs(th, x, x, "INT8"))
        for b, a in zip(before, counts()):
            d = {k: a[k] - b[k] for k in a}
            assert d["success"] == 30 and d["queue"] == 30, d
            assert d["compute_input"] == d["compute_infer"] == d["compute_output"] > 0, d
            assert a["compute_input"] == a["compute_infer"] == a["compute_output"], a
    finally:
        h.close()
        g.close()
