"""Pretraining configuration: typed dataclasses, strict YAML loading, dotted overrides.

Defaults are the official Ring code's (DESIGN §4); a preset only lists what differs.
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


class ConfigError(ValueError):
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
    keep_last: int = 3              # checkpoints kept besides last.pt
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


CHOICES = {
    "data.dataset": ("cifar10", "cifar100", "stl10", "imagenet", "imagenet100", "photo_patches", "mnist5k"),
    "data.augment": ("moco_v2", "ring", "cmc"),
    "model.arch": ("resnet18", "resnet50"),
    "model.head": ("mlp", "linear"),
    "negatives.sampler": ("uniform", "ring", "ball"),
    "train.precision": ("auto", "fp32", "bf16"),
    "negatives.anneal.schedule": ("none", "linear", "step", "cosine", "exponential"),
    "method.name": ("ir", "moco", "simclr", "la", "cmc"),
    "optim.schedule": ("step", "cosine"),
    "train.device": ("auto", "cpu", "cuda"),
}


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


def _merge(obj, data: dict, source: str, prefix: str = ""):
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
            _merge(getattr(obj, key), value, source, dotted + ".")
        else:
            setattr(obj, key, _coerce(value, typ, f"{source}: key '{dotted}'"))


def validate(cfg: Config, source: str = "config") -> Config:
    flat = to_dict(cfg)
    for dotted, allowed in CHOICES.items():
        value = _get(flat, dotted)
        if value not in allowed:
            raise ConfigError(f"{source}: key '{dotted}' = {value!r}, expected one of {', '.join(allowed)}")
    neg = cfg.negatives
    if not (0.0 < neg.outer <= 1.0 and 0.0 <= neg.inner < 1.0):
        raise ConfigError(f"{source}: key 'negatives.outer'/'negatives.inner' must satisfy 0 < outer <= 1, 0 <= inner < 1")
    if cfg.optim.batch_size < 2 or cfg.optim.epochs < 1:
        raise ConfigError(f"{source}: key 'optim.batch_size' must be >= 2 and 'optim.epochs' >= 1")
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
    value = yaml.safe_load(raw)
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        _merge(cfg, data, str(path))
    for text in overrides:
        _merge(cfg, parse_override(text), f"--set {text}")
    return validate(cfg, str(path) if path else "config")


def from_dict(data: dict, source: str = "checkpoint config") -> Config:
    cfg = Config()
    _merge(cfg, data, source)
    return validate(cfg, source)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)
