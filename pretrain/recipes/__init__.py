"""The pretraining augmentation recipes, one short file each (`data.augment`). Every recipe
crops first (random-resized, scale 0.2-1, pretrain.data.random_crop) and flips last; a recipe
says what comes between, twice: on the CPU (torchvision transforms v2, the reference) and on
the training device (kornia, batched, with the same ranges: `data.gpu_augment`, §6 of
docs/design.md). Every module here registers its recipe in RECIPES; importing the package
imports them all, so adding a recipe is adding a file. torchvision and kornia are imported only
when a recipe is built: the CLIs list the names before any heavy import."""
from __future__ import annotations

import importlib
import pkgutil

from pretrain.registry import RECIPES


class Recipe:
    """The photometric part of a recipe, between the crop and the flip."""

    def on_cpu(self, size: int) -> list:
        """torchvision v2 transforms of a PIL image, applied in order."""
        return []

    def on_device(self, size: int) -> list:
        """kornia augmentations of a float batch in [0, 1], applied in order."""
        return []


def get(name: str) -> Recipe:
    """The registered recipe `name`; an unknown name is a ValueError that lists the known ones."""
    if name not in RECIPES:
        raise ValueError(f"unknown augmentation recipe {name!r}, expected one of {', '.join(RECIPES.names())}")
    return RECIPES[name]


def blur_kernel(size: int) -> int:
    """MoCo-v2's blur kernel: about 10% of the image, odd."""
    return int(0.1 * size) // 2 * 2 + 1


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
