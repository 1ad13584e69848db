"""Side by side, in one run: the `paper` linear protocol (full image pipeline, SGD, augmented)
versus the `cached` path (features once, L-BFGS) on the same checkpoint and data.

    python benchmarks/linear_protocols.py --ckpt work/mini/runs/mini_moco_ring/final.pt
    python benchmarks/linear_protocols.py --ckpt CKPT --dataset cifar10 --data-root /data

Prints wall time and top-1/top-5 of both, and the speed-up.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from evaluate import linear
from pretrain import checkpoint, data
from pretrain.devices import pick_device
from pretrain.knn import features
from pretrain.registry import PROTOCOLS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--dataset", help="default: the checkpoint's pretraining dataset")
    p.add_argument("--data-root", default="data")
    p.add_argument("--paper-epochs", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    device = pick_device(args.device)
    payload = checkpoint.read(args.ckpt)
    sd, arch, stem, _ = checkpoint.backbone_state(payload, args.ckpt)
    cfg = payload.get("config") or {}
    name = args.dataset or cfg["data"]["dataset"]
    d = data.info(name)
    train_split, test_split, native, classes = d.train, d.test, d.native, d.classes
    size = (cfg.get("data", {}).get("image_size") if cfg.get("data", {}).get("dataset") == name else None) or native or 224
    train = data.load(name, args.data_root, train_split)
    test = data.load(name, args.data_root, test_split)
    rows = []

    t = time.perf_counter()
    net, _ = checkpoint.load_backbone(args.ckpt)
    net.to(device)
    loader = lambda ds: DataLoader(data.Views(ds, data.eval_transform(size, native)), batch_size=256,
                                   num_workers=args.workers)
    tx, ty = features(net, loader(train), device, normalize=False)
    qx, qy = features(net, loader(test), device, normalize=False)
    acc = linear.cached(tx, ty, qx, qy, classes, PROTOCOLS["cached"])
    rows.append(("cached", time.perf_counter() - t, acc))

    t = time.perf_counter()
    paper = linear.with_epochs(PROTOCOLS["paper"], args.paper_epochs)
    acc = linear.full_path(sd, arch, stem, paper, train, test, classes, size, native,
                           cfg.get("data", {}).get("augment", "moco_v2"), device, args.workers)
    rows.append((f"paper ({args.paper_epochs} ep)", time.perf_counter() - t, acc))

    print(f"\nlinear evaluation of {args.ckpt} on {name} ({len(train)} train / {len(test)} test images), "
          f"device {device}, {torch.get_num_threads()} threads")
    print(f"{'protocol':<18}{'wall s':>10}{'top1':>9}{'top5':>9}")
    for proto, wall, acc in rows:
        print(f"{proto:<18}{wall:>10.1f}{acc['top1']:>9.2f}{acc['top5']:>9.2f}")
    print(f"cached is {rows[1][1] / rows[0][1]:.1f}x faster than the paper protocol")


if __name__ == "__main__":
    main()
