"""Fault injection: kill pretraining with SIGKILL at random steps, several times in a row,
resume each time with --resume auto, and check that the final weights equal those of an
uninterrupted run bit for bit.

    python benchmarks/fault_injection.py --kills 5 --work /tmp/faults

Exits non-zero if any tensor differs.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from pretrain.registry import METHODS

TINY = ["data.dataset=photo_patches", "data.limit=128", "data.workers=0", "optim.batch_size=32",
        "optim.epochs=3", "optim.schedule=cosine", "model.feat_dim=32", "negatives.num=64",
        "negatives.sampler=ring", "negatives.outer=0.5", "negatives.anneal.schedule=linear",
        "negatives.anneal.epochs=2", "train.knn_every=0", "train.ckpt_every=1", "train.keep_last=2"]
STEPS = 12  # 128 images / batch 32 x 3 epochs


def command(work: Path, name: str, method: str, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "pretrain", "--out", str(work / "runs"), "--results", str(work / "results")]
    for s in TINY + [f"name={name}", f"method.name={method}"]:
        cmd += ["--set", s]
    return cmd + (["--resume", "auto"] if resume else [])


def newest_step(ckpts: Path) -> int:
    steps = [int(p.stem[9:]) for p in ckpts.glob("ckpt_step*.pt")]
    return max(steps, default=0)


def run_killed(work: Path, name: str, method: str, kill_at: list[int]) -> None:
    """Start, SIGKILL once a checkpoint of step >= k exists (for each k), resume, finish."""
    ckpts = work / "runs" / name / "checkpoints"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for i, k in enumerate(kill_at):
        proc = subprocess.Popen(command(work, name, method, resume=i > 0), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 300
        while newest_step(ckpts) < k and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if proc.poll() is not None:
            raise RuntimeError(f"run ended before the kill at step {k}: {proc.stderr.read().decode()[-500:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        print(f"[faults] {name}: SIGKILL after checkpoint of step {newest_step(ckpts)} (aimed at {k})", flush=True)
    subprocess.run(command(work, name, method, resume=True), env=env, check=True, stdout=subprocess.DEVNULL)


def weights(path: Path) -> dict:
    p = torch.load(path, weights_only=True)
    return {**{f"backbone.{k}": v for k, v in p["backbone"].items()},
            **{f"head.{k}": v for k, v in p["head"].items()}, **p["method_state"],
            **{f"opt.{k}": v["momentum_buffer"] for k, v in p["optimizer"]["state"].items()}}


def check(work: Path, kills: int, method: str = "ir", seed: int = 0) -> list[str]:
    """Names of the tensors that differ between the uninterrupted and the killed run."""
    rng = random.Random(seed)
    kill_at = sorted(rng.sample(range(1, STEPS - 1), kills))
    subprocess.run(command(work, "straight", method, resume=False), check=True, stdout=subprocess.DEVNULL)
    run_killed(work, "killed", method, kill_at)
    a, b = weights(work / "runs/straight/final.pt"), weights(work / "runs/killed/final.pt")
    return sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or not torch.equal(a[k], b[k]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--method", default="ir", choices=METHODS.names())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="work/faults")
    a = p.parse_args()
    differ = check(Path(a.work), a.kills, a.method, a.seed)
    if differ:
        print(f"[faults] FAIL: {len(differ)} tensors differ, e.g. {differ[:5]}")
        return 1
    print(f"[faults] OK: {a.kills} SIGKILLs, final weights identical to the uninterrupted run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
