"""python -m evaluate {linear,knn} --ckpt CHECKPOINT [--dataset NAME] [options]

Evaluates a frozen backbone from any supported checkpoint (ringbench, plain torchvision
ResNet state dict, MoCo-style) and writes a results record to RESULTS/<run>/evaluate/.
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from core import cli
from evaluate import protocols
from evaluate.protocols import KNN, PROTOCOLS, Job
from pretrain.registry import DATASETS, names


def _parser() -> cli.Parser:
    p = cli.Parser(prog="python -m evaluate", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="task", required=True, parser_class=cli.Parser)
    for task in ("linear", "knn"):
        s = sub.add_parser(task, help=f"{task} evaluation", parents=[cli.evaluation_parent()])
        s.add_argument("--dataset", help=f"{', '.join(DATASETS.names())} (default: the checkpoint's pretraining "
                                         f"dataset)")
        s.add_argument("--data-root", default="data", help="directory holding the dataset (default: data)")
        s.add_argument("--no-verify", action="store_true", help="skip torchvision's md5 checks (tiny test files)")
        if task == "linear":
            s.add_argument("--protocol", default="paper", choices=PROTOCOLS.names())
            s.add_argument("--epochs", type=cli.int_at_least(1),
                           help="override the protocol's epochs (L-BFGS iterations for cached)")
            s.add_argument("--views", type=cli.int_at_least(0),
                           help="cached: augmented views cached per training image, drawn once with --seed "
                                f"(default: {PROTOCOLS['cached'].views}); 0: one unaugmented view, the probe of "
                                f"records before issue 29")
            s.add_argument("--resume", action="store_true",
                           help="paper/moco: continue from the probe state saved after each epoch")
            s.add_argument("--state-dir", help="paper/moco: where the probe state (the linear layer, saved after "
                                               "each epoch) goes (default: CKPT's folder/probe)")
        else:
            s.add_argument("--k", type=cli.int_at_least(1), default=200, help="neighbours (default: 200)")
            s.add_argument("--t", type=cli.float_in(0, low_open=True), default=0.07,
                           help="temperature of the exp(cos/t) weights (default: 0.07)")
    return p


def run(args) -> Path:
    with contextlib.ExitStack() as held:  # the record's lock, once its name is known
        return _run(args, held)


def _run(args, held: contextlib.ExitStack) -> Path:
    from torch.utils.data import DataLoader

    from core.devices import pick_device
    from core.harness import Harness
    from pretrain import data, distributed, models
    from pretrain.knn import features, knn_predict, topk_accuracy

    start = time.time()
    harness = Harness("evaluate", args.results, args.run)  # before any work: not after the probe
    protocol = None
    if args.task == "linear":
        protocol = PROTOCOLS[args.protocol].with_epochs(args.epochs).with_views(args.views)
    device = pick_device(args.device)
    device = distributed.init(args.device) or device
    if not distributed.is_main() and (protocol is None or not protocol.every_rank):
        return None  # one pass over cached features: rank 0 does it alone
    net, info = models.load_backbone(args.ckpt, args.arch)
    cfg = info["config"] or {}
    pre = cfg.get("data", {})
    name = args.dataset or pre.get("dataset")
    if name is None:
        raise data.DataError(f"{args.ckpt}: checkpoint does not name its dataset; pass --dataset")
    if name not in DATASETS:
        raise data.DataError(f"--dataset {name!r}: unknown dataset, expected one of {', '.join(DATASETS.names())}")
    d = data.info(name)
    train_split, test_split, native, classes = d.train, d.test, d.native, d.classes
    size = args.image_size or (pre.get("image_size") if pre.get("dataset") == name else None) or native or 224
    verify = not args.no_verify
    train_ds = data.load(name, args.data_root, train_split, verify)
    test_ds = data.load(name, args.data_root, test_split, verify)
    named = names(cfg)  # the method's and sampler's labels; the evaluation's title and place join them below
    run_name = harness.checkpoint(cfg, args.ckpt, checkpoint=args.ckpt, arch=info["arch"], checkpoint_kind=info["kind"],
                                  **named)
    net.to(device)

    def cache(split_ds, normalize):
        tf = data.eval_transform(size, native)
        loader = DataLoader(data.Views(split_ds, tf), batch_size=256, num_workers=args.workers)
        return features(net, loader, device, normalize=normalize)

    if args.task == "knn":
        if args.k > len(train_ds):  # more neighbours than the bank holds: every image would vote
            raise data.DataError(f"--k {args.k}: more neighbours than the {len(train_ds):,} images of the bank "
                                 f"({name} {train_split}); expected at most {len(train_ds)}")
        task = f"knn_k{args.k}_t{args.t:g}_{name}"
    else:
        task = f"{protocol.task_name()}_{name}"
    if distributed.is_main():  # (rank 0 writes the record; its ranks share the evaluation)
        held.enter_context(harness.lock(task))

    extra = {}
    if args.task == "knn":
        bank, bank_y = cache(train_ds, True)
        query, query_y = cache(test_ds, True)
        metrics = topk_accuracy(knn_predict(query, bank, bank_y, classes, args.k, args.t), query_y)
        extra["knn"] = {"k": args.k, "t": args.t, "weighting": "exp(cos/t)"}
        extra["evaluation"] = KNN["evaluation"]
        extra["setting"] = (f"weighted kNN, k={args.k}, t={args.t:g}, weights exp(cos/t), on unaugmented frozen "
                            f"features; train split as the bank")
    else:
        job = Job(net, args.ckpt, args.arch, pre.get("augment", "moco_v2"), train_ds, test_ds, name, classes, size,
                  native, device, args.seed, args.workers, args.resume, args.state_dir)
        done = protocol.run(job)
        if done is None:  # a rank other than 0: rank 0 writes the record
            return None
        metrics, more = done
        extra.update(more, protocol=protocol.describe(), evaluation=protocol.evaluation)
        extra["setting"] = extra["protocol"]["setting"]
    labels = {**named.get("labels", {}), "evaluation": protocols.label(extra["evaluation"])}
    path = harness.write(task, name, metrics, seed=args.seed, wall_s=time.time() - start, image_size=size,
                         labels=labels, **extra)
    print(f"[evaluate] {task} {run_name}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()) + f" -> {path}")
    return path


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from evaluate.linear import SanityError
    from pretrain import distributed
    try:
        return cli.exit_code(lambda: run(args), SanityError)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
