"""What the episodic protocol costs on a QuickDraw-sized source: embedding every test image
before sampling (before issue 27) versus embedding only the images the episodes draw (after).

    python benchmarks/episodic_cost.py --scale 0.1                # 771,029 images, 52 classes
    python benchmarks/episodic_cost.py --scale 1 --net resnet18 --device cuda --image-size 84
    python benchmarks/episodic_cost.py --tiny                     # seconds: what tests run

The synthetic source has the shape of QuickDraw's Meta-Dataset v1 test split (52 classes,
7,710,295 images, 116,927 to 340,029 per class, from metadataset/official/), each class
scaled by --scale, written in the official records format (one .tfrecords per class, tiny
28 x 28 PNG sketches) under --work. Prints, each row as it is measured:

1. at full size, by drawing the episodes only (no image is read): how many distinct images
   --episodes episodes use, and what their features would weigh at 512 (ResNet-18) and 2,048
   (ResNet-50) float32 dimensions, against the whole split;
2. at --scale, each arm in its own process (so that peak memory is its own): images embedded,
   wall time, peak resident memory and the prototype head's top-1, which must agree (the same
   episodes on the same features).

--net tiny (default) is a two-layer convolution: on a CPU the cost per image is then decoding
and resizing, as it is for a real backbone on a GPU; --net resnet18/resnet50 embeds with a
random-init torchvision backbone.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metadataset import spec as spec_mod  # noqa: E402
from metadataset.episodes import EpisodeConfig, draw, drawn_images, split_sampler  # noqa: E402

OFFICIAL = Path(__file__).resolve().parent.parent / "metadataset" / "official" / "quickdraw_dataset_spec.json"
VARIANTS = 8  # distinct images per class, repeated: the records are real, their bytes need not all differ


def quickdraw_test_sizes() -> np.ndarray:
    spec = spec_mod.from_json(json.loads(OFFICIAL.read_text()), OFFICIAL)
    return np.array([spec.images_per_class[c] for c in spec.classes("TEST")])


def scaled_sizes(scale: float) -> np.ndarray:
    return np.maximum(np.round(quickdraw_test_sizes() * scale).astype(np.int64), 20)  # an episode needs 2 + queries


def test_spec(sizes, name: str = "quickdraw") -> spec_mod.Spec:
    n = len(sizes)
    return spec_mod.Spec(name, "DatasetSpecification", {"TRAIN": 0, "VALID": 0, "TEST": n},
                         {i: int(k) for i, k in enumerate(sizes)}, {i: f"sketch_{i}" for i in range(n)})


def sketches(class_id: int) -> list[bytes]:
    """VARIANTS 28 x 28 PNGs of one class: a white page with a class-specific stroke (so the
    classes differ) and a little noise (so its images do)."""
    from metadataset.convert import encode_array
    rng = np.random.default_rng(class_id)
    out = []
    for v in range(VARIANTS):
        img = np.full((28, 28), 255, dtype=np.uint8)
        angle = np.pi * class_id / 52
        t = np.linspace(-10, 10, 40)
        ys, xs = (14 + t * np.sin(angle)).astype(int), (14 + t * np.cos(angle) + v % 3 - 1).astype(int)
        img[ys.clip(0, 27), xs.clip(0, 27)] = 0
        img[rng.integers(0, 28, 6), rng.integers(0, 28, 6)] = 0
        out.append(encode_array(img))
    return out


def repeated(blobs: list, n: int):
    return (blobs[i % len(blobs)] for i in range(n))


def build(root: Path, sizes) -> Path:
    """The synthetic source under root (reused when its spec already says these sizes)."""
    from metadataset.convert import write_source
    if (root / spec_mod.FILENAME).is_file() and spec_mod.load(root) == test_spec(sizes, root.name):
        return root
    classes = [(f"sketch_{c}", repeated(sketches(c), int(n))) for c, n in enumerate(sizes)]
    write_source(root, root.name, classes, {"TRAIN": 0, "VALID": 0, "TEST": len(sizes)})
    return root


def full_size_row(episodes: int, seed: int) -> dict:
    sizes = quickdraw_test_sizes()
    drawn = drawn_images(draw(split_sampler(test_spec(sizes), EpisodeConfig(), "quickdraw"), episodes, seed,
                              "quickdraw"))
    return {"images": int(sizes.sum()), "drawn": int(sum(len(v) for v in drawn.values()))}


def network(name: str):
    import torch
    if name == "tiny":
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, stride=2), torch.nn.ReLU(),
                                   torch.nn.Conv2d(32, 64, 3, stride=2), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    from pretrain import models
    torch.manual_seed(0)
    return models.backbone(name, cifar_stem=False)


def arm(a) -> dict:
    """One arm in this process: {embedded, wall_s, peak_rss_mb, top1}."""
    import torch

    from metadataset import protocols
    from metadataset.features import FeatureCache, Table, key_of
    from metadataset.records import Source
    torch.set_num_threads(a.threads)
    source = Source(a.source)
    cache = FeatureCache(network(a.net), a.image_size, a.device, a.batch_size, a.workers)
    start = time.time()
    if a.arm == "after":
        out = protocols.episodic(cache, source, ["prototype"], a.episodes, a.seed)
        embedded, top1 = out["stats"]["images_embedded"], out["heads"]["prototype"]["top1"]
    else:  # before issue 27: every test image embedded, then the same episodes
        test = source.spec.classes("TEST")
        feats = cache.classes(source, test)
        x = torch.cat(feats).numpy()
        keys = np.concatenate([key_of(c, np.arange(len(f))) for c, f in zip(test, feats)])
        sampler = split_sampler(source.spec, EpisodeConfig(), str(source.root))
        accs, _ = protocols.evaluate(Table(keys, x), test.start, draw(sampler, a.episodes, a.seed, source.name),
                                     ["prototype"])
        embedded, top1 = len(x), protocols.mean_ci95(accs["prototype"])[0]
    return {"embedded": embedded, "wall_s": time.time() - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "top1": top1}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=0.1, help="share of each QuickDraw test class's images (default 0.1)")
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--net", default="tiny", choices=("tiny", "resnet18", "resnet50"))
    p.add_argument("--image-size", type=int, default=28, help="QuickDraw's own size (default 28)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="work/episodic_cost", help="where the synthetic source is written")
    p.add_argument("--arms", nargs="+", default=["before", "after"], choices=("before", "after"))
    p.add_argument("--tiny", action="store_true", help="seconds-long settings (scale 0.0005, 5 episodes, 8 px)")
    p.add_argument("--arm", choices=("before", "after"), help=argparse.SUPPRESS)  # one arm, in a child process
    p.add_argument("--source", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.tiny:
        a.scale, a.episodes, a.image_size = 0.0005, 5, 8
    if a.arm:
        print(json.dumps(arm(a)))
        return 0
    full = full_size_row(a.episodes, a.seed)
    gib = 4 / 2**30
    print(f"QuickDraw test split (Meta-Dataset v1), {a.episodes} episodes, seed {a.seed}\n")
    print("| size | arm | images embedded | wall (s) | peak RSS (MiB) | top-1 (%) | features at 512-d / 2048-d (GiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, n in (("before", full["images"]), ("after", full["drawn"])):
        print(f"| full ({full['images']:,}), counted | {name} | {n:,} | — | — | — | "
              f"{n * 512 * gib:.2f} / {n * 2048 * gib:.2f} |", flush=True)
    sizes = scaled_sizes(a.scale)
    source = build(Path(a.work) / f"quickdraw_x{a.scale:g}", sizes)
    measured = {}
    for name in a.arms:
        cmd = [sys.executable, __file__, "--arm", name, "--source", str(source), "--scale", str(a.scale),
               "--episodes", str(a.episodes), "--seed", str(a.seed), "--net", a.net, "--image-size",
               str(a.image_size), "--device", a.device, "--batch-size", str(a.batch_size), "--workers",
               str(a.workers), "--threads", str(a.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        r = measured[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| x{a.scale:g} ({int(sizes.sum()):,}), {a.net} at {a.image_size} px | {name} | {r['embedded']:,} | "
              f"{r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['top1']:.2f} | "
              f"{r['embedded'] * 512 * gib:.2f} / {r['embedded'] * 2048 * gib:.2f} |", flush=True)
    if len(measured) == 2:
        b, f = measured["before"], measured["after"]
        print(f"\nafter / before at x{a.scale:g}: {f['embedded'] / b['embedded']:.1%} of the images, "
              f"{f['wall_s'] / b['wall_s']:.1%} of the time; the same top-1: {abs(b['top1'] - f['top1']) < 1e-9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
