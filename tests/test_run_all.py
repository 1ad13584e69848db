"""run_all.sh's planner and launchers (scripts/pipeline.py): paired seeds, sweep grids, the
local and the Slurm launcher (through submitit's local executor), and bad input."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import pipeline  # noqa: E402


def test_a_sweep_plans_paired_seeds_and_every_grid_point():
    runs = pipeline.plan(pipeline.PROFILES["cpu-sweep"], [0, 1], [])
    names = [r.name for r in runs]
    # baselines x seeds + DCL and HCL x seeds + rings x points x seeds
    assert len(names) == len(set(names)) == 2 * 2 + 2 * 2 * 2 + 2 * 9 * 2
    ring = [r for r in runs if r.name.startswith("mini_ir_ring")]
    assert {tuple(sorted(r.sets)) for r in ring} >= {("negatives.anneal.schedule=none", "negatives.outer=1.0"),
                                                     ("negatives.anneal.epochs=2", "negatives.anneal.schedule=linear",
                                                      "negatives.outer=0.1")}
    assert any("negatives.neighbor_views=true" in r.sets for r in ring)
    # every ring run has a baseline run with its seed: the pairs the report compares
    base_seeds = {r.seed for r in runs if r.name.startswith("mini_ir_uniform")}
    assert {r.seed for r in ring} == base_seeds == {0, 1}
    a = pipeline.parser().parse_args(["--out", "o"])
    a.records = "none"
    cmd = pipeline.stages(ring[0], pipeline.PROFILES["cpu-sweep"], a, "py")[0]
    assert f"train.seed={ring[0].seed}" in cmd and f"name={ring[0].name}" in cmd


def test_paired_runs_share_initialisation_data_order_and_augmentation():
    """What makes pairing valid: a baseline and a ring run with one seed start from the same
    weights and see the same batches, pixel for pixel; only the negatives differ."""
    from pretrain import config
    from pretrain.train import Trainer
    made = []
    for sampler in ("uniform", "ring"):
        cfg = config.load(ROOT / "configs/mini/photos_r18_moco_ring.yaml",
                          [f"negatives.sampler={sampler}", "data.limit=256", "data.workers=0", "train.seed=7"])
        t = Trainer(cfg, Path("/tmp/unused_pairing") / sampler)
        views, _, index = next(iter(t.loader))
        made.append((t.method.state_dict(), views, index))
    (a, va, ia), (b, vb, ib) = made
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(ia, ib) and all(torch.equal(x, y) for x, y in zip(va, vb))


def fake_jobs(tmp_path, codes):
    runs = [pipeline.Run(f"r{i}", Path("c.yaml"), 0) for i in range(len(codes))]
    cmds = [[[sys.executable, "-c", f"print('[evaluate] linear r{i}: top1 {50 + i}.00'); raise SystemExit({c})"]]
            for i, c in enumerate(codes)]
    (tmp_path / "logs").mkdir()
    return list(zip(runs, cmds))


def test_local_launcher_runs_jobs_in_slots_and_reports_failures(tmp_path, capsys):
    failed = pipeline.local(fake_jobs(tmp_path, [0, 3, 0]), 2, tmp_path, gpus=[])
    out = capsys.readouterr()
    assert failed == ["r1"] and "r1 failed (3)" in out.err and "top1 50.00" in out.out and "top1 52.00" in out.out
    assert "[evaluate] linear r1: top1 51.00" in (tmp_path / "logs" / "r1.log").read_text()


def test_slurm_launcher_through_submitits_local_executor(tmp_path, capsys):
    a = pipeline.parser().parse_args(["--launcher", "slurm"])
    failed = pipeline.slurm(fake_jobs(tmp_path, [0, 2]), tmp_path, a, cluster="local")
    assert failed == ["r1"] and "top1 50.00" in capsys.readouterr().out
    assert list((tmp_path / "slurm").iterdir())  # submitit's own job folder


def test_no_gpu_no_slots():
    if torch.cuda.is_available():
        pytest.skip("a machine with GPUs")
    assert pipeline.gpu_slots(4.0) == []


@pytest.mark.parametrize("argv,needle", [
    (["--grid", "negatives.outerr=1,2"], "unknown config key 'negatives.outerr'"),
    (["--grid", "negatives.outer=0.5,7"], "key 'negatives.outer' = 7"),
    (["--seed-list", "0,x"], "--seed-list '0,x': expected comma-separated integers"),
    (["--seed-list", "1,1"], "a seed is listed twice"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, needle):
    assert pipeline.main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and not (tmp_path / "o").exists()


def test_a_launcher_that_is_not_installed(tmp_path, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "submitit" else real(name, *a))
    assert pipeline.main(["--launcher", "slurm", "--out", str(tmp_path / "o")]) == 2
    assert "needs submitit" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_run_all_checks_its_arguments_before_any_set_up_and_its_help_is_prose(tmp_path):
    """In a fresh clone a bad value must not first build two environments (about 2 GB)."""
    root = Path(__file__).resolve().parent.parent
    env = {"PATH": "/usr/bin:/bin", "RINGBENCH_VENV": str(tmp_path / "venv"),
           "RINGBENCH_TFDS_VENV": str(tmp_path / "tfds")}
    for argv, needle in ((["--profile", "nonexistent"], "invalid choice: 'nonexistent'"),
                         (["--seed-list", "a,b"], "expected comma-separated integers")):
        out = subprocess.run(["bash", str(root / "run_all.sh"), *argv], capture_output=True, text=True, timeout=60,
                             env=env)
        assert out.returncode == 2 and needle in out.stderr and out.stderr.count("\n") == 1, out.stderr
        assert not (tmp_path / "venv").exists() and not (tmp_path / "tfds").exists()
    help_text = subprocess.run(["bash", str(root / "run_all.sh"), "--help"], capture_output=True, text=True,
                               timeout=60).stdout
    assert "--profile mini|paper|gpu" in help_text and "set -euo" not in help_text and "cd " not in help_text
    assert not any(line.startswith("#") for line in help_text.splitlines())


def test_a_grid_over_a_strategys_setting_sweeps_only_that_strategys_presets():
    runs = pipeline.plan(pipeline.PROFILES["cpu-strategies"], [0], pipeline.parse_grid(["negatives.hcl.beta=0,2"]))
    names = sorted(r.name for r in runs)
    assert names == ["mini_ir_dcl", "mini_ir_hcl_beta0", "mini_ir_hcl_beta2", "mini_ir_ring", "mini_ir_uniform",
                     "mini_moco_dcl", "mini_moco_hcl_beta0", "mini_moco_hcl_beta2", "mini_moco_ring", "mini_moco_uniform"]
    assert [r.sets for r in runs if r.name == "mini_ir_hcl_beta2"] == [["negatives.hcl.beta=2"]]


def test_imagenet_backbones_are_evaluated_on_meta_dataset_v2(tmp_path):
    """ImageNet-1k holds every ilsvrc_2012 image: the paper profile evaluates such backbones on
    Meta-Dataset v2, where ImageNet is a training source only."""
    runs = pipeline.plan(pipeline.PROFILES["paper"], [0], [])
    a = pipeline.parser().parse_args(["--profile", "paper", "--out", "o"])
    a.records = str(tmp_path)  # the records folder exists: Meta-Dataset stages are planned
    for run in (next(r for r in runs if r.dataset == "imagenet"), next(r for r in runs if r.dataset == "cifar10")):
        md = [c for c in pipeline.stages(run, pipeline.PROFILES["paper"], a, "py") if "metadataset" in c]
        assert md and all(("--md-version" in c) == (run.dataset == "imagenet") for c in md)


def test_the_mini_profile_transfers_the_methods_it_names_to_detection():
    """Which runs the mini profile's tiny COCO stage sees is the profile's setting (IR and MoCo)."""
    profile = pipeline.PROFILES["mini"]
    a = pipeline.parser().parse_args(["--profile", "mini", "--out", "o"])
    a.records = "no-records-here"  # (Meta-Dataset stages left out)
    detected = {r.method for r in pipeline.plan(profile, [0], [])
                if any("detection" in c for c in pipeline.stages(r, profile, a, "py"))}
    assert detected == {"ir", "moco"} == set(profile.detection_methods)
