"""Standard TFDS catalog datasets -> Meta-Dataset sources in the official records layout
(dataset_spec.json plus one <class id>.tfrecords per class), with Meta-Dataset's own class
splits. Runs with the real tensorflow-datasets, in .venv-tfds, in a process that never imports
torch (`python -m metadataset from-tfds` starts it; TensorFlow and torch in one process crash).

    python -m metadataset.tfds_convert --data-dir D --source NAME OUT

The classes, their ids and their train/valid/test split come from the official dataset specs
(metadataset/official/, copied from the meta-dataset repository); the images come from the
TFDS dataset, processed as the official converter (meta_dataset/dataset_conversion/
dataset_to_records.py) processes the original files:

    source        TFDS dataset          splits read               processing
    omniglot      omniglot              train (background) + test (evaluation)   inverted
    dtd           dtd                   train + validation + test
    vgg_flower    oxford_flowers102     train + validation + test
    cu_birds      caltech_birds2011     train + test
    quickdraw     quickdraw_bitmap      train                     28x28 bitmap -> RGB
    mscoco        coco/2017             train                     one crop per box, 1.2x
    ilsvrc_2012   imagenet2012          train                     the official duplicates skipped

Every image is stored as RGB JPEG (a JPEG that is already RGB and needs no change is kept
byte for byte). The records are written to OUT.partial and renamed to OUT only when every
class of the spec has its images, so an interrupted or failed conversion leaves nothing that
looks like a source. The image counts are TFDS's; where they differ from the official
counts, the converter says how many classes differ.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps

from metadataset import example, tfrecord
from metadataset import spec as spec_mod
from metadataset.errors import MetaDatasetError

OFFICIAL = Path(__file__).resolve().parent / "official"
BOX_SCALE = 1.2  # MSCOCOConverter's box_scale_ratio


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def as_rgb_jpeg(data: bytes, invert: bool = False) -> bytes:
    """The official load_and_process_image: re-encode unless already an RGB JPEG (and not inverted)."""
    img = Image.open(io.BytesIO(data))
    if img.format == "JPEG" and img.mode == "RGB" and not invert:
        return data
    img = img.convert("RGB")
    return jpeg(ImageOps.invert(img) if invert else img)


def coco_crops(data: bytes, boxes, labels) -> list[tuple[int, bytes]]:
    """One crop per box, scaled 1.2x about its centre and clipped, as MSCOCOConverter crops.
    TFDS stores boxes normalised as (ymin, xmin, ymax, xmax); COCO's (x, y, w, h) in pixels is
    recovered from them."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    out = []
    for (ymin, xmin, ymax, xmax), label in zip(np.asarray(boxes, dtype=np.float64), labels):
        x, y, w, h = xmin * width, ymin * height, (xmax - xmin) * width, (ymax - ymin) * height
        x, y = x - 0.5 * w * (BOX_SCALE - 1.0), y - 0.5 * h * (BOX_SCALE - 1.0)
        w, h = w * BOX_SCALE, h * BOX_SCALE
        # COCO's half-integer pixel convention to PIL's full-integer one (as the official code)
        left, top = max(int(round(x - 0.5)), 0), max(int(round(y - 0.5)), 0)
        right, bottom = min(int(round(x + w - 0.5)) + 1, width), min(int(round(y + h - 0.5)) + 1, height)
        if right > left and bottom > top:  # the official converter skips an empty crop
            out.append((int(label), jpeg(image.crop((left, top, right, bottom)))))
    return out


def numbered(names: list[str], label: int) -> str:
    """TFDS label k of a dataset whose official class names are '<k+1:03d>.<name>'."""
    return f"{label + 1:03d}"


def omniglot_name(names: list[str], label: int) -> str:
    """TFDS omniglot's '<alphabet>_<0-based character>' -> the official '<alphabet>-character<NN>'."""
    alphabet, char = names[label].rsplit("_", 1)
    return f"{alphabet}-character{int(char) + 1:02d}"


@dataclass(frozen=True)
class Catalog:
    tfds_name: str
    splits: tuple
    class_name: Callable = lambda names, label: names[label]
    invert: bool = False
    boxes: bool = False          # mscoco: the classes are the boxes' labels
    prefix_match: bool = False   # the official names start with class_name()'s result
    skip_file: str = ""          # the feature holding the file name the duplicates lists name


SOURCES = {
    "omniglot": Catalog("omniglot", ("train", "test"), omniglot_name, invert=True),
    "dtd": Catalog("dtd", ("train", "validation", "test")),
    "vgg_flower": Catalog("oxford_flowers102", ("train", "validation", "test"), numbered, prefix_match=True),
    "cu_birds": Catalog("caltech_birds2011", ("train", "test"), numbered, prefix_match=True),
    "quickdraw": Catalog("quickdraw_bitmap", ("train",)),
    "mscoco": Catalog("coco/2017", ("train",), boxes=True),
    "ilsvrc_2012": Catalog("imagenet2012", ("train",), skip_file="file_name"),
}
OFFICIAL_ONLY = ("aircraft", "fungi", "traffic_sign")  # not in the TFDS catalog in Meta-Dataset's form


def official_spec(source: str) -> dict:
    return json.loads((OFFICIAL / f"{source}_dataset_spec.json").read_text())


def imagenet_duplicates() -> set:
    """File names the official ImageNet converter skips (duplicates of other datasets' images)."""
    skip = set()
    for other in ("Caltech101", "Caltech256", "CUBirds"):
        for line in (OFFICIAL / f"ImageNet_{other}_duplicates.txt").read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                skip.add(os.path.basename(line.split("#")[0].strip()))
    return skip


def class_ids(spec: dict) -> dict:
    """Official class name -> class id."""
    return {name: int(cid) for cid, name in spec["class_names"].items()}


def prepared_dir(data_dir: Path, name: str) -> Path:
    """<data_dir>/<name>[/<config>]/<newest version> with a dataset_info.json."""
    if not data_dir.is_dir():
        raise MetaDatasetError(f"{data_dir}: TFDS data_dir not found")
    base = data_dir / name
    if not base.is_dir():
        raise MetaDatasetError(f"{base}: TFDS dataset {name!r} not prepared in {data_dir} "
                               f"(prepare it with tfds build {name} --data_dir {data_dir})")
    versions = [p for p in base.iterdir() if re.fullmatch(r"\d+\.\d+\.\d+", p.name) and (p / "dataset_info.json").is_file()]
    if not versions:
        raise MetaDatasetError(f"{base}: no prepared version (expected {base}/<major.minor.patch>/dataset_info.json)")
    return max(versions, key=lambda p: tuple(int(x) for x in p.name.split(".")))


class ClassFiles:
    """Records appended to one file per class; at most `limit` files open at once."""

    def __init__(self, out: Path, limit: int = 128):
        self.out, self.limit, self.open, self.counts = out, limit, {}, {}

    def add(self, cid: int, image: bytes) -> None:
        if cid not in self.open:
            if len(self.open) >= self.limit:
                self.close()
            self.open[cid] = open(self.out / f"{cid}.tfrecords", "ab")
        self.open[cid].write(tfrecord.frame(example.encode({"image": image, "label": cid})))
        self.counts[cid] = self.counts.get(cid, 0) + 1

    def close(self) -> None:
        for f in self.open.values():
            f.close()
        self.open = {}


def spec_with_counts(spec: dict, counts: dict, out: Path) -> dict:
    """The official spec with our image counts (for ImageNet also every internal node's: the sum
    over the leaves it spans) and our path."""
    spec = dict(spec, path=str(out))
    if spec["__class__"] != "HierarchicalDatasetSpecification":
        spec["images_per_class"] = {str(c): counts.get(c, 0) for c in map(int, spec["class_names"])}
        return spec
    ids = class_ids(spec)
    per_split = {}
    for split, nodes in spec["split_subgraphs"].items():
        span = dict(zip(sorted(n["wn_id"] for n in nodes if n["children_ids"]),
                        spec_mod.spanned_leaves(nodes, out, split)))
        per_split[split] = {n["wn_id"]: (sum(counts.get(ids[leaf], 0) for leaf in span[n["wn_id"]])
                                         if n["children_ids"] else counts.get(ids[n["wn_id"]], 0)) for n in nodes}
    spec["images_per_class"] = per_split
    return spec


def convert(data_dir: str | os.PathLike, source: str, out_dir: str | os.PathLike, log=print) -> dict:
    if source in OFFICIAL_ONLY:
        raise MetaDatasetError(f"source {source!r}: the TFDS catalog does not hold it in Meta-Dataset's form; convert "
                               f"the original files with the official converter: python -m "
                               f"meta_dataset.dataset_conversion.convert_datasets_to_records --dataset={source} ...")
    if source not in SOURCES:
        raise MetaDatasetError(f"unknown source {source!r}: expected one of {', '.join(SOURCES)} "
                               f"(or, with the official converter, {', '.join(OFFICIAL_ONLY)})")
    catalog, spec = SOURCES[source], official_spec(source)
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()):
        raise MetaDatasetError(f"{out}: already exists and is not empty; choose a new directory")
    where = prepared_dir(Path(data_dir), catalog.tfds_name)
    import tensorflow_datasets as tfds  # only now: bad arguments fail fast, without TensorFlow's start-up

    try:
        builder = tfds.builder_from_directory(str(where))
    except Exception as exc:  # TFDS raises its own types for a missing or unreadable dataset_info/features
        raise MetaDatasetError(f"{where}: not a readable TFDS dataset ({type(exc).__name__}: "
                               f"{(str(exc).strip().splitlines() or [''])[0][:300]})") from None
    features = builder.info.features
    needed = ("image", "objects") if catalog.boxes else ("image", "label")
    missing = [k for k in needed if k not in features]
    if catalog.boxes and not missing:
        missing = [f"objects/{k}" for k in ("bbox", "label") if k not in features["objects"]]
    if missing:
        raise MetaDatasetError(f"{where}: TFDS dataset {catalog.tfds_name} lacks the feature(s) {', '.join(missing)}")
    absent = [s for s in catalog.splits if s not in builder.info.splits]
    if absent:
        raise MetaDatasetError(f"{where}: TFDS dataset {catalog.tfds_name} lacks the split(s) {', '.join(absent)}")
    label_feature = features["objects"]["label"] if catalog.boxes else features["label"]
    names = list(label_feature.names)
    ids = class_ids(spec)
    if catalog.prefix_match:
        ids = {name.split(".", 1)[0]: cid for name, cid in ids.items()}
    to_class = {}
    for label in range(len(names)):
        key = catalog.class_name(names, label)
        if key not in ids:
            raise MetaDatasetError(f"{where}: label {label} ({names[label]!r}) is not a class of the official "
                                   f"{source} spec (expected the catalog's own labels)")
        to_class[label] = ids[key]
    skip = imagenet_duplicates() if catalog.skip_file else set()

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    created = [d for d in partial.parents if not d.exists()]  # removed again if the conversion fails
    partial.mkdir(parents=True)
    files, skipped = ClassFiles(partial), 0
    try:
        for split in catalog.splits:
            decoders = {"image": tfds.decode.SkipDecoding()}
            for ex in tfds.as_numpy(builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)):
                if skip and os.path.basename(ex[catalog.skip_file].decode()) in skip:
                    skipped += 1
                    continue
                if catalog.boxes:
                    for label, crop in coco_crops(ex["image"], ex["objects"]["bbox"], ex["objects"]["label"]):
                        files.add(to_class[label], crop)
                else:
                    files.add(to_class[int(ex["label"])], as_rgb_jpeg(ex["image"], catalog.invert))
        files.close()
        empty = [spec["class_names"][str(c)] for c in sorted(map(int, spec["class_names"])) if c not in files.counts]
        if empty:
            raise MetaDatasetError(f"{where}: {len(empty)} class(es) of the official {source} split have no image "
                                   f"in splits {', '.join(catalog.splits)} (first: {empty[0]!r})")
        written = spec_with_counts(spec, files.counts, out)
        (partial / spec_mod.FILENAME).write_text(json.dumps(written, indent=2) + "\n")
        spec_mod.load(partial)  # what we wrote reads back as a valid spec
        os.replace(partial, out)
    except BaseException as exc:
        files.close()
        shutil.rmtree(partial, ignore_errors=True)
        for d in created:
            d.rmdir()
        if isinstance(exc, Exception) and not isinstance(exc, MetaDatasetError):  # TensorFlow's read errors
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise MetaDatasetError(f"{where}: cannot read TFDS dataset {catalog.tfds_name} "
                                   f"({type(exc).__name__}: {first})") from None
        raise
    official = {int(c): n for c, n in spec["images_per_class"].items()} \
        if spec["__class__"] != "HierarchicalDatasetSpecification" else {}
    differ = sum(files.counts.get(c, 0) != n for c, n in official.items())
    log(f"[metadataset] {out}: {source} from TFDS {catalog.tfds_name} {where.name}, {len(files.counts)} classes "
        f"(official split {written.get('classes_per_split') or written.get('superclasses_per_split') or 'WordNet'}), "
        f"{sum(files.counts.values())} images" + (f", {skipped} duplicates skipped" if skip else "")
        + (f"; {differ} classes' image counts differ from the official ones" if differ else ""))
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m metadataset.tfds_convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="the TFDS data_dir the dataset was prepared in")
    p.add_argument("--source", required=True, help=f"Meta-Dataset source: {', '.join(SOURCES)}")
    p.add_argument("out", help="the source's output directory (new or empty)")
    args = p.parse_args(argv)
    try:
        convert(args.data_dir, args.source, args.out)
    except MetaDatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
