"""dataset_spec.json: Meta-Dataset's description of one source (meta_dataset/data/dataset_spec.py).

Supported, as the official `as_dataset_spec` JSON hook writes and reads them:

- DatasetSpecification (aircraft, cu_birds, dtd, fungi, mscoco, quickdraw, traffic_sign,
  vgg_flower): "name", "classes_per_split" {"TRAIN", "VALID", "TEST"}, "images_per_class"
  {class id: count}, "class_names", "path", "file_pattern", "__class__".
- BiLevelDatasetSpecification (omniglot): "superclasses_per_split" and
  "classes_per_superclass" instead of "classes_per_split"; classes are numbered
  superclass by superclass, so a split's classes are those of its superclasses.
- HierarchicalDatasetSpecification (ilsvrc_2012): "split_subgraphs" (the WordNet DAG per
  split, as the official export_graph writes it: nodes {"wn_id", "words", "children_ids",
  "parents_ids"}) and "images_per_class" {split: {WordNet id: count}}; the classes are the
  DAG's leaves, class_names maps class id -> WordNet id. `dag[split]` lists, for every
  internal node in WordNet-id order, the split-relative ids of the leaves it spans (in
  WordNet-id order): what Meta-Dataset's hierarchical episode sampler draws from.

Class ids are consecutive with the train classes first, then valid, then test
(`get_classes`). Example-level splits ("pools", images_per_class values that are dicts)
are not supported and are an error. The "path" entry is ignored: like the official
`load_dataset_spec`, records are read from the directory the spec sits in.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from metadataset.errors import MetaDatasetError

SPLITS = ("TRAIN", "VALID", "TEST")
FILE_PATTERNS = ("{}.tfrecords", "{}_{}.tfrecords")  # the two the official code accepts
FILENAME = "dataset_spec.json"


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str                      # the spec's __class__
    classes_per_split: dict        # "TRAIN"/"VALID"/"TEST" -> number of classes
    images_per_class: dict         # class id -> number of images
    class_names: dict              # class id -> name
    file_pattern: str = "{}.tfrecords"
    superclasses: dict = field(default_factory=dict)  # bilevel only: split -> [class-id range per superclass]
    dag: dict = field(default_factory=dict)  # hierarchical only: split -> [spanned leaves per internal node]

    @property
    def num_classes(self) -> int:
        return sum(self.classes_per_split.values())

    def classes(self, split: str) -> range:
        """Class ids of a split: a contiguous range, train classes first (official get_classes)."""
        offset = sum(self.classes_per_split[s] for s in SPLITS[:SPLITS.index(split)])
        return range(offset, offset + self.classes_per_split[split])

    def to_json(self) -> dict:
        """The plain DatasetSpecification JSON the official loader reads (what the converter writes)."""
        return {"name": self.name, "classes_per_split": dict(self.classes_per_split),
                "images_per_class": {str(k): v for k, v in self.images_per_class.items()},
                "class_names": {str(k): v for k, v in self.class_names.items()},
                "path": "", "file_pattern": self.file_pattern, "__class__": "DatasetSpecification"}


def _ints(d, what: str, where: Path) -> dict:
    if not isinstance(d, dict):
        raise MetaDatasetError(f"{where}: '{what}' must be an object")
    try:
        return {int(k): v for k, v in d.items()}
    except ValueError:
        raise MetaDatasetError(f"{where}: '{what}' keys must be integer ids") from None


def _counts(d, what: str, where: Path) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            raise MetaDatasetError(f"{where}: example-level splits (pools) in '{what}' are not supported")
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise MetaDatasetError(f"{where}: '{what}' must map ids to non-negative integers")
        out[k] = v
    return out


def _per_split(d, what: str, where: Path) -> dict:
    if not isinstance(d, dict) or set(d) != set(SPLITS):
        raise MetaDatasetError(f"{where}: '{what}' must have exactly the keys TRAIN, VALID, TEST")
    return _counts(d, what, where)


def _flat(raw: dict, where: Path) -> tuple[dict, dict, dict]:
    per_split = _per_split(raw["classes_per_split"], "classes_per_split", where)
    return per_split, _counts(_ints(raw["images_per_class"], "images_per_class", where), "images_per_class", where), {}


def _bilevel(raw: dict, where: Path) -> tuple[dict, dict, dict]:
    supers_per_split = _per_split(raw["superclasses_per_split"], "superclasses_per_split", where)
    per_super = _counts(_ints(raw["classes_per_superclass"], "classes_per_superclass", where), "classes_per_superclass", where)
    if sorted(per_super) != list(range(sum(supers_per_split.values()))):
        raise MetaDatasetError(f"{where}: classes_per_superclass must list superclasses 0..{sum(supers_per_split.values()) - 1}")
    per_split, superclasses, s, c = {}, {}, 0, 0
    for split in SPLITS:  # superclasses, and so their classes, are numbered split by split
        ranges = []
        for _ in range(supers_per_split[split]):
            ranges.append(range(c, c + per_super[s]))
            c, s = c + per_super[s], s + 1
        superclasses[split] = ranges
        per_split[split] = sum(len(r) for r in ranges)
    return per_split, _counts(_ints(raw["images_per_class"], "images_per_class", where), "images_per_class", where), superclasses


def spanned_leaves(nodes: list, where: Path, split: str) -> list[list[str]]:
    """For every internal node of an exported graph, in WordNet-id order, the WordNet ids of
    the leaves it reaches, in WordNet-id order (the official get_spanning_leaves)."""
    children = {}
    for node in nodes:
        if not isinstance(node, dict) or "wn_id" not in node or not isinstance(node.get("children_ids"), list):
            raise MetaDatasetError(f"{where}: split_subgraphs {split}: every node needs 'wn_id' and 'children_ids'")
        children[node["wn_id"]] = node["children_ids"]
    unknown = sorted({c for kids in children.values() for c in kids} - set(children))
    if unknown:
        raise MetaDatasetError(f"{where}: split_subgraphs {split}: child {unknown[0]} is not a node of the graph")
    memo: dict = {}

    def leaves(wn: str, path: tuple = ()) -> frozenset:
        if wn in path:
            raise MetaDatasetError(f"{where}: split_subgraphs {split}: a cycle through {wn} (expected a DAG)")
        if wn not in memo:
            kids = children[wn]
            memo[wn] = frozenset([wn]) if not kids else frozenset().union(*(leaves(k, path + (wn,)) for k in kids))
        return memo[wn]
    return [sorted(leaves(wn)) for wn in sorted(children) if children[wn]]


def _hierarchical(raw: dict, where: Path, names: dict) -> tuple[dict, dict, dict]:
    ids = {wn: cid for cid, wn in names.items()}
    per_split, images, expected = {}, {}, 0
    for split in SPLITS:
        counts = raw["images_per_class"].get(split)
        if not isinstance(counts, dict):
            raise MetaDatasetError(f"{where}: 'images_per_class' must have an object per split")
        leaves = sorted(ids[wn] for wn in counts if wn in ids)  # internal DAG nodes are not classes
        if leaves != list(range(expected, expected + len(leaves))):
            raise MetaDatasetError(f"{where}: the {split} classes are not numbered consecutively after the previous split's")
        for wn in counts:
            if wn in ids:
                images[ids[wn]] = counts[wn]
        per_split[split], expected = len(leaves), expected + len(leaves)
    dag = {}
    graphs = raw["split_subgraphs"]
    for split in SPLITS:
        if not isinstance(graphs, dict) or not isinstance(graphs.get(split), list):
            raise MetaDatasetError(f"{where}: 'split_subgraphs' must have a node list per split")
        spans = spanned_leaves(graphs[split], where, split)
        graph_leaves = {n["wn_id"] for n in graphs[split] if not n["children_ids"]}
        offset = sum(per_split[s] for s in SPLITS[:SPLITS.index(split)])
        split_ids = range(offset, offset + per_split[split])
        if {ids.get(wn) for wn in graph_leaves} != set(split_ids):
            raise MetaDatasetError(f"{where}: the leaves of split_subgraphs {split} are not the {split} classes")
        dag[split] = [[ids[wn] - split_ids.start for wn in span] for span in spans]
    return per_split, _counts(images, "images_per_class", where), dag


REQUIRED = {
    "DatasetSpecification": ("name", "classes_per_split", "images_per_class", "class_names", "file_pattern"),
    "BiLevelDatasetSpecification": ("name", "superclasses_per_split", "classes_per_superclass", "images_per_class",
                                    "class_names", "file_pattern"),
    "HierarchicalDatasetSpecification": ("name", "split_subgraphs", "images_per_class", "class_names", "file_pattern"),
}


def load(source_dir: str | os.PathLike) -> Spec:
    """The spec of the source in `source_dir`; one-line MetaDatasetError naming the file if it
    is missing, not JSON, of an unsupported kind or inconsistent."""
    where = Path(source_dir) / FILENAME
    if not where.is_file():
        raise MetaDatasetError(f"{where}: dataset spec not found")
    try:
        raw = json.loads(where.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetaDatasetError(f"{where}: not a readable JSON dataset spec ({str(exc).splitlines()[0]})") from None
    return from_json(raw, where)


def from_json(raw, where) -> Spec:
    """A spec from its JSON object (a dataset_spec.json's, or one of md_tfds's metadata.json
    `dataset_specs`); `where` names it in errors."""
    if not isinstance(raw, dict):
        raise MetaDatasetError(f"{where}: a dataset spec must be a JSON object")
    kind = raw.get("__class__", "DatasetSpecification")  # older hand-written specs omit it
    if kind not in REQUIRED:
        raise MetaDatasetError(f"{where}: unsupported spec class {kind!r}, expected one of {', '.join(REQUIRED)}")
    missing = [k for k in REQUIRED[kind] if k not in raw]
    if missing:
        raise MetaDatasetError(f"{where}: {kind} lacks {', '.join(missing)}")
    if raw["file_pattern"] not in FILE_PATTERNS:
        raise MetaDatasetError(f"{where}: file_pattern must be one of {', '.join(FILE_PATTERNS)}, got {raw['file_pattern']!r}")
    names = {k: str(v) for k, v in _ints(raw["class_names"], "class_names", where).items()}
    dag = {}
    if kind == "DatasetSpecification":
        per_split, images, superclasses = _flat(raw, where)
    elif kind == "BiLevelDatasetSpecification":
        per_split, images, superclasses = _bilevel(raw, where)
    else:
        per_split, images, dag = _hierarchical(raw, where, names)
        superclasses = {}
    n = sum(per_split.values())
    if sorted(images) != list(range(n)):
        raise MetaDatasetError(f"{where}: images_per_class must list class ids 0..{n - 1} "
                               f"(the splits hold {n} classes, images_per_class {len(images)})")
    return Spec(str(raw["name"]), kind, per_split, images, names, raw["file_pattern"], superclasses, dag)


def write(spec: Spec, source_dir: str | os.PathLike) -> Path:
    """Write the spec as the official converter does (dataset_spec.json, indent 2), atomically."""
    where = Path(source_dir) / FILENAME
    tmp = where.with_name(f".{where.name}.tmp{os.getpid()}")
    payload = spec.to_json()
    payload["path"] = str(Path(source_dir).resolve())
    try:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, where)
    finally:
        tmp.unlink(missing_ok=True)
    return where
