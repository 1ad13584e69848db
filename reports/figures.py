"""The report's figures (seaborn on matplotlib's file-only Agg backend), each a PNG.

Every function takes tidy frames, writes one PNG and returns its path, or returns None when
there is nothing to draw (the report then says which records would produce the figure).
"""
from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a cluster node; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from core.anneal import SCHEDULES  # noqa: E402
from core.anneal import anneal as outer_at  # noqa: E402
from core.files import atomic_write  # noqa: E402
from reports import tables  # noqa: E402
from reports.frames import number  # noqa: E402

STYLE = {"style": "whitegrid"}
ILLUSTRATIVE_ANNEAL = {"final": 0.1, "start": 1.0, "epochs": 100.0, "steps": 4, "decay": 0.1, "total": 200.0}


def _save(fig, path: Path) -> Path:
    try:  # whole or not at all, like every file the report writes
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def hue_order(df: pd.DataFrame) -> list[str]:
    """Models in the tables' row order (IR, IR + Ring, MoCo, ...), so colours match across figures."""
    return list(dict.fromkeys(tables.model_labels(df)))


def method_colours() -> dict:
    """One hue per method, in the registry's order: a method and its Ring variant share it."""
    names = list(tables.METHOD_NAMES)
    return dict(zip(names, sns.color_palette(n_colors=max(len(names), 1))))


SAMPLER_LOOKS = [("-", "o", ""), ("--", "s", "//"), (":", "^", ".."), ("-.", "D", "xx"), ((0, (1, 3)), "v", "\\\\")]


def sampler_looks(samplers) -> dict:
    """One line style, marker and bar hatch per sampler or strategy: the method's own negatives
    solid, then Ring, then the others (tables.SAMPLER_ORDER)."""
    order = tables.ordered(samplers, tuple(dict.fromkeys(("uniform", "ball", *tables.SAMPLER_ORDER))))
    return {s: SAMPLER_LOOKS[i % len(SAMPLER_LOOKS)] for i, s in enumerate(order)}


def legend_below(fig, handles, labels) -> None:
    """The legend under the panels, in as many columns as fit their width (never wider)."""
    if not handles:
        return
    width = fig.get_size_inches()[0]
    longest = max(len(str(label)) for label in labels)
    ncol = max(1, min(len(labels), int(width * 14 // max(longest, 1))))
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize="small", frameon=False)


def _whiskers(ax, x, rows, **kw) -> None:
    """95% intervals as error bars, only where there is one (never for one pair)."""
    has = rows["low"].notna().to_numpy() & rows["high"].notna().to_numpy()
    if has.any():
        x = np.asarray(x, dtype=float)[has]
        r = rows[has]
        ax.errorbar(x, r["mean"].astype(float), yerr=np.array([r["mean"] - r["low"], r["high"] - r["mean"]]).astype(float),
                    fmt="none", capsize=3, **kw)


def ring_minus_baseline(numbers: pd.DataFrame, path: Path, metric: str = "top1") -> Path | None:
    """Bars of Ring − baseline (paired by seed) per dataset and model, with their 95% intervals
    as error bars (none for one pair), one panel per evaluation. `numbers`: the linear tables'
    numbers (their Δ rows are exactly what the tables print)."""
    d = numbers[numbers["delta"].astype(bool) & (numbers["metric"] == metric)] if not numbers.empty else numbers
    if d.empty:
        return None
    d = d.assign(model=tables.model_labels(d))
    models, evals = hue_order(d), list(dict.fromkeys(d["eval"]))
    of = d.drop_duplicates("model").set_index("model")
    colours, looks = method_colours(), sampler_looks(d["negatives"])
    with sns.axes_style(**STYLE):
        fig, axes = plt.subplots(1, len(evals), figsize=(max(4.2 * len(evals), 5.0), 3.4), squeeze=False,
                                 layout="constrained")
        for ax, ev in zip(axes[0], evals):
            sub = d[d["eval"] == ev]
            datasets = list(dict.fromkeys(sub["dataset"]))
            width = 0.8 / len(models)
            for k, model in enumerate(models):
                rows = sub[sub["model"] == model].set_index("dataset").reindex(datasets)
                x = np.arange(len(datasets)) + (k - (len(models) - 1) / 2) * width
                ax.bar(x, rows["mean"].astype(float), width, color=colours.get(of.loc[model, "method"], "grey"),
                       hatch=looks[of.loc[model, "negatives"]][2], edgecolor="white", label=model)
                _whiskers(ax, x, rows.reset_index(), ecolor="k")
            ax.axhline(0, color="k", linewidth=0.8)
            ax.set_xticks(np.arange(len(datasets)), datasets)
            ax.set(title=ev, ylabel=f"{metric} (points): sampler − baseline")
        legend_below(fig, *axes[0][0].get_legend_handles_labels())
        fig.suptitle("Sampler − the method's own negatives, paired by seed\n"
                     "(bars: mean; whiskers: 95% interval; none for one pair)")
    return _save(fig, path)


def delta_vs_width(numbers: pd.DataFrame, evals: pd.DataFrame, path: Path, metric: str = "top1") -> Path | None:
    """The sweep (docs/design.md §9): Ring − baseline, paired by seed, against the ring's outer
    width, one line per anneal schedule (neighbour views as their own marker), with 95%
    intervals as error bars; one panel per method and evaluation. None unless some ring
    setting was run at two or more widths."""
    d = numbers[numbers["delta"].astype(bool) & (numbers["metric"] == metric)] if not numbers.empty else numbers
    if d.empty:
        return None
    axes_of = evals.drop_duplicates("model_id")[["model_id", "ring_outer", "ring_anneal", "ring_neighbour_views"]]
    d = d.merge(axes_of, on="model_id", how="left").dropna(subset=["ring_outer"])
    d = d[d["negatives"] == "ring"]
    if d.empty or d.groupby(["method", "variant", "eval", "ring_anneal"])["ring_outer"].nunique().max() < 2:
        return None
    d = d.assign(line=[("neighbour views" if nv else f"anneal: {a}") for a, nv in
                       zip(d["ring_anneal"], d["ring_neighbour_views"])])
    panels = list(dict.fromkeys(zip(d["method"], d["variant"], d["eval"], d["dataset"])))
    lines = sorted(d["line"].unique())
    colours = dict(zip(lines, sns.color_palette(n_colors=len(lines))))
    with sns.axes_style(**STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.2), squeeze=False, layout="constrained")
        for ax, (method, variant, ev, dataset) in zip(axes[0], panels):
            sub = d[(d["method"] == method) & (d["variant"] == variant) & (d["eval"] == ev) & (d["dataset"] == dataset)]
            for k, line in enumerate(lines):
                rows = sub[sub["line"] == line].sort_values("ring_outer")
                if rows.empty:
                    continue
                x = rows["ring_outer"].astype(float) * (1.04 ** (k - (len(lines) - 1) / 2))  # a small dodge
                ax.plot(x, rows["mean"].astype(float), color=colours[line],
                        marker="s" if line == "neighbour views" else "o",
                        linestyle="none" if line == "neighbour views" else "-", label=line)
                _whiskers(ax, x, rows, ecolor=colours[line])
            ax.axhline(0, color="k", linewidth=0.8)
            ax.set_xscale("log")
            ax.set(title=", ".join(filter(None, (tables.method_name(method), variant, dataset, ev))),
                   xlabel="ring outer width (fraction of the pool)",
                   ylabel=f"{metric} (points): ring − baseline")
        handles = {label: h for ax in axes[0] for h, label in zip(*ax.get_legend_handles_labels())}
        legend_below(fig, list(handles.values()), list(handles))
        fig.suptitle("The sweep: Ring − the method's own negatives against ring width, paired by seed\n"
                     "(points: mean; whiskers: 95% interval; none for one pair)")
    return _save(fig, path)


# a strategy's width-like parameter: the x axis of its sweep (docs/design.md §11)
STRATEGY_AXES = {"dcl": ("negatives.dcl.tau_plus", "τ⁺ (expected same-class share)"),
                 "hcl": ("negatives.hcl.beta", "β (concentration on hard negatives)")}


def delta_vs_parameter(numbers: pd.DataFrame, evals: pd.DataFrame, path: Path, metric: str = "top1") -> Path | None:
    """A strategy's sweep: its paired difference to the baseline against its parameter (DCL's
    τ⁺, HCL's β), one panel per method, strategy and evaluation, 95% intervals as error bars.
    None unless some strategy ran at two or more values."""
    d = numbers[numbers["delta"].astype(bool) & (numbers["metric"] == metric)] if not numbers.empty else numbers
    d = d[d["negatives"].isin(list(STRATEGY_AXES))] if not d.empty else d
    if d.empty:
        return None
    configs = dict(zip(evals["model_id"], evals["model_config"]))
    d = d.assign(x=[number(configs.get(m, {}).get(STRATEGY_AXES[n][0])) for m, n in zip(d["model_id"], d["negatives"])])
    d = d.dropna(subset=["x"])
    keys = ["method", "variant", "negatives", "eval", "dataset"]
    d = d[d.groupby(keys)["x"].transform("nunique") >= 2] if not d.empty else d
    if d.empty:
        return None
    panels = list(dict.fromkeys(zip(*(d[k] for k in keys))))
    with sns.axes_style(**STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.2), squeeze=False, layout="constrained")
        for ax, (method, variant, strategy, ev, dataset) in zip(axes[0], panels):
            rows = d[(d["method"] == method) & (d["variant"] == variant) & (d["negatives"] == strategy)
                     & (d["eval"] == ev) & (d["dataset"] == dataset)].sort_values("x")
            ax.plot(rows["x"].astype(float), rows["mean"].astype(float), marker="o",
                    color=method_colours().get(method, "grey"), label=tables.negatives_label(strategy))
            _whiskers(ax, rows["x"], rows, ecolor=method_colours().get(method, "grey"))
            ax.axhline(0, color="k", linewidth=0.8)
            ax.set(title=", ".join(filter(None, (tables.method_name(method), tables.negatives_label(strategy), variant,
                                                 dataset, ev))),
                   xlabel=STRATEGY_AXES[strategy][1], ylabel=f"{metric} (points): strategy − baseline")
        fig.suptitle("Strategies against their parameter: − the method's own negatives, paired by seed\n"
                     "(points: mean; whiskers: 95% interval; none for one pair)")
    return _save(fig, path)


def training_curves(logs: pd.DataFrame, path: Path) -> Path | None:
    """Loss per logged step and kNN top-1 per monitored epoch, one line per run, one column
    per pretraining dataset; colour = method and sampler, so seeds of a model share a colour."""
    if logs.empty:
        return None
    # loss every log_every steps; an epoch line repeats one batch's loss off that grid, so it is
    # used only for a run that logged no step lines
    has_steps = logs.groupby("run")["step_line"].transform("any").astype(bool)
    loss = logs[logs["step_line"].astype(bool) | ~has_steps].dropna(subset=["loss"]).drop_duplicates(["run", "step"])
    knn = logs.dropna(subset=["knn_top1"])
    long = pd.concat([loss.assign(metric="loss", value=loss["loss"]),
                      knn.assign(metric="kNN top-1 (%)", value=knn["knn_top1"])], ignore_index=True)
    long = long.dropna(subset=["epoch", "value"])
    if long.empty:
        return None
    long["model"] = tables.model_labels(long)
    # a panel only for a metric some run has at two or more points (kNN run once is no curve)
    points = long.groupby(["metric", "run"]).size().groupby("metric").max()
    rows = [m for m in ("loss", "kNN top-1 (%)") if points.get(m, 0) >= 2]
    if not rows:
        return None
    datasets = list(dict.fromkeys(long["dataset"]))
    colours, looks = method_colours(), sampler_looks(long["negatives"])
    with sns.axes_style(**STYLE):
        fig, axes = plt.subplots(len(rows), len(datasets), figsize=(max(4.0 * len(datasets), 5.0), 2.6 * len(rows)),
                                 squeeze=False, layout="constrained")
        for (i, metric), (j, dataset) in itertools.product(enumerate(rows), enumerate(datasets)):
            ax = axes[i][j]
            sub = long[(long["metric"] == metric) & (long["dataset"] == dataset)]
            for _, r in sub.groupby("run", sort=False):
                first = r.iloc[0]
                style, marker, _ = looks[first["negatives"]]
                # markers only on the sparse kNN points (a 200-epoch loss curve has thousands)
                ax.plot(r["epoch"], r["value"], color=colours.get(first["method"], "grey"), linestyle=style,
                        marker=marker if metric != "loss" else None, markersize=4, label=first["model"])
            ax.set(title=f"{metric} | {dataset}", xlabel="epoch" if i == len(rows) - 1 else "")
        handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
        order = [m for m in hue_order(long) if m in handles]
        legend_below(fig, [handles[m] for m in order], order)
    return _save(fig, path)


def toy_mi(toy: pd.DataFrame, path: Path) -> Path | None:
    """Bias and std of the CNCE estimate against the ring width; NCE (uniform negatives) as a
    dashed reference line, not a point at outer 1 (where a ring with an inner cut also sits)."""
    if toy.empty:
        return None
    stats = {"bias": "bias", "std": "std over repeats", "std_negatives": "std from negatives"}
    if toy["std_negatives"].isna().all():
        del stats["std_negatives"]
    ring, nce = toy[toy["estimator"] != "nce"], toy[toy["estimator"] == "nce"]
    with sns.axes_style(**STYLE):
        fig, axes = plt.subplots(1, len(stats), figsize=(3.8 * len(stats), 3.2), squeeze=False, layout="constrained")
        for ax, (key, label) in zip(axes[0], stats.items()):
            for i, (true, sub) in enumerate(ring.groupby("true_mi")):
                colour = sns.color_palette()[i % 10]
                mean = sub.groupby("outer")[key].agg(["mean", "std"]).reset_index()
                ax.errorbar(mean["outer"], mean["mean"], yerr=mean["std"].fillna(0), marker="o", color=colour,
                            label=f"CNCE, true MI {true:.3f}")
                ref = nce.loc[nce["true_mi"] == true, key]
                if not ref.empty:
                    ax.axhline(ref.mean(), color=colour, linestyle="--", linewidth=1, label=f"NCE, true MI {true:.3f}")
            if key == "bias":
                ax.axhline(0, color="k", linewidth=0.8)
            ax.set(xscale="log", xlabel="ring outer fraction", ylabel="nats", title=f"{label} of the estimate")
        axes[0][0].legend(fontsize="small")
        fig.suptitle("Toy MI: CNCE (Ring) at each ring width vs. NCE (uniform negatives, dashed)", y=1.04)
    return _save(fig, path)


def anneal(pre: pd.DataFrame, logs: pd.DataFrame, path: Path) -> Path | None:
    """The ring's outer fraction over training under every schedule of pretrain.negatives, with
    the settings of the first annealed ring run (else illustrative ones), and the values the
    ring/ball runs actually logged per step as points."""

    p, source = dict(ILLUSTRATIVE_ANNEAL), "illustrative settings"
    for _, r in pre.iterrows():
        neg = r["config"].get("negatives")
        a = neg.get("anneal") if isinstance(neg, dict) else None
        optim = r["config"].get("optim")
        if r["negatives"] != "uniform" and isinstance(a, dict) and number(a.get("epochs")) > 0:
            p = {"final": number(neg.get("outer")), "start": number(a.get("start", 1.0)), "epochs": number(a["epochs"]),
                 "steps": number(a.get("steps", 4)), "decay": number(a.get("decay", 0.1)),
                 "total": number(optim.get("epochs")) if isinstance(optim, dict) else 0.0}
            if not any(np.isnan(v) for v in p.values()):
                source = f"settings of run {r['run']}"
                break
            p = dict(ILLUSTRATIVE_ANNEAL)
    epochs = np.linspace(0.0, max(p["total"], p["epochs"]), 400)
    curves = pd.DataFrame([{"schedule": s, "epoch": e,
                            "outer": outer_at(s, e, p["final"], p["start"], p["epochs"], int(p["steps"]), p["decay"])}
                           for s in SCHEDULES for e in epochs])
    with sns.axes_style(**STYLE):
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        sns.lineplot(data=curves, x="epoch", y="outer", hue="schedule", ax=ax)
        logged = logs[logs["outer"].notna() & (logs["negatives"] != "uniform")] if not logs.empty else logs
        if not logged.empty:
            sns.scatterplot(data=logged, x="epoch", y="outer", style="run", color="k", s=14, ax=ax, zorder=3)
        ax.set(ylabel="ring outer fraction", title=f"Annealing the ring: {p['start']:g} → {p['final']:g} over "
                                                   f"{p['epochs']:g} epochs ({source})")
        ax.legend(fontsize="small", bbox_to_anchor=(1.02, 1), loc="upper left")
    return _save(fig, path)
