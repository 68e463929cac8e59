#!/usr/bin/env bash
# Tree-engine benchmark: trains the benchmark models with the real libraries, times each library's
# own predict, the compiled forests of lleaves and tl2cgen, and ferroserve's engine on the same
# files and inputs in the same run, checks that the answers agree, and prints (and writes) a table
# of ratios.
#
#   bash bench/trees/run.sh            # outputs in bench/out/trees/
#   ROUNDS=5 REPS=7 bash bench/trees/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cargo build --release -q -p ferroserve-trees --example time_engine
# The compiled-forest runners are optional: install them when missing, go on without them when
# that fails (bench.py says which runner it skips).
if ! python3 -c 'import lleaves, tl2cgen, treelite' 2>/dev/null; then
    python3 -m pip install -q --disable-pip-version-check -r bench/trees/requirements.txt \
        || echo "could not install bench/trees/requirements.txt; timing without the runners it lacks"
fi
exec python3 bench/trees/bench.py --engine "${CARGO_TARGET_DIR:-$root/target}/release/examples/time_engine" \
    --out "${OUT:-$root/bench/out/trees}" "$@"
