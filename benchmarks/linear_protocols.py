"""Side by side, in one run: the `paper` linear protocol (full image pipeline, SGD, augmented)
versus the `cached` probe (features once, L-BFGS) on the same checkpoint and data.

    python benchmarks/linear_protocols.py --ckpt work/mini/runs/mini_moco_ring/final.pt
    python benchmarks/linear_protocols.py --ckpt CKPT --views 0 4 --dataset cifar10 --data-root /data

Prints, each row as it is measured, the wall time and top-1/top-5 of the cached probe for each
--views (augmented views cached per training image; 0: the unaugmented probe of records before
issue 29) and of the paper protocol, then each cached probe's speed-up over the paper protocol.
benchmarks/probe_agreement.py runs the same measurements over a set of checkpoints.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import checkpoint, records  # noqa: E402
from core.devices import pick_device  # noqa: E402
from evaluate import linear  # noqa: E402
from evaluate.protocols import PROTOCOLS  # noqa: E402
from pretrain import data, models  # noqa: E402


@dataclass
class Model:
    """A checkpoint and the data its probes use."""
    path: str
    name: str
    method: str
    sampler: str
    baseline: str   # the method's own sampler, the one Ring is compared against
    seed: int
    dataset: str
    size: int
    native: int
    classes: int
    recipe: str     # the pretraining augmentations (the paper protocol trains on them)
    train: object
    test: object


_DATA: dict = {}  # (dataset, root, limit) -> (train, test): read once for every checkpoint


def load(path: str, dataset: str | None = None, data_root: str = "data", limit: int = 0) -> Model:
    """`limit`: at most that many training and test images, class-balanced (tiny settings)."""
    cfg = checkpoint.read(path).get("config") or {}
    pre = cfg.get("data", {})
    name = dataset or pre.get("dataset")
    if name is None:
        raise SystemExit(f"{path}: the checkpoint does not name its dataset; pass --dataset")
    d = data.info(name)
    if (name, data_root, limit) not in _DATA:
        _DATA[name, data_root, limit] = (data.subset(data.load(name, data_root, d.train), limit),
                                         data.subset(data.load(name, data_root, d.test), limit))
    train, test = _DATA[name, data_root, limit]
    size = (pre.get("image_size") if pre.get("dataset") == name else None) or d.native or 224
    method = cfg.get("method", {}).get("name", "?")
    return Model(path, cfg.get("name") or Path(path).parent.name, method, cfg.get("negatives", {}).get("sampler", "?"),
                 records.baseline_sampler(method) or "?", cfg.get("train", {}).get("seed", 0), name, size, d.native,
                 d.classes, pre.get("augment", "moco_v2"), train, test)


def cached_curve(m: Model, views: list[int], device, seed: int = 0, workers: int = 2,
                 augment: str | None = None, iterations: int | None = None):
    """Yields (V, {top1, top5, seconds, fit}) of the cached probe on V views per training image
    for each V in `views`, in increasing order, as each is measured. The views are cached once,
    one at a time, each timed: view v is the same whichever V asks for it
    (evaluate.linear.view_features), so the V-view probe's time is the test features' + its first
    V views' + its fit's, each measured. `augment`: the views', `iterations`: L-BFGS's cap (default:
    the cached protocol's)."""
    net, _ = models.load_backbone(m.path)
    net.to(device)
    protocol = PROTOCOLS["cached"].with_epochs(iterations)
    plain = data.eval_transform(m.size, m.native)
    augmented = linear._train_transform(dataclasses.replace(protocol, augment=augment or protocol.augment),
                                        m.recipe, m.size, m.native)

    def timed(ds, transform, ids):
        t = time.perf_counter()
        x, y = linear.view_features(net, ds, transform, ids, device, seed, workers)
        return x, y, time.perf_counter() - t

    def fit(parts):
        tx, ty = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        t = time.perf_counter()
        metrics, info = linear.cached(tx, ty, qx, qy, m.classes, protocol)
        return {**metrics, "seconds": test_s + sum(p[2] for p in parts) + time.perf_counter() - t, "fit": info}

    qx, qy, test_s = timed(m.test, plain, [0])
    views = sorted(set(views))
    if 0 in views:
        yield 0, fit([timed(m.train, plain, [0])])
    cache = []
    for v in range(max(views)):
        cache.append(timed(m.train, augmented, [v]))
        if v + 1 in views:
            yield v + 1, fit(cache)


def paper(m: Model, epochs: int, device, seed: int = 0, workers: int = 2) -> dict:
    """top-1, top-5 and seconds of the paper protocol (with `epochs` epochs)."""
    payload = checkpoint.read(m.path)
    sd, arch, stem, _ = checkpoint.backbone_state(payload, m.path)
    protocol = PROTOCOLS["paper"].with_epochs(epochs)
    t = time.perf_counter()
    metrics = linear.full_path(sd, arch, stem, protocol, m.train, m.test, m.classes, m.size, m.native, m.recipe,
                               device, workers, seed, log=lambda line: print(f"  {m.name}: {line}", file=sys.stderr,
                                                                            flush=True))
    return {**metrics, "seconds": time.perf_counter() - t}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--dataset", help="default: the checkpoint's pretraining dataset")
    p.add_argument("--data-root", default="data")
    p.add_argument("--views", type=int, nargs="+", default=[0, 4],
                   help="cached views per training image to measure (default: 0 4)")
    p.add_argument("--paper-epochs", type=int, default=100)
    p.add_argument("--limit", type=int, default=0, help="at most N training and N test images (0: all)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    device = pick_device(args.device)
    m = load(args.ckpt, args.dataset, args.data_root, args.limit)
    print(f"linear evaluation of {args.ckpt} on {m.dataset} ({len(m.train)} train / {len(m.test)} test images), "
          f"device {device}, {torch.get_num_threads()} threads\n")
    print(f"| {'protocol':<22} | {'wall s':>9} | {'top1':>6} | {'top5':>6} |")
    print(f"|{'-' * 24}|{'-' * 10}:|{'-' * 7}:|{'-' * 7}:|", flush=True)
    row = lambda proto, r: print(f"| {proto:<22} | {r['seconds']:>9.1f} | {r['top1']:>6.2f} | {r['top5']:>6.2f} |",
                                 flush=True)
    curve = {}
    for v, r in cached_curve(m, args.views, device, args.seed, args.workers):
        curve[v] = r
        row(f"cached, {v} views" if v else "cached, unaugmented", r)
    ref = paper(m, args.paper_epochs, device, args.seed, args.workers)
    row(f"paper ({args.paper_epochs} epochs)", ref)
    print()
    for v, r in curve.items():
        print(f"cached ({v} views) is {ref['seconds'] / r['seconds']:.1f}x faster than the paper protocol "
              f"({args.paper_epochs} epochs) and {ref['top1'] - r['top1']:+.2f} points below it", flush=True)


if __name__ == "__main__":
    main()
