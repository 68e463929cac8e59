"""ferroserve driven by the KServe Python SDK (`kserve` from PyPI, pinned in
tests/python/requirements-kserve.txt): its REST client in both protocols (v2 JSON and binary
`infer(InferRequest)`, which puts `model_name` in the body; v1 `:predict` and `GET /`
liveness) and its gRPC client, unchanged. Predictions are compared with the training
libraries' own (examples/models/expected.json).

kserve 0.21 requires pandas<3 while the fixture generators pin pandas 3, so the SDK lives in its
own virtual environment (.ci/run makes it); in an interpreter without it these tests skip,
saying so, and under CI=true they fail instead. Run this file in its own pytest process:
kserve and tritonclient both register the protocol's messages (`inference.ServerLiveRequest`,
...) in protobuf's default descriptor pool, so one process cannot import both:

    target/py-kserve/bin/python -m pytest tests/python/test_kserve.py
    python3 -m pytest tests/python --ignore=tests/python/test_kserve.py
"""
import asyncio
import os

import numpy as np
import pytest

from compare import assert_close, assert_same

try:
    import httpx
    from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
    from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
except (ImportError, TypeError) as e:  # pragma: no cover - depends on the interpreter
    # TypeError: protobuf refuses kserve's messages after tritonclient registered the same names.
    why = (f"the KServe SDK cannot be imported in this process ({e}); "
           "pip install -r tests/python/requirements-kserve.txt in a virtualenv and run this "
           "file alone")
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI=true, so nothing may be skipped: {why}") from e
    pytest.skip(why, allow_module_level=True)

TREE_MODELS = ["iris", "wine", "breast_cancer", "diabetes"]


def run(coro):
    return asyncio.run(coro)


def rest(protocol):
    return InferenceRESTClient(RESTConfig(protocol=protocol, timeout=30))


def rows(expected, model):
    return np.array(expected[model]["rows"], dtype=np.float32)


def check(model, out, expected):
    """`out` maps output name to numpy array."""
    e = expected[model]
    if e["kind"] == "classifier":
        assert_close(f"{model} probabilities", out["probabilities"], e["probabilities"],
                     atol=expected["tolerance"])
        label = out["label"].reshape(-1)
        if label.dtype == object or label.dtype.kind in "SU":
            got = [x.decode() if isinstance(x, bytes) else str(x) for x in label]
            want = e.get("label_names") or [{"breast_cancer": ["malignant", "benign"]}[model][i]
                                            for i in e["label"]]
            assert_same(f"{model} labels", got, want)
        else:
            assert_same(f"{model} labels", label.tolist(), e["label"])
    else:
        assert_close(f"{model} values", out["value"].reshape(-1),
                     np.array(e["value"]).reshape(-1), atol=expected["tolerance"])


def request(model, x, binary, outputs=None, version=None):
    i = InferInput(name="input", shape=list(x.shape), datatype="FP32")
    i.set_data_from_numpy(x, binary_data=binary)
    return InferRequest(model_name=model, infer_inputs=[i], request_id="kserve-1",
                        model_version=version,
                        request_outputs=[RequestedOutput(o) for o in outputs] if outputs else None)


def as_dict(resp):
    return {o.name: o.as_numpy() for o in resp.outputs}


# -- REST, protocol v2 -------------------------------------------------------------------------

def test_rest_v2_health(server):
    async def go():
        c = rest("v2")
        base = f"http://{server.http}"
        try:
            assert await c.is_server_live(base) is True
            assert await c.is_server_ready(base) is True
            for m in TREE_MODELS:
                assert await c.is_model_ready(base, m) is True
            assert await c.is_model_ready(base, "no_such_model") is False
        finally:
            await c.close()
    run(go())


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("model", TREE_MODELS)
def test_rest_v2_infer_request(server, expected, model, binary):
    """`infer(InferRequest)`: the body carries `model_name` (and binary inputs follow the JSON
    with Inference-Header-Content-Length when asked)."""
    async def go():
        c = rest("v2")
        try:
            return await c.infer(f"http://{server.http}", request(model, rows(expected, model), binary),
                                 model_name=model)
        finally:
            await c.close()
    resp = run(go())
    assert resp.model_name == model
    assert resp.id == "kserve-1"
    check(model, as_dict(resp), expected)


def test_rest_v2_requested_output_and_dict_body(server, expected):
    async def go():
        c = rest("v2")
        base = f"http://{server.http}"
        try:
            one = await c.infer(base, request("iris", rows(expected, "iris"), False,
                                              outputs=["probabilities"]), model_name="iris")
            # A plain dict body with the SDK's own extra fields, as users also send it.
            body = {"model_name": "iris", "model_version": "1", "id": "d",
                    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                "data": expected["iris"]["rows"][0], "extra": True}]}
            two = await c.infer(base, body, model_name="iris")
            return one, two
        finally:
            await c.close()
    one, two = run(go())
    assert [o.name for o in one.outputs] == ["probabilities"]
    assert_close("iris probabilities", one.outputs[0].as_numpy(), expected["iris"]["probabilities"])
    assert_close("first row", as_dict(two)["probabilities"], expected["iris"]["probabilities"][:1])


def test_rest_v2_errors_are_raised_with_the_servers_message(server, expected):
    async def go(model):
        c = rest("v2")
        try:
            return await c.infer(f"http://{server.http}", request(model, rows(expected, "iris"), False),
                                 model_name=model)
        finally:
            await c.close()
    with pytest.raises(httpx.HTTPStatusError) as e:
        run(go("no_such_model"))
    assert e.value.response.status_code == 404
    assert "no_such_model" in str(e.value)
    # Right model, wrong width: a 400 that says which dimension.
    with pytest.raises(httpx.HTTPStatusError) as e:
        run(go("wine"))
    assert e.value.response.status_code == 400
    assert "dimension 1" in str(e.value)


# -- REST, protocol v1 -------------------------------------------------------------------------

def test_rest_v1_liveness_readiness_and_predict(server, expected):
    async def go():
        c = rest("v1")
        base = f"http://{server.http}"
        try:
            live = await c.is_server_live(base)
            ready = await c.is_model_ready(base, "iris")
            out = await c.infer(base, {"instances": expected["iris"]["rows"]}, model_name="iris")
            return live, ready, out
        finally:
            await c.close()
    live, ready, out = run(go())
    assert live is True
    assert ready is True
    assert_same("iris v1 predictions", out["predictions"], expected["iris"]["label_names"])


# -- gRPC --------------------------------------------------------------------------------------

def test_grpc_health(server):
    async def go():
        async with InferenceGRPCClient(server.grpc, timeout=30) as c:
            assert await c.is_server_live() is True
            assert await c.is_server_ready() is True
            for m in TREE_MODELS:
                assert await c.is_model_ready(m) is True
    run(go())


@pytest.mark.parametrize("model", TREE_MODELS)
def test_grpc_infer_request(server, expected, model):
    async def go():
        async with InferenceGRPCClient(server.grpc, timeout=30) as c:
            return await c.infer(request(model, rows(expected, model), True, version="1"))
    resp = run(go())
    assert resp.model_name == model
    check(model, as_dict(resp), expected)


def test_grpc_typed_contents(server, expected):
    """Data as a list (typed `contents.fp32_contents`) rather than numpy (raw)."""
    x = rows(expected, "iris")
    i = InferInput(name="input", shape=list(x.shape), datatype="FP32",
                   data=[float(v) for v in x.reshape(-1)])

    async def go():
        async with InferenceGRPCClient(server.grpc, timeout=30) as c:
            return await c.infer(InferRequest(model_name="iris", infer_inputs=[i]))
    check("iris", as_dict(run(go())), expected)
