"""Nothing mixed: one process at a time trains a run folder or writes a record (docs/design.md §7)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from core import rundir
from evaluate.__main__ import main as evaluate_main
from tests.test_bad_input import pretrain


def test_a_run_being_trained_refuses_a_second_process_naming_its_pid(tmp_path, capsys):
    out = tmp_path / "runs" / "r"
    with rundir.locked(rundir.lock_path(out), "run folder"):  # as a first process training "r" holds it
        assert pretrain(tmp_path, "r") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"in use by process {os.getpid()}" in err and str(out) in err
    assert not out.exists() and not (tmp_path / "results" / "r").exists()  # nothing of the second run
    assert pretrain(tmp_path, "r") == 0  # released: the next one trains
    assert (out / "final.pt").exists()


def test_two_evaluations_of_one_record_do_not_run_at_once(tmp_path, capsys):
    assert pretrain(tmp_path, "e") == 0
    ckpt = tmp_path / "runs" / "e" / "final.pt"
    results = tmp_path / "results"
    lock = results / ".locks" / "e" / "evaluate" / "knn_k5_t0.07_photo_patches.lock"
    argv = ["knn", "--ckpt", str(ckpt), "--k", "5", "--results", str(results), "--workers", "0"]
    capsys.readouterr()
    with rundir.locked(lock, "results record"):
        assert evaluate_main(argv) == 2
    assert "in use by process" in capsys.readouterr().err
    assert not (results / "e" / "evaluate" / "knn_k5_t0.07_photo_patches.json").exists()
    assert evaluate_main(argv) == 0 and (results / "e" / "evaluate" / "knn_k5_t0.07_photo_patches.json").exists()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    """The OS releases the lock of a process killed by SIGKILL: nothing to clear by hand."""
    path = tmp_path / ".r.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from core import rundir
        with rundir.locked(Path({str(path)!r}), "run"):
            print("held", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(rundir.UserError, match=f"process {holder.pid}"):
        with rundir.locked(path, "run"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    start = time.time()
    with rundir.locked(path, "run"):
        assert time.time() - start < 1
