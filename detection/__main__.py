"""python -m detection {convert,train,make-tiny,mini} ...

  convert    CKPT OUT.pkl [--arch any|resnet50|resnet18|...]   checkpoint -> detectron2 weights pickle
  train      --task coco_mask_c4|coco_mask_fpn|coco_kp_fpn|voc_c4 --weights OUT.pkl
             [--dataset-root DIR] [--num-gpus N] [--resume] [--eval-only] [--max-iter N]
             [--opts KEY VALUE ...] --results DIR [--run NAME]
  make-tiny  OUT_DIR                                            the tiny COCO-format smoke dataset
  mini       --ckpt CKPT --results DIR [--out DIR] [--verbose]   convert + Mask R-CNN and keypoint
                                                                R-CNN on the tiny dataset (CPU)

train and mini write one results record per task to RESULTS/<run>/detection/<task>.json; bad
input (detectron2 missing, weights missing or not a detectron2 pickle, dataset file missing)
is one line on stderr, exit status 2, and no record.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core import cli


def _train_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--results", default="results", help="records go to RESULTS/<run>/detection/")
    s.add_argument("--run", help="run name in the record (default: the pretraining run's name)")
    s.add_argument("--out", default="runs", help="detectron2's output (checkpoints, logs) goes to "
                                                 "OUT/<run>/detection/<task>/ (default: runs)")
    s.add_argument("--workers", type=cli.int_at_least(0), help="data loader processes (default: min(4, CPUs))")
    s.add_argument("--seed", type=int, default=0)


def _parser() -> cli.Parser:
    from detection.train import TASKS

    p = cli.Parser(prog="python -m detection", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=cli.Parser)
    c = sub.add_parser("convert", help="checkpoint -> detectron2 weights pickle")
    c.add_argument("ckpt", help="ringbench checkpoint, torchvision ResNet state dict or MoCo checkpoint")
    c.add_argument("out", help="output .pkl")
    c.add_argument("--arch", default="any",
                   choices=("any", "resnet50", "resnet18", "resnet34", "resnet101", "resnet152"),
                   help="refuse a backbone of another architecture (default any: the checkpoint's own; "
                        "train then builds that depth)")
    c.add_argument("--quiet", action="store_true", help="do not print the key mapping")
    t = sub.add_parser("train", help="fine-tune and evaluate with detectron2 (MoCo protocol)")
    t.add_argument("--task", required=True, choices=list(TASKS))
    t.add_argument("--weights", required=True, help=".pkl written by python -m detection convert")
    t.add_argument("--dataset-root", help="COCO: annotations/, train2017/, val2017/ (default data/coco); "
                                          "VOC: VOC2007/, VOC2012/ (default data/voc)")
    t.add_argument("--dataset-name", help="dataset name in the record (default: coco or voc)")
    t.add_argument("--num-gpus", type=cli.int_at_least(0), help="processes, one per GPU (default: every GPU; CPU when none)")
    t.add_argument("--num-machines", type=cli.int_at_least(1), default=1, help="machines in the job (default: 1)")
    t.add_argument("--machine-rank", type=cli.int_at_least(0), default=0, help="this machine's rank (0 writes the record)")
    t.add_argument("--dist-url", default="auto", help="tcp://HOST:PORT of machine 0 (default auto: one machine)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/<run>/detection/<task>/last_checkpoint")
    t.add_argument("--eval-only", action="store_true", help="evaluate only (with --resume: the last checkpoint)")
    t.add_argument("--max-iter", type=cli.int_at_least(1), help="override SOLVER.MAX_ITER")
    t.add_argument("--quiet", action="store_true", help="console shows warnings only (full log in OUT/.../log.txt)")
    t.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                   help="detectron2 config overrides KEY VALUE ... (last option on the line)")
    _train_options(t)
    mk = sub.add_parser("make-tiny", help="write the tiny COCO-format dataset")
    mk.add_argument("out")
    mk.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("mini", help="convert + a few CPU iterations of Mask R-CNN and keypoint R-CNN on the tiny data")
    m.add_argument("--ckpt", required=True)
    m.add_argument("--max-iter", type=cli.int_at_least(1), default=None,
                   help="iterations per task (default: detection/mini.py)")
    m.add_argument("--tasks", nargs="+", default=None, choices=["coco_mask_fpn", "coco_kp_fpn"])
    m.add_argument("--verbose", action="store_true", help="show detectron2's whole log on the console (default: "
                                                          "warnings only; the full log is in OUT/.../log.txt)")
    m.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    _train_options(m)
    return p


def _check_outputs(args) -> None:
    """Every folder the command will write is writable, and the run name stays inside it."""
    if args.command == "convert":
        if Path(args.out).is_dir():
            raise cli.UserError(f"OUT {args.out}: is a folder; expected the path of the weights file to write "
                                f"(e.g. {Path(args.out) / 'weights.pkl'})")
        cli.writable_dir(Path(args.out).parent, "OUT")
    elif args.command in ("train", "mini"):
        cli.writable_dir(args.results, "--results")
        cli.writable_dir(args.out, "--out")
        if args.run:
            cli.check_run_name(args.run, "--run")


def run(args) -> None:
    _check_outputs(args)
    if args.command == "convert":
        from detection import convert
        convert.convert_file(args.ckpt, args.out, args.arch, verbose=not args.quiet)
    elif args.command == "train":
        from detection import train
        train.run(args)
    elif args.command == "make-tiny":
        from detection import tiny_coco
        print(f"[detection] tiny COCO-format dataset -> {tiny_coco.make(args.out, args.seed)}")
    else:
        from detection import mini
        mini.run(args)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return cli.exit_code(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
