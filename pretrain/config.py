"""Pretraining configuration: OmegaConf structured configs (dataclasses), presets composed from
groups, dotted overrides, and ranges checked before any compute.

Defaults are the official Ring code's (docs/design.md §4). A preset composes groups through a
`defaults:` list (configs/groups/<group>/<option>.yaml: method, negatives, data, schedule) and
then sets its own keys; `--set key=value` overrides come last. Each method's own settings are
its own dataclass (e.g. `method.moco.queue_size`), registered with the method. Unknown keys,
wrong types and values out of range are errors that name the file (or the --set) and the key,
because a misspelt key silently falling back to a default is the classic way to run the wrong
experiment.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from core.errors import UserError
from core.registry import Registry
from pretrain.negatives import SCHEDULES
from pretrain.registry import DATASETS, METHODS, RECIPES, SAMPLERS, STRATEGIES
from pretrain.settings import at_least, fraction, out_of_range, positive


class ConfigError(UserError):
    """A configuration problem; the message names the file and the key."""


@dataclass
class DataConfig:
    dataset: str = "cifar10"        # a registered dataset (pretrain/datasets/)
    root: str = "data"              # directory holding the dataset in its official on-disk format
    image_size: int = at_least(32, 8)  # crop size fed to the network
    augment: str = "moco_v2"        # a recipe of pretrain/recipes/: moco_v2 | ring (the official Ring code's) | cmc (crop + flip)
    workers: int = at_least(2, 0)  # data-loader processes per training process
    gpu_augment: bool = False       # photometric augmentation batched on the training device (kornia)
    gpu_decode: bool = False        # JPEG decode, crop and flip on the device too (image folders; needs gpu_augment)
    verify_checksums: bool = True   # torchvision's md5 checks; tests write tiny files and turn them off
    limit: int = at_least(0, 0, "0 = all images")  # train on N images, class-stratified, one seeded subset for
                                    # every run (data.subset); for smoke tests


@dataclass
class ModelConfig:
    arch: str = "resnet18"          # resnet18 | resnet50
    cifar_stem: bool = False        # 3x3 stride-1 first conv and no max-pool (32 px inputs)
    head: str = "mlp"               # mlp | linear
    feat_dim: int = at_least(128, 1)  # the head's output: the embedding the losses compare
    bn_splits: int = at_least(1, 1)  # SplitBatchNorm groups (MoCo on one device); 1 = plain BN


@dataclass
class AnnealConfig:
    schedule: str = "none"          # none | linear | step | cosine | exponential | official_step
    epochs: float = at_least(0.0, 0)  # the outer fraction reaches its final value after this many epochs
    start: float = fraction(1.0, low_open=True)  # outer fraction at step 0 (1.0 = the whole pool)
    steps: int = at_least(4, 1)     # number of plateaus for the step schedule
    decay: float = fraction(0.1, low_open=True, high_open=True)  # exponential: share of the gap left at the end


@dataclass
class _NegativesBase:
    sampler: str = "uniform"        # a registered sampler: uniform | ring | ball
    objective: str = "infonce"      # a registered strategy: how negatives count (infonce | dcl | hcl)
    outer: float = fraction(0.1, low_open=True)  # keep the closest `outer` fraction of the pool (thres_outer)
    inner: float = fraction(0.1, high_open=True)  # ... minus the closest `inner` fraction of those (thres_inner)
    num: int = at_least(4096, 1)    # K: negatives IR and CMC draw per anchor; MoCo uses its whole band
    estimate: int = at_least(0, 0, "0 = exact ranks")  # > 0: the ring taken on a random subset of at least
                                    # this many pool entries (ImageNet-scale banks)
    neighbor_views: bool = False    # ring only: the inner core (ranks [0, lo)) joins the positive by
                                    # logsumexp, as the official neighbor_views / logsumexp_inner
    anneal: AnnealConfig = field(default_factory=AnnealConfig)


@dataclass
class _MethodBase:
    name: str = "ir"                # a registered method (pretrain/methods/); the default: IR
    temperature: float = positive(0.07)  # t of every method's exp(similarity / t)


def _method_config() -> type:
    """`method`: the shared keys, then one section per registered method that has settings of
    its own (its dataclass lives in its file: adding a method never edits this one)."""
    fields = []
    for name in METHODS.names():
        own = METHODS.meta(name).get("config")
        if own is not None:
            fields.append((name, own, field(default_factory=own)))
    return dataclasses.make_dataclass("MethodConfig", fields, bases=(_MethodBase,))


MethodConfig = _method_config()


def _negatives_config() -> type:
    """`negatives`: the sampler's keys, then one section per registered strategy that has
    settings of its own (`negatives.hcl.beta`; its dataclass lives in its file)."""
    fields = []
    for name in STRATEGIES.names():
        own = STRATEGIES.meta(name).get("config")
        if own is not None:
            fields.append((name, own, field(default_factory=own)))
    return dataclasses.make_dataclass("NegativesConfig", fields, bases=(_NegativesBase,))


NegativesConfig = _negatives_config()


@dataclass
class OptimConfig:
    lr: float = positive(0.03)      # SGD learning rate at the start (for the global batch)
    momentum: float = fraction(0.9, high_open=True)  # SGD momentum
    weight_decay: float = at_least(1e-4, 0)  # SGD weight decay
    batch_size: int = at_least(256, 2)  # the global batch
    epochs: int = at_least(200, 1)  # passes over the (limited) training set
    schedule: str = "step"          # step | cosine
    milestones: typing.List[int] = field(default_factory=lambda: [136, 166])  # step: epochs where lr is x gamma
    gamma: float = positive(0.1)    # step: the lr factor at each milestone


@dataclass
class TrainConfig:
    seed: int = 0                   # weights, memories, batch order and augmentations; paired runs share it
    device: str = "auto"            # auto | cpu | cuda
    log_every: int = at_least(10, 1)  # steps between JSON-lines log entries
    ckpt_every: int = at_least(0, 0, "0 = epoch ends only")  # steps between mid-epoch checkpoints
    keep_last: int = at_least(3, 1)  # newest step checkpoints kept (final.pt links the newest)
    knn_every: int = at_least(1, 0, "0 = off")  # epochs between kNN monitor evaluations
    precision: str = "auto"         # auto (bf16 autocast on CUDA, fp32 elsewhere) | fp32 | bf16
    channels_last: bool = True      # NHWC activations on CUDA (tensor-core friendly); ignored on CPU
    knn_k: int = at_least(200, 1)   # the kNN monitor's neighbours
    knn_t: float = positive(0.07)   # the kNN monitor's vote temperature, exp(similarity / t)
    tensorboard: bool = True        # TensorBoard event files beside log.jsonl (tensorboard --logdir runs)
    compile: bool = False           # torch.compile the backbones and heads (in place; off until a GPU
                                    # measurement shows it wins: benchmarks/ring_speed.py)
    compile_mode: str = "default"   # torch.compile's mode: default | reduce-overhead | max-autotune (both
                                    # of the last replay CUDA graphs; the step has static shapes, no host sync)
    fused_optimizer: str = "auto"   # auto (fused SGD on CUDA) | on | off


@dataclass
class Config:
    name: str = "run"               # the run's folder under --out and --results, and its name in records
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    negatives: NegativesConfig = field(default_factory=NegativesConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


CHOICES = {  # a tuple, or a registry (pretrain/registry.py) whose names are the choices
    "data.dataset": DATASETS,
    "data.augment": RECIPES,
    "model.arch": ("resnet18", "resnet50"),
    "model.head": ("mlp", "linear"),
    "negatives.sampler": SAMPLERS,
    "negatives.objective": STRATEGIES,
    "train.precision": ("auto", "fp32", "bf16"),
    "negatives.anneal.schedule": SCHEDULES,
    "method.name": METHODS,
    "optim.schedule": ("step", "cosine"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.fused_optimizer": ("auto", "on", "off"),
    "train.compile_mode": ("default", "reduce-overhead", "max-autotune"),
}


def _settings_attr(attr: str) -> dict[str, dict]:
    """{method: its settings class's `attr`} for the registered methods that have one."""
    out = {}
    for name in METHODS.names():
        own = METHODS.meta(name).get("config")
        if getattr(own, attr, None):
            out[name] = getattr(own, attr)
    return out


# Keys of configs written before each method had its own settings: still read, moved to the
# place each method's settings name (their LEGACY). bank_momentum went to every bank method;
# only the running method's is used.
LEGACY: dict[str, tuple[str, ...]] = {}
for _name, _moved in _settings_attr("LEGACY").items():
    for _old, _new in _moved.items():
        LEGACY[_old] = LEGACY.get(_old, ()) + (f"method.{_name}.{_new}",)
GROUPS = "groups"  # configs/groups/<group>/<option>.yaml, named in a preset's `defaults:` list


def choices(dotted: str) -> tuple[str, ...]:
    allowed = CHOICES[dotted]
    return allowed.names() if isinstance(allowed, Registry) else allowed


# ---------------------------------------------------------------- reading and composing

def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _nest(flat: dict) -> dict:
    out: dict = {}
    for dotted, value in flat.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _migrate(data: dict) -> dict:
    """Legacy keys (LEGACY) moved to their place in today's schema."""
    flat = _flat(data)
    if not any(k in LEGACY for k in flat):
        return data
    out = {k: v for k, v in flat.items() if k not in LEGACY}
    for old, new in LEGACY.items():
        if old in flat:
            out.update({n: flat[old] for n in new if n not in out})
    return _nest(out)


def _strict_types(data: dict, schema, source: str, prefix: str = "") -> None:
    """OmegaConf turns 1 into True and 5 into '5'; a bool or a string key takes only that type
    (anything else is almost always a slip). Unknown keys are left to OmegaConf."""
    if not isinstance(data, dict):
        return
    hints = typing.get_type_hints(schema)
    for key, value in data.items():
        typ = hints.get(key)
        dotted = prefix + str(key)
        if typ is None:
            continue
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: section '{dotted}' must be a mapping")
            _strict_types(value, typ, source, dotted + ".")
        elif typ is bool and not isinstance(value, bool):
            raise ConfigError(f"{source}: key '{dotted}': expected true/false, got {value!r}")
        elif typ is str and isinstance(value, bool) and dotted in CHOICES and "on" in choices(dotted):
            data[key] = "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
        elif typ is str and not isinstance(value, str):
            raise ConfigError(f"{source}: key '{dotted}': expected a string, got {value!r}")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
                          f"expected a YAML file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    if data is None:  # an empty file would silently mean every default (a 200-epoch run)
        raise ConfigError(f"{path}: the config file is empty; expected a mapping of config sections "
                          f"(see configs/ for presets)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections, got a {type(data).__name__}")
    return data


def _resolve(entry, path: Path) -> Path:
    """A `defaults:` entry: 'group/option' (configs/groups/<group>/<option>.yaml, found from the
    nearest folder above the preset that has groups/) or a path relative to the preset."""
    if not isinstance(entry, str) or not entry:
        raise ConfigError(f"{path}: key 'defaults': expected a list of group/option names, got {entry!r}")
    name = entry if entry.endswith((".yaml", ".yml")) else entry + ".yaml"
    if entry.startswith((".", "/")):
        target = (path.parent / name).resolve()
    else:
        root = next((p / GROUPS for p in path.resolve().parents if (p / GROUPS).is_dir()), None)
        if root is None:
            raise ConfigError(f"{path}: defaults entry {entry!r}: no {GROUPS}/ folder above this file")
        target = root / name
    if not target.is_file():
        raise ConfigError(f"{path}: defaults entry {entry!r}: {target} not found")
    return target


def _layers(path: Path, seen: tuple = ()) -> list[tuple[str, dict]]:
    """(source, data) in merge order: the defaults (recursively), then the file itself."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: defaults include each other in a loop ({' -> '.join(map(str, seen))})")
    data = _read_yaml(path)
    defaults = data.pop("defaults", []) or []
    if not isinstance(defaults, list):
        raise ConfigError(f"{path}: key 'defaults': expected a list of group/option names, got {defaults!r}")
    groups = [e.split("/")[0] for e in defaults if isinstance(e, str) and "/" in e and not e.startswith((".", "/"))]
    twice = next((g for g in groups if groups.count(g) > 1), None)
    if twice is not None:  # the later option would silently replace the earlier one's keys
        named = ", ".join(e for e in defaults if isinstance(e, str) and e.startswith(twice + "/"))
        raise ConfigError(f"{path}: key 'defaults': two options of group '{twice}' ({named}); expected at most one "
                          f"(the later would silently override the earlier)")
    out = []
    for entry in defaults:
        out += _layers(_resolve(entry, path), seen + (path.resolve(),))
    return out + [(str(path), data)]


def _merge(cfg, data: dict, source: str, sources: dict):
    """OmegaConf merge of one layer onto the structured config, with one-line errors that name
    the layer (the file or the --set) and the key. OmegaConf's exception says which key; what the
    key expects is read from the schema, not from the exception's wording."""
    data = _migrate(data)
    _strict_types(data, Config, source)
    try:
        merged = OmegaConf.merge(cfg, data)
    except ConfigKeyError as exc:
        raise ConfigError(f"{source}: unknown config key '{exc.full_key}'") from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        value = OmegaConf.select(OmegaConf.create(data), key, default=None) if key else None
        raise ConfigError(f"{source}: key '{key}': {_expected(key, value, exc)}") from None
    sources.update({k: source for k in _flat(data)})
    return merged


def _schema_type(dotted: str):
    """The type the schema gives a dotted key (None where it has none)."""
    typ = Config
    for part in dotted.split(".") if dotted else ():
        hints = typing.get_type_hints(typ) if dataclasses.is_dataclass(typ) else {}
        if part not in hints:
            return None
        typ = hints[part]
    return typ


def _expected(key: str, value, exc: Exception) -> str:
    typ = _schema_type(key)
    if typing.get_origin(typ) in (typing.Union, types.UnionType):  # Optional[x]: x
        typ = next(a for a in typing.get_args(typ) if a is not type(None))
    origin = typing.get_origin(typ) or typ
    if typ is None or dataclasses.is_dataclass(typ):
        return "must be a mapping"
    if origin is int:
        return f"expected an integer, got {value!r}"
    if origin is float:
        return f"expected float, got {value!r}"
    if origin in (list, tuple):
        return f"expected a list, got {value!r}"
    return str(exc).splitlines()[0]


# ---------------------------------------------------------------- checking

def _check_ranges(obj, sources: dict, fallback: str, prefix: str = "") -> None:
    for f in dataclasses.fields(obj):
        value, dotted = getattr(obj, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            _check_ranges(value, sources, fallback, dotted + ".")
        elif "range" in f.metadata and isinstance(value, (int, float)) and not isinstance(value, bool):
            what = out_of_range(value, f.metadata["range"])
            if what:
                raise ConfigError(f"{sources.get(dotted, fallback)}: key '{dotted}' = {value!r}, expected {what}")


def validate(cfg: Config, source: str = "config", sources: dict | None = None) -> Config:
    """Choices, numeric ranges and cross-key constraints; the error names where the value came
    from (the YAML file or the --set that gave it) and shows it."""
    sources = sources or {}
    fallback = f"{source} (default)" if source != "config" else "default config"
    where = lambda dotted: sources.get(dotted, fallback)  # noqa: E731
    flat = _flat(to_dict(cfg))
    for dotted in CHOICES:
        allowed, value = choices(dotted), flat[dotted]
        if value not in allowed:
            raise ConfigError(f"{where(dotted)}: key '{dotted}' = {value!r}, expected one of {', '.join(allowed)}")
    _check_ranges(cfg, sources, fallback)
    if any(m < 0 for m in cfg.optim.milestones):
        raise ConfigError(f"{where('optim.milestones')}: key 'optim.milestones' = {cfg.optim.milestones!r}, "
                          f"expected a list of epochs (integers >= 0)")
    if cfg.data.gpu_decode and not cfg.data.gpu_augment:
        raise ConfigError(f"{where('data.gpu_decode')}: key 'data.gpu_decode' = true needs data.gpu_augment = true "
                          f"(decoded views are uint8 crops that DeviceAugment finishes)")
    method = cfg.method.name
    infonce = METHODS.meta(method).get("infonce", True)  # (a method's loss, registered with it)
    if cfg.negatives.neighbor_views and (cfg.negatives.sampler != "ring" or not infonce or cfg.negatives.estimate):
        raise ConfigError(f"{where('negatives.neighbor_views')}: key 'negatives.neighbor_views' = true needs "
                          f"negatives.sampler=ring with exact ranks (negatives.estimate=0), and a method whose loss "
                          f"is InfoNCE" + ("" if infonce else f" (method {method}'s is not)"))
    if cfg.negatives.objective != "infonce" and (not infonce or cfg.negatives.neighbor_views):
        why = (f"method {method}'s loss is not InfoNCE" if not infonce else
               "negatives.neighbor_views changes InfoNCE's numerator instead")
        raise ConfigError(f"{where('negatives.objective')}: key 'negatives.objective' = {cfg.negatives.objective!r} "
                          f"reweights InfoNCE's negatives; expected infonce ({why})")
    own = getattr(cfg.method, method, None)  # the method's own settings check themselves
    problem = own.check(cfg) if hasattr(own, "check") else None
    if problem is not None:
        key, what = problem
        raise ConfigError(f"{where(key)}: key '{key}' = {what}")
    from core.cli import check_run_name
    try:
        check_run_name(cfg.name, "name")
    except UserError as exc:
        raise ConfigError(f"{where('name')}: key {exc}") from None
    return cfg


# ---------------------------------------------------------------- public

def parse_override(text: str) -> dict:
    """'optim.lr=0.1' -> {'optim': {'lr': 0.1}} (the value is parsed as YAML, as OmegaConf's
    dotlist does)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. optim.lr=0.1")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist([text]))
    except (OmegaConfBaseException, yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"--set {text!r}: not a KEY=VALUE override ({str(exc).splitlines()[0]})") from None


def load(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """The config of a preset (with its composed defaults) and --set overrides, checked."""
    cfg, sources = OmegaConf.structured(Config), {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found" + (" (it is a directory)" if path.is_dir() else ""))
        for source, data in _layers(path):
            cfg = _merge(cfg, data, source, sources)
    for text in overrides:
        cfg = _merge(cfg, parse_override(text), f"--set {text}", sources)
    return validate(OmegaConf.to_object(cfg), str(path) if path else "config", sources)


def from_dict(data: dict, source: str = "checkpoint config") -> Config:
    sources: dict = {}
    cfg = _merge(OmegaConf.structured(Config), data, source, sources)
    return validate(OmegaConf.to_object(cfg), source, sources)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


# Settings added with a default that changes training: a config written before them ran the
# old behaviour, which these values keep (so an older checkpoint resumes as it was trained); each
# method's settings name theirs (BEFORE).
BEFORE_SETTING = {f"method.{name}.{key}": value for name, before in _settings_attr("BEFORE").items()
                  for key, value in before.items()}


def migrate(data: dict) -> dict:
    """A config dict (e.g. from an older checkpoint) in today's layout: today's defaults, except
    BEFORE_SETTING's for the keys it lacks."""
    flat = _flat(_migrate(data))
    if "method.name" in flat:  # a ringbench config (not a hand-made fragment)
        flat.update({k: v for k, v in BEFORE_SETTING.items() if k not in flat})
    return to_dict(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), _nest(flat))))
