#!/usr/bin/env bash
# Builds ferroserve's three images from deploy/Dockerfile with buildah and runs them with podman
# (no Docker engine needed), as a user would: health and the HEALTHCHECK, predictions checked
# against the training libraries' own (examples/models/expected.json), the Flask tutorial's
# `-v ...:/models -e MODEL_FILE=/models/model.json` and `-v $PWD/data:/data -e
# MODEL_FILE=/data/model.pkl -p 5000:5000`, the FastAPI tutorial's `-p 81:80`, a Python
# predictor, a request in flight answered across SIGTERM (`podman stop`), and deploy/compose.yaml
# with Redis (podman-compose): predictions recorded in Redis, a batch job run through it.
# Prints the images' sizes and each container's start-to-ready time (docs/deployment.md).
#
# Installs what it needs (Debian's podman, buildah, runc, debootstrap; podman-compose from PyPI)
# when apt-get is there; base images come from deploy/base-images.sh, kept in the local image
# store between runs. Bounded: every wait has a deadline. Removes only the containers, volumes
# and networks it made.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman-containers.conf}"
started=$(date +%s)
step() { echo; echo "=== test-image: $* ($(( $(date +%s) - started ))s)"; }
out=target/deploy
mkdir -p "$out"
report="$out/report.txt"
: >"$report"

step "packages"
# iptables: netavark sets up the containers' network with it (not pulled in without recommends).
need=(podman buildah runc debootstrap fuse-overlayfs catatonit netavark aardvark-dns iptables)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x "$out/py-compose/bin/podman-compose" ]; then
  python3 -m venv "$out/py-compose"
  "$out/py-compose/bin/pip" install -q --disable-pip-version-check podman-compose==1.6.0
fi
compose() { "$out/py-compose/bin/podman-compose" "$@"; }
podman --version; buildah --version; compose --version 2>/dev/null | tail -n1

step "base images"
deploy/base-images.sh

build() { # target tag
  local t0
  t0=$(date +%s)
  buildah bud --isolation chroot --pull=never --layers --format docker -q \
    -f deploy/Dockerfile --target "$1" -t "$2" . >"$out/build-$1.log" 2>&1 \
    || { tail -n 40 "$out/build-$1.log"; echo "building --target $1 failed" >&2; exit 1; }
  echo "built $2 (--target $1) in $(( $(date +%s) - t0 )) s"
}
step "build: slim, default, python"
build slim localhost/ferroserve:slim
build default localhost/ferroserve:latest
build python localhost/ferroserve:python
# The baseline: the Flask tutorial's kind of image (bench/containers/flask.Containerfile).
t0=$(date +%s)
buildah bud --isolation chroot --pull=never --layers --format docker -q \
  -f bench/containers/flask.Containerfile -t localhost/flask-tutorial:baseline . >"$out/build-flask.log" 2>&1 \
  || { tail -n 40 "$out/build-flask.log"; echo "building the Flask baseline failed" >&2; exit 1; }
echo "built localhost/flask-tutorial:baseline in $(( $(date +%s) - t0 )) s"
for image in ferroserve:slim ferroserve:latest ferroserve:python flask-tutorial:baseline; do
  size=$(podman image inspect --format '{{.Size}}' "localhost/$image")
  echo "size $image $(( size / 1000000 )) MB" | tee -a "$report"
done

# --- helpers -------------------------------------------------------------------------------
prefix="fs-test-$$"
tmp=$(mktemp -d)
cleanup() {
  set +e
  for c in $(podman ps -a --format '{{.Names}}' | grep "^$prefix-"); do podman rm -f -t 0 "$c" >/dev/null 2>&1; done
  podman volume rm -f "$prefix-data" >/dev/null 2>&1
  if [ -n "${compose_up:-}" ]; then
    compose -f deploy/compose.yaml -p "$prefix" down -v -t 5 >/dev/null 2>&1
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_ready URL SECONDS: polls every 20 ms until it answers 200; prints the seconds it took.
wait_ready() {
  python3 - "$1" "$2" <<'PY'
import sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2])
t0 = time.monotonic()
while time.monotonic() - t0 < limit:
    try:
        if urllib.request.urlopen(url, timeout=2).status == 200:
            print(f"{time.monotonic() - t0:.2f}")
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.02)
sys.exit(f"{url}: not ready after {limit} s")
PY
}
# run NAME [podman run args...] IMAGE [args]: detached, with --init, removed at the end.
run() {
  local name=$1; shift
  run_t0=$(date +%s.%N)
  # podman runs the HEALTHCHECK on a systemd timer and says so when there is no systemd;
  # `podman healthcheck run` runs it on demand below.
  podman run -d --init --name "$prefix-$name" "$@" 2> >(grep -v 'systemd connection' >&2) >/dev/null
}
logs() { podman logs "$prefix-$1" 2>&1 | tail -n 30; }
# started_ready NAME URL: from `podman run` to the first 200 of /v2/health/ready, recorded in
# the report.
started_ready() {
  wait_ready "$2" 60 >/dev/null || { logs "$1"; exit 1; }
  echo "start-to-ready $1 $(python3 -c "import time; print(f'{time.time() - $run_t0:.2f}')") s" | tee -a "$report"
}
post() { curl -sS --max-time 10 -H 'Content-Type: application/json' -o "$3" -w '%{http_code}' -X POST "$1" --data-binary "$2"; }
expect_200() { [ "$1" = 200 ] || { echo "HTTP $1: $(cat "$2")" >&2; exit 1; }; }

step "podman's own start: a container that runs \`true\` (what start-to-ready includes)"
t0=$(date +%s.%N)
podman run --rm --init --entrypoint true localhost/ferroserve:slim 2> >(grep -v 'systemd connection' >&2)
echo "start-to-ready podman-run-true $(python3 -c "import time; print(f'{time.time() - $t0:.2f}')") s" | tee -a "$report"

step "slim: the bundled models, tree models only"
port=$(free_port)
run slim -p "127.0.0.1:$port:8000" localhost/ferroserve:slim
started_ready slim "http://127.0.0.1:$port/v2/health/ready"
python3 deploy/check_answer.py request iris >"$tmp/iris.json"
expect_200 "$(post "http://127.0.0.1:$port/v2/models/iris/infer" "@$tmp/iris.json" "$tmp/a.json")" "$tmp/a.json"
python3 deploy/check_answer.py v2 iris "$tmp/a.json"
# ONNX Runtime is not in this image: the MLP (not a tree ensemble) is refused, saying why.
curl -sS -X POST "http://127.0.0.1:$port/v2/repository/index" -d '{}' >"$tmp/index.json"
python3 - "$tmp/index.json" <<'PY'
import json, sys
idx = {m["name"]: m for m in json.load(open(sys.argv[1]))}
assert idx["iris"]["state"] == "READY", idx
mlp = idx["iris_mlp"]
assert mlp["state"] != "READY" and "ONNX Runtime" in mlp.get("reason", ""), mlp
print("slim: iris_mlp refused:", mlp["reason"])
PY
# The image's HEALTHCHECK (bash's /dev/tcp, no curl in the image).
podman healthcheck run "$prefix-slim" && echo "slim: HEALTHCHECK healthy"

step "default: ONNX Runtime from the wheel serves the MLP"
port=$(free_port)
run default -p "127.0.0.1:$port:8000" localhost/ferroserve:latest
started_ready default "http://127.0.0.1:$port/v2/health/ready"
python3 deploy/check_answer.py request iris_mlp >"$tmp/mlp.json"
expect_200 "$(post "http://127.0.0.1:$port/v2/models/iris_mlp/infer" "@$tmp/mlp.json" "$tmp/a.json")" "$tmp/a.json"
python3 deploy/check_answer.py v2 iris_mlp "$tmp/a.json"
podman rm -f -t 0 "$prefix-default" >/dev/null 2>&1

step "the Flask tutorial: -v \$PWD/models:/models -e MODEL_FILE=/models/model.json -p 8000:8000"
mkdir -p "$tmp/models"
cp examples/models/breast_cancer/1/model.json "$tmp/models/model.json"
port=$(free_port)
run model-file -v "$tmp/models:/models:ro" -e MODEL_FILE=/models/model.json -p "127.0.0.1:$port:8000" localhost/ferroserve:latest
started_ready model-file "http://127.0.0.1:$port/v2/health/ready"
python3 deploy/check_answer.py request breast_cancer >"$tmp/bc.json"
expect_200 "$(post "http://127.0.0.1:$port/v2/models/model/infer" "@$tmp/bc.json" "$tmp/a.json")" "$tmp/a.json"
python3 deploy/check_answer.py v2 breast_cancer "$tmp/a.json"
models=$(curl -sS -X POST "http://127.0.0.1:$port/v2/repository/index" -d '{}' | python3 -c 'import json,sys; print(",".join(m["name"] for m in json.load(sys.stdin)))')
[ "$models" = model ] || { echo "MODEL_FILE should serve one model, served: $models" >&2; exit 1; }
echo "model-file: serves only MODEL_FILE's model"
podman rm -f -t 0 "$prefix-model-file" >/dev/null 2>&1

step "python: the Flask tutorial's pickle, -v \$PWD/data:/data -e MODEL_FILE=/data/model.pkl -p 5000:5000"
mkdir -p "$tmp/data"
# Trained in the image by scikit-learn itself, written as the tutorial's model_training does.
podman run --rm --user 0 -v "$tmp/data:/data" --entrypoint python3 localhost/ferroserve:python 2> >(grep -v 'systemd connection' >&2) -c '
import pickle, json
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
X, y = load_iris(return_X_y=True)
clf = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
pickle.dump(clf, open("/data/model.pkl", "wb"))
json.dump(clf.predict([[1.5, 0.7, 1.3, 0.3], [6.5, 3.0, 5.5, 1.8]]).tolist(), open("/data/want.json", "w"))
'
# The tutorial's route, in a model.toml beside the pickle (docs/configuration.md, Serving a pickle).
cat >"$tmp/data/model.toml" <<'TOML'
[[routes]]
method = "GET"
path = "/prediction"
features = ["slength", "swidth", "plength", "pwidth"]
response_key = "prediction"
unwrap_single = true
TOML
port=$(free_port)
run pickle -v "$tmp/data:/data" -e MODEL_FILE=/data/model.pkl -p "127.0.0.1:$port:5000" localhost/ferroserve:python
started_ready pickle "http://127.0.0.1:$port/v2/health/ready"
got=$(curl -sS --max-time 10 "http://127.0.0.1:$port/prediction?slength=1.5&swidth=0.7&plength=1.3&pwidth=0.3")
got2=$(curl -sS --max-time 10 "http://127.0.0.1:$port/prediction?slength=6.5&swidth=3.0&plength=5.5&pwidth=1.8")
python3 - "$tmp/data/want.json" "$got" "$got2" <<'PY'
import json, sys
want = json.load(open(sys.argv[1]))
got = [json.loads(a) for a in sys.argv[2:]]
flat = [g["prediction"] for g in got]  # the Flask app's {"prediction": ...}
assert [int(x) for x in flat] == want, (got, want)
print(f"pickle: /prediction answers {got} as scikit-learn's predict {want}")
PY
podman rm -f -t 0 "$prefix-pickle" >/dev/null 2>&1
# The same pickle and line in the Flask tutorial's own kind of image: its start-to-ready (the
# first answer of /prediction: the app has no health route) is the baseline.
port=$(free_port)
run flask -v "$tmp/data:/data" -e MODEL_FILE=/data/model.pkl -p "127.0.0.1:$port:5000" localhost/flask-tutorial:baseline
started_ready flask-baseline "http://127.0.0.1:$port/prediction?slength=1.5&swidth=0.7&plength=1.3&pwidth=0.3"
podman rm -f -t 0 "$prefix-flask" >/dev/null 2>&1
# ferroserve again, now that the conversion is cached in the data volume: a restart's time.
port=$(free_port)
podman volume create "$prefix-data" >/dev/null
for i in 1 2; do
  run "pickle-$i" -v "$tmp/data:/data" -v "$prefix-data:/var/lib/ferroserve" -e MODEL_FILE=/data/model.pkl -p "127.0.0.1:$port:5000" localhost/ferroserve:python
  started_ready "pickle-$([ $i = 1 ] && echo first || echo cached)" "http://127.0.0.1:$port/v2/health/ready"
  podman rm -f -t 10 "$prefix-pickle-$i" >/dev/null 2>&1
done
podman volume rm "$prefix-data" >/dev/null

step "python: the FastAPI tutorial's -p 81:80 and a Python predictor, answered across SIGTERM"
# A slow copy of the Ray Serve tutorial's AdderPredictor: a request is in flight at `podman stop`.
mkdir -p "$tmp/repo"
cp -r examples/python_models/adder "$tmp/repo/slow_adder"
cat >>"$tmp/repo/slow_adder/1/model.py" <<'PY'


class SlowAdder(AdderPredictor):
    def predict(self, inp):
        import time
        time.sleep(2)
        return super().predict(inp)
PY
sed -i 's/^predictor = .*/predictor = "model:SlowAdder"/; /^\[\[routes\]\]/,$d' "$tmp/repo/slow_adder/model.toml"
cp -r examples/models/wine "$tmp/repo/wine"
port=$(free_port)
run python -v "$tmp/repo:/models:ro" -p "127.0.0.1:$port:80" localhost/ferroserve:python
started_ready python "http://127.0.0.1:$port/v2/health/ready"
# curl -X POST http://localhost:81/predict -d @./wine-examples/batch_1.json
expect_200 "$(post "http://127.0.0.1:$port/predict" @examples/requests/wine_batch_1.json "$tmp/a.json")" "$tmp/a.json"
python3 deploy/check_answer.py labels wine wine_batch_1.json "$tmp/a.json"
body='{"inputs":[{"name":"array","datatype":"FP64","shape":[1,1],"data":[40]}]}'
(post "http://127.0.0.1:$port/v2/models/slow_adder/infer" "$body" "$tmp/slow.json" >"$tmp/slow.code") &
inflight=$!
sleep 0.7
t0=$(date +%s.%N)
podman stop -t 20 "$prefix-python" 2> >(grep -v "systemd connection" >&2) >/dev/null
stop_secs=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
wait "$inflight"
expect_200 "$(cat "$tmp/slow.code")" "$tmp/slow.json"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); assert a["outputs"][0]["data"] == [42.0], a; print("python predictor: the request in flight at SIGTERM answered 42.0")' "$tmp/slow.json"
status=$(podman inspect --format '{{.State.ExitCode}}' "$prefix-python")
[ "$status" = 0 ] || { logs python; echo "exit status $status after SIGTERM" >&2; exit 1; }
echo "SIGTERM: exited 0 in $stop_secs s, the request in flight answered" | tee -a "$report"

step "KServe: the ClusterServingRuntime's container on a storage initializer's /mnt/models"
# Its image's args and env exactly as deploy/kserve/clusterservingruntime.yaml gives them, with
# {{.Name}} an InferenceService's name; /mnt/models holding a scikit-learn model.joblib.
mkdir -p "$tmp/mnt-models"
podman run --rm --user 0 -v "$tmp/mnt-models:/mnt/models" --entrypoint python3 localhost/ferroserve:python 2> >(grep -v 'systemd connection' >&2) -c '
import joblib, json
from sklearn.datasets import load_iris
from sklearn.ensemble import GradientBoostingClassifier
X, y = load_iris(return_X_y=True)
clf = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(X, y)
joblib.dump(clf, "/mnt/models/model.joblib")
rows = X[::15].tolist()
json.dump({"rows": rows, "label": clf.predict(rows).tolist(), "probabilities": clf.predict_proba(rows).tolist()}, open("/mnt/models/.want.json", "w"))
'
"$out/py-compose/bin/python" - deploy/kserve/clusterservingruntime.yaml sklearn-iris >"$tmp/kserve-run" <<'PY'
import shlex, sys, yaml
c = yaml.safe_load(open(sys.argv[1]))["spec"]["containers"][0]
args = [a.replace("{{.Name}}", sys.argv[2]) for a in c["args"]]
env = " ".join(f"-e {shlex.quote(e['name'] + '=' + e['value'])}" for e in c.get("env", []))
print(f"env_args=({env})\nargs=({' '.join(shlex.quote(a) for a in args)})")
PY
. "$tmp/kserve-run"
port=$(free_port); gport=$(free_port)
run kserve --user 10001 "${env_args[@]}" -v "$tmp/mnt-models:/mnt/models:ro" -p "127.0.0.1:$port:8080" -p "127.0.0.1:$gport:9000" localhost/ferroserve:python "${args[@]}"
started_ready kserve "http://127.0.0.1:$port/v2/health/ready"
python3 - "$tmp/mnt-models/.want.json" >"$tmp/kserve-req.json" <<'PY'
import json, sys
w = json.load(open(sys.argv[1]))
print(json.dumps({"inputs": [{"name": "input", "datatype": "FP64", "shape": [len(w["rows"]), 4], "data": sum(w["rows"], [])}]}))
PY
expect_200 "$(post "http://127.0.0.1:$port/v2/models/sklearn-iris/infer" "@$tmp/kserve-req.json" "$tmp/a.json")" "$tmp/a.json"
python3 - "$tmp/mnt-models/.want.json" "$tmp/a.json" <<'PY'
import json, sys
want, got = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
out = {o["name"]: o["data"] for o in got["outputs"]}
assert [int(x) for x in out["label"]] == want["label"], (out["label"], want["label"])
probs = sum(want["probabilities"], [])
worst = max(abs(a - b) for a, b in zip(out["probabilities"], probs))
assert len(out["probabilities"]) == len(probs) and worst < 1e-5, worst
print(f"kserve: sklearn-iris answers scikit-learn's labels and probabilities (worst {worst:.1e}) on port 8080")
PY
# grpc-v2 on port 9000, with Triton's client (in CI; elsewhere when it is installed).
if python3 -c 'import tritonclient.grpc' 2>/dev/null; then
  python3 - "127.0.0.1:$gport" "$tmp/mnt-models/.want.json" <<'PY'
import json, sys
import numpy as np
import tritonclient.grpc as g
c = g.InferenceServerClient(sys.argv[1])
assert c.is_model_ready("sklearn-iris")
want = json.load(open(sys.argv[2]))
x = g.InferInput("input", [len(want["rows"]), 4], "FP64")
x.set_data_from_numpy(np.array(want["rows"], dtype=np.float64))
r = c.infer("sklearn-iris", [x])
assert r.as_numpy("label").astype(int).tolist() == want["label"], r.as_numpy("label")
print("kserve: sklearn-iris answers the same over gRPC on port 9000 (tritonclient)")
PY
elif [ "${CI:-}" = true ]; then
  echo "tritonclient is not installed: CI needs the gRPC check (pip install -r requirements-dev.txt)" >&2
  exit 1
else
  echo "kserve: gRPC not checked (no tritonclient here: pip install -r requirements-dev.txt)"
fi
podman rm -f -t 0 "$prefix-kserve" >/dev/null 2>&1

step "compose: ferroserve + Redis (podman-compose)"
http_port=$(free_port); grpc_port=$(free_port)
export FERROSERVE_HOST_HTTP_PORT=$http_port FERROSERVE_HOST_GRPC_PORT=$grpc_port
compose_up=1
compose -f deploy/compose.yaml -p "$prefix" up -d >"$out/compose-up.log" 2>&1 || { cat "$out/compose-up.log"; exit 1; }
wait_ready "http://127.0.0.1:$http_port/v2/health/ready" 90 >/dev/null \
  || { compose -f deploy/compose.yaml -p "$prefix" logs 2>&1 | tail -n 40; exit 1; }
for _ in 1 2 3; do
  expect_200 "$(post "http://127.0.0.1:$http_port/v2/models/iris/infer" "@$tmp/iris.json" "$tmp/a.json")" "$tmp/a.json"
done
redis_cli() { podman exec "${prefix}_redis_1" redis-cli "$@"; }
n=0
for _ in $(seq 1 100); do
  n=$(redis_cli XLEN ferroserve:predictions:iris)
  [ "$n" -ge 3 ] && break
  sleep 0.1
done
[ "$n" -ge 3 ] || { echo "Redis holds $n prediction records, want 3" >&2; exit 1; }
echo "compose: $n prediction records in Redis (ferroserve:predictions:iris)"
printf '%s\n' "5.1,3.5,1.4,0.2" "6.7,3.0,5.2,2.3" "5.9,3.0,4.2,1.5" >"$tmp/rows.csv"
job=$(curl -sS --max-time 10 -X POST "http://127.0.0.1:$http_port/jobs" -F model=iris -F "file=@$tmp/rows.csv" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
state=""
for _ in $(seq 1 200); do
  state=$(redis_cli HGET "ferroserve:jobs:{$job}" state)
  [ "$state" = succeeded ] || [ "$state" = failed ] && break
  sleep 0.1
done
[ "$state" = succeeded ] || { echo "job $job in Redis: state '$state'" >&2; exit 1; }
echo "compose: batch job $job ran through Redis (state $state)"
compose -f deploy/compose.yaml -p "$prefix" down -v -t 10 >/dev/null 2>&1
compose_up=""

step "done"
cat "$report"
