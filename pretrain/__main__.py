"""python -m pretrain --config CONFIG.yaml [--set key=value ...] [--out DIR] [--results DIR] [--resume auto|PATH]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pretrain import config as config_mod


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pretrain", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="YAML preset (see configs/); defaults are the official Ring code's")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=0.1 (repeatable)")
    p.add_argument("--data-root", help="shorthand for --set data.root=DIR")
    p.add_argument("--out", default="runs", help="checkpoints and logs go to OUT/<name>/ (default: runs)")
    p.add_argument("--results", default="results", help="results records go to RESULTS/<name>/ (default: results)")
    p.add_argument("--resume", help="'auto' (newest valid checkpoint of this run) or a checkpoint path")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = p.parse_args(argv)

    from pretrain.checkpoint import CheckpointError
    from pretrain.data import DataError
    overrides = args.overrides + ([f"data.root={args.data_root}"] if args.data_root else [])
    try:
        cfg = config_mod.load(args.config, overrides)
        if args.print_config:
            import yaml
            print(yaml.safe_dump(config_mod.to_dict(cfg), sort_keys=False))
            return 0
        from pretrain.train import Trainer, TrainingError
        trainer = Trainer(cfg, Path(args.out) / cfg.name, args.results)
        if args.resume:
            trainer.resume(args.resume)
        final = trainer.finish(trainer.fit())
    except (config_mod.ConfigError, DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        from pretrain import distributed
        main_rank = distributed.is_main()
        distributed.shutdown()
    if main_rank:
        print(f"[pretrain] final checkpoint: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
