"""The canonical checkpoint format, atomic writes, and the backbone state dict of any supported
checkpoint (pretrain.models.load_backbone builds the network for the harnesses).

A checkpoint is a dict loadable with torch.load(weights_only=True):
  format, version, arch, cifar_stem, feature_dim,
  backbone      torchvision ResNet key names without fc (loads strictly into
                torchvision.models.<arch>() whose fc is nn.Identity()),
  head          projection head state dict,
  method_state  everything else of the method (memory bank, queue, key encoder),
  optimizer, scheduler, sampler, rng, config (resolved), epoch, step, step_in_epoch.
"""
from __future__ import annotations

import os
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from core.files import atomic_write

FORMAT, VERSION = "ringbench-checkpoint", 1


class CheckpointError(UserError):
    """Missing, corrupt or incompatible checkpoint; the message names the file."""


def atomic_save(obj, path: str | os.PathLike) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`:
    a reader sees either the old file or the complete new one, never half of one."""
    atomic_write(path, lambda f: torch.save(obj, f))


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _what_file(path: Path) -> str:
    """What a file that torch cannot load as a checkpoint looks like, from its first bytes."""
    head = path.open("rb").read(512)
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):
        return "a corrupt or truncated PyTorch checkpoint (zip archive)"
    if head[:1] == b"\x80" or path.suffix == ".pkl":
        return "a Python pickle (e.g. detectron2 weights), not a PyTorch checkpoint"
    try:
        head.decode("utf-8")
        return "a text file, not a PyTorch checkpoint"
    except UnicodeDecodeError:
        return "not a PyTorch checkpoint (unrecognised binary data)"


EXPECTED = "expected a checkpoint written by python -m pretrain, a torchvision ResNet state dict or a MoCo checkpoint"


def read(path: str | os.PathLike) -> dict:
    """torch.load with one line for each way a file can fail to be a checkpoint: it says what
    the file is and what was expected."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a directory, not a checkpoint file; {EXPECTED} (.pt)")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated zip, garbage bytes, pickles with code or foreign objects
        raise CheckpointError(f"{path}: {_what_file(path)}; {EXPECTED}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: holds a {type(payload).__name__}, not a dict of weights; {EXPECTED}")
    return payload


def checkpoint_step(path: Path) -> int:
    m = re.search(r"step(\d+)", path.name)
    return int(m.group(1)) if m else -1


def latest(directory: str | os.PathLike) -> tuple[Path, dict] | None:
    """Newest readable checkpoint in `directory` (by step); corrupt ones are skipped with a warning."""
    files = sorted(Path(directory).glob("ckpt_step*.pt"), key=checkpoint_step, reverse=True)
    for f in files:
        try:
            payload = read(f)
        except CheckpointError as exc:
            warnings.warn(f"skipping {exc}")
            continue
        if payload.get("format") == FORMAT:
            return f, payload
        warnings.warn(f"skipping {f}: not a ringbench checkpoint")
    return None


# ---------------------------------------------------------------- backbones for harnesses

_PREFIXES = ("module.encoder_q.", "encoder_q.", "module.encoder.backbone.", "encoder.backbone.",
             "module.backbone.", "backbone.", "module.")


def _infer_arch(sd: dict) -> str:
    return "resnet50" if "layer1.0.conv3.weight" in sd else "resnet18"


def backbone_state(payload: dict, source: str = "checkpoint") -> tuple[dict, str, bool, str]:
    """(state dict with torchvision names and no fc, arch, cifar_stem, kind) of any supported
    checkpoint: ours, a plain torchvision ResNet state dict, or a MoCo-style checkpoint."""
    if payload.get("format") == FORMAT:
        return payload["backbone"], payload["arch"], payload["cifar_stem"], "ringbench"
    sd = payload.get("state_dict", payload.get("model", payload))
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{source}: no state dict found (expected a ringbench checkpoint, "
                              f"a torchvision ResNet state dict or a MoCo checkpoint)")
    kind = "torchvision"
    for prefix in _PREFIXES:
        if any(k.startswith(prefix) for k in sd):
            kind = "moco" if "encoder_q" in prefix else kind
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            break
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    if "conv1.weight" not in sd:
        raise CheckpointError(f"{source}: no ResNet backbone keys (conv1.weight missing) in the state dict")
    cifar_stem = tuple(sd["conv1.weight"].shape[-2:]) == (3, 3)
    return sd, _infer_arch(sd), cifar_stem, kind
