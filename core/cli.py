"""What every command line shares: a parser whose errors are one line, argument types that
name the flag, the value and the allowed range, output folders checked for writing before
any work starts, run names that stay inside their folder, and the options every evaluation
harness (evaluate, metadataset, detection) takes. No heavy imports."""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from core.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): 'error: argument --k: ...'."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _number(kind, text: str, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def int_at_least(low: int):
    """argparse type: an integer >= low."""
    def parse(text: str) -> int:
        value = _number(int, text, "an integer")
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is out of range, expected an integer >= {low}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def float_in(low: float, high: float = float("inf"), low_open: bool = False, high_open: bool = False):
    """argparse type: a float in [low, high] (open at an end where asked)."""
    text_range = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        value = _number(float, text, "a number")
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if below or above or value != value:
            raise argparse.ArgumentTypeError(f"{value:g} is out of range, expected a number in {text_range}")
        return value
    parse.__name__ = f"number in {text_range}"
    return parse


ARCHS = ("resnet18", "resnet50", "cmc_resnet18")


def architecture(text: str) -> str:
    """argparse type: a backbone architecture this project builds."""
    if text not in ARCHS:
        raise argparse.ArgumentTypeError(f"unknown architecture {text!r}, expected one of {', '.join(ARCHS)}")
    return text


_NAME = re.compile(r"^[^/\\]+$")


MAX_NAME = 200  # bytes


def check_run_name(name: str, flag: str) -> str:
    """A run name is one folder name: no path separator, not '.' or '..', so that
    OUT/<name>/ and RESULTS/<name>/ stay inside OUT and RESULTS."""
    if not name or not _NAME.match(name) or name in (".", "..") or ".." in name.split("."):
        raise UserError(f"{flag} {name!r}: a run name must be one folder name (no '/', '\\\\' or '..')")
    if name.startswith("."):  # the report, like ls, skips dot folders: such a run would vanish from it
        raise UserError(f"{flag} {name!r}: a run name must not start with '.' (hidden folders are not reported)")
    if len(name.encode()) > MAX_NAME:  # folder names hold 255 bytes; lock and aside names add a little
        raise UserError(f"{flag} {name[:40]!r}...: a run name of {len(name.encode())} bytes; expected at most {MAX_NAME}")
    return name


def record_run_name(given: str | None, config: dict | None, weights: str | os.PathLike) -> str:
    """The run a harness's records belong to: --run, else the run name the checkpoint's config
    carries, else the weights file's name; checked as every run name is."""
    return check_run_name(given or (config or {}).get("name") or Path(weights).stem, "--run")


def writable_dir(path: str | os.PathLike, flag: str) -> Path:
    """Prove now, not after hours of compute, that `path` can be created and written: the
    nearest existing folder on its way takes a test file (removed at once). Nothing is
    created here; the command makes the folder when it writes its first file."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)


def fault(exc: BaseException, after: str = "") -> int:
    """Ctrl-C or an operating-system error (a full disk, a file-size limit, a folder where a file
    was expected) as one line on stderr, `after` appended (e.g. whether the last checkpoint is
    intact); returns the exit status: 130 for Ctrl-C, 1 otherwise."""
    if isinstance(exc, KeyboardInterrupt):
        print(f"error: interrupted (Ctrl-C){after}", file=sys.stderr)
        return INTERRUPTED
    where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
    print(f"error: {where}{exc.strerror or exc}{after}", file=sys.stderr)
    return 1


def exit_code(run, *also) -> int:
    """Run a command; bad input (UserError, or one of `also`) is its one-line message on
    stderr and exit status 2; Ctrl-C and operating-system errors are one line too (fault).
    Records are written atomically, so none is left half-written."""
    try:
        run()
    except (UserError, *also) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, OSError) as exc:
        return fault(exc, "; no results record was written")
    return 0


STAGES = {  # `ringbench <stage> ...` runs `python -m <module> ...`
    "pretrain": "pretrain.__main__", "evaluate": "evaluate.__main__", "metadataset": "metadataset.__main__",
    "detection": "detection.__main__", "report": "reports.__main__", "toy-mi": "pretrain.toy_mi",
}


def ringbench(argv=None) -> int:
    """The installed `ringbench` command: one subcommand per stage, each the stage's own
    command line (`ringbench evaluate knn --ckpt ...` is `python -m evaluate knn --ckpt ...`)."""
    import importlib
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in STAGES:
        usage = f"usage: ringbench {{{','.join(STAGES)}}} ...  (each: ringbench STAGE --help)"
        if argv and argv[0] in ("-h", "--help"):
            print(usage)
            return 0
        print(f"error: {'a stage is needed' if not argv else f'unknown stage {argv[0]!r}'}; {usage}", file=sys.stderr)
        return 2
    return importlib.import_module(STAGES[argv[0]]).main(argv[1:])


def evaluation_parent() -> argparse.ArgumentParser:
    """Options of every evaluation harness that reads a checkpoint and writes records."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--ckpt", required=True, help="checkpoint to evaluate (ringbench, torchvision ResNet state dict "
                                                 "or MoCo checkpoint)")
    p.add_argument("--results", default="results", help="records go to RESULTS/<run>/<stage>/ (default: results)")
    p.add_argument("--run", help="run name in the record (default: the checkpoint's run name)")
    p.add_argument("--arch", type=architecture, help=f"refuse the checkpoint unless its backbone is this "
                                                     f"architecture ({', '.join(ARCHS)})")
    p.add_argument("--image-size", type=int_at_least(1), help="input size in pixels")
    p.add_argument("--workers", type=int_at_least(0), default=2, help="data loader processes (default: 2)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    return p
