"""deploy/test-image.sh's checks of a served answer against the training library's own
predictions (examples/models/expected.json), within the stated tolerance.

    check_answer.py request MODEL            # a v2 request body of the model's sample rows
    check_answer.py v2 MODEL ANSWER.json     # the v2 answer to it matches the library
    check_answer.py labels MODEL REQUEST ANSWER  # a friendly route's answer: the labels of a
                                             # request file of examples/requests
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = json.load(open(os.path.join(HERE, "..", "examples", "models", "expected.json")))


def fail(msg):
    print(f"check_answer: {msg}", file=sys.stderr)
    sys.exit(1)


def request(model):
    e = EXPECTED[model]
    rows = e["rows"]
    body = {
        "inputs": [
            {
                "name": e["input"],
                "datatype": "FP32",
                "shape": [len(rows), len(rows[0])],
                "data": [x for r in rows for x in r],
            }
        ]
    }
    print(json.dumps(body))


def flat(v):
    if isinstance(v, list):
        for x in v:
            yield from flat(x)
    else:
        yield v


def v2(model, path):
    e = EXPECTED[model]
    tol = e.get("tolerance", EXPECTED["tolerance"]) * 10  # FP32 on the wire
    answer = json.load(open(path))
    outputs = {o["name"]: o["data"] for o in answer.get("outputs", [])}
    checked = 0
    for name in ("label", "probabilities", "predictions", "value"):
        if name not in e or not isinstance(e[name], list):
            continue
        if name not in outputs:
            fail(f"{model}: no output {name!r} in {sorted(outputs)}")
        want, got = list(flat(e[name])), list(flat(outputs[name]))
        if name == "label" and got and isinstance(got[0], str):
            want = list(flat(e["label_names"]))  # classification labels: the class names
            if want != got:
                fail(f"{model}/label: {got} != the library's {want}")
            checked += 1
            continue
        if len(want) != len(got):
            fail(f"{model}/{name}: {len(got)} values, the library gave {len(want)}")
        worst = max(abs(float(a) - float(b)) for a, b in zip(want, got))
        if worst > tol:
            fail(f"{model}/{name}: worst difference {worst} > {tol}")
        checked += 1
    if not checked:
        fail(f"{model}: nothing to compare")
    print(f"{model}: {len(e['rows'])} rows match the library (tolerance {tol})")


def labels(model, request_name, path):
    want = EXPECTED[model]["requests"][request_name]["label"]
    text = open(path).read()
    answer = json.loads(text)
    got = answer["Prediction"] if isinstance(answer, dict) else answer
    if list(flat(got)) != want:
        fail(f"{model} {request_name}: {got} != the library's {want}")
    print(f"{model} {request_name}: {len(want)} labels match the library")


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    {"request": request, "v2": v2, "labels": labels}[cmd](*rest)
