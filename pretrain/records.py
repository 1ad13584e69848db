"""Results records: one JSON file per (run, stage, task), the only thing stages share
besides checkpoints (docs/design.md §1). Every stage writes them through this module, and the
report reads them through it; it is kept free of heavy imports."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import resource
import sys
import warnings
from pathlib import Path

from pretrain.files import atomic_write

SCHEMA = 1
REQUIRED = ("schema", "run", "stage", "task", "dataset", "metrics")


class ReportWarning(UserWarning):
    """A record or log the report had to skip; the report lists these (library noise aside)."""


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def software() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "torchvision", "numpy"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    return out


def peak_memory_mb() -> dict:
    """Peak resident memory of this process and, if used, peak CUDA memory (MiB)."""
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def provenance(config: dict | None) -> dict:
    """What every record says about the model it measures, read from the pretraining config a
    checkpoint carries (None fields for a foreign checkpoint): method, negative sampler, the
    sampler that is the method's own baseline (uniform, or LA's nearest-neighbour ball), and
    the pretraining dataset."""
    cfg = config if isinstance(config, dict) else {}
    part = lambda name: cfg.get(name) if isinstance(cfg.get(name), dict) else {}  # noqa: E731
    method = part("method").get("name")
    return {"method": method, "negatives": part("negatives").get("sampler"),
            "baseline_sampler": baseline_sampler(method), "pretrain_dataset": part("data").get("dataset")}


def baseline_sampler(method: str | None) -> str | None:
    if method is None:
        return None
    from pretrain.methods import METHODS  # (torch: only the harnesses that write records get here)
    return METHODS[method].baseline_sampler if method in METHODS else None


def make(run: str, stage: str, task: str, dataset: str, metrics: dict, config: dict, *,
         checkpoint: str | None = None, seed: int | None = None, wall_s: float | None = None,
         **extra) -> dict:
    """A record of `metrics` measured on the model that `config` (its pretraining config)
    describes; its provenance fields are read from that config."""
    return {
        "schema": SCHEMA, "run": run, "stage": stage, "task": task, "dataset": dataset,
        "metrics": metrics, "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_sha256": sha256(checkpoint) if checkpoint else None,
        "config": config, "seed": seed, "wall_s": wall_s, **peak_memory_mb(),
        "software": software(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **provenance(config), **extra,
    }


def path_for(results: str | os.PathLike, record: dict) -> Path:
    return Path(results) / record["run"] / record["stage"] / f"{record['task']}.json"


def write(record: dict, results: str | os.PathLike) -> Path:
    """Atomically write the record (temp file, fsync, rename): readers never see half of it."""
    return atomic_write(path_for(results, record), lambda f: json.dump(record, f, indent=2, default=str), binary=False)


def load_all(results: str | os.PathLike) -> list[dict]:
    """Every valid record under `results`; a malformed one is named in a warning and skipped."""
    out = []
    for path in sorted(Path(results).glob("**/*.json")):
        if any(part.startswith(".") for part in path.relative_to(results).parts):
            continue  # a temporary file being written, or a run moved aside (.replaced/)
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, expected an object")
            missing = [k for k in REQUIRED if k not in record]
            if missing:
                raise ValueError(f"missing keys {', '.join(missing)}")
            if record["schema"] != SCHEMA:
                raise ValueError(f"schema {record['schema']!r}, expected {SCHEMA}")
            # every reader indexes these; a wrong type here would crash a table far from its cause
            wrong = [k for k in ("run", "stage", "task", "dataset") if not isinstance(record[k], str)]
            wrong += [] if isinstance(record["metrics"], dict) else ["metrics"]
            if wrong:
                raise ValueError(f"wrong type for {', '.join(wrong)}")
        except (ValueError, OSError) as exc:
            warnings.warn(f"skipping malformed results record {path}: {exc}", ReportWarning)
            continue
        record["_path"] = str(path)
        out.append(record)
    return out
