"""Does the fast `cached` linear probe rank models as the paper's protocol does? (issue 29)

    python benchmarks/probe_agreement.py                          # the mini profile's ten checkpoints
    python benchmarks/probe_agreement.py --views 0 1 2 4 8 16     # the gap against the cached views
    python benchmarks/probe_agreement.py --ckpts A.pt B.pt --json agreement.json --resume

For every checkpoint (default: work/mini/runs/*/final.pt, what `bash run_all.sh` pretrains) both
probes run side by side in one process: the `cached` probe for each --views V (L-BFGS on cached
features of V augmented views per training image; 0: the unaugmented probe of records before
issue 29) and the `paper` protocol (100 epochs of SGD through the full image pipeline). Each
checkpoint's row is printed as soon as it is measured: both top-1s, their gap (paper − cached, in
points) and the seconds of each. Then, over the set and for each V: the mean gap, Kendall's τ
between the two rankings, the paper protocol's total time over the cached probe's, and for each
Ring − baseline pair (same method and seed, ring against the method's own sampler: uniform, LA's
ball) both paired differences, whether their signs agree and whether they agree within
--tolerance points.

--json keeps every measured row (written after each checkpoint); with --resume, a checkpoint
already there with the same settings and the same backbone weights is not measured again (its row
says so), and the rows of other checkpoints stay in the file: a long measurement can go a few
checkpoints at a time, across sessions (benchmarks/results/ keeps the mini profile's).
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parent))
import linear_protocols  # noqa: E402

from core import checkpoint  # noqa: E402
from core.devices import pick_device  # noqa: E402
from evaluate.protocols import PROTOCOLS  # noqa: E402


def pairs(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(ring, baseline) rows of the same method, seed and dataset; baseline = the method's own sampler."""
    out = []
    for ring in rows:
        if ring["sampler"] != "ring":
            continue
        for base in rows:
            if (base["sampler"] == ring["baseline"] and
                    (base["method"], base["seed"], base["dataset"]) == (ring["method"], ring["seed"], ring["dataset"])):
                out.append((ring, base))
    return out


def agreement(rows: list[dict], views: int, tolerance: float = 1.0) -> dict:
    """How the cached probe on `views` views agrees with the paper protocol over `rows` (each
    {"paper": {"top1", "seconds"}, "cached": {V: {"top1", "seconds"}}, ...}): gaps are paper −
    cached, in points; τ is Kendall's tau-b of the two top-1 lists (nan under two models)."""
    paper = [r["paper"]["top1"] for r in rows]
    cached = [r["cached"][views]["top1"] for r in rows]
    gaps = [p - c for p, c in zip(paper, cached)]
    tau = kendalltau(paper, cached).statistic if len(rows) > 1 else math.nan
    out = {"views": views, "models": len(rows), "mean_gap": sum(gaps) / len(gaps),
           "mean_abs_gap": sum(map(abs, gaps)) / len(gaps), "max_abs_gap": max(map(abs, gaps)), "tau": float(tau),
           "speedup": sum(r["paper"]["seconds"] for r in rows) / sum(r["cached"][views]["seconds"] for r in rows),
           "pairs": []}
    for ring, base in pairs(rows):
        d_paper = ring["paper"]["top1"] - base["paper"]["top1"]
        d_cached = ring["cached"][views]["top1"] - base["cached"][views]["top1"]
        out["pairs"].append({"method": ring["method"], "seed": ring["seed"], "ring": ring["name"],
                             "baseline": base["name"], "d_paper": d_paper, "d_cached": d_cached,
                             "sign_agrees": math.copysign(1, d_paper) == math.copysign(1, d_cached)
                             if d_paper and d_cached else d_paper == d_cached,
                             "within": abs(d_cached - d_paper) <= tolerance})
    return out


def settings(a) -> dict:
    """What a row's numbers depend on besides the checkpoint: the paper protocol's, then the
    cached probe's (--resume reuses rows where both are equal, --reuse-paper the first)."""
    common = {"limit": a.limit, "seed": a.seed, "dataset": a.dataset}
    return {"paper": {"epochs": a.paper_epochs, **common},
            "cached": {"views": a.views, "augment": a.augment, **common,
                       "epochs": a.iterations or PROTOCOLS["cached"].epochs,  # (L-BFGS iterations)
                       "weight_decay": PROTOCOLS["cached"].weight_decay}}


def weights_digest(path: str) -> str:
    """sha256 of the backbone's tensors, in key order: what the probes read of a checkpoint (its
    file also holds the optimizer and timings, which differ between identical pretrainings)."""
    h = hashlib.sha256()
    for key, value in sorted(checkpoint.read(path)["backbone"].items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def measure(path: str, a, device, paper: dict | None = None) -> dict:
    """A checkpoint's row; `paper`: its paper-protocol result, measured earlier (not again)."""
    m = linear_protocols.load(path, a.dataset, a.data_root, a.limit)
    row = {"ckpt": path, "weights": weights_digest(path),
           "name": m.name, "method": m.method, "sampler": m.sampler, "baseline": m.baseline,
           "seed": m.seed, "dataset": m.dataset, "train_images": len(m.train), "test_images": len(m.test),
           "settings": settings(a), "cached": {}}
    for v, r in linear_protocols.cached_curve(m, a.views, device, a.seed, a.workers, a.augment,
                                                  a.iterations):
        row["cached"][v] = r
        print(f"  {m.name}: cached, {v} views: top1 {r['top1']:.2f} in {r['seconds']:.1f} s "
              f"(L-BFGS {r['fit']['iterations']} iterations{'' if r['fit']['converged'] else ', NOT converged'})",
              file=sys.stderr, flush=True)
    if paper is not None:
        row["paper"], row["paper_reused"] = paper, True
    else:
        row["paper"] = linear_protocols.paper(m, a.paper_epochs, device, a.seed, a.workers)
    return row


def cells(values: list, widths: list[int]) -> str:
    return "| " + " | ".join(f"{v:>{w}}" if i else f"{v:<{w}}" for i, (v, w) in enumerate(zip(values, widths))) + " |"


def table_header(names: list[str], widths: list[int]) -> str:
    return cells(names, widths) + "\n|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"


def write_json(path: str, rows: list[dict], summary: list[dict]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"rows": rows, "summary": summary}, f, indent=1)
    os.replace(tmp, path)  # a crash mid-write leaves the previous file whole


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpts", nargs="+", help="checkpoints (default: work/mini/runs/*/final.pt)")
    p.add_argument("--dataset", help="default: each checkpoint's pretraining dataset")
    p.add_argument("--data-root", default="data")
    p.add_argument("--views", type=int, nargs="+", default=[0, 4],
                   help="cached views per training image to compare (default: 0 4; 0: unaugmented)")
    p.add_argument("--augment", default="pretrain_crop_flip", choices=("pretrain_crop_flip", "pretrain"),
                   help="the cached views' augmentations: the paper protocol's crop and flip (default; what the "
                        "cached probe uses) or all its pretraining augmentations")
    p.add_argument("--iterations", type=int, help="the cached probe's L-BFGS cap (default: the protocol's, "
                                                  f"{PROTOCOLS['cached'].epochs})")
    p.add_argument("--paper-epochs", type=int, default=100)
    p.add_argument("--tolerance", type=float, default=1.0,
                   help="a pair's two differences agree when within this many points (default: 1)")
    p.add_argument("--limit", type=int, default=0, help="at most N training and N test images (0: all)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", help="write every row and the summary here (after each checkpoint)")
    p.add_argument("--resume", action="store_true", help="reuse --json's rows of the same checkpoints and settings")
    p.add_argument("--reuse-paper", metavar="JSON",
                   help="take the paper protocol's results from this earlier --json (same checkpoint and paper "
                        "settings) instead of measuring them again: to try other cached views in minutes; the "
                        "speed-up then compares times of different runs, and the row says so")
    a = p.parse_args(argv)
    a.views = sorted(set(a.views))
    ckpts = a.ckpts or sorted(glob.glob("work/mini/runs/*/final.pt"))
    if not ckpts:
        p.error("no checkpoints: pass --ckpts, or pretrain the mini profile (work/mini/runs/*/final.pt)")
    device = pick_device(a.device)
    now = json.loads(json.dumps(settings(a)))  # (as it reads back from JSON)
    done, others, papers = {}, [], {}
    if a.resume and a.json and Path(a.json).exists():
        earlier = json.loads(Path(a.json).read_text())["rows"]
        # a row stands for its checkpoint's bytes: a checkpoint pretrained again (another session,
        # the same seed) is reused only when identical
        done = {r["ckpt"]: r for r in earlier if r["settings"] == now and r["ckpt"] in ckpts
                and r.get("weights") == weights_digest(r["ckpt"])}
        others = [r for r in earlier if r["ckpt"] not in ckpts]  # kept in the file: a set can grow run by run
    if a.reuse_paper:
        papers = {r["ckpt"]: r["paper"] for r in json.loads(Path(a.reuse_paper).read_text())["rows"]
                  if r["settings"]["paper"] == now["paper"] and not r.get("paper_reused")}

    print(f"Linear probes side by side: paper protocol ({a.paper_epochs} epochs) and cached ({a.augment} views), "
          f"device {device}, {torch.get_num_threads()} threads; gap = paper − cached top-1 (points)\n")
    names = ["checkpoint", "paper top1", "paper s"] + [f"v{v} top1 (gap)" for v in a.views] + \
            [f"v{v} s" for v in a.views] + [f"paper/v{v}" for v in a.views]
    widths = [max(22, *(len(Path(c).parent.name) + 15 for c in ckpts))] + [max(9, len(n)) for n in names[1:]]
    widths[3:3 + len(a.views)] = [15] * len(a.views)
    print(table_header(names, widths), flush=True)
    rows = []
    for path in ckpts:
        row = done.get(path)
        if row is None:
            row = measure(path, a, device, papers.get(path))
        else:
            row["reused"] = True
        row["cached"] = {int(v): r for v, r in row["cached"].items()}  # (JSON keys are strings)
        rows.append(row)
        c = row["cached"]
        tag = " (reused)" if row.get("reused") else " (paper reused)" if row.get("paper_reused") else ""
        print(cells([row["name"] + tag, f"{row['paper']['top1']:.2f}",
                     f"{row['paper']['seconds']:.1f}"] +
                    [f"{c[v]['top1']:.2f} ({row['paper']['top1'] - c[v]['top1']:+.2f})" for v in a.views] +
                    [f"{c[v]['seconds']:.1f}" for v in a.views] +
                    [f"{row['paper']['seconds'] / c[v]['seconds']:.1f}x" for v in a.views], widths), flush=True)
        if a.json:
            write_json(a.json, others + rows, [])

    summary = [agreement(rows, v, a.tolerance) for v in a.views]
    print(f"\nOver the {len(rows)} checkpoints, for each number of cached views (gap = paper − cached; τ: Kendall's "
          f"tau-b of the two rankings; speed-up: the paper protocol's total seconds over the cached probe's)\n")
    snames = ["views", "mean gap", "mean abs gap", "max abs gap", "Kendall τ", "signs agree",
              f"Δ within {a.tolerance:g}", "speed-up"]
    swidths = [10, 9, 12, 11, 9, 11, 10, 8]
    print(table_header(snames, swidths))
    for s in summary:
        n = len(s["pairs"])
        print(cells([s["views"] or "0 (unaug.)", f"{s['mean_gap']:+.2f}", f"{s['mean_abs_gap']:.2f}",
                     f"{s['max_abs_gap']:.2f}", f"{s['tau']:.3f}", f"{sum(q['sign_agrees'] for q in s['pairs'])}/{n}",
                     f"{sum(q['within'] for q in s['pairs'])}/{n}", f"{s['speedup']:.1f}x"], swidths))
    if summary and summary[0]["pairs"]:
        print("\nRing − baseline pairs: the paired top-1 difference (points) under each probe\n")
        pnames = ["method", "ring", "baseline", "Δ paper"] + [f"Δ v{v} (sign, within)" for v in a.views]
        pwidths = [8, max(len(q["ring"]) for q in summary[0]["pairs"]), max(len(q["baseline"]) for q in summary[0]["pairs"]),
                   7] + [max(18, len(n)) for n in pnames[4:]]
        print(table_header(pnames, pwidths))
        for i, q in enumerate(summary[0]["pairs"]):
            print(cells([q["method"], q["ring"], q["baseline"], f"{q['d_paper']:+.2f}"] +
                        [f"{s['pairs'][i]['d_cached']:+.2f} ({'same' if s['pairs'][i]['sign_agrees'] else 'FLIPPED'}, "
                         f"{'yes' if s['pairs'][i]['within'] else 'no'})" for s in summary], pwidths))
    if a.json:
        write_json(a.json, others + rows, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
