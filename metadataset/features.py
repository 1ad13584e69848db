"""Frozen-backbone features of a source's images, each image computed once per process.

Images are decoded, resized as a whole to size x size (as Meta-Dataset's decoder does: no
centre crop, since sources mix aspect ratios) and normalised with pretrain.data.MEAN/STD via
pretrain.data.eval_transform; features are the backbone's pooled output, not normalised
(each protocol normalises as it documents).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from metadataset.errors import MetaDatasetError
from metadataset.records import Source, decode_image
from pretrain import data
from pretrain.knn import features as pooled_features

CHUNK = 4096  # images decoded and embedded together: bounds memory on large sources


def transform(size: int):
    # native=0 selects eval_transform's "resize to (size, size)" branch for every image
    return data.eval_transform(size, native=0)


class _Images(Dataset):
    def __init__(self, blobs, names, tf):
        self.blobs, self.names, self.tf = blobs, names, tf

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i):
        return self.tf(decode_image(self.blobs[i], self.names[i])), 0


class FeatureCache:
    """Features per (source, class), computed on first use and kept in memory."""

    def __init__(self, net: torch.nn.Module, size: int, device, batch_size: int = 256, workers: int = 0):
        self.net, self.tf, self.device = net.to(device).eval(), transform(size), device
        self.batch_size, self.workers = batch_size, workers
        self._cache: dict = {}

    def _embed(self, blobs, names) -> torch.Tensor:
        loader = DataLoader(_Images(blobs, names, self.tf), batch_size=self.batch_size, num_workers=self.workers)
        try:
            return pooled_features(self.net, loader, self.device, normalize=False)[0].cpu()
        except MetaDatasetError as exc:
            # a worker re-raises with the whole traceback as the message: keep its last line
            raise MetaDatasetError(str(exc).strip().splitlines()[-1].split("MetaDatasetError: ")[-1]) from None

    def classes(self, source: Source, class_ids, per_class: int = 0, seed: int = 0) -> list[torch.Tensor]:
        """[features (n_c, D) of class c for c in class_ids]; per_class > 0 keeps a seeded
        random subset of at most that many images of each class (in file order)."""
        keys = [(str(source.root), int(c), per_class, seed if per_class else 0) for c in class_ids]
        todo = [k for k in dict.fromkeys(keys) if k not in self._cache]
        while todo:
            chunk, blobs, names = [], [], []
            while todo and (not chunk or len(blobs) < CHUNK):
                key = todo.pop(0)
                images = source.read_class(key[1])
                keep = range(len(images))
                if per_class and len(images) > per_class:
                    rng = np.random.default_rng([seed, key[1]])
                    keep = np.sort(rng.choice(len(images), per_class, replace=False))
                chunk.append((key, len(keep)))
                blobs += [images[i] for i in keep]
                names += [f"{source.root}: class {key[1]} record {i}" for i in keep]
            feats = self._embed(blobs, names)
            for (key, _), part in zip(chunk, feats.split([n for _, n in chunk])):
                self._cache[key] = part
        return [self._cache[k] for k in keys]
