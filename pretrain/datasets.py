"""The datasets: each one's splits, size, classes and folder, and its reader, registered by
name. Imports neither torch nor torchvision (the readers do, when they run): the CLIs list and
check dataset names before any heavy import, so `--help` answers at once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.errors import UserError
from pretrain.registry import DATASETS


class DataError(UserError):
    """Missing or malformed dataset; the message names the path and what was expected."""


@dataclass(frozen=True)
class DatasetInfo:
    """What the loops need to know of a dataset: its splits (pretraining, labelled train,
    test), native image size (None: an ImageFolder of any size), classes, and where it lives."""
    pretrain: str
    train: str
    test: str
    native: int | None
    classes: int
    folder: str | None = None      # under --data-root (None: embedded offline data)
    expected: str = ""             # what the folder must hold, for the error message
    read: Callable | None = None   # (root, split, verify) -> Dataset of (PIL image, target)


def dataset(name: str, **info):
    """Register a dataset's reader: @dataset("cifar10", pretrain="train", ...)."""
    def add(read):
        DATASETS.register(name, DatasetInfo(**info, read=read))
        return read
    return add


def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}, expected one of {', '.join(DATASETS.names())}")
    return DATASETS[name]


@dataset("cifar10", pretrain="train", train="train", test="test", native=32, classes=10, folder="cifar-10-batches-py",
         expected="the CIFAR-10 python pickles (data_batch_1..5, test_batch, batches.meta)")
def _cifar10(root, split, verify):
    from pretrain.data import CIFAR10
    return CIFAR10(root, train=split == "train", verify=verify)


@dataset("cifar100", pretrain="train", train="train", test="test", native=32, classes=100, folder="cifar-100-python",
         expected="the CIFAR-100 python pickles (train, test, meta)")
def _cifar100(root, split, verify):
    from pretrain.data import CIFAR100
    return CIFAR100(root, train=split == "train", verify=verify)


@dataset("stl10", pretrain="train+unlabeled", train="train", test="test", native=96, classes=10, folder="stl10_binary",
         expected="the STL-10 binaries (train_X.bin, train_y.bin, unlabeled_X.bin, test_X.bin, test_y.bin)")
def _stl10(root, split, verify):
    from pretrain.data import STL10
    return STL10(root, split=split, verify=verify)


def _image_folder(name: str, classes: int):
    @dataset(name, pretrain="train", train="train", test="val", native=None, classes=classes, folder=name,
             expected=f"an ImageFolder tree {name}/{{train,val}}/<class>/*.JPEG")
    def read(root, split, verify):
        import torchvision
        return torchvision.datasets.ImageFolder(str(Path(root) / name / split))


_image_folder("imagenet", 1000)
_image_folder("imagenet100", 100)


def _offline(name: str, native: int):
    @dataset(name, pretrain="train", train="train", test="test", native=native, classes=10)
    def read(root, split, verify):
        from pretrain import offline  # embedded data: built from registry packages
        return offline.load(name, split)


_offline("photo_patches", 32)
_offline("mnist5k", 28)
