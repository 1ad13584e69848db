"""One run, one folder. A run folder (OUT/<name>/) that already holds a run is never reused
silently: its final.pt, checkpoints and log would be mixed with the new run's, and a record
could pair one model's checkpoint with another run's config. Starting again needs --resume
(continue that run; the checkpoint's config must match) or --overwrite, which moves the old
run folder and its records aside (OUT/.replaced/, RESULTS/.replaced/), never deletes them."""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from core.errors import UserError

REPLACED = ".replaced"  # the report skips folders whose name starts with a dot
LOCKS = ".locks"  # RESULTS/.locks/<run>/<stage>/<task>.lock: records being written


def holds_run(out: Path, results: Path) -> bool:
    return ((out / "final.pt").exists() or (out / "log.jsonl").exists()
            or any((out / "checkpoints").glob("ckpt_step*.pt")) or any(results.glob("*/*.json")))


def prepare(out: Path, results: Path, resume: str | None, overwrite: bool, main: bool = True) -> None:
    """Refuse, with one line, to start a run where one already is, unless told what to do."""
    if resume or not holds_run(out, results):
        return
    if not overwrite:
        raise UserError(f"{out}: already holds run '{out.name}' (final.pt, checkpoints, log or records in "
                        f"{results}); pass --resume auto to continue it, or --overwrite to start again "
                        f"(the old run is moved aside)")
    if not main:  # under torchrun rank 0 moves; the others only start
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for folder in (out, results):
        if folder.exists():
            aside = folder.parent / REPLACED / f"{folder.name}-{stamp}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            folder.rename(aside)
            print(f"[pretrain] --overwrite: moved {folder} aside to {aside}")


@contextlib.contextmanager
def locked(path: Path, what: str):
    """Hold an exclusive OS lock (flock) on `path` while the block runs, so that two processes
    never write one run folder or one record at once. The kernel releases it when the process
    ends however it ends (a SIGKILL too): no stale lock is left to clear by hand. The second
    process gets one line naming the holder's pid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # unbuffered: nothing left to flush on close
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise UserError(f"{what} is in use by process {holder} (lock {path}); wait for it to end, "
                        f"or give this one another name") from None
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:  # a full disk: name the file
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        yield
        # done: the lock file goes (while still held, so no one else is inside); one who opened
        # it in the last microseconds finds it released, and starts after our work is complete
        path.unlink(missing_ok=True)
        for folder in path.parents:  # RESULTS/.locks/<run>/<stage>: folders it emptied go too
            if LOCKS not in folder.parts or any(folder.iterdir()):
                break
            folder.rmdir()
    finally:
        os.close(fd)  # releases the lock


def lock_path(out: Path) -> Path:
    """A run's lock beside its folder, not in it: --overwrite moves the folder aside."""
    return out.parent / f".{out.name}.lock"


def record_lock(results: Path, run: str, stage: str, task: str):
    """The lock of one results record, under RESULTS/.locks/ (the report reads no dot folder)."""
    return locked(results / LOCKS / run / stage / f"{task}.lock", f"results record {results / run / stage / task}.json")
