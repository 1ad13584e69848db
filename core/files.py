"""Atomic file writes: every checkpoint, record and weights file goes through here."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, dump: Callable, binary: bool = True) -> Path:
    """dump(file) into a temporary file in the same directory, fsync, then rename over `path`
    (and fsync the directory): a reader sees the old file or the complete new one, never half
    of one, even after a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb" if binary else "w") as f:
            try:
                dump(f)
            except RuntimeError as exc:
                # torch's zip writer reports a failed write of its file (a full disk, a file-size
                # limit, Ctrl-C in the middle) as RuntimeError('[enforce fail at inline_container.cc]');
                # the real cause is its context
                if isinstance(exc.__context__, (OSError, KeyboardInterrupt)):
                    raise exc.__context__ from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:  # a failed write names no file: name the one being written
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
