"""python -m pretrain --config CONFIG.yaml [--set key=value ...] [--out DIR] [--results DIR]
[--resume auto|PATH | --overwrite]"""
from __future__ import annotations

import contextlib
import os
import sys

from core import cli
from core.errors import UserError


def parser() -> cli.Parser:
    p = cli.Parser(prog="python -m pretrain", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="YAML preset (see configs/); defaults are the official Ring code's")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=0.1 (repeatable)")
    p.add_argument("--data-root", help="shorthand for --set data.root=DIR")
    p.add_argument("--out", default="runs", help="checkpoints and logs go to OUT/<name>/ (default: runs)")
    p.add_argument("--results", default="results", help="results records go to RESULTS/<name>/ (default: results)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", help="'auto' (newest valid checkpoint of this run) or a checkpoint path")
    again.add_argument("--overwrite", action="store_true",
                       help="start this run again: its old folder (and records) are moved aside, not deleted")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--config-reference", action="store_true",
                   help="print every config key with its default, range and meaning (docs/config.md), and exit")
    return p


def _where_to_resume(out) -> str:
    """'; the last checkpoint runs/r/checkpoints/ckpt_step40.pt is intact: ...' for the one-line fault."""
    if out is None:
        return "; nothing was written"
    from core import checkpoint
    good = checkpoint.latest(out / "checkpoints") if (out / "checkpoints").is_dir() else []
    if not good:
        return f"; no checkpoint of {out.name} was written: start it again with --overwrite"
    return f"; the last checkpoint {good[0]} is intact: continue with --resume auto"


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.config_reference:
        from pretrain import reference
        print(reference.markdown(), end="")
        return 0
    overrides = args.overrides + ([f"data.root={args.data_root}"] if args.data_root else [])
    final, main_rank = None, True
    from pretrain import config as config_mod  # (torch, through the registries: not for --help)
    try:
        cfg = config_mod.load(args.config, overrides)
        if args.print_config:
            import yaml
            print(yaml.safe_dump(config_mod.to_dict(cfg), sort_keys=False))
            return 0
        # every check that can fail runs before any data is read or any model built
        out = cli.writable_dir(args.out, "--out") / cfg.name
        results = cli.writable_dir(args.results, "--results")
        from core import rundir
        rank0 = int(os.environ.get("RANK", "0")) == 0
        # rank 0 holds the run's lock for the whole run (its ranks share one run by design)
        hold = rundir.locked(rundir.lock_path(out), f"run folder {out}") if rank0 else contextlib.nullcontext()
        with hold:
            rundir.prepare(out, results / cfg.name, resume=args.resume, overwrite=args.overwrite, main=rank0)
            from pretrain.train import Trainer, TrainingError
            try:
                trainer = Trainer(cfg, out, results)
                if args.resume:
                    trainer.resume(args.resume)
                final = trainer.finish(trainer.fit())
            except TrainingError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, OSError) as exc:  # checkpoints are atomic: the newest one on disk is whole
        return cli.fault(exc, _where_to_resume(out if "out" in locals() else None))
    finally:
        if "pretrain.distributed" in sys.modules:
            from pretrain import distributed
            main_rank = distributed.is_main()
            distributed.shutdown()
    if main_rank and final is not None:
        print(f"[pretrain] final checkpoint: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
