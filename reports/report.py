"""Assemble report.md from a results directory: tables under tables/, figures under figures/.

Pure function of the records and training logs on disk; nothing is rerun. Problems with the
inputs (a malformed record, a missing log) are warnings, listed at the end of the report.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from core import records
from core.files import atomic_write
from core.records import ReportWarning
from reports import figures, frames, logs, render, tables

MAIN_NOTE = ("One row per method, dataset, evaluation and sampler that is not the method's own: `baseline "
             "negatives` is the original method's sampler (uniform; LA's own 4,096-nearest-row background). "
             "`baseline` and `with the sampler`: mean over seeds ± half-width of the 95% t-interval (n runs). "
             "`Δ (paired)`: the difference paired by seed, mean [95% paired t-interval] (n pairs); ○ marks an "
             "interval that includes 0; one pair has no interval and says so. `false negatives`: the share of "
             "each anchor's negatives that carry its own label in the last pretraining epoch (mean over "
             "seeds), the mechanism behind a negative Δ. `eval` names the evaluation and the settings that "
             "change its result (`linear_paper_e100`: the official Ring code's linear probe, 100 epochs; "
             "`linear_cached_i300`: a fast proxy, not a published protocol: L-BFGS on cached features of the "
             "unaugmented training images (`_vV`: of V augmented views of each), whose agreement with the "
             "paper protocol docs/design.md §5.1 gives; "
             "`knn_k200_t0.07`).")
MAIN_COLUMNS = ["method", "dataset", "eval", "baseline negatives", "model", "baseline", "with the sampler",
                "Δ (paired)", "false negatives (baseline → sampler)"]


class Report:
    """Markdown parts plus the table and figure files they link to."""

    def __init__(self, out: Path):
        self.out, self.parts, self.written = out, [], set()

    def add(self, *blocks: str) -> None:
        for block in blocks:  # a blank line after each: markdown needs it before a table
            self.parts += [block, ""]

    def table(self, t: tables.Table, level: str = "###", body: str | None = None) -> None:
        """Write the table's files; show `body` (default: its display frame) and link the files."""
        paths = render.write(t, self.out / "tables")
        self.written.update(paths.values())
        links = " · ".join(f"[{label}]({p.relative_to(self.out).as_posix()})"
                           for label, p in zip(("markdown", "LaTeX", "CSV"), paths.values()))
        self.add(f"{level} {t.title}", t.note, body or render.markdown(t.display), f"Files: {links}")

    def figure(self, name: str, title: str, missing: str, draw, *args) -> None:
        """Draw with `draw(*args, path)`; a figure that fails is a warning, never a lost report."""
        path = self.out / "figures" / f"{name}.png"
        try:
            made = draw(*args, path)
        except Exception as exc:  # noqa: BLE001 - one bad figure must not cost the whole report
            warnings.warn(f"figure {name} not drawn: {type(exc).__name__}: {exc}", ReportWarning)
            made = None
        if made is None:  # (an earlier report's figure of this name goes with the manifest: build)
            self.add(f"_Figure not drawn ({title}): {missing}._")
        else:
            self.written.add(made)
            self.add(f"![{title}]({made.relative_to(self.out).as_posix()})")


def main_table(evals: pd.DataFrame, metric: str, pre: pd.DataFrame) -> tables.Table:
    """The long Ring vs. baseline table (method x dataset x eval x sampler), also as files."""
    df = tables.ring_vs_baseline(evals, metric, pre)
    display = df[MAIN_COLUMNS] if not df.empty else df
    return tables.Table(f"main_{metric}", f"Ring vs. each method's own negatives ({metric} accuracy, %)", MAIN_NOTE,
                        display, df)


def compose(results: Path, out: Path) -> Report:
    recs = frames.latest(records.load_all(results))  # a copied or rerun record counts once
    tables.learn_names(recs)  # the labels the records carry
    evals, pre = frames.evaluations(recs), tables.with_variants(frames.pretraining(recs), ["dataset"])
    md, det, toy = frames.metadataset(recs), frames.detection(recs), frames.toy_mi(recs)
    runs_logs = logs.training_logs(pre, results)
    rep = Report(out)
    rep.add("# ringbench report", f"{len(recs)} results records from `{results}`. Regenerate with "
            f"`python -m reports --results {results} --out {out}`; nothing is rerun.")

    for metric in ("top1", "top5"):  # the main table: every method x dataset x eval in one place
        t = main_table(evals, metric, pre)
        if t.numbers.empty:
            rep.add(f"## {t.title}", t.note, render.markdown(t.numbers))
        else:
            rep.table(t, level="##")

    rep.add("## Linear and kNN evaluation (paper layout)")
    linear = tables.linear(evals, "top1")
    for t in linear:
        rep.table(t)
    if not linear:
        rep.add("_No evaluation records yet (stage `evaluate`)._")
    numbers = pd.concat([t.numbers for t in linear], ignore_index=True) if linear else pd.DataFrame()
    rep.figure("ring_minus_baseline", "Ring − baseline", "needs evaluation records with both uniform and ring runs",
               figures.ring_minus_baseline, numbers)
    rep.figure("delta_vs_width", "Ring − baseline against ring width",
               "needs ring runs of one method at two or more outer widths (the sweep: --profile gpu-sweep or cpu-sweep)",
               figures.delta_vs_width, numbers, evals)
    rep.figure("delta_vs_parameter", "Strategy − baseline against its parameter",
               "needs DCL or HCL runs of one method at two or more values of τ⁺ or β (--grid negatives.hcl.beta=0,1,2)",
               figures.delta_vs_parameter, numbers, evals)

    sections = (("Meta-Dataset", tables.metadataset(md), "metadataset"),
                ("Detection", tables.detection(det), "detection"),
                ("Toy mutual information", tables.toy_mi(toy), "toy_mi"))
    for title, made, stage in sections:
        rep.add(f"## {title}")
        for t in made:
            rep.table(t)
        if not made:
            rep.add(f"_No {title} records yet (stage `{stage}`)._")
        if stage == "toy_mi":
            rep.figure("toy_mi", "Toy MI bias and variance", "needs toy_mi records", figures.toy_mi, toy)

    rep.add("## Pretraining runs", render.markdown(tables.pretraining_runs(pre)))
    rep.figure("training_curves", "Training curves", "needs pretraining records whose log.jsonl can be read",
               figures.training_curves, runs_logs)
    rep.figure("anneal", "Ring annealing schedules", "pretrain.negatives could not be imported",
               figures.anneal, pre, runs_logs)

    cost = tables.cost(recs)
    rep.add("## Cost")
    if cost is not None:
        rep.table(cost, level="###")
    else:
        rep.add("_No records._")
    return rep


MANIFEST = ".ringbench-report.json"  # the files the last report wrote, relative to its folder


def manifest(out: Path) -> set[str]:
    """What the last report in `out` wrote (none recorded: nothing of it may be removed)."""
    try:
        names = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return set()
    # only plain names below `out`: a hand-edited manifest must not reach outside it
    return {n for n in names if isinstance(n, str) and not Path(n).is_absolute() and ".." not in Path(n).parts}


def build(results: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = compose(results, out)
    ours = [str(w.message) for w in caught if issubclass(w.category, ReportWarning)]
    if ours:
        rep.add("## Warnings", "\n".join(f"- {m}" for m in ours))
    path = atomic_write(out / "report.md", lambda f: f.write("\n".join(rep.parts).rstrip() + "\n"), binary=False)
    rep.written.add(path)
    # an earlier report's files that this one did not write go; nothing else in `out` is touched
    earlier = manifest(out)
    written = {p.relative_to(out).as_posix() for p in rep.written}
    for name in sorted(earlier - written):
        (out / name).unlink(missing_ok=True)
    atomic_write(out / MANIFEST, lambda f: json.dump(sorted(written), f, indent=1), binary=False)
    for w in caught:  # hand them on: the command line prints them
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return path
