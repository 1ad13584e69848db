"""Mutation check of the Ring wiring tests: each mutation breaks Ring in one way that a
benchmark could silently survive (the ring becomes the whole pool, a method drops its mask,
the band is rounded instead of truncated, ...). The script applies each to a scratch copy of
the package, runs the Ring tests there, and prints which tests caught it. A mutation no test
catches is a hole in the suite: the script exits 1.

    python benchmarks/ring_mutations.py [--only NAME ...] [--tests PYTEST_ID ...]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/test_negatives.py", "tests/test_ring_wiring.py", "tests/test_methods.py", "tests/test_objectives.py",
         "tests/test_pipeline.py::test_an_empty_band_stops_training_with_the_step", "tests/test_known_answers.py"]

# name: (file, text to replace, replacement)
MUTATIONS = {
    "sampler.full always true (every ring is the whole pool)":
        ("pretrain/negatives.py", "return SAMPLERS[self.kind](self.outer_final, self.inner) is None", "return True"),
    "MoCo drops the ring mask":
        ("pretrain/methods/moco.py", "mask = None if self.sampler.full else self.sampler.mask(sim, epoch=epoch)",
         "mask = None"),
    "SimCLR drops the ring mask":
        ("pretrain/methods/simclr.py", "mask = None if self.sampler.full else self.sampler.mask(pool.detach(), epoch=epoch)",
         "mask = None"),
    "LA uses the whole bank as background":
        ("pretrain/methods/la.py", "background = self.sampler.mask(sim.detach(), exclude=index, epoch=epoch)",
         "background = torch.ones_like(sim, dtype=torch.bool)"),
    "IR/CMC draw uniformly whatever the sampler":
        ("pretrain/methods/base.py",
         "idx = sampler.sample(k, len(rows), sim, exclude=index, epoch=epoch, batch=len(index), columns=cols, "
         "scratch=True)",
         "idx = (torch.randint(len(rows) - 1, (len(index), k)) + index[:, None] + 1) % len(rows)"),
    "CMC's ab direction ignores the ring":
        ("pretrain/methods/cmc.py", "bank_logits(q, bank.rows, index, self.sampler, self.cfg.negatives.num, epoch)",
         "bank_logits(q, bank.rows, index, self.sampler if bank is self.bank_ab else "
         "__import__('pretrain.negatives').negatives.NegativeSampler('uniform'), self.cfg.negatives.num, epoch)"),
    "the objective ignores the mask":
        ("pretrain/objectives.py", "if neg_mask is not None:", "if False:"),
    "band limits rounded, not truncated":
        ("pretrain/negatives.py", "hi = min(n, max(1, int(outer * n)))\n    lo = int(inner * hi)",
         "hi = min(n, max(1, round(outer * n)))\n    lo = round(inner * hi)"),
    "inner cut dropped":
        ("pretrain/negatives.py", "lo = int(inner * hi)  # < hi", "lo = 0  # < hi"),
    "the anchor's own row not excluded (exact band)":
        ("pretrain/negatives.py", 'sim.scatter_(1, exclude.view(-1, 1), float("-inf"))', "pass"),
    "estimated mode draws the anchor's own row at outer = 1":
        ("pretrain/negatives.py", "valid = ~own.gather(1, band)", "valid = torch.ones_like(band, dtype=torch.bool)"),
    "estimated mode reads a low edge at outer = 1":
        ("pretrain/negatives.py", "low = top[:, hi - 1] if outer < 1.0 else", "low = top[:, hi - 1] if True else"),
    "no exact fallback when ties collapse the estimated edges":
        ("pretrain/negatives.py", "        if off.any():\n", "        if False:\n"),
    "no guard against an empty band":
        ("pretrain/negatives.py", "        self.empty |= ~m.any(1).all()\n", ""),
    "LA's baseline is the whole bank again":
        ("pretrain/methods/la.py", '    baseline_sampler = "ball"\n', ""),
    # the seven bugs of issue 28 that once slipped past the suite (tests/test_known_answers.py)
    "differences paired by position, not by seed":
        ("reports/tables.py", "stats.paired_interval(ring_by_seed[seeds], base_by_seed[seeds])",
         "stats.paired_interval(g[value].to_numpy()[:len(seeds)], base[value].to_numpy()[:len(seeds)])"),
    "the record's own seed before the pretraining config's":
        ("reports/frames.py", 'seed = section("train").get("seed", r.get("seed"))',
         'seed = r.get("seed", section("train").get("seed"))'),
    "the bank update is not renormalised":
        ("pretrain/memory.py", "self.rows[index] = F.normalize(new, dim=1)", "self.rows[index] = new"),
    "the bank momentum weighs the new embedding":
        ("pretrain/memory.py", "new = self.momentum * self.rows[index] + (1.0 - self.momentum) * emb",
         "new = (1.0 - self.momentum) * self.rows[index] + self.momentum * emb"),
    "the anneal counts steps, not epochs":
        ("pretrain/train.py", "self.progress = self.epoch + self.step_in_epoch / self.steps", "self.progress = self.step"),
    "kNN votes with the least similar rows":
        ("pretrain/knn.py", "sim, idx = (q @ bank.T).topk(k, dim=1)", "sim, idx = (q @ bank.T).topk(k, dim=1, largest=False)"),
    "MoCo pushes this step's keys before its logits":
        ("pretrain/methods/moco.py", "        neg = q @ self.queue.keys.T\n",
         "        self.queue.push(k, None, index)\n        neg = q @ self.queue.keys.T\n"),
}


def run(name: str, scratch: Path, tests=TESTS) -> list[str]:
    """Apply one mutation in `scratch`, run the tests; return the ids of the tests that failed."""
    path, old, new = MUTATIONS[name]
    target = scratch / path
    text = (ROOT / path).read_text()
    if text.count(old) != 1:
        raise SystemExit(f"mutation {name!r}: the text to replace occurs {text.count(old)} times in {path}")
    target.write_text(text.replace(old, new))
    try:
        env = {**os.environ, "PYTHONPATH": str(scratch), "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests],
                             cwd=scratch, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        target.write_text(text)
    return sorted(set(re.findall(r"^FAILED (\S+)", out.stdout, flags=re.M)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", help="mutation names (substrings) to run")
    p.add_argument("--tests", nargs="+", default=TESTS, help="the tests to run on each mutation (default: the Ring "
                                                             "tests, about 40 s a mutation)")
    args = p.parse_args(argv)
    names = [n for n in MUTATIONS if not args.only or any(o in n for o in args.only)]
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for part in ("core", "pretrain", "evaluate", "reports", "metadataset", "detection", "tests", "configs",
                     "pyproject.toml"):
            (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, scratch / part)
        for name in names:
            caught = run(name, scratch, args.tests)
            print(f"- {name}: " + (f"caught by {len(caught)} test(s): " + ", ".join(caught) if caught else "NOT CAUGHT"),
                  flush=True)
            missed += [] if caught else [name]
    print(f"{len(names) - len(missed)} of {len(names)} mutations caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
