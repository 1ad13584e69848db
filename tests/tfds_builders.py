"""Tiny TFDS datasets built by the real tensorflow-datasets, for the tests (run in .venv-tfds,
never with torch):

    python tests/tfds_builders.py md_tfds DATA_DIR      Meta-Dataset's own build (TFDS name
        meta_dataset, version 1.0.0, one config per source, split all_classes, the metadata
        md_tfds writes), for two small sources: a flat one (dtd) and a bilevel one (omniglot)
    python tests/tfds_builders.py catalog DATA_DIR      the standard catalog datasets that
        `metadataset from-tfds` converts, under their catalog names, versions and features,
        with every class of the official split and a few tiny images each
    python tests/tfds_builders.py convert JOBS_JSON     several conversions in one process

The md_tfds metadata is computed here the way meta_dataset/data/tfds/md_tfds.py computes it,
independently of the reader under test.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

OFFICIAL = Path(__file__).resolve().parents[1] / "metadataset" / "official"


def jpeg(rng, size=(12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


# ---------------------------------------------------------------- md_tfds

def md_specs() -> dict:
    """Two small official-form specs: class ids train first, then valid, then test."""
    dtd_names = ["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked"]
    dtd = {"name": "dtd", "classes_per_split": {"TRAIN": 4, "VALID": 2, "TEST": 2},
           "images_per_class": {str(c): 3 + c % 3 for c in range(8)},
           "class_names": {str(c): n for c, n in enumerate(dtd_names)},
           "path": "/path/to/records/dtd", "file_pattern": "{}.tfrecords", "__class__": "DatasetSpecification"}
    per_super = [2, 3, 2, 2]
    omni = {"name": "omniglot", "superclasses_per_split": {"TRAIN": 2, "VALID": 1, "TEST": 1},
            "classes_per_superclass": {str(s): n for s, n in enumerate(per_super)},
            "images_per_class": {str(c): 2 + c % 2 for c in range(sum(per_super))},
            "superclass_names": {str(s): f"Alphabet{s}" for s in range(4)},
            "class_names": {str(c): f"char{c:02d}" for c in range(sum(per_super))},
            "path": "/path/to/records/omniglot", "file_pattern": "{}.tfrecords",
            "__class__": "BiLevelDatasetSpecification"}
    return {"dtd": dtd, "omniglot": omni}


def split_classes(spec: dict) -> dict:
    if "classes_per_split" in spec:
        counts = spec["classes_per_split"]
    else:  # bilevel: a split's classes are its superclasses'
        per_super = [spec["classes_per_superclass"][str(s)] for s in range(len(spec["classes_per_superclass"]))]
        counts, s = {}, 0
        for split in ("TRAIN", "VALID", "TEST"):
            k = spec["superclasses_per_split"][split]
            counts[split], s = sum(per_super[s:s + k]), s + k
    out, c = {}, 0
    for split in ("TRAIN", "VALID", "TEST"):
        out[split.lower()] = list(range(c, c + counts[split]))
        c += counts[split]
    return out


def md_metadata(spec: dict) -> dict:
    """What md_tfds._info puts in metadata.json, for one version (v1 = v2 here)."""
    classes = split_classes(spec)
    sizes = [spec["images_per_class"][str(c)] for split in ("train", "valid", "test") for c in classes[split]]
    cum = np.cumsum([0] + sizes).tolist()
    class_slices = {c: (cum[c], cum[c + 1]) for c in range(len(sizes))}
    rel = {split: {i: class_slices[c] for i, c in enumerate(ids)} for split, ids in classes.items()}
    per_split = [sum(spec["images_per_class"][str(c)] for c in classes[s]) for s in ("train", "valid", "test")]
    bounds = np.cumsum([0] + per_split).tolist()
    meta_split = {s: (None if a == b else (a, b)) for s, a, b in zip(("train", "valid", "test"), bounds, bounds[1:])}
    names = [spec["class_names"][str(c)] for c in range(len(sizes))]
    return {"meta_split_slices": {"v1": meta_split, "v2": meta_split},
            "relative_class_slices": {"v1": rel, "v2": rel}, "dataset_specs": {"v1": spec, "v2": spec},
            "class_names": names, "total_num_examples": cum[-1], "class_slices": class_slices}


class MetaDataset(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    name = "meta_dataset"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=s, version="1.0.0") for s in ("dtd", "omniglot")]

    def _info(self):
        meta = md_metadata(md_specs()[self.builder_config.name])
        return tfds.core.DatasetInfo(
            builder=self, description="tiny md_tfds",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(encoding_format="jpeg"), "format": tfds.features.Text(),
                "filename": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=len(meta["class_names"])),
                "class_name": tfds.features.Text()}),
            metadata=tfds.core.MetadataDict(**meta), disable_shuffling=True, supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"all_classes": self._generate_examples()}

    def _generate_examples(self):
        meta = self.info.metadata
        spec = meta["dataset_specs"]["v1"]
        rng = np.random.default_rng(len(spec["class_names"]))
        i = 0
        for label, class_name in enumerate(meta["class_names"]):
            for k in range(spec["images_per_class"][str(label)]):
                # the image's top-left pixel carries (label, k) so a reader's order can be checked
                img = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
                img[:2, :2] = (label * 20, k * 40, 255)
                yield f"{i:06d}", {"image": img, "format": "JPEG", "filename": f"{class_name}_{k}.jpg",
                                    "label": label, "class_name": class_name}
                i += 1


def build_md_tfds(data_dir: str) -> None:
    for source in ("dtd", "omniglot"):
        builder = MetaDataset(config=source, data_dir=data_dir)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=3))


# ---------------------------------------------------------------- catalog forms

def official(source: str) -> dict:
    return json.loads((OFFICIAL / f"{source}_dataset_spec.json").read_text())


def catalog_builder(name: str, version: str, features: dict, splits: dict, shards: int = 1):
    """A builder of the catalog's name and version whose splits yield `splits[split]` (lists of
    example dicts); written where the catalog dataset would be prepared."""

    class Catalog(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(version)

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

        def _split_generators(self, dl_manager):
            return {s: self._generate_examples(s) for s in splits}

        def _generate_examples(self, split):
            for i, ex in enumerate(splits[split]):
                yield f"{split}{i:06d}", ex

    Catalog.name = name.split("/")[0]
    if "/" in name:  # a config, as coco/2017
        Catalog.BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name.split("/")[1], version=version)]
    return Catalog


def build_catalog(data_dir: str) -> None:
    rng = np.random.default_rng(0)
    prepare = lambda b, **kw: b(data_dir=data_dir, **kw).download_and_prepare()  # noqa: E731

    # dtd 3.0.1: label names are DTD's own; two images per class, over its three splits
    names = [official("dtd")["class_names"][str(c)] for c in range(47)]
    names = sorted(names)
    ex = lambda c: {"file_name": f"{names[c]}_{c}.jpg", "image": jpeg(rng), "label": c}  # noqa: E731
    prepare(catalog_builder("dtd", "3.0.1", {"file_name": tfds.features.Text(), "image": tfds.features.Image(),
                                             "label": tfds.features.ClassLabel(names=names)},
                            {"train": [ex(c) for c in range(47)], "validation": [ex(c) for c in range(0, 47, 2)],
                             "test": [ex(c) for c in range(1, 47, 2)]}))

    # caltech_birds2011 0.2.0: labels 0..199 without names (class k is folder 'k+1:03d.Name')
    feats = {"image": tfds.features.Image(), "label": tfds.features.ClassLabel(num_classes=200),
             "image/filename": tfds.features.Text()}
    birds = lambda c, k: {"image": jpeg(rng), "label": c, "image/filename": f"{c:03d}_{k}.jpg"}  # noqa: E731
    prepare(catalog_builder("caltech_birds2011", "0.2.0", feats,
                            {"train": [birds(c, 0) for c in range(200)], "test": [birds(c, 1) for c in range(0, 200, 3)]}))

    # oxford_flowers102 2.1.1: labels 0..101 (class k is the official 'k+1:03d.name')
    flower_names = [n.split(".", 1)[1] for n in sorted(official("vgg_flower")["class_names"].values())]
    feats = {"image": tfds.features.Image(), "label": tfds.features.ClassLabel(names=flower_names),
             "file_name": tfds.features.Text()}
    flower = lambda c: {"image": jpeg(rng), "label": c, "file_name": f"image_{c:05d}.jpg"}  # noqa: E731
    prepare(catalog_builder("oxford_flowers102", "2.1.1", feats, {"train": [flower(c) for c in range(102)],
                                                                  "validation": [flower(c) for c in range(0, 102, 5)],
                                                                  "test": [flower(c) for c in range(1, 102, 7)]}))

    # omniglot 3.0.0: label names '<alphabet>_<0-based character>', 105x105 PNG (here smaller)
    spec = official("omniglot")
    char_names = [spec["class_names"][str(c)] for c in range(len(spec["class_names"]))]
    label_names = sorted(f"{n.rsplit('-character', 1)[0]}_{int(n.rsplit('-character', 1)[1]) - 1}" for n in char_names)
    feats = {"image": tfds.features.Image(encoding_format="png"), "alphabet": tfds.features.ClassLabel(num_classes=50),
             "alphabet_char_id": np.int64, "label": tfds.features.ClassLabel(names=label_names)}
    background = set(sorted(spec["superclass_names"][str(s)] for s in range(30)))  # train + valid alphabets
    dark = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 30, np.uint8)).save(dark, format="PNG")  # a dark stroke everywhere
    omni = lambda c: {"image": dark.getvalue(), "alphabet": 0, "alphabet_char_id": 0, "label": c}  # noqa: E731
    train = [omni(c) for c, n in enumerate(label_names) if n.rsplit("_", 1)[0] in background]
    test = [omni(c) for c, n in enumerate(label_names) if n.rsplit("_", 1)[0] not in background]
    prepare(catalog_builder("omniglot", "3.0.0", feats, {"train": train, "test": test}))


    # quickdraw_bitmap 3.0.0: 28x28x1 bitmaps, label names the category names
    names = sorted(official("quickdraw")["class_names"].values())
    feats = {"image": tfds.features.Image(shape=(28, 28, 1)), "label": tfds.features.ClassLabel(names=names)}
    bitmap = lambda c: {"image": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), "label": c}  # noqa: E731
    prepare(catalog_builder("quickdraw_bitmap", "3.0.0", feats, {"train": [bitmap(c) for c in range(345)]}))

    # coco/2017 1.1.0: objects with normalised (ymin, xmin, ymax, xmax) boxes and the 80 category names
    cats = sorted(official("mscoco")["class_names"].values())
    feats = {"image": tfds.features.Image(encoding_format="jpeg"), "image/filename": tfds.features.Text(),
             "objects": tfds.features.Sequence({"bbox": tfds.features.BBoxFeature(),
                                                "label": tfds.features.ClassLabel(names=cats),
                                                "is_crowd": np.bool_})}
    coco = []
    for i in range(40):  # 40 images of 60x40 px, two boxes each: every category once
        boxes = [[0.1, 0.2, 0.7, 0.55], [0.05, 0.5, 0.95, 0.95]] if i % 2 else [[0.25, 0.0, 0.75, 0.3], [0.5, 0.5, 0.9, 0.9]]
        coco.append({"image": jpeg(rng, (60, 40)), "image/filename": f"{i:012d}.jpg",
                     "objects": {"bbox": np.array(boxes, np.float32), "label": [2 * i, 2 * i + 1],
                                 "is_crowd": [False, False]}})
    prepare(catalog_builder("coco/2017", "1.1.0", feats, {"train": coco}))

    # imagenet2012 5.1.0: label names the WordNet ids; two images per class, plus one official duplicate
    wnids = sorted(official("ilsvrc_2012")["class_names"].values())
    feats = {"image": tfds.features.Image(encoding_format="jpeg"), "label": tfds.features.ClassLabel(names=wnids),
             "file_name": tfds.features.Text()}
    imagenet = [{"image": jpeg(rng, (8, 8)), "label": c, "file_name": f"{w}_{k}.JPEG"}
                for c, w in enumerate(wnids) for k in range(2)]
    imagenet.append({"image": jpeg(rng, (8, 8)), "label": wnids.index("n01531178"), "file_name": "n01531178_12730.JPEG"})
    prepare(catalog_builder("imagenet2012", "5.1.0", feats, {"train": imagenet}))


def run_conversions(jobs_json: str) -> None:
    """Several `from-tfds` conversions in one process (one TensorFlow start-up, not one per
    source): [[data_dir, source, out], ...] -> one JSON list on stdout, None or the error."""
    sys.path.insert(0, str(OFFICIAL.parents[1]))
    from metadataset import tfds_convert
    from metadataset.errors import MetaDatasetError

    results = []
    for data_dir, source, out in json.loads(jobs_json):
        try:
            tfds_convert.convert(data_dir, source, out, log=lambda *a: None)
            results.append(None)
        except MetaDatasetError as exc:
            results.append(str(exc))
    print(json.dumps(results))


def main(argv) -> None:
    what, arg = argv
    {"md_tfds": build_md_tfds, "catalog": build_catalog, "convert": run_conversions}[what](arg)


if __name__ == "__main__":
    main(sys.argv[1:])
