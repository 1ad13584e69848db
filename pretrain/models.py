"""Backbones (torchvision ResNets, so checkpoints keep torchvision key names) and heads."""
from __future__ import annotations

import functools
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from core import checkpoint
from pretrain import color

FEATURE_DIMS = {"resnet18": 512, "resnet50": 2048}  # pooled feature sizes


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm over `splits` sub-batches: on one device it stops MoCo's query and key from
    sharing batch statistics (the cheat that shuffle-BN prevents under DDP). Same keys as
    BatchNorm2d, so the backbone still loads into a plain torchvision ResNet."""

    def __init__(self, num_features: int, splits: int, **kw):
        super().__init__(num_features, **kw)
        self.splits = splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if not self.training or self.splits == 1 or n % self.splits:
            return super().forward(x)
        s = self.splits
        mean, var = self.running_mean.repeat(s), self.running_var.repeat(s)
        out = F.batch_norm(x.reshape(n // s, c * s, h, w), mean, var, self.weight.repeat(s),
                           self.bias.repeat(s), True, self.momentum, self.eps).reshape(n, c, h, w)
        self.running_mean.copy_(mean.view(s, c).mean(0))
        self.running_var.copy_(var.view(s, c).mean(0))
        self.num_batches_tracked.add_(1)
        return out


def backbone(arch: str = "resnet18", cifar_stem: bool = False, bn_splits: int = 1,
             in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """A torchvision ResNet without its classifier (fc = Identity): image -> pooled feature.

    `width` scales every stage's channels (CMC's half-width encoders) and `in_channels` the
    input; module names stay torchvision's, so state dicts keep torchvision keys."""
    if arch.startswith("cmc_"):
        return CMCBackbone(arch[4:], cifar_stem, bn_splits)
    if arch not in FEATURE_DIMS:
        raise ValueError(f"unknown architecture {arch!r}, expected one of {', '.join(FEATURE_DIMS)} "
                         f"or cmc_<one of them>")
    norm = functools.partial(SplitBatchNorm, splits=bn_splits) if bn_splits > 1 else nn.BatchNorm2d
    net = getattr(torchvision.models, arch)(weights=None, norm_layer=norm)
    if width != 1.0 or in_channels != 3:  # rebuild the stages at the new width
        block, depths = type(net.layer1[0]), [len(getattr(net, f"layer{i}")) for i in range(1, 5)]
        net.inplanes = int(64 * width)
        net.conv1 = nn.Conv2d(in_channels, net.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        net.bn1 = norm(net.inplanes)
        for i, depth in enumerate(depths):
            setattr(net, f"layer{i + 1}", net._make_layer(block, int(64 * width) * 2**i, depth, stride=1 if i == 0 else 2))
        for m in net.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    if cifar_stem:  # small images: keep resolution in the stem (as in SimCLR/MoCo CIFAR code)
        net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.out_dim = int(FEATURE_DIMS[arch] * width)
    net.arch_name = arch
    return net


class CMCBackbone(nn.Module):
    """CMC's colour split (Tian et al. 2019): the normalised RGB input is converted to Lab
    inside the model, L goes to one half-width ResNet and ab to another; the feature is their
    concatenation (as CMC's linear evaluation uses), so any harness can feed it RGB."""

    def __init__(self, arch: str, cifar_stem: bool = False, bn_splits: int = 1):
        super().__init__()
        self.l = backbone(arch, cifar_stem, bn_splits, in_channels=1, width=0.5)
        self.ab = backbone(arch, cifar_stem, bn_splits, in_channels=2, width=0.5)
        self.fc = nn.Identity()  # the linear probe replaces it, exactly as for a torchvision ResNet
        self.out_dim = self.l.out_dim + self.ab.out_dim
        self.arch_name = f"cmc_{arch}"

    def views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lab = color.normalized_rgb_to_lab(x)
        # scale to roughly [-1, 1]: L in [0, 100], a and b within about ±110
        return self.l(lab[:, :1] / 50.0 - 1.0), self.ab(lab[:, 1:] / 110.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat(self.views(x), dim=1))


def head(kind: str, in_dim: int, out_dim: int = 128) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":  # MoCo-v2 / SimCLR projection head
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))
    raise ValueError(f"unknown head {kind!r}, expected mlp or linear")


class Encoder(nn.Module):
    """backbone + projection head; returns the L2-normalised embedding. With split_lab (CMC)
    the backbone is a CMCBackbone and `head` holds one projection per colour view."""

    def __init__(self, model_cfg, split_lab: bool = False):
        super().__init__()
        arch = f"cmc_{model_cfg.arch}" if split_lab else model_cfg.arch
        self.backbone = backbone(arch, model_cfg.cifar_stem, model_cfg.bn_splits)
        if split_lab:
            self.head = nn.ModuleDict({v: head(model_cfg.head, getattr(self.backbone, v).out_dim, model_cfg.feat_dim)
                                       for v in ("l", "ab")})
        else:
            self.head = head(model_cfg.head, self.backbone.out_dim, model_cfg.feat_dim)

        self.autocast: torch.dtype | None = None  # set by the trainer (train.precision)

    def features(self, x: torch.Tensor, split: bool = False):
        """Backbone features in float32; the backbone alone runs under autocast, so heads,
        similarities and the ring's ranking keep float32 (bf16 would tie neighbours)."""
        with torch.autocast(x.device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            f = self.backbone.views(x) if split else self.backbone(x)
        return tuple(t.float() for t in f) if split else f.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.features(x)), dim=1)


def load_backbone(path: str | os.PathLike, arch: str | None = None) -> tuple[torch.nn.Module, dict]:
    """A frozen-ready backbone with every key of the checkpoint loaded strictly.

    Returns (backbone, info) with info = {arch, cifar_stem, kind, config}. Refuses a
    checkpoint whose architecture differs from `arch` when one is requested."""
    payload = checkpoint.read(path)
    sd, found, cifar_stem, kind = checkpoint.backbone_state(payload, str(path))
    if arch is not None and arch != found:
        raise checkpoint.CheckpointError(f"{path}: checkpoint holds a {found} backbone, but {arch} was requested")
    net = backbone(found, cifar_stem)
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise checkpoint.CheckpointError(f"{path}: backbone does not match torchvision {found} ({detail})") from None
    return net, {"arch": found, "cifar_stem": cifar_stem, "kind": kind, "config": payload.get("config")}
