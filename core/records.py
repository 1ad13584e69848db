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

from core.files import atomic_write
from core.names import baseline_sampler

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
    return {"method": method, "negatives": negatives_name(part("negatives")),
            "baseline_sampler": baseline_sampler(method), "pretrain_dataset": part("data").get("dataset")}


def negatives_name(neg: dict) -> str | None:
    """A run's negatives in one name: the sampler, with a strategy other than plain InfoNCE
    after it ('dcl' for uniform + DCL, 'ring+hcl'); the method's baseline is its own sampler
    with InfoNCE (docs/design.md §11)."""
    sampler, objective = neg.get("sampler"), neg.get("objective", "infonce")
    if objective in (None, "infonce"):
        return sampler
    return objective if sampler in (None, "uniform") else f"{sampler}+{objective}"


# What cannot change the trained model (docs/design.md §11): names and paths, data-loading
# workers, where and how fast it ran (device, compilation, fused kernels, memory layout), and the
# cadence of logs, monitors and checkpoints. The seed is left out too: runs that differ only in it
# are the samples of one table cell.
NOT_IDENTITY = ("name", "data.root", "data.workers", "data.verify_checksums", "train.seed", "train.device",
                "train.log_every", "train.ckpt_every", "train.keep_last", "train.knn_every", "train.knn_k",
                "train.knn_t", "train.tensorboard", "train.compile", "train.compile_mode", "train.fused_optimizer",
                "train.channels_last")


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def model_identity(config: dict | None, method: str | None = None, negatives: str | None = None) -> dict | None:
    """The model a pretraining config trains, as flat keys: the whole resolved config minus
    NOT_IDENTITY and minus the sections of methods other than its own (every config carries
    one per registered method). `method` and `negatives` fill in a config that does not name
    them (hand-made records). None for a model of unknown config (a foreign checkpoint)."""
    if not isinstance(config, dict):
        return None
    cfg = dict(config)
    section = cfg.get("method") if isinstance(cfg.get("method"), dict) else {}
    name = section.get("name", method)
    cfg["method"] = {k: v for k, v in section.items() if not isinstance(v, dict) or k == name}
    if isinstance(cfg.get("negatives"), dict):  # likewise only the run's own strategy's settings
        neg = cfg["negatives"]
        cfg["negatives"] = {k: v for k, v in neg.items()
                            if not isinstance(v, dict) or k in ("anneal", neg.get("objective"))}
    flat = {k: v for k, v in flatten(cfg).items() if k not in NOT_IDENTITY}
    if name is not None:
        flat.setdefault("method.name", name)
    if negatives is not None:
        flat.setdefault("negatives.sampler", negatives)
    return dict(sorted(flat.items()))


def fingerprint(identity: dict) -> str:
    """A short, stable name of an identity (12 hex digits of its sha256)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def make(run: str, stage: str, task: str, dataset: str, metrics: dict, config: dict, *,
         checkpoint: str | None = None, seed: int | None = None, wall_s: float | None = None,
         **extra) -> dict:
    """A record of `metrics` measured on the model that `config` (its pretraining config)
    describes; its provenance fields are read from that config. The stages pass what their
    registries say of the names in `extra` (pretrain.registry.names: baseline_sampler, labels)."""
    record = {
        "schema": SCHEMA, "run": run, "stage": stage, "task": task, "dataset": dataset,
        "metrics": metrics, "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_sha256": sha256(checkpoint) if checkpoint else None,
        "config": config, "seed": seed, "wall_s": wall_s, **peak_memory_mb(),
        "software": software(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **provenance(config), **extra,
    }
    identity = model_identity(config, record.get("method"), record.get("negatives"))
    record["identity"], record["fingerprint"] = identity, None if identity is None else fingerprint(identity)
    return record


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
