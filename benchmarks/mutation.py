"""Mutation testing of the core (docs/mutation.md): mutmut changes one operator, constant, call
argument or name at a time in the files that `[tool.mutmut] only_mutate` (pyproject.toml) names,
and runs the fast unit tests that reach the changed function. A mutant that no test kills is a
hole in the suite, or an equivalent mutant (one that cannot change any result), which
docs/mutation.md lists with its reason. Prints, per file, the score: killed / (all mutants -
equivalent ones), and the survivors. Not part of the CI suite: about an hour on two cores.

    python benchmarks/mutation.py [--workers N] [--keep] [--report] [MUTANT ...]
    python benchmarks/mutation.py --files pretrain/knn.py --tests tests/test_known_answers.py   # a part

--files and --tests replace pyproject.toml's `only_mutate` and test selection for one run (in
the copy only): a quick look at one file, and the suite's seconds-long run of the script.

It works in a copy of the repository under work/mutation/ (git's tracked and untracked files,
ignored ones left out) where each `@torch.no_grad()` function of the mutated files becomes the
same body under `with torch.no_grad():`: mutmut leaves decorated functions alone, and these are
the bank update, kNN and the ring's band (see docs/mutation.md). mutmut itself (pinned below)
is installed into this Python's environment on first use.

--keep reuses the last run's mutants and verdicts (mutmut reruns only changed functions and the
MUTANTs named, e.g. 'reports.tables.x_cells__mutmut_*'); --report prints the last run's scores.
Exit status 1 when a file scores under the target (90%).
"""
from __future__ import annotations

import argparse
import fnmatch
import importlib.metadata
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: mutmut brings toml there
    tomllib = None

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "work" / "mutation"
EQUIVALENTS = ROOT / "docs" / "mutation.md"
MUTMUT = "mutmut==3.8.1"
TARGET = 90.0
FORKSERVER = 'process_isolation = "forkserver"'
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# the package directories copied when there is no git to list the files
FALLBACK_COPY = ("core", "pretrain", "reports", "metadataset", "evaluate", "detection", "tests", "configs", "scripts",
                 "benchmarks", "docs", "pyproject.toml")


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def set_scratch(path: Path) -> None:
    global SCRATCH
    SCRATCH = path.resolve()


def ensure_mutmut() -> None:
    want = MUTMUT.split("==")[1]
    try:
        have = importlib.metadata.version("mutmut")
    except importlib.metadata.PackageNotFoundError:
        have = None
    if have == want:
        return
    cmd = [sys.executable, "-m", "pip", "install", MUTMUT]
    print(f"[mutation] mutmut {have or 'is not installed'}{' installed' if have else ''}; installing {MUTMUT}: "
          f"{' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True)


def settings() -> dict:
    text = (ROOT / "pyproject.toml").read_text()
    return (tomllib.loads(text) if tomllib else __import__("toml").loads(text))["tool"]["mutmut"]


def mutated(path: str, cfg: dict) -> bool:
    return path.endswith(".py") and any(fnmatch.fnmatch(path, p) for p in cfg["only_mutate"])


# ---------------------------------------------------------------- the scratch copy

def source_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split("\n")
        return [f for f in out if f and not f.startswith("work/") and (ROOT / f).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        files = []
        for top in FALLBACK_COPY:
            p = ROOT / top
            files += [str(f.relative_to(ROOT)) for f in ([p] if p.is_file() else p.rglob("*"))
                      if f.is_file() and "__pycache__" not in f.parts]
        return files


def without_no_grad(source: str) -> str:
    """Each function decorated with @torch.no_grad() alone, as the same body under `with
    torch.no_grad():` (its docstring kept first): the same function, which mutmut mutates."""
    import libcst as cst

    def is_no_grad(d: cst.Decorator) -> bool:
        return isinstance(d.decorator, cst.Call) and cst.Module([]).code_for_node(d.decorator) == "torch.no_grad()"

    class Unwrap(cst.CSTTransformer):
        def leave_FunctionDef(self, original, node):
            if len(node.decorators) != 1 or not is_no_grad(node.decorators[0]):
                return node
            body = list(node.body.body)
            doc = body[:1] if body and m_docstring(body[0]) else []
            block = cst.With(items=[cst.WithItem(cst.parse_expression("torch.no_grad()"))],
                             body=cst.IndentedBlock(body[len(doc):]))
            return node.with_changes(decorators=[], body=node.body.with_changes(body=[*doc, block]))

    def m_docstring(stmt) -> bool:
        return (isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Expr)
                and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString)))

    return cst.parse_module(source).visit(Unwrap()).code


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def narrowed(text: str, files: list[str] | None, tests: list[str] | None) -> str:
    """pyproject.toml's text with [tool.mutmut]'s files to mutate and tests replaced."""
    for key, values in (("only_mutate", files), ("pytest_add_cli_args_test_selection", tests)):
        if values:
            text, n = re.subn(rf"^{key} = \[.*?\]\n", f"{key} = {toml_list(values)}\n", text, flags=re.M | re.S)
            if n != 1:
                raise SystemExit(f"[mutation] pyproject.toml: expected one `{key} = [...]` in [tool.mutmut]")
    return text


def make_scratch(cfg: dict, files: list[str] | None = None, tests: list[str] | None = None) -> None:
    if SCRATCH.exists():
        shutil.rmtree(SCRATCH)
    unwrapped = []
    for rel in source_files():
        dst = SCRATCH / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        text = (ROOT / rel).read_text() if mutated(rel, {"only_mutate": files or cfg["only_mutate"]}) else None
        if text is not None and "@torch.no_grad()" in text:
            dst.write_text(without_no_grad(text))
            unwrapped.append(rel)
        else:
            shutil.copy2(ROOT / rel, dst)
    # one thread per test process (see run()) makes mutmut's plain fork safe: it forks each mutant
    # from the process that collected the tests, and runs the fastest tests first
    toml = SCRATCH / "pyproject.toml"
    text = toml.read_text()
    if text.count(FORKSERVER) != 1:
        raise SystemExit(f"[mutation] pyproject.toml: expected one `{FORKSERVER}` line in [tool.mutmut]")
    toml.write_text(narrowed(text.replace(FORKSERVER, 'process_isolation = "fork"'), files, tests))
    print(f"[mutation] copied the repository to {shown(SCRATCH)}; @torch.no_grad() unwrapped in "
          f"{', '.join(unwrapped) or 'no file'}", flush=True)


# ---------------------------------------------------------------- results

def equivalents() -> list[dict]:
    """docs/mutation.md's equivalent mutants: under a "#### `function`" heading (mutmut's name
    of the function, without the mutant's number), one ```diff block per mutant, and the reason."""
    text = EQUIVALENTS.read_text() if EQUIVALENTS.exists() else ""
    out = []
    for section in re.split(r"^(?=#{1,4} )", text, flags=re.M):
        head = re.match(r"#### `(?P<func>[^`]+)`", section)
        if head is None:
            continue
        for block in re.finditer(r"^```diff\n(?P<diff>.*?)^```", section, re.M | re.S):
            out.append({"func": head["func"], "change": change_of(block["diff"])})
    return out


def change_of(diff: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(removed lines, added lines), stripped: what a mutation changes, wherever it sits."""
    lines = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    return (tuple(line[1:].strip() for line in lines if line.startswith("-")),
            tuple(line[1:].strip() for line in lines if line.startswith("+")))


def function_of(mutant: str) -> str:
    return mutant.partition("__mutmut_")[0]


def collect() -> dict:
    """Per mutated file: mutant name -> status, and each survivor's diff (mutmut's own)."""
    os.chdir(SCRATCH)  # mutmut's helpers read mutants/ and pyproject.toml from here
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    out = {}
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        path = str(meta.relative_to("mutants"))[: -len(".meta")]
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        entries = {}
        for name, code in codes.items():
            status = status_by_exit_code[code]
            entry = {"status": status}
            if status not in ("killed", "timeout", "not checked"):
                try:
                    entry["diff"] = get_diff_for_mutant(name, path=path)
                except Exception as exc:  # noqa: BLE001 - a diff is for reading only
                    entry["diff"] = f"(no diff: {exc})"
            entries[name] = entry
        out[path] = entries
    os.chdir(ROOT)
    return out


def report(results: dict, wall: float | None, cpu: float | None = None) -> bool:
    known = equivalents()
    used = set()
    ok = True
    lines = []
    total = {"killed": 0, "scored": 0}
    for path, entries in results.items():
        killed = survivors = 0
        equivalent, unchecked, listing = [], 0, []
        for name, e in sorted(entries.items(), key=lambda kv: (function_of(kv[0]), int(kv[0].rpartition("_")[2]))):
            if e["status"] in ("killed", "timeout"):  # a timeout: the mutant hangs the tests (an infinite loop)
                killed += 1
                continue
            if e["status"] == "not checked":
                unchecked += 1
                continue
            change = change_of(e.get("diff", ""))
            match = next((i for i, k in enumerate(known) if k["func"] == function_of(name) and k["change"] == change),
                         None)
            if match is not None and e["status"] == "survived":
                equivalent.append(name)
                used.add(match)
                continue
            survivors += 1
            body = "\n".join(f"        {line}" for line in e.get("diff", "").splitlines()
                             if line.startswith(("-", "+")) and not line.startswith(("---", "+++")))
            listing.append(f"    {name} ({e['status']})\n{body}")
        scored = killed + survivors
        score = 100.0 * killed / scored if scored else 100.0
        ok &= score >= TARGET or not scored
        total["killed"] += killed
        total["scored"] += scored
        extra = f", {len(equivalent)} equivalent" + (f", {unchecked} not checked" if unchecked else "")
        lines.append(f"{path:32s} {killed:5d} / {scored:<5d} killed  {score:6.1f}%{extra}")
        lines += listing
    print("\n[mutation] score per file: killed / non-equivalent mutants (a timeout counts as killed)")
    print("\n".join(lines))
    if total["scored"]:
        print(f"{'all':32s} {total['killed']:5d} / {total['scored']:<5d} killed  "
              f"{100.0 * total['killed'] / total['scored']:6.1f}%")
    stale = [k["func"] for i, k in enumerate(known) if i not in used]
    if stale and results:
        print(f"[mutation] {len(stale)} equivalent mutants in {EQUIVALENTS.relative_to(ROOT)} matched no survivor "
              f"(killed now, or the code changed): {', '.join(sorted(set(stale)))}")
    if wall is not None:
        # the CPU time of mutmut and its test processes: over the cores of a machine left to the
        # run, about its wall time there (a shared machine's wall time says more about the others)
        print(f"[mutation] wall time {wall / 60:.1f} min; CPU time {cpu / 60:.1f} min "
              f"({cpu / 60 / (os.cpu_count() or 1):.1f} min on {os.cpu_count()} cores with as many workers)")
    (SCRATCH / "scores.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return ok


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(workers: int, names: list[str]) -> int:
    """mutmut run in the scratch copy; its spinner lines thinned out to one a minute."""
    mutmut = Path(sys.executable).parent / "mutmut"
    # torch's OpenMP pool hangs a forked child once it has run in the parent: every test process
    # runs on one thread. conftest.py gives each test process cores // PYTEST_XDIST_WORKER_COUNT
    # threads (at most 2); mutmut's workers share the cores as xdist's would, one thread each.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTEST_XDIST_WORKER_COUNT": str(os.cpu_count() or 1)}
    cmd = [str(mutmut), "run", "--max-children", str(workers), *names]
    print(f"[mutation] {' '.join(cmd)} (in {shown(SCRATCH)}, one thread per test process)", flush=True)
    proc = subprocess.Popen(cmd, cwd=SCRATCH, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    printed, held, pending = 0.0, "", b""
    while chunk := proc.stdout.read1(65536):
        *lines, pending = re.split(rb"[\r\n]", pending + chunk)
        for raw in lines:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            if line[0] in SPINNER:  # a progress frame: one a minute, and the last before other output
                if time.time() - printed < 60:
                    held = line
                    continue
                printed = time.time()
            elif held:
                print(held)
            print(line, flush=True)
            held = ""
    for line in (held, pending.decode(errors="replace").strip()):
        if line:
            print(line, flush=True)
    return proc.wait()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mutants", nargs="*", help="mutmut names or globs to (re)run; default: every mutant")
    p.add_argument("--workers", type=int, default=1, help="mutants tested at a time (default 1)")
    p.add_argument("--keep", action="store_true", help="reuse the last run's mutants and verdicts")
    p.add_argument("--report", action="store_true", help="only print the last run's scores")
    p.add_argument("--scratch", type=Path, default=SCRATCH, help="the copy to run in (default work/mutation)")
    p.add_argument("--files", nargs="+", help="mutate these files (globs) instead of pyproject.toml's only_mutate")
    p.add_argument("--tests", nargs="+", help="run these tests (pytest ids) instead of pyproject.toml's selection")
    args = p.parse_args(argv)
    set_scratch(args.scratch)
    ensure_mutmut()
    if not args.report:
        cfg = settings()
        if not (args.keep and (SCRATCH / "mutants").exists()):
            make_scratch(cfg, args.files, args.tests)
        else:  # fresh sources and tests around the last run's mutants: mutmut regenerates the changed functions'
            kept = SCRATCH.with_name(SCRATCH.name + ".kept")
            shutil.rmtree(kept, ignore_errors=True)
            (SCRATCH / "mutants").rename(kept)
            make_scratch(cfg, args.files, args.tests)
            kept.rename(SCRATCH / "mutants")
        start, cpu0 = time.time(), children_cpu()
        rc = run(args.workers, args.mutants)
        wall, cpu = time.time() - start, children_cpu() - cpu0
        if rc != 0:
            print(f"[mutation] mutmut exited with {rc}", file=sys.stderr)
            return rc
    else:
        wall = cpu = None
        if not (SCRATCH / "mutants").exists():
            print(f"[mutation] no results in {shown(SCRATCH)}: run without --report first", file=sys.stderr)
            return 2
    return 0 if report(collect(), wall, cpu) else 1


if __name__ == "__main__":
    sys.exit(main())
