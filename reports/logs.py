"""Training logs (runs/<name>/log.jsonl, written by pretrain/train.py) -> one tidy frame.

Log format: one JSON object per line. Every `train.log_every` steps a step line
{"step", "epoch" (fractional), "loss", "lr", "outer", "inner", ...}; at the end of each
epoch an epoch line {"step", "epoch", "loss", "lr"} plus "knn_top1"/"knn_top5" on epochs
where the kNN monitor ran. A missing or unreadable log is a warning, never an error.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from core.records import ReportWarning

COLUMNS = ["run", "step", "epoch", "loss", "knn_top1", "outer", "step_line"]  # step_line: not an epoch line


def locate(log: str, results: Path, absolute: str | None = None) -> Path | None:
    """The log where pretraining wrote it (`absolute`, in records since it was recorded), else
    the recorded path, relative to wherever pretraining ran (usually the repository root): from
    here, then from each folder above the results directory (the tree may have moved)."""
    if isinstance(absolute, str) and Path(absolute).is_file():
        return Path(absolute)
    path = Path(log)
    if path.is_absolute():
        return path if path.is_file() else None
    here = Path(results).resolve()
    for base in [Path.cwd(), here, *here.parents]:
        if (base / path).is_file():
            return base / path
    return None


def read(path: Path, run: str) -> pd.DataFrame:
    """One log file; a line that is not a JSON object (a crash mid-write) is counted and skipped."""
    rows, bad = [], 0
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        warnings.warn(f"training log of run {run} unreadable: {path}: {exc}", ReportWarning)
        return pd.DataFrame(columns=COLUMNS)
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or "step" not in entry:
            bad += 1
            continue
        rows.append({**{k: entry.get(k) for k in COLUMNS[1:-1]}, "step_line": "outer" in entry})
    if bad:
        warnings.warn(f"training log of run {run}: skipped {bad} malformed line(s) in {path}", ReportWarning)
    df = pd.DataFrame(rows, columns=COLUMNS[1:]).apply(pd.to_numeric, errors="coerce")
    return df.assign(run=run)[COLUMNS]


def training_logs(pre: pd.DataFrame, results: Path) -> pd.DataFrame:
    """Every pretraining run's log with its identity (method, negatives, dataset, seed)."""
    frames = []
    for _, r in pre.iterrows():
        if not isinstance(r["log"], str) or not r["log"]:
            continue  # the record names no log: nothing to look for
        path = locate(r["log"], results, r.get("log_absolute"))
        if path is None:
            warnings.warn(f"training log of run {r['run']} not found: {r['log']}", ReportWarning)
            continue
        df = read(path, r["run"])
        if not df.empty:
            frames.append(df.assign(method=r["method"], negatives=r["negatives"], baseline=r["baseline"],
                                    negatives_setting=r["negatives_setting"], variant=r.get("variant", ""),
                                    dataset=r["dataset"], seed=r["seed"]))
    if not frames:
        return pd.DataFrame(columns=COLUMNS + ["method", "negatives", "baseline", "negatives_setting", "variant",
                                               "dataset", "seed"])
    return pd.concat(frames, ignore_index=True)
