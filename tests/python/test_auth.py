"""API keys with the real tritonclient: `ferroserve serve --api-keys FILE`, keys sent with
tritonclient's own `headers=` argument over HTTP and gRPC (Authorization: Bearer and
X-API-Key), refusals read as tritonclient raises them (401/403 over HTTP, UNAUTHENTICATED and
PERMISSION_DENIED over gRPC), and the liveness probes open without a key."""
import hashlib
import os
import tempfile

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from conftest import Server

INFER_KEY = "tc-infer-key-1"
READ_KEY = "tc-read-key-2"


def sha(key):
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def secured():
    with tempfile.TemporaryDirectory() as d:
        keys = os.path.join(d, "keys.toml")
        with open(keys, "w") as f:
            f.write(f'[[keys]]\nname = "app"\nsha256 = "{sha(INFER_KEY)}"\nscopes = ["infer", "read"]\nmodels = ["iris"]\n\n'
                    f'[[keys]]\nname = "reader"\nsha256 = "{sha(READ_KEY)}"\nscopes = ["read"]\n')
        s = Server(["--api-keys", keys, "--data-dir", os.path.join(d, "data")],
                   # The reader's key sees every model in the index (the app's sees iris only),
                   # so the start waits for all of them.
                   headers={"Authorization": f"Bearer {READ_KEY}"})
        yield s
        s.stop()


def iris_input(mod):
    x = mod.InferInput("input", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
    return x


def test_http_keys_with_tritonclient_headers(secured):
    c = th.InferenceServerClient(secured.http)
    assert c.is_server_live() and c.is_server_ready()
    with pytest.raises(InferenceServerException) as e:
        c.get_model_metadata("iris")
    assert "401" in str(e.value.status()) or "API key" in str(e.value)
    bearer = {"Authorization": f"Bearer {INFER_KEY}"}
    assert c.get_model_metadata("iris", headers=bearer)["name"] == "iris"
    r = c.infer("iris", [iris_input(th)], headers={"X-API-Key": INFER_KEY})
    assert r.as_numpy("label").tolist() in ([b"setosa"], ["setosa"])
    with pytest.raises(InferenceServerException) as e:
        c.infer("iris", [iris_input(th)], headers={"Authorization": f"Bearer {READ_KEY}"})
    assert "403" in str(e.value.status()) or "scope" in str(e.value)
    with pytest.raises(InferenceServerException) as e:
        c.get_model_metadata("wine", headers=bearer)
    assert "403" in str(e.value.status()) or "model" in str(e.value)


def test_grpc_keys_with_tritonclient_headers(secured):
    c = tg.InferenceServerClient(secured.grpc)
    assert c.is_server_live() and c.is_model_ready("iris")
    with pytest.raises(InferenceServerException) as e:
        c.get_model_metadata("iris")
    assert e.value.status() == "StatusCode.UNAUTHENTICATED"
    bearer = {"authorization": f"Bearer {INFER_KEY}"}
    assert c.get_model_metadata("iris", headers=bearer).name == "iris"
    r = c.infer("iris", [iris_input(tg)], headers={"x-api-key": INFER_KEY})
    assert r.as_numpy("label").tolist() == [b"setosa"]
    with pytest.raises(InferenceServerException) as e:
        c.infer("iris", [iris_input(tg)], headers={"authorization": f"Bearer {READ_KEY}"})
    assert e.value.status() == "StatusCode.PERMISSION_DENIED"
    with pytest.raises(InferenceServerException) as e:
        c.get_model_metadata("wine", headers=bearer)
    assert e.value.status() == "StatusCode.PERMISSION_DENIED"
