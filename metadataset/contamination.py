"""Which Meta-Dataset rows a backbone's pretraining data has already seen (docs/design.md §5.3).

Meta-Dataset builds `ilsvrc_2012` from ImageNet-1k's training images, so a backbone pretrained
on ImageNet-1k has seen every image of it, its v1 test classes' included (Meta-Dataset v2 makes
ImageNet a training-only source: `--md-version v2`). The official ImageNet converter skips the
ImageNet training images listed in official/ImageNet_CUBirds_duplicates.txt because they
duplicate CUB-200-2011 images, which Meta-Dataset keeps in `cu_birds`: a backbone pretrained on
all of ImageNet-1k has seen those CUB images. They are all of CUB's v1 train and valid classes
(tests/test_metadataset.py checks it against the official spec), so only an evaluation of
those classes (the linear protocol's, which uses every class) sees them.

`contaminated(...)` says why a row is contaminated (or may be), else None; records carry it.
"""
from __future__ import annotations

import re
from pathlib import Path

DUPLICATES = Path(__file__).resolve().parent / "official" / "ImageNet_CUBirds_duplicates.txt"

# pretraining datasets (pretrain/data.py names) made of ImageNet-1k training images: how much of it
IMAGENET_PRETRAINING = {
    "imagenet": "all of ImageNet-1k's training images",
    "imagenet100": "ImageNet-1k's training images of 100 classes",
    "stl10": "STL-10, whose images were taken from ImageNet",
}
FULL = ("imagenet",)  # those that hold all of ImageNet-1k: contaminated for certain


def cub_duplicate_classes() -> list[str]:
    """The CUB class of each image in the official duplicates list (lower case, as in its file
    names "American_Goldfinch_0062_31921.jpg")."""
    out = []
    for line in DUPLICATES.read_text().splitlines():
        if line.startswith("#") or "#" not in line:
            continue
        out.append(re.sub(r"_\d+_\d+\.jpg$", "", line.split("#", 1)[1].strip()).lower())
    return out


def cub_class(name: str) -> str:
    """"047.American_Goldfinch" (the official class names) -> "american_goldfinch"."""
    return name.split(".", 1)[-1].lower()


def contaminated(pretrain_dataset: str | None, checkpoint_kind: str, source: str, class_names) -> str | None:
    """Why the rows of `source` evaluated on the classes named `class_names` are (or may be)
    contaminated by the backbone's pretraining, or None. `pretrain_dataset` is the checkpoint's
    config's data.dataset (None for a checkpoint without a config: torchvision or MoCo weights)."""
    if source.startswith("ilsvrc_2012"):
        seen = "every image of ilsvrc_2012 is an ImageNet-1k training image"
    elif source == "cu_birds":
        classes = {cub_class(n) for n in class_names}
        n = sum(1 for c in cub_duplicate_classes() if c in classes)
        if not n:
            return None
        seen = (f"{n} images of the evaluated cu_birds classes duplicate ImageNet-1k training images "
                f"(official ImageNet_CUBirds_duplicates.txt; the official converter drops them from ImageNet only)")
    else:
        return None
    if pretrain_dataset is None:
        return (f"possibly: the {checkpoint_kind} checkpoint does not say what it was pretrained on (such weights "
                f"usually come from ImageNet-1k), and {seen}")
    if pretrain_dataset in FULL:
        return f"yes: the backbone was pretrained on {IMAGENET_PRETRAINING[pretrain_dataset]}, and {seen}"
    if pretrain_dataset in IMAGENET_PRETRAINING:
        return f"possibly: the backbone was pretrained on {IMAGENET_PRETRAINING[pretrain_dataset]}, and {seen}"
    return None
