"""The datasets, a short file each: each one's splits, size, classes and folder, and its
reader, registered by name with @dataset. Importing the package imports every module here, so
adding a dataset is adding a file. Imports neither torch nor torchvision (the readers do, when
they run): the CLIs list and check dataset names before any heavy import, so `--help` answers
at once."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
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


def dataset(name: str, order: int | None = None, **info):
    """Register a dataset's reader: @dataset("cifar10", pretrain="train", ...); `order`: its place
    in the lists the CLIs show."""
    def add(read):
        DATASETS.register(name, DatasetInfo(**info, read=read), **({} if order is None else {"order": order}))
        return read
    return add




def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}, expected one of {', '.join(DATASETS.names())}")
    return DATASETS[name]


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
