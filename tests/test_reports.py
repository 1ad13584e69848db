"""reports: records, readers and tables on hand-written records (no training, seconds)."""
import json
import math

import pytest

from core import records
from reports import frames, tables
from reports.__main__ import main as reports_main


def rec(run, method, neg, top1, dataset="cifar10", task=None, seed=0, **extra):
    r = records.make(run, "evaluate", task or f"linear_paper_{dataset}", dataset, {"top1": top1, "top5": 99.0},
                     {"train": {"seed": seed}}, seed=seed, method=method, negatives=neg, **extra)
    return r


def stage_rec(run, stage, task, dataset, metrics, method="ir", neg="uniform", seed=0, **extra):
    return records.make(run, stage, task, dataset, metrics, {"train": {"seed": seed}}, seed=seed,
                        method=method, negatives=neg, **extra)


def half_width(values):
    """The 95% t-interval's half-width, written out: t(0.975, n - 1) * sd / sqrt(n)."""
    import numpy as np
    from scipy.stats import t
    v = np.asarray(values, dtype=float)
    return t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))


def test_ring_minus_baseline_is_paired_by_seed_with_its_interval():
    base, ring = [80.0, 81.0, 83.0], [83.0, 85.0, 84.0]  # seeds 0, 1, 2
    recs = [rec(f"u{s}", "ir", "uniform", base[s], seed=s) for s in range(3)]
    recs += [rec(f"r{s}", "ir", "ring", ring[s], seed=s) for s in range(3)]
    recs += [rec("r9", "ir", "ring", 99.0, seed=9)]  # no baseline run with seed 9: not in any pair
    recs += [rec("mu", "moco", "uniform", 85.0), rec("mr", "moco", "ring", 86.5), rec("mr5", "moco", "ring", 70.0, seed=5)]
    t = tables.ring_vs_baseline(tables.evaluations(recs)).set_index("method")
    d = [r - b for r, b in zip(ring, base)]  # 3, 4, 1
    assert t.loc["ir", "pairs"] == 3 and t.loc["ir", "seeds"] == [0, 1, 2]
    assert t.loc["ir", "delta_mean"] == pytest.approx(sum(d) / 3)
    assert t.loc["ir", "delta_high"] - t.loc["ir", "delta_mean"] == pytest.approx(half_width(d))
    assert t.loc["ir", "includes_zero"]  # [-1.13, +6.46]
    assert t.loc["ir", "Δ (paired)"] == f"+2.67 [{sum(d) / 3 - half_width(d):+.2f}, {sum(d) / 3 + half_width(d):+.2f}] (n=3) ○"
    assert t.loc["ir", "with the sampler"] == f"{(83 + 85 + 84 + 99) / 4:.2f} ± {half_width(ring + [99.0]):.2f} (n=4)"
    assert t.loc["ir", "baseline negatives"] == "uniform" and t.loc["ir", "model"] == "IR + Ring"
    assert t.loc["moco", "Δ (paired)"] == "+1.50 (1 run: no interval)"  # one pair, seed 0
    assert t.loc["moco", "pairs"] == 1


def test_a_difference_whose_interval_excludes_zero_is_not_marked():
    base, ring = [70.0, 71.0, 72.0, 70.5], [73.0, 74.5, 74.8, 73.9]
    recs = [rec(f"u{s}", "ir", "uniform", base[s], seed=s) for s in range(4)]
    recs += [rec(f"r{s}", "ir", "ring", ring[s], seed=s) for s in range(4)]
    row = tables.ring_vs_baseline(tables.evaluations(recs)).iloc[0]
    assert row["delta_low"] > 0 and not row["includes_zero"] and "○" not in row["Δ (paired)"]


def test_la_is_compared_with_its_own_background_not_the_whole_bank():
    """LA's baseline is its k-nearest background (ball); LA over the whole bank (uniform) is a
    variant with its own label, never the 'LA' row."""
    recs = [rec("a", "la", "ball", 70.0, baseline_sampler="ball"), rec("b", "la", "ring", 72.5, baseline_sampler="ball"),
            rec("c", "la", "uniform", 75.0, baseline_sampler="ball"), rec("d", "ir", "uniform", 60.0)]
    evals = tables.evaluations(recs)
    t = tables.ring_vs_baseline(evals).set_index(["method", "model"])
    assert t.loc[("la", "LA + Ring"), "baseline negatives"] == "ball"
    assert t.loc[("la", "LA + Ring"), "baseline"] == "70.00 (1 run: no interval)"
    assert t.loc[("la", "LA + Ring"), "delta_mean"] == pytest.approx(2.5)
    assert t.loc[("la", "LA + Uniform (whole pool)"), "delta_mean"] == pytest.approx(5.0)
    assert "ir" not in t.index.get_level_values("method")  # IR's uniform run is its baseline: nothing to compare
    table = tables.linear(evals)[0].display.set_index("model")["CIFAR-10"]
    one = " (1 run: no interval)"
    assert table["LA"] == "70.00" + one and table["LA + Ring"] == "72.50" + one
    assert table["LA + Uniform (whole pool)"] == "75.00" + one
    assert table["Δ Ring (LA)"] == "+2.50" + one and table["IR"] == "60.00" + one
    # a record written before records named the baseline: LA's is still its ball
    legacy = rec("e", "la", "ball", 70.0)
    assert frames.identity(legacy)["baseline"] == "ball"


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
    ir_row = next(l for l in md.splitlines() if l.startswith("| IR "))  # the paper-layout table
    moco_row = next(l for l in md.splitlines() if l.startswith("| MoCo + Ring "))
    assert "80.00 (1 run: no interval)" in ir_row and "70.00 (1 run: no interval)" in moco_row
    assert "nan" not in md.lower() and "_No Meta-Dataset records yet" in md  # a missing stage says so
    assert "## Warnings" in md and "x.json" in md  # the report itself says what it skipped


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
    (tmp_path / "file").write_text("")
    assert reports_main(["--results", str(tmp_path), "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_wrongly_typed_records_are_named_and_skipped(tmp_path):
    records.write(rec("good", "ir", "uniform", 80.0), tmp_path)
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "types.json").write_text(json.dumps({"schema": 1, "run": 3, "stage": "evaluate", "task": "t",
                                                     "dataset": "d", "metrics": [1]}))
    (tmp_path / "keys.json").write_text(json.dumps({"schema": 1, "run": "r"}))
    with pytest.warns(records.ReportWarning) as caught:
        loaded = records.load_all(tmp_path)
    assert [r["run"] for r in loaded] == ["good"]
    text = "\n".join(str(w.message) for w in caught)
    assert "list.json: a JSON list" in text and "types.json: wrong type for run, metrics" in text
    assert "keys.json: missing keys stage, task, dataset, metrics" in text


def test_cell_format():
    assert tables.cell(83.5, 0.70711, 2) == "83.50 ± 0.71 (n=2)"
    assert tables.cell(83.5, math.nan, 1) == "83.50"  # one run: no spread to show
    assert tables.cell(math.nan) == tables.cell(None) == "—"
    assert tables.cell(-4.9, digits=1, signed=True) == "-4.9" and tables.cell(4.3, signed=True) == "+4.30"


def test_linear_table_in_paper_layout():
    recs = [rec(f"ir_u{s}", "ir", "uniform", 80.0 + s, seed=s) for s in (0, 1)]          # 80.5 ± 0.71
    recs += [rec(f"ir_r{s}", "ir", "ring", 83.0 + 2 * s, seed=s) for s in (0, 1, 2)]      # 85 ± 2
    recs += [rec("ir_u_stl", "ir", "uniform", 70.0, "stl10"), rec("ir_r_stl", "ir", "ring", 69.0, "stl10"),
             rec("moco_r", "moco", "ring", 60.0, "photo_patches"),
             rec("knn", "ir", "ring", 50.0, "cifar10", task="knn_cifar10"),
             rec("transfer", "ir", "ring", 40.0, "cifar100", pretrain_dataset="imagenet")]
    linear = {t.name: t for t in tables.linear(tables.evaluations(recs))}
    assert set(linear) == {"linear_paper_top1", "knn_top1"}  # one table per protocol, never mixed
    t = linear["linear_paper_top1"]
    # only the columns that hold results, the paper's datasets first
    assert list(t.display.columns) == ["model", "CIFAR-10", "STL-10", "CIFAR-100 ← ImageNet", "photo_patches"]
    d = t.display.set_index("model")
    assert list(d.index) == ["IR", "IR + Ring", "Δ Ring (IR)", "MoCo + Ring"]  # no MoCo baseline: no Δ row
    assert d.loc["IR", "CIFAR-10"] == f"80.50 ± {half_width([80, 81]):.2f} (n=2)"      # 12.71 x 0.71 / 1.41
    assert d.loc["IR + Ring", "CIFAR-10"] == f"85.00 ± {half_width([83, 85, 87]):.2f} (n=3)"
    pairs = [83 - 80, 85 - 81]  # seeds 0 and 1 have both runs; seed 2 has no baseline
    lo, hi = 3.5 - half_width(pairs), 3.5 + half_width(pairs)
    assert d.loc["Δ Ring (IR)", "CIFAR-10"] == f"+3.50 [{lo:+.2f}, {hi:+.2f}] (n=2) ○"
    assert d.loc["Δ Ring (IR)", "STL-10"] == "-1.00 (1 run: no interval)"
    assert d.loc["IR", "photo_patches"] == "—"
    assert d.loc["IR + Ring", "CIFAR-100 ← ImageNet"] == "40.00 (1 run: no interval)"
    n = t.numbers.set_index(["method", "negatives", "delta", "dataset"])
    assert n.loc[("ir", "ring", False, "CIFAR-10"), "n"] == 3
    assert n.loc[("ir", "ring", True, "CIFAR-10"), "n"] == 2 and n.loc[("ir", "ring", True, "CIFAR-10"), "includes_zero"]
    assert n.loc[("ir", "ring", True, "CIFAR-10"), "mean"] == pytest.approx(3.5)
    assert linear["knn_top1"].display.set_index("model").loc["IR + Ring", "CIFAR-10"] == "50.00 (1 run: no interval)"


def test_metadataset_reader_accepts_the_documented_variants():
    recs = [stage_rec("a", "metadataset", "linear_cu_birds", "cu_birds", {"top1": 61.0}),
            stage_rec("a", "metadataset", "episodic_prototype_traffic_sign", "metadataset",
                      {"top1": 70.0, "ci95": 0.8, "episodes": 600}),
            stage_rec("a", "metadataset", "whatever", "metadataset", {"accuracy": 55.0, "ci": 1.1},
                      protocol={"name": "episodic"}, head="logreg", domain="dtd"),
            stage_rec("a", "metadataset", "episodic_logreg_newdomain", "metadataset", {"top1": 33.0}),
            stage_rec("bad", "metadataset", "linear_dtd", "dtd", {"top1": "n/a"})]
    with pytest.warns(records.ReportWarning, match="without a numeric metrics.top1"):
        md = frames.metadataset(recs)
    got = {(r.protocol, r.head, r.domain): (r.top1, r.ci95) for r in md.itertuples()}
    assert got[("linear", "", "cu_birds")][0] == 61.0
    assert got[("episodic", "prototype", "traffic_sign")] == (70.0, 0.8)
    assert got[("episodic", "logreg", "dtd")] == (55.0, 1.1)
    assert ("episodic", "logreg", "newdomain") in got and len(got) == 4


def test_metadataset_tables_label_protocols_and_give_95_intervals():
    recs = [stage_rec(f"u{s}", "metadataset", "episodic_prototype_aircraft", "aircraft",
                      {"top1": 40.0 + 2 * s, "ci95": 0.9, "episodes": 600}, seed=s) for s in (0, 1)]
    recs += [stage_rec("r", "metadataset", "episodic_prototype_aircraft", "aircraft",
                       {"top1": 45.0, "ci95": 0.7, "episodes": 50}, neg="ring"),
             stage_rec("r", "metadataset", "linear_omniglot", "omniglot", {"top1": 90.0}, neg="ring")]
    made = tables.metadataset(frames.metadataset(recs))
    assert [t.name for t in made] == ["metadataset_linear", "metadataset_episodic_prototype"]
    assert "linear probe" in made[0].title and "episodes" in made[1].title and "prototype" in made[1].title
    assert "episodes per domain: 50, 600" in made[1].title  # what the records say, not a constant
    assert "paper" not in made[0].title and "official" not in made[1].title  # old records: nothing claimed
    d = made[1].display.set_index("domain")
    assert list(d.index) == ["aircraft"]  # only the domains that hold results
    assert d.loc["aircraft", "IR"] == "41.00 ± 12.71 (n=2)"   # t(0.975, 1) * 1.414 / sqrt(2)
    assert d.loc["aircraft", "IR + Ring"] == "45.00 ± 0.70 (1 run; ± over its episodes)"
    assert d.loc["aircraft", "Δ Ring (IR)"] == "+5.00 (1 run: no interval)"  # paired with seed 0's 40.0
    assert made[0].display.set_index("domain").loc["omniglot", "IR + Ring"] == "90.00 (1 run: no interval)"


def test_metadataset_titles_say_what_the_records_ran():
    """Titles come from the records' own `setting`; an episodic record that is not Meta-Dataset's
    own evaluation (ImageNet without its DAG sampler) is named in the note."""
    linear = {"name": "linear", "paper_protocol": False, "setting": "per-domain linear probe: L-BFGS (300 iterations)"}
    episodic = {"name": "episodic", "official": False, "mode": "variable-way variable-shot",
                "setting": "50 variable-way variable-shot episodes of the test classes, prototype head"}
    recs = [stage_rec("a", "metadataset", "linear_omniglot", "omniglot", {"top1": 90.0}, protocol=linear),
            stage_rec("a", "metadataset", "episodic_prototype_ilsvrc_2012", "ilsvrc_2012",
                      {"top1": 50.0, "ci95": 1.0, "episodes": 50}, protocol=episodic)]
    made = tables.metadataset(frames.metadataset(recs))
    assert made[0].title == "Meta-Dataset, per-domain linear probe: L-BFGS (300 iterations)"
    assert made[1].title == "Meta-Dataset, 50 variable-way variable-shot episodes of the test classes, prototype head"
    assert "Not Meta-Dataset's own evaluation for ilsvrc_2012" in made[1].note
    assert "Not Meta-Dataset's own" not in made[0].note


def test_detection_table_from_flat_and_nested_metrics():
    recs = [stage_rec(f"u{s}", "detection", "coco_r50_c4", "coco",
                      {"bbox/AP": 38.0 + s, "bbox/AP50": 58.0, "bbox/AP75": 41.0, "segm/AP": 33.0}, seed=s)
            for s in (0, 1)]
    recs += [stage_rec("r", "detection", "coco_r50_c4", "coco",
                       {"bbox": {"AP": 40.0, "AP50": 60.0, "APs": 1.0}, "segm": {"AP": 34.5}}, neg="ring"),
             stage_rec("r", "detection", "voc_c4", "voc", {"bbox/AP50": 81.0}, neg="ring"),
             stage_rec("bad", "detection", "voc_c4", "voc", {"loss": 1.0})]
    with pytest.warns(records.ReportWarning, match="bad/detection/voc_c4|detection record without"):
        made = {t.name: t for t in tables.detection(frames.detection(recs))}
    coco = made["detection_coco_r50_c4"].display.set_index("model")
    assert list(coco.columns) == ["bbox AP", "bbox AP50", "bbox AP75", "segm AP"]  # only metrics with results
    assert coco.loc["IR", "bbox AP"] == f"38.5 ± {half_width([38, 39]):.1f} (n=2)"
    assert coco.loc["Δ Ring (IR)", "bbox AP"] == "+2.0 (1 run: no interval)"  # paired with seed 0
    assert coco.loc["Δ Ring (IR)", "segm AP"] == "+1.5 (1 run: no interval)"
    assert coco.loc["IR + Ring", "bbox AP75"] == "—" and coco.loc["Δ Ring (IR)", "bbox AP75"] == "—"
    voc = made["detection_voc_c4"].display.set_index("model")
    assert list(voc.columns) == ["bbox AP50"] and voc.loc["IR + Ring", "bbox AP50"] == "81.0 (1 run: no interval)"


def toy_record(run, seed, with_estimates, true=1.0):
    est = [{"estimator": "nce", "outer": 1.0, "mean": 0.9, "std": 0.06, "bias": 0.9 - true, "std_negatives": 0.03},
           {"estimator": "cnce@0.1", "outer": 0.1, "mean": 0.6 + 0.1 * seed, "std": 0.02,
            "bias": 0.6 + 0.1 * seed - true, "std_negatives": 0.01 * (1 + seed)}]
    metrics = {"true_mi": true, **{f"{e['estimator']}/{k}": e[k] for e in est
                                   for k in ("mean", "std", "bias", "std_negatives")}}
    extra = {"estimates": est} if with_estimates else {}
    return records.make(run, "toy_mi", "toy_mi", "gaussian", metrics, {}, seed=seed, **extra)


def test_toy_mi_reads_estimates_or_flat_metrics_and_averages_records():
    toy = frames.toy_mi([toy_record("a", 0, True), toy_record("b", 1, False)])
    assert len(toy) == 4 and set(toy["outer"]) == {1.0, 0.1}
    t = tables.toy_mi(toy)[0]
    assert list(t.display["estimator"]) == ["NCE", "CNCE"]  # widest ring (uniform) first
    row = t.numbers.set_index("estimator").loc["cnce@0.1"]
    assert row["mean"] == pytest.approx(0.65) and row["bias"] == pytest.approx(-0.35) and row["n"] == 2
    assert list(t.display["bias"]) == ["-0.100", "-0.350"]
    # the spread from sampling negatives is its own column (read from both record shapes)
    assert row["std_negatives"] == pytest.approx(0.015) and list(t.display["std (negatives)"]) == ["0.030", "0.015"]


def test_cost_table_mean_std_and_runs():
    recs = [stage_rec(f"p{s}", "pretrain", "pretrain", "cifar10", {}, seed=s, wall_s=100.0 + 10 * s,
                      peak_rss_mb=1000.0, peak_cuda_mb=5000.0 + s) for s in (0, 1, 2)]
    recs.append(records.make("toy", "toy_mi", "toy_mi", "gaussian", {}, {}, wall_s=3.0))
    t = tables.cost(recs)
    d = t.display.set_index("stage")
    assert d.loc["pretrain", "wall-clock s"] == "110.0 ± 10.0 (n=3)" and d.loc["pretrain", "runs"] == "3"
    assert d.loc["pretrain", "peak CUDA MiB"] == "5001 ± 1 (n=3)" and d.loc["toy_mi", "peak CUDA MiB"] == "—"
    assert d.loc["toy_mi", "method"] == "—" and list(d.index) == ["pretrain", "toy_mi"]


def test_an_empty_results_directory_still_gives_a_report(tmp_path):
    assert reports_main(["--results", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "0 results records" in md and "No Meta-Dataset records yet" in md and "nan" not in md.lower()


# ---------------------------------------------------------------- a row is one model (docs/design.md §11)

def moco_rec(run, sampler, top1, seed, queue=65536, epochs=200, task="linear_cached_i300_cifar10", **extra):
    config = {"name": run, "data": {"dataset": "cifar10", "root": f"/data/{run}", "workers": 4},
              "method": {"name": "moco", "temperature": 0.07, "moco": {"queue_size": queue},
                         "la": {"clusters": 1000}},
              "negatives": {"sampler": sampler, "outer": 0.1, "inner": 0.1},
              "optim": {"epochs": epochs}, "train": {"seed": seed, "log_every": 10, "device": "cpu"}}
    return records.make(run, "evaluate", task, "cifar10", {"top1": top1, "top5": 99.0}, config, seed=0, **extra)


def test_a_record_carries_its_models_identity_without_seed_paths_or_other_methods():
    a, b = moco_rec("a", "ring", 70.0, seed=0), moco_rec("b", "ring", 71.0, seed=3)
    assert a["identity"] == b["identity"] and a["fingerprint"] == b["fingerprint"] and len(a["fingerprint"]) == 12
    assert a["identity"]["method.moco.queue_size"] == 65536 and a["identity"]["optim.epochs"] == 200
    assert not any(k.startswith(("method.la", "train.seed", "data.root", "data.workers", "name", "train.log_every"))
                   for k in a["identity"])
    assert moco_rec("c", "ring", 70.0, seed=0, queue=4096)["fingerprint"] != a["fingerprint"]
    legacy = {k: v for k, v in a.items() if k not in ("identity", "fingerprint")}  # written before records had one
    assert frames.identity(legacy)["model_id"] == a["fingerprint"]


@pytest.mark.parametrize("differ", [{"queue": 4096}, {"epochs": 100}], ids=["queue", "epochs"])
def test_runs_that_differ_outside_the_negatives_are_never_averaged_or_paired(differ):
    """MoCo ring q65,536 + uniform q65,536 + uniform q4,096 (or 100 epochs), seeds 0 and 1: the
    difference pairs ring only with the matched baseline (10.0 with n = 2; averaging both
    baselines would give 15.0 against n = 4), and the other baseline is its own labelled row."""
    matched, other, ring = [60.0, 62.0], [50.0, 52.0], [70.0, 72.0]
    recs = [moco_rec(f"u{s}", "uniform", matched[s], s) for s in range(2)]
    recs += [moco_rec(f"o{s}", "uniform", other[s], s, **differ) for s in range(2)]
    recs += [moco_rec(f"r{s}", "ring", ring[s], s) for s in range(2)]
    evals = tables.evaluations(recs)
    main = tables.ring_vs_baseline(evals)
    assert len(main) == 1
    row = main.iloc[0]
    assert row["delta_mean"] == pytest.approx(10.0) and row["pairs"] == 2 and row["seeds"] == [0, 1]
    assert row["baseline"] == f"61.00 ± {half_width(matched):.2f} (n=2)"
    label = "queue 65,536" if "queue" in differ else "epochs 200"
    other_label = "queue 4,096" if "queue" in differ else "epochs 100"
    assert row["model"] == f"MoCo + Ring (outer 0.1, inner 0.1; {label})"
    table = tables.linear(evals)[0].display.set_index("model")["CIFAR-10"]
    assert list(table.index) == [f"MoCo ({label})", f"MoCo + Ring ({label})", f"Δ Ring (MoCo, {label})",
                                 f"MoCo ({other_label})"]
    assert table[f"MoCo ({other_label})"] == f"51.00 ± {half_width(other):.2f} (n=2)"
    assert table[f"Δ Ring (MoCo, {label})"].startswith("+10.00")


def test_two_baselines_that_differ_only_in_their_negatives_are_an_error_naming_both(tmp_path, capsys):
    recs = [moco_rec("u0", "uniform", 60.0, 0), moco_rec("r0", "ring", 70.0, 0)]
    odd = moco_rec("w0", "uniform", 50.0, 0)
    odd["config"]["negatives"]["num"] = 1024  # another baseline model: differs only in `negatives`
    recs.append(odd)
    with pytest.raises(tables.ReportError, match="u0.*w0|w0.*u0"):
        tables.ring_vs_baseline(tables.evaluations(recs))
    for r in recs:
        records.write(r, tmp_path / "results")
    assert reports_main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "u0" in err[0] and "w0" in err[0] and not (tmp_path / "out" / "report.md").exists()


def test_a_copied_record_counts_once_and_the_newer_one_counts(tmp_path):
    old, new = moco_rec("u0", "uniform", 60.0, 0), moco_rec("u0_copy", "uniform", 61.0, 0)
    old["date"], new["date"] = "2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00"
    ring = moco_rec("r0", "ring", 70.0, 0)
    with pytest.warns(records.ReportWarning, match="u0.*u0_copy.*the newer"):
        kept = frames.latest([new, old, ring])
    assert [r["run"] for r in kept] == ["u0_copy", "r0"]
    assert tables.ring_vs_baseline(tables.evaluations(kept)).iloc[0]["delta_mean"] == pytest.approx(9.0)


def test_a_record_whose_checkpoint_changed_is_marked_stale(tmp_path):
    ckpt = tmp_path / "final.pt"
    ckpt.write_bytes(b"weights")
    base, ring = moco_rec("u0", "uniform", 60.0, 0, checkpoint=str(ckpt)), moco_rec("r0", "ring", 70.0, 0)
    assert not frames.identity(base)["stale"]
    ckpt.write_bytes(b"retrained")
    evals = tables.evaluations([base, ring])
    assert evals.set_index("run").loc["u0", "stale"] and not evals.set_index("run").loc["r0", "stale"]
    table = tables.linear(evals)[0].display.set_index("model")["CIFAR-10"]
    assert table["MoCo"].endswith("(stale)") and not table["MoCo + Ring"].endswith("(stale)")
    assert table["Δ Ring (MoCo)"].endswith("(stale)")  # a difference with a stale side is stale too
    ckpt.unlink()  # gone: nothing to compare with, not stale
    assert not frames.identity(base)["stale"]


def test_every_preset_with_another_sampler_has_exactly_one_baseline_preset_to_pair_with():
    """The shipped presets compare like with like: each non-baseline preset differs from exactly
    one baseline preset of its profile in the `negatives` section alone, so the report pairs it."""
    from pathlib import Path

    from pretrain import config as config_mod
    from pretrain.methods import METHODS
    root = Path(__file__).parent.parent / "configs"
    for profile in ("mini", "gpu", "paper"):
        models = {}
        for path in sorted((root / profile).glob("*.yaml")):
            cfg = config_mod.to_dict(config_mod.load(path))
            ident = records.model_identity(cfg)
            pair = records.fingerprint({k: v for k, v in ident.items() if not k.startswith("negatives.")})
            models[path.name] = (cfg["method"]["name"], records.negatives_name(cfg["negatives"]), pair)
        for name, (method, sampler, pair) in models.items():
            if sampler == METHODS[method].baseline_sampler:
                continue
            matches = [n for n, (m, s, p) in models.items()
                       if m == method and s == METHODS[method].baseline_sampler and p == pair]
            assert len(matches) == 1, f"{profile}/{name}: baselines that pair with it: {matches}"


def test_metadataset_marks_contaminated_rows_and_old_episode_streams():
    """A backbone pretrained on ImageNet has seen every ilsvrc_2012 image (the record's
    `contaminated`): its cell is marked and the note says why; records from before the official
    description stream are named."""
    new = {"name": "episodic", "official_sampling": True, "mode": "variable-way variable-shot", "setting": "600 episodes"}
    old = {"name": "episodic", "official": True, "mode": "variable-way variable-shot", "setting": "600 episodes"}
    recs = [stage_rec("a", "metadataset", "episodic_prototype_ilsvrc_2012", "ilsvrc_2012",
                      {"top1": 50.0, "ci95": 1.0, "episodes": 600}, protocol=new,
                      contaminated="yes: ImageNet-1k pretraining holds every ilsvrc_2012 image"),
            stage_rec("a", "metadataset", "episodic_prototype_dtd", "dtd", {"top1": 40.0, "ci95": 1.0, "episodes": 600},
                      protocol=new),
            stage_rec("b", "metadataset", "episodic_prototype_omniglot", "omniglot",
                      {"top1": 80.0, "ci95": 1.0, "episodes": 600}, protocol=old, neg="ring", seed=1)]
    made = tables.metadataset(frames.metadataset(recs))[0]
    d = made.display.set_index("domain")
    assert d.loc["ilsvrc_2012", "IR"].endswith(" †") and not d.loc["dtd", "IR"].endswith("†")
    assert "ImageNet-1k pretraining holds every ilsvrc_2012 image" in made.note
    assert "omniglot: written before the episode stream followed Meta-Dataset's" in made.note
