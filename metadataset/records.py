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

from PIL import Image

from metadataset import example, tfrecord
from metadataset import spec as spec_mod
from metadataset.errors import MetaDatasetError

# The ten Meta-Dataset sources under their official directory names. The Ring paper's transfer
# table uses the nine after ilsvrc_2012 (ImageNet is the pretraining set there).
PAPER_DOMAINS = ("aircraft", "cu_birds", "dtd", "fungi", "mscoco", "omniglot", "quickdraw", "traffic_sign", "vgg_flower")
ALL_DOMAINS = ("ilsvrc_2012",) + PAPER_DOMAINS


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
                 md_version: str = "v1") -> list:
    """The requested sources, from the official records layout (`records`) or from an md_tfds
    build (`tfds_dir`, a TFDS data_dir; metadataset/tfds.py); None, [] or ['all'] = every
    source there; ['paper'] = the paper's nine. The first missing source is a one-line error."""
    from metadataset import tfds

    where = Path(tfds_dir if tfds_dir is not None else records)
    if not where.is_dir():
        raise MetaDatasetError(f"{where}: {'TFDS data_dir' if tfds_dir is not None else 'records directory'} not found")
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
    if tfds_dir is not None:
        return [tfds.open_source(where, n, md_version) for n in dict.fromkeys(names)]
    return [Source.open(where, n) for n in dict.fromkeys(names)]
