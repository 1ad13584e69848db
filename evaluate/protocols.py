"""The linear-evaluation protocols: each one's settings, registered by name, and what a record
says of it (its one-line setting, task name and description). Pure data and strings, without
torch: the CLI lists and checks protocol names before any heavy import. The probes themselves
run in evaluate/linear.py (docs/design.md §5.1)."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from core.registry import Registry

# The cached probe's default views per training image, chosen from the measured curve (docs/design.md
# §5.1): on the ten mini checkpoints more views moved the proxy further from the paper protocol
# (mean gap +0.2 points at 0 views, -8.1 at 4), ranked the models less like it (Kendall's tau 0.33 at
# 0, -0.11 at 4) and cost speed (22.7x faster than the paper protocol at 0, 10.3x at 4)
VIEWS = 0
VIEW_AUGMENT = "pretrain_crop_flip"  # the views: the paper protocol's crop and flip, without its colour changes
PROTOCOLS = Registry("linear-evaluation protocol", "evaluate.protocols")  # filled below


@dataclass
class Protocol:
    name: str
    lr: float
    weight_decay: float
    epochs: int
    milestones: list = field(default_factory=list)
    augment: str = "none"  # pretrain | crop_flip | pretrain_crop_flip | none
    batch_size: int = 256
    momentum: float = 0.9
    follows: str = ""  # whose recipe these settings are
    views: int = 0  # cached: augmented views cached per training image (0: one unaugmented view)


PROTOCOLS.register("paper", Protocol("paper", lr=0.01, weight_decay=1e-5, epochs=100, augment="pretrain",
                                     follows="the official Ring code's linear evaluation"))
PROTOCOLS.register("moco", Protocol("moco", lr=30.0, weight_decay=0.0, epochs=100, milestones=[60, 80],
                                    augment="crop_flip", follows="MoCo's linear evaluation (He et al. 2020)"))
PROTOCOLS.register("cached", Protocol("cached", lr=1.0, weight_decay=1e-5, epochs=300,
                                      augment=VIEW_AUGMENT if VIEWS else "none", views=VIEWS,
                                      follows="no published protocol: a fast proxy"))


def setting(protocol: Protocol) -> str:
    """Exactly what ran, in one line (records and table titles)."""
    p = protocol
    if p.name == "cached":
        fit = f"logistic regression by L-BFGS ({p.epochs} iterations, wd {p.weight_decay:g}) on cached"
        if not p.views:  # word for word what records before issue 29 say: they group with these
            return f"{fit}, unaugmented, standardised features of the frozen backbone"
        views = {"pretrain_crop_flip": "random-resized crop (scale 0.2-1) + flip, the paper protocol's",
                 "pretrain": "the pretraining augmentations"}[p.augment]
        return (f"{fit}, standardised features of the frozen backbone: {p.views} augmented view"
                f"{'s' if p.views > 1 else ''} of each training image ({views}; drawn once, seeded), "
                f"unaugmented test images")
    train = {"pretrain": "the pretraining augmentations", "crop_flip": "random-resized crop + flip"}[p.augment]
    steps = f", lr x0.1 at epochs {', '.join(map(str, p.milestones))}" if p.milestones else ""
    return (f"SGD lr {p.lr:g}, momentum {p.momentum:g}, wd {p.weight_decay:g}{steps}, {p.epochs} epochs, "
            f"batch {p.batch_size}, trained on {train}; frozen backbone and BN statistics")


def task_name(protocol: Protocol) -> str:
    """'linear_paper_e100', 'linear_cached_i300_v4' (v: cached views; none for views = 0, the name
    records before issue 29 have): the settings that change the result are in the record's name,
    so another setting adds a record instead of replacing one."""
    if protocol.name == "cached":
        return f"linear_cached_i{protocol.epochs}" + (f"_v{protocol.views}" if protocol.views else "")
    return f"linear_{protocol.name}_e{protocol.epochs}"


def describe(protocol: Protocol) -> dict:
    d = asdict(protocol)
    default = PROTOCOLS[protocol.name]
    if protocol.epochs != default.epochs:  # e.g. fewer epochs: no longer the recipe it started from
        d["follows"] = f"{default.follows}, with epochs {default.epochs} -> {protocol.epochs}"
    # (the cached probe's views are not a departure: they are its own setting, named in the task
    # and the setting like kNN's k, so a views = 0 record groups with the records before them)
    if protocol.name != "cached":
        del d["views"]
    d["paper_protocol"] = protocol == PROTOCOLS["paper"]  # the paper's settings, unmodified
    d["setting"] = setting(protocol)
    if protocol.name == "cached":
        d.update(optimizer="lbfgs", note="`epochs` = L-BFGS iterations")
    return d


def with_epochs(protocol: Protocol, epochs: int | None) -> Protocol:
    return protocol if epochs is None else dataclasses.replace(protocol, epochs=epochs)


def with_views(protocol: Protocol, views: int | None) -> Protocol:
    """The cached probe on `views` augmented views per training image; 0: the unaugmented image."""
    if views is None:
        return protocol
    return dataclasses.replace(protocol, views=views, augment=VIEW_AUGMENT if views else "none")
