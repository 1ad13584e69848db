"""Known answers for the report's statistics, frames and tables where mutation testing found the
suite blind (docs/mutation.md): edge cases of the intervals, the cells' defaults and marks."""
import math

import pandas as pd
import pytest
from scipy.stats import t as student

from core import records
from reports import frames, stats, tables

NAN = math.nan


def t_interval(values):
    """The 95% t-interval of the mean, written out: mean ± t(0.975, n - 1) sd / sqrt(n)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1))
    half = student.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


# ---------------------------------------------------------------- reports/stats.py

def test_mean_interval_of_none_one_several_and_equal_runs():
    nan3 = stats.mean_interval([])
    assert all(math.isnan(x) for x in nan3[:3]) and nan3[3] == 0
    assert stats.mean_interval([NAN, NAN])[3] == 0  # NaN is a missing run, not a value
    one = stats.mean_interval([71.5, NAN])
    assert one[0] == 71.5 and math.isnan(one[1]) and math.isnan(one[2]) and one[3] == 1
    # equal runs: no spread, the interval is the point itself, exactly (not scipy's mean and
    # interval, 0.10000000000000002 in [0.09999999999999998, 0.10000000000000006])
    assert stats.mean_interval([70.0, 70.0, 70.0]) == (70.0, 70.0, 70.0, 3)
    assert stats.mean_interval([0.1, 0.1, 0.1]) == (0.1, 0.1, 0.1, 3)
    mean, low, high, n = stats.mean_interval([80.0, NAN, 81.0, 83.0])
    assert n == 3 and (mean, low, high) == pytest.approx(t_interval([80.0, 81.0, 83.0]))
    assert isinstance(mean, float) and isinstance(n, int)


def test_paired_interval_of_none_one_several_and_constant_differences():
    empty = stats.paired_interval([], [])
    assert all(math.isnan(x) for x in empty[:3]) and empty[3] == 0
    one = stats.paired_interval([83.0], [80.5])
    assert one[0] == 2.5 and math.isnan(one[1]) and math.isnan(one[2]) and one[3] == 1
    # a constant difference: the interval is the point (the pairs differ, their difference not)
    assert stats.paired_interval([81.0, 82.0, 90.0], [80.0, 81.0, 89.0]) == (1.0, 1.0, 1.0, 3)
    d = 0.2 - 0.1
    assert stats.paired_interval([0.2] * 3, [0.1] * 3) == (d, d, d, 3)
    a, b = [83.0, 85.0, 84.0, 80.0], [80.0, 81.0, 83.0, 81.0]
    mean, low, high, n = stats.paired_interval(a, b)
    assert n == 4 and (mean, low, high) == pytest.approx(t_interval([x - y for x, y in zip(a, b)]))


def test_includes_zero_is_inclusive_and_false_without_an_interval():
    assert stats.includes_zero(-1.0, 2.0) and stats.includes_zero(0.0, 2.0) and stats.includes_zero(-2.0, 0.0)
    assert not stats.includes_zero(0.5, 2.0) and not stats.includes_zero(-2.0, -0.5)
    assert not stats.includes_zero(NAN, 1.0) and not stats.includes_zero(-1.0, NAN)


def test_cells_with_their_default_digits_and_dash():
    assert stats.mean_cell(71.234, 70.0, 72.5, 3) == "71.23 ± 1.25 (n=3)"
    assert stats.mean_cell(71.234, NAN, NAN, 1) == "71.23 (1 run: no interval)"
    assert stats.mean_cell(71.0, NAN, NAN, 2) == "71.00 (1 run: no interval)"  # no interval whatever n says
    assert stats.mean_cell(NAN, NAN, NAN, 0) == stats.mean_cell(71.0, 70.0, 72.0, 0) == "—"
    assert stats.mean_cell(NAN, 1.0, 2.0, 3) == "—"
    assert stats.mean_cell(71.25, 70.0, 72.5, 3, digits=1, dash="-") == "71.2 ± 1.2 (n=3)"
    assert stats.mean_cell(NAN, NAN, NAN, 0, dash="n/a") == "n/a"
    assert stats.delta_cell(2.5, -1.1, 6.1, 3) == "+2.50 [-1.10, +6.10] (n=3) ○"
    assert stats.delta_cell(2.5, 0.3, 6.1, 3) == "+2.50 [+0.30, +6.10] (n=3)"
    assert stats.delta_cell(-2.5, NAN, NAN, 1) == "-2.50 (1 run: no interval)"
    assert stats.delta_cell(2.5, NAN, NAN, 2) == "+2.50 (1 run: no interval)"
    assert stats.delta_cell(NAN, NAN, NAN, 0) == stats.delta_cell(1.0, 0.5, 2.0, 0) == "—"
    assert stats.delta_cell(NAN, 1.0, 2.0, 3) == "—"
    assert stats.delta_cell(2.55, 0.3, 6.1, 3, digits=1, dash="-") == "+2.5 [+0.3, +6.1] (n=3)"
    assert stats.delta_cell(NAN, NAN, NAN, 0, dash="n/a") == "n/a"


# ---------------------------------------------------------------- reports/tables.py: names and cells

def test_row_names_of_models_and_differences():
    assert tables.method_name("moco") == "MoCo" and tables.method_name("byol") == "byol"  # unknown: itself
    assert tables.negatives_label("ring") == "Ring" and tables.negatives_label("ring+hcl") == "Ring + HCL"
    assert tables.negatives_label("mine+ring") == "mine + Ring"
    assert tables.model_name("ir", "uniform") == "IR" and tables.model_name("la", "ball", "ball") == "LA"
    assert tables.model_name("la", "uniform", "ball") == "LA + Uniform (whole pool)"
    assert tables.model_name("ir", "ring") == "IR + Ring"
    assert tables.model_name("ir", "ring", setting="outer 0.2", variant="epochs 100") == "IR + Ring (outer 0.2; epochs 100)"
    assert tables.model_name("moco", "uniform", setting="outer 0.2", variant="queue 4,096") == "MoCo (queue 4,096)"
    assert tables.delta_name("ir", "ring") == "Δ Ring (IR)"
    assert tables.delta_name("moco", "ring", "outer 0.2", "queue 4,096") == "Δ Ring (outer 0.2) (MoCo, queue 4,096)"
    assert tables.dataset_name("cifar10") == tables.dataset_name("cifar10", "cifar10") == "CIFAR-10"
    assert tables.dataset_name("stl10", "imagenet") == "STL-10 ← ImageNet"
    assert tables.dataset_name("mine", "photos") == "mine ← photos"  # unknown names as they are


def test_describe_one_key_of_a_model():
    assert tables.describe("method.moco.queue_size", 4096) == "queue 4,096"
    assert tables.describe("optim.lr", 0.03) == "lr 0.03" and tables.describe("optim.lr", 1e-4) == "lr 0.0001"
    assert tables.describe("negatives.neighbor_views", True) == "neighbor views on"
    assert tables.describe("negatives.neighbor_views", False) == "neighbor views off"
    assert tables.describe("optim.milestones", [120, 160]) == "milestones 120/160"
    assert tables.describe("model.arch", "resnet50") == "resnet50"  # a key whose value names itself
    assert tables.describe("data.dataset", "cifar100") == "pretrained on cifar100"
    assert tables.describe("method.la.bank_momentum", 0.5) == "bank momentum 0.5"  # the last part, in words
    assert tables.describe("train.note", None) == "note None"


def test_cell_shows_a_spread_only_for_several_runs():
    assert tables.cell(83.5) == "83.50" and tables.cell(83.5, 0.7) == "83.50"  # one run by default
    assert tables.cell(83.5, 0.7, 2) == "83.50 ± 0.70 (n=2)"
    assert tables.cell(83.5, math.nan, 3) == "83.50"  # no spread known
    assert tables.cell(83.5, 0.7, math.nan) == "83.50"


def test_false_negative_pair_needs_both_sides():
    nan = pd.Series([NAN, NAN])
    assert tables._fn_pair(pd.Series([0.2, 0.4]), pd.Series([0.1, NAN])) == "0.30 → 0.10"
    assert tables._fn_pair(nan, pd.Series([0.1])) == tables._fn_pair(pd.Series([0.1]), nan) == "—"


def test_model_labels_of_a_frame_with_and_without_variants():
    df = pd.DataFrame({"method": ["ir", "la", "moco"], "negatives": ["ring", "uniform", "uniform"],
                       "baseline": ["uniform", "ball", "uniform"], "negatives_setting": ["outer 0.2", "", ""]})
    assert tables.model_labels(df) == ["IR + Ring (outer 0.2)", "LA + Uniform (whole pool)", "MoCo"]
    df["variant"] = ["", "", "queue 4,096"]
    assert tables.model_labels(df) == ["IR + Ring (outer 0.2)", "LA + Uniform (whole pool)", "MoCo (queue 4,096)"]
    assert tables.model_labels(df.iloc[:0]) == []


def test_pretraining_runs_one_row_per_run_sorted_by_run():
    """The pretraining table: the records' numbers under readable names, runs sorted, epochs and
    seeds whole numbers; the CUDA column only where some run measured it."""
    def pre(run, seed, cuda=None, **metrics):
        return records.make(run, "pretrain", "pretrain", "cifar10", metrics, {"train": {"seed": seed}}, seed=seed,
                            method="ir", negatives="ring", wall_s=10.0 + seed, peak_cuda_mb=cuda)
    recs = [pre("b", 1, final_loss=2.5, epochs=6, knn_top1=40.0, images_per_s=100.0),
            pre("a", 0, final_loss=3.5, epochs=6, images_per_s=90.0)]
    df = tables.pretraining_runs(frames.pretraining(recs))
    assert list(df.columns) == ["run", "method", "negatives", "dataset", "seed", "epochs", "final loss", "kNN top1",
                                "images/s", "wall s", "peak RSS MiB"]
    assert list(df["run"]) == ["a", "b"] and list(df["seed"]) == [0, 1] and str(df["seed"].dtype) == "Int64"
    assert list(df["epochs"]) == [6, 6] and str(df["epochs"].dtype) == "Int64"
    assert list(df["final loss"]) == [3.5, 2.5] and list(df["images/s"]) == [90.0, 100.0]
    assert math.isnan(df["kNN top1"].iloc[0]) and df["kNN top1"].iloc[1] == 40.0
    assert list(df["wall s"]) == [10.0, 11.0] and list(df["method"]) == ["ir", "ir"]
    with_cuda = tables.pretraining_runs(frames.pretraining([pre("c", 2, cuda=512.0, epochs=1), *recs]))
    assert list(with_cuda.columns)[-1] == "peak CUDA MiB" and list(with_cuda["peak CUDA MiB"].isna()) == [True, True, False]
    assert tables.pretraining_runs(frames.pretraining([])).empty


# ---------------------------------------------------------------- reports/frames.py: what a record says it ran

def evaluate_rec(run="r", **extra):
    return records.make(run, "evaluate", "linear_paper_cifar10", "cifar10", {"top1": 80.0, "top5": 95.0},
                        {"train": {"seed": 0}}, seed=0, method="ir", negatives="uniform", **extra)


def test_changed_is_what_follows_the_recipe_after_with():
    row = lambda **extra: frames.evaluations([evaluate_rec(**extra)]).iloc[0]  # noqa: E731
    follows = "the official Ring code's linear probe, with epochs 100 -> 1, with lr 30 -> 3"
    assert row(protocol={"follows": follows})["changed"] == "epochs 100 -> 1, with lr 30 -> 3"
    assert row(protocol={"follows": "the official Ring code's linear probe"})["changed"] == ""
    assert row(protocol={"epochs": 100})["changed"] == "" and row()["changed"] == ""
    assert row(protocol="linear")["changed"] == ""  # a protocol that is only a name


def test_records_without_a_setting_say_what_they_ran_from_their_protocol():
    row = lambda **extra: frames.evaluations([evaluate_rec(**extra)]).iloc[0]  # noqa: E731
    assert row(knn={"k": 200, "t": 0.07})["setting"] == "weighted kNN, k=200, t=0.07"
    protocol = {"epochs": 100, "lr": 30.0, "optimizer": "sgd", "momentum": 0.9, "augment": "flip"}
    assert row(protocol=protocol)["setting"] == "optimizer sgd, lr 30.0, epochs 100, augment flip"
    assert row(protocol={"weight_decay": 0.0})["setting"] == "weight_decay 0.0"
    assert row()["setting"] == row(protocol="linear")["setting"] == "settings not recorded"
    assert row(setting="L-BFGS, 300 iterations", knn={"k": 1})["setting"] == "L-BFGS, 300 iterations"  # its own wins


# ---------------------------------------------------------------- reports/tables.py: rows of the paper-layout tables

def model_rec(run, method, sampler, top1, seed=0, outer=0.1):
    cfg = {"data": {"dataset": "cifar10"}, "method": {"name": method, "temperature": 0.07},
           "negatives": {"sampler": sampler, "outer": outer, "inner": 0.1}, "optim": {"epochs": 200},
           "train": {"seed": seed}}
    return records.make(run, "evaluate", "linear_paper_cifar10", "cifar10", {"top1": top1, "top5": 99.0}, cfg,
                        seed=seed, method=method, negatives=sampler, baseline_sampler="ball" if method == "la" else None)


def test_rows_follow_the_registry_order_and_name_settings_only_where_a_method_has_several():
    """Methods in the registry's order (IR, MoCo, ..., LA), not alphabetical; IR's two ring
    widths are two rows named by their settings, MoCo's one ring is just 'MoCo + Ring'."""
    recs = [model_rec("ir_u", "ir", "uniform", 80.0), model_rec("ir_r1", "ir", "ring", 81.0),
            model_rec("ir_r2", "ir", "ring", 83.0, outer=0.2), model_rec("la_b", "la", "ball", 70.0),
            model_rec("la_r", "la", "ring", 71.5), model_rec("mo_u", "moco", "uniform", 60.0),
            model_rec("mo_r", "moco", "ring", 64.0)]
    table = tables.linear(tables.evaluations(recs))[0].display.set_index("model")["CIFAR-10"]
    one = " (1 run: no interval)"
    assert list(table.index) == [
        "IR", "IR + Ring (outer 0.1, inner 0.1)", "IR + Ring (outer 0.2, inner 0.1)",
        "Δ Ring (outer 0.1, inner 0.1) (IR)", "Δ Ring (outer 0.2, inner 0.1) (IR)",
        "MoCo", "MoCo + Ring", "Δ Ring (MoCo)", "LA", "LA + Ring", "Δ Ring (LA)"]
    assert table["Δ Ring (outer 0.2, inner 0.1) (IR)"] == "+3.00" + one
    assert table["Δ Ring (MoCo)"] == "+4.00" + one and table["LA + Ring"] == "71.50" + one


def test_a_table_without_rows_keeps_its_columns():
    numbers = pd.DataFrame(columns=tables.MODEL + ["baseline", "delta", "column", "mean", "low", "high", "n", "stale"])
    display = tables.spread(numbers, ["CIFAR-10", "STL-10"], "column")
    assert display.empty and list(display.columns) == ["model", "CIFAR-10", "STL-10"]


# ---------------------------------------------------------------- the toy MI stage

def toy_rec(run, metrics, estimates=None):
    extra = {} if estimates is None else {"estimates": estimates}
    return records.make(run, "toy_mi", "toy_mi", "gaussian", metrics, {}, seed=0, **extra)


def test_toy_mi_rows_from_estimates_and_from_flat_metrics():
    """Every field of both record shapes: the row of each estimator, its width from the list or
    from its name, the bias from the list or as mean - true MI, a ring's inner edge unknown in
    flat metrics; records of other stages (before it) and estimates without an estimator name."""
    listed = toy_rec("a", {"true_mi": 1.0}, [
        {"estimator": "nce", "mean": 0.9, "std": 0.06, "bias": -0.11, "std_negatives": 0.03},
        {"estimator": "cnce@0.1", "outer": 0.1, "inner": 0.1, "mean": 0.6, "std": 0.02, "std_negatives": 0.01,
         "harder": 0.2, "true_mi": 0.5},
        {"outer": 0.5, "mean": 0.7}])
    flat = toy_rec("b", {"true_mi": 1.0, "nce/mean": 0.8, "nce/std": 0.05, "nce/bias": -0.2, "nce/std_negatives": 0.02,
                         "cnce@0.25/mean": 0.75, "cnce@0.25/harder": -0.1, "cnce@0.25/std": 0.04, "repeats": 200})
    other = evaluate_rec("e")
    df = frames.toy_mi([other, listed, flat]).set_index(["run", "estimator"])
    assert list(df.index) == [("a", "nce"), ("a", "cnce@0.1"), ("a", "?"), ("b", "nce"), ("b", "cnce@0.25")]
    a_nce, a_ring, a_anon = df.loc[("a", "nce")], df.loc[("a", "cnce@0.1")], df.loc[("a", "?")]
    assert (a_nce["outer"], a_nce["inner"], a_nce["mean"], a_nce["std"], a_nce["bias"], a_nce["std_negatives"]) == \
        (1.0, 0.0, 0.9, 0.06, -0.11, 0.03) and math.isnan(a_nce["harder"]) and a_nce["true_mi"] == 1.0
    assert (a_ring["outer"], a_ring["inner"], a_ring["true_mi"], a_ring["harder"]) == (0.1, 0.1, 0.5, 0.2)
    assert a_ring["bias"] == pytest.approx(0.1)  # 0.6 - its own true MI 0.5
    assert a_anon["outer"] == 0.5 and math.isnan(a_anon["inner"]) and a_anon["bias"] == pytest.approx(-0.3)
    b_nce, b_ring = df.loc[("b", "nce")], df.loc[("b", "cnce@0.25")]
    assert (b_nce["outer"], b_nce["inner"], b_nce["mean"], b_nce["std"], b_nce["bias"], b_nce["std_negatives"]) == \
        (1.0, 0.0, 0.8, 0.05, -0.2, 0.02)
    assert (b_ring["outer"], b_ring["mean"], b_ring["std"], b_ring["harder"]) == (0.25, 0.75, 0.04, -0.1)
    assert math.isnan(b_ring["inner"]) and b_ring["bias"] == pytest.approx(-0.25) and math.isnan(b_ring["std_negatives"])


def test_a_toy_mi_record_without_readable_estimates_is_skipped_with_a_warning():
    bad = [toy_rec("nothing", {"true_mi": 1.0, "repeats": 5}),
           toy_rec("no_width", {"true_mi": 1.0}, [{"estimator": "mine", "mean": 0.5}]),
           toy_rec("no_mean", {"true_mi": 1.0, "nce/std": 0.1})]
    for r in bad:
        with pytest.warns(records.ReportWarning, match=f"{r['run']}.*toy MI record without estimates"):
            assert frames.toy_mi([r]).empty


def test_toy_mi_table_widest_ring_first_with_every_column():
    """Per true MI: NCE, then the rings from the widest; means over the records; whether the
    lower bound holds: yes for NCE and a band harder than the pool, no for one no harder."""
    recs = [toy_rec("a", {"true_mi": 1.0}, [
                {"estimator": "cnce@0.1", "outer": 0.1, "inner": 0.1, "mean": 0.6, "std": 0.02, "bias": -0.4,
                 "std_negatives": 0.01, "harder": 0.2},
                {"estimator": "nce", "outer": 1.0, "inner": 0.0, "mean": 0.9, "std": 0.06, "bias": -0.1,
                 "std_negatives": 0.03, "harder": 0.0},
                {"estimator": "cnce@0.5", "outer": 0.5, "inner": 0.1, "mean": 0.8, "std": 0.05, "bias": -0.2,
                 "harder": 0.0},
                {"estimator": "cnce@1", "outer": 1.0, "inner": 0.1, "mean": 1.1, "std": 0.1, "bias": 0.1,
                 "harder": -0.05}]),
            toy_rec("b", {"true_mi": 1.0}, [{"estimator": "cnce@0.1", "outer": 0.1, "inner": 0.1, "mean": 0.7,
                                             "std": 0.04, "bias": -0.3, "std_negatives": 0.03, "harder": 0.4}]),
            toy_rec("c", {"true_mi": 0.5}, [{"estimator": "cnce@0.3", "outer": 0.3, "mean": 0.45, "std": 0.01,
                                             "bias": -0.05}])]
    table = tables.toy_mi(frames.toy_mi(recs))[0]
    assert table.name == "toy_mi" and table.title == "Toy mutual information: NCE vs. CNCE (Ring) bias and variance"
    d = table.display
    assert list(d.columns) == ["true MI", "estimator", "ring outer / inner", "estimate", "std (repeats)",
                               "std (negatives)", "bias", "band harder than pool", "lower bound holds", "records"]
    assert d.values.tolist() == [
        ["0.500", "CNCE", "0.3 / —", "0.450", "0.010", "—", "-0.050", "—", "—", "1"],
        ["1.000", "NCE", "—", "0.900", "0.060", "0.030", "-0.100", "+0.000", "yes", "1"],
        ["1.000", "CNCE", "1 / 0.1", "1.100", "0.100", "—", "+0.100", "-0.050", "no", "1"],
        ["1.000", "CNCE", "0.5 / 0.1", "0.800", "0.050", "—", "-0.200", "+0.000", "no", "1"],
        ["1.000", "CNCE", "0.1 / 0.1", "0.650", "0.030", "0.020", "-0.350", "+0.300", "yes", "2"]]
    n = table.numbers.set_index("estimator")
    assert "nce" not in table.numbers.columns and n.loc["cnce@0.1", "n"] == 2
    assert n.loc["cnce@0.1", "mean"] == pytest.approx(0.65) and n.loc["cnce@0.1", "harder"] == pytest.approx(0.3)
    assert tables.toy_mi(frames.toy_mi([])) == []


# ---------------------------------------------------------------- what a row's sampler ran with

def test_negatives_setting_names_what_changes_the_band():
    s = frames.negatives_setting
    assert s({"sampler": "ring", "outer": 0.25, "inner": 0.1}) == "outer 0.25, inner 0.1"
    assert s({"sampler": "ball", "outer": 0.1, "inner": 0.1}) == "outer 0.1"  # no inner cut but the ring's
    assert s({"sampler": "ring", "inner": 0.1}) == "inner 0.1" and s({"sampler": "ring"}) == ""
    anneal = {"schedule": "linear", "epochs": 2}
    assert s({"sampler": "ring", "outer": 0.1, "inner": 0.0, "anneal": anneal}) == \
        "outer 0.1, inner 0, linear anneal over 2 epochs"
    assert s({"sampler": "ball", "outer": 0.1, "anneal": {"schedule": "cosine", "epochs": 0.5}}) == \
        "outer 0.1, cosine anneal over 0.5 epochs"
    # the whole pool has no width, and nothing to anneal
    assert s({"sampler": "uniform", "outer": 0.1, "inner": 0.1, "anneal": anneal}) == ""
    for off in ({"schedule": "none", "epochs": 2}, {"schedule": "linear", "epochs": 0}, {"schedule": "linear"},
                {"epochs": 2}, "linear"):
        assert s({"sampler": "ball", "outer": 0.1, "anneal": off}) == "outer 0.1", off
    assert s({"sampler": "ring", "outer": 0.1, "inner": 0.1, "neighbor_views": True}) == \
        "outer 0.1, inner 0.1, neighbour views"
    assert s({"sampler": "uniform", "objective": "hcl", "hcl": {"tau_plus": 0.1, "beta": 1.0}}) == "τ⁺ 0.1, β 1"
    assert s({"sampler": "uniform", "objective": "dcl", "dcl": 0.1, "hcl": {"beta": 1.0}}) == ""


def test_two_baselines_are_an_error_naming_the_runs_of_each():
    """Baselines A (seeds 0, 1) and B (seed 0) differ only in `negatives.num`: both are the ring
    run's baseline, an error that lists each one's runs."""
    recs = [model_rec("r0", "ir", "ring", 70.0), model_rec("a0", "ir", "uniform", 60.0),
            model_rec("a1", "ir", "uniform", 61.0, seed=1), model_rec("b0", "ir", "uniform", 50.0)]
    recs[3]["config"]["negatives"]["num"] = 1024
    with pytest.raises(tables.ReportError, match="runs a0, a1 and runs b0;"):
        tables.ring_vs_baseline(tables.evaluations(recs))


def test_latest_keeps_one_record_per_measurement_the_newest():
    """One model, one seed: records of different stages, tasks or datasets are different
    measurements; copies of one are one, the newest by date (a dated record beats an undated
    one; of equal dates the later read)."""
    def rec(run, date, stage="evaluate", task="linear_paper_cifar10", dataset="cifar10"):
        r = records.make(run, stage, task, dataset, {"top1": 1.0}, {"train": {"seed": 0}}, seed=0, method="ir",
                         negatives="uniform")
        r["date"] = date
        return r
    runs = lambda recs: [r["run"] for r in frames.latest(recs)]  # noqa: E731
    distinct = [rec("a", "2026-01-01"), rec("b", "2026-01-01", stage="metadataset"), rec("c", "2026-01-01", task="knn"),
                rec("d", "2026-01-01", dataset="stl10")]
    assert runs(distinct) == ["a", "b", "c", "d"]
    with pytest.warns(records.ReportWarning):
        assert runs([rec("old", "2026-01-01"), rec("new", "2026-02-01")]) == ["new"]
        assert runs([rec("new", "2026-02-01"), rec("old", "2026-01-01")]) == ["new"]
        assert runs([rec("first", "2026-01-01"), rec("second", "2026-01-01")]) == ["second"]
        assert runs([rec("dated", "2026-01-01"), rec("undated", None)]) == ["dated"]
        assert runs([rec("undated", None), rec("dated", "2026-01-01")]) == ["dated"]


# ---------------------------------------------------------------- the cost and detection tables

def cost_rec(run, stage, seed=0, wall=None, rss=None, cuda=None, method="ir", neg="uniform", task=None):
    extra = {} if method is None else {"method": method, "negatives": neg}
    return records.make(run, stage, task or stage, "cifar10", {}, {"train": {"seed": seed}}, seed=seed, wall_s=wall,
                        peak_rss_mb=rss, peak_cuda_mb=cuda, **extra)


def test_cost_table_in_stage_order_with_the_runs_of_each_group():
    recs = [cost_rec("t", "toy_mi", wall=3.0, rss=100.0, method=None),
            cost_rec("x", "custom", wall=1.0, rss=50.0),
            cost_rec("d", "detection", wall=40.0, rss=900.0),
            cost_rec("m", "metadataset", wall=20.0, rss=700.0),
            cost_rec("e", "evaluate", wall=5.0, rss=300.0),
            *(cost_rec(f"p{s}", "pretrain", seed=s, wall=100.0 + 10 * s, rss=1000.0 if s else None) for s in (0, 1, 2))]
    t = tables.cost(recs)
    assert t.name == "cost" and t.title == "Wall-clock time and peak memory"
    d = t.display
    assert list(d.columns) == ["stage", "task", "dataset", "method", "negatives", "runs", "wall-clock s", "peak RSS MiB"]
    assert list(d["stage"]) == ["pretrain", "evaluate", "metadataset", "detection", "toy_mi", "custom"]
    assert list(d["runs"]) == ["3", "1", "1", "1", "1", "1"]  # the most runs any column has
    assert d.iloc[0]["wall-clock s"] == "110.0 ± 10.0 (n=3)" and d.iloc[0]["peak RSS MiB"] == "1000 ± 0 (n=2)"
    assert d.iloc[4]["method"] == d.iloc[4]["negatives"] == "—" and d.iloc[1]["method"] == "IR"
    assert d.iloc[1]["negatives"] == "uniform" and d.iloc[4]["wall-clock s"] == "3.0"
    assert "index" not in t.numbers.columns and list(t.numbers.index) == list(range(6))
    with_cuda = tables.cost([cost_rec("g", "pretrain", wall=1.0, rss=1.0, cuda=2048.0), *recs]).display
    assert list(with_cuda.columns)[-1] == "peak CUDA MiB" and with_cuda.iloc[0]["peak CUDA MiB"] == "2048"
    assert tables.cost([]) is None


def det_rec(run, task, dataset, metrics, setting=None, neg="uniform"):
    extra = {} if setting is None else {"setting": setting}
    return records.make(run, "detection", task, dataset, metrics, {"train": {"seed": 0}}, seed=0, method="ir",
                        negatives=neg, **extra)


def test_detection_tables_per_task_and_setting_sorted_and_titled_by_what_ran():
    import zlib
    recs = [det_rec("a", "voc_c4", "voc", {"bbox/AP50": 80.0}, setting="24k iterations"),
            det_rec("b", "voc_c4", "voc", {"bbox/AP50": 81.0}, setting="48k iterations"),
            det_rec("c", "coco_fpn", "coco", {"bbox/AP": 38.0}),
            det_rec("d", "coco_fpn", "coco", {"bbox/AP": 39.5}, neg="ring")]
    made = tables.detection(frames.detection(recs))
    crc = lambda s: f"{zlib.crc32(s.encode()):08x}"  # noqa: E731
    # a task with several settings: every table's name says its setting (one not recorded: crc of "")
    assert [t.name for t in made] == ["detection_coco_fpn_00000000", f"detection_voc_c4_{crc('24k iterations')}",
                                      f"detection_voc_c4_{crc('48k iterations')}"]
    assert [t.title for t in made] == ["Detection (coco_fpn): coco_fpn on coco (settings not recorded)",
                                       "Detection (voc_c4): 24k iterations", "Detection (voc_c4): 48k iterations"]
    assert all(t.note.startswith("COCO-style AP (%). ") for t in made)
    assert set(made[0].numbers["task"]) == {"coco_fpn"}
    assert made[0].display.set_index("model").loc["Δ Ring (IR)", "bbox AP"] == "+1.5 (1 run: no interval)"
    one = tables.detection(frames.detection(recs[2:]))
    assert [t.name for t in one] == ["detection_coco_fpn"]  # one setting per task: no suffix


def test_pretraining_frame_reads_every_field_of_a_pretraining_record():
    cfg = {"train": {"seed": 3}, "method": {"name": "moco"}, "negatives": {"sampler": "ring", "outer": 0.2}}
    r = records.make("run", "pretrain", "pretrain", "stl10", {"final_loss": "2.5", "epochs": 6, "knn_top1": 40.0,
                     "false_negatives": 0.12, "images_per_s": None}, cfg, seed=3, log="runs/run/log.jsonl",
                     log_absolute="/abs/runs/run/log.jsonl")
    r["_path"] = "/results/run/pretrain/pretrain.json"
    other = records.make("e", "evaluate", "knn_stl10", "stl10", {"top1": 1.0}, cfg, seed=3)
    df = frames.pretraining([other, r])
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["run"], row["dataset"], row["method"], row["negatives"], row["seed"]) == ("run", "stl10", "moco", "ring", 3)
    assert (row["epochs"], row["final_loss"], row["knn_top1"], row["false_negatives"]) == (6.0, 2.5, 40.0, 0.12)
    assert math.isnan(row["images_per_s"])
    assert (row["log"], row["log_absolute"], row["_path"]) == ("runs/run/log.jsonl", "/abs/runs/run/log.jsonl",
                                                                "/results/run/pretrain/pretrain.json")
    assert row["config"] == cfg
    r["config"] = "not a config"
    assert frames.pretraining([r]).iloc[0]["config"] == {}
    assert list(frames.pretraining([]).columns) == list(df.columns)


# ---------------------------------------------------------------- a record's identity

def test_identity_from_the_config_first_and_the_record_where_the_config_is_silent():
    neg = {"sampler": "ring", "outer": 0.2, "inner": 0.1, "anneal": {"schedule": "linear", "epochs": 2},
           "neighbor_views": True}
    cfg = {"train": {"seed": 3}, "method": {"name": "moco"}, "negatives": neg}
    r = records.make("a", "evaluate", "knn_cifar10", "cifar10", {"top1": 1.0}, cfg, seed=0, wall_s=12.5,
                     peak_rss_mb=800.0, peak_cuda_mb=None)
    i = frames.identity(r)
    assert (i["run"], i["method"], i["negatives"], i["baseline"], i["seed"]) == ("a", "moco", "ring", "uniform", 3)
    assert i["negatives_setting"] == "outer 0.2, inner 0.1, linear anneal over 2 epochs, neighbour views"
    assert (i["ring_outer"], i["ring_anneal"], i["ring_neighbour_views"]) == (0.2, "linear", True)
    assert (i["wall_s"], i["peak_rss_mb"]) == (12.5, 800.0) and math.isnan(i["peak_cuda_mb"]) and not i["stale"]
    # a record without a config: its own fields, LA's legacy baseline, the run as its model
    bare = {"run": "b", "config": "none", "seed": 5, "method": "la", "negatives": "ball", "wall_s": "n/a"}
    i = frames.identity(bare)
    assert (i["method"], i["negatives"], i["baseline"], i["seed"], i["negatives_setting"]) == ("la", "ball", "ball", 5, "")
    assert math.isnan(i["ring_outer"]) and i["ring_anneal"] == "none" and i["ring_neighbour_views"] is False
    assert i["model_config"] == {"run": "b"} and math.isnan(i["wall_s"])
    unknown = frames.identity({"run": "c", "config": {"train": {}}})
    assert (unknown["method"], unknown["negatives"], unknown["seed"]) == ("?", "?", None)
    # the record's named baseline wins: a ring run is then its method's own baseline, no width shown
    named = frames.identity({**r, "baseline_sampler": "ring"})
    assert (named["baseline"], named["negatives_setting"]) == ("ring", "") and math.isnan(named["ring_outer"])
    assert frames.identity({**r, "config": {**cfg, "negatives": {**neg, "anneal": "linear"}}})["ring_anneal"] == "none"
    plain = frames.identity({**r, "config": {**cfg, "negatives": {"sampler": "ring"}}})
    assert plain["ring_anneal"] == "none" and plain["ring_neighbour_views"] is False


def test_model_of_fills_in_the_method_a_config_does_not_name():
    ir = frames.model_of({"run": "a", "config": {"train": {"seed": 0}}, "method": "ir", "negatives": "ring"})
    assert ir["method.name"] == "ir" and ir["negatives.sampler"] == "ring"
    assert frames.model_of({"run": "x", "config": None}) == {"run": "x"}


def test_numbers_and_percentages():
    assert frames.number(71.5) == 71.5 and frames.number("2") == 2.0
    for bad in (float("inf"), float("-inf"), float("nan"), None, "n/a", True):
        assert math.isnan(frames.number(bad)), bad
    assert not frames.out_of_range(0.0) and not frames.out_of_range(100.0) and not frames.out_of_range(math.nan)
    assert frames.out_of_range(-0.5) and frames.out_of_range(100.5)


def test_stale_compares_the_checkpoint_found_with_the_records_hash(tmp_path):
    import os
    root = tmp_path / "root"
    (root / "runs").mkdir(parents=True)
    a, b = root / "runs" / "a.pt", root / "runs" / "b.pt"
    a.write_bytes(b"weights-a")
    b.write_bytes(b"weights-b")  # the same size: a cache keyed by anything less than the file would mix them
    os.utime(a, ns=(1_000_000_000, 1_000_000_000))
    os.utime(b, ns=(1_000_000_000, 1_000_000_000))
    rec = lambda path, want, at=None: {"checkpoint": path, "checkpoint_sha256": want,  # noqa: E731
                                       "_path": at or str(root / "results" / "r" / "evaluate" / "t.json")}
    assert not frames.stale(rec(str(a), records.sha256(a))) and not frames.stale(rec(str(b), records.sha256(b)))
    assert frames.stale(rec(str(a), records.sha256(b)))
    assert not frames.stale(rec(str(a), None)) and not frames.stale(rec("", records.sha256(a)))
    # a relative path: beside the results folder (<root>/results/<run>/<stage>/<task>.json)
    assert frames.stale(rec("runs/a.pt", records.sha256(b))) and not frames.stale(rec("runs/a.pt", records.sha256(a)))
    assert not frames.stale(rec("runs/a.pt", records.sha256(b), at="r/evaluate/t.json"))  # no root above: not found
    assert not frames.stale(rec(str(root / "runs" / "gone.pt"), records.sha256(a)))


# ---------------------------------------------------------------- Meta-Dataset and detection records

def md_rec(run, task, dataset, metrics, **extra):
    return records.make(run, "metadataset", task, dataset, metrics, {"train": {"seed": 0}}, seed=0, method="ir",
                        negatives="uniform", **extra)


def test_metadataset_reader_names_protocol_head_and_domain_from_every_record_shape():
    recs = [evaluate_rec("e"),  # another stage first: skipped, not the end of the list
            md_rec("a", "linear_cu_birds", "cu_birds", {"top1": 61.0}),
            md_rec("b", "episodic_prototype_traffic_sign", "metadataset", {"top1": 70.0, "ci95": 0.8, "episodes": 600}),
            md_rec("c", "whatever", "metadataset", {"accuracy": 55.0, "ci": 1.1}, head="logreg", domain="dtd",
                   protocol={"name": "episodic", "official": False, "mode": "variable", "setting": "50 episodes"}),
            md_rec("d", "episodic_logreg_new_domain", "metadataset", {"acc": 33.0, "ci_95": 2.0}, episodes=40),
            md_rec("f", "episodic_proto_net_ilsvrc_2012", "ilsvrc_2012", {"mean": 44.0, "conf95": 3.0}),
            md_rec("g", "linear_my_source", "metadataset", {"top1": 20.0}, protocol="", domain=5, head=7),
            md_rec("h", "episodic_proto_net_metadataset", "metadataset", {"top1": 30.0},
                   protocol={"name": "episodic", "official": False, "mode": "fixed", "official_sampling": True}),
            md_rec("i", "linear_dtd", "dtd", {"top1": 50.0}, protocol={"name": "linear", "official": False})]
    df = frames.metadataset(recs).set_index("run")
    got = {run: (r["protocol"], r["head"], r["domain"], r["top1"]) for run, r in df.iterrows()}
    assert got == {"a": ("linear", "", "cu_birds", 61.0), "b": ("episodic", "prototype", "traffic_sign", 70.0),
                   "c": ("episodic", "logreg", "dtd", 55.0), "d": ("episodic", "logreg", "new_domain", 33.0),
                   "f": ("episodic", "proto_net", "ilsvrc_2012", 44.0), "g": ("linear", "", "my_source", 20.0),
                   # a dataset named like the whole benchmark names no domain: the task's rule does
                   "h": ("episodic", "proto", "net_metadataset", 30.0), "i": ("linear", "", "dtd", 50.0)}
    assert df.loc["b", "ci95"] == 0.8 and df.loc["c", "ci95"] == 1.1 and df.loc["d", "ci95"] == 2.0
    assert df.loc["f", "ci95"] == 3.0 and math.isnan(df.loc["a", "ci95"])
    assert df.loc["b", "episodes"] == 600 and df.loc["d", "episodes"] == 40 and math.isnan(df.loc["a", "episodes"])
    assert df.loc["c", "setting"] == "50 episodes" and df.loc["a", "setting"] == ""
    assert list(df["not_official"]) == [False, False, True, False, False, False, False, False]
    assert list(df["old_stream"]) == [False, True, True, True, True, False, False, False]
    assert list(frames.metadataset([]).columns) == list(frames.metadataset(recs).columns)


def test_metadataset_reader_skips_records_without_a_percentage():
    for bad, why in ((md_rec("x", "linear_dtd", "dtd", {"top1": "n/a"}), "without a numeric metrics.top1"),
                     (md_rec("y", "linear_dtd", "dtd", {"top1": 0.71}), None),
                     (md_rec("z", "linear_dtd", "dtd", {"top1": 171.0}), "outside 0..100")):
        if why is None:  # a fraction is in range: read as it is
            assert frames.metadataset([bad])["top1"].tolist() == [0.71]
            continue
        with pytest.warns(records.ReportWarning, match=why):
            assert frames.metadataset([bad]).empty


def test_detection_reader_keeps_coco_aps_in_range():
    import warnings
    good = det_rec("a", "coco_kp", "coco", {"bbox": {"AP": 40.0, "APs": 20.0}, "keypoint/AP": 60.0, "loss/AP": 3.0,
                                             "segm/AP75": "n/a", "bbox/AP50": 0.0}, setting="1x schedule")
    with warnings.catch_warnings():
        warnings.simplefilter("error", records.ReportWarning)  # nothing skipped, nothing warned
        df = frames.detection([evaluate_rec("e"), good, det_rec("b", "coco_kp", "coco", {"bbox/AP": 41.0})])
    assert [(r.run, r.metric, r.value, r.setting) for r in df.itertuples()] == [
        ("a", "bbox AP", 40.0, "1x schedule"), ("a", "keypoints AP", 60.0, "1x schedule"),
        ("a", "bbox AP50", 0.0, "1x schedule"), ("b", "bbox AP", 41.0, "")]
    with pytest.warns(records.ReportWarning, match="bbox AP = 150 is outside 0..100"):
        assert frames.detection([det_rec("c", "coco", "coco", {"bbox/AP": 150.0, "bbox/AP50": 60.0})]).empty
    assert list(frames.detection([]).columns) == list(df.columns)


# ---------------------------------------------------------------- the paper-layout tables: cells, order, titles

def test_cells_numbers_per_model_and_their_types():
    recs = [model_rec(f"u{s}", "ir", "uniform", 80.0 + s, seed=s) for s in (2, 0, 1)]
    recs += [model_rec(f"r{s}", "ir", "ring", 82.0 + s, seed=s) for s in (1, 0)]
    evals = tables.with_variants(tables.evaluations(recs), ["eval_id"])
    n = tables.cells(evals, "eval_id", "top1")
    assert list(n["negatives"]) == ["uniform", "ring", "ring"] and list(n["delta"]) == [False, False, True]
    assert n["seeds"].tolist() == [[0, 1, 2], [0, 1], [0, 1]]
    assert all(type(s) is int for seeds in n["seeds"] for s in seeds)  # whole seeds, not 0.0
    assert str(n["n"].dtype) == "Int64" and n["n"].tolist() == [3, 2, 2]
    assert n["baseline_id"].isna().tolist() == [True, True, False]
    assert n.loc[2, "baseline_id"] == n.loc[0, "model_id"] and n.loc[2, "mean"] == pytest.approx(2.0)
    empty = tables.cells(evals.iloc[:0], "eval_id", "top1")
    assert empty.empty and list(empty.columns) == list(n.columns)


def test_linear_tables_in_the_evaluations_order_then_settings_then_the_records_order():
    def rec(run, task, setting, top1=80.0, top5=95.0, follows=None):
        r = model_rec(run, "ir", "uniform", top1)
        r.update(task=task, setting=setting, metrics={"top1": top1, "top5": top5})
        if follows:
            r["protocol"] = {"follows": follows}
        return r
    recs = [rec("a", "probe_x_cifar10", "custom probe"), rec("b", "knn_k200_t0.07_cifar10", "weighted kNN"),
            rec("c", "linear_paper_cifar10", "paper z"), rec("d", "linear_paper_e1_cifar10", "paper a",
                                                              follows="the paper's probe, with epochs 100 -> 1"),
            rec("e", "linear_paper_e2_cifar10", "paper a")]
    made = tables.linear(tables.evaluations(recs))
    assert [(t.numbers["eval"].iloc[0], t.title.split(": ", 1)[1]) for t in made] == [
        ("linear_paper", "paper a"), ("linear_paper", "paper a"), ("linear_paper", "paper z"),
        ("knn", "weighted kNN"), ("probe_x", "custom probe")]
    assert made[0].title == ("Linear probe with the official Ring code's settings (epochs 100 -> 1), top1 accuracy (%): "
                             "paper a")  # then the one that follows its recipe: in the records' order
    assert made[1].title == "Linear probe with the official Ring code's settings, top1 accuracy (%): paper a"
    assert made[4].title == "probe_x, top1 accuracy (%): custom probe"  # an evaluation without a title: its name
    assert [t.name for t in made] == ["linear_paper_e1_top1", "linear_paper_e2_top1", "linear_paper_top1",
                                      "knn_k200_t0.07_top1", "probe_x_top1"]
    assert set(made[3].numbers["metric"]) == {"top1"} and "column" not in made[3].numbers
    # an evaluation without the metric has no table, and the others still do
    recs[2]["metrics"]["top5"] = None
    assert [t.numbers["eval"].iloc[0] for t in tables.linear(tables.evaluations(recs[1:3]), "top5")] == ["knn"]


def test_metadataset_tables_in_the_papers_order_with_their_titles_and_notes():
    def rec(run, task, domain, top1, head="", setting=None, episodes=None, **protocol):
        detail = {"name": task.split("_")[0], **protocol, **({"setting": setting} if setting else {})}
        metrics = {"top1": top1, **({"episodes": episodes} if episodes else {})}
        r = md_rec(run, task, domain, metrics, protocol=detail, domain=domain)
        if head:
            r["head"] = head
        return r
    recs = [rec("a", "episodic_prototype_x", "vgg_flower", 80.0, head="prototype", setting="a setting"),
            rec("b", "episodic_logreg_x", "aircraft", 70.0, head="logreg", setting="z setting"),
            rec("c", "adapt_x", "dtd", 60.0),
            rec("d", "linear_x", "a_custom", 50.0), rec("e", "linear_x", "cu_birds", 55.0),
            rec("f", "episodic_x", "dtd", 40.0, official=False, mode="variable", episodes=100)]
    made = tables.metadataset(frames.metadataset(recs))
    assert [(t.numbers["protocol"].iloc[0], t.numbers["head"].iloc[0]) for t in made] == [
        ("linear", ""), ("episodic", ""), ("episodic", "logreg"), ("episodic", "prototype"), ("adapt", "")]
    assert [t.title for t in made] == [
        "Meta-Dataset, per-domain linear probe on cached frozen features (settings not recorded)",
        "Meta-Dataset, episodes of the test classes, unnamed head (episodes per domain: 100; settings not recorded)",
        "Meta-Dataset, z setting", "Meta-Dataset, a setting", "Meta-Dataset, adapt"]
    assert list(made[0].display["domain"]) == ["cu_birds", "a_custom"]  # the paper's domains first
    assert made[0].display.columns.name is None and list(made[0].display.columns) == ["domain", "IR"]
    assert [t.name for t in made] == ["metadataset_linear", "metadataset_episodic", "metadataset_episodic_logreg",
                                      "metadataset_episodic_prototype", "metadataset_adapt"]
    one_run = " One run of an episodic evaluation shows its own 95% interval over its episodes."
    assert all(t.note.startswith(tables.INTERVAL_NOTE + one_run) for t in made)
    assert "Not Meta-Dataset's own evaluation for dtd: " in made[1].note
    assert "Not Meta-Dataset's own" not in made[0].note
    two = [rec("g", "episodic_prototype_x", "dtd", 41.0, head="prototype", official=False, mode="variable"),
           rec("h", "episodic_prototype_x", "aircraft", 42.0, head="prototype", official=False, mode="variable")]
    assert "Not Meta-Dataset's own evaluation for aircraft, dtd: " in tables.metadataset(frames.metadataset(two))[0].note
    import zlib
    again = tables.metadataset(frames.metadataset(recs + [rec("i", "linear_x", "dtd", 50.0, setting="L-BFGS")]))
    assert [t.name for t in again][:2] == [f"metadataset_linear_{zlib.crc32(b''):08x}",
                                           f"metadataset_linear_{zlib.crc32(b'L-BFGS'):08x}"]


def test_the_long_table_row_by_row_with_the_false_negatives_behind_each_difference(tmp_path):
    """Per method, dataset and evaluation (in the records' order), one row per compared model:
    both cells, the paired difference (stale where a side is), and each side's share of
    same-label negatives from its pretraining records."""
    def pre(run, method, sampler, fn):
        return records.make(run, "pretrain", "pretrain", "cifar10", {"false_negatives": fn, "epochs": 1},
                            {"train": {"seed": 0}}, seed=0, method=method, negatives=sampler)
    ckpt = tmp_path / "u.pt"
    ckpt.write_bytes(b"weights")
    recs = [model_rec("mu", "moco", "uniform", 60.0), model_rec("mr", "moco", "ring", 62.5),
            model_rec("u0", "ir", "uniform", 80.0), model_rec("u1", "ir", "uniform", 81.0, seed=1),
            model_rec("r0", "ir", "ring", 83.0), model_rec("r1", "ir", "ring", 85.0, seed=1)]
    recs[2].update(checkpoint=str(ckpt), checkpoint_sha256="not its hash")  # u0's checkpoint changed since
    pres = frames.pretraining([pre("u0", "ir", "uniform", 0.3), pre("u1", "ir", "uniform", 0.4),
                               pre("r0", "ir", "ring", 0.1), pre("r1", "ir", "ring", 0.2)])
    t = tables.ring_vs_baseline(tables.evaluations(recs), pre=pres)
    assert list(t["method"]) == ["moco", "ir"] and list(t["dataset"]) == ["cifar10"] * 2
    assert list(t["eval"]) == ["linear_paper"] * 2 and list(t["baseline negatives"]) == ["uniform"] * 2
    moco, ir = t.iloc[0], t.iloc[1]
    assert (moco["model"], moco["baseline"], moco["with the sampler"]) == \
        ("MoCo + Ring (outer 0.1, inner 0.1)", "60.00 (1 run: no interval)", "62.50 (1 run: no interval)")
    assert moco["Δ (paired)"] == "+2.50 (1 run: no interval)" and not moco["stale"]
    assert moco["false negatives (baseline → sampler)"] == "—" and math.isnan(moco["fn_baseline"])
    assert ir["Δ (paired)"] == "+3.50 [-2.85, +9.85] (n=2) ○ (stale)" and ir["stale"]  # 3.5 ± 12.71 x 0.71 / 1.41
    assert ir["false negatives (baseline → sampler)"] == "0.35 → 0.15"
    assert (ir["fn_baseline"], ir["fn_sampler"]) == pytest.approx((0.35, 0.15))
    assert (ir["pairs"], ir["seeds"], ir["includes_zero"]) == (2, [0, 1], True)
    ids = tables.evaluations(recs).set_index("run")["model_id"]
    assert (ir["model_id"], ir["baseline_id"]) == (ids["r0"], ids["u0"])
    assert tables.ring_vs_baseline(tables.evaluations(recs))["false negatives (baseline → sampler)"].tolist() == ["—"] * 2


def test_paired_interval_of_object_columns_equals_that_of_floats():
    """A metric column of records read from JSON can hold Python ints and floats (object dtype):
    the interval is that of the same numbers as floats."""
    a, b = [81, 82.5, 90], [80, 81.0, 88.0]
    want = stats.paired_interval([81.0, 82.5, 90.0], [80.0, 81.0, 88.0])
    assert stats.paired_interval(pd.Series(a, dtype=object), pd.Series(b, dtype=object)) == want
    assert stats.paired_interval(pd.Series(a, dtype=object), b) == want
    assert stats.paired_interval(a, pd.Series(b, dtype=object)) == want


def test_each_bad_evaluation_record_is_left_out_alone_and_each_metric_is_checked():
    """A record left out (top-1 not a number, top-1 or top-5 outside 0..100, another stage) does
    not end the reading: the records after it are rows. A record's `evaluation` names its eval."""
    def rec(run, top1=80.0, top5=95.0, **extra):
        r = evaluate_rec(run, **extra)
        r["metrics"] = {"top1": top1, "top5": top5}
        return r

    other_stage = {**rec("p"), "stage": "pretrain"}
    recs = [rec("nan", top1="n/a"), rec("a"), rec("top1", top1=157.3), rec("b"), rec("top5", top5=-12.0),
            rec("c"), other_stage, rec("d", evaluation="linear_moco")]
    with pytest.warns(frames.ReportWarning) as seen:
        df = frames.evaluations(recs)
    assert list(df["run"]) == ["a", "b", "c", "d"]
    said = " ".join(str(w.message) for w in seen)
    assert "metrics.top1 = 157.3 is outside 0..100" in said and "metrics.top5 = -12.0 is outside 0..100" in said
    assert list(df["eval"]) == ["linear_paper", "linear_paper", "linear_paper", "linear_moco"]


def test_a_bad_metadataset_record_leaves_the_next_ones_and_old_streams_are_marked():
    """A record left out (top-1 not a number, or outside 0..100) does not end the reading. A
    head with an underscore is told from the domain by the known domains; an episodic record is
    of the old description stream unless it says `official_sampling` or ran fixed episodes."""
    def ep(run, top1=60.0, **protocol):
        return md_rec(run, "episodic_fine_tune_cu_birds", "metadataset", {"top1": top1},
                      protocol={"name": "episodic", **protocol})

    recs = [ep("nan", top1="n/a"), ep("old"), ep("range", top1=101.0), ep("new", official_sampling=True),
            ep("fixed", mode="fixed")]
    with pytest.warns(frames.ReportWarning):
        df = frames.metadataset(recs).set_index("run")
    assert list(df.index) == ["old", "new", "fixed"]
    assert list(df["head"]) == ["fine_tune"] * 3 and list(df["domain"]) == ["cu_birds"] * 3
    assert list(df["old_stream"]) == [True, False, False]


def test_an_unreadable_toy_estimate_leaves_the_next_ones_and_no_record_keeps_the_columns():
    rec = toy_rec("a", {"true_mi": 1.0}, [{"estimator": "cnce@x", "mean": 0.5},  # no width: left out
                                          {"estimator": "nce", "mean": 0.9}, {"estimator": "cnce@0.1", "mean": 0.95}])
    df = frames.toy_mi([rec])
    assert list(df["estimator"]) == ["nce", "cnce@0.1"] and list(df["outer"]) == [1.0, 0.1]
    assert list(frames.toy_mi([]).columns) == list(df.columns) == frames.IDENTITY + [
        "true_mi", "estimator", "outer", "inner", "mean", "std", "bias", "std_negatives", "harder"]


def test_a_strategy_setting_without_a_symbol_is_named_by_its_key():
    """A strategy registered later, with settings of its own names, is described all the same."""
    neg = {"sampler": "uniform", "objective": "new", "new": {"gamma": 0.5, "beta": 2.0}}
    assert frames.negatives_setting(neg) == "gamma 0.5, β 2"


# ---------------------------------------------------------------- survivors of the 12-07 run

def test_models_that_still_read_alike_get_their_config_fingerprint():
    """Two IR models that differ in two keys, and two that differ only in how a float prints:
    the first pair names both keys; the second would be one row, so each gets its fingerprint."""
    df = pd.DataFrame({"method": ["ir"] * 4, "negatives": ["uniform"] * 4, "negatives_setting": [""] * 4,
                       "dataset": ["cifar10"] * 4,
                       "model_id": ["aaaaaa11", "bbbbbb22", "cccccc33", "dddddd44"],
                       "model_config": [{"optim.lr": 0.1, "optim.epochs": 2}, {"optim.lr": 0.2, "optim.epochs": 4},
                                        {"optim.lr": 0.3, "optim.epochs": 2}, {"optim.lr": 0.3000001, "optim.epochs": 2}]})
    out = tables.with_variants(df, ["dataset"])
    assert list(out["variant"]) == ["epochs 2, lr 0.1", "epochs 4, lr 0.2",
                                    "epochs 2, lr 0.3, config cccccc", "epochs 2, lr 0.3, config dddddd"]
    same = tables.with_variants(df.iloc[[2, 3]].assign(model_config=[{}, {}]), ["dataset"])
    assert list(same["variant"]) == ["config cccccc", "config dddddd"]  # no key to name: the fingerprint alone
    assert list(tables.with_variants(df.iloc[:1], ["dataset"])["variant"]) == [""]  # one model: nothing to tell


def test_which_keys_the_row_label_shows():
    assert tables.shown_by_sampler("negatives.outer") and tables.shown_by_sampler("negatives.hcl.beta")
    assert not tables.shown_by_sampler("negatives.num")  # two parts, not a strategy's section: a variant key
    assert not tables.shown_by_sampler("negatives.anneal.start") and not tables.shown_by_sampler("optim.lr.x")


def test_the_sampler_order_is_ring_then_the_other_samplers_then_the_strategies():
    tables.learn_names([])
    assert tables.SAMPLER_ORDER == ("ring", "uniform", "ball", "infonce", "dcl", "hcl")


def test_cost_rows_follow_the_stages_then_the_tasks_and_datasets():
    recs = [cost_rec("a", "evaluate", task="linear_b", wall=1.0), cost_rec("b", "evaluate", task="knn_a", wall=2.0),
            cost_rec("c", "pretrain", task="pretrain", wall=3.0), cost_rec("d", "evaluate", task="linear_a", wall=4.0)]
    d = tables.cost(recs).display
    assert list(zip(d["stage"], d["task"])) == [("pretrain", "pretrain"), ("evaluate", "knn_a"),
                                                ("evaluate", "linear_a"), ("evaluate", "linear_b")]


def test_the_toy_table_carries_its_note():
    toy = frames.toy_mi([records.make("toy", "toy_mi", "toy_mi", "gaussian", {}, {}, seed=0, estimates=[
        {"true_mi": 1.0, "estimator": "nce", "outer": 1.0, "inner": 0.0, "mean": 0.9, "std": 0.1, "bias": -0.1,
         "std_negatives": 0.05, "harder": 0.0}])])
    table = tables.toy_mi(toy)[0]
    assert table.note.startswith("Estimates of the mutual information (nats)")


def contaminated_rec(run, domain, why, top1=50.0):
    return md_rec(run, f"linear_{domain}", domain, {"top1": top1}, contaminated=why)


def test_contaminated_cells_are_marked_and_their_reasons_listed():
    """' †' where the pretraining saw the domain's images, ' (†)' where it possibly did, on the
    model's row (not on its Δ row); the number stays; each reason once, without its prefix."""
    recs = [contaminated_rec("a", "ilsvrc_2012", "yes: ImageNet train holds these images: the same files"),
            contaminated_rec("a", "cu_birds", "possibly: ImageNet holds bird classes"),
            contaminated_rec("a", "dtd", "")]
    ring = [dict(r, run="b", negatives="ring", config={"train": {"seed": 0}, "negatives": {"sampler": "ring"}})
            for r in recs]
    t = tables.metadataset(frames.metadataset(recs + ring))[0]
    cells = t.display.set_index("domain")
    one = "50.00 (1 run: no interval)"
    assert dict(cells["IR"]) == {"ilsvrc_2012": one + " †", "cu_birds": one + " (†)", "dtd": one}
    assert dict(cells["IR + Ring"]) == dict(cells["IR"])
    assert not any("†" in c for c in cells["Δ Ring (IR)"])
    assert t.note.endswith(" † the backbone's pretraining saw these images (ImageNet holds bird classes; ImageNet "
                           "train holds these images: the same files); (†) possibly.")


def test_a_protocol_the_report_does_not_know_is_titled_by_its_name_and_head():
    rec = md_rec("a", "adapt_x", "dtd", {"top1": 60.0}, protocol={"name": "adapt"}, head="film")
    assert tables.metadataset(frames.metadataset([rec]))[0].title == "Meta-Dataset, adapt film"
    old = md_rec("b", "episodic_x", "dtd", {"top1": 40.0}, protocol={"name": "episodic"})
    assert tables.metadataset(frames.metadataset([old]))[0].title == (
        "Meta-Dataset, episodes of the test classes, unnamed head (episodes not recorded; settings not recorded)")


def test_identity_falls_back_to_the_config_for_the_method_and_anneal():
    r = records.make("r", "pretrain", "pretrain", "cifar10", {}, {"method": {"name": "moco"},
                                                                   "negatives": {"sampler": "ring", "anneal": {}}})
    r.pop("method", None)
    ident = frames.identity(r)
    assert ident["method"] == "moco" and ident["ring_anneal"] == "none"


def test_a_detection_table_without_a_setting_names_every_dataset_it_holds():
    recs = [det_rec("a", "coco_fpn", "coco", {"bbox/AP": 38.0}), det_rec("b", "coco_fpn", "tiny_coco", {"bbox/AP": 9.0})]
    made = tables.detection(frames.detection(recs))
    assert made[0].title == "Detection (coco_fpn): coco_fpn on coco, tiny_coco (settings not recorded)"


def test_a_pretraining_seed_that_is_not_a_number_is_shown_as_missing():
    r = records.make("a", "pretrain", "pretrain", "cifar10", {"final_loss": 1.0, "epochs": 1}, {"train": {"seed": 0}},
                     seed=0, method="ir", negatives="uniform")
    df = tables.pretraining_runs(frames.pretraining([r]).assign(seed=["s0"]))
    assert df["seed"].isna().all() and str(df["seed"].dtype) == "Int64"
