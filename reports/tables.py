"""Tidy frames -> the report's tables. Pure functions of the records: nothing is rerun.

Each paper-layout table is a `Table`: a display frame (formatted cells, '—' where a run is
missing; written as markdown and LaTeX) and the numbers behind it (one row per cell with mean,
95% interval and n; written as CSV for further analysis). Runs that differ only in their seed
are one model: mean over seeds with a 95% t-interval; Ring − baseline differences are paired
by seed (reports/stats.py, scipy.stats).
"""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass

import pandas as pd

from core.errors import UserError
from core.names import SHIPPED_STRATEGIES, Names
from reports import frames, stats
from reports.frames import evaluations  # noqa: F401  (kept importable from here)
from reports.render import DASH

BASELINE = "uniform"  # the default baseline sampler; records name each method's own (LA: ball)
PAPER_DATASETS = ("cifar10", "cifar100", "stl10", "imagenet")  # the paper's column order
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "stl10": "STL-10", "imagenet": "ImageNet",
                 "imagenet100": "ImageNet-100"}
# Labels and order of methods and negatives: the shipped ones, then those the records carry
# (learn_names; the report imports no stage, core/names.py)
METHOD_NAMES: dict[str, str] = {}
SAMPLER_NAMES: dict[str, str] = {}
SAMPLER_ORDER: tuple[str, ...] = ()
EVAL_TITLES: dict[str, str] = {}  # evaluation: the title of its tables, in the report's order


def learn_names(recs: list[dict] = ()) -> None:
    """Set METHOD_NAMES (in the registries' order), SAMPLER_NAMES and SAMPLER_ORDER (Ring first,
    the comparison; the other samplers; then the strategies) and EVAL_TITLES (in the order of
    the protocols' registry, then kNN) from the shipped names and `recs`."""
    global SAMPLER_ORDER
    names = Names().learn(list(recs))
    METHOD_NAMES.clear()
    METHOD_NAMES.update(names.methods)
    SAMPLER_NAMES.clear()
    SAMPLER_NAMES.update(names.negatives)
    samplers = [n for n in names.negatives if n not in SHIPPED_STRATEGIES]
    SAMPLER_ORDER = ("ring", *(n for n in samplers if n != "ring"), *SHIPPED_STRATEGIES)
    EVAL_TITLES.clear()
    EVAL_TITLES.update({e: title for e, (title, _) in names.evaluations.items()})


learn_names()


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


def _extra(*parts: str) -> str:
    shown = "; ".join(p for p in parts if p)
    return f" ({shown})" if shown else ""


def model_name(method: str, sampler: str, baseline: str = BASELINE, setting: str = "", variant: str = "") -> str:
    """'IR' for the method's own negatives (its baseline sampler), 'IR + Ring' otherwise, with
    the sampler's settings where a table holds several, and the keys in which the method's rows
    differ otherwise ('MoCo (queue 4,096)'); LA with the whole bank as background is 'LA +
    Uniform (whole pool)', not LA."""
    base = method_name(method)
    if sampler == baseline:
        return base + _extra(variant)
    return f"{base} + {negatives_label(sampler)}" + _extra(setting, variant)


def delta_name(method: str, sampler: str, setting: str = "", variant: str = "") -> str:
    return f"Δ {negatives_label(sampler)}{_extra(setting)} ({', '.join(filter(None, (method_name(method), variant)))})"


def negatives_label(name: str) -> str:
    """'Ring', 'DCL', 'Ring + HCL' (records.negatives_name's 'ring+hcl')."""
    return " + ".join(SAMPLER_NAMES.get(part, part) for part in str(name).split("+"))


def model_labels(df: pd.DataFrame) -> list[str]:
    """model_name of each row of a frame with the model columns (figures)."""
    variants = df["variant"] if "variant" in df else [""] * len(df)
    return [model_name(m, s, b, v, w) for m, s, b, v, w in
            zip(df["method"], df["negatives"], df["baseline"], df["negatives_setting"], variants)]


# The keys a row label already shows through the sampler and its setting (frames.negatives_setting).
SAMPLER_KEYS = ("negatives.sampler", "negatives.outer", "negatives.inner", "negatives.anneal.schedule",
                "negatives.anneal.epochs", "negatives.neighbor_views", "negatives.objective")


def shown_by_sampler(key: str) -> bool:
    """A key the row label shows: SAMPLER_KEYS, and the run's strategy's settings (the one section
    under negatives other than anneal that an identity keeps: negatives.hcl.beta, ...)."""
    part = key.split(".")
    return key in SAMPLER_KEYS or (len(part) > 2 and part[0] == "negatives" and part[1] != "anneal")
KEY_NAMES = {"method.moco.queue_size": "queue", "optim.epochs": "epochs", "optim.batch_size": "batch",
             "optim.lr": "lr", "data.image_size": "image size", "data.limit": "images", "negatives.num": "K",
             "method.temperature": "t", "model.arch": "", "data.dataset": "pretrained on"}


def describe(key: str, value) -> str:
    """'queue 4,096', 'epochs 200', 'resnet50': one key of a model in a row label."""
    if isinstance(value, bool):
        text = "on" if value else "off"
    elif isinstance(value, int):
        text = f"{value:,}"
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list):
        text = "/".join(map(str, value))
    else:
        text = str(value)
    name = KEY_NAMES.get(key, key.rsplit(".", 1)[-1].replace("_", " "))
    return f"{name} {text}" if name else text


def with_variants(df: pd.DataFrame, scope: list[str]) -> pd.DataFrame:
    """df with a `variant` column: for each method, the keys in which its models differ among
    the models sharing a cell (`scope`: the table's column, e.g. the dataset), shown on every
    row of the method ('queue 4,096'), so that a row is one model (docs/design.md §11). Keys
    the sampler's own label shows are left to it; models that would still read alike get their
    fingerprint."""
    if df.empty:
        return df.assign(variant=pd.Series(dtype=str))
    configs = dict(zip(df["model_id"], df["model_config"]))
    varying: dict[str, set] = {}
    for (method, *_), g in df.groupby(["method", *scope], sort=False):
        models = [configs[i] for i in g["model_id"].unique()]
        keys = {k for k in set().union(*models) if not shown_by_sampler(k)}
        varying.setdefault(method, set()).update(
            k for k in keys if len({json.dumps(m.get(k), sort_keys=True, default=str) for m in models}) > 1)
    label = {i: ", ".join(describe(k, configs[i].get(k)) for k in sorted(varying.get(m, ())))
             for i, m in zip(df["model_id"], df["method"])}
    df = df.assign(variant=df["model_id"].map(label))
    alike = df.groupby(MODEL + scope, sort=False)["model_id"].transform("nunique") > 1
    df.loc[alike, "variant"] = [", ".join(filter(None, (v, f"config {i[:6]}")))
                                for v, i in zip(df.loc[alike, "variant"], df.loc[alike, "model_id"])]
    return df


def dataset_name(dataset: str, pretrained_on: str | None = None) -> str:
    name = DATASET_NAMES.get(dataset, dataset)
    if pretrained_on and pretrained_on != dataset:  # transfer: never average with in-domain runs
        name += f" ← {DATASET_NAMES.get(pretrained_on, pretrained_on)}"
    return name


def cell(mean, std=math.nan, n=1, digits: int = 2, signed: bool = False) -> str:
    """'83.50 ± 0.71 (n=2)' (± a std: the cost table); one run prints its value alone; '—' if missing."""
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
    return df.groupby(keys, sort=False)[value].agg(mean="mean", std="std", n="count").reset_index()


MODEL = ["method", "variant", "negatives", "negatives_setting"]  # what a row of a paper-layout table is


class ReportError(UserError):
    """The records cannot be compared as asked (one line, naming the records)."""


def baseline_of(df: pd.DataFrame, g: pd.DataFrame, column: str, col) -> pd.DataFrame:
    """The runs of the one baseline model that `g` (the runs of one non-baseline model) is
    compared with: same method, baseline sampler, cell and identity outside the `negatives`
    section (docs/design.md §11). Empty where there is none; two such models are an error,
    never averaged."""
    first = g.iloc[0]
    base = df[(df["method"] == first["method"]) & (df["negatives"] == first["baseline"]) & (df[column] == col)
              & (df["pair_id"] == first["pair_id"])]
    models = list(dict.fromkeys(base["model_id"]))
    if len(models) > 1:
        runs = [", ".join(sorted(set(base.loc[base["model_id"] == m, "run"]))) for m in models]
        raise ReportError(f"{first['run']} ({first['method']}, {first['negatives']}) has {len(models)} baselines that "
                          f"differ from it only in the negatives section: runs {runs[0]} and runs {runs[1]}; "
                          f"move one aside (or give it other settings) to compare")
    return base


def cells(df: pd.DataFrame, column: str, value: str) -> pd.DataFrame:
    """The numbers of a paper-layout table: for each model and `column` value, the mean over
    seeds with its 95% interval and n (delta False); and for each non-baseline model the
    difference to its own baseline model (baseline_of), paired by seed, with its own interval
    and n (delta True). Columns: MODEL, baseline, delta, column, mean, low, high, n, seeds,
    model_id, baseline_id, stale, includes_zero. `df` needs a `variant` column (with_variants)."""
    df = df.dropna(subset=[value])
    rows = []
    for key, g in df.groupby(MODEL + ["baseline", column], sort=False):
        mean, low, high, n = stats.mean_interval(g[value])
        common = dict(zip(MODEL + ["baseline", column], key), model_id=g["model_id"].iloc[0])
        rows.append(dict(common, delta=False, mean=mean, low=low, high=high, n=n, baseline_id=None,
                         seeds=sorted(g["seed"].dropna().astype(int).unique().tolist()), stale=bool(g["stale"].any())))
        if common["negatives"] == common["baseline"]:
            continue
        base = baseline_of(df, g, column, key[-1])
        ring_by_seed, base_by_seed = g.groupby("seed")[value].mean(), base.groupby("seed")[value].mean()
        seeds = sorted(set(ring_by_seed.index) & set(base_by_seed.index))
        if not seeds:
            continue  # no baseline model, or no pair shares a seed: no difference (never a bare difference of means)
        mean, low, high, n = stats.paired_interval(ring_by_seed[seeds], base_by_seed[seeds])
        rows.append(dict(common, delta=True, mean=mean, low=low, high=high, n=n, seeds=[int(x) for x in seeds],
                         baseline_id=base["model_id"].iloc[0], stale=bool(g["stale"].any() or base["stale"].any())))
    out = pd.DataFrame(rows, columns=MODEL + ["baseline", "delta", column, "mean", "low", "high", "n", "seeds",
                                              "model_id", "baseline_id", "stale"])
    out["includes_zero"] = [bool(d) and stats.includes_zero(lo, hi) for d, lo, hi in zip(out["delta"], out["low"], out["high"])]
    return out.astype({"n": "Int64"})


def baselines(df: pd.DataFrame) -> dict:
    """method -> its baseline sampler, as the records name it."""
    return dict(zip(df["method"], df["baseline"]))


def model_rows(df: pd.DataFrame) -> list[tuple[str, str, str, str, bool]]:
    """(method, variant, sampler, setting, is_delta) in the paper's row order: IR, IR + Ring,
    Δ Ring (IR), MoCo, ...; a method's variants one after another (those with a Δ first), each
    with its baseline first."""
    out, bases = [], baselines(df)
    for method in ordered(df["method"], METHOD_NAMES):
        base = bases[method]
        sub = df[df["method"] == method]
        compared = set(sub.loc[sub["delta"], "variant"])  # variants with a comparison first
        for w in sorted(set(sub["variant"]), key=lambda w: (w not in compared, w)):
            part = sub[sub["variant"] == w]
            models = [(s, v) for s in ordered(part["negatives"], (base, *SAMPLER_ORDER))
                      for v in ordered(part.loc[part["negatives"] == s, "negatives_setting"])]
            out += [(method, w, s, v, False) for s, v in models]
            out += [(method, w, s, v, True) for s, v in models if s != base and
                    ((part["negatives"] == s) & (part["negatives_setting"] == v) & part["delta"]).any()]
    return out


def row_labels(df: pd.DataFrame) -> dict:
    """(method, variant, sampler, setting, is_delta) -> its row label; a sampler's settings are
    named only where the table holds several of them for one method."""
    bases, out = baselines(df), {}
    for m, w, s, v, d in model_rows(df):
        several = df.loc[(df["method"] == m) & (df["negatives"] == s), "negatives_setting"].nunique() > 1
        shown = v if several else ""
        out[(m, w, s, v, d)] = delta_name(m, s, shown, w) if d else model_name(m, s, bases[m], shown, w)
    return out


def spread(numbers: pd.DataFrame, columns: list, col_key: str, first_col: str = "model", digits: int = 2,
           single=None) -> pd.DataFrame:
    """Display frame: one row per model_rows(numbers) entry, one column per entry of `columns`:
    'mean ± 95% half-width (n)' cells, Δ rows 'Δ [low, high] (n) ○'; '—' where absent.
    `single(row)` may give a one-run cell its own interval (Meta-Dataset: over its episodes)."""
    idx = numbers.set_index(MODEL + ["delta", col_key])
    out = []
    for key, label in row_labels(numbers).items():
        line = {first_col: label}
        for col in columns:
            k = key + (col,)
            if k not in idx.index:
                line[col] = DASH
                continue
            hit = idx.loc[[k]].iloc[0]
            n = 0 if pd.isna(hit["n"]) else int(hit["n"])
            if key[-1]:
                line[col] = stats.delta_cell(hit["mean"], hit["low"], hit["high"], n, digits, DASH)
            elif n == 1 and single is not None and single(hit) is not None:
                line[col] = single(hit)
            else:
                line[col] = stats.mean_cell(hit["mean"], hit["low"], hit["high"], n, digits, DASH)
            line[col] += STALE if hit["stale"] else ""
        out.append(line)
    return pd.DataFrame(out, columns=[first_col] + list(columns))


STALE = " (stale)"  # a record whose checkpoint has changed since it was measured (frames.stale)
INTERVAL_NOTE = ("A row is one model: runs that differ only in their seed; rows of one method that differ in more "
                 "than the sampler name the keys in which they differ. Cells: mean over seeds ± half-width of its "
                 "95% t-interval (n runs); one run says so and has no interval. Δ rows: Ring (or another sampler) − "
                 "the baseline model that differs from it only in its negatives, paired by seed (the two runs share "
                 "initialisation, data order and augmentation draws), mean [95% paired t-interval] (n pairs); ○ "
                 "marks a difference whose interval includes 0. (stale): a record's checkpoint has changed since it "
                 "was measured. — = no record.")


# ---------------------------------------------------------------- the main (long) table

def ring_vs_baseline(evals: pd.DataFrame, metric: str = "top1", pre: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per method x dataset x evaluation x non-baseline model: the baseline's and the
    model's mean over seeds (95% interval), their paired difference (95% interval, n pairs,
    whether it includes 0) and, from the pretraining records, the share of same-label
    negatives (false negatives) of baseline and model: the mechanism behind a difference."""
    evals = evals.dropna(subset=[metric])  # a record without this metric is not a run of it
    if evals.empty:
        return pd.DataFrame()
    fn = {} if pre is None or pre.empty else pre.groupby("run")["false_negatives"].mean().to_dict()
    evals = with_variants(evals.assign(false_negatives=evals["run"].map(fn)), ["dataset", "eval_id"])
    rows = []
    for (method, dataset, ev), g in evals.groupby(["method", "dataset", "eval_id"], sort=False):
        numbers = cells(g, "eval_id", metric).set_index(["model_id", "delta"])
        for (model_id, delta), d in numbers.iterrows():
            if not delta:
                continue
            model, b = numbers.loc[(model_id, False)], numbers.loc[(d["baseline_id"], False)]
            ring_runs, base_runs = g[g["model_id"] == model_id], g[g["model_id"] == d["baseline_id"]]
            stale = STALE if d["stale"] else ""
            rows.append({
                "method": method, "dataset": dataset, "eval": ev, "baseline negatives": d["baseline"],
                "model": model_name(method, d["negatives"], d["baseline"], d["negatives_setting"], d["variant"]),
                "baseline": stats.mean_cell(b["mean"], b["low"], b["high"], int(b["n"]), 2, DASH),
                "with the sampler": stats.mean_cell(model["mean"], model["low"], model["high"], int(model["n"]), 2, DASH),
                "Δ (paired)": stats.delta_cell(d["mean"], d["low"], d["high"], int(d["n"]), 2, DASH) + stale,
                "false negatives (baseline → sampler)": _fn_pair(base_runs["false_negatives"], ring_runs["false_negatives"]),
                "delta_mean": d["mean"], "delta_low": d["low"], "delta_high": d["high"], "pairs": int(d["n"]),
                "includes_zero": bool(d["includes_zero"]), "seeds": d["seeds"], "model_id": model_id,
                "baseline_id": d["baseline_id"], "stale": bool(d["stale"]),
                "fn_baseline": base_runs["false_negatives"].mean(), "fn_sampler": ring_runs["false_negatives"].mean()})
    return pd.DataFrame(rows)


def _fn_pair(base, ring) -> str:
    if base.isna().all() or ring.isna().all():
        return DASH
    return f"{base.mean():.2f} → {ring.mean():.2f}"


# ---------------------------------------------------------------- paper-layout tables

def linear(evals: pd.DataFrame, metric: str = "top1") -> list[Table]:
    """One table per evaluation setting: rows IR, IR + Ring, Δ Ring (IR), MoCo, ...; columns the
    datasets that hold results, the paper's (CIFAR-10, CIFAR-100, STL-10, ImageNet) first."""
    if evals.empty:
        return []
    evals = evals.assign(column=[dataset_name(d, p) for d, p in zip(evals["dataset"], evals["pretrain_dataset"])])
    evals = with_variants(evals, ["eval_id", "column"])
    out = []
    order = {e: i for i, e in enumerate(ordered(evals["eval"], list(EVAL_TITLES)))}
    groups = evals.groupby(["eval", "setting", "changed"], sort=False)
    for (ev, setting, changed), sub in sorted(groups, key=lambda kv: (order[kv[0][0]], kv[0][1])):
        numbers = cells(sub, "column", metric)
        if numbers.empty:
            continue
        columns = ordered(sub["column"], [DATASET_NAMES[d] for d in PAPER_DATASETS])  # only columns with data
        display = spread(numbers, columns, "column")
        numbers = numbers.rename(columns={"column": "dataset"}).assign(eval=ev, metric=metric)
        title = EVAL_TITLES.get(ev, ev) + (f" ({changed})" if changed else "")
        out.append(Table(f"{sub['eval_id'].iloc[0]}_{metric}", f"{title}, {metric} accuracy (%): {setting}",
                         INTERVAL_NOTE, display, numbers))
    return out


def metadataset(md: pd.DataFrame) -> list[Table]:
    """One table per protocol and setting (linear probe per domain; episodic per head): rows the
    domains that hold results, the paper's nine first; columns IR, IR + Ring, Δ Ring (IR), ...

    ± is a 95% interval: over seeds (t) for several runs; for one run, the record's own over its
    episodes (episodic), else none.
    """
    if md.empty:
        return []
    out = []
    md = with_variants(md, ["protocol", "head", "setting", "domain"])
    protocols = ordered(md["protocol"], ("linear", "episodic"))  # the paper's protocol first
    groups = md.groupby(["protocol", "head", "setting"])
    for (proto, head, setting), sub in sorted(groups, key=lambda kv: (protocols.index(kv[0][0]), kv[0][1], kv[0][2])):
        numbers = cells(sub, "domain", "top1")
        record_ci = sub.groupby(MODEL + ["domain"])["ci95"].mean()

        def episodes(hit, record_ci=record_ci):  # one run: its own interval over its episodes
            ci = record_ci.get(tuple(hit.name[:len(MODEL)]) + (hit.name[-1],), math.nan)
            return None if pd.isna(ci) else f"{hit['mean']:.2f} ± {ci:.2f} (1 run; ± over its episodes)"
        domains = ordered(sub["domain"], frames.DOMAINS)  # only domains with data
        table = spread(numbers, domains, "domain", single=episodes)
        reasons = _mark_contaminated(table, numbers, sub)
        display = table.set_index("model").T.rename_axis(index="domain").reset_index()
        display.columns.name = None
        if setting:  # what the records say ran
            what = setting
        elif proto == "linear":
            what = "per-domain linear probe on cached frozen features (settings not recorded)"
        elif proto == "episodic":
            counts = sorted({int(e) for e in sub["episodes"].dropna()})
            n_episodes = ("episodes per domain: " + ", ".join(map(str, counts))) if counts else "episodes not recorded"
            what = f"episodes of the test classes, {head or 'unnamed'} head ({n_episodes}; settings not recorded)"
        else:
            what = " ".join(p for p in (proto, head) if p)
        name = "metadataset_" + "_".join(p for p in (proto, head) if p)
        name += "" if len(groups) == md.groupby(["protocol", "head"]).ngroups else f"_{zlib.crc32(setting.encode()):08x}"
        note = INTERVAL_NOTE + " One run of an episodic evaluation shows its own 95% interval over its episodes."
        uniform = sorted(set(sub.loc[sub["not_official"].astype(bool), "domain"]))
        if uniform:
            note += (f" Not Meta-Dataset's own evaluation for {', '.join(uniform)}: these records' classes were "
                     f"drawn uniformly (written before the ImageNet DAG sampler).")
        old = sorted(set(sub.loc[sub["old_stream"].astype(bool), "domain"]))
        if old:
            note += (f" {', '.join(old)}: written before the episode stream followed Meta-Dataset's; descriptions "
                     f"follow its rules but not its stream after the first episode.")
        if reasons:
            note += " † the backbone's pretraining saw these images (" + "; ".join(reasons) + "); (†) possibly."
        out.append(Table(name, f"Meta-Dataset, {what}", note, display, numbers.assign(protocol=proto, head=head)))
    return out


def _mark_contaminated(table: pd.DataFrame, numbers: pd.DataFrame, sub: pd.DataFrame) -> list[str]:
    """Mark the Meta-Dataset cells whose records say the backbone's pretraining saw the domain's
    evaluation images: ' †' (yes) or ' (†)' (possibly); returns the distinct reasons."""
    marked = sub[sub["contaminated"].astype(bool)]
    labels = {key[:-1]: label for key, label in row_labels(numbers).items() if not key[-1]}
    for (*model, domain), g in marked.groupby(MODEL + ["domain"]):
        label = labels.get(tuple(model))
        if label is not None and domain in table.columns:
            mark = " †" if any(str(c).startswith("yes") for c in g["contaminated"]) else " (†)"
            table.loc[table["model"] == label, domain] += mark
    return sorted({c.split(": ", 1)[-1] for c in marked["contaminated"]})


def detection(det: pd.DataFrame) -> list[Table]:
    """One table per detectron2 config (task) and setting: rows IR, IR + Ring, Δ ...; columns
    bbox AP, AP50, AP75, then segm and keypoints where that config reports them."""
    if det.empty:
        return []
    out = []
    det = with_variants(det, ["task", "setting", "metric"])
    for (task, setting), sub in det.groupby(["task", "setting"], sort=True):
        numbers = cells(sub, "metric", "value")
        columns = [f"{i} {a}" for i in frames.IOU_TYPES for a in frames.AP_KEYS if (sub["metric"] == f"{i} {a}").any()]
        display = spread(numbers, columns, "metric", digits=1)
        dataset = ", ".join(sorted(set(sub["dataset"])))
        what = setting or f"{task} on {dataset} (settings not recorded)"
        name = f"detection_{task}" + ("" if det.groupby("task").ngroups == det.groupby(["task", "setting"]).ngroups
                                      else f"_{zlib.crc32(setting.encode()):08x}")
        out.append(Table(name, f"Detection ({task}): {what}", f"COCO-style AP (%). {INTERVAL_NOTE}", display,
                         numbers.assign(task=task)))
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
