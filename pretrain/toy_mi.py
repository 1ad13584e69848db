"""Mutual-information toy check of NCE vs. CNCE (ring negatives), as in the Ring paper.

x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) e: the true MI is -d/2 log(1 - rho^2), and the
optimal critic is known in closed form, f(x, y) = log p(y|x) / p(y). With that critic,
  NCE   = E[ f(x, y) - log( (e^{f(x,y)} + sum_k e^{f(x,y_k)}) / (K+1) ) ],  y_k ~ p(y)
is a lower bound on the MI; CNCE draws the y_k from the ring of the anchor's pool instead
(ranked by the critic). CNCE <= NCE <= true MI holds only where the ring's negatives are
harder than the pool's average, i.e. E_ring[e^f] >= E_pool[e^f]: then the denominator grows
and the estimate falls (the paper's looser bound, with lower variance). That is the case for
a ring taken from the top of the ranking (outer < 1). It is not the case at outer = 1 with an
inner cut (the start of every anneal): the band is the pool minus its hardest part, its
negatives are easier than average, and CNCE exceeds NCE and can exceed the true MI (measured:
1.75 nats against 1.15 at d = 8, rho = 0.5). Each row therefore reports `harder`, the mean
over anchors of log mean_band e^f - log mean_pool e^f, whose sign says which case it is.
This module measures both estimators at several ring widths. Each repeat draws fresh anchor
pairs and, for them, two independent candidate pools and negative sets (a, b):
  mean, bias     over all estimates (the expectation over anchors and negatives),
  std            over repeats (anchors and negatives together),
  std_negatives  sqrt(mean((a - b)^2) / 2), the part of the variance that comes from
                 sampling negatives (the anchor term cancels in a - b): what Ring reduces,
  harder         > 0: the ring's negatives are harder than the pool's (the bound holds).

    python -m pretrain.toy_mi --results results --out work/toy_mi
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from core import cli
from core.errors import UserError
from pretrain.negatives import NegativeSampler

# ring outer fractions; inner fixed (official semantics). 1.0 is the anneal start: the band is
# the pool minus its hardest tenth, where the bound does not hold
DEFAULT_WIDTHS = (1.0, 0.5, 0.25, 0.1, 0.05)


def true_mi(dim: int, rho: float) -> float:
    return -0.5 * dim * math.log(1.0 - rho * rho)


def sample(n: int, dim: int, rho: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = rho * x + math.sqrt(1.0 - rho * rho) * torch.randn(n, dim, generator=g, dtype=torch.float64)
    return x, y


def critic(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """Optimal critic log p(y|x) - log p(y) for every pair: (N, M)."""
    s2 = 1.0 - rho * rho
    cond = torch.cdist(rho * x, y).pow(2) / (2.0 * s2)
    return -cond + 0.5 * y.pow(2).sum(1)[None, :] - 0.5 * x.shape[1] * math.log(s2)


def estimate(x, y, pool, k: int, sampler: NegativeSampler, rho: float) -> tuple[float, float]:
    """One NCE/CNCE estimate (nats) from N anchors, K negatives each from the sampler's band,
    and how much harder the band is than the whole pool: mean over anchors of
    log mean_band e^{f(x, y)} - log mean_pool e^{f(x, y)} (> 0: harder than average; 0: uniform)."""
    pos = critic(x, y, rho).diagonal()
    scores = critic(x, pool, rho)
    neg = scores.gather(1, sampler.sample(k, pool.shape[0], sim=scores, batch=len(x)))
    logits = torch.cat([pos[:, None], neg], dim=1)
    mi = (pos - torch.logsumexp(logits, dim=1) + math.log(k + 1)).mean().item()
    if sampler.full:
        return mi, 0.0
    band = sampler.mask(scores)
    band_lme = torch.logsumexp(scores.masked_fill(~band, float("-inf")), dim=1) - band.sum(1).to(scores.dtype).log()
    pool_lme = torch.logsumexp(scores, dim=1) - math.log(scores.shape[1])
    return mi, (band_lme - pool_lme).mean().item()


def run(dim: int = 8, rho: float = 0.5, anchors: int = 128, pool: int = 2048, k: int = 64,
        repeats: int = 200, widths=DEFAULT_WIDTHS, inner: float = 0.1, seed: int = 0) -> list[dict]:
    """Mean, bias, std and std_negatives of NCE and of CNCE at each ring width."""
    g = torch.Generator().manual_seed(seed)
    samplers = [("nce", 1.0, NegativeSampler("uniform", seed=seed))]
    samplers += [(f"cnce@{w:g}", w, NegativeSampler("ring", w, inner, seed=seed)) for w in widths]
    values = {name: [] for name, _, _ in samplers}  # ((a, harder), (b, harder)) per repeat
    for _ in range(repeats):
        x, y = sample(anchors, dim, rho, g)
        pools = [sample(pool, dim, rho, g)[1] for _ in range(2)]  # independent of x: draws from p(y)
        for name, _, s in samplers:
            values[name].append([estimate(x, y, c, k, s, rho) for c in pools])
    mi = true_mi(dim, rho)
    rows = []
    for name, outer, _ in samplers:
        both = torch.tensor(values[name], dtype=torch.float64)  # (repeats, 2, 2)
        v = both[..., 0]
        rows.append({"estimator": name, "outer": outer, "inner": 0.0 if name == "nce" else inner,
                     "mean": v.mean().item(), "bias": v.mean().item() - mi, "std": v[:, 0].std().item(),
                     "std_negatives": ((v[:, 0] - v[:, 1]).pow(2).mean() / 2).sqrt().item(),
                     "harder": both[..., 1].mean().item(), "true_mi": mi, "repeats": repeats})
    return rows


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    cnce = [r for r in rows if r["estimator"] != "nce"]
    nce = next((r for r in rows if r["estimator"] == "nce"), None)
    for ax, key, label in ((axes[0], "bias", "bias (estimate − true MI, nats)"),
                           (axes[1], "std_negatives", "std from sampling negatives (nats)")):
        ax.plot([r["outer"] for r in cnce], [r[key] for r in cnce], "o-", label="CNCE (ring)")
        if nce is not None:  # uniform negatives: a reference level, not a ring width
            ax.axhline(nce[key], color="k", linestyle="--", linewidth=1, label="NCE (uniform)")
        ax.set_xscale("log")
        ax.set_xlabel(f"ring outer fraction (inner {cnce[0]['inner']:g})" if cnce else "ring outer fraction")
        ax.set_ylabel(label)
    axes[0].axhline(0, color="grey", linewidth=0.8)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"NCE vs CNCE, true MI = {rows[0]['true_mi']:.3f} nats")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def widths_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated ring outer fractions, each in (0, 1]."""
    check = cli.float_in(0, 1, low_open=True)
    return tuple(check(w) for w in text.split(","))


def main(argv=None) -> int:
    p = cli.Parser(prog="python -m pretrain.toy_mi", description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=cli.int_at_least(1), default=8)
    p.add_argument("--rho", type=cli.float_in(-1, 1, low_open=True, high_open=True), default=0.5)
    p.add_argument("--anchors", type=cli.int_at_least(1), default=128)
    p.add_argument("--pool", type=cli.int_at_least(2), default=2048)
    p.add_argument("--k", type=cli.int_at_least(1), default=64)
    p.add_argument("--repeats", type=cli.int_at_least(2), default=200)
    p.add_argument("--widths", type=widths_list, default=DEFAULT_WIDTHS,
                   help="comma-separated outer fractions in (0, 1] (default: " + ",".join(map(str, DEFAULT_WIDTHS)) + ")")
    p.add_argument("--inner", type=cli.float_in(0, 1, high_open=True), default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="work/toy_mi", help="where the figure goes")
    p.add_argument("--run", default="toy_mi")
    a = p.parse_args(argv)
    try:
        cli.check_run_name(a.run, "--run")
        cli.writable_dir(a.results, "--results")
        cli.writable_dir(a.out, "--out")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.rho == 0:
        print("error: --rho 0: expected 0 < |rho| < 1 (the true MI would be 0)", file=sys.stderr)
        return 2
    start = time.time()
    rows = run(a.dim, a.rho, a.anchors, a.pool, a.k, a.repeats, a.widths, a.inner, a.seed)
    fig = Path(a.out) / "toy_mi.png"
    figure(rows, fig)
    from core import records
    metrics = {"true_mi": rows[0]["true_mi"]}
    for r in rows:
        metrics.update({f"{r['estimator']}/{key}": r[key] for key in ("mean", "bias", "std", "std_negatives", "harder")})
    settings = {k: v for k, v in vars(a).items() if k not in ("results", "out", "run")}
    rec = records.make(a.run, "toy_mi", "toy_mi", "gaussian", metrics, settings, seed=a.seed,
                       wall_s=time.time() - start, estimates=rows, figure=str(fig))
    path = records.write(rec, a.results)
    print(f"true MI {rows[0]['true_mi']:.4f} nats (d={a.dim}, rho={a.rho}, K={a.k}, {a.repeats} repeats)")
    print(f"{'estimator':<12}{'mean':>9}{'bias':>9}{'std':>9}{'std_neg':>9}{'harder':>9}")
    for r in rows:
        print(f"{r['estimator']:<12}{r['mean']:>9.4f}{r['bias']:>9.4f}{r['std']:>9.4f}{r['std_negatives']:>9.4f}"
              f"{r['harder']:>9.4f}")
    print(f"[toy_mi] record {path}, figure {fig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
