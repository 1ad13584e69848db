"""No silent wrong results: every bad input is one line on stderr naming the key or flag, the
value and what was expected, a non-zero exit, and nothing written (docs/design.md §7)."""
import json
import pickle
import subprocess
from pathlib import Path

import pytest
import torch

from detection.__main__ import main as detection_main
from evaluate.__main__ import main as evaluate_main
from metadataset.__main__ import main as metadataset_main
from pretrain.__main__ import main as pretrain_main
from reports.__main__ import main as reports_main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.dataset=photo_patches", "data.limit=64", "data.workers=0", "optim.batch_size=32", "optim.epochs=1",
        "model.feat_dim=16", "negatives.num=16", "method.moco.queue_size=64", "train.knn_every=0"]


def pretrain(tmp_path, name, *sets, extra=()):
    args = ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), *extra]
    for s in [*TINY, f"name={name}", *sets]:
        args += ["--set", s]
    return pretrain_main(args)


def code(main, argv) -> int:
    """Exit status of a command's main: its return value, or argparse's SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def one_line(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny pretraining run: a real checkpoint for the harness cases."""
    tmp = tmp_path_factory.mktemp("trained")
    assert pretrain(tmp, "tiny") == 0
    return tmp / "runs" / "tiny" / "final.pt"


# ---------------------------------------------------------------- 1. re-running into a run folder

def test_a_second_run_into_the_same_folder_is_refused_or_starts_clean(tmp_path, capsys):
    assert pretrain(tmp_path, "r", "optim.epochs=2") == 0
    first = json.loads((tmp_path / "results/r/pretrain/pretrain.json").read_text())
    capsys.readouterr()
    # without --resume or --overwrite: refused before any work, the first run untouched
    assert pretrain(tmp_path, "r", "train.seed=5") == 2
    one_line(capsys, "already holds run 'r'", "--resume auto", "--overwrite")
    assert json.loads((tmp_path / "results/r/pretrain/pretrain.json").read_text()) == first
    # --overwrite: the old run and its records move aside, the new record describes the new model
    assert pretrain(tmp_path, "r", "train.seed=5", extra=["--overwrite"]) == 0
    record = json.loads((tmp_path / "results/r/pretrain/pretrain.json").read_text())
    final = tmp_path / "runs/r/final.pt"
    assert record["config"]["optim"]["epochs"] == 1 and record["config"]["train"]["seed"] == 5
    assert record["checkpoint_sha256"] == __import__("hashlib").sha256(final.read_bytes()).hexdigest()
    assert torch.load(final, weights_only=True)["config"]["train"]["seed"] == 5
    steps = [json.loads(l)["step"] for l in (tmp_path / "runs/r/log.jsonl").read_text().splitlines()]
    assert max(steps) == 2  # one epoch of 2 steps: nothing of the first run's log
    moved = list((tmp_path / "runs/.replaced").glob("r-*")) + list((tmp_path / "results/.replaced").glob("r-*"))
    assert len(moved) == 2 and all((m / "pretrain/pretrain.json").exists() or (m / "final.pt").exists() for m in moved)
    from core import records
    assert [r["config"]["train"]["seed"] for r in records.load_all(tmp_path / "results")] == [5]  # moved-aside skipped


# ---------------------------------------------------------------- 2. numbers validated before compute

@pytest.mark.parametrize("setting,expected", [
    ("negatives.num=0", "expected an integer >= 1"), ("data.limit=-5", "expected an integer >= 0"),
    ("optim.lr=-1", "expected a number > 0"), ("data.image_size=0", "expected an integer >= 8"),
    ("data.workers=-1", "expected an integer >= 0"), ("method.moco.queue_size=0", "expected an integer >= 1"),
    ("train.keep_last=0", "expected an integer >= 1"), ("optim.momentum=1.5", "expected a number in [0, 1)"),
    ("negatives.outer=0", "expected a number in (0, 1]"), ("method.temperature=0", "expected a number > 0"),
])
def test_config_numbers_out_of_range(tmp_path, capsys, setting, expected):
    assert pretrain(tmp_path, "bad", setting) == 2
    key, value = setting.split("=")
    one_line(capsys, f"--set {setting}", f"key '{key}' = {value}", expected)  # names the --set, not a file
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_moco_queue_smaller_than_the_batch(tmp_path, capsys):
    assert pretrain(tmp_path, "bad", "method.name=moco", "method.moco.queue_size=16") == 2
    one_line(capsys, "--set method.moco.queue_size=16", "'method.moco.queue_size' = 16", ">= optim.batch_size (32)")


def test_a_legacy_key_is_still_read_and_its_range_still_checked(tmp_path, capsys):
    """`method.queue_size` (before each method had its own settings) still works."""
    assert pretrain(tmp_path, "bad", "method.queue_size=0") == 2
    one_line(capsys, "--set method.queue_size=0", "key 'method.moco.queue_size' = 0, expected an integer >= 1")


@pytest.mark.parametrize("argv,needle", [
    (["knn", "--k", "0"], "argument --k: 0 is out of range, expected an integer >= 1"),
    (["knn", "--t", "0"], "argument --t: 0 is out of range, expected a number in (0, inf]"),
    (["linear", "--epochs", "0"], "argument --epochs: 0 is out of range, expected an integer >= 1"),
    (["knn", "--workers", "-1"], "argument --workers: -1 is out of range, expected an integer >= 0"),
    (["knn", "--arch", "foo"], "argument --arch: unknown architecture 'foo', expected one of resnet18"),
])
def test_evaluate_flags_out_of_range(tmp_path, capsys, trained, argv, needle):
    assert code(evaluate_main, [*argv, "--ckpt", str(trained), "--results", str(tmp_path / "r")]) == 2
    one_line(capsys, needle)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags,needle", [
    (["--shots", "0"], "argument --shots: 0 is out of range, expected an integer >= 1"),
    (["--queries", "0"], "argument --queries: 0 is out of range, expected an integer >= 1"),
    (["--shots", "-2"], "argument --shots: -2 is out of range, expected an integer >= 1"),
    (["--episodes", "0"], "argument --episodes: 0 is out of range"),
    (["--ways", "1"], "argument --ways: 1 is out of range, expected an integer >= 2"),
])
def test_episodic_flags_out_of_range(tmp_path, capsys, trained, flags, needle):
    argv = ["episodic", "--ckpt", str(trained), "--records", str(tmp_path), "--head", "prototype",
            "--results", str(tmp_path / "r"), *flags]
    assert code(metadataset_main, argv) == 2
    one_line(capsys, needle)
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- 3. outputs checked before the work

def test_unwritable_outputs_and_escaping_names_fail_at_start_up(tmp_path, capsys, trained):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert pretrain(tmp_path, "x", extra=["--out", str(blocker / "runs")]) == 2
    one_line(capsys, f"--out {blocker / 'runs'}", "is a file, not a folder")
    assert pretrain(tmp_path, "x", extra=["--results", str(blocker / "results")]) == 2
    one_line(capsys, "--results", "is a file, not a folder")
    assert pretrain(tmp_path, "../../escape") == 2
    one_line(capsys, "--set name=../../escape", "one folder name")
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent.parent / "escape").exists()
    assert evaluate_main(["knn", "--ckpt", str(trained), "--results", str(blocker / "r")]) == 2
    one_line(capsys, "--results", "is a file, not a folder")
    assert evaluate_main(["knn", "--ckpt", str(trained), "--run", "../up", "--results", str(tmp_path / "r")]) == 2
    one_line(capsys, "--run '../up'", "one folder name")
    assert metadataset_main(["linear", "--ckpt", str(trained), "--records", str(tmp_path),
                             "--results", str(blocker / "r")]) == 2
    one_line(capsys, "--results", "is a file")
    assert detection_main(["mini", "--ckpt", str(trained), "--results", str(blocker / "r")]) == 2
    one_line(capsys, "--results", "is a file")
    assert detection_main(["convert", str(trained), str(blocker / "w.pkl")]) == 2
    one_line(capsys, "OUT", "is a file")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- 4. one checkpoint error vocabulary

def bad_checkpoints(tmp_path):
    (tmp_path / "dir.pt").mkdir()
    (tmp_path / "random.pt").write_bytes(bytes(range(7, 250)) * 20)
    (tmp_path / "text.pt").write_text("these are not weights\n" * 10)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "truncated.pt").write_bytes(b"PK\x03\x04 cut off")
    with open(tmp_path / "d2.pkl", "wb") as f:  # detectron2's model-zoo format
        pickle.dump({"model": {"stem.conv1.weight": __import__("numpy").zeros(3)}, "__author__": "x"}, f)
    return {"dir.pt": "a directory, not a checkpoint file", "random.pt": "not a PyTorch checkpoint (unrecognised",
            "text.pt": "a text file, not a PyTorch checkpoint", "tensor.pt": "holds a Tensor, not a dict of weights",
            "empty.pt": "an empty file", "truncated.pt": "a corrupt or truncated PyTorch checkpoint",
            "d2.pkl": "a Python pickle (e.g. detectron2 weights), not a PyTorch checkpoint"}


def test_every_harness_names_what_a_bad_checkpoint_is(tmp_path, capsys):
    import formats

    from metadataset import convert
    cases = bad_checkpoints(tmp_path)
    formats.write_imagefolder(tmp_path / "folder", classes=("a", "b", "c", "d", "e"), per_class=2, size=8)
    convert.convert(tmp_path / "folder" / "train", tmp_path / "records" / "dtd", "dtd", (0.0, 0.0, 1.0))
    commands = (lambda path: evaluate_main(["knn", "--ckpt", path, "--dataset", "photo_patches",
                                            "--results", str(tmp_path / "r")]),
                lambda path: metadataset_main(["linear", "--ckpt", path, "--records", str(tmp_path / "records"),
                                               "--results", str(tmp_path / "r")]),
                lambda path: detection_main(["convert", path, str(tmp_path / "w.pkl")]))
    capsys.readouterr()
    for name, what in cases.items():
        for command in commands:
            assert command(str(tmp_path / name)) == 2, name
            one_line(capsys, str(tmp_path / name), what, "expected a checkpoint written by python -m pretrain")
    assert not (tmp_path / "r").exists() and not (tmp_path / "w.pkl").exists()


# ---------------------------------------------------------------- 5. errors name what the user typed

def test_config_file_errors_name_line_and_column_and_refuse_an_empty_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\noptim: {lr: 0.1\n")
    assert pretrain_main(["--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    one_line(capsys, str(bad), "not valid YAML at line 3, column 1")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert pretrain_main(["--config", str(empty), "--out", str(tmp_path / "o")]) == 2
    one_line(capsys, str(empty), "the config file is empty")
    ranged = tmp_path / "ranged.yaml"
    ranged.write_text("negatives: {num: 0}\n")
    assert pretrain_main(["--config", str(ranged), "--out", str(tmp_path / "o")]) == 2
    one_line(capsys, f"{ranged}: key 'negatives.num' = 0")  # a file's value names the file
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_one_line_in_every_command(tmp_path, capsys, trained):
    assert pretrain(tmp_path, "c", "train.device=cuda") == 2
    one_line(capsys, "train.device cuda: no CUDA device is available")
    assert evaluate_main(["knn", "--ckpt", str(trained), "--device", "cuda", "--results", str(tmp_path / "r")]) == 2
    one_line(capsys, "--device cuda: no CUDA device is available")
    (tmp_path / "records").mkdir()
    assert metadataset_main(["linear", "--ckpt", str(trained), "--records", str(tmp_path / "records"),
                             "--device", "cuda", "--results", str(tmp_path / "r")]) == 2
    one_line(capsys, "--device cuda: no CUDA device is available")
    assert not (tmp_path / "r").exists()


def test_run_all_options_without_a_value():
    for flag in ("--profile", "--jobs", "--out"):
        out = subprocess.run(["bash", str(ROOT / "run_all.sh"), flag], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and out.stderr == f"run_all.sh: {flag} needs a value (try --help)\n"


# ---------------------------------------------------------------- 6. records never overwrite each other

def test_other_settings_add_records_and_the_report_keeps_them_apart(tmp_path, capsys, trained):
    common = ["--ckpt", str(trained), "--results", str(tmp_path / "res"), "--workers", "0"]
    assert evaluate_main(["knn", "--k", "5", *common]) == 0
    assert evaluate_main(["knn", "--k", "7", *common]) == 0
    assert evaluate_main(["linear", "--protocol", "cached", "--epochs", "5", *common]) == 0
    assert evaluate_main(["linear", "--protocol", "cached", "--epochs", "9", *common]) == 0
    names = sorted(p.name for p in (tmp_path / "res/tiny/evaluate").iterdir())
    assert names == ["knn_k5_t0.07_photo_patches.json", "knn_k7_t0.07_photo_patches.json",
                     "linear_cached_i5_photo_patches.json", "linear_cached_i9_photo_patches.json"]
    bad = json.loads((tmp_path / "res/tiny/evaluate/knn_k7_t0.07_photo_patches.json").read_text())
    bad["task"], bad["metrics"]["top1"] = "knn_k9_t0.07_photo_patches", "n/a"
    (tmp_path / "res/tiny/evaluate/knn_k9_t0.07_photo_patches.json").write_text(json.dumps(bad))
    out = tmp_path / "rep"
    (out / "tables").mkdir(parents=True)
    (out / "tables" / "stale_table.md").write_text("from an earlier report")
    (out / "figures").mkdir()
    (out / "figures" / "stale.png").write_bytes(b"old")
    # an earlier report wrote them (its manifest says so): this one, not writing them, removes them
    (out / ".ringbench-report.json").write_text(json.dumps(["tables/stale_table.md", "figures/stale.png"]))
    capsys.readouterr()
    assert reports_main(["--results", str(tmp_path / "res"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "knn_k9_t0.07_photo_patches.json" in err and "metrics.top1 is not a number ('n/a')" in err
    tables = sorted(p.name for p in (out / "tables").glob("*.md"))
    assert "stale_table.md" not in tables and not (out / "figures" / "stale.png").exists()
    assert {"knn_k5_t0.07_top1.md", "knn_k7_t0.07_top1.md", "linear_cached_i5_top1.md",
            "linear_cached_i9_top1.md"} <= set(tables)
    report = (out / "report.md").read_text()
    assert "weighted kNN, k=5, t=0.07" in report and "weighted kNN, k=7, t=0.07" in report


# ---------------------------------------------------------------- 8. minor ones

def test_the_paper_probe_keeps_its_state_beside_the_checkpoint_not_in_results(tmp_path, trained):
    assert evaluate_main(["linear", "--protocol", "paper", "--epochs", "1", "--ckpt", str(trained),
                          "--results", str(tmp_path / "res"), "--workers", "0", "--state-dir", str(tmp_path / "st")]) == 0
    assert [p.name for p in (tmp_path / "res").rglob("*") if p.is_file()] == ["linear_paper_e1_photo_patches.json"]
    assert (tmp_path / "st" / "linear_paper_e1_photo_patches.pt").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "st" / "tb_linear_paper_e1_photo_patches"))
    events.Reload()  # the probe's live curve: one point per epoch
    assert [e.step for e in events.Scalars("linear/loss")] == [1]
    assert events.Scalars("linear/lr")[0].value == pytest.approx(0.01)  # (stored as float32)
    rec = json.loads(next((tmp_path / "res").rglob("*.json")).read_text())
    assert rec["protocol"]["paper_protocol"] is False and "epochs 100 -> 1" in rec["protocol"]["follows"]


def test_help_shows_dataset_as_optional(capsys):
    with pytest.raises(SystemExit):
        evaluate_main(["knn", "--help"])
    out = capsys.readouterr().out
    assert "[--dataset DATASET]" in out and "--dataset NAME" not in out.split("\n")[0]
    import evaluate.__main__ as ev
    assert "[--dataset NAME]" in ev.__doc__.split("\n")[0]
