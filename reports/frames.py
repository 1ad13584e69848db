"""Results records -> tidy pandas frames, one reader per stage (one row per measured value).

Readers are defensive: harnesses are written by different people and at different times, so
each reader documents the record shape it expects, accepts the obvious variants, and skips
(with a warning naming the file) a record it cannot read rather than crash the report.
Every frame carries the identity columns in `IDENTITY`: the model (`model_id`, the fingerprint
of its whole pretraining config less the seed and what cannot change the model; `pair_id`, the
same less the `negatives` section: docs/design.md §11), method, negative sampler, seed, whether
the checkpoint it measured has changed since (`stale`), and the record's cost.
"""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import pandas as pd

from core import records
from core.records import ReportWarning

IDENTITY = ["run", "model_id", "pair_id", "model_config", "method", "negatives", "negatives_setting", "baseline",
            "seed", "stale", "wall_s", "peak_rss_mb", "peak_cuda_mb", "ring_outer", "ring_anneal",
            "ring_neighbour_views"]
# Records written before they named the method's baseline sampler: every method's baseline
# was uniform negatives except Local Aggregation's (its k nearest bank rows, `ball`).
LEGACY_BASELINES = {"la": "ball"}

# docs/design.md §5: the nine Meta-Dataset domains of the paper's transfer table, in its order
DOMAINS = ("aircraft", "cu_birds", "dtd", "fungi", "mscoco", "omniglot", "quickdraw", "traffic_sign", "vgg_flower")
IOU_TYPES = ("bbox", "segm", "keypoints")
AP_KEYS = ("AP", "AP50", "AP75")


def number(value) -> float:
    """A metric value as float; anything that is not a finite number (None, 'n/a') is NaN."""
    if isinstance(value, bool):
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


PERCENT = (0.0, 100.0)  # accuracies and COCO APs are percentages


def out_of_range(value: float) -> bool:
    return not math.isnan(value) and not PERCENT[0] <= value <= PERCENT[1]


def skip(record: dict, why: str) -> None:
    warnings.warn(f"skipping results record {record.get('_path', record.get('run'))}: {why}", ReportWarning)


def model_of(r: dict) -> dict:
    """The record's model as flat config keys (records.model_identity), computed from its
    `config` (so records of every version agree); a model of unknown config is its run."""
    found = records.model_identity(r.get("config"), r.get("method"), r.get("negatives"))
    return {"run": r.get("run")} if found is None else found


def identity(r: dict) -> dict:
    cfg = r.get("config") if isinstance(r.get("config"), dict) else {}
    section = lambda name: cfg.get(name) if isinstance(cfg.get(name), dict) else {}  # noqa: E731
    seed = section("train").get("seed", r.get("seed"))  # the pretraining seed is what varies a run
    method = r.get("method") or section("method").get("name") or "?"
    neg = section("negatives")
    anneal = neg.get("anneal")
    negatives = r.get("negatives") or records.negatives_name(neg) or "?"
    baseline = r.get("baseline_sampler") or LEGACY_BASELINES.get(method, "uniform")
    model = model_of(r)
    return {
        "run": r["run"],
        "model_id": records.fingerprint(model),
        "pair_id": records.fingerprint({k: v for k, v in model.items() if not k.startswith("negatives.")}),
        "model_config": model,
        "method": method,
        "negatives": negatives,
        "negatives_setting": "" if negatives == baseline else negatives_setting(neg),
        "baseline": baseline,
        "seed": seed,
        "stale": stale(r),
        "wall_s": number(r.get("wall_s")),
        "peak_rss_mb": number(r.get("peak_rss_mb")),
        "peak_cuda_mb": number(r.get("peak_cuda_mb")),
        # the sweep's axes (docs/design.md §9), for the figure of the difference against ring width
        "ring_outer": number(neg.get("outer")) if negatives != baseline else math.nan,
        "ring_anneal": anneal.get("schedule", "none") if isinstance(anneal, dict) else "none",
        "ring_neighbour_views": bool(neg.get("neighbor_views", False)),
    }


_HASHES: dict = {}


def stale(r: dict) -> bool:
    """Whether the checkpoint the record measured still exists but no longer matches the
    record's sha256 (retrained or overwritten since): its numbers describe another model. A
    relative path is looked up from here, then beside the results directory."""
    path, want = r.get("checkpoint"), r.get("checkpoint_sha256")
    if not (isinstance(path, str) and path and isinstance(want, str)):
        return False
    candidates = [Path(path)]
    if not Path(path).is_absolute() and len(Path(r.get("_path") or "").parents) > 3:
        candidates.append(Path(r["_path"]).parents[3] / path)  # <root>/results/<run>/<stage>/<task>.json
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        return False  # gone: nothing to compare with
    key = (str(found.resolve()), found.stat().st_mtime_ns, found.stat().st_size)
    if key not in _HASHES:
        _HASHES[key] = records.sha256(found)
    return _HASHES[key] != want


def latest(recs: list[dict]) -> list[dict]:
    """Records with one model, pretraining seed, stage and task are copies or reruns of one
    measurement: the newest (by its date) counts, and a warning names both. Without this a
    copied record would count as another seed."""
    newest: dict = {}
    for r in recs:
        ident = identity(r)
        key = (ident["model_id"], str(ident["seed"]), r.get("stage"), r.get("task"), r.get("dataset"))
        if key not in newest:
            newest[key] = r
            continue
        old = newest[key]
        keep, drop = (r, old) if str(r.get("date") or "") >= str(old.get("date") or "") else (old, r)
        warnings.warn(f"results records {drop.get('_path', drop.get('run'))} and {keep.get('_path', keep.get('run'))} "
                      f"measure one model (seed {ident['seed']}, task {r.get('task')}): the newer, "
                      f"{keep.get('_path', keep.get('run'))}, counts", ReportWarning)
        newest[key] = keep
    return list(newest.values())


SYMBOLS = {"tau_plus": "τ⁺", "beta": "β"}


def negatives_setting(neg: dict) -> str:
    """What a non-baseline sampler ran with, in words: 'outer 0.25, inner 0.1, linear anneal over
    2 epochs'. Runs of one method with different settings are different rows of a table."""
    parts = []
    if "outer" in neg and neg.get("sampler") != "uniform":  # (the whole pool has no width)
        parts.append(f"outer {number(neg['outer']):g}")
    if neg.get("sampler") == "ring" and "inner" in neg:
        parts.append(f"inner {number(neg['inner']):g}")
    anneal = neg.get("anneal") if isinstance(neg.get("anneal"), dict) else {}
    if anneal.get("schedule", "none") != "none" and number(anneal.get("epochs", 0)) > 0 and neg.get("sampler") != "uniform":
        parts.append(f"{anneal['schedule']} anneal over {number(anneal['epochs']):g} epochs")
    if neg.get("neighbor_views"):
        parts.append("neighbour views")
    own = neg.get(neg.get("objective")) if isinstance(neg.get(neg.get("objective")), dict) else {}
    parts += [f"{SYMBOLS.get(k, k)} {number(v):g}" for k, v in own.items()]  # a strategy's settings: τ⁺ 0.1, β 1
    return ", ".join(parts)


def evaluations(records: list[dict]) -> pd.DataFrame:
    """stage "evaluate" (evaluate/__main__.py), one row per record.

    Expected: task "<variant>_<dataset>" (variant: the evaluation and the settings that change
    its result, e.g. linear_paper_e100, linear_cached_i300, knn_k200_t0.07; older records:
    linear_paper, knn), "evaluation" (linear_paper, linear_moco, linear_cached, knn), "setting"
    (one line: exactly what ran), dataset = the evaluation dataset, optional pretrain_dataset,
    metrics {"top1", "top5"}.
    """
    rows = []
    for r in records:
        if r.get("stage") != "evaluate":
            continue
        variant = r["task"].rsplit("_" + r["dataset"], 1)[0]  # e.g. linear_paper_e100, knn_k200_t0.07
        if math.isnan(number(r["metrics"].get("top1"))):
            skip(r, f"evaluation record whose metrics.top1 is not a number ({r['metrics'].get('top1')!r})")
            continue
        wrong = [k for k in ("top1", "top5") if out_of_range(number(r["metrics"].get(k)))]
        if wrong:
            skip(r, f"evaluation record whose metrics.{wrong[0]} = {r['metrics'][wrong[0]]!r} is outside 0..100 (%)")
            continue
        rows.append({**identity(r), "dataset": r["dataset"],
                     "pretrain_dataset": r.get("pretrain_dataset") or r["dataset"],
                     "eval": r.get("evaluation") or re.sub(r"_(e|i|k)\d.*$", "", variant), "eval_id": variant,
                     "setting": r.get("setting") or _legacy_setting(r), "changed": _changed(r),
                     "top1": number(r["metrics"].get("top1")), "top5": number(r["metrics"].get("top5"))})
    columns = IDENTITY + ["dataset", "eval", "eval_id", "setting", "changed", "top1", "top5", "pretrain_dataset"]
    return pd.DataFrame(rows, columns=columns)


def _changed(r: dict) -> str:
    """'epochs 100 -> 1' where the record's protocol departs from the recipe it is named after."""
    follows = r.get("protocol", {}).get("follows", "") if isinstance(r.get("protocol"), dict) else ""
    return follows.split(", with ", 1)[1] if ", with " in str(follows) else ""


def _legacy_setting(r: dict) -> str:
    """What an evaluate record written before records carried `setting` says it ran."""
    p, knn = r.get("protocol"), r.get("knn")
    if isinstance(knn, dict):
        return f"weighted kNN, k={knn.get('k')}, t={knn.get('t')}"
    if isinstance(p, dict):
        return ", ".join(f"{k} {p[k]}" for k in ("optimizer", "lr", "weight_decay", "epochs", "augment") if k in p)
    return "settings not recorded"


def pretraining(records: list[dict]) -> pd.DataFrame:
    """stage "pretrain" (pretrain/train.py): metrics final_loss, epochs, steps, images_per_s,
    knn_top1, knn_top5; "log" is the path of the run's log.jsonl."""
    rows = []
    for r in records:
        if r.get("stage") != "pretrain":
            continue
        m = r["metrics"]
        rows.append({**identity(r), "dataset": r["dataset"], "epochs": number(m.get("epochs")),
                     "final_loss": number(m.get("final_loss")), "knn_top1": number(m.get("knn_top1")),
                     "false_negatives": number(m.get("false_negatives")),
                     "images_per_s": number(m.get("images_per_s")), "log": r.get("log"),
                     "log_absolute": r.get("log_absolute"),
                     "config": r.get("config") if isinstance(r.get("config"), dict) else {},
                     "_path": r.get("_path")})
    columns = IDENTITY + ["dataset", "epochs", "final_loss", "knn_top1", "false_negatives", "images_per_s", "log",
                          "log_absolute", "config", "_path"]
    return pd.DataFrame(rows, columns=columns)


def _first(mapping: dict, *keys):
    return next((mapping[k] for k in keys if k in mapping), None)


def metadataset(records: list[dict]) -> pd.DataFrame:
    """stage "metadataset", one record per (protocol, head, domain). Expected shape:

        {"stage": "metadataset", "task": "linear_<domain>" | "episodic_<head>_<domain>",
         "dataset": "<domain>" (or "metadataset"), "metrics": {"top1": 71.2, "ci95": 0.8,
         "episodes": 600}, optional "protocol": "linear" | "episodic" | {"name": ...},
         optional "head": "prototype" | "logreg", optional "domain": "<domain>"}

    Accuracy is in percent. Accepted aliases: accuracy/acc/mean for top1, ci/ci_95/conf95
    for ci95. Explicit "protocol"/"head"/"domain" fields win over what the task name says;
    domains with underscores (cu_birds) are matched against the known list first.
    """
    rows = []
    for r in records:
        if r.get("stage") != "metadataset":
            continue
        task, m = r["task"], r["metrics"]
        proto = r.get("protocol")
        proto = proto.get("name") if isinstance(proto, dict) else proto
        proto = proto if isinstance(proto, str) and proto else task.split("_", 1)[0]
        rest = task.split("_", 1)[1] if task.startswith(proto + "_") else task
        domain = r.get("domain") if isinstance(r.get("domain"), str) else None
        if domain is None and r["dataset"] not in ("metadataset", "meta_dataset", "") and rest.endswith(r["dataset"]):
            domain = r["dataset"]
        domain = domain or next((d for d in DOMAINS if rest == d or rest.endswith("_" + d)), None)
        head = r.get("head") if isinstance(r.get("head"), str) else None
        if domain is None:  # unknown domain: "<head>_<domain>" for episodic, "<domain>" otherwise
            head_part, _, domain = rest.partition("_") if proto == "episodic" and "_" in rest else ("", "", rest)
            head = head or head_part or None
        elif head is None and rest != domain:
            head = rest[: -len(domain) - 1] or None
        top1 = number(_first(m, "top1", "accuracy", "acc", "mean"))
        if math.isnan(top1):
            skip(r, "Meta-Dataset record without a numeric metrics.top1")
            continue
        if out_of_range(top1):
            skip(r, f"Meta-Dataset record whose top-1 = {top1:g} is outside 0..100 (%)")
            continue
        detail = r.get("protocol") if isinstance(r.get("protocol"), dict) else {}
        rows.append({**identity(r), "protocol": proto, "head": head or "", "domain": domain, "top1": top1,
                     "ci95": number(_first(m, "ci95", "ci", "ci_95", "conf95")),
                     "episodes": number(_first(m, "episodes") or r.get("episodes")),
                     "setting": str(detail.get("setting") or ""),
                     "not_official": proto == "episodic" and detail.get("official") is False
                     and detail.get("mode") != "fixed",
                     # written before the description stream followed the official one (docs/design.md §5.3)
                     "old_stream": proto == "episodic" and detail.get("mode") != "fixed"
                     and "official_sampling" not in detail,
                     "contaminated": str(r.get("contaminated") or "")})
    return pd.DataFrame(rows, columns=IDENTITY + ["protocol", "head", "domain", "top1", "ci95", "episodes", "setting",
                                                  "not_official", "old_stream", "contaminated"])


def _flatten(metrics: dict, prefix: str = "") -> dict:
    """{"bbox": {"AP": 1}} and {"bbox/AP": 1} both -> {"bbox/AP": 1}."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def detection(records: list[dict]) -> pd.DataFrame:
    """stage "detection", one record per detectron2 config. Expected shape:

        {"stage": "detection", "task": "coco_mask_rcnn_r50_fpn_1x", "dataset": "coco",
         "metrics": {"bbox/AP": 38.9, "bbox/AP50": 59.6, "bbox/AP75": 42.7, "segm/AP": ...,
                     "keypoints/AP": ...}}

    COCO AP in percent, as detectron2 prints it. Nested {"bbox": {"AP": ..}} (detectron2's own
    result dict) and "keypoint/..." are accepted; APs/APm/APl are ignored (not in the tables).
    """
    rows = []
    for r in records:
        if r.get("stage") != "detection":
            continue
        aps = {}
        for key, value in _flatten(r["metrics"]).items():
            iou, _, ap = key.partition("/")
            iou = "keypoints" if iou == "keypoint" else iou
            if iou in IOU_TYPES and ap in AP_KEYS and not math.isnan(number(value)):
                aps[f"{iou} {ap}"] = number(value)
        wrong = [m for m, v in aps.items() if out_of_range(v)]
        if wrong:
            skip(r, f"detection record whose {wrong[0]} = {aps[wrong[0]]:g} is outside 0..100 (%)")
        elif not aps:
            skip(r, "detection record without numeric bbox/segm/keypoints AP, AP50 or AP75 metrics")
        rows += [] if wrong else [{**identity(r), "task": r["task"], "dataset": r["dataset"],
                                   "setting": str(r.get("setting") or ""), "metric": m, "value": v}
                                  for m, v in aps.items()]
    return pd.DataFrame(rows, columns=IDENTITY + ["task", "dataset", "setting", "metric", "value"])


_CNCE = re.compile(r"^cnce@(?P<outer>[0-9.eE+-]+)$")


def toy_mi(records: list[dict]) -> pd.DataFrame:
    """stage "toy_mi" (pretrain/toy_mi.py), one record per experiment. Expected shape:

        {"stage": "toy_mi", "task": "toy_mi", "dataset": "gaussian",
         "estimates": [{"estimator": "nce", "outer": 1.0, "inner": 0.0, "mean": 0.91,
                        "std": 0.05, "bias": -0.07, "true_mi": 0.98, "repeats": 200},
                       {"estimator": "cnce@0.1", "outer": 0.1, ...}, ...],
         "metrics": {"true_mi": 0.98, "nce/mean": .., "nce/std": .., "nce/bias": ..,
                     "cnce@0.1/mean": .., ...}}

    One row per estimator: ring width (outer fraction; 1.0 = NCE, uniform negatives), mean,
    std (over repeats), bias (mean - true MI) and, where recorded, std_negatives (the part of
    the spread that comes from sampling negatives) of the estimate in nats. "estimates" wins; without it the
    flat metrics are parsed ("<estimator>/<stat>", width from "cnce@<outer>").
    """
    rows = []
    for r in records:
        if r.get("stage") != "toy_mi":
            continue
        m = r["metrics"]
        estimates = r.get("estimates")
        if not (isinstance(estimates, list) and all(isinstance(e, dict) for e in estimates)):
            by_name: dict[str, dict] = {}
            for key, value in m.items():
                name, _, stat = key.rpartition("/")
                if name and stat in ("mean", "std", "bias", "std_negatives", "harder"):
                    by_name.setdefault(name, {"estimator": name})[stat] = value
            estimates = list(by_name.values())
        n_before = len(rows)
        for e in estimates:
            name = str(e.get("estimator", "?"))
            match = _CNCE.match(name)
            outer = number(e.get("outer", 1.0 if name == "nce" else match and match["outer"]))
            true = number(e.get("true_mi", m.get("true_mi")))
            mean, bias = number(e.get("mean")), number(e.get("bias"))
            bias = mean - true if math.isnan(bias) else bias
            if math.isnan(outer) or math.isnan(mean):
                continue
            rows.append({**identity(r), "true_mi": true, "estimator": name, "outer": outer,
                         "inner": number(e.get("inner", 0.0 if name == "nce" else math.nan)),
                         "mean": mean, "std": number(e.get("std")), "bias": bias,
                         "std_negatives": number(e.get("std_negatives")), "harder": number(e.get("harder"))})
        if len(rows) == n_before:
            skip(r, "toy MI record without estimates (estimator, outer, mean)")
    return pd.DataFrame(rows, columns=IDENTITY + ["true_mi", "estimator", "outer", "inner", "mean", "std", "bias",
                                                  "std_negatives", "harder"])
