"""Pretraining configuration: typed dataclasses, strict YAML loading, dotted overrides.

Defaults are the official Ring code's (docs/design.md §4); a preset only lists what differs.
Unknown keys and wrong types are errors that name the file and the key, because a
misspelt key silently falling back to a default is the classic way to run the wrong
experiment.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pretrain.errors import UserError
from pretrain.registry import DATASETS, METHODS, SAMPLERS, Registry


class ConfigError(UserError):
    """A configuration problem; the message names the file and the key."""


@dataclass
class DataConfig:
    dataset: str = "cifar10"        # cifar10 | cifar100 | stl10 | imagenet | imagenet100 | photo_patches | mnist5k
    root: str = "data"              # directory holding the dataset in its official on-disk format
    image_size: int = 32            # crop size fed to the network
    augment: str = "moco_v2"        # moco_v2 | ring (the official Ring code's recipe) | cmc (crop + flip)
    workers: int = 2
    gpu_augment: bool = False       # photometric augmentation batched on the training device (kornia)
    verify_checksums: bool = True   # torchvision's md5 checks; tests write tiny files and turn them off
    limit: int = 0                  # use only the first N training images (0 = all); for smoke tests


@dataclass
class ModelConfig:
    arch: str = "resnet18"          # resnet18 | resnet50
    cifar_stem: bool = False        # 3x3 stride-1 first conv and no max-pool (32 px inputs)
    head: str = "mlp"               # mlp | linear
    feat_dim: int = 128
    bn_splits: int = 1              # SplitBatchNorm groups (MoCo on one device); 1 = plain BN


@dataclass
class AnnealConfig:
    schedule: str = "none"          # none | linear | step | cosine | exponential
    epochs: float = 0.0             # the outer fraction reaches its final value after this many epochs
    start: float = 1.0              # outer fraction at step 0 (1.0 = the whole pool)
    steps: int = 4                  # number of plateaus for the step schedule
    decay: float = 0.1              # exponential schedule: fraction of the gap left after `epochs`


@dataclass
class NegativesConfig:
    sampler: str = "uniform"        # uniform | ring | ball
    outer: float = 0.1              # keep the closest `outer` fraction of the pool (official thres_outer)
    inner: float = 0.1              # ... minus the closest `inner` fraction of those (official thres_inner)
    num: int = 4096                 # K: negatives IR draws per anchor; MoCo uses its whole band
    estimate: int = 0               # > 0: the ring taken on a random subset of at least this many
                                    # pool entries (ImageNet-scale banks); 0: exact ranks (topk)
    anneal: AnnealConfig = field(default_factory=AnnealConfig)


@dataclass
class MethodConfig:
    name: str = "ir"                # ir | moco | simclr | la | cmc
    temperature: float = 0.07
    bank_momentum: float = 0.0      # memory bank update momentum (official Ring IR: 0; CMC and LA: 0.5)
    queue_size: int = 65536         # MoCo queue length
    key_momentum: float = 0.999     # MoCo key-encoder EMA
    la_clusters: int = 1000         # LA: k of each k-means clustering of the bank
    la_clusterings: int = 3         # LA: number of clusterings (different seeds); close = same cluster in any
    la_kmeans_iters: int = 10       # LA: Lloyd iterations per clustering, every epoch


@dataclass
class OptimConfig:
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 256
    epochs: int = 200
    schedule: str = "step"          # step | cosine
    milestones: list = field(default_factory=lambda: [136, 166])
    gamma: float = 0.1


@dataclass
class TrainConfig:
    seed: int = 0
    device: str = "auto"            # auto | cpu | cuda
    log_every: int = 10             # steps between JSON-lines log entries
    ckpt_every: int = 0             # steps between mid-epoch checkpoints (0 = epoch ends only)
    keep_last: int = 3              # newest step checkpoints kept (final.pt links the newest)
    knn_every: int = 1              # epochs between kNN monitor evaluations (0 = off)
    precision: str = "auto"         # auto (bf16 autocast on CUDA, fp32 elsewhere) | fp32 | bf16
    channels_last: bool = True      # NHWC activations on CUDA (tensor-core friendly); ignored on CPU
    knn_k: int = 200
    knn_t: float = 0.07


@dataclass
class Config:
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    negatives: NegativesConfig = field(default_factory=NegativesConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


CHOICES = {  # a tuple, or a registry (pretrain/registry.py) whose names are the choices
    "data.dataset": DATASETS,
    "data.augment": ("moco_v2", "ring", "cmc"),
    "model.arch": ("resnet18", "resnet50"),
    "model.head": ("mlp", "linear"),
    "negatives.sampler": SAMPLERS,
    "train.precision": ("auto", "fp32", "bf16"),
    "negatives.anneal.schedule": ("none", "linear", "step", "cosine", "exponential"),  # = negatives.SCHEDULES
    "method.name": METHODS,
    "optim.schedule": ("step", "cosine"),
    "train.device": ("auto", "cpu", "cuda"),
}


def choices(dotted: str) -> tuple[str, ...]:
    allowed = CHOICES[dotted]
    return allowed.names() if isinstance(allowed, Registry) else allowed


def _coerce(value, typ, where: str):
    """Check `value` against the dataclass field type; ints are accepted for floats."""
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):
        try:  # PyYAML reads 1e-4 (no dot) as a string: accept the spelling everyone writes
            return float(value)
        except ValueError:
            pass
    if typ is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return value
    if typ is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not isinstance(value, typ):
        raise ConfigError(f"{where}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def _merge(obj, data: dict, source: str, prefix: str = "", sources: dict | None = None):
    """Set obj's fields from `data`, checking names and types; `sources` records, per dotted
    key, where its value came from (a file or a --set), so that a later range error can name it."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: section '{prefix.rstrip('.') or '<top>'}' must be a mapping")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        dotted = prefix + str(key)
        if key not in names:
            close = ", ".join(sorted(names))
            raise ConfigError(f"{source}: unknown config key '{dotted}' (known here: {close})")
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            _merge(getattr(obj, key), value, source, dotted + ".", sources)
        else:
            setattr(obj, key, _coerce(value, typ, f"{source}: key '{dotted}'"))
            if sources is not None:
                sources[dotted] = source


# Numeric ranges, checked before any data is read or any model built: a value outside them
# either crashes later (after the compute is spent) or trains something that is not what the
# key says. (low, high, what): inclusive bounds unless `what` says otherwise.
INF = float("inf")
RANGES = {
    "data.image_size": (8, INF, "an integer >= 8"),
    "data.workers": (0, INF, "an integer >= 0"),
    "data.limit": (0, INF, "an integer >= 0 (0 = all images)"),
    "model.feat_dim": (1, INF, "an integer >= 1"),
    "model.bn_splits": (1, INF, "an integer >= 1"),
    "negatives.num": (1, INF, "an integer >= 1"),
    "negatives.estimate": (0, INF, "an integer >= 0 (0 = exact ranks)"),
    "negatives.anneal.epochs": (0, INF, "a number >= 0"),
    "negatives.anneal.steps": (1, INF, "an integer >= 1"),
    "method.queue_size": (1, INF, "an integer >= 1"),
    "method.la_clusters": (1, INF, "an integer >= 1"),
    "method.la_clusterings": (1, INF, "an integer >= 1"),
    "method.la_kmeans_iters": (1, INF, "an integer >= 1"),
    "method.bank_momentum": (0, 1, "a number in [0, 1)"),
    "method.key_momentum": (0, 1, "a number in [0, 1]"),
    "optim.momentum": (0, 1, "a number in [0, 1)"),
    "optim.weight_decay": (0, INF, "a number >= 0"),
    "optim.batch_size": (2, INF, "an integer >= 2"),
    "optim.epochs": (1, INF, "an integer >= 1"),
    "train.log_every": (1, INF, "an integer >= 1"),
    "train.ckpt_every": (0, INF, "an integer >= 0 (0 = epoch ends only)"),
    "train.keep_last": (1, INF, "an integer >= 1"),
    "train.knn_every": (0, INF, "an integer >= 0 (0 = off)"),
    "train.knn_k": (1, INF, "an integer >= 1"),
}
POSITIVE = {  # strictly greater than 0 (and at most `high`)
    "optim.lr": (INF, "a number > 0"),
    "optim.gamma": (INF, "a number > 0"),
    "method.temperature": (INF, "a number > 0"),
    "train.knn_t": (INF, "a number > 0"),
    "negatives.outer": (1, "a number in (0, 1]"),
    "negatives.anneal.start": (1, "a number in (0, 1]"),
    "negatives.anneal.decay": (1, "a number in (0, 1)"),
}
OPEN_ABOVE = {"method.bank_momentum", "optim.momentum", "negatives.anneal.decay"}


def _out_of_range(value, dotted: str) -> str | None:
    """What `value` should have been, or None if it is within its range."""
    if dotted in RANGES:
        low, high, what = RANGES[dotted]
        bad = not low <= value <= high or (dotted in OPEN_ABOVE and value >= high)
    elif dotted in POSITIVE:
        high, what = POSITIVE[dotted]
        bad = not 0 < value <= high or (dotted in OPEN_ABOVE and value >= high)
    else:
        return None
    return what if bad or value != value else None  # (NaN is never in range)


def validate(cfg: Config, source: str = "config", sources: dict | None = None) -> Config:
    """Choices, numeric ranges and cross-key constraints; the error names where the value came
    from (the YAML file or the --set that gave it) and shows it."""
    sources = sources or {}
    flat = to_dict(cfg)
    where = lambda dotted: sources.get(dotted, f"{source} (default)" if source != "config" else "default config")  # noqa: E731
    for dotted in CHOICES:
        allowed, value = choices(dotted), _get(flat, dotted)
        if value not in allowed:
            raise ConfigError(f"{where(dotted)}: key '{dotted}' = {value!r}, expected one of {', '.join(allowed)}")
    for dotted in list(RANGES) + list(POSITIVE):
        value = _get(flat, dotted)
        what = _out_of_range(value, dotted)
        if what:
            raise ConfigError(f"{where(dotted)}: key '{dotted}' = {value!r}, expected {what}")
    if not 0.0 <= cfg.negatives.inner < 1.0:
        raise ConfigError(f"{where('negatives.inner')}: key 'negatives.inner' = {cfg.negatives.inner!r}, "
                          f"expected a number in [0, 1)")
    if any(not isinstance(m, int) or isinstance(m, bool) or m < 0 for m in cfg.optim.milestones):
        raise ConfigError(f"{where('optim.milestones')}: key 'optim.milestones' = {cfg.optim.milestones!r}, "
                          f"expected a list of epochs (integers >= 0)")
    if cfg.method.name == "moco" and cfg.method.queue_size < cfg.optim.batch_size:
        raise ConfigError(f"{where('method.queue_size')}: key 'method.queue_size' = {cfg.method.queue_size}, expected "
                          f">= optim.batch_size ({cfg.optim.batch_size}): each step pushes a whole batch of keys")
    from pretrain.cli import check_run_name
    try:
        check_run_name(cfg.name, "name")
    except UserError as exc:
        raise ConfigError(f"{where('name')}: key {exc}") from None
    return cfg


def _get(flat: dict, dotted: str):
    for part in dotted.split("."):
        flat = flat[part]
    return flat


def parse_override(text: str) -> dict:
    """'optim.lr=0.1' -> {'optim': {'lr': 0.1}} (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. optim.lr=0.1")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"--set {text!r}: the value {raw!r} is not valid YAML") from None
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    cfg, sources = Config(), {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found" + (" (it is a directory)" if path.is_dir() else ""))
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
        if data is None:  # an empty file would silently mean every default (a 200-epoch run)
            raise ConfigError(f"{path}: the config file is empty; expected a mapping of config sections "
                              f"(see configs/ for presets)")
        _merge(cfg, data, str(path), sources=sources)
    for text in overrides:
        _merge(cfg, parse_override(text), f"--set {text}", sources=sources)
    return validate(cfg, str(path) if path else "config", sources)


def from_dict(data: dict, source: str = "checkpoint config") -> Config:
    cfg, sources = Config(), {}
    _merge(cfg, data, source, sources=sources)
    return validate(cfg, source, sources)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)
