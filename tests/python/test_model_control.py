"""Model control as Triton's examples do it (triton-inference-server/client,
src/python/examples/simple_http_model_control.py and simple_grpc_model_control.py), with the real
`tritonclient` against `ferroserve serve --model-control-mode explicit` on a temporary repository
of the ONNX models those examples expect, built by triton_models.py: 7 models for the HTTP
example, 8 for the gRPC one, `simple` among them with Triton's max_batch_size 8.

The first two tests take the examples' steps in our own words (index size, load, a config that
is not JSON, a config override of max_batch_size to 16 seen in the model's config, unload, an
oversized `file:` path answered INTERNAL with the server still live, an unknown model), and
check a little more at each step than the examples do. The last one runs the examples
themselves, unchanged, when TRITON_CLIENT_EXAMPLES names a folder holding them; the project does
not ship them, so it is skipped otherwise (in CI too, which has no copy).
"""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from conftest import Server

pytest.importorskip("onnx")
from triton_models import build_model_control_repository  # noqa: E402

# What the examples send as "the config with wrong format": not JSON.
WRONG_FORMAT = '"parameters": {"config": {{"max_batch_size": "16"}}}'
OVERRIDE = '{"max_batch_size":"16"}'

EXAMPLES = {"http": ("simple_http_model_control.py", 7), "grpc": ("simple_grpc_model_control.py", 8)}


def start(tmp_path_factory, count):
    repo = str(tmp_path_factory.mktemp(f"control_{count}"))
    build_model_control_repository(repo, count)
    s = Server(["--repository", repo, "--model-control-mode", "explicit"])
    # A first load tells whether ONNX Runtime is here; then the repository is as it started.
    h = th.InferenceServerClient(s.http)
    try:
        h.load_model("simple_int8")
        h.unload_model("simple_int8")
    except InferenceServerException as e:
        s.stop()
        why = f"simple_int8 does not load (ONNX Runtime missing?): {e.message()}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true, so nothing may be skipped: {why}")
        pytest.skip(why)
    finally:
        h.close()
    return s


def stop(s):
    status = s.stop()
    assert status == 0, f"ferroserve exited with {status}:\n" + "".join(s.stderr)


@pytest.fixture
def server7(tmp_path_factory):
    s = start(tmp_path_factory, 7)
    yield s
    stop(s)


@pytest.fixture
def server8(tmp_path_factory):
    s = start(tmp_path_factory, 8)
    yield s
    stop(s)


def post(s, path, body):
    req = urllib.request.Request(f"http://{s.http}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def infer_simple(mod, c):
    in0 = np.arange(16, dtype=np.int32).reshape(1, 16)
    in1 = np.ones((1, 16), dtype=np.int32)
    ins = []
    for name, x in [("INPUT0", in0), ("INPUT1", in1)]:
        i = mod.InferInput(name, [1, 16], "INT32")
        i.set_data_from_numpy(x)
        ins.append(i)
    r = c.infer("simple", ins)
    assert r.as_numpy("OUTPUT0").tolist() == (in0 + in1).tolist()


def test_http_model_control_as_tritons_example(server7):
    c = th.InferenceServerClient(server7.http)
    try:
        # Seven models in the repository, none loaded yet (explicit mode, no --load-model).
        index = c.get_model_repository_index()
        assert len(index) == 7, index
        assert all(m["state"] != "READY" for m in index), index

        c.load_model("simple")
        assert c.is_model_ready("simple")
        assert c.get_model_config("simple")["max_batch_size"] == 8

        # A config that is not JSON: refused, 400 with the v2 error body; the model serves on.
        with pytest.raises(InferenceServerException) as e:
            c.load_model("simple", config=WRONG_FORMAT)
        assert "failed to load" in e.value.message(), e.value.message()
        code, body = post(server7, "/v2/repository/models/simple/load",
                          {"parameters": {"config": WRONG_FORMAT}})
        assert code == 400 and body["error"].startswith("failed to load 'simple': "), (code, body)
        assert c.is_model_ready("simple")
        assert c.get_model_config("simple")["max_batch_size"] == 8
        infer_simple(th, c)

        # The override: max_batch_size from 8 to 16, as a numeric string.
        c.load_model("simple", config=OVERRIDE)
        assert c.get_model_config("simple")["max_batch_size"] == 16
        infer_simple(th, c)
        # It lasts until the next load: one without a config reads model.toml again.
        c.load_model("simple")
        assert c.get_model_config("simple")["max_batch_size"] == 8
        c.load_model("simple", config=OVERRIDE)
        assert c.get_model_config("simple")["max_batch_size"] == 16

        c.unload_model("simple")
        assert not c.is_model_ready("simple")

        with pytest.raises(InferenceServerException) as e:
            c.load_model("wrong_model_name")
        assert "failed to load" in e.value.message(), e.value.message()
        assert c.is_server_live()
    finally:
        c.close()


def test_grpc_model_control_as_tritons_example(server8):
    c = tg.InferenceServerClient(server8.grpc)
    try:
        assert len(c.get_model_repository_index().models) == 8

        c.load_model("simple")
        assert c.is_model_ready("simple")
        assert c.get_model_config("simple").config.max_batch_size == 8

        with pytest.raises(InferenceServerException) as e:
            c.load_model("simple", config=WRONG_FORMAT)
        assert "failed to load" in e.value.message(), e.value.message()
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT", e.value.status()
        assert c.is_model_ready("simple")

        c.load_model("simple", config=OVERRIDE)
        config = c.get_model_config("simple").config
        assert config.max_batch_size == 16
        infer_simple(tg, c)

        c.unload_model("simple")
        assert not c.is_model_ready("simple")

        # A path component longer than 255 bytes: refused as Triton refuses it (INTERNAL,
        # "failed to poll from model repository"), and the server lives on.
        with pytest.raises(InferenceServerException) as e:
            c.load_model("simple", config="{}", files={"file:" + "A" * 256: b"a"})
        assert e.value.status() == "StatusCode.INTERNAL", e.value.status()
        assert "failed to poll from model repository" in e.value.message(), e.value.message()
        # Without naming any of the server's folders.
        assert "/tmp" not in e.value.message() and "ferroserve-load" not in e.value.message()
        assert c.is_server_live()
        assert not c.is_model_ready("simple")

        with pytest.raises(InferenceServerException) as e:
            c.load_model("wrong_model_name")
        assert "failed to load" in e.value.message(), e.value.message()
    finally:
        c.close()


def test_a_model_sent_as_files_over_grpc_serves_with_its_config(server8, tmp_path):
    # The model folder of `simple`, sent with the load under a new name.
    repo = tmp_path / "copy"
    build_model_control_repository(str(repo), 4)
    onnx_bytes = (repo / "simple" / "1" / "model.onnx").read_bytes()
    c = tg.InferenceServerClient(server8.grpc)
    try:
        with pytest.raises(InferenceServerException) as e:
            c.load_model("uploaded", files={"file:1/model.onnx": onnx_bytes})
        assert e.value.status() == "StatusCode.INTERNAL"
        assert '"config" parameter must be given' in e.value.message(), e.value.message()
        for bad in ["../1/model.onnx", "/1/model.onnx", "1//model.onnx"]:
            with pytest.raises(InferenceServerException) as e:
                c.load_model("uploaded", config="{}", files={"file:" + bad: onnx_bytes})
            assert "failed to poll from model repository" in e.value.message(), (bad, e.value.message())

        c.load_model("uploaded", config='{"max_batch_size": 4, "instance_group": [{"count": 2, "kind": "KIND_CPU"}]}',
                     files={"file:1/model.onnx": onnx_bytes})
        assert c.is_model_ready("uploaded")
        config = c.get_model_config("uploaded").config
        assert config.max_batch_size == 4 and config.instance_group[0].count == 2
        x = np.arange(16, dtype=np.int32).reshape(1, 16)
        ins = [tg.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
        for i in ins:
            i.set_data_from_numpy(x)
        assert c.infer("uploaded", ins).as_numpy("OUTPUT0").tolist() == (2 * x).tolist()
        # More rows than its max_batch_size: refused.
        big = [tg.InferInput(n, [5, 16], "INT32") for n in ("INPUT0", "INPUT1")]
        for i in big:
            i.set_data_from_numpy(np.zeros((5, 16), dtype=np.int32))
        with pytest.raises(InferenceServerException):
            c.infer("uploaded", big)
        # Not in the repository: unloaded, it leaves the index.
        c.unload_model("uploaded")
        names = [m.name for m in c.get_model_repository_index().models]
        assert "uploaded" not in names and len(names) == 8
    finally:
        c.close()


@pytest.mark.parametrize("front", ["http", "grpc"])
def test_tritons_example_script_passes_unchanged(front, tmp_path_factory):
    folder = os.environ.get("TRITON_CLIENT_EXAMPLES")
    script, count = EXAMPLES[front]
    if not folder:
        pytest.skip("TRITON_CLIENT_EXAMPLES is not set: it names a folder holding Triton's "
                    f"{script} (triton-inference-server/client, src/python/examples), which "
                    "this project does not ship")
    path = os.path.join(folder, script)
    assert os.path.isfile(path), f"TRITON_CLIENT_EXAMPLES={folder} holds no {script}"
    s = start(tmp_path_factory, count)
    try:
        url = s.http if front == "http" else s.grpc
        r = subprocess.run([sys.executable, path, "-u", url], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0 and "PASS: model control" in r.stdout, \
            f"{script} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        assert s.proc.poll() is None, "the server stopped"
    finally:
        stop(s)
