#!/usr/bin/env bash
# Triton's perf_analyzer against the real ferroserve: iris (bundled) and simple (INT32 [-1, 16],
# built with the `onnx` package), over HTTP and gRPC, through a few concurrency steps, on a
# server this script starts on free loopback ports and stops by its PID. Fails on any error.
#
# perf_analyzer ships inside the tritonclient 2.41.1 wheel (newer wheels' binaries need a newer
# glibc than Debian 12's); it needs libb64 (apt package libb64-0d) and libcudart.so.12 (pip
# package nvidia-cuda-runtime-cu12). Unless PERF_ANALYZER names a binary, this script fetches
# both pip packages into target/perf_analyzer/ (not into the interpreter) and, as root with
# apt-get, installs libb64-0d.
#
#   tests/perf_analyzer/run.sh                 # FERROSERVE_BIN, else target/debug/ferroserve
#   PA_INTERVAL_MS=2000 tests/perf_analyzer/run.sh      # longer measurement windows
# Also PA_CONCURRENCY (default 1:16:4), PA_STABILITY (percent, default 100) and PA_OUT (a
# directory that keeps each run's full output); bench/perf_analyzer.sh sets them.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PA_DIR=$ROOT/target/perf_analyzer
INTERVAL=${PA_INTERVAL_MS:-500}
CONCURRENCY=${PA_CONCURRENCY:-1:16:4}
STABILITY=${PA_STABILITY:-100}
OUT=${PA_OUT:-}
BIN=${FERROSERVE_BIN:-$ROOT/target/debug/ferroserve}
[ -x "$BIN" ] || { echo "no ferroserve binary at $BIN (cargo build -p ferroserve, or set FERROSERVE_BIN)" >&2; exit 1; }

# -- perf_analyzer and its libraries ------------------------------------------------------------
if ! ldconfig -p | grep -q 'libb64\.so\.0d'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libb64-0d >/dev/null
  else
    echo "perf_analyzer needs libb64.so.0d: apt-get install libb64-0d" >&2; exit 1
  fi
fi
PA=${PERF_ANALYZER:-$PA_DIR/bin/perf_analyzer}
if [ ! -x "$PA" ]; then
  mkdir -p "$PA_DIR/bin"
  python3 -m pip download -q --disable-pip-version-check --no-deps tritonclient==2.41.1 -d "$PA_DIR"
  python3 -m zipfile -e "$PA_DIR"/tritonclient-2.41.1-*.whl "$PA_DIR/wheel"
  cp "$PA_DIR/wheel/tritonclient-2.41.1.data/data/bin/perf_analyzer" "$PA"
  chmod +x "$PA"
  rm -rf "$PA_DIR/wheel"
fi
CUDART=$PA_DIR/cuda/nvidia/cuda_runtime/lib
if [ ! -e "$CUDART/libcudart.so.12" ]; then
  python3 -m pip install -q --disable-pip-version-check --no-deps --target "$PA_DIR/cuda" \
    nvidia-cuda-runtime-cu12==12.3.101 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
export LD_LIBRARY_PATH=$CUDART${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"$PA" --version

# -- a repository with iris and simple, and a server on free ports -------------------------------
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
python3 tests/python/triton_models.py "$WORK/models"
cp -r examples/models/iris "$WORK/models/iris"
"$BIN" serve --repository "$WORK/models" --host 127.0.0.1 --http-port 0 --grpc-port 0 \
  --request-log off --log warn >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
HTTP="" GRPC=""
for _ in $(seq 1 200); do
  HTTP=$(sed -n 's/^ferroserve: HTTP listening on //p' "$WORK/server.log")
  GRPC=$(sed -n 's/^ferroserve: gRPC listening on //p' "$WORK/server.log")
  # The ports are bound first, the models load in the background: wait until it is ready.
  [ -n "$HTTP" ] && [ -n "$GRPC" ] && curl -sf "http://$HTTP/v2/health/ready" >/dev/null && break
  sleep 0.1
done
[ -n "$HTTP" ] && [ -n "$GRPC" ] || { cat "$WORK/server.log"; echo "ferroserve did not start" >&2; exit 1; }

# -- the runs -----------------------------------------------------------------------------------
# -s 100 by default: a loaded CI machine rarely gives three windows within perf_analyzer's
# default 10%; stability is not what is tested here, the protocol is (config, inference,
# statistics).
failed=0
run() {
  local what=$1; shift
  echo "=== perf_analyzer $*"
  set +e
  timeout 600 "$PA" "$@" --concurrency-range "$CONCURRENCY" --measurement-interval "$INTERVAL" \
    -s "$STABILITY" >"$WORK/out.txt" 2>&1
  local rc=$?
  set -e
  tail -6 "$WORK/out.txt"
  if [ -n "$OUT" ]; then mkdir -p "$OUT"; cp "$WORK/out.txt" "$OUT/${what// /_}.txt"; fi
  if [ "$rc" -ne 0 ] || grep -qiE 'error|failed|unable|abort' "$WORK/out.txt" \
      || ! grep -q '^Inferences/Second vs. Client Average Batch Latency' "$WORK/out.txt"; then
    echo "FAILED ($what, exit $rc):"; cat "$WORK/out.txt"; failed=1
  fi
}
run "iris http" -m iris -u "$HTTP" -i http
run "iris grpc" -m iris -u "$GRPC" -i grpc
run "iris http version 1" -m iris -x 1 -u "$HTTP" -i http
run "simple http" -m simple -u "$HTTP" -i http
run "simple grpc" -m simple -u "$GRPC" -i grpc
kill "$SERVER_PID"
status=0; wait "$SERVER_PID" || status=$?
SERVER_PID=""
[ "$status" -eq 0 ] || { echo "ferroserve exited with $status"; cat "$WORK/server.log"; failed=1; }
[ "$failed" -eq 0 ] && echo "perf_analyzer: every run completed"
exit "$failed"
