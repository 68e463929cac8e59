#!/usr/bin/env bash
# Triton's perf_analyzer against a release ferroserve, beside the wrk harness (bench/run.sh):
# iris and simple over HTTP and gRPC, concurrency 1 to 64, 5 s windows, perf_analyzer's own
# stability rule (10%). Uses tests/perf_analyzer/run.sh (which fetches perf_analyzer); keeps
# every run's output in bench/out/perf_analyzer-<time>/.
#
#   cargo build --release -p ferroserve && bench/perf_analyzer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export FERROSERVE_BIN=${FERROSERVE_BIN:-$PWD/target/release/ferroserve}
export PA_INTERVAL_MS=${PA_INTERVAL_MS:-5000}
export PA_CONCURRENCY=${PA_CONCURRENCY:-1:64:16}
export PA_STABILITY=${PA_STABILITY:-10}
export PA_OUT=${PA_OUT:-$PWD/bench/out/perf_analyzer-$(date -u +%Y%m%dT%H%M%SZ)}
echo "ferroserve $(git rev-parse --short HEAD 2>/dev/null || echo '?'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
exec tests/perf_analyzer/run.sh
