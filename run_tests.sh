#!/usr/bin/env bash
# The test suite: sets up .venv if needed, then runs pytest. Nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash scripts/setup_env.sh
# two pytest-xdist workers (RINGBENCH_TEST_WORKERS), a test module per worker at a time: most
# tests wait on process start-up and imports, which a second worker overlaps
exec "${RINGBENCH_VENV:-.venv}/bin/python" -m pytest -n "${RINGBENCH_TEST_WORKERS:-2}" --dist loadscope "$@"
