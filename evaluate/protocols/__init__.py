"""The linear-evaluation protocols, one short file each (docs/design.md §5.1). A protocol is an
object: its settings, the one-line setting, task name and title that records and the report
show, and its `run`. Every module here registers its protocol in PROTOCOLS; importing the
package imports them all, so adding a protocol is adding a file. Pure data and strings until a
protocol runs: the CLI lists and checks protocol names before any heavy import; the probes
themselves are in evaluate/linear.py."""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from core.errors import UserError
from core.names import SHIPPED_EVALUATIONS
from core.registry import Registry

PROTOCOLS = Registry("linear-evaluation protocol", "evaluate.protocols")  # filled by the modules here
# kNN is not a linear probe but has its place and title in the report's order (after the probes):
# the ones the report knows for records that carry none
KNN_TITLE, KNN_ORDER = SHIPPED_EVALUATIONS["knn"]
KNN = {"evaluation": "knn", "title": KNN_TITLE}


@dataclass
class Job:
    """What a protocol evaluates: the frozen backbone, the data and the run's settings."""
    net: Any                 # the backbone, on `device`
    ckpt: str                # its checkpoint (the SGD probes reload its state dict)
    arch: str | None         # --arch, for a checkpoint that does not say
    recipe: str              # the pretraining augmentation recipe (the paper protocol trains on it)
    train: Any               # datasets
    test: Any
    dataset: str
    classes: int
    size: int
    native: int | None
    device: Any
    seed: int = 0
    workers: int = 2
    resume: bool = False
    state_dir: str | None = None  # where the SGD probes' per-epoch state goes (default: CKPT's folder/probe)


@dataclass
class Protocol:
    """A linear layer trained by SGD through the full image pipeline, every epoch, on a frozen
    backbone (torchrun: every rank trains its share of each batch)."""
    name: str
    lr: float
    weight_decay: float
    epochs: int
    milestones: list = field(default_factory=list)
    augment: str = "none"  # pretrain | crop_flip | pretrain_crop_flip | none
    batch_size: int = 256
    momentum: float = 0.9
    follows: str = ""  # whose recipe these settings are
    title: str = field(default="", compare=False)  # the report's title of its tables
    every_rank: ClassVar[bool] = True

    @property
    def evaluation(self) -> str:
        """The record's `evaluation`: what the report groups and titles by."""
        return f"linear_{self.name}"

    def setting(self) -> str:
        """Exactly what ran, in one line (records and table titles)."""
        train = {"pretrain": "the pretraining augmentations", "crop_flip": "random-resized crop + flip"}[self.augment]
        steps = f", lr x0.1 at epochs {', '.join(map(str, self.milestones))}" if self.milestones else ""
        return (f"SGD lr {self.lr:g}, momentum {self.momentum:g}, wd {self.weight_decay:g}{steps}, {self.epochs} "
                f"epochs, batch {self.batch_size}, trained on {train}; frozen backbone and BN statistics")

    def task_name(self) -> str:
        """'linear_paper_e100': the settings that change the result are in the record's name, so
        another setting adds a record instead of replacing one."""
        return f"linear_{self.name}_e{self.epochs}"

    def describe(self) -> dict:
        """The record's `protocol`: every setting, whose recipe it follows, and the setting line."""
        d = asdict(self)
        del d["title"]
        default = PROTOCOLS[self.name]
        if self.epochs != default.epochs:  # e.g. fewer epochs: no longer the recipe it started from
            d["follows"] = f"{default.follows}, with epochs {default.epochs} -> {self.epochs}"
        d["paper_protocol"] = self == PROTOCOLS["paper"]  # the paper's settings, unmodified
        d["setting"] = self.setting()
        return d

    def with_epochs(self, epochs: int | None) -> Protocol:
        return self if epochs is None else dataclasses.replace(self, epochs=epochs)

    def with_views(self, views: int | None) -> Protocol:
        if views is None:
            return self
        raise UserError(f"--views {views}: only the cached probe caches views; --protocol {self.name} trains on "
                        f"freshly augmented images every epoch")

    def run(self, job: Job) -> tuple[dict, dict] | None:
        """(metrics, the record's extra fields), or None on a rank other than 0."""
        from evaluate import linear
        metrics = linear.run_sgd(self, job)
        return None if metrics is None else (metrics, {})


def label(evaluation: str) -> dict:
    """What a record says of its evaluation for the report (which imports no stage): the title
    of its tables and its place in the report's order, the registry's `order` (kNN after every
    probe; a protocol registered without one: after those with one)."""
    if evaluation == KNN["evaluation"]:
        return {"title": KNN["title"], "order": KNN_ORDER}
    name = next(n for n, p in PROTOCOLS.items() if p.evaluation == evaluation)
    return {"title": PROTOCOLS[name].title, "order": PROTOCOLS.meta(name).get("order")}


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
