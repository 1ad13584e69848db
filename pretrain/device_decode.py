"""JPEG decoding on the training device for image-folder datasets (docs/design.md §6, issue 17).

With `data.gpu_decode` (on top of `data.gpu_augment`) a loader worker no longer decodes: it reads
the file's bytes, reads the image size from the JPEG header, and draws each view's random crop
window and flip exactly as the CPU recipe would (same transform objects, same per-item seed, so
the same windows). The batch of still-encoded files goes to the device, where
`torchvision.io.decode_jpeg` decodes it in one batched call (nvJPEG on CUDA), and each view is
cropped, resized (antialiased, as the CPU recipe) and flipped there; `DeviceAugment` then does
the rest of the recipe. Workers then spend their time on file reads, not on the decode that
bounds a CPU pipeline at ImageNet resolution.

Files the device decoder cannot take (not JPEG, or CMYK JPEG; in ImageNet's train set one PNG
and 22 CMYK files) are decoded by PIL in the worker and re-encoded as RGB JPEG (quality 100, no
chroma subsampling).
"""
from __future__ import annotations

import contextlib
import io

import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision.io import ImageReadMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from pretrain import data


def files(base: Dataset, name: str) -> list[tuple[str, int]]:
    """(path, target) of every item of the image-folder dataset `name`, through `data.subset`."""
    if isinstance(base, Subset):
        every = files(base.dataset, name)
        return [every[i] for i in base.indices]
    if isinstance(base, torchvision.datasets.DatasetFolder):
        return base.samples
    raise data.DataError(f"key 'data.gpu_decode' = true: data.dataset = {name!r} is not read from image files; "
                         f"expected an image-folder dataset (imagenet, imagenet100)")


def _device_readable(raw: bytes) -> tuple[bytes, Image.Image]:
    """The file's bytes if the device decoder reads them, else an RGB JPEG of the image; and the
    PIL image opened on the file (for a device-readable one only its header is read: the size is
    all the crop needs, and re-encoding keeps it)."""
    img = Image.open(io.BytesIO(raw))
    if img.format == "JPEG" and img.mode in ("RGB", "L"):
        return raw, img
    out = io.BytesIO()
    img.convert("RGB").save(out, format="JPEG", quality=100, subsampling=0)
    return out.getvalue(), img


class EncodedViews(Dataset):
    """((encoded file, crop windows), target, index) per item: windows (n_views, 5) holding top,
    left, height, width and flip of each view, drawn with the item's seed as `data.Views` draws
    them (keys are (index, seed) pairs from `data.EpochSampler`)."""

    def __init__(self, base: Dataset, size: int, n_views: int = 1, name: str = "dataset"):
        self.items, self.n_views = files(base, name), n_views
        self.crop, self.flip = data.random_crop(size), v2.RandomHorizontalFlip()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        path, target = self.items[index]
        with open(path, "rb") as f:
            raw, img = _device_readable(f.read())
        windows = []
        with data.seeded(seed) if seed is not None else contextlib.nullcontext():
            for _ in range(self.n_views):  # the draws of data.Views: the crop's, then the flip's
                p = self.crop.make_params([img])
                flip = bool(torch.rand(1) < self.flip.p)
                windows.append([p["top"], p["left"], p["height"], p["width"], int(flip)])
        encoded = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        return (encoded, torch.tensor(windows, dtype=torch.long)), target, index


def collate(batch):
    """Encoded files stay a list (their lengths differ); windows, targets, indices stack."""
    encoded, windows, targets, index = zip(*[(e, w, t, i) for (e, w), t, i in batch])
    return (list(encoded), torch.stack(windows)), torch.tensor(targets), torch.tensor(index)


def decode(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """RGB images (3, H, W) on `device`: one batched decode. nvJPEG refuses some files that a CPU
    decoder reads (DALI reports a few ImageNet files on A100 hardware decoding), and one such
    file fails the whole batch: then file by file, and a file the device still refuses on the CPU."""
    try:
        return torchvision.io.decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return [_decode_one(e, device) for e in encoded]


def _decode_one(encoded: torch.Tensor, device: torch.device) -> torch.Tensor:
    try:
        return torchvision.io.decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return torchvision.io.decode_jpeg(encoded, mode=ImageReadMode.RGB).to(device)


@torch.no_grad()
def decode_views(encoded: list[torch.Tensor], windows: torch.Tensor, size: int,
                 device: torch.device) -> list[torch.Tensor]:
    """Decode a batch on `device` and cut its views: n_views uint8 batches (B, 3, size, size).
    `windows` stays on the host: reading it costs no device sync."""
    images = decode(encoded, device)
    views = []
    for v in range(windows.shape[1]):
        out = torch.empty(len(images), 3, size, size, dtype=torch.uint8, device=device)
        for i, (top, left, h, w, _) in enumerate(windows[:, v].tolist()):
            out[i] = F.resized_crop(images[i], top, left, h, w, [size, size], antialias=True)
        flip = windows[:, v, 4].bool()
        if flip.any():  # one flip for the batch's flipped images, not one per image
            rows = flip.nonzero().flatten().to(device)
            out[rows] = out[rows].flip(-1)
        views.append(out)
    return views
