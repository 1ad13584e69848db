"""python -m reports --results DIR --out DIR

Regenerates the report from existing results records; nothing is rerun."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from reports import records, tables


def build(results: Path, out: Path) -> Path:
    recs = records.load_all(results)
    evals = tables.evaluations(recs)
    parts = ["# ringbench report", "",
             f"{len(recs)} results records from `{results}`.", ""]
    for metric in ("top1", "top5"):
        parts += [f"## Ring vs. uniform negatives ({metric} accuracy, %)", "",
                  "Columns are mean accuracy over runs per negative sampler; `ring − uniform` is the "
                  "difference Ring makes. `eval` names the protocol (`linear_cached` is not the paper "
                  "protocol; `linear_paper` is).", "",
                  tables.markdown(tables.ring_vs_baseline(evals, metric)), ""]
    pre = [r for r in recs if r.get("stage") == "pretrain"]
    if pre:
        rows = [{"run": r["run"], "dataset": r["dataset"], "epochs": r["metrics"].get("epochs"),
                 "final loss": r["metrics"].get("final_loss"), "kNN top1": r["metrics"].get("knn_top1"),
                 "images/s": r["metrics"].get("images_per_s"), "wall s": r.get("wall_s"),
                 "peak RSS MiB": r.get("peak_rss_mb")} for r in pre]
        import pandas as pd
        parts += ["## Pretraining runs", "", tables.markdown(pd.DataFrame(rows)), ""]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports", description=__doc__.split("\n")[0])
    p.add_argument("--results", default="results", help="directory of results records (default: results)")
    p.add_argument("--out", default="report", help="where report.md goes (default: report)")
    args = p.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"error: {args.results}: results directory not found", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = build(Path(args.results), Path(args.out))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(f"[reports] {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
