"""Tidy frames -> the report's tables. Pure functions of the records: nothing is rerun.

Each paper-layout table is a `Table`: a display frame (formatted cells, '—' where a run is
missing; written as markdown and LaTeX) and the numbers behind it (one row per cell with
mean, std and n; written as CSV for further analysis). Runs that differ only in their seed
are averaged: mean ± std over seeds, with the number of runs.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import pandas as pd
from scipy import stats as sps

from pretrain.registry import METHODS, SAMPLERS
from reports import frames
from reports.frames import evaluations  # noqa: F401  (kept importable from here)
from reports.render import DASH

BASELINE = "uniform"  # the default baseline sampler; records name each method's own (LA: ball)
PAPER_DATASETS = ("cifar10", "cifar100", "stl10", "imagenet")  # the paper's column order
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "stl10": "STL-10", "imagenet": "ImageNet",
                 "imagenet100": "ImageNet-100"}
METHOD_NAMES = {name: METHODS.label(name) for name in METHODS.names()}  # the registry's order and labels
SAMPLER_NAMES = {name: SAMPLERS.label(name) for name in SAMPLERS.names()}
SAMPLER_ORDER = ("ring", *(n for n in SAMPLERS.names() if n != "ring"))  # Ring first: the comparison
EVAL_ORDER = ("linear_paper", "linear_moco", "linear_cached", "knn")
EVAL_TITLES = {"linear_paper": "Linear probe with the official Ring code's settings",
               "linear_moco": "Linear probe with MoCo's settings",
               "linear_cached": "Linear probe on cached features (a fast proxy, not a published protocol)",
               "knn": "Weighted kNN"}
SPREAD_NOTE = ("Cells are mean ± std over seeds (n = number of runs) where several runs exist; a bare "
               "value is a single run; — = no record.")


@dataclass
class Table:
    name: str            # file stem under tables/
    title: str
    note: str            # what the cells mean; goes under the title and into the LaTeX caption
    display: pd.DataFrame
    numbers: pd.DataFrame


# ---------------------------------------------------------------- small helpers

def ordered(present, first=()) -> list:
    """`first` in its order, then whatever else is present, sorted."""
    present = [p for p in dict.fromkeys(present) if isinstance(p, str)]
    return [p for p in first if p in present] + sorted(p for p in present if p not in first)


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def model_name(method: str, sampler: str, baseline: str = BASELINE) -> str:
    """'IR' for the method's own negatives (its baseline sampler), 'IR + Ring' otherwise; LA
    with the whole bank as background is 'LA + Uniform (whole pool)', not LA."""
    base = method_name(method)
    return base if sampler == baseline else f"{base} + {SAMPLER_NAMES.get(sampler, sampler)}"


def delta_name(method: str, sampler: str) -> str:
    return f"Δ {SAMPLER_NAMES.get(sampler, sampler)} ({method_name(method)})"


def dataset_name(dataset: str, pretrained_on: str | None = None) -> str:
    name = DATASET_NAMES.get(dataset, dataset)
    if pretrained_on and pretrained_on != dataset:  # transfer: never average with in-domain runs
        name += f" ← {DATASET_NAMES.get(pretrained_on, pretrained_on)}"
    return name


def cell(mean, std=math.nan, n=1, digits: int = 2, signed: bool = False) -> str:
    """'83.50 ± 0.71 (n=2)'; one run prints its value alone; a missing value prints '—'."""
    if mean is None or pd.isna(mean):
        return DASH
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    if not pd.isna(n) and n >= 2 and not pd.isna(std):
        text += f" ± {std:.{digits}f} (n={int(n)})"
    return text


def over_seeds(df: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """keys + mean, std (NaN for one run) and n of `value` over the runs sharing the keys."""
    df = df.dropna(subset=[value])
    if df.empty:
        return pd.DataFrame(columns=keys + ["mean", "std", "n"])
    out = df.groupby(keys, sort=False)[value].agg(mean="mean", std="std", n="count").reset_index()
    return out


def with_deltas(s: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Add a row per non-baseline sampler: sampler mean − the method's baseline mean (difference
    of the means over seeds; its std is not defined for unpaired seeds, so it has none)."""
    is_base = s["negatives"] == s["baseline"]
    base = s[is_base].set_index(["method"] + keys)["mean"]
    other = s[~is_base].set_index(["method"] + keys)
    if base.empty or other.empty:
        return s.assign(delta=False).astype({"n": "Int64"})
    d = other.assign(mean=other["mean"] - base.reindex(other.index).values, std=math.nan, n=math.nan)
    d = d.dropna(subset=["mean"]).reset_index()
    out = pd.concat([s.assign(delta=False), d.assign(delta=True)], ignore_index=True)
    return out.astype({"n": "Int64"})  # counts stay integers in the CSV; a Δ row has none


def baselines(df: pd.DataFrame) -> dict:
    """method -> its baseline sampler, as the records name it."""
    return dict(zip(df["method"], df["baseline"]))


def model_rows(df: pd.DataFrame) -> list[tuple[str, str, bool]]:
    """(method, sampler, is_delta) in the paper's row order: IR, IR + Ring, Δ Ring (IR), MoCo, ..."""
    out, bases = [], baselines(df)
    for method in ordered(df["method"], METHOD_NAMES):
        base = bases[method]
        samplers = ordered(df.loc[df["method"] == method, "negatives"], (base, *SAMPLER_ORDER))
        out += [(method, s, False) for s in samplers]
        if base in samplers:
            out += [(method, s, True) for s in samplers if s != base]
    return out


def row_labels(df: pd.DataFrame) -> dict:
    """(method, sampler, is_delta) -> its row label, for every row of model_rows(df)."""
    bases = baselines(df)
    return {(m, s, d): delta_name(m, s) if d else model_name(m, s, bases[m]) for m, s, d in model_rows(df)}


def spread(numbers: pd.DataFrame, rows: list, row_keys: list[str], columns: list, col_key: str,
           first_col: str, digits: int = 2) -> pd.DataFrame:
    """Display frame: one row per (key, label) in `rows` (key: values of row_keys), one column
    per entry of `columns`, cells formatted from numbers' mean/std/n; '—' where absent. Δ rows
    (numbers["delta"]) print with a sign."""
    idx = numbers.set_index(row_keys + [col_key])
    out = []
    for key, label in rows:
        line = {first_col: label}
        for col in columns:
            k = tuple(key) + (col,)
            hit = idx.loc[[k]].iloc[0] if k in idx.index else None
            delta = "delta" in row_keys and bool(key[row_keys.index("delta")])
            line[col] = DASH if hit is None else cell(hit["mean"], hit["std"], hit["n"], digits, signed=delta)
        out.append(line)
    return pd.DataFrame(out, columns=[first_col] + list(columns))


# ---------------------------------------------------------------- the main (long) table

def ring_vs_baseline(evals: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """method x dataset x eval rows: the method's baseline sampler and its mean over seeds,
    then each other sampler's mean and its difference to the baseline, and n runs."""
    evals = evals.dropna(subset=[metric])  # a record without this metric is not a run of it
    if evals.empty:
        return pd.DataFrame()
    evals = evals.assign(eval=evals["variant"])  # never average two settings of one evaluation
    keys = ["method", "dataset", "eval"]
    table = evals.pivot_table(index=keys, columns="negatives", values=metric, aggfunc="mean")
    counts = evals.pivot_table(index=keys, values=metric, aggfunc="count")
    base = table.index.get_level_values("method").map(baselines(evals))
    out = pd.DataFrame({"baseline negatives": base}, index=table.index)
    out["baseline"] = [table.at[i, b] if b in table.columns else math.nan for i, b in zip(table.index, base)]
    for col in ordered(table.columns, SAMPLER_ORDER):
        other = table[col].where(base != col)  # a method's own baseline is not compared with itself
        if other.notna().any():
            out[col] = other
            out[f"{col} − baseline"] = other - out["baseline"]
    out["runs (all samplers)"] = counts[metric]
    return out.reset_index()


# ---------------------------------------------------------------- paper-layout tables

def linear(evals: pd.DataFrame, metric: str = "top1") -> list[Table]:
    """One table per evaluation protocol: rows IR, IR + Ring, Δ Ring (IR), MoCo, ...; columns
    CIFAR-10, CIFAR-100, STL-10, ImageNet (always, as in the paper) then any other dataset."""
    if evals.empty:
        return []
    evals = evals.assign(column=[dataset_name(d, p) for d, p in zip(evals["dataset"], evals["pretrain_dataset"])])
    out = []
    order = {e: i for i, e in enumerate(ordered(evals["eval"], EVAL_ORDER))}
    groups = evals.groupby(["eval", "setting", "changed"], sort=False)
    for (ev, setting, changed), sub in sorted(groups, key=lambda kv: (order[kv[0][0]], kv[0][1])):
        numbers = with_deltas(over_seeds(sub, ["method", "negatives", "baseline", "column"], metric), ["column"])
        if numbers.empty:
            continue
        columns = [DATASET_NAMES[d] for d in PAPER_DATASETS]
        columns += ordered(c for c in sub["column"] if c not in columns)
        rows = list(row_labels(numbers).items())
        display = spread(numbers, rows, ["method", "negatives", "delta"], columns, "column", "model")
        numbers = numbers.rename(columns={"column": "dataset"}).assign(eval=ev, metric=metric)
        title = EVAL_TITLES.get(ev, ev) + (f" ({changed})" if changed else "")
        out.append(Table(f"{sub['variant'].iloc[0]}_{metric}", f"{title}, {metric} accuracy (%): {setting}",
                         f"{SPREAD_NOTE} Δ = Ring (or Ball) mean − base method mean.", display,
                         numbers[["eval", "metric", "method", "negatives", "baseline", "delta", "dataset", "mean", "std", "n"]]))
    return out


def t_interval(std: float, n: float) -> float:
    """Half-width of the 95% t-interval of a mean of n runs (NaN for one run)."""
    if pd.isna(n) or n < 2 or pd.isna(std):
        return math.nan
    return float(sps.t.ppf(0.975, int(n) - 1) * std / math.sqrt(n))


def interval_cell(mean, ci, n, delta: bool) -> str:
    """'71.20 ± 0.80' (± a 95% interval, not a std), '(n=k)' for several runs; Δ signed, bare."""
    if pd.isna(mean):
        return DASH
    if delta:
        return f"{mean:+.2f}"
    text = f"{mean:.2f}" + ("" if pd.isna(ci) else f" ± {ci:.2f}")
    return text + (f" (n={int(n)})" if not pd.isna(n) and n >= 2 else "")


def metadataset(md: pd.DataFrame) -> list[Table]:
    """One table per protocol (linear probe per domain; episodic per head): rows the nine
    domains (always, '—' where missing) then any other; columns IR, IR + Ring, Δ Ring (IR), ...

    ± is a 95% interval: the record's own (over its episodes) for one run; over seeds (t
    distribution) for several runs.
    """
    if md.empty:
        return []
    out = []
    protocols = ordered(md["protocol"], ("linear", "episodic"))  # the paper's protocol first
    groups = md.groupby(["protocol", "head", "setting"])
    for (proto, head, setting), sub in sorted(groups, key=lambda kv: (protocols.index(kv[0][0]), kv[0][1], kv[0][2])):
        s = over_seeds(sub, ["method", "negatives", "baseline", "domain"], "top1")
        ci = sub.groupby(["method", "negatives", "domain"], sort=False)["ci95"].mean().rename("record_ci95")
        s = s.join(ci, on=["method", "negatives", "domain"])
        s["ci95"] = [c if n < 2 else t_interval(sd, n) for c, sd, n in zip(s["record_ci95"], s["std"], s["n"])]
        numbers = with_deltas(s, ["domain"])
        labels = row_labels(numbers)
        text = numbers.assign(
            model=[labels[m, ng, d] for m, ng, d in zip(numbers["method"], numbers["negatives"], numbers["delta"])],
            text=[interval_cell(mu, c, n, d) for mu, c, n, d in
                  zip(numbers["mean"], numbers["ci95"], numbers["n"], numbers["delta"])])
        domains = list(frames.DOMAINS) + ordered(d for d in sub["domain"] if d not in frames.DOMAINS)
        display = (text.pivot(index="domain", columns="model", values="text")
                   .reindex(index=domains, columns=list(labels.values()))
                   .fillna(DASH).rename_axis(index="domain", columns=None))
        if setting:  # what the records say ran
            what = setting
        elif proto == "linear":
            what = "per-domain linear probe on cached frozen features (settings not recorded)"
        elif proto == "episodic":
            counts = sorted({int(e) for e in sub["episodes"].dropna()})
            episodes = ("episodes per domain: " + ", ".join(map(str, counts))) if counts else "episodes not recorded"
            what = f"episodes of the test classes, {head or 'unnamed'} head ({episodes}; settings not recorded)"
        else:
            what = " ".join(p for p in (proto, head) if p)
        name = "metadataset_" + "_".join(p for p in (proto, head) if p)
        name += "" if len(groups) == md.groupby(["protocol", "head"]).ngroups else f"_{zlib.crc32(setting.encode()):08x}"
        note = ("Top-1 accuracy (%) ± 95% interval: the record's own for one run (episodic: over its "
                "episodes), over seeds (t distribution) for n runs; Δ = Ring mean − base mean; — = no record.")
        uniform = sorted(set(sub.loc[sub["not_official"].astype(bool), "domain"]))
        if uniform:
            note += (f" Not Meta-Dataset's own evaluation for {', '.join(uniform)}: its classes were drawn uniformly "
                     f"(the ImageNet DAG sampler is not implemented).")
        keep = ["method", "negatives", "baseline", "delta", "domain", "mean", "std", "n", "ci95"]
        out.append(Table(name, f"Meta-Dataset, {what}", note, display.reset_index(),
                         numbers[keep].assign(protocol=proto, head=head)))
    return out


def detection(det: pd.DataFrame) -> list[Table]:
    """One table per detectron2 config (task): rows IR, IR + Ring, Δ ...; columns bbox AP, AP50,
    AP75, then segm and keypoints where that config reports them."""
    if det.empty:
        return []
    out = []
    for (task, setting), sub in det.groupby(["task", "setting"], sort=True):
        numbers = with_deltas(over_seeds(sub, ["method", "negatives", "baseline", "metric"], "value"), ["metric"])
        columns = [f"{i} {a}" for i in frames.IOU_TYPES for a in frames.AP_KEYS
                   if i == "bbox" or (sub["metric"].str.startswith(i)).any()]
        rows = list(row_labels(numbers).items())
        display = spread(numbers, rows, ["method", "negatives", "delta"], columns, "metric", "model", digits=1)
        dataset = ", ".join(sorted(set(sub["dataset"])))
        what = setting or f"{task} on {dataset} (settings not recorded)"
        name = f"detection_{task}" + ("" if det.groupby("task").ngroups == det.groupby(["task", "setting"]).ngroups
                                      else f"_{zlib.crc32(setting.encode()):08x}")
        out.append(Table(name, f"Detection ({task}): {what}",
                         f"COCO-style AP (%). {SPREAD_NOTE} Δ = Ring mean − base mean.", display,
                         numbers[["method", "negatives", "baseline", "delta", "metric", "mean", "std", "n"]].assign(task=task)))
    return out


def toy_mi(toy: pd.DataFrame) -> list[Table]:
    """Estimator rows (NCE, then CNCE from the widest ring to the narrowest) per true MI; the
    estimate's mean, std (repeats and negatives), bias and how much harder the ring's negatives
    are than the pool's, in nats, averaged over the toy-MI records (n)."""
    if toy.empty:
        return []
    g = toy.groupby(["true_mi", "estimator", "outer"], sort=False)
    numbers = g[["inner", "mean", "std", "std_negatives", "bias", "harder"]].mean().assign(n=g.size()).reset_index()
    numbers["nce"] = numbers["estimator"] == "nce"
    numbers = numbers.sort_values(["true_mi", "nce", "outer"], ascending=[True, False, False], kind="stable")
    bound = [DASH if pd.isna(h) else ("yes" if h > 0 or nce else "no")
             for h, nce in zip(numbers["harder"], numbers["nce"])]
    display = pd.DataFrame({
        "true MI": [f"{x:.3f}" for x in numbers["true_mi"]],
        "estimator": [e.split("@")[0].upper() for e in numbers["estimator"]],
        "ring outer / inner": [DASH if nce else f"{o:g} / {DASH if pd.isna(i) else f'{i:g}'}"
                               for o, i, nce in zip(numbers["outer"], numbers["inner"], numbers["nce"])],
        "estimate": [cell(x, digits=3) for x in numbers["mean"]],
        "std (repeats)": [cell(x, digits=3) for x in numbers["std"]],
        "std (negatives)": [cell(x, digits=3) for x in numbers["std_negatives"]],
        "bias": [cell(x, digits=3, signed=True) for x in numbers["bias"]],
        "band harder than pool": [cell(x, digits=3, signed=True) for x in numbers["harder"]],
        "lower bound holds": bound,
        "records": numbers["n"].astype(int).astype(str)})
    note = ("Estimates of the mutual information (nats) with the optimal critic; std (repeats) is the "
            "spread over repeats (anchors and negatives), std (negatives) the part that comes from "
            "sampling negatives, which is what Ring reduces; bias = estimate − true MI. `band harder "
            "than pool` = log mean e^f over the ring's band − log mean e^f over the pool: CNCE ≤ NCE ≤ "
            "true MI holds only where it is positive (a ring cut from the top of the ranking). At outer "
            "1 with an inner cut (the start of an anneal) the band is easier than the pool and CNCE "
            "overestimates the MI.")
    return [Table("toy_mi", "Toy mutual information: NCE vs. CNCE (Ring) bias and variance", note, display,
                  numbers.drop(columns="nce"))]


def pretraining_runs(pre: pd.DataFrame) -> pd.DataFrame:
    """One row per pretraining run (no averaging): what it cost and where it ended."""
    if pre.empty:
        return pd.DataFrame()
    df = pre.rename(columns={"final_loss": "final loss", "knn_top1": "kNN top1", "images_per_s": "images/s",
                             "wall_s": "wall s", "peak_rss_mb": "peak RSS MiB", "peak_cuda_mb": "peak CUDA MiB"})
    cols = ["run", "method", "negatives", "dataset", "seed", "epochs", "final loss", "kNN top1", "images/s",
            "wall s", "peak RSS MiB", "peak CUDA MiB"]
    if df["peak CUDA MiB"].isna().all():
        cols.remove("peak CUDA MiB")
    df = df.astype({"epochs": "Int64"})  # whole numbers, not '6.00'
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    return df[cols].sort_values("run", kind="stable")


def cost(records: list[dict]) -> Table | None:
    """Wall-clock and peak memory of every stage, mean ± std over the seeds of each group."""
    rows = [{**frames.identity(r), "stage": r["stage"], "task": r["task"], "dataset": r["dataset"]} for r in records]
    if not rows:
        return None
    df = pd.DataFrame(rows)
    keys = ["stage", "task", "dataset", "method", "negatives"]
    parts = []
    for value in ("wall_s", "peak_rss_mb", "peak_cuda_mb"):
        s = over_seeds(df, keys, value)
        parts.append(s.set_index(keys).add_prefix(f"{value} "))
    numbers = pd.concat(parts, axis=1).reset_index()
    numbers["runs"] = numbers[[f"{v} n" for v in ("wall_s", "peak_rss_mb", "peak_cuda_mb")]].max(axis=1)
    stage_order = {s: i for i, s in enumerate(("pretrain", "evaluate", "metadataset", "detection", "toy_mi"))}
    numbers = numbers.sort_values(keys, key=lambda c: c.map(stage_order).fillna(99) if c.name == "stage" else c,
                                  kind="stable").reset_index(drop=True)
    display = numbers[keys].copy()
    display["method"] = [DASH if m == "?" else method_name(m) for m in display["method"]]
    display["negatives"] = [DASH if s == "?" else s for s in display["negatives"]]
    display["runs"] = numbers["runs"].fillna(0).astype(int).astype(str)
    for value, label, digits in (("wall_s", "wall-clock s", 1), ("peak_rss_mb", "peak RSS MiB", 0),
                                 ("peak_cuda_mb", "peak CUDA MiB", 0)):
        if value == "peak_cuda_mb" and numbers[f"{value} mean"].isna().all():
            continue  # a CPU-only results directory: no empty column
        display[label] = [cell(m, s, n, digits) for m, s, n in
                          zip(numbers[f"{value} mean"], numbers[f"{value} std"], numbers[f"{value} n"])]
    note = ("Per stage and task: wall-clock seconds and peak memory of the process, mean ± std over the "
            "runs of the group (n) where there are several.")
    return Table("cost", "Wall-clock time and peak memory", note, display, numbers)
