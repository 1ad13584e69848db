#!/usr/bin/env bash
# Creates .venv with the pinned dependencies, ringbench installed in editable mode, and
# detectron2 (detection/install_detectron2.sh); and .venv-tfds with TensorFlow and
# tensorflow-datasets (requirements-tfds.txt). Idempotent: each environment is skipped when its
# pins (and, for .venv, pyproject.toml and the detectron2 install script) are unchanged.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RINGBENCH_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.ringbench-installed"
want="$(cat "$root/requirements.txt" "$root/pyproject.toml" "$root/detection/install_detectron2.sh" | sha256sum | cut -d' ' -f1)"

# TensorFlow and tensorflow-datasets, for Meta-Dataset's TFDS forms, in a second environment
# that never holds torch (see requirements-tfds.txt); the torch environment finds it through
# RINGBENCH_TFDS_VENV or at .venv-tfds.
tfds_venv="${RINGBENCH_TFDS_VENV:-$root/.venv-tfds}"
tfds_stamp="$tfds_venv/.ringbench-installed"
tfds_want="$(sha256sum < "$root/requirements-tfds.txt" | cut -d' ' -f1)"
if [[ ! -f "$tfds_stamp" || "$(cat "$tfds_stamp")" != "$tfds_want" ]]; then
  echo "[setup] creating $tfds_venv (TensorFlow, tensorflow-datasets from requirements-tfds.txt)" >&2
  [[ -x "$tfds_venv/bin/python" ]] || "$python" -m venv "$tfds_venv"
  "$tfds_venv/bin/python" -m pip install --quiet -r "$root/requirements-tfds.txt" >&2
  echo "$tfds_want" > "$tfds_stamp"
fi

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
