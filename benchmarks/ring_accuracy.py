"""How far the estimated ring is from the exact one at ImageNet scale (docs/design.md §3, issue 17).

    python benchmarks/ring_accuracy.py                  # a 1,281,167-row pool, m = 16,384, K = 4,096
    python benchmarks/ring_accuracy.py --json out.json  # the same numbers, machine-readable

The ImageNet presets of the bank methods (IR, CMC, LA) rank their 1.28M-row banks in estimated
mode (`negatives.estimate`), because exact ranks cost more there (`benchmarks/ring_speed.py`).
This script measures what that costs in faithfulness. For each outer width of an anneal (inner
0.1), every negative the estimated mode picks is scored by its exact rank in the anchor's whole
pool (a full sort):

- drawing methods (IR, CMC: K draws per anchor from a random subsample's band): the share of
  draws inside the exact band [lo, hi); how far the drawn ranks reach past each edge, in
  percentile points of the pool; the Kolmogorov-Smirnov distance between the drawn ranks and the
  uniform distribution over the exact band; the share of distinct draws. The exact mode's own
  draws (uniform with replacement from the exact band) are the reference row: their KS is the
  sampling noise of K draws.
- masking methods (MoCo, SimCLR, LA: edges read off m sampled columns): the mask's size and
  Jaccard overlap against the exact band, and its edges' errors in percentile points.

The expected edge error is the standard error of a sample percentile, sqrt(p (1 - p) / m).
Ranks are all that matter (the subsample is uniform whatever the values are), so a random pool
measures the same as a trained bank, as long as the similarities do not tie.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pretrain.negatives import NegativeSampler, band_limits  # noqa: E402

IMAGENET = 1_281_167


def exact_ranks(sim: torch.Tensor) -> torch.Tensor:
    """Each entry's rank in its row, descending (0 = most similar), from one full sort."""
    order = sim.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    return ranks.scatter_(1, order, torch.arange(sim.shape[1]).expand_as(order).contiguous())


def ks_uniform(ranks: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Per row: the largest gap between the empirical CDF of `ranks` and the uniform one on
    [lo, hi) (ranks outside count at 0 or 1)."""
    u = ((ranks.float() - lo + 0.5) / (hi - lo)).clamp(0.0, 1.0).sort(dim=1).values
    k = u.shape[1]
    steps = torch.arange(1, k + 1, dtype=torch.float32) / k
    return torch.maximum(steps - u, u - (steps - 1.0 / k)).amax(dim=1)


def draw_scores(drawn: torch.Tensor, ranks: torch.Tensor, lo: int, hi: int, n: int) -> dict:
    r = ranks.gather(1, drawn)
    inside = (r >= lo) & (r < hi)
    distinct = torch.tensor([len(row.unique()) for row in drawn], dtype=torch.float32) / drawn.shape[1]
    return {"in_band": inside.float().mean().item(),
            # how far past each edge the draws reach (0 where none do), percentile points
            "past_high_edge_pp": 100.0 * (lo - r.amin(1)).clamp_min(0).float().mean().item() / n,
            "past_low_edge_pp": 100.0 * (r.amax(1) + 1 - hi).clamp_min(0).float().mean().item() / n,
            "ks": ks_uniform(r, lo, hi).mean().item(), "distinct": distinct.mean().item()}


def mask_scores(mask: torch.Tensor, exact: torch.Tensor, ranks: torch.Tensor, lo: int, hi: int, n: int) -> dict:
    inter, union = (mask & exact).sum(1).float(), (mask | exact).sum(1).float()
    big = torch.iinfo(ranks.dtype).max
    top = torch.where(mask, ranks, big).amin(1)            # the mask's closest entry: ~lo
    bottom = torch.where(mask, ranks, -1).amax(1) + 1      # one past its farthest: ~hi
    return {"jaccard": (inter / union).mean().item(),
            "size_ratio": (mask.sum(1).float() / exact.sum(1).float()).mean().item(),
            "high_edge_err_pp": 100.0 * (top - lo).abs().float().mean().item() / n,
            "low_edge_err_pp": 100.0 * (bottom - hi).abs().float().mean().item() / n}


def measure(a) -> list[dict]:
    g = torch.Generator().manual_seed(a.seed)
    pool = F.normalize(torch.randn(a.pool, a.dim, generator=g), dim=1)
    index = torch.randperm(a.pool, generator=g)[:a.anchors]
    # anchors near their own rows, as an instance-discrimination bank's are
    q = F.normalize(pool[index] + 0.5 * torch.randn(a.anchors, a.dim, generator=g) / math.sqrt(a.dim), dim=1)
    sim = q @ pool.T
    ranks = exact_ranks(sim.scatter(1, index[:, None], float("-inf")))  # the own row ranks last
    n = a.pool - 1
    rows = []
    for outer in a.outer:
        lo, hi = band_limits(n, outer, a.inner)
        est = NegativeSampler("ring", outer, a.inner, seed=a.seed, estimate=a.estimate)
        exact = NegativeSampler("ring", outer, a.inner, seed=a.seed)
        cols = est.subsample(a.pool, a.k)
        if cols is None:
            raise SystemExit(f"--pool {a.pool} is too small for estimated mode at outer {outer} "
                             f"(the subsample would be the whole pool)")
        drawn = est.sample(a.k, a.pool, q @ pool[cols].T, exclude=index, columns=cols)
        row = {"outer": outer, "inner": a.inner, "lo": lo, "hi": hi, "subsample": len(cols),
               "se_high_edge_pp": 100.0 * math.sqrt(lo / n * (1 - lo / n) / a.estimate),
               "se_low_edge_pp": 100.0 * math.sqrt(hi / n * (1 - hi / n) / a.estimate),
               "estimated_draws": draw_scores(drawn, ranks, lo, hi, n),
               "exact_draws": draw_scores(exact.sample(a.k, a.pool, sim, exclude=index), ranks, lo, hi, n)}
        band = exact.mask(sim, index)
        row["estimated_mask"] = mask_scores(est.mask(sim, index), band, ranks, lo, hi, n)
        rows.append(row)
    return rows


def table(rows: list[dict], a) -> str:
    out = [f"pool {a.pool:,}, {a.anchors} anchors, K = {a.k}, m = {a.estimate}, inner {a.inner}; "
           f"pp = percentile points of the pool; SE = sqrt(p (1 - p) / m)", "",
           "drawing (IR, CMC): estimated draws against the exact band (exact draws: the reference)",
           f"{'outer':>6} {'subsample':>10} {'mode':>9} {'in band':>8} {'past hi-edge pp':>16} "
           f"{'past lo-edge pp':>16} {'KS':>6} {'distinct':>9}"]
    for r in rows:
        for mode in ("estimated", "exact"):
            d = r[f"{mode}_draws"]
            sub = f"{r['subsample']:,}" if mode == "estimated" else "-"
            out.append(f"{r['outer']:>6} {sub:>10} {mode:>9} {100 * d['in_band']:>7.2f}% "
                       f"{d['past_high_edge_pp']:>16.3f} {d['past_low_edge_pp']:>16.3f} {d['ks']:>6.3f} "
                       f"{100 * d['distinct']:>8.1f}%")
    out += ["", "masking (MoCo, SimCLR, LA): estimated mask against the exact band",
            f"{'outer':>6} {'Jaccard':>8} {'size ratio':>11} {'hi-edge err pp':>15} {'SE':>6} "
            f"{'lo-edge err pp':>15} {'SE':>6}"]
    for r in rows:
        m = r["estimated_mask"]
        out.append(f"{r['outer']:>6} {m['jaccard']:>8.4f} {m['size_ratio']:>11.4f} {m['high_edge_err_pp']:>15.3f} "
                   f"{r['se_high_edge_pp']:>6.3f} {m['low_edge_err_pp']:>15.3f} {r['se_low_edge_pp']:>6.3f}")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pool", type=int, default=IMAGENET, help="pool (bank) size")
    p.add_argument("--anchors", type=int, default=64)
    p.add_argument("--dim", type=int, default=128, help="feature dimension")
    p.add_argument("--k", type=int, default=4096, help="negatives drawn per anchor")
    p.add_argument("--estimate", type=int, default=16384, help="m, the estimated mode's subsample")
    p.add_argument("--outer", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.1],
                   help="outer widths (an anneal's start and its stops)")
    p.add_argument("--inner", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the numbers here")
    a = p.parse_args(argv)
    rows = measure(a)
    print(table(rows, a))
    if a.json:
        a.json.write_text(json.dumps({"settings": {k: v for k, v in vars(a).items() if k != "json"}, "rows": rows},
                                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
