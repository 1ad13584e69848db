"""Interrupts and operating-system errors end in one line that names the cause and the file,
with a non-zero exit (130 for Ctrl-C), and leave nothing half-written (docs/design.md §7). The
faults are real: SIGINT, a file-size limit (RLIMIT_FSIZE) and a full filesystem, each in a
subprocess."""
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.files import atomic_write
from tests.test_bad_input import TINY

ROOT = Path(__file__).resolve().parent.parent


def command(module, *argv, limit=None, **kw):
    """Run `python -m module argv` in a subprocess, with a file-size limit if asked."""
    def preexec():
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", module, *map(str, argv)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec, **kw)


def pretrain_args(tmp_path, name, *sets):
    args = ["--out", tmp_path / "runs", "--results", tmp_path / "results"]
    for s in [*TINY, f"name={name}", *sets]:
        args += ["--set", s]
    return args


def last_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    return lines[-1]


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    p = command("pretrain", *pretrain_args(tmp, "t"))
    assert p.wait(300) == 0, p.stderr.read()
    return tmp / "runs" / "t" / "final.pt"


def test_ctrl_c_during_pretraining_is_one_line_and_the_run_resumes(tmp_path):
    args = pretrain_args(tmp_path, "c", "optim.epochs=40", "train.ckpt_every=1")
    p = command("pretrain", *args)
    checkpoints = tmp_path / "runs" / "c" / "checkpoints"
    deadline = time.time() + 240
    while not any(checkpoints.glob("ckpt_step*.pt")) and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    assert p.poll() is None, "the run ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    line = last_line(err)
    assert line.startswith("error: interrupted (Ctrl-C); the last checkpoint ") and "--resume auto" in line, line
    assert not leftovers(tmp_path) and not (tmp_path / "results" / "c").exists()
    resumed = command("pretrain", *args, "--resume", "auto", "--set", "optim.epochs=40")
    assert resumed.wait(600) == 0, resumed.stderr.read()
    assert (tmp_path / "runs" / "c" / "final.pt").exists()


class Interrupting:
    """A file whose writes are interrupted (Ctrl-C) after `after` bytes."""

    def __init__(self, f, after):
        self.f, self.left = f, after

    def write(self, data):
        self.left -= len(data)
        if self.left < 0:
            raise KeyboardInterrupt
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def test_ctrl_c_inside_a_checkpoint_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_write(path, lambda f: torch.save({"w": torch.ones(10)}, f))
    with pytest.raises(KeyboardInterrupt):  # not torch's RuntimeError('[enforce fail at inline_container.cc]')
        atomic_write(path, lambda f: torch.save({"w": torch.zeros(100_000)}, Interrupting(f, 50_000)))
    assert torch.equal(torch.load(path)["w"], torch.ones(10)) and list(tmp_path.iterdir()) == [path]


def test_a_file_size_limit_during_pretraining_names_the_file_and_the_cause(tmp_path):
    p = command("pretrain", *pretrain_args(tmp_path, "big"), limit=4 << 20)  # the checkpoint is ~90 MB
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1, err
    line = last_line(err)
    assert "File too large" in line and "ckpt_step" in line and "--overwrite" in line, line
    assert not leftovers(tmp_path) and not (tmp_path / "runs" / "big" / "final.pt").exists()


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB filesystem: the log fits, a checkpoint does not."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a small filesystem needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_a_full_disk_during_pretraining_names_the_file_and_the_cause(small_disk):
    p = command("pretrain", *pretrain_args(small_disk, "full"))
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1, err
    line = last_line(err)
    assert "No space left on device" in line and "ckpt_step" in line, line
    assert not leftovers(small_disk)


@pytest.mark.parametrize("fault", ["limit", "full"])
def test_evaluation_and_report_under_a_file_size_limit_or_a_full_disk(tmp_path, trained, small_disk, fault):
    """The record (a few KB) and the report cannot be written: one line each, exit 1, nothing half-written."""
    where = small_disk if fault == "full" else tmp_path
    limit = 1024 if fault == "limit" else None
    if fault == "full":  # fill it, leaving no page for a record
        with open(small_disk / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
    p = command("evaluate", "knn", "--ckpt", trained, "--k", "5", "--workers", "0", "--results", where / "results",
                limit=limit)
    _, err = p.communicate(timeout=300)
    cause = "File too large" if fault == "limit" else "No space left on device"
    if fault == "full" and p.returncode == 2:  # the start-up check found no room: refused before any work
        assert "--results" in last_line(err)
    else:
        assert p.returncode == 1, err
        line = last_line(err)
        assert cause in line and "knn_k5" in line and "no results record was written" in line, line
    assert not list((where / "results").rglob("*.json")) and not leftovers(where)
    results = tmp_path / "res"
    (results / "t" / "evaluate").mkdir(parents=True)
    (results / "t" / "evaluate" / "knn.json").write_text(json.dumps({
        "schema": 1, "run": "t", "stage": "evaluate", "task": "knn_k5_t0.07_photo_patches",
        "dataset": "photo_patches", "metrics": {"top1": 50.0}, "config": {}, "method": "ir", "negatives": "ring"}))
    p = command("reports", "--results", results, "--out", where / "report", limit=limit)
    _, err = p.communicate(timeout=300)
    line = last_line(err)
    assert p.returncode in (1, 2), err
    assert cause in line or "--out" in line, line
    assert not leftovers(where)


def test_bad_text_and_bad_names_are_one_line(tmp_path, trained):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("name: caf\xe9\n".encode("latin-1"))
    for argv, needle in ((["--config", config], "not UTF-8 text"),
                         (pretrain_args(tmp_path, ".hidden"), "must not start with '.'"),
                         (pretrain_args(tmp_path, "x" * 300), "a run name of 300 bytes")):
        p = command("pretrain", *argv)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 2 and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "runs").exists()
    folder = tmp_path / "weights"
    folder.mkdir()
    p = command("detection", "convert", trained, folder, "--quiet")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and err.count("\n") == 1 and "is a folder" in err, err
