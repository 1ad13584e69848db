"""Backbones (torchvision ResNets, so checkpoints keep torchvision key names) and heads."""
from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

FEATURE_DIMS = {"resnet18": 512, "resnet50": 2048}


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


def backbone(arch: str = "resnet18", cifar_stem: bool = False, bn_splits: int = 1) -> nn.Module:
    """A torchvision ResNet without its classifier (fc = Identity): image -> pooled feature."""
    if arch not in FEATURE_DIMS:
        raise ValueError(f"unknown architecture {arch!r}, expected one of {', '.join(FEATURE_DIMS)}")
    norm = functools.partial(SplitBatchNorm, splits=bn_splits) if bn_splits > 1 else None
    net = getattr(torchvision.models, arch)(weights=None, norm_layer=norm)
    if cifar_stem:  # small images: keep resolution in the stem (as in SimCLR/MoCo CIFAR code)
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.out_dim = FEATURE_DIMS[arch]
    return net


def head(kind: str, in_dim: int, out_dim: int = 128) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":  # MoCo-v2 / SimCLR projection head
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))
    raise ValueError(f"unknown head {kind!r}, expected mlp or linear")


class Encoder(nn.Module):
    """backbone + projection head; returns the L2-normalised embedding."""

    def __init__(self, model_cfg):
        super().__init__()
        self.backbone = backbone(model_cfg.arch, model_cfg.cifar_stem, model_cfg.bn_splits)
        self.head = head(model_cfg.head, self.backbone.out_dim, model_cfg.feat_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(x)), dim=1)
