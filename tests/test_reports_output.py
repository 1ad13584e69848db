"""reports: the files it writes (markdown, LaTeX, CSV, PNG), training logs and the whole report,
on hand-written records and logs (no training, seconds)."""
import json

import pandas as pd
import pytest

from core import records
from reports import figures, frames, logs, render, tables
from reports.__main__ import main as reports_main

PNG = b"\x89PNG\r\n\x1a\n"


def write_log(path, ring: bool, garbage: bool = False):
    """A log.jsonl in pretrain/train.py's format: step lines every 2 steps, epoch lines with kNN."""
    lines = []
    for step in range(1, 9):
        epoch = step / 4
        lines.append({"step": step, "epoch": epoch, "loss": 5.0 - 0.3 * step, "lr": 0.03,
                      "outer": max(0.1, 1 - 0.45 * epoch) if ring else 1.0, "inner": 0.1 if ring else 0.0})
        if step % 4 == 0:
            lines.append({"step": step, "epoch": step // 4, "loss": 99.0, "lr": 0.03, "knn_top1": 30.0 + step})
    text = "\n".join(json.dumps(entry) for entry in lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + ('{"step": 9, "epo\n' if garbage else ""))
    return path


def pretrain_record(tmp_path, run, method, neg, log, seed=0):
    cfg = {"train": {"seed": seed}, "optim": {"epochs": 2},
           "negatives": {"sampler": neg, "outer": 0.1, "anneal": {"schedule": "linear", "epochs": 2.0, "start": 1.0}}}
    return records.make(run, "pretrain", "pretrain", "cifar10", {"final_loss": 2.6, "epochs": 2, "knn_top1": 38.0},
                        cfg, seed=seed, wall_s=12.0, method=method, negatives=neg, log=str(log))


@pytest.fixture
def results(tmp_path):
    """A results directory with every stage, two seeds for some runs, and three broken inputs."""
    res = tmp_path / "results"
    for method, base in (("ir", 80.0), ("moco", 85.0)):
        for neg, bump in (("uniform", 0.0), ("ring", 2.0)):
            for seed in (0, 1):
                run = f"{method}_{neg}_s{seed}"
                log = write_log(tmp_path / "runs" / run / "log.jsonl", neg == "ring", garbage=run == "ir_ring_s1")
                if run == "moco_uniform_s1":
                    log = tmp_path / "runs" / "gone" / "log.jsonl"  # the log was deleted
                records.write(pretrain_record(tmp_path, run, method, neg, log, seed), res)
                for dataset in ("cifar10", "photo_patches"):
                    r = records.make(run, "evaluate", f"linear_paper_{dataset}", dataset,
                                     {"top1": base + bump + seed, "top5": 99.0}, {"train": {"seed": seed}},
                                     seed=seed, wall_s=5.0, method=method, negatives=neg)
                    records.write(r, res)
                records.write(records.make(run, "metadataset", "episodic_prototype_dtd", "dtd",
                                           {"top1": 50.0 + bump, "ci95": 0.8}, {}, seed=seed,
                                           method=method, negatives=neg), res)
                records.write(records.make(run, "detection", "coco_r50_fpn", "coco",
                                           {"bbox/AP": 38.0 + bump, "segm/AP": 34.0}, {}, seed=seed,
                                           method=method, negatives=neg), res)
    est = [{"estimator": "nce", "outer": 1.0, "mean": 0.9, "std": 0.05, "bias": -0.1, "true_mi": 1.0},
           {"estimator": "cnce@0.1", "outer": 0.1, "mean": 0.7, "std": 0.01, "bias": -0.3, "true_mi": 1.0}]
    records.write(records.make("toy", "toy_mi", "toy_mi", "gaussian", {"true_mi": 1.0}, {}, estimates=est), res)
    (res / "broken.json").write_text("{not json")
    return res


def test_full_report_links_tables_and_figures(results, tmp_path, capsys):
    out = tmp_path / "report"
    assert reports_main(["--results", str(results), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "broken.json" in err and "training log of run moco_uniform_s1 not found" in err
    assert "skipped 1 malformed line(s)" in err and "ir_ring_s1" in err
    md = (out / "report.md").read_text()
    assert "nan" not in md.lower()
    for name in ("main_top1", "linear_paper_top1", "metadataset_episodic_prototype", "detection_coco_r50_fpn",
                 "toy_mi", "cost"):
        for ext in ("md", "tex", "csv"):
            assert f"(tables/{name}.{ext})" in md and (out / "tables" / f"{name}.{ext}").stat().st_size > 0
    for name in ("ring_minus_baseline", "training_curves", "toy_mi", "anneal"):
        png = out / "figures" / f"{name}.png"
        assert f"(figures/{name}.png)" in md
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000  # a real drawing, not an empty canvas
    linear = pd.read_csv(out / "tables" / "linear_paper_top1.csv")
    row = linear[(linear["method"] == "ir") & (linear["negatives"] == "uniform") & (linear["dataset"] == "CIFAR-10")]
    assert row["mean"].item() == pytest.approx(80.5) and row["n"].item() == 2
    # the 95% t-interval of two runs 80 and 81: t(0.975, 1) = 12.706, sd / sqrt(2) = 0.5
    assert row["high"].item() - 80.5 == pytest.approx(12.7062 * 0.5, abs=1e-3)
    delta = linear[linear["delta"] & (linear["method"] == "moco") & (linear["dataset"] == "photo_patches")]
    assert delta["mean"].item() == pytest.approx(2.0) and delta["n"].item() == 2  # two pairs, both +2
    cost = pd.read_csv(out / "tables" / "cost.csv")
    assert set(cost["stage"]) == {"pretrain", "evaluate", "metadataset", "detection", "toy_mi"}
    tex = (out / "tables" / "linear_paper_top1.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and "photo\\_patches" in tex
    assert "$\\pm$" in tex and "±" not in tex and "Δ" not in tex
    section = md.split("## Linear and kNN evaluation (paper layout)")[1]
    assert "| IR + Ring " in section and "80.50 ± 6.35 (n=2)" in section
    assert "+2.00 [+2.00, +2.00] (n=2)" in section  # identical differences: an interval of one point


def test_render_writes_parseable_files(tmp_path):
    display = pd.DataFrame({"model": ["IR", "Δ Ring (IR)"], "photo_patches": ["63.10 ± 0.50 (n=2)", "-4.90"],
                            "ImageNet": ["—", "—"]})
    numbers = pd.DataFrame({"model": ["IR", "Δ Ring (IR)"], "mean": [63.1, -4.9], "n": [2, None]})
    t = tables.Table("demo", "Demo: top1 (%)", "100% honest; a_b & c.", display, numbers)
    paths = render.write(t, tmp_path)
    tex = paths["tex"].read_text()
    assert "photo\\_patches" in tex and "63.10 $\\pm$ 0.50 (n=2)" in tex and "$-$4.90" in tex
    assert "100\\% honest; a\\_b \\& c." in tex and "---" in tex and "\\label{tab:demo}" in tex
    assert "{lrr}" in tex  # labels left, numbers right
    back = pd.read_csv(paths["csv"])
    assert list(back["mean"]) == [63.1, -4.9] and back["n"].isna().tolist() == [False, True]
    md = paths["md"].read_text()
    assert md.startswith("# Demo: top1 (%)") and "63.10 ± 0.50 (n=2)" in md and "—" in md


def test_training_log_reader(tmp_path):
    path = write_log(tmp_path / "log.jsonl", ring=True, garbage=True)
    with pytest.warns(records.ReportWarning, match="skipped 1 malformed line"):
        df = logs.read(path, "r")
    assert len(df) == 10 and df["step_line"].sum() == 8 and df["knn_top1"].notna().sum() == 2
    pre = frames.pretraining([pretrain_record(tmp_path, "r", "ir", "ring", "log.jsonl"),
                              pretrain_record(tmp_path, "gone", "ir", "ring", "nowhere/log.jsonl")])
    with pytest.warns(records.ReportWarning) as caught:
        found = logs.training_logs(pre, tmp_path / "results")  # relative to a folder above results/
    assert set(found["run"]) == {"r"} and set(found["negatives"]) == {"ring"}
    assert any("run gone not found: nowhere/log.jsonl" in str(w.message) for w in caught)


def test_figures_need_data_and_never_draw_empty(tmp_path):
    empty = pd.DataFrame(columns=["method", "negatives", "delta", "metric", "eval", "dataset", "mean"])
    assert figures.ring_minus_baseline(empty, tmp_path / "a.png") is None
    assert figures.training_curves(pd.DataFrame(columns=logs.COLUMNS), tmp_path / "b.png") is None
    assert figures.toy_mi(frames.toy_mi([]), tmp_path / "c.png") is None
    assert not list(tmp_path.iterdir())


def test_anneal_figure_draws_every_schedule(tmp_path, monkeypatch):
    from core import anneal
    seen, real = set(), anneal.anneal

    def spy(schedule, *args, **kwargs):
        seen.add(schedule)
        return real(schedule, *args, **kwargs)

    monkeypatch.setattr(figures, "outer_at", spy)
    pre = frames.pretraining([pretrain_record(tmp_path, "r", "ir", "ring", "log.jsonl")])
    log = logs.read(write_log(tmp_path / "log.jsonl", ring=True), "r").assign(negatives="ring")
    path = figures.anneal(pre, log, tmp_path / "anneal.png")
    assert seen == set(anneal.SCHEDULES)
    assert path.read_bytes()[:8] == PNG


def test_a_failing_figure_is_a_warning_not_a_lost_report(results, tmp_path, monkeypatch, capsys):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(figures, "toy_mi", broken)
    assert reports_main(["--results", str(results), "--out", str(tmp_path / "out")]) == 0
    assert "figure toy_mi not drawn: RuntimeError: boom" in capsys.readouterr().err
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Figure not drawn (Toy MI bias and variance)" in md and "figures/toy_mi.png" not in md


def test_the_sweep_figure_plots_each_paired_difference_at_its_width(tmp_path, monkeypatch):
    """Ring at three widths, annealed or not, 2 seeds each: each point is the paired mean at its
    width (log axis, a small dodge per line) and one width alone draws nothing."""
    def rec(run, neg, top1, seed, outer=None, schedule="none"):
        negatives = {"sampler": neg, "inner": 0.1, "anneal": {"schedule": schedule, "epochs": 2}}
        if outer is not None:
            negatives["outer"] = outer
        return records.make(run, "evaluate", "linear_cached_i300_cifar10", "cifar10", {"top1": top1},
                            {"train": {"seed": seed}, "negatives": negatives}, seed=seed, method="ir", negatives=neg)
    base = {0: 60.0, 1: 62.0}
    recs = [rec(f"u{s}", "uniform", base[s], s) for s in base]
    expected = {}
    for schedule, shift in (("none", 0.0), ("linear", 1.0)):
        for outer, gain in ((0.1, 3.0), (0.5, 1.0), (1.0, -2.0)):
            for s in base:
                recs.append(rec(f"r{outer}{schedule}{s}", "ring", base[s] + gain + shift + s, s, outer, schedule))
            expected[(f"anneal: {schedule}", outer)] = gain + shift + 0.5  # mean over seeds of gain + shift + s
    evals = tables.evaluations(recs)
    numbers = pd.concat([t.numbers for t in tables.linear(evals)])
    drawn = []
    monkeypatch.setattr(figures.plt.Axes, "plot", lambda self, x, y, **kw: drawn.append((kw["label"], list(x), list(y))))
    assert figures.delta_vs_width(numbers, evals, tmp_path / "w.png") is not None
    assert (tmp_path / "w.png").read_bytes().startswith(PNG)
    got = {}
    for label, xs, ys in drawn:
        for x, y in zip(xs, ys):
            outer = min((0.1, 0.5, 1.0), key=lambda w: abs(w - x))
            assert abs(x / outer - 1) < 0.03  # only the dodge moves a point off its width
            got[(label, outer)] = y
    assert got == pytest.approx(expected)
    one_width = evals[(evals["ring_outer"].isna()) | (evals["ring_outer"] == 0.1)]
    numbers = pd.concat([t.numbers for t in tables.linear(one_width)])
    assert figures.delta_vs_width(numbers, one_width, tmp_path / "one.png") is None


def test_the_report_removes_only_what_an_earlier_report_wrote(results, tmp_path):
    """Files of the user's own in the report folder survive every rebuild; a table or figure that
    an earlier report wrote and this one does not is removed (it is listed in the manifest)."""
    out = tmp_path / "paper"
    (out / "figures").mkdir(parents=True)
    (out / "tables").mkdir()
    mine = [out / "figures" / "fig1.pdf", out / "tables" / "my_table.csv", out / "notes.md"]
    for path in mine:
        path.write_text("x")
    assert reports_main(["--results", str(results), "--out", str(out)]) == 0
    assert (out / "figures" / "toy_mi.png").exists() and (out / "tables" / "toy_mi.md").exists()
    written = json.loads((out / ".ringbench-report.json").read_text())
    assert "figures/toy_mi.png" in written and "report.md" in written and "figures/fig1.pdf" not in written
    for path in (results / "toy").glob("**/*.json"):
        path.unlink()  # no toy MI records any more: its table and figure are not drawn again
    assert reports_main(["--results", str(results), "--out", str(out)]) == 0
    assert not (out / "figures" / "toy_mi.png").exists() and not (out / "tables" / "toy_mi.md").exists()
    assert all(path.read_text() == "x" for path in mine)


def test_the_report_finds_the_logs_from_any_folder(tmp_path, monkeypatch):
    """Pretraining ran in one folder with a relative --out, the results went elsewhere, and the
    report runs from a third: the record's absolute log path finds the log."""
    ran_in, elsewhere = tmp_path / "project", tmp_path / "store" / "results"
    log = write_log(ran_in / "runs" / "r" / "log.jsonl", ring=True)
    rec = pretrain_record(tmp_path, "r", "ir", "ring", "runs/r/log.jsonl")
    rec["log_absolute"] = str(log)
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "store")
    found = logs.training_logs(frames.pretraining([rec]), elsewhere)
    assert set(found["run"]) == {"r"} and len(found) == 10


def test_a_strategys_sweep_is_plotted_against_its_parameter(tmp_path, monkeypatch):
    """HCL at beta 0, 1, 2, 2 seeds each: each point is the paired mean at its beta."""
    def rec(run, objective, top1, seed, beta=None):
        neg = {"sampler": "uniform", "objective": objective}
        if beta is not None:
            neg["hcl"] = {"tau_plus": 0.1, "beta": beta}
        return records.make(run, "evaluate", "linear_cached_i300_cifar10", "cifar10", {"top1": top1},
                            {"train": {"seed": seed}, "method": {"name": "ir"}, "negatives": neg}, seed=seed)
    recs = [rec(f"u{s}", "infonce", 60.0 + s, s) for s in (0, 1)]
    expected = {}
    for beta, gain in ((0.0, 1.0), (1.0, 2.5), (2.0, -1.0)):
        recs += [rec(f"h{beta}{s}", "hcl", 60.0 + s + gain + s, s, beta) for s in (0, 1)]
        expected[beta] = gain + 0.5
    evals = tables.evaluations(recs)
    numbers = pd.concat([t.numbers for t in tables.linear(evals)])
    drawn = []
    monkeypatch.setattr(figures.plt.Axes, "plot", lambda self, x, y, **kw: drawn.append((list(x), list(y))))
    assert figures.delta_vs_parameter(numbers, evals, tmp_path / "p.png") is not None
    assert len(drawn) == 1 and dict(zip(*drawn[0])) == pytest.approx(expected)
    assert figures.delta_vs_parameter(numbers, evals[~evals["run"].str.startswith("h2")], tmp_path / "q.png") is not None
    only_one = evals[evals["run"].str.startswith(("u", "h1.0"))]
    assert figures.delta_vs_parameter(pd.concat([t.numbers for t in tables.linear(only_one)]), only_one,
                                      tmp_path / "r.png") is None


def test_figures_give_a_method_one_hue_and_draw_no_panel_or_whisker_without_data(tmp_path, monkeypatch):
    """A method and its Ring variant share a colour (line style or hatch tell the sampler); a
    metric with one point per run gets no panel; one pair gets no whiskers."""
    colours = figures.method_colours()
    looks = figures.sampler_looks(["ring", "uniform", "dcl"])
    assert looks["uniform"][0] == "-" and len({v[0] for v in looks.values()}) == 3
    log = write_log(tmp_path / "runs" / "r" / "log.jsonl", ring=True)
    frame = logs.read(log, "r").assign(method="ir", negatives="ring", baseline="uniform", negatives_setting="",
                                      variant="", dataset="cifar10", seed=0)
    once = frame[~(frame["knn_top1"].notna() & (frame["epoch"] == 2))]  # kNN at one epoch only
    lines = []
    monkeypatch.setattr(figures.plt.Axes, "plot", lambda self, x, y, **kw: lines.append((id(self), kw["color"])))
    assert figures.training_curves(once, tmp_path / "c.png") is not None
    assert len({ax for ax, _ in lines}) == 1 and {c for _, c in lines} == {colours["ir"]}  # the loss panel only
    bars = pd.DataFrame({"method": ["ir"], "negatives": ["ring"], "baseline": ["uniform"], "negatives_setting": [""],
                         "variant": [""], "delta": [True], "metric": ["top1"], "eval": ["knn"], "dataset": ["CIFAR-10"],
                         "mean": [2.0], "low": [float("nan")], "high": [float("nan")]})
    whiskers = []
    monkeypatch.setattr(figures.plt.Axes, "errorbar", lambda self, *a, **kw: whiskers.append(a))
    assert figures.ring_minus_baseline(bars, tmp_path / "b.png") is not None and whiskers == []
