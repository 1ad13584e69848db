"""Writers for tiny datasets in the real on-disk formats, read back by the real loaders."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def images(n: int, size: int, seed: int = 0, classes: int = 10, jitter: float = 0.0) -> np.ndarray:
    """uint8 images (n, size, size, 3): noise around a colour set by the class (i % classes),
    so that a representation can actually separate the classes; `jitter` moves each image's
    colour by N(0, jitter) so that the classes overlap and accuracy is not trivially 100%."""
    rng = np.random.default_rng(seed)
    palette = np.random.default_rng(1234).integers(30, 226, (classes, 3))
    colour = palette[np.arange(n) % classes][:, None, None, :] + rng.normal(0, jitter, (n, 1, 1, 3))
    return np.clip(colour + rng.normal(0, 25, (n, size, size, 3)), 0, 255).astype(np.uint8)


def write_cifar10(root: Path, per_batch: int = 20, test: int = 20, seed: int = 0, jitter: float = 0.0) -> dict:
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True)
    out = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = test if name == "test_batch" else per_batch
        x = images(n, 32, seed + i, jitter=jitter)
        y = [int(v) for v in np.arange(n) % 10]
        entry = {"batch_label": name, "labels": y, "data": x.transpose(0, 3, 1, 2).reshape(n, -1),
                 "filenames": [f"{name}_{j}.png" for j in range(n)]}
        (d / name).write_bytes(pickle.dumps(entry, protocol=2))
        out[name] = (x, y)
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
            "num_cases_per_batch": per_batch, "num_vis": 3072}
    (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return out


def write_cifar100(root: Path, train: int = 60, test: int = 20, seed: int = 0) -> dict:
    d = Path(root) / "cifar-100-python"
    d.mkdir(parents=True)
    out = {}
    for i, (name, n) in enumerate([("train", train), ("test", test)]):
        x = images(n, 32, seed + i)
        fine = [int(v) for v in np.arange(n) % 100]
        entry = {"filenames": [f"{j}.png" for j in range(n)], "batch_label": name, "fine_labels": fine,
                 "coarse_labels": [f // 5 for f in fine], "data": x.transpose(0, 3, 1, 2).reshape(n, -1)}
        (d / name).write_bytes(pickle.dumps(entry, protocol=2))
        out[name] = (x, fine)
    meta = {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": [f"s{i}" for i in range(20)]}
    (d / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return out


def write_stl10(root: Path, train: int = 20, unlabeled: int = 10, test: int = 20, seed: int = 0) -> dict:
    """STL-10 binaries: each image stored channel-major and column-major (C, W, H)."""
    d = Path(root) / "stl10_binary"
    d.mkdir(parents=True)
    out = {}
    for i, (name, n) in enumerate([("train", train), ("unlabeled", unlabeled), ("test", test)]):
        x = images(n, 96, seed + i)
        (d / f"{name}_X.bin").write_bytes(x.transpose(0, 3, 2, 1).tobytes())
        y = np.arange(n) % 10
        if name != "unlabeled":
            (d / f"{name}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())  # 1-based on disk
        out[name] = (x, y.tolist())
    (d / "class_names.txt").write_text("\n".join(["airplane", "bird", "car", "cat", "deer", "dog", "horse",
                                                   "monkey", "ship", "truck"]) + "\n")
    return out


def write_imagefolder(root: Path, classes=("n01", "n02", "n03"), per_class: int = 4, size: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in classes:
            d = Path(root) / split / c
            d.mkdir(parents=True)
            for j in range(per_class):
                arr = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{c}_{j}.JPEG", format="JPEG")
