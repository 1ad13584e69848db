#!/usr/bin/env bash
# Installs detectron2 into PYTHON (default: this repository's .venv/bin/python).
#
#   bash detection/install_detectron2.sh [PYTHON]
#
# Idempotent: does nothing when `import detectron2` already works in PYTHON. PYTHON needs
# torch first (scripts/setup_env.sh installs it); the pure-Python dependencies detectron2
# needs (pycocotools, fvcore, iopath, yacs, omegaconf, hydra-core, ...) are installed here
# with the pins of requirements.txt.
#
# detectron2 is not on the package registry under its own name, so there are two ways:
#
#  upstream  where a CUDA toolkit (nvcc) and network access to GitHub exist: the official
#            way, facebookresearch/detectron2 built from source at commit $D2_REF, with its
#            C++/CUDA ops (rotated boxes, deformable conv, the fast COCO evaluation).
#  registry  everywhere else (this project's CPU machines and CI, which reach only package
#            registries): the pure-Python part of detectron2 0.6 from the registry's source
#            package pb1-detectron2==0.6, a republished copy of the 0.6 release whose C++
#            sources are missing. It is built without extensions and gets a detectron2._C
#            module with no ops (build information only). The standard R-CNN configs do not
#            need the ops: detectron2 0.6 calls torchvision's nms and roi_align. What does
#            (ROIAlignRotated, deformable conv, box_iou_rotated, the fast COCO eval) fails
#            when called, so detection/ uses none of it (COCOEvaluator, use_fast_impl=False).
#
# D2_INSTALL=upstream|registry forces one way (default: upstream when possible);
# D2_REINSTALL=1 installs again even where detectron2 imports.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${1:-$root/.venv/bin/python}"
D2_REF="${D2_REF:-2dde706855d87baa9760fbcd0bdb6004a3937204}"
D2_GIT="https://github.com/facebookresearch/detectron2.git"

if [[ -z "${D2_REINSTALL:-}" ]] && "$py" -c "import detectron2" 2>/dev/null; then
  echo "[detectron2] already installed in $py: $("$py" -c 'import detectron2; print(detectron2.__version__)')" >&2
  exit 0
fi
"$py" -c "import torch" 2>/dev/null || {
  echo "install_detectron2.sh: $py has no torch; install requirements.txt first (bash scripts/setup_env.sh)" >&2
  exit 2
}

# detectron2's runtime dependencies, at the versions pinned in requirements.txt (one place
# for pins). setuptools<82 keeps pkg_resources, which detectron2.model_zoo imports.
deps=(pycocotools fvcore iopath yacs termcolor omegaconf hydra-core antlr4-python3-runtime
      portalocker cloudpickle setuptools)
pins=()
for name in "${deps[@]}"; do
  pin="$(grep -iE "^${name}==" "$root/requirements.txt" || true)"
  [[ -n "$pin" ]] || { echo "install_detectron2.sh: no pin for $name in requirements.txt" >&2; exit 2; }
  pins+=("$pin")
done
echo "[detectron2] dependencies: ${pins[*]}" >&2
"$py" -m pip install --quiet "${pins[@]}" >&2

way="${D2_INSTALL:-}"
if [[ -z "$way" ]]; then
  way=registry
  if command -v nvcc >/dev/null && "$py" -c "import torch, sys; sys.exit(torch.version.cuda is None)" \
     && timeout 30 git ls-remote "$D2_GIT" HEAD >/dev/null 2>&1; then
    way=upstream
  fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [[ "$way" == upstream ]]; then
  # The official install (detectron2's INSTALL.md); --no-build-isolation because setup.py
  # imports torch, --no-deps because the dependencies above are pinned.
  echo "[detectron2] building upstream $D2_GIT@$D2_REF with its CUDA ops (several minutes)" >&2
  FORCE_CUDA=1 "$py" -m pip install --no-deps --no-build-isolation "git+$D2_GIT@$D2_REF" >&2
else
  echo "[detectron2] installing the pure-Python detectron2 0.6 from the registry (pb1-detectron2, no C++ ops)" >&2
  # Today's pip refuses to download this sdist because its metadata lists an extra with a
  # direct URL (panopticapi @ https://...); pip 25.3, run from its wheel, still does. Both
  # downloads are checked against these sha256 sums.
  cat > "$tmp/pip.txt" <<'EOF'
pip==25.3 --hash=sha256:9655943313a94722b7774661c21049070f6bbb0a1516bf02f7c8d5d9201514cd
EOF
  cat > "$tmp/d2.txt" <<'EOF'
pb1-detectron2==0.6 --hash=sha256:5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29
EOF
  "$py" -m pip download --quiet --no-deps --only-binary :all: -d "$tmp" -r "$tmp/pip.txt" >&2
  # --no-build-isolation: setup.py imports torch, which is in $py (and not in an isolated env)
  "$py" "$tmp/pip-25.3-py3-none-any.whl/pip" download --quiet --no-deps --no-binary :all: \
    --no-build-isolation -d "$tmp" -r "$tmp/d2.txt" >&2
  tar -xzf "$tmp/pb1-detectron2-0.6.tar.gz" -C "$tmp"
  src="$tmp/pb1-detectron2-0.6"
  # Each edit must apply exactly as written, or the install stops: a different source is
  # not silently half-patched.
  "$py" - "$src" <<'EOF'
import re, sys
from pathlib import Path

src = Path(sys.argv[1])

def edit(rel, old, new, count=None):
    path = src / rel
    text = path.read_text()
    n = len(re.findall(old, text))
    if n == 0 or (count is not None and n != count):
        sys.exit(f"install_detectron2.sh: {rel}: expected {count or 'some'} match(es) of {old!r}, found {n}")
    path.write_text(re.sub(old, new, text))

# no C++ sources in this sdist: build without extensions
edit("setup.py", r"ext_modules=get_extensions\(\),", "ext_modules=[],", 1)
# optional extras detectron2 0.6 lists as hard requirements (black for LazyConfig.save,
# tensorboard for TensorboardXWriter, future/pydot for caffe2 export): dropped so that
# `pip check` holds with what is actually installed
for name in ("black==21.4b2", "tensorboard", "future", "pydot"):
    edit("setup.py", rf'\n\s*"{re.escape(name)}",[^\n]*', "", 1)
# Pillow 10 removed Image.LINEAR (it was an alias of BILINEAR)
edit("detectron2/data/transforms/transform.py", r"\bImage\.LINEAR\b", "Image.BILINEAR", 1)
# numpy 1.24 removed the aliases np.bool/np.int/np.float/np.str (the VOC reader and
# evaluator, polygon masks, the class histogram, the sem-seg evaluator, the visualizers)
alias = r"\bnp\.(bool|int|float|str)\b(?!_)"
for rel in ("detectron2/data/datasets/pascal_voc.py", "detectron2/evaluation/pascal_voc_evaluation.py",
            "detectron2/structures/masks.py", "detectron2/data/build.py",
            "detectron2/evaluation/sem_seg_evaluation.py", "detectron2/utils/visualizer.py",
            "detectron2/utils/video_visualizer.py"):
    edit(rel, alias, r"\1")
left = [str(f.relative_to(src)) for f in (src / "detectron2").rglob("*.py") if re.search(alias, f.read_text())]
if left:
    sys.exit(f"install_detectron2.sh: numpy aliases left in {left}")
# the compiled ops module: no ops, so that modules importing it load and calling one of its
# ops raises AttributeError; only the build information collect_env_info() prints (logged by
# detectron2's default_setup) is there
(src / "detectron2" / "_C.py").write_text('''\
"""Placeholder for detectron2's compiled ops, which pb1-detectron2 0.6 does not ship (see
ringbench's detection/install_detectron2.sh). No ops: only the build information."""


def get_compiler_version():
    return "none (pure-Python detectron2, no compiled ops)"


def get_cuda_version():
    return "none"


def has_cuda():
    return False
''')
EOF
  "$py" -m pip install --quiet --no-deps --no-build-isolation --force-reinstall "$src" >&2
fi

"$py" -c "import detectron2.engine, detectron2.evaluation, detectron2.modeling; print('[detectron2] installed', detectron2.__version__)" >&2
