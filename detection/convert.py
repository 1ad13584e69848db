"""Checkpoint -> detectron2 weights pickle (MoCo's convert-pretrain-to-detectron2.py, checked).

The source is anything core.checkpoint reads: a ringbench checkpoint, a plain torchvision
ResNet state dict or a MoCo checkpoint. Keys are renamed from torchvision's ResNet to
detectron2's:

    conv1.*                   -> stem.conv1.*
    bn1.*                     -> stem.conv1.norm.*
    layerN.B.convK.*          -> res<N+1>.B.convK.*
    layerN.B.bnK.*            -> res<N+1>.B.convK.norm.*
    layerN.B.downsample.0.*   -> res<N+1>.B.shortcut.*
    layerN.B.downsample.1.*   -> res<N+1>.B.shortcut.norm.*

The source must hold exactly the keys of a torchvision ResNet (fc aside), and every key is
used exactly once; anything else (a CMC backbone, a CIFAR stem, a layout of another network)
is refused with one line. The output is detectron2's own model-zoo pickle format:
{"model": {name: numpy array}, "__author__": "ringbench", "matching_heuristics": True}.
matching_heuristics lets detectron2's checkpointer place "stem.*"/"resN.*" wherever the model
has them (backbone.bottom_up.* for FPN, backbone.* and roi_heads.res5.* for C4), exactly as
for MoCo's pickles. A "ringbench" entry records the provenance and the architecture.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

from detection.errors import DetectionError, UnsupportedBackbone

# (block kind, blocks per stage) -> torchvision name; detectron2's RESNETS.DEPTH is the number
DEPTHS = {("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
          ("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101",
          ("bottleneck", (3, 8, 36, 3)): "resnet152"}
ARCH_DEPTH = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}

_STEM = re.compile(r"^(conv1|bn1)\.(\w+)$")
_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.(conv[1-3]|bn[1-3]|downsample\.[01])\.(\w+)$")


def rename(key: str) -> str | None:
    """detectron2's name for a torchvision ResNet key, or None if it is not one."""
    if m := _STEM.match(key):
        return f"stem.conv1.{m[2]}" if m[1] == "conv1" else f"stem.conv1.norm.{m[2]}"
    if m := _BLOCK.match(key):
        stage, block, part, leaf = int(m[1]) + 1, m[2], m[3], m[4]
        part = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm"}.get(
            part, part if part.startswith("conv") else f"conv{part[2]}.norm")
        return f"res{stage}.{block}.{part}.{leaf}"
    return None


def infer_arch(sd: dict) -> str | None:
    """torchvision ResNet name from the blocks present, or None for another layout."""
    blocks = tuple(len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    kind = "bottleneck" if "layer1.0.conv3.weight" in sd else "basic"
    return DEPTHS.get((kind, blocks))


def source_backbone(path: str | os.PathLike) -> tuple[dict, dict]:
    """(torchvision-named backbone state dict, provenance) of a supported checkpoint."""
    from core import checkpoint
    from core.records import sha256

    try:
        payload = checkpoint.read(path)
        sd, arch, cifar_stem, kind = checkpoint.backbone_state(payload, str(path))
    except checkpoint.CheckpointError as exc:
        raise DetectionError(str(exc)) from None
    if arch.startswith("cmc_"):
        raise UnsupportedBackbone(f"{path}: a CMC backbone (two half-width ResNets on the L and ab channels) "
                             f"has no detectron2 ResNet counterpart; only single ResNets can be converted")
    if cifar_stem:
        raise UnsupportedBackbone(f"{path}: the backbone has a 3x3 CIFAR stem; detectron2's ResNet stem is "
                             f"7x7 with stride 2, so these weights cannot be transferred")
    config = payload.get("config") if payload.get("format") == checkpoint.FORMAT else None
    return sd, {"source": str(path), "source_sha256": sha256(path), "kind": kind, "config": config}


def convert(sd: dict, expect: str = "resnet50", source: str = "checkpoint") -> tuple[dict, str, list]:
    """({detectron2 name: numpy array}, arch, [(source key, detectron2 key)]) of a torchvision
    ResNet state dict without fc. `expect` is the architecture the target config is built
    for ("any": whatever the weights are)."""
    arch = infer_arch(sd)
    if arch is None:
        raise DetectionError(f"{source}: not a torchvision ResNet layout (blocks per stage and block "
                             f"kind match no ResNet-18/34/50/101/152)")
    if expect != "any" and arch != expect:
        raise DetectionError(f"{source}: holds a {arch} backbone but the target is {expect} (the detection "
                             f"configs are R50; pass --arch {arch} for the R{ARCH_DEPTH[arch]}-FPN variant)")
    import torchvision  # the exact key set of that torchvision ResNet: nothing missing, nothing extra

    want = {k for k in getattr(torchvision.models, arch)(weights=None).state_dict() if not k.startswith("fc.")}
    extra, missing = sorted(set(sd) - want), sorted(want - set(sd))
    if extra or missing:
        raise DetectionError(f"{source}: does not match torchvision {arch}: "
                             f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}, "
                             f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
    mapping = [(k, rename(k)) for k in sorted(sd)]
    unknown = [k for k, new in mapping if new is None]
    if unknown:  # a torchvision key the rules do not cover: never silently dropped
        raise DetectionError(f"{source}: no detectron2 name for {unknown[:3]}")
    used = {}
    for old, new in mapping:  # every source key used exactly once, onto distinct names
        assert new not in used, f"{old} and {used[new]} both map to {new}"
        used[new] = old
    assert sorted(used.values()) == sorted(sd), "every source key must be used exactly once"
    model = {new: sd[old].detach().cpu().numpy() for old, new in mapping}
    return model, arch, mapping


def write(obj: dict, out: str | os.PathLike) -> Path:
    """Pickle `obj` atomically (temporary file, fsync, rename)."""
    from core.files import atomic_write
    return atomic_write(out, lambda f: pickle.dump(obj, f))


def convert_file(ckpt: str | os.PathLike, out: str | os.PathLike, expect: str = "resnet50",
                 verbose: bool = True) -> tuple[Path, dict]:
    """Checkpoint file -> detectron2 pickle; returns (path, provenance)."""
    sd, info = source_backbone(ckpt)
    model, arch, mapping = convert(sd, expect, str(ckpt))
    if verbose:
        for old, new in mapping:
            print(f"{old} -> {new}")
    info = {**info, "arch": arch, "depth": ARCH_DEPTH[arch], "keys": len(model)}
    path = write({"model": model, "__author__": "ringbench", "matching_heuristics": True, "ringbench": info}, out)
    print(f"[detection] converted {len(model)} tensors of a {arch} ({info['kind']} checkpoint) -> {path}")
    return path, info


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: reading the weights file to check it
    runs no code (detectron2 itself later loads it with plain pickle)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights pickle")


def read_weights(path: str | os.PathLike) -> dict:
    """The detectron2 weights pickle at `path`, checked: {"model": {name: array}, ...}."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise DetectionError(f"{path}: weights file not found (make one with: python -m detection convert CKPT {path})")
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnly(f, encoding="latin1").load()
    except Exception as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise DetectionError(f"{path}: not a detectron2 weights pickle ({detail})") from None
    model = obj.get("model") if isinstance(obj, dict) else None
    if not isinstance(model, dict) or not model or not all(isinstance(v, np.ndarray) for v in model.values()):
        raise DetectionError(f"{path}: not a detectron2 weights pickle (expected a dict with 'model': "
                             f"{{name: numpy array}}, as written by python -m detection convert)")
    return obj


def weights_arch(obj: dict) -> str | None:
    """Architecture of a weights pickle: the converter's record, else read off detectron2's names."""
    arch = (obj.get("ringbench") or {}).get("arch")
    if arch:
        return arch
    back = {re.sub(r"^res(\d)", lambda m: f"layer{int(m[1]) - 1}", k): v for k, v in obj["model"].items()
            if re.match(r"^res[2-5]\.", k)}
    return infer_arch(back)
