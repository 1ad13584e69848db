"""Does a change keep every number? Trains and evaluates the same tiny runs, with the same seeds,
in the working tree and in an earlier commit, and compares them bit for bit: every tensor of the
checkpoint (backbone, head, method state: bank, queue, key encoder) and every metric of the
pretraining and evaluation records (but the measured speed, images_per_s). For reshaping that must not change results (issue 23).

    python scripts/same_numbers.py                      # against HEAD
    python scripts/same_numbers.py --before 254bf82 --methods ir moco

Prints one row per compared quantity and exits 1 when anything differs.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.dataset=photo_patches", "data.limit=96", "data.workers=0", "optim.batch_size=32", "optim.epochs=2",
        "model.feat_dim=32", "negatives.num=64", "method.moco.queue_size=64", "negatives.outer=0.5",
        "train.knn_every=2", "method.la.clusters=8", "method.la.warm_start_epochs=1"]
TIMINGS = ("images_per_s",)  # measured speed, not a result


def run(tree: Path, out: Path, method: str, sampler: str) -> tuple[dict, dict]:
    """Pretrain, then kNN and the cached probe: (checkpoint, {record name: metrics})."""
    name = f"{method}_{sampler}"
    sets = [*TINY, f"name={name}", f"method.name={method}", f"negatives.sampler={sampler}"]
    cmds = [["-m", "pretrain", "--out", str(out / "runs"), "--results", str(out / "results"),
             *(a for s in sets for a in ("--set", s))]]
    ckpt = out / "runs" / name / "final.pt"
    common = ["--ckpt", str(ckpt), "--results", str(out / "results"), "--workers", "0"]
    cmds += [["-m", "evaluate", "knn", "--k", "5", *common],
             ["-m", "evaluate", "linear", "--protocol", "cached", "--epochs", "20", "--views", "1", *common]]
    for cmd in cmds:
        done = subprocess.run([sys.executable, *cmd], cwd=tree, capture_output=True, text=True,
                              env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        if done.returncode:
            raise SystemExit(f"{tree}: {' '.join(cmd[:3])} failed:\n{done.stderr[-2000:]}")
    metrics = {p.relative_to(out / "results" / name).as_posix():
               {k: v for k, v in json.loads(p.read_text())["metrics"].items() if k not in TIMINGS}
               for p in sorted((out / "results" / name).rglob("*.json"))}
    return torch.load(ckpt, weights_only=True), metrics


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default="HEAD", help="the commit to compare against (default: HEAD)")
    p.add_argument("--methods", nargs="+", default=["ir", "moco", "simclr", "cmc", "la"])
    p.add_argument("--sampler", default="ring", help="negatives.sampler of every run (default: ring)")
    a = p.parse_args()
    differs = 0
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        before.mkdir()
        archive = subprocess.run(["git", "archive", a.before], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        print(f"| run | compared | {a.before} vs working tree |\n|---|---|---|")
        for method in a.methods:
            (ck0, m0), (ck1, m1) = (run(tree, Path(tmp) / tag / method, method, a.sampler)
                                    for tree, tag in ((before, "out0"), (ROOT, "out1")))
            for part in ("backbone", "head", "method_state"):
                ok = same(ck0[part], ck1[part])
                differs += not ok
                print(f"| {method}_{a.sampler} | checkpoint {part} ({len(ck0[part])} tensors) | "
                      f"{'bit-identical' if ok else 'DIFFERENT'} |")
            for rec in sorted(set(m0) | set(m1)):
                ok = same(m0.get(rec), m1.get(rec))
                differs += not ok
                shown = {k: v for k, v in (m1.get(rec) or {}).items() if isinstance(v, (int, float))}
                print(f"| {method}_{a.sampler} | {rec} metrics {json.dumps(shown)[:80]} | {'equal' if ok else 'DIFFERENT'} |")
    print(f"\n{'every number unchanged' if not differs else f'{differs} quantities differ'}")
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
