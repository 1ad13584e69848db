"""Datasets (torchvision's real loaders plus the embedded offline data), augmentation
recipes, and the epoch-seeded sampler that makes every batch reproducible.

Every dataset yields (PIL image, target). `Views` wraps one for training: it returns
(views, target, index) and seeds each item's augmentation by (seed, epoch, index), so a
run resumed mid-epoch, or run with any number of workers, sees exactly the same pixels.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import v2

from pretrain import recipes
from pretrain.datasets import DataError, DatasetInfo, info  # noqa: F401 - re-exported: data.info, data.DataError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's, as detectron2 expects too

# ---------------------------------------------------------------- torchvision loaders

class _Checksums:
    """Mixin: with verify=False the files must exist but their md5 is not checked.

    torchvision's check_integrity(path, None) only tests existence, so dropping the md5s
    from the instance's file lists is enough. Only the tests' tiny files need this.
    """

    def _drop_md5(self, verify: bool) -> None:
        if not verify:
            self.train_list = [[f, None] for f, _ in self.train_list]
            self.test_list = [[f, None] for f, _ in self.test_list]
            if hasattr(self, "meta"):
                self.meta = {**self.meta, "md5": None}


class CIFAR10(_Checksums, torchvision.datasets.CIFAR10):
    def __init__(self, root, train=True, verify=True):
        self._drop_md5(verify)
        super().__init__(root, train=train, download=False)


class CIFAR100(_Checksums, torchvision.datasets.CIFAR100):
    def __init__(self, root, train=True, verify=True):
        self._drop_md5(verify)
        super().__init__(root, train=train, download=False)


class STL10(_Checksums, torchvision.datasets.STL10):
    def __init__(self, root, split="train", verify=True):
        self._drop_md5(verify)
        super().__init__(root, split=split, download=False)


def load(name: str, root: str | os.PathLike, split: str, verify: bool = True) -> Dataset:
    """The named dataset's split as (PIL image, target) pairs, read from `root`."""
    d = info(name)
    if d.folder is None:
        return d.read(root, split, verify)
    where = Path(root) / d.folder / (split if d.native is None else "")
    if not where.is_dir():
        raise DataError(f"{where}: directory not found; expected {d.expected}")
    try:
        return d.read(root, split, verify)
    except (RuntimeError, FileNotFoundError, OSError, ValueError, KeyError, EOFError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{where}: cannot read {name} ({detail}); expected {d.expected}") from None
    except Exception as exc:  # unpickling garbage raises all sorts (UnpicklingError, TypeError, ...)
        raise DataError(f"{where}: cannot read {name} ({type(exc).__name__}: {exc}); expected {d.expected}") from None


def targets(ds: Dataset) -> torch.Tensor:
    """All targets of a dataset without decoding images."""
    for attr in ("targets", "labels"):
        if hasattr(ds, attr):
            return torch.as_tensor(np.asarray(getattr(ds, attr)), dtype=torch.long)
    if isinstance(ds, torch.utils.data.Subset):
        return targets(ds.dataset)[torch.as_tensor(ds.indices)]
    raise TypeError(f"cannot read targets of {type(ds).__name__}")


SUBSET_SEED = 0  # one subset for every method and seed of a dataset: runs stay paired


def subset(ds: Dataset, limit: int) -> Dataset:
    """`limit` items (0 = all) drawn class by class in proportion to each class's share
    (largest remainders), each class's items in a fixed seeded order, kept in dataset order.
    Not the first `limit` items: datasets stored in class order would keep a few classes only.
    Keeps `targets` readable."""
    if limit <= 0 or limit >= len(ds):
        return ds
    labels = targets(ds).numpy()
    order = np.random.default_rng(SUBSET_SEED).permutation(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * limit / len(labels)
    take = np.floor(share).astype(int)
    # the items floor() leaves go to the classes with the largest remainders (ties: smaller label)
    take[np.argsort(-(share - take), kind="stable")[: limit - take.sum()]] += 1
    ranked = order[np.argsort(labels[order], kind="stable")]  # class by class, seeded order within
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = np.concatenate([ranked[s:s + n] for s, n in zip(starts, take)])
    return torch.utils.data.Subset(ds, np.sort(keep).tolist())


def class_counts(ds: Dataset) -> dict[str, int]:
    """{label: images} of a (training) dataset, for the record: what trained, not what was asked."""
    labels, counts = np.unique(targets(ds).numpy(), return_counts=True)
    return {str(int(k)): int(n) for k, n in zip(labels, counts)}


# ---------------------------------------------------------------- augmentation

def _finish():
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]


def random_crop(size: int) -> v2.RandomResizedCrop:
    """The pretraining crop of every recipe (also drawn by pretrain.device_decode's workers)."""
    return v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True)


def train_transform(recipe: str, size: int, on_device: bool = False) -> v2.Compose:
    """One augmented view: the crop (scale 0.2-1, as in the papers), the recipe's photometric
    part (pretrain/recipes/), the flip.

    on_device: only crop and flip here, returning uint8; pretrain.device_augment does the rest
    of the recipe batched on the training device."""
    crop, photometric = random_crop(size), recipes.get(recipe)
    if on_device:
        return v2.Compose([crop, v2.RandomHorizontalFlip(), v2.ToImage()])
    return v2.Compose([crop, *photometric.on_cpu(size), v2.RandomHorizontalFlip(), *_finish()])


def eval_transform(size: int, native: int | None) -> v2.Compose:
    """Deterministic test-time view: resize (and centre-crop large images) to `size`."""
    if native is None or native > size:  # ImageNet-style: resize to size/0.875 then centre-crop
        ops = [v2.Resize(int(round(size / 0.875)), antialias=True), v2.CenterCrop(size)]
    else:
        ops = [v2.Resize((size, size), antialias=True)] if native != size else []
    return v2.Compose([v2.RGB()] + ops + _finish())


# ---------------------------------------------------------------- reproducible batches

@contextlib.contextmanager
def seeded(seed: int):
    # fork only the CPU generator: transforms run on CPU; forking CUDA ones costs a sync
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(state)


def item_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 1_000_033 + index) % (2**63 - 1)


class Views(Dataset):
    """(views, target, index) where views = [transform(img) for each view].

    Keys are (index, seed) pairs from EpochSampler; a plain int key is not seeded."""

    def __init__(self, base: Dataset, transform, n_views: int = 1):
        self.base, self.transform, self.n_views = base, v2.Compose([v2.RGB(), transform]), n_views

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        img, target = self.base[index]
        with seeded(seed) if seed is not None else contextlib.nullcontext():
            views = [self.transform(img) for _ in range(self.n_views)]
        return views, target, index


class EpochSampler(Sampler):
    """Permutation seeded by (seed, epoch), split into global batches, resumable anywhere.

    Rank r of `world` takes positions r, r + world, ... of every global batch, so N
    processes see the same global batches as one process, grouped the way SplitBatchNorm
    groups them (docs/design.md §6). Incomplete last batches are dropped. Yields (index, item_seed):
    augmentation is a pure function of (seed, epoch, index).
    """

    def __init__(self, n: int, batch: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1):
        if batch % world:
            raise ValueError(f"global batch {batch} is not divisible by {world} processes")
        self.n, self.batch, self.seed, self.shuffle, self.rank, self.world = n, batch, seed, shuffle, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Next iteration covers `epoch`, skipping this rank's first `start` items."""
        self.epoch, self.start = epoch, start

    def steps(self) -> int:
        return self.n // self.batch

    def _order(self) -> list[int]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch))
        else:
            order = torch.arange(self.n)
        batches = order[: self.steps() * self.batch].view(self.steps(), self.batch)
        return batches[:, self.rank::self.world].reshape(-1).tolist()

    def __iter__(self):
        for i in self._order()[self.start:]:
            yield i, item_seed(self.seed, self.epoch, i)

    def __len__(self) -> int:
        return self.steps() * (self.batch // self.world) - self.start
