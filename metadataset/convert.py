"""Write Meta-Dataset sources without TensorFlow: an ImageFolder tree (or images in memory)
to one TFRecord file per class plus dataset_spec.json, as the official converter does
(meta_dataset/dataset_conversion/dataset_to_records.py).

Like the official converter: class names are the folder names; the classes are split at
random (seeded) into train/valid/test and then numbered consecutively, train classes first;
files are read in sorted name order; JPEG files that are already RGB are stored byte for
byte, anything else is converted to RGB and re-encoded as JPEG.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from metadataset import example, tfrecord
from metadataset import spec as spec_mod
from metadataset.errors import MetaDatasetError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's ImageFolder's


def split_counts(num_classes: int, fractions) -> dict:
    """Classes per split from fractions summing to 1: train and valid rounded, test the rest."""
    try:
        fractions = [float(f) for f in fractions]
    except ValueError:
        fractions = [-1.0]
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise MetaDatasetError(f"--splits must be three non-negative fractions summing to 1 (train,valid,test), "
                               f"got {','.join(map(str, fractions))}")
    train = int(round(fractions[0] * num_classes))
    valid = min(int(round(fractions[1] * num_classes)), num_classes - train)
    return {"TRAIN": train, "VALID": valid, "TEST": num_classes - train - valid}


def encode_image(path: Path) -> bytes:
    data = path.read_bytes()
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:  # PIL raises several types for undecodable files
        raise MetaDatasetError(f"{path}: cannot decode image ({type(exc).__name__})") from None
    if img.format == "JPEG" and img.mode == "RGB":
        return data
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG")
    return buf.getvalue()


def encode_array(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encoded bytes of a uint8 (H, W) or (H, W, 3) array; PNG keeps tiny images lossless."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).convert("RGB").save(buf, format=fmt)
    return buf.getvalue()


def write_source(out_dir: str | os.PathLike, name: str, classes: list, classes_per_split: dict) -> spec_mod.Spec:
    """Write a source. `classes` is [(class name, iterable of encoded image bytes), ...] already
    in class-id order (train classes first); images stream through one class at a time. The
    spec is written last, so a source whose spec exists is complete."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images_per_class, names = {}, {}
    for cid, (cname, images) in enumerate(classes):
        records = (example.encode({"image": img, "label": cid}) for img in images)
        images_per_class[cid] = tfrecord.write(out / f"{cid}.tfrecords", records)
        if not images_per_class[cid]:
            raise MetaDatasetError(f"{out}: class {cname!r} has no images")
        names[cid] = cname
    spec = spec_mod.Spec(name, "DatasetSpecification", dict(classes_per_split), images_per_class, names)
    spec_mod.write(spec, out)
    return spec


def convert(image_folder: str | os.PathLike, out_dir: str | os.PathLike, name: str, fractions=(0.6, 0.2, 0.2),
            seed: int = 22) -> spec_mod.Spec:
    """ImageFolder tree (image_folder/<class>/<image>) -> Meta-Dataset source in out_dir.
    The default seed is the official DatasetConverter's random_seed."""
    root, out = Path(image_folder), Path(out_dir)
    if not root.is_dir():
        raise MetaDatasetError(f"{root}: image folder not found")
    if (out / spec_mod.FILENAME).exists() or (out.is_dir() and any(out.glob("*.tfrecords"))):
        raise MetaDatasetError(f"{out}: already holds a source; choose an empty or new directory")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise MetaDatasetError(f"{root}: no class folders (expected {root}/<class>/<image files>)")
    counts = split_counts(len(folders), fractions)
    order = np.random.default_rng(seed).permutation(len(folders))
    bounds = np.cumsum([0, counts["TRAIN"], counts["VALID"], counts["TEST"]])
    # each split's classes are picked at random, then kept in name order within the split
    ordered = [folders[i] for a, b in zip(bounds[:-1], bounds[1:]) for i in sorted(order[a:b])]
    classes = []
    for folder in ordered:  # check every folder before writing anything
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in EXTENSIONS)
        if not files:
            raise MetaDatasetError(f"{folder}: class folder has no images ({', '.join(EXTENSIONS)})")
        classes.append((folder.name, (encode_image(f) for f in files)))
    return write_source(out, name, classes, counts)
