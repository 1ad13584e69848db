"""Read a converted Meta-Dataset source: its dataset_spec.json and one TFRecord file per
class whose records are tf.train.Example {image: encoded JPEG/PNG bytes, label: int64 class id}
(meta_dataset/dataset_conversion/dataset_to_records.py, `write_example`).

Layout: RECORDS/<source name>/dataset_spec.json and RECORDS/<source name>/<class id>.tfrecords
(or <class id>_<shard>.tfrecords when the spec's file_pattern is "{}_{}.tfrecords"; the shards
of a class are read in name order and concatenated).
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

# The ten Meta-Dataset sources under their official directory names. The Ring paper's transfer
# table uses the nine after ilsvrc_2012 (ImageNet is the pretraining set there).
PAPER_DOMAINS = ("aircraft", "cu_birds", "dtd", "fungi", "mscoco", "omniglot", "quickdraw", "traffic_sign", "vgg_flower")
ALL_DOMAINS = ("ilsvrc_2012",) + PAPER_DOMAINS
# Meta-Dataset v2 (the VTAB+MD protocol; md_tfds's `dataset_specs.v2`) makes ImageNet a
# training-only source and leaves VGG Flower to VTAB; every other source keeps its v1 split
NOT_IN_V2 = {"ilsvrc_2012": "a training-only source in Meta-Dataset v2 (all its classes are training classes)",
             "vgg_flower": "not a Meta-Dataset v2 source (VTAB+MD keeps it for VTAB)"}


class Source:
    """One source: its spec and lazy, checked access to each class's encoded images."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.spec = spec_mod.load(self.root)
        self.name = self.root.name

    @classmethod
    def open(cls, records: str | os.PathLike, name: str) -> "Source":
        root = Path(records) / name
        if not (root / spec_mod.FILENAME).is_file():
            raise MetaDatasetError(f"{root}: Meta-Dataset source {name!r} not found "
                                   f"(expected {root / spec_mod.FILENAME} and one .tfrecords file per class)")
        return cls(root)

    def class_files(self, class_id: int) -> list[Path]:
        if self.spec.file_pattern == "{}.tfrecords":
            return [self.root / f"{class_id}.tfrecords"]
        return sorted(self.root.glob(f"{class_id}_*.tfrecords"))

    def check_files(self, class_ids) -> None:
        """Fail fast, before any feature is computed, if a class file is missing."""
        for c in class_ids:
            files = self.class_files(c)
            if not files:
                raise MetaDatasetError(f"{self.root / f'{c}_*.tfrecords'}: class file not found")
            for f in files:
                if not f.is_file():
                    raise MetaDatasetError(f"{f}: class file not found")

    def read_class(self, class_id: int) -> list[bytes]:
        """The encoded images of one class, in file order; every record's CRCs, its label and
        the class's image count (against the spec) are checked."""
        files = self.class_files(class_id)
        if not files:
            raise MetaDatasetError(f"{self.root / f'{class_id}_*.tfrecords'}: class file not found")
        images = []
        for path in files:
            images += [image_of(record, path, i, class_id, f"class id {class_id}")
                       for i, record in enumerate(tfrecord.read(path))]
        expected = self.spec.images_per_class[class_id]
        if len(images) != expected:
            raise MetaDatasetError(f"{files[0]}: class {class_id} holds {len(images)} images but "
                                   f"{spec_mod.FILENAME} says {expected}")
        return images


    def read_images(self, class_id: int, indices) -> list[bytes]:
        """The encoded images at `indices` (file order) of one class, read alone: the class's
        files are indexed from their record headers (the count checked against the spec) and
        only the wanted records are read, each with its CRCs and label checked, so the cost
        grows with the images an evaluation draws, not with the class."""
        files = self.class_files(class_id)
        if not files:
            raise MetaDatasetError(f"{self.root / f'{class_id}_*.tfrecords'}: class file not found")
        offsets = [tfrecord.offsets(path) for path in files]
        starts = np.cumsum([0] + [len(o) for o in offsets])  # each file's first index in the class
        expected = self.spec.images_per_class[class_id]
        if starts[-1] != expected:
            raise MetaDatasetError(f"{files[0]}: class {class_id} holds {starts[-1]} images but "
                                   f"{spec_mod.FILENAME} says {expected}")
        indices = np.asarray(indices, dtype=np.int64)
        shard = np.searchsorted(starts, indices, side="right") - 1
        out: list = [None] * len(indices)
        for f in np.unique(shard):
            at = np.flatnonzero(shard == f)
            within = indices[at] - starts[f]
            records = tfrecord.read_at(files[f], [offsets[f][i] for i in within])
            for k, i, record in zip(at, within, records):
                out[k] = image_of(record, files[f], int(i), class_id, f"class id {class_id}")
        return out

    def data_files(self) -> list[Path]:
        """The files the images are read from (what a feature cache's key names, with their sizes)."""
        return sorted(self.root.glob("*.tfrecords"))


def image_of(record: bytes, path, index: int, label: int, expected: str) -> bytes:
    """The encoded image of one record, a tf.train.Example {image, label} whose label must be
    `label` (`expected` says so in the error); any other record is a one-line error."""
    try:
        features = example.decode(record)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MetaDatasetError(f"{path}: record {index} is not a tf.train.Example ({exc})") from None
    image, found = features.get("image"), features.get("label")
    if not image or not isinstance(image[0], bytes) or not found or not isinstance(found[0], int):
        raise MetaDatasetError(f"{path}: record {index} lacks an 'image' bytes or 'label' int64 feature")
    if found[0] != label:
        raise MetaDatasetError(f"{path}: record {index} has label {found[0]}, expected {expected}")
    return image[0]


def decode_image(data: bytes, where: str = "image") -> Image.Image:
    """An RGB PIL image from encoded bytes (JPEG, PNG, anything PIL reads)."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:  # PIL raises several types for undecodable bytes
        raise MetaDatasetError(f"{where}: cannot decode image ({type(exc).__name__}: {exc})") from None
    return img.convert("RGB")


def open_sources(records: str | os.PathLike | None, names, tfds_dir: str | os.PathLike | None = None,
                 md_version: str = "v1", skipped=None) -> list:
    """The requested sources, from the official records layout (`records`) or from an md_tfds
    build (`tfds_dir`, a TFDS data_dir; metadataset/tfds.py); None, [] or ['all'] = every
    source there; ['paper'] = the paper's nine. The first missing source is a one-line error.
    With md_version "v2" the sources Meta-Dataset v2 does not evaluate (NOT_IN_V2) are left
    out of 'all' and 'paper' (`skipped(name, why)` is told) and refused when named."""
    from metadataset import tfds

    where = Path(tfds_dir if tfds_dir is not None else records)
    if not where.is_dir():
        raise MetaDatasetError(f"{where}: {'TFDS data_dir' if tfds_dir is not None else 'records directory'} not found")
    named = bool(names) and list(names) not in (["paper"], ["all"])
    if list(names or []) == ["paper"]:
        names = list(PAPER_DOMAINS)
    elif not names or list(names) == ["all"]:
        if tfds_dir is not None:
            names = tfds.available(where)
            if not names:
                raise MetaDatasetError(f"{where}: no md_tfds source (no {tfds.BUILDER}/*/{tfds.VERSION}/metadata.json) found")
        else:
            names = sorted(p.name for p in where.iterdir() if (p / spec_mod.FILENAME).is_file())
            if not names:
                raise MetaDatasetError(f"{where}: no Meta-Dataset source (no */{spec_mod.FILENAME}) found")
    names = list(dict.fromkeys(names))
    if md_version == "v2":
        out = [n for n in names if n.removesuffix("_v2") in NOT_IN_V2]
        if out and named:
            raise MetaDatasetError(f"{out[0]}: {NOT_IN_V2[out[0].removesuffix('_v2')]}; drop it or use --md-version v1")
        for n in out:
            if skipped is not None:
                skipped(n, NOT_IN_V2[n.removesuffix("_v2")])
        names = [n for n in names if n not in out]
        if not names:
            raise MetaDatasetError(f"{where}: no Meta-Dataset v2 evaluation source")
    if tfds_dir is not None:
        return [tfds.open_source(where, n, md_version) for n in names]
    return [Source.open(where, n) for n in names]
