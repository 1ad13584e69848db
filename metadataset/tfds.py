"""Meta-Dataset's own TFDS build (the `md_tfds` builder, TFDS name `meta_dataset`), read without
TensorFlow: the protocols run on it exactly as on the official records layout.

What the builder writes (meta_dataset/data/tfds/md_tfds.py), one directory per source:

    <data_dir>/meta_dataset/<source>/1.0.0/dataset_info.json   TFDS's DatasetInfo: the split
        `all_classes`, its shard lengths and the shard file-name template
    <data_dir>/meta_dataset/<source>/1.0.0/features.json       the feature dict
    <data_dir>/meta_dataset/<source>/1.0.0/metadata.json       `class_names`, `dataset_specs`
        {v1, v2: the official dataset spec}, `meta_split_slices` and `relative_class_slices`
        {v1, v2: {train/valid/test: ...}}: each class's [start, stop) in the split
    <data_dir>/meta_dataset/<source>/1.0.0/meta_dataset-all_classes.tfrecord-NNNNN-of-MMMMM

Every record is a tf.train.Example {image: JPEG bytes, label: int64 (the index into
`class_names`), class_name, filename, format}; shuffling is disabled, so the examples lie in
label order and a class is a contiguous slice of the split. A `TfdsSource` indexes the
shards from their record headers (a shard is never read whole), checks that the slices, the
spec and the shard lengths agree before any work, and reads a class's slice with every CRC
and label checked. It offers what `records.Source` offers (name, root, spec, check_files,
read_class), so the two layouts are interchangeable.
"""
from __future__ import annotations

import bisect
import json
import os
import re
from functools import cached_property
from pathlib import Path

import numpy as np

from metadataset import spec as spec_mod
from metadataset import tfrecord
from metadataset.errors import MetaDatasetError
from metadataset.records import image_of

BUILDER, VERSION, SPLIT = "meta_dataset", "1.0.0", "all_classes"
META_SPLITS = {"TRAIN": "train", "VALID": "valid", "TEST": "test"}  # spec split -> metadata key
TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"  # TFDS's default file-name template


def _json(path: Path):
    if not path.is_file():
        raise MetaDatasetError(f"{path}: not found (expected the md_tfds build's {path.name})")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetaDatasetError(f"{path}: not readable JSON ({str(exc).splitlines()[0]})") from None


def feature_names(features) -> set:
    """The top-level feature names of a features.json: TFDS 4.x writes them under
    featuresDict.features, older TFDS under content."""
    if not isinstance(features, dict):
        return set()
    inner = features.get("featuresDict", {}).get("features") or features.get("content") or {}
    return set(inner) if isinstance(inner, dict) else set()


def shard_paths(root: Path, info: dict, where: Path) -> tuple[list[Path], list[int]]:
    """The split's shard files, in order, and the record count TFDS recorded for each."""
    splits = {s.get("name"): s for s in info.get("splits", []) if isinstance(s, dict)}
    if SPLIT not in splits:
        raise MetaDatasetError(f"{where}: no '{SPLIT}' split (found: {', '.join(map(str, splits)) or 'none'})")
    try:
        lengths = [int(n) for n in splits[SPLIT]["shardLengths"]]
    except (KeyError, TypeError, ValueError):
        raise MetaDatasetError(f"{where}: split '{SPLIT}' lacks integer shardLengths") from None
    template = splits[SPLIT].get("filepathTemplate") or TEMPLATE
    fmt = info.get("fileFormat", "tfrecord")
    if fmt != "tfrecord":
        raise MetaDatasetError(f"{where}: file format {fmt!r}; only 'tfrecord' shards are read")
    n = len(lengths)
    files = [root / (template.replace("{DATASET}", info.get("name", BUILDER)).replace("{SPLIT}", SPLIT)
                     .replace("{FILEFORMAT}", fmt).replace("{SHARD_X_OF_Y}", f"{i:05d}-of-{n:05d}"))
             for i in range(n)]
    return files, lengths


class TfdsSource:
    """One source of an md_tfds build, under one Meta-Dataset version's spec (v1 or v2)."""

    def __init__(self, root: str | os.PathLike, md_version: str = "v1"):
        self.root = Path(root)
        self.name = self.root.parent.name
        meta_path = self.root / "metadata.json"
        info, meta = _json(self.root / "dataset_info.json"), _json(meta_path)
        features = _json(self.root / "features.json")
        missing = [k for k in ("image", "label") if k not in feature_names(features)]
        if missing:
            raise MetaDatasetError(f"{self.root / 'features.json'}: no {' or '.join(missing)} feature")
        if not isinstance(meta, dict) or not isinstance(meta.get("dataset_specs"), dict):
            raise MetaDatasetError(f"{meta_path}: lacks 'dataset_specs' (is this an md_tfds build?)")
        if md_version not in meta["dataset_specs"]:
            raise MetaDatasetError(f"{meta_path}: source {self.name!r} has no Meta-Dataset {md_version} spec "
                                   f"(it has {', '.join(sorted(meta['dataset_specs']))})")
        self.md_version = md_version
        self.spec = spec_mod.from_json(meta["dataset_specs"][md_version], f"{meta_path} dataset_specs.{md_version}")
        self.files, lengths = shard_paths(self.root, info, self.root / "dataset_info.json")
        self.starts = [0]  # each shard's first global example index, then the total
        for n in lengths:
            self.starts.append(self.starts[-1] + n)
        self.slices = self._class_slices(meta, meta_path)
        self.labels = self._labels(meta, meta_path)

    def _class_slices(self, meta: dict, where: Path) -> dict:
        """class id -> (start, stop) in the split; checked against the spec's image counts and
        the shards' lengths."""
        try:
            per_split = meta["relative_class_slices"][self.md_version]
            out = {}
            for split, key in META_SPLITS.items():
                rel = {int(k): v for k, v in (per_split.get(key) or {}).items()}
                for c in self.spec.classes(split):
                    start, stop = (int(x) for x in rel[c - self.spec.classes(split).start])
                    out[c] = (start, stop)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MetaDatasetError(f"{where}: relative_class_slices.{self.md_version} does not give every class of "
                                   f"the spec a [start, stop] slice") from None
        total = self.starts[-1]
        for c, (start, stop) in out.items():
            if stop - start != self.spec.images_per_class[c] or not 0 <= start <= stop <= total:
                raise MetaDatasetError(f"{where}: class {c}'s slice [{start}, {stop}) does not match the shards "
                                       f"({total} examples) and the spec ({self.spec.images_per_class[c]} images)")
        return out

    def _labels(self, meta: dict, where: Path) -> dict:
        """class id -> the label its records carry: its index in metadata's class_names (for
        ImageNet v2 the builder keeps v1's names, so the label is the class's v1 id)."""
        names = meta.get("class_names")
        if not isinstance(names, list):
            raise MetaDatasetError(f"{where}: lacks the 'class_names' list")
        index = {str(n): i for i, n in enumerate(names)}
        missing = [c for c, n in self.spec.class_names.items() if n not in index]
        if missing:
            raise MetaDatasetError(f"{where}: class {missing[0]} ({self.spec.class_names[missing[0]]!r}) "
                                   f"is not in class_names")
        return {c: index[n] for c, n in self.spec.class_names.items()}

    @cached_property
    def _offsets(self) -> list[list[int]]:
        """Every shard's record offsets; a shard whose count differs from dataset_info.json is an error."""
        out = []
        for f, a, b in zip(self.files, self.starts, self.starts[1:]):
            offs = tfrecord.offsets(f)
            if len(offs) != b - a:
                raise MetaDatasetError(f"{f}: holds {len(offs)} records but dataset_info.json says {b - a}")
            out.append(offs)
        return out

    def check_files(self, class_ids) -> None:
        """Fail fast, before any feature is computed: every shard present and framed as recorded."""
        for f in self.files:
            if not f.is_file():
                raise MetaDatasetError(f"{f}: shard not found")
        self._offsets  # noqa: B018 -- indexes (and so checks) every shard now

    def read_class(self, class_id: int) -> list[bytes]:
        start, stop = self.slices[class_id]
        label = self.labels[class_id]
        images = []
        i = bisect.bisect_right(self.starts, start) - 1  # the shard holding the slice's first record
        while i < len(self.files) and self.starts[i] < stop:
            first = self.starts[i]
            a, b = max(start, first) - first, min(stop, self.starts[i + 1]) - first  # within the shard
            records = tfrecord.read_at(self.files[i], self._offsets[i][a:b])
            images += [image_of(r, self.files[i], a + j, label, f"{label} (class {class_id}'s slice)")
                       for j, r in enumerate(records)]
            i += 1
        return images

    def read_images(self, class_id: int, indices) -> list[bytes]:
        """The images at `indices` of one class's slice, read alone (each CRC and label checked)."""
        start, _ = self.slices[class_id]
        label = self.labels[class_id]
        g = start + np.asarray(indices, dtype=np.int64)  # the examples' indices in the split
        shard = np.searchsorted(self.starts, g, side="right") - 1
        out: list = [None] * len(g)
        for f in np.unique(shard):
            at = np.flatnonzero(shard == f)
            within = g[at] - self.starts[f]
            records = tfrecord.read_at(self.files[f], [self._offsets[f][i] for i in within])
            for k, i, record in zip(at, within, records):
                out[k] = image_of(record, self.files[f], int(i), label, f"{label} (class {class_id}'s slice)")
        return out

    def data_files(self) -> list[Path]:
        return list(self.files)


def source_root(data_dir: str | os.PathLike, name: str) -> Path:
    return Path(data_dir) / BUILDER / name / VERSION


def available(data_dir: str | os.PathLike) -> list[str]:
    """The sources an md_tfds data_dir holds (those with a metadata.json at version 1.0.0)."""
    base = Path(data_dir) / BUILDER
    return sorted(p.name for p in base.iterdir() if (p / VERSION / "metadata.json").is_file()) if base.is_dir() else []


def open_source(data_dir: str | os.PathLike, name: str, md_version: str = "v1") -> TfdsSource:
    base = Path(data_dir) / BUILDER / name
    if not base.is_dir():
        raise MetaDatasetError(f"{base}: source {name!r} not found in the md_tfds build "
                               f"(expected {source_root(data_dir, name)}/metadata.json)")
    root = base / VERSION
    if not root.is_dir():
        found = sorted(p.name for p in base.iterdir() if re.fullmatch(r"\d+\.\d+\.\d+", p.name))
        raise MetaDatasetError(f"{root}: version {VERSION} of md_tfds not found (found: {', '.join(found) or 'none'})")
    return TfdsSource(root, md_version)
