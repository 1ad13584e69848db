"""Frozen-backbone features of a source's images (docs/design.md §5.3).

Two preprocessings, named in every record:

- "ringbench" (default): decoded, resized as a whole to size x size (as Meta-Dataset's decoder
  does: no centre crop, since sources mix aspect ratios) with torchvision's antialiased
  bilinear resize, normalised with the pretraining's ImageNet mean/std (pretrain.data.eval_transform).
- "official": Meta-Dataset's decoder (meta_dataset/data/decoder.py, ImageDecoder): RGB,
  tf.image.resize_images(size x size, BILINEAR, align_corners=True), which does not
  antialias, in float, then 2 * (x / 255 - 0.5), in [-1, 1]; at 84 px (its DataConfig
  default) or 126 px (the size of its "best" ResNet setups). Images are decoded by PIL, not by
  TensorFlow's JPEG decoder, which may differ by a grey level.

Features are the backbone's pooled output, not normalised (each protocol normalises as it
documents). The linear protocol embeds whole classes (`classes`). The episodic protocol embeds
only the images its episodes drew (`drawn`), each once, into a table keyed by (class, image
index): in memory, or, past MEMORY_LIMIT or when a folder is given (--feature-cache), in a
file. A folder is keyed by the checkpoint's sha256 and the preprocessing (cache.json) and by
each source's fingerprint (<source>/source.json); one that belongs to another checkpoint,
preprocessing or source is refused before any work, never reused.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from metadataset.errors import MetaDatasetError
from metadataset.records import Source, decode_image
from pretrain import data
from pretrain.knn import features as pooled_features

CHUNK = 4096  # images decoded and embedded together: bounds memory on large sources
PREPROCESSINGS = ("ringbench", "official")
OFFICIAL_SIZES = (84, 126)
MEMORY_LIMIT = 4 << 30  # bytes of drawn features kept in memory; past it they go to a temporary file
CACHE_FORMAT = "ringbench-metadataset-features/1"


class OfficialTransform:
    """Meta-Dataset's ImageDecoder on a PIL image (a class, so DataLoader workers can pickle it)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None]
        # align_corners=True is TF1's resize_images(align_corners=True); F.interpolate never antialiases
        # unless asked, like tf.image.resize_images
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=True)
        return 2 * (x[0] / 255.0 - 0.5)


def transform(size: int, preprocessing: str = "ringbench"):
    if preprocessing == "official":
        return OfficialTransform(size)
    # native=0 selects eval_transform's "resize to (size, size)" branch for every image
    return data.eval_transform(size, native=0)


def check_preprocessing(preprocessing: str, size: int) -> None:
    if preprocessing not in PREPROCESSINGS:
        raise MetaDatasetError(f"--preprocessing must be one of {', '.join(PREPROCESSINGS)}, got {preprocessing!r}")
    if preprocessing == "official" and size not in OFFICIAL_SIZES:
        raise MetaDatasetError(f"--preprocessing official is Meta-Dataset's decoder at 84 or 126 px, not {size} px "
                               f"(drop --image-size, or give 84 or 126)")


def describe(preprocessing: str, size: int) -> dict:
    """What a record says about the preprocessing that ran."""
    if preprocessing == "official":
        return {"name": "official", "official": True, "image_size": size,
                "resize": "bilinear, align_corners=True, no antialiasing (meta_dataset/data/decoder.py)",
                "scale": "2 * (x / 255 - 0.5), in [-1, 1]", "decoder": "PIL"}
    return {"name": "ringbench", "official": False, "image_size": size,
            "resize": "bilinear with antialiasing (torchvision), whole image",
            "scale": "ImageNet mean/std (pretrain.data.MEAN/STD)", "decoder": "PIL"}


def summary(preprocessing: str, size: int) -> str:
    """The preprocessing in a record's `setting` (the report's table titles)."""
    if preprocessing == "official":
        return f"Meta-Dataset's preprocessing ({size} px, bilinear without antialiasing, [-1, 1])"
    return f"ringbench preprocessing ({size} px, antialiased bilinear resize, ImageNet mean/std)"


class _Images(Dataset):
    def __init__(self, blobs, names, tf):
        self.blobs, self.names, self.tf = blobs, names, tf

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i):
        return self.tf(decode_image(self.blobs[i], self.names[i])), 0


def key_of(class_id: int, indices) -> np.ndarray:
    """One int64 per (class, image index): class ids and indices are below 2**31."""
    return (np.int64(class_id) << 32) | np.asarray(indices, dtype=np.int64)


class Table:
    """Features of images keyed by (class id, image index): the rows of one float32 matrix, in
    memory or mapped from a file."""

    def __init__(self, keys: np.ndarray, x: np.ndarray):
        self.keys, self.x, self.keepalive = keys, x, None
        self._order = np.argsort(keys, kind="stable")
        self._sorted = keys[self._order]

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, class_id: int, indices) -> np.ndarray:
        want = key_of(class_id, indices)
        pos = np.searchsorted(self._sorted, want)
        if len(want) and (pos.max() >= len(self._sorted) or not np.array_equal(self._sorted[pos], want)):
            raise KeyError(f"class {class_id}: an image was not embedded")  # a bug, not bad input
        return self._order[pos]

    def features(self, class_id: int, indices) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.x[self.rows(class_id, indices)]))


class _MemoryStore:
    """Rows appended into one preallocated matrix."""

    def __init__(self, capacity: int):
        self.capacity, self.keys, self.x, self.n = capacity, np.empty(capacity, dtype=np.int64), None, 0

    def append(self, keys: np.ndarray, x: np.ndarray) -> None:
        if self.x is None:
            self.x = np.empty((self.capacity, x.shape[1]), dtype=np.float32)
        self.keys[self.n:self.n + len(keys)], self.x[self.n:self.n + len(keys)] = keys, x
        self.n += len(keys)

    def table(self) -> Table:
        return Table(self.keys[:self.n], self.x[:self.n] if self.x is not None else np.empty((0, 0), np.float32))


class DiskStore:
    """One source's rows in a folder: features.f32 (float32 rows), keys.npy (their keys, in row
    order) and source.json (the source's fingerprint, the feature width). Rows are appended and
    flushed before the keys that name them are replaced (atomically), so an interrupted run
    leaves a folder whose keys are all backed by rows."""

    def __init__(self, folder: Path, source_meta: dict, top: Path | None = None, top_meta: dict | None = None):
        self.folder, self.source_meta, self.top, self.top_meta = folder, source_meta, top, top_meta
        self.keys, self.dim = np.empty(0, dtype=np.int64), None
        meta = folder / "source.json"
        if meta.is_file():
            stored = _read_json(meta)
            self.dim = stored.get("dim")
            if (folder / "keys.npy").is_file():
                self.keys = np.load(folder / "keys.npy")
            size = (folder / "features.f32").stat().st_size if (folder / "features.f32").is_file() else 0
            if self.keys.size and (not isinstance(self.dim, int) or size < self.keys.size * self.dim * 4):
                raise MetaDatasetError(f"{folder}: feature cache cut short ({size} bytes for {self.keys.size} "
                                       f"rows); delete the folder")

    def append(self, keys: np.ndarray, x: np.ndarray) -> None:
        if self.dim is None:  # the first rows: the folder now belongs to this checkpoint and source
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.top is not None and not self.top.is_file():
                _write_json(self.top, self.top_meta)
            self.dim = int(x.shape[1])
            _write_json(self.folder / "source.json", {**self.source_meta, "dim": self.dim})
        path = self.folder / "features.f32"
        with open(path, "r+b" if path.exists() else "wb") as f:
            f.truncate(self.keys.size * self.dim * 4)  # drop rows an interrupted run wrote but never named
            f.seek(0, os.SEEK_END)
            f.write(np.ascontiguousarray(x, dtype=np.float32).tobytes())
            f.flush()
            os.fsync(f.fileno())
        self.keys = np.concatenate([self.keys, keys])
        tmp = self.folder / f".keys.npy.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            np.save(f, self.keys)
        os.replace(tmp, self.folder / "keys.npy")

    def table(self) -> Table:
        if not self.keys.size:
            return Table(self.keys, np.empty((0, self.dim or 0), np.float32))
        x = np.memmap(self.folder / "features.f32", dtype=np.float32, mode="r", shape=(self.keys.size, self.dim))
        return Table(self.keys, x)


def _read_json(path: Path) -> dict:
    try:
        out = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetaDatasetError(f"{path}: not a readable feature-cache file ({str(exc).splitlines()[0]})") from None
    if not isinstance(out, dict):
        raise MetaDatasetError(f"{path}: not a feature-cache file (a JSON {type(out).__name__})")
    return out


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def source_fingerprint(source) -> str:
    """What a source's cached features depend on besides the model: its spec (classes, their
    names and image counts, their split) and its data files' names and sizes."""
    spec = source.spec
    payload = {"name": source.name, "kind": spec.kind, "classes_per_split": spec.classes_per_split,
               "images_per_class": {str(k): v for k, v in sorted(spec.images_per_class.items())},
               "class_names": {str(k): v for k, v in sorted(spec.class_names.items())},
               "files": [[f.name, f.stat().st_size] for f in source.data_files() if f.is_file()]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class FeatureCache:
    """Features of one backbone under one preprocessing: whole classes (`classes`, kept in
    memory per process) or the images episodes drew (`drawn`, kept per call, or in `folder`)."""

    def __init__(self, net: torch.nn.Module, size: int, device, batch_size: int = 256, workers: int = 0,
                 preprocessing: str = "ringbench", folder: str | os.PathLike | None = None,
                 checkpoint_sha256: str | None = None, memory_limit: int = MEMORY_LIMIT):
        check_preprocessing(preprocessing, size)
        self.net, self.tf, self.device = net.to(device).eval(), transform(size, preprocessing), device
        self.batch_size, self.workers = batch_size, workers
        self.folder = Path(folder) if folder is not None else None
        self.key = {"format": CACHE_FORMAT, "checkpoint_sha256": checkpoint_sha256,
                    "preprocessing": describe(preprocessing, size)}
        if self.folder is not None and not checkpoint_sha256:
            raise MetaDatasetError("a feature-cache folder needs the checkpoint's sha256 to key it")
        self.memory_limit = memory_limit
        self._cache: dict = {}

    def _embed(self, blobs, names) -> torch.Tensor:
        loader = DataLoader(_Images(blobs, names, self.tf), batch_size=self.batch_size, num_workers=self.workers)
        try:
            return pooled_features(self.net, loader, self.device, normalize=False)[0].cpu()
        except MetaDatasetError as exc:
            # a worker re-raises with the whole traceback as the message: keep its last line
            raise MetaDatasetError(str(exc).strip().splitlines()[-1].split("MetaDatasetError: ")[-1]) from None

    def classes(self, source: Source, class_ids, per_class: int = 0, seed: int = 0) -> list[torch.Tensor]:
        """[features (n_c, D) of class c for c in class_ids]; per_class > 0 keeps a seeded
        random subset of at most that many images of each class (in file order)."""
        keys = [(str(source.root), int(c), per_class, seed if per_class else 0) for c in class_ids]
        todo = [k for k in dict.fromkeys(keys) if k not in self._cache]
        while todo:
            chunk, blobs, names = [], [], []
            while todo and (not chunk or len(blobs) < CHUNK):
                key = todo.pop(0)
                images = source.read_class(key[1])
                keep = range(len(images))
                if per_class and len(images) > per_class:
                    rng = np.random.default_rng([seed, key[1]])
                    keep = np.sort(rng.choice(len(images), per_class, replace=False))
                chunk.append((key, len(keep)))
                blobs += [images[i] for i in keep]
                names += [f"{source.root}: class {key[1]} record {i}" for i in keep]
            feats = self._embed(blobs, names)
            for (key, _), part in zip(chunk, feats.split([n for _, n in chunk])):
                self._cache[key] = part
        return [self._cache[k] for k in keys]

    # ------------------------------------------------------------ the episodic protocol's table

    def check(self, sources) -> None:
        """Refuse, before any work and writing nothing, a folder that holds another
        checkpoint's, preprocessing's or source's features, or that is not a feature cache."""
        if self.folder is None:
            return
        top = self.folder / "cache.json"
        if self.folder.exists() and not self.folder.is_dir():
            raise MetaDatasetError(f"--feature-cache {self.folder}: is a file, not a folder")
        if top.is_file():
            stored = _read_json(top)
            if stored != self.key:
                was = f"checkpoint {str(stored.get('checkpoint_sha256'))[:12]}, " \
                      f"{(stored.get('preprocessing') or {}).get('name')} preprocessing " \
                      f"at {(stored.get('preprocessing') or {}).get('image_size')} px"
                now = f"checkpoint {self.key['checkpoint_sha256'][:12]}, {self.key['preprocessing']['name']} " \
                      f"preprocessing at {self.key['preprocessing']['image_size']} px"
                raise MetaDatasetError(f"--feature-cache {self.folder}: holds the features of {was}, not of this "
                                       f"run's {now}; give another folder or delete this one")
        elif self.folder.is_dir() and any(self.folder.iterdir()):
            raise MetaDatasetError(f"--feature-cache {self.folder}: not a feature cache (no cache.json) and not "
                                   f"empty; give a new or empty folder")
        for s in sources:
            meta = self.folder / s.name / "source.json"
            if meta.is_file():
                stored = _read_json(meta)
                if stored.get("fingerprint") != source_fingerprint(s):
                    raise MetaDatasetError(f"--feature-cache {self.folder / s.name}: holds features of another "
                                           f"{s.name!r} source (other classes, image counts or files than "
                                           f"{s.root}); give another folder or delete this one")

    def drawn(self, source, wanted: dict) -> tuple[Table, dict]:
        """(table, counts): the features of the images `wanted` ({class id: sorted distinct image
        indices}), each embedded once; counts = {"drawn": images wanted, "embedded": images
        computed now, "reused": images found in the folder}."""
        self.check([source])
        store, tmp = None, None
        if self.folder is not None:
            store = DiskStore(self.folder / source.name, {"name": source.name, "root": str(source.root),
                                                          "fingerprint": source_fingerprint(source)},
                              self.folder / "cache.json", self.key)
        have = store.keys if store is not None else np.empty(0, dtype=np.int64)
        todo = {c: idx[~np.isin(key_of(c, idx), have)] for c, idx in wanted.items()}
        todo = {c: idx for c, idx in todo.items() if len(idx)}
        n_new = sum(len(idx) for idx in todo.values())
        # pieces of at most CHUNK images, embedded together across classes (Omniglot's test classes
        # hold 20 images: one loader per class would run batches of 20)
        pieces = [(c, idx[i:i + CHUNK]) for c, idx in todo.items() for i in range(0, len(idx), CHUNK)]
        try:
            while pieces:
                chunk = [pieces.pop(0)]
                while pieces and sum(len(p) for _, p in chunk) + len(pieces[0][1]) <= CHUNK:
                    chunk.append(pieces.pop(0))
                blobs, names = [], []
                for c, part in chunk:
                    blobs += source.read_images(c, part)
                    names += [f"{source.root}: class {c} record {i}" for i in part]
                x = self._embed(blobs, names).numpy()
                if store is None:  # the first rows tell the width, so where the table fits
                    if n_new * x.shape[1] * 4 > self.memory_limit:
                        tmp = tempfile.TemporaryDirectory(prefix="ringbench-md-features-")
                        store = DiskStore(Path(tmp.name), {"name": source.name})
                    else:
                        store = _MemoryStore(n_new)
                store.append(np.concatenate([key_of(c, part) for c, part in chunk]), x)
            table = store.table() if store is not None else Table(np.empty(0, dtype=np.int64),
                                                                   np.empty((0, 0), np.float32))
            table.keepalive = tmp  # a temporary file lives as long as the table that maps it
        except BaseException:
            if tmp is not None:
                tmp.cleanup()
            raise
        drawn = sum(len(idx) for idx in wanted.values())
        return table, {"drawn": drawn, "embedded": n_new, "reused": drawn - n_new}
