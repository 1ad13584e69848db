"""What a run says it did is what it did (docs/design.md §7): the band it trained with, a
resume that changed its length, the k a kNN used, and metrics a report can believe."""
import json

import pytest

from core import records
from evaluate.__main__ import main as evaluate_main
from reports import frames
from tests.test_bad_input import pretrain


def record(tmp_path, name):
    return json.loads((tmp_path / "results" / name / "pretrain" / "pretrain.json").read_text())


def test_the_record_carries_the_band_that_trained_not_the_one_asked_for(tmp_path, capsys):
    """outer = 1e-5 with a 2-epoch anneal and 1 epoch: the outer edge never got below 0.75."""
    ring = ["negatives.sampler=ring", "negatives.outer=0.00001", "negatives.anneal.schedule=linear",
            "negatives.anneal.epochs=2"]
    assert pretrain(tmp_path, "a", *ring) == 0
    band = record(tmp_path, "a")["band"]
    # 64 images: a pool of 63 other rows; 2 steps an epoch, so the last step is at epoch 0.5
    outer = 0.00001 + (1 - 0.00001) * (1 - 0.5 / 2)
    assert band["outer_last"] == pytest.approx(outer) and band["pool"] == 63
    assert band["first"] == 63 - int(0.1 * 63) and band["last"] == int(outer * 63) - int(0.1 * int(outer * 63))
    assert band["size_min"] == band["last"] and band["size_max"] == band["first"]
    assert record(tmp_path, "a")["warnings"] == []  # 43 rows for 16 draws: enough


def test_a_band_smaller_than_the_draws_is_a_warning_at_start_in_the_log_and_the_record(tmp_path, capsys):
    assert pretrain(tmp_path, "b", "negatives.sampler=ring", "negatives.outer=0.00001") == 0
    rec = record(tmp_path, "b")
    assert rec["band"]["size_min"] == 1 and rec["band"]["outer_last"] == pytest.approx(0.00001)
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "warning: negatives" in line]
    assert len(warning) == 1 and "holds 1 of 63 pool rows" in warning[0] and "16 negatives ir draws" in warning[0]
    assert rec["warnings"] == [warning[0].split("warning: ", 1)[1]]
    first = json.loads((tmp_path / "runs" / "b" / "log.jsonl").read_text().splitlines()[0])
    assert first == {"step": 0, "warning": rec["warnings"][0]}


def test_resuming_with_more_epochs_says_so_at_resume_and_in_the_record(tmp_path, capsys):
    assert pretrain(tmp_path, "c") == 0
    capsys.readouterr()
    assert pretrain(tmp_path, "c", "optim.epochs=2", extra=["--resume", "auto"]) == 0
    err = capsys.readouterr().err
    assert "warning: resuming a 1-epoch run as a 2-epoch run at epoch 1" in err
    assert record(tmp_path, "c")["epoch_changes"] == [{"from": 1, "to": 2, "at_epoch": 1, "at_step": 2}]
    assert pretrain(tmp_path, "d") == 0
    assert record(tmp_path, "d")["epoch_changes"] == []


def test_knn_with_more_neighbours_than_the_bank_is_refused(tmp_path, capsys):
    assert pretrain(tmp_path, "k") == 0
    capsys.readouterr()
    argv = ["knn", "--ckpt", str(tmp_path / "runs" / "k" / "final.pt"), "--k", "100000", "--workers", "0",
            "--results", str(tmp_path / "res")]
    assert evaluate_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--k 100000: more neighbours than the" in err and "expected at most" in err
    assert not list((tmp_path / "res").rglob("*.json"))


@pytest.mark.parametrize("stage,metrics", [("evaluate", {"top1": 157.3}), ("evaluate", {"top1": 50.0, "top5": -12}),
                                           ("metadataset", {"top1": 101.0}), ("detection", {"bbox/AP": 250.0})])
def test_a_metric_outside_its_range_is_a_warning_and_the_record_is_left_out(stage, metrics):
    task = {"evaluate": "knn_k5_t0.07_cifar10", "metadataset": "linear_dtd", "detection": "coco_mask_fpn"}[stage]
    bad = records.make("bad", stage, task, "cifar10", metrics, {}, method="ir", negatives="uniform")
    good = records.make("good", stage, task, "cifar10", {"top1": 50.0, "bbox/AP": 30.0}, {}, method="ir",
                        negatives="uniform", seed=1)
    read = {"evaluate": frames.evaluations, "metadataset": frames.metadataset, "detection": frames.detection}[stage]
    with pytest.warns(records.ReportWarning, match="outside 0..100"):
        df = read([bad, good])
    assert set(df["run"]) == {"good"}
