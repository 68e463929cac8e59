#!/usr/bin/env bash
# Tree-engine benchmark: trains the benchmark models with the real libraries, times each library's
# own predict and ferroserve's engine on the same files and inputs in the same run, checks that
# the answers agree, and prints (and writes) a table of ratios.
#
#   bash bench/trees/run.sh            # outputs in bench/out/trees/
#   ROUNDS=5 REPS=7 bash bench/trees/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cargo build --release -q -p ferroserve-trees --example time_engine
exec python3 bench/trees/bench.py --engine "$root/target/release/examples/time_engine" \
    --out "${OUT:-$root/bench/out/trees}" "$@"
