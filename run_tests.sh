#!/usr/bin/env bash
# The test suite: sets up .venv if needed, then runs pytest. Nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash scripts/setup_env.sh
exec "${RINGBENCH_VENV:-.venv}/bin/python" -m pytest "$@"
