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
from evaluate.protocols import PROTOCOLS
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

    from core import checkpoint, records, rundir
    from core.devices import pick_device
    from evaluate import linear
    from pretrain import data, distributed, models
    from pretrain.knn import features, knn_predict, topk_accuracy

    start = time.time()
    results = cli.writable_dir(args.results, "--results")  # before any work: not after the probe
    if args.run:
        cli.check_run_name(args.run, "--run")
    if args.task == "linear" and args.views is not None and args.protocol != "cached":
        raise cli.UserError(f"--views {args.views}: only the cached probe caches views; --protocol "
                            f"{args.protocol} trains on freshly augmented images every epoch")
    device = pick_device(args.device)
    device = distributed.init(args.device) or device
    if not distributed.is_main() and (args.task == "knn" or args.protocol == "cached"):
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
    run_name = cli.record_run_name(args.run, cfg, args.ckpt)
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
        protocol = linear.with_views(linear.with_epochs(PROTOCOLS[args.protocol], args.epochs), args.views)
        task = f"{linear.task_name(protocol)}_{name}"
    if distributed.is_main():  # (rank 0 writes the record; its ranks share the evaluation)
        held.enter_context(rundir.record_lock(results, run_name, "evaluate", task))

    extra = {}
    if args.task == "knn":
        bank, bank_y = cache(train_ds, True)
        query, query_y = cache(test_ds, True)
        metrics = topk_accuracy(knn_predict(query, bank, bank_y, classes, args.k, args.t), query_y)
        extra["knn"] = {"k": args.k, "t": args.t, "weighting": "exp(cos/t)"}
        extra["evaluation"], extra["setting"] = "knn", (f"weighted kNN, k={args.k}, t={args.t:g}, weights exp(cos/t), "
                                                        f"on unaugmented frozen features; train split as the bank")
    else:
        if protocol.name == "cached":
            tx, ty, qx, qy = linear.cached_features(net, protocol, train_ds, test_ds, size, native, device,
                                                    args.seed, args.workers, pre.get("augment", "moco_v2"))
            metrics, extra["fit"] = linear.cached(tx, ty, qx, qy, classes, protocol)
            if not extra["fit"]["converged"]:
                print(f"[evaluate] warning: L-BFGS stopped at its cap of {protocol.epochs} iterations before "
                      f"converging (objective {extra['fit']['objective']:.4f}); --epochs N raises the cap; "
                      f"the record says so", file=sys.stderr)
        else:
            sd, arch, stem, _ = checkpoint.backbone_state(checkpoint.read(args.ckpt), args.ckpt)
            recipe = pre.get("augment", "moco_v2")
            state_dir = cli.writable_dir(args.state_dir or Path(args.ckpt).parent / "probe",
                                         "--state-dir" if args.state_dir else "the probe state folder (--state-dir)")
            state = state_dir / f"{linear.task_name(protocol)}_{name}.pt"
            if not args.resume:
                state.unlink(missing_ok=True)
            from pretrain.livelog import LiveLog
            live = LiveLog(state_dir / f"tb_{state.stem}", "linear")  # tensorboard --logdir runs
            metrics = linear.full_path(sd, arch, stem, protocol, train_ds, test_ds, classes, size, native,
                                       recipe, device, args.workers, args.seed, state=str(state),
                                       log=print if distributed.is_main() else (lambda *_: None), live=live)
            live.close()
            if metrics is None:  # a rank other than 0: rank 0 writes the record
                return None
        extra["protocol"] = linear.describe(protocol)
        extra["evaluation"], extra["setting"] = f"linear_{protocol.name}", extra["protocol"]["setting"]
    rec = records.make(run_name, "evaluate", task, name, metrics, cfg, checkpoint=args.ckpt, seed=args.seed,
                       wall_s=time.time() - start, arch=info["arch"], checkpoint_kind=info["kind"],
                       image_size=size, **names(cfg), **extra)
    path = records.write(rec, results)
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
