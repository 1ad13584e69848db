#!/usr/bin/env bash
# Creates .venv with the pinned dependencies, ringbench installed in editable mode, and
# detectron2 (detection/install_detectron2.sh). Idempotent: skips everything when
# requirements.txt, pyproject.toml and the detectron2 install script are unchanged.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RINGBENCH_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.ringbench-installed"
want="$(cat "$root/requirements.txt" "$root/pyproject.toml" "$root/detection/install_detectron2.sh" | sha256sum | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "[setup] creating $venv (pinned dependencies from requirements.txt)" >&2
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet -r "$root/requirements.txt" >&2
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$root" >&2
bash "$root/detection/install_detectron2.sh" "$venv/bin/python" >&2
echo "$want" > "$stamp"
echo "[setup] done" >&2
