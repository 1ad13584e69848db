import json

import pytest

from reports import records, tables
from reports.__main__ import main as reports_main


def rec(run, method, neg, top1, dataset="cifar10", task=None, seed=0):
    r = records.make(run, "evaluate", task or f"linear_paper_{dataset}", dataset, {"top1": top1, "top5": 99.0},
                     {"train": {"seed": seed}}, seed=seed, method=method, negatives=neg)
    return r


def test_ring_minus_baseline_and_mean_over_seeds():
    recs = [rec("a", "ir", "uniform", 80.0), rec("b", "ir", "ring", 83.0, seed=0), rec("c", "ir", "ring", 84.0, seed=1),
            rec("d", "moco", "uniform", 85.0), rec("e", "moco", "ring", 86.5)]
    t = tables.ring_vs_baseline(tables.evaluations(recs)).set_index("method")
    assert t.loc["ir", "ring"] == pytest.approx(83.5) and t.loc["ir", "uniform"] == 80.0
    assert t.loc["ir", "ring − uniform"] == pytest.approx(3.5)
    assert t.loc["moco", "ring − uniform"] == pytest.approx(1.5)
    assert t.loc["ir", "runs (all samplers)"] == 3


def test_missing_stage_shows_dash_and_malformed_is_skipped(tmp_path, capsys):
    records.write(rec("a", "ir", "uniform", 80.0), tmp_path)
    records.write(rec("b", "moco", "ring", 70.0), tmp_path)
    (tmp_path / "broken" / "evaluate").mkdir(parents=True)
    (tmp_path / "broken" / "evaluate" / "x.json").write_text('{"schema": 1, "run": ')
    (tmp_path / "old.json").write_text(json.dumps({"schema": 99, "run": "x", "stage": "evaluate", "task": "t",
                                                   "dataset": "d", "metrics": {}}))
    assert reports_main(["--results", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "x.json" in err and "old.json" in err and "schema 99" in err
    md = (tmp_path / "out" / "report.md").read_text()
    ir_row = next(l for l in md.splitlines() if l.startswith("| ir "))
    assert "80.00" in ir_row and "—" in ir_row and "nan" not in md


def test_records_are_written_atomically(tmp_path):
    r = rec("a", "ir", "uniform", 80.0)
    path = records.write(r, tmp_path)
    assert path == tmp_path / "a" / "evaluate" / "linear_paper_cifar10.json"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    loaded = records.load_all(tmp_path)
    assert len(loaded) == 1 and loaded[0]["metrics"]["top1"] == 80.0
    assert {"software", "date", "peak_rss_mb", "config", "seed"} <= set(loaded[0])


def test_missing_results_dir(tmp_path, capsys):
    assert reports_main(["--results", str(tmp_path / "none")]) == 2
    assert "results directory not found" in capsys.readouterr().err
