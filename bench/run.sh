#!/usr/bin/env bash
# The server benchmark against the usual stacks: see bench/run.py (arguments are passed on).
set -euo pipefail
exec python3 "$(dirname "$0")/run.py" "$@"
