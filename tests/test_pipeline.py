"""End to end through the real entry points: pretrain -> checkpoint -> evaluate -> report."""
import json

import formats
import pytest
import torch

from evaluate.__main__ import main as evaluate_main
from pretrain.__main__ import main as pretrain_main
from reports.__main__ import main as reports_main

TINY = ["data.dataset=photo_patches", "data.limit=128", "data.workers=0", "optim.batch_size=32",
        "optim.epochs=2", "optim.schedule=cosine", "model.feat_dim=32", "negatives.num=64",
        "method.moco.queue_size=64", "train.knn_every=0", "train.log_every=1"]


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


def independent_features(ckpt, root):
    """Features of CIFAR-10's train and test files without ringbench: the pickles read by hand,
    the checkpoint's backbone loaded strictly into torchvision's resnet18."""
    import pickle

    import numpy as np
    import torchvision

    payload = torch.load(ckpt, weights_only=True)
    net = torchvision.models.resnet18()
    net.fc = torch.nn.Identity()
    if payload["cifar_stem"]:
        net.conv1, net.maxpool = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False), torch.nn.Identity()
    net.load_state_dict(payload["backbone"], strict=True)
    net.eval()
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    out = []
    for names in ([f"data_batch_{k}" for k in range(1, 6)], ["test_batch"]):
        batches = [pickle.loads((root / "cifar-10-batches-py" / n).read_bytes()) for n in names]
        pixels = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)
        x = (torch.from_numpy(pixels).float() / 255 - mean) / std
        with torch.no_grad():
            out += [net(x).double().numpy(), np.concatenate([b["labels"] for b in batches])]
    return out


@pytest.mark.slow
def test_end_to_end_pipeline(tmp_path, capsys):
    """On tiny files in the real CIFAR-10 format, read through torchvision's loader. The
    evaluation records hold the answers an independent computation from the checkpoint gives
    (torchvision's resnet18, the data files read by hand): kNN exactly up to float32 ties, the
    converged cached probe within one test image."""
    import numpy as np

    formats.write_cifar10(tmp_path / "data", per_batch=40, test=100, jitter=70.0)  # overlapping classes
    cifar = ["data.dataset=cifar10", f"data.root={tmp_path / 'data'}", "data.verify_checksums=false"]
    results = tmp_path / "results"
    top1 = {}
    for sampler in ("uniform", "ring"):
        assert pretrain(tmp_path, f"ir_{sampler}", f"negatives.sampler={sampler}", "train.knn_every=2", *cifar) == 0
        ckpt = tmp_path / "runs" / f"ir_{sampler}" / "final.pt"
        common = ["--ckpt", str(ckpt), "--results", str(results), "--workers", "0",
                  "--data-root", str(tmp_path / "data"), "--no-verify"]
        # to convergence (a near-separable task needs thousands of iterations): the optimum of a
        # strictly convex objective, which scikit-learn reaches too
        # on the unaugmented features (--views 0), which the independent computation reproduces
        assert evaluate_main(["linear", "--protocol", "cached", "--epochs", "5000", "--views", "0", *common]) == 0
        assert evaluate_main(["knn", "--k", "20", "--t", "0.1", *common]) == 0
        lin = json.loads((results / f"ir_{sampler}/evaluate/linear_cached_i5000_cifar10.json").read_text())
        knn = json.loads((results / f"ir_{sampler}/evaluate/knn_k20_t0.1_cifar10.json").read_text())
        xtr, ytr, xte, yte = independent_features(ckpt, tmp_path / "data")
        # kNN: cosine similarity, the 20 nearest vote with weight exp(sim / 0.1). A young network's
        # features are nearly parallel: where the 20th and 21st neighbours, or the two best
        # classes, tie to float32 precision, either answer is right (measured: 1 such image in 100)
        ntr, nte = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (xtr, xte))
        sim = nte @ ntr.T
        votes, tied = np.zeros((len(xte), 10)), 0
        for i, row in enumerate(sim):
            order = np.argsort(-row)
            for j in order[:20]:
                votes[i, ytr[j]] += np.exp(row[j] / 0.1)
            best = np.sort(votes[i])[-2:]
            tied += row[order[19]] - row[order[20]] < 1e-5 or best[1] - best[0] < 1e-4 * best[1]
        ours = 100.0 * (votes.argmax(1) == yte).mean()
        assert abs(knn["metrics"]["top1"] - ours) <= 100.0 * tied / len(yte) + 1e-4, (knn["metrics"]["top1"], ours, tied)
        # cached probe, converged: the optimum of a strictly convex objective, found again from the
        # independent features (the solver itself is checked against scikit-learn in
        # test_evaluate.py); 100 test images, one image = 1 point. Measured: equal
        from evaluate.linear import fit_cached
        layer = fit_cached(torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr), 10, 1e-5, 5000)
        with torch.no_grad():
            again = 100.0 * (layer(torch.tensor(xte, dtype=torch.float32)).argmax(1).numpy() == yte).mean()
        assert lin["fit"]["converged"] and layer.fit_info["converged"]
        assert abs(lin["metrics"]["top1"] - again) <= 1.0 + 1e-4, (lin["metrics"]["top1"], again)
        assert lin["protocol"]["paper_protocol"] is False and "L-BFGS" in lin["setting"]
        assert lin["negatives"] == sampler and lin["method"] == "ir" and lin["baseline_sampler"] == "uniform"
        assert lin["checkpoint_sha256"] == __import__("hashlib").sha256(ckpt.read_bytes()).hexdigest()
        top1[sampler] = lin["metrics"]["top1"]
    pre = json.loads((results / "ir_ring/pretrain/pretrain.json").read_text())
    assert pre["metrics"]["steps"] == 8 and "knn_top1" in pre["metrics"]  # data.limit 128, batch 32, 2 epochs
    log = [json.loads(l) for l in (tmp_path / "runs/ir_ring/log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "outer" in e] == list(range(1, 9))
    assert reports_main(["--results", str(results), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    row = next(l for l in report.splitlines() if l.startswith("| ir ") and "linear_cached_i5000" in l)
    cells = [c.strip() for c in row.strip("|").split("|")]
    # method, dataset, eval, baseline negatives, model, baseline, with the sampler, Δ (paired), false
    # negatives; one seed: each cell leads with its value. The difference is the records' own
    # values subtracted here, not the renderer's
    assert cells[3] == "uniform" and cells[4].startswith("IR + Ring (outer 0.1")
    assert float(cells[5].split()[0]) == pytest.approx(top1["uniform"], abs=0.005)
    assert float(cells[6].split()[0]) == pytest.approx(top1["ring"], abs=0.005)
    assert float(cells[7].split()[0]) == pytest.approx(top1["ring"] - top1["uniform"], abs=0.011)
    assert "no interval" in cells[7], cells


@pytest.mark.slow
@pytest.mark.parametrize("method,sampler,device_path", [("ir", "ring", False), ("moco", "ring", False),
                                                        ("la", "ring", False), ("moco", "ring", True)])
def test_exact_resume_mid_epoch(tmp_path, method, sampler, device_path):
    common = [f"method.name={method}", f"negatives.sampler={sampler}", "negatives.outer=0.5",
              "negatives.anneal.schedule=linear", "negatives.anneal.epochs=2", "model.bn_splits=2",
              "method.la.clusters=8", "method.la.warm_start_epochs=1"]  # LA: resumed after its IR warm start
    if device_path:  # the GPU path's pieces, on CPU: batched kornia augmentation, bf16 autocast, fused SGD
        common += ["data.gpu_augment=true", "train.precision=bf16", "train.fused_optimizer=on"]
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


@pytest.mark.slow
def test_compiled_training_keeps_checkpoints_and_resumes_exactly(tmp_path, monkeypatch):
    """train.compile: the backbones and heads compiled in place train as the eager ones, save
    the same checkpoint keys, and resume bit for bit. torch.compile's capture and autograd run
    here; its code generator is swapped for aot_eager (Inductor takes minutes to build a ResNet
    on CPU, and generating kernels is torch's own job)."""
    compile_module = torch.nn.Module.compile
    calls, marks = [], []

    def aot_eager(self, mode=None):
        calls.append((type(self).__name__, mode))
        return compile_module(self, backend="aot_eager")  # (a mode is Inductor's)

    monkeypatch.setattr(torch.nn.Module, "compile", aot_eager)
    torch._dynamo.reset()
    common = ["method.name=moco", "negatives.sampler=ring", "data.limit=64", "optim.epochs=2", "model.bn_splits=2"]
    assert pretrain(tmp_path, "eager", *common) == 0
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    compiled_run = [*common, "train.compile=true", "train.compile_mode=reduce-overhead", "train.ckpt_every=1",
                    "train.keep_last=100"]
    assert pretrain(tmp_path, "compiled", *compiled_run) == 0
    # query and key encoders: backbone, head; CUDA graphs told where each of the 4 steps begins
    assert calls == [("ResNet", "reduce-overhead"), ("Sequential", "reduce-overhead")] * 2 and len(marks) == 4
    # whole graphs, forward and backward: nothing falls back to Python mid-network
    assert not torch._dynamo.utils.counters["graph_break"], dict(torch._dynamo.utils.counters["graph_break"])
    eager, compiled = weights(tmp_path / "runs/eager/final.pt"), weights(tmp_path / "runs/compiled/final.pt")
    assert eager.keys() == compiled.keys()  # compiled in place: no _orig_mod. prefixes
    assert all(torch.allclose(eager[k].float(), compiled[k].float(), atol=1e-3) for k in eager)
    run = tmp_path / "runs" / "compiled"
    for f in (run / "checkpoints").glob("ckpt_step*.pt"):
        if int(f.stem[9:]) > 2:
            f.unlink()
    (run / "final.pt").unlink()
    assert pretrain(tmp_path, "compiled", *compiled_run, resume="auto") == 0
    resumed = weights(run / "final.pt")
    assert all(torch.equal(compiled[k], resumed[k]) for k in compiled)


def test_resume_refuses_a_changed_config(tmp_path, capsys):
    assert pretrain(tmp_path, "r", "optim.epochs=1", "data.limit=64") == 0
    assert pretrain(tmp_path, "r", "optim.epochs=2", "data.limit=64", "optim.lr=0.5", resume="auto") == 2
    assert "config key 'optim.lr' is 0.5 but the checkpoint was trained with 0.03" in capsys.readouterr().err


def test_non_finite_loss_stops_with_step_and_keeps_checkpoint(tmp_path, capsys):
    code = pretrain(tmp_path, "nan", "optim.lr=1e30", "train.ckpt_every=1", "data.limit=64")
    err = capsys.readouterr().err
    # steps count from 1 as the progress lines and checkpoint names do: step 1 was finite and
    # saved as ckpt_step00000001, step 2 is the first with a non-finite loss
    assert code == 1 and "non-finite loss at step 2 (epoch 1)" in err and "ckpt_step00000001.pt" in err
    assert not (tmp_path / "results" / "nan").exists()
    ckpts = list((tmp_path / "runs/nan/checkpoints").glob("ckpt_step*.pt"))
    for c in ckpts:  # what was saved is a good (finite) state
        assert all(torch.isfinite(v).all() for v in torch.load(c, weights_only=True)["backbone"].values()
                   if v.is_floating_point())


def test_an_empty_band_stops_training_with_the_step(tmp_path, capsys, monkeypatch):
    """A step whose band is empty for some anchor would train on a zero loss: it is an error
    naming the step (counted from 1, as the progress lines), never a silently finished run."""
    from pretrain.negatives import NegativeSampler
    calls = []

    def collapsed(self, sim, exclude, epoch):  # estimated edges that kept nothing, at step 2
        calls.append(1)
        m = torch.ones_like(sim, dtype=torch.bool)
        return m if len(calls) < 2 else m & False
    monkeypatch.setattr(NegativeSampler, "_estimated_mask", collapsed)
    code = pretrain(tmp_path, "empty", "method.name=moco", "negatives.sampler=ring", "negatives.estimate=16",
                    "data.limit=96")
    err = capsys.readouterr().err
    assert code == 1 and "the negative band is empty for some anchor at step 2 (epoch 1)" in err
    assert err.count("\n") == 1 and not (tmp_path / "results" / "empty").exists()


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
    assert "corrupt or truncated PyTorch checkpoint" in err and str(bad) in err and err.count("\n") == 1
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


def tensorboard_scalars(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def test_tensorboard_mirrors_the_log_and_forgets_the_redone_steps(tmp_path):
    """Event files beside log.jsonl hold the same loss, lr and ring fractions; after a resume
    the steps that are redone appear once, as in log.jsonl."""
    common = ["optim.epochs=2", "data.limit=96", "negatives.sampler=ring", "negatives.anneal.schedule=linear",
              "negatives.anneal.epochs=2", "train.ckpt_every=1", "train.keep_last=100", "train.knn_every=2"]
    assert pretrain(tmp_path, "tb", *common) == 0
    run = tmp_path / "runs" / "tb"
    for f in (run / "checkpoints").glob("ckpt_step*.pt"):  # as if killed after step 4 of 6
        if int(f.stem[9:]) > 4:
            f.unlink()
    (run / "final.pt").unlink()
    assert pretrain(tmp_path, "tb", *common, resume="auto") == 0
    log = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    step_lines = [e for e in log if "outer" in e]
    for tag, key in (("pretrain/loss", "loss"), ("pretrain/outer", "outer"), ("pretrain/lr", "lr")):
        events = tensorboard_scalars(run, tag)
        # the same points as log.jsonl (an epoch line repeats its last step's loss and lr): the
        # steps redone after the resume are not there twice
        assert sorted(s for s, _ in events) == sorted(e["step"] for e in log if key in e), tag
        got = dict(events)
        for e in step_lines:
            assert got[e["step"]] == pytest.approx(e[key], rel=1e-6), (tag, e)
    assert [s for s, _ in tensorboard_scalars(run, "pretrain/knn_top1")] == [6]
