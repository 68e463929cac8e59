"""ferroserve driven by the official Triton client (`tritonclient[http,grpc]` from PyPI): health,
metadata, JSON and binary inference over HTTP, gRPC inference and streaming, requested outputs,
classification, bad requests, 100,000-row batches, and agreement between HTTP and gRPC answers.
Predictions are compared with the training libraries' own (examples/models/expected.json).
"""
import os
import queue

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from compare import assert_close, assert_same

TREE_MODELS = ["iris", "wine", "breast_cancer", "diabetes"]
# Served by ONNX Runtime when its library is there (CI installs the onnxruntime wheel).
ONNX_MODELS = ["wine_pipeline", "iris_mlp"]
MODELS = TREE_MODELS + ONNX_MODELS
EXTENSIONS = ["binary_tensor_data", "classification", "statistics", "model_configuration",
              "model_repository"]


@pytest.fixture(scope="module")
def http(server):
    c = th.InferenceServerClient(server.http)
    yield c
    c.close()


@pytest.fixture(scope="module")
def grpc(server):
    c = tg.InferenceServerClient(server.grpc)
    yield c
    c.close()


@pytest.fixture(scope="module")
def ready_models(http):
    return {m["name"] for m in http.get_model_repository_index() if m["state"] == "READY"}


@pytest.fixture
def need(ready_models):
    """Skips (saying why) when a model is not ready on this machine; under CI=true, fails."""
    def check(model):
        if model not in ready_models:
            why = f"{model} is not ready here (ONNX Runtime library missing?)"
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true, so nothing may be skipped: {why}")
            pytest.skip(why)
    return check


def rows(expected, model):
    return np.array(expected[model]["rows"], dtype=np.float32)


def infer_input(mod, x, binary=True, name="input"):
    i = mod.InferInput(name, list(x.shape), np.dtype(x.dtype).name.upper()
                       .replace("FLOAT", "FP").replace("OBJECT", "BYTES"))
    if mod is th:
        i.set_data_from_numpy(x, binary_data=binary)
    else:
        i.set_data_from_numpy(x)
    return i


def text(a):
    """BYTES elements as str (JSON answers give str, binary and gRPC answers give bytes)."""
    return [e.decode() if isinstance(e, bytes) else e for e in np.asarray(a).reshape(-1)]


def check_against_library(result, expected, model):
    e = expected[model]
    tol = e.get("tolerance", expected["tolerance"])
    if e["kind"] == "classifier":
        p = result.as_numpy("probabilities")
        assert_close(f"{model} probabilities", p, e["probabilities"], atol=tol)
        label = result.as_numpy("label")
        assert label.shape == (len(e["label"]),), f"{model} label shape {label.shape}"
        if label.dtype != object:
            assert_same(f"{model} labels", label.tolist(), e["label"])
        elif "label_names" in e:
            assert_same(f"{model} labels", text(label), e["label_names"])
        else:
            # String labels from model.toml, in class-index order.
            names = result_labels(model)
            assert_same(f"{model} labels", text(label), [names[i] for i in e["label"]])
    else:
        v = result.as_numpy("value")
        assert_close(f"{model} values", v.reshape(-1), np.array(e["value"]).reshape(-1), atol=tol)


def result_labels(model):
    return {"breast_cancer": ["malignant", "benign"]}[model]


# -- health and metadata ------------------------------------------------------------------------

@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_health(proto, http, grpc):
    c = http if proto == "http" else grpc
    assert c.is_server_live()
    assert c.is_server_ready()
    for m in TREE_MODELS:
        assert c.is_model_ready(m)
        assert c.is_model_ready(m, "1")
    assert not c.is_model_ready("no_such_model")
    assert not c.is_model_ready("iris", "42")


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_server_metadata_advertises_exactly_the_extensions(proto, http, grpc):
    if proto == "http":
        meta = http.get_server_metadata()
        assert meta["name"] == "ferroserve"
        assert meta["extensions"] == EXTENSIONS
    else:
        meta = grpc.get_server_metadata()
        assert meta.name == "ferroserve"
        assert list(meta.extensions) == EXTENSIONS


def test_model_metadata_over_both(http, grpc, ready_models):
    for m in sorted(ready_models):
        h = http.get_model_metadata(m)
        g = grpc.get_model_metadata(m, as_json=True)
        assert h["name"] == g["name"] == m
        assert h["versions"] == g["versions"] == ["1"]
        assert h["platform"] == g["platform"]
        if m in TREE_MODELS:
            assert h["platform"] == "ferroserve_trees"
        for a, b in zip(h["inputs"] + h["outputs"], g["inputs"] + g["outputs"]):
            assert (a["name"], a["datatype"]) == (b["name"], b["datatype"])
            assert a["shape"] == [int(d) for d in b["shape"]]
    assert http.get_model_metadata("iris")["parameters"]["class_labels"] == [
        "setosa", "versicolor", "virginica"]


def test_repository_index_over_both(http, grpc):
    h = http.get_model_repository_index()
    g = grpc.get_model_repository_index(as_json=True)["models"]
    assert [m["name"] for m in h] == [m["name"] for m in g] == sorted(MODELS)
    assert [m["state"] for m in h] == [m["state"] for m in g]
    assert all(m["state"] == "READY" for m in h + g if m["name"] in TREE_MODELS)


# -- inference -------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_http_json_inference_matches_the_library(http, expected, model, need):
    need(model)
    x = rows(expected, model)
    outputs = [th.InferRequestedOutput(o["name"], binary_data=False)
               for o in http.get_model_metadata(model)["outputs"]]
    r = http.infer(model, [infer_input(th, x, binary=False)], outputs=outputs, request_id="j1")
    assert r.get_response()["id"] == "j1"
    # JSON answer: every output carries "data".
    assert all("data" in o for o in r.get_response()["outputs"])
    check_against_library(r, expected, model)


@pytest.mark.parametrize("model", MODELS)
def test_http_binary_inference_matches_the_library(http, expected, model, need):
    need(model)
    x = rows(expected, model)
    r = http.infer(model, [infer_input(th, x, binary=True)])  # outputs binary by default
    assert all("binary_data_size" in o["parameters"] for o in r.get_response()["outputs"])
    check_against_library(r, expected, model)


@pytest.mark.parametrize("model", MODELS)
def test_grpc_inference_matches_the_library(grpc, expected, model, need):
    need(model)
    x = rows(expected, model)
    r = grpc.infer(model, [infer_input(tg, x)], request_id="g1", model_version="1")
    assert r.get_response().id == "g1"
    check_against_library(r, expected, model)


@pytest.mark.parametrize("model", MODELS)
def test_http_and_grpc_answer_the_same(http, grpc, expected, model, need):
    need(model)
    rng = np.random.default_rng(7)
    base = rows(expected, model)
    x = (base[rng.integers(0, len(base), 257)] *
         rng.uniform(0.8, 1.2, (257, base.shape[1]))).astype(np.float32)
    hj = http.infer(model, [infer_input(th, x, binary=False)],
                    outputs=[th.InferRequestedOutput(o["name"], binary_data=False)
                             for o in http.get_model_metadata(model)["outputs"]])
    hb = http.infer(model, [infer_input(th, x, binary=True)])
    g = grpc.infer(model, [infer_input(tg, x)])
    for o in http.get_model_metadata(model)["outputs"]:
        name = o["name"]
        a, b, c = hj.as_numpy(name), hb.as_numpy(name), g.as_numpy(name)
        assert a.shape == b.shape == c.shape
        if a.dtype == object:
            assert text(a) == text(b) == text(c)
        else:
            # JSON prints floats in their shortest round-trip form: bit-equal after parsing.
            np.testing.assert_array_equal(a.astype(b.dtype), b)
            np.testing.assert_array_equal(b, c)


def test_other_input_datatypes_are_converted(http, grpc, expected):
    x = rows(expected, "iris")
    want = http.infer("iris", [infer_input(th, x)]).as_numpy("probabilities")
    assert_close("iris probabilities", want, expected["iris"]["probabilities"],
                 atol=expected["tolerance"])
    for dt in (np.float64, np.float16):
        x2 = x.astype(dt)
        for c, mod in ((http, th), (grpc, tg)):
            got = c.infer("iris", [infer_input(mod, x2)]).as_numpy("probabilities")
            if dt is np.float64:
                np.testing.assert_array_equal(got, want)
            else:
                # Half precision moves some rows across a split; the shape must hold.
                assert got.shape == want.shape


def test_requested_outputs(http, grpc, expected):
    x = rows(expected, "wine")
    r = http.infer("wine", [infer_input(th, x)], outputs=[th.InferRequestedOutput("probabilities")])
    assert [o["name"] for o in r.get_response()["outputs"]] == ["probabilities"]
    assert r.as_numpy("label") is None
    r = grpc.infer("wine", [infer_input(tg, x)], outputs=[tg.InferRequestedOutput("label")])
    assert [o.name for o in r.get_response().outputs] == ["label"]
    assert_same("wine labels over gRPC", r.as_numpy("label").tolist(), expected["wine"]["label"])
    # Mixed: one output binary, one JSON.
    r = http.infer("wine", [infer_input(th, x)],
                   outputs=[th.InferRequestedOutput("label", binary_data=False),
                            th.InferRequestedOutput("probabilities", binary_data=True)])
    outs = {o["name"]: o for o in r.get_response()["outputs"]}
    assert "data" in outs["label"] and "data" not in outs["probabilities"]
    assert_close("wine binary probabilities", r.as_numpy("probabilities"),
                 expected["wine"]["probabilities"], atol=expected["tolerance"])


def test_classification_over_http_json_binary_and_grpc(http, grpc, expected):
    x = rows(expected, "iris")
    k = 2
    answers = []
    for binary in (False, True):
        r = http.infer("iris", [infer_input(th, x)],
                       outputs=[th.InferRequestedOutput("probabilities", binary_data=binary,
                                                        class_count=k)])
        answers.append(r.as_numpy("probabilities"))
    r = grpc.infer("iris", [infer_input(tg, x)],
                   outputs=[tg.InferRequestedOutput("probabilities", class_count=k)])
    answers.append(r.as_numpy("probabilities"))
    json_a, bin_a, grpc_a = answers
    assert json_a.shape == bin_a.shape == grpc_a.shape == (len(x), k)
    def as_text(a):
        return [text(row) for row in a]

    assert as_text(json_a) == as_text(bin_a) == as_text(grpc_a)
    probs = np.array(expected["iris"]["probabilities"])
    names = ["setosa", "versicolor", "virginica"]
    for row, p in zip(as_text(bin_a), probs):
        score, index, label = row[0].split(":")
        assert int(index) == int(np.argmax(p)) and label == names[int(index)]
        assert abs(float(score) - p.max()) <= 1e-5
        assert float(row[0].split(":")[0]) >= float(row[1].split(":")[0])


def test_grpc_stream(grpc, expected):
    x = rows(expected, "breast_cancer")
    answers = queue.Queue()
    grpc.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(len(x)):
            grpc.async_stream_infer("breast_cancer", [infer_input(tg, x[i:i + 1])],
                                    request_id=str(i))
        grpc.async_stream_infer("no_such_model", [infer_input(tg, x[:1])], request_id="bad")
        got = [answers.get(timeout=20) for _ in range(len(x) + 1)]
    finally:
        grpc.stop_stream()
    ok = {r.get_response().id: r for r, e in got if e is None}
    errors = [e for r, e in got if e is not None]
    assert len(ok) == len(x) and len(errors) == 1
    assert "unknown model" in errors[0].message()
    probs = np.array([ok[str(i)].as_numpy("probabilities")[0] for i in range(len(x))])
    assert_close("breast_cancer over a stream", probs, expected["breast_cancer"]["probabilities"],
                 atol=expected["tolerance"])


def test_hundred_thousand_rows_over_binary_http_and_grpc(http, grpc, expected):
    base = rows(expected, "breast_cancer")
    x = np.resize(base, (100_000, base.shape[1])).astype(np.float32)
    hb = http.infer("breast_cancer", [infer_input(th, x)],
                    outputs=[th.InferRequestedOutput("probabilities")])
    g = grpc.infer("breast_cancer", [infer_input(tg, x)],
                   outputs=[tg.InferRequestedOutput("probabilities")])
    p = hb.as_numpy("probabilities")
    assert p.shape == (100_000, 2)
    np.testing.assert_array_equal(p, g.as_numpy("probabilities"))
    want = np.resize(np.array(expected["breast_cancer"]["probabilities"]), (100_000, 2))
    assert_close("100,000 rows over binary HTTP", p, want, atol=expected["tolerance"])


# -- bad requests: clean errors, and the server keeps serving --------------------------------------

def still_serving(http, grpc, expected):
    x = rows(expected, "iris")[:1]
    want = expected["iris"]["label_names"][:1]
    assert text(http.infer("iris", [infer_input(th, x)]).as_numpy("label")) == want
    assert text(grpc.infer("iris", [infer_input(tg, x)]).as_numpy("label")) == want


def bad_cases(expected):
    x = rows(expected, "iris")
    return [
        # (what, model, input array, requested output, http status, grpc code, message part)
        ("unknown model", "no_such_model", x, None, "404", "NOT_FOUND", "unknown model"),
        ("wrong width", "iris", x[:, :3], None, "400", "INVALID_ARGUMENT", "dimension 1 is 3"),
        ("unknown output", "iris", x, "nope", "400", "INVALID_ARGUMENT", "unknown output"),
        ("strings for numbers", "iris", np.array([[b"a"] * 4], dtype=object), None, "400",
         "INVALID_ARGUMENT", "BYTES"),
    ]


@pytest.mark.parametrize("case", range(4))
def test_bad_requests_get_clean_errors(http, grpc, expected, case):
    what, model, x, out, status, code, msg = bad_cases(expected)[case]
    for c, mod, want in ((http, th, status), (grpc, tg, "StatusCode." + code)):
        outputs = [mod.InferRequestedOutput(out)] if out else None
        with pytest.raises(InferenceServerException) as e:
            c.infer(model, [infer_input(mod, x)], outputs=outputs)
        assert e.value.status() == want, (what, e.value)
        assert msg in e.value.message(), (what, e.value.message())
    still_serving(http, grpc, expected)


def test_bad_classification_and_version(http, grpc, expected):
    x = rows(expected, "iris")
    with pytest.raises(InferenceServerException) as e:
        http.infer("iris", [infer_input(th, x)],
                   outputs=[th.InferRequestedOutput("label", class_count=1)])
    assert e.value.status() == "400" and "BYTES" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        grpc.infer("iris", [infer_input(tg, x)], model_version="9")
    assert e.value.status() == "StatusCode.NOT_FOUND"
    still_serving(http, grpc, expected)


def test_grpc_deadline(grpc, expected):
    base = rows(expected, "breast_cancer")
    x = np.resize(base, (100_000, base.shape[1])).astype(np.float32)
    with pytest.raises(InferenceServerException) as e:
        grpc.infer("breast_cancer", [infer_input(tg, x)], client_timeout=0.001)
    assert e.value.status() == "StatusCode.DEADLINE_EXCEEDED"


def test_statistics_over_both(http, grpc, expected):
    x = rows(expected, "wine")
    http.infer("wine", [infer_input(th, x)])
    grpc.infer("wine", [infer_input(tg, x)])
    h = http.get_inference_statistics("wine")["model_stats"][0]
    g = grpc.get_inference_statistics("wine", as_json=True)["model_stats"][0]
    assert h["name"] == g["name"] == "wine"
    # protobuf's JSON writes 64-bit counts as strings.
    assert int(g["inference_stats"]["success"]["count"]) == h["inference_stats"]["success"]["count"]
    assert h["inference_stats"]["success"]["count"] >= 2
    assert int(g["inference_count"]) == h["inference_count"] >= 2 * len(x)
    with pytest.raises(InferenceServerException) as e:
        grpc.get_inference_statistics("no_such_model")
    assert e.value.status() == "StatusCode.NOT_FOUND"
