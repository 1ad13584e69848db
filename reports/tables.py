"""Results records -> pandas tables. Pure functions of the records: nothing is rerun."""
from __future__ import annotations

import pandas as pd

BASELINE = "uniform"


def evaluations(records: list[dict]) -> pd.DataFrame:
    """One row per evaluation record: run, method, negatives, dataset, eval, top1, top5."""
    rows = []
    for r in records:
        if r.get("stage") != "evaluate":
            continue
        cfg = r.get("config") or {}
        rows.append({
            "run": r["run"],
            "method": r.get("method") or cfg.get("method", {}).get("name") or "?",
            "negatives": r.get("negatives") or cfg.get("negatives", {}).get("sampler") or "?",
            "dataset": r["dataset"],
            "eval": r["task"].rsplit("_" + r["dataset"], 1)[0],
            "top1": r["metrics"].get("top1"),
            "top5": r["metrics"].get("top5"),
            "seed": (cfg.get("train") or {}).get("seed", r.get("seed")),
        })
    return pd.DataFrame(rows, columns=["run", "method", "negatives", "dataset", "eval", "top1", "top5", "seed"])


def ring_vs_baseline(evals: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """method x dataset x eval rows; one column per sampler (mean over seeds), n runs, and
    the difference of each non-baseline sampler to uniform negatives."""
    if evals.empty:
        return pd.DataFrame()
    table = evals.pivot_table(index=["method", "dataset", "eval"], columns="negatives", values=metric, aggfunc="mean")
    counts = evals.pivot_table(index=["method", "dataset", "eval"], values=metric, aggfunc="count")
    for col in [c for c in table.columns if c != BASELINE]:
        if BASELINE in table.columns:
            table[f"{col} − {BASELINE}"] = table[col] - table[BASELINE]
    order = [c for c in ("uniform", "ring", "ball") if c in table.columns]
    table = table[order + [c for c in table.columns if c not in order]]
    table["runs (all samplers)"] = counts[metric]
    table.columns.name = None
    return table.reset_index()


def markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    if df.empty:
        return "_no results yet_"
    df = df.astype(object).where(df.notna(), None)  # NaN (a missing stage) prints as '—'
    return df.to_markdown(index=False, floatfmt=floatfmt, missingval="—")
