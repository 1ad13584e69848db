"""Photometric augmentation batched on the training device (docs/design.md §6).

With `data.gpu_augment` the loader's workers only decode, crop and flip (uint8 tensors, cheap
to pin and copy); the recipe's colour jitter, grayscale, blur and normalisation run here, on
the whole batch at once with kornia, which draws independent parameters per image in one
vectorised call. Parameters come from the global CPU generator, saved in every checkpoint, so
resume stays exact. Each recipe (pretrain/recipes/) says both forms; the CPU one remains the
reference: the same operations with the same ranges (flip commutes with them, so it moves to the
workers). One difference: kornia's ColorJitter applies its four factors in a fixed order,
torchvision's in a random one.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from pretrain import recipes
from pretrain.data import MEAN, STD


class DeviceAugment(nn.Module):
    def __init__(self, recipe: str, size: int):
        super().__init__()
        self.ops = nn.Sequential(*recipes.get(recipe).on_device(size))
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> augmented, normalised float32 batch."""
        x = x.as_subclass(torch.Tensor).float().div_(255.0)
        if len(self.ops):
            x = self.ops(x).clamp_(0.0, 1.0)
        return (x - self.mean) / self.std
