#!/usr/bin/env bash
# Large batches over v2 JSON, binary HTTP and gRPC, same run: builds release (the server and
# this harness) and runs it; arguments are passed on (--rows 1000,100000 --seconds 5 ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p ferroserve -p ferroserve-bench-protocols
exec target/release/ferroserve-bench-protocols --bin target/release/ferroserve "$@"
