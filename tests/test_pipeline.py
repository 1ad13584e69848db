"""End to end through the real entry points: pretrain -> checkpoint -> evaluate -> report."""
import json

import pytest
import torch

import formats

from evaluate.__main__ import main as evaluate_main
from pretrain.__main__ import main as pretrain_main
from reports.__main__ import main as reports_main

TINY = ["data.dataset=photo_patches", "data.limit=128", "data.workers=0", "optim.batch_size=32",
        "optim.epochs=2", "optim.schedule=cosine", "model.feat_dim=32", "negatives.num=64",
        "method.queue_size=64", "train.knn_every=0", "train.log_every=1"]


def pretrain(tmp_path, name, *extra, resume=None):
    args = ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    for s in TINY + [f"name={name}", *extra]:
        args += ["--set", s]
    if resume:
        args += ["--resume", resume]
    return pretrain_main(args)


def weights(path):
    p = torch.load(path, weights_only=True)
    return {**p["backbone"], **{f"head.{k}": v for k, v in p["head"].items()},
            **{f"m.{k}": v for k, v in p["method_state"].items()}}


@pytest.mark.slow
def test_end_to_end_pipeline(tmp_path, capsys):
    """On tiny files in the real CIFAR-10 format, read through torchvision's loader."""
    formats.write_cifar10(tmp_path / "data")
    cifar = ["data.dataset=cifar10", f"data.root={tmp_path / 'data'}", "data.verify_checksums=false"]
    for sampler in ("uniform", "ring"):
        assert pretrain(tmp_path, f"ir_{sampler}", f"negatives.sampler={sampler}", "train.knn_every=2", *cifar) == 0
        ckpt = tmp_path / "runs" / f"ir_{sampler}" / "final.pt"
        common = ["--ckpt", str(ckpt), "--results", str(tmp_path / "results"), "--workers", "0",
                  "--data-root", str(tmp_path / "data"), "--no-verify"]
        assert evaluate_main(["linear", "--protocol", "cached", *common]) == 0
        assert evaluate_main(["knn", *common]) == 0
    rec = json.loads((tmp_path / "results/ir_ring/evaluate/linear_cached_cifar10.json").read_text())
    assert rec["stage"] == "evaluate" and rec["negatives"] == "ring" and rec["method"] == "ir"
    assert 10.0 < rec["metrics"]["top1"] <= 100.0  # real accuracy on 10 classes, above chance
    assert rec["protocol"]["paper_protocol"] is False and len(rec["checkpoint_sha256"]) == 64
    pre = json.loads((tmp_path / "results/ir_ring/pretrain/pretrain.json").read_text())
    assert pre["metrics"]["steps"] == 6 and "knn_top1" in pre["metrics"]  # 100 images, batch 32
    log = [json.loads(l) for l in (tmp_path / "runs/ir_ring/log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "outer" in e] == list(range(1, 7))
    assert reports_main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    row = next(l for l in report.splitlines() if l.startswith("| ir ") and "linear_cached" in l)
    cells = [c.strip() for c in row.strip("|").split("|")]
    uniform, ring, diff = float(cells[3]), float(cells[4]), float(cells[5])
    assert diff == pytest.approx(ring - uniform, abs=0.011)


@pytest.mark.slow
@pytest.mark.parametrize("method,sampler,device_path", [("ir", "ring", False), ("moco", "ring", False),
                                                        ("la", "ring", False), ("moco", "ring", True)])
def test_exact_resume_mid_epoch(tmp_path, method, sampler, device_path):
    common = [f"method.name={method}", f"negatives.sampler={sampler}", "negatives.outer=0.5",
              "negatives.anneal.schedule=linear", "negatives.anneal.epochs=2", "model.bn_splits=2",
              "method.la_clusters=8"]
    if device_path:  # the GPU path's pieces, on CPU: batched kornia augmentation, bf16 autocast
        common += ["data.gpu_augment=true", "train.precision=bf16"]
    assert pretrain(tmp_path, "straight", *common) == 0
    assert pretrain(tmp_path, "interrupted", *common, "train.ckpt_every=1", "train.keep_last=100") == 0
    run = tmp_path / "runs" / "interrupted"
    straight = weights(tmp_path / "runs/straight/final.pt")
    interrupted = weights(run / "final.pt")
    assert straight.keys() == interrupted.keys()
    assert all(torch.equal(straight[k], interrupted[k]) for k in straight)  # checkpointing is invisible
    # lose everything after step 5 (mid epoch 2 of 2) and resume from the newest checkpoint
    for f in (run / "checkpoints").glob("ckpt_step*.pt"):
        if int(f.stem[9:]) > 5:
            f.unlink()
    (run / "final.pt").unlink()
    assert pretrain(tmp_path, "interrupted", *common, "train.ckpt_every=1", "train.keep_last=100", resume="auto") == 0
    resumed = weights(run / "final.pt")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    steps = [json.loads(l)["step"] for l in (run / "log.jsonl").read_text().splitlines()]
    assert [s for s in steps if s <= 8] == sorted(s for s in steps if s <= 8) and steps.count(6) == 1


def test_resume_refuses_a_changed_config(tmp_path, capsys):
    assert pretrain(tmp_path, "r", "optim.epochs=1", "data.limit=64") == 0
    assert pretrain(tmp_path, "r", "optim.epochs=2", "data.limit=64", "optim.lr=0.5", resume="auto") == 2
    assert "config key 'optim.lr' is 0.5 but the checkpoint was trained with 0.03" in capsys.readouterr().err


def test_non_finite_loss_stops_with_step_and_keeps_checkpoint(tmp_path, capsys):
    code = pretrain(tmp_path, "nan", "optim.lr=1e30", "train.ckpt_every=1", "data.limit=64")
    err = capsys.readouterr().err
    assert code == 1 and "non-finite loss" in err and "at step" in err
    assert not (tmp_path / "results" / "nan").exists()
    ckpts = list((tmp_path / "runs/nan/checkpoints").glob("ckpt_step*.pt"))
    for c in ckpts:  # what was saved is a good (finite) state
        assert all(torch.isfinite(v).all() for v in torch.load(c, weights_only=True)["backbone"].values()
                   if v.is_floating_point())


def test_bad_inputs_fail_fast_with_one_line_and_no_record(tmp_path, capsys):
    assert pretrain(tmp_path, "bad", "optim.lrr=0.1") == 2
    assert "unknown config key 'optim.lrr'" in capsys.readouterr().err
    assert pretrain(tmp_path, "bad", "data.dataset=cifar10", f"data.root={tmp_path}/none") == 2
    err = capsys.readouterr().err
    assert "cifar-10-batches-py: directory not found" in err and err.count("\n") == 1
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    assert evaluate_main(["knn", "--ckpt", str(bad), "--dataset", "photo_patches", "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "corrupt or truncated checkpoint" in err and str(bad) in err and err.count("\n") == 1
    assert pretrain(tmp_path, "bad", "optim.epochs=ten") == 2  # wrong type
    err = capsys.readouterr().err
    assert "key 'optim.epochs': expected an integer" in err and err.count("\n") == 1
    cifar = tmp_path / "cifar-10-batches-py"  # right directory, wrong format inside
    cifar.mkdir()
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch", "batches.meta"]:
        (cifar / name).write_bytes(b"not a pickle")
    assert pretrain(tmp_path, "bad", "data.dataset=cifar10", f"data.root={tmp_path}", "data.verify_checksums=false") == 2
    err = capsys.readouterr().err
    assert "cannot read cifar10" in err and err.count("\n") == 1
    import torchvision  # a checkpoint of another architecture than the one asked for
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pt")
    assert evaluate_main(["knn", "--ckpt", str(tmp_path / "r18.pt"), "--arch", "resnet50", "--dataset", "photo_patches",
                          "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "holds a resnet18 backbone, but resnet50 was requested" in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_identical_weights(tmp_path):
    """Real SIGKILLs of a pretraining subprocess (benchmarks/fault_injection.py), twice in a row."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    import fault_injection
    assert fault_injection.check(tmp_path, kills=2, method="moco", seed=1) == []


def test_resume_auto_skips_a_corrupt_newest_checkpoint(tmp_path, capsys):
    assert pretrain(tmp_path, "c", "optim.epochs=1", "data.limit=96", "train.ckpt_every=1", "train.keep_last=5") == 0
    ckpts = sorted((tmp_path / "runs/c/checkpoints").glob("ckpt_step*.pt"))
    newest = ckpts[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a full disk
    with pytest.warns(UserWarning, match="skipping .*corrupt or truncated"):
        assert pretrain(tmp_path, "c", "optim.epochs=1", "data.limit=96", "train.ckpt_every=1",
                        "train.keep_last=5", resume="auto") == 0
    assert f"resumed from {ckpts[-2]}" in capsys.readouterr().out
