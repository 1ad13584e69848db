"""python -m metadataset {linear,episodic,convert,from-tfds,build-mini} ...

  linear     --ckpt CKPT --records DIR [--domains D ...|paper|all]  protocol A: linear probe per source
                                                                (default: every source under DIR)
  episodic   --ckpt CKPT --records DIR --head prototype|logreg|both [--episodes 600] [--seed 0]
             [--ways N --shots K --queries Q] [--feature-cache DIR]  protocol B: official episodes
  convert    IMAGEFOLDER OUT_SOURCE_DIR --name NAME [--splits 0.6,0.2,0.2] [--seed 22]
  from-tfds  --data-dir TFDS_DATA_DIR --source NAME OUT_SOURCE_DIR  a TFDS catalog dataset, with
                                                                Meta-Dataset's own class split
  build-mini OUT_DIR                                            the offline smoke sources

Both protocols read the official records layout (--records DIR) or Meta-Dataset's own TFDS
build (--tfds-dir DATA_DIR, read without TensorFlow), with Meta-Dataset v1's or v2's sources
(--md-version; v2: ImageNet is training only, for backbones pretrained on it), and preprocess
images as ringbench does (default) or as Meta-Dataset does (--preprocessing official: 84 or
126 px, bilinear without antialiasing, [-1, 1]).

Evaluations write one results record per source (and head) to RESULTS/<run>/metadataset/;
bad input is one line on stderr, exit status 2, and no record.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core import cli


def _parser() -> cli.Parser:
    p = cli.Parser(prog="python -m metadataset", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=cli.Parser)
    for name in ("linear", "episodic"):
        s = sub.add_parser(name, help="protocol A: per-source linear probe" if name == "linear"
                           else "protocol B: Meta-Dataset's variable-way variable-shot episodes",
                           parents=[cli.evaluation_parent()])
        where = s.add_mutually_exclusive_group(required=True)
        where.add_argument("--records", help="the official records layout: one converted source per subdirectory")
        where.add_argument("--tfds-dir", help="a TFDS data_dir holding Meta-Dataset's own TFDS build "
                                              "(meta_dataset/<source>/1.0.0/, read without TensorFlow)")
        s.add_argument("--md-version", choices=("v1", "v2"), default="v1",
                       help="Meta-Dataset version (default v1); v2 makes ilsvrc_2012 a training-only source and "
                            "drops vgg_flower (with --tfds-dir: its v2 class splits)")
        s.add_argument("--preprocessing", choices=("ringbench", "official"), default="ringbench",
                       help="ringbench: antialiased resize, ImageNet mean/std (default); official: Meta-Dataset's "
                            "decoder (84 px unless --image-size 126, bilinear without antialiasing, [-1, 1])")
        s.add_argument("--domains", nargs="+", help="sources to evaluate: names, 'paper' (the paper's nine) or 'all' "
                                                   "(default: every source under --records)")
        s.add_argument("--batch-size", type=cli.int_at_least(1), default=256)
        if name == "linear":
            s.add_argument("--test-fraction", type=cli.float_in(0, 1, low_open=True, high_open=True), default=0.2,
                           help="share of each class's images held out")
            s.add_argument("--max-per-class", type=cli.int_at_least(0), default=0,
                           help="seeded subset of at most N images per class (0: all)")
            s.add_argument("--weight-decay", type=cli.float_in(0), default=1e-5)
            s.add_argument("--max-iter", type=cli.int_at_least(1), default=300, help="L-BFGS iterations")
        else:
            s.add_argument("--head", required=True, choices=("prototype", "logreg", "both"))
            s.add_argument("--episodes", type=cli.int_at_least(1), default=600)
            s.add_argument("--ways", type=cli.int_at_least(2), help="fixed way (default: variable, as Meta-Dataset)")
            s.add_argument("--shots", type=cli.int_at_least(1), help="fixed support shots per class (default: variable)")
            s.add_argument("--queries", type=cli.int_at_least(1), help="fixed query shots per class (default: variable)")
            s.add_argument("--feature-cache", help="keep the drawn images' features in this folder, for later runs of "
                                                   "the same checkpoint and preprocessing (default: in memory, or a "
                                                   "temporary file when they do not fit)")
    c = sub.add_parser("convert", help="ImageFolder tree -> one Meta-Dataset source")
    c.add_argument("image_folder")
    c.add_argument("out", help="output source directory (new or empty)")
    c.add_argument("--name", required=True, help="source name written into dataset_spec.json")
    c.add_argument("--splits", default="0.6,0.2,0.2", help="train,valid,test fractions of the classes")
    c.add_argument("--seed", type=int, default=22, help="class-split seed (the official converter's default)")
    t = sub.add_parser("from-tfds", help="a TFDS catalog dataset -> one Meta-Dataset source, official class split")
    t.add_argument("--data-dir", required=True, help="the TFDS data_dir the catalog dataset was prepared in")
    t.add_argument("--source", required=True, help="omniglot, dtd, vgg_flower, cu_birds, quickdraw, mscoco or ilsvrc_2012")
    t.add_argument("out", help="output source directory (new or empty)")
    m = sub.add_parser("build-mini", help="the offline smoke Meta-Dataset (see metadataset/mini.py)")
    m.add_argument("out")
    return p


def _evaluate(args) -> list[Path]:
    import torch

    from core import records
    from core.devices import pick_device
    from core.harness import Harness
    from metadataset import contamination, heads, protocols
    from metadataset import features as md_features
    from metadataset import records as md_records
    from metadataset.episodes import EpisodeConfig
    from metadataset.errors import MetaDatasetError
    from metadataset.features import FeatureCache
    from pretrain import models
    from pretrain.registry import names

    start = time.time()
    harness = Harness("metadataset", args.results, args.run)
    if args.preprocessing == "official":  # Meta-Dataset's decoder runs at its own sizes, refused before any work
        md_features.check_preprocessing("official", args.image_size or 84)
    device = pick_device(args.device)
    data = args.tfds_dir or args.records

    def skipped(name, why):
        print(f"[metadataset] skipping {name}: {why}", file=sys.stderr)
    # missing sources fail before any work
    sources = md_records.open_sources(args.records, args.domains, args.tfds_dir, args.md_version, skipped)
    if not args.domains:
        missing = [d for d in md_records.PAPER_DOMAINS if d not in {s.name for s in sources}]
        print(f"[metadataset] {len(sources)} source(s) under {data}: {', '.join(s.name for s in sources)}"
              + (f" (of the paper's domains, missing: {', '.join(missing)})" if missing else ""))
    if args.command == "episodic":
        config = EpisodeConfig(num_ways=args.ways, num_support=args.shots, num_query=args.queries)
        head_names = list(heads.HEADS) if args.head == "both" else [args.head]
        if args.domains in (None, ["all"]):  # a source named explicitly must work; 'all' skips what cannot
            need = config.num_ways or config.min_ways
            for s in [s for s in sources if s.spec.classes_per_split["TEST"] < need]:
                skipped(s.name, f"{s.spec.classes_per_split['TEST']} test classes, episodes need {need} ways")
            sources = [s for s in sources if s.spec.classes_per_split["TEST"] >= need]
            if not sources:
                raise MetaDatasetError(f"{data}: no source has the {need} test classes an episode needs")
        for s in sources:
            s.check_files(s.spec.classes("TEST"))
    else:
        for s in sources:
            s.check_files(range(s.spec.num_classes))
    net, info = models.load_backbone(args.ckpt, args.arch)
    cfg = info["config"] or {}
    if args.preprocessing == "official":
        size = args.image_size or 84
    else:
        size = args.image_size or cfg.get("data", {}).get("image_size") or 84
    folder = getattr(args, "feature_cache", None)
    torch.manual_seed(args.seed)
    cache = FeatureCache(net, size, device, args.batch_size, args.workers, args.preprocessing, folder,
                         records.sha256(args.ckpt) if folder else None)
    cache.check(sources)  # a folder of another checkpoint, preprocessing or source: refused before any work
    run_name = harness.checkpoint(cfg, args.ckpt, checkpoint=args.ckpt, seed=args.seed, arch=info["arch"],
                                  checkpoint_kind=info["kind"], image_size=size, md_version=args.md_version, **names(cfg))
    pretrain_dataset = records.provenance(cfg)["pretrain_dataset"]
    preprocessing = md_features.describe(args.preprocessing, size)
    prep = md_features.summary(args.preprocessing, size)
    split = "Meta-Dataset v2 sources and splits" if args.md_version == "v2" else ""
    pending = []  # every source is evaluated before any record is written: a late error leaves none
    for s in sources:
        t0 = time.time()
        if args.command == "linear":
            m = protocols.linear(cache, s, args.seed, args.test_fraction, args.max_per_class, args.weight_decay, args.max_iter)
            setting = (f"per-domain linear probe: logistic regression by L-BFGS ({args.max_iter} iterations, "
                       f"wd {args.weight_decay:g}) on cached, unaugmented features of the frozen backbone; "
                       f"all classes, a seeded {1 - args.test_fraction:.0%}/{args.test_fraction:.0%} "
                       f"split of each class's images" + (f", at most {args.max_per_class} per class"
                                                          if args.max_per_class else "")
                       + f"; {prep}" + (f"; {split}" if split else ""))
            protocol = {"name": "linear", "paper_protocol": False, "setting": setting,
                        "follows": "no published recipe: a fast proxy for the paper's per-domain linear transfer, "
                                   "whose exact recipe this does not reproduce",
                        "classes": "all (train+valid+test)",
                        "split": "seeded stratified per class", "test_fraction": args.test_fraction,
                        "max_per_class": args.max_per_class, "features": "pooled, unnormalised, no augmentation",
                        "classifier": "multinomial logistic regression, L-BFGS (core.logreg.fit_cached)",
                        "weight_decay": args.weight_decay, "max_iter": args.max_iter,
                        "official_sampling": False, "official_preprocessing": preprocessing["official"],
                        "preprocessing": preprocessing,
                        "classes_n": m["classes"], "train_images": m["train_images"], "test_images": m["test_images"]}
            why = contamination.contaminated(pretrain_dataset, info["kind"], s.name, s.spec.class_names.values())
            pending.append((f"linear_{s.name}", s.name, {"top1": m["top1"]}, protocol, why, time.time() - t0))
            print(f"[metadataset] linear {s.name}: top1 {m['top1']:.2f} ({m['classes']} classes)")
        else:
            out = protocols.episodic(cache, s, head_names, args.episodes, args.seed, config)
            stats = out["stats"]
            mode = "variable-way variable-shot" if config.variable else "fixed"
            suffix = "" if config.variable else f"_{args.ways or 'v'}way{args.shots or 'v'}shot{args.queries or 'v'}query"
            # Meta-Dataset's own episodes: its variable-way variable-shot descriptions, draw for draw
            # (tests/test_metadataset.py, the golden file); a fixed mode is a rule of ours
            official_sampling = config.variable
            why = contamination.contaminated(pretrain_dataset, info["kind"], s.name,
                                             [s.spec.class_names[c] for c in s.spec.classes("TEST")])
            for h, m in out["heads"].items():
                setting = (f"{args.episodes} {mode} episodes of the test classes"
                           + (", Meta-Dataset's episode descriptions draw for draw" if official_sampling else "")
                           + f", {h} head on frozen features; {prep}" + (f"; {split}" if split else "")
                           + "; mean top-1 and 95% interval over episodes")
                protocol = {"name": "episodic", "setting": setting, "mode": mode,
                            "official_sampling": official_sampling,
                            "official_preprocessing": preprocessing["official"],
                            "episodes": args.episodes, "official_episode_count": args.episodes == 600,
                            "preprocessing": preprocessing,
                            "image_sampling": "per class, k_c + q distinct images uniformly from a generator apart "
                                              "from the descriptions' (not the official tf.data shuffle buffers)",
                            "split": "TEST classes", "sampler": config.describe(),
                            "reference": "Triantafillou et al. ICLR 2020, Sec. 3.2", **heads.describe(h), **stats}
                pending.append((f"episodic_{h}_{s.name}{suffix}", s.name, m, protocol, why, time.time() - t0))
                print(f"[metadataset] episodic {h} {s.name}: top1 {m['top1']:.2f} +- {m['ci95']:.2f} "
                      f"({m['episodes']} episodes; {stats['images_embedded']:,} of {stats['test_images']:,} "
                      f"test images embedded)")
    data_format = (f"md_tfds {args.md_version} (TFDS meta_dataset 1.0.0)" if args.tfds_dir
                   else "Meta-Dataset records (dataset_spec.json + tfrecords)")
    paths = []
    for task, dataset, metrics, protocol, why, wall in pending:
        paths.append(harness.write(task, dataset, metrics, wall_s=wall, protocol=protocol, setting=protocol["setting"],
                                   contaminated=why, records_dir=str(Path(data).resolve()), data_format=data_format))
    print(f"[metadataset] {len(paths)} records -> {Path(args.results) / run_name / 'metadataset'} "
          f"({time.time() - start:.1f} s)")
    return paths


def _from_tfds(args) -> None:
    """metadataset/tfds_convert.py in .venv-tfds: TensorFlow never enters this process."""
    import os
    import subprocess

    from metadataset.errors import MetaDatasetError

    root = Path(__file__).resolve().parents[1]
    python = Path(os.environ.get("RINGBENCH_TFDS_VENV", root / ".venv-tfds")) / "bin" / "python"
    if not python.is_file():
        raise MetaDatasetError(f"{python}: the TensorFlow environment is missing; create it with bash scripts/setup_env.sh")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
               TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([str(python), "-m", "metadataset.tfds_convert", "--data-dir", args.data_dir,
                           "--source", args.source, args.out], env=env, capture_output=True, text=True)
    print(done.stdout, end="")
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        raise MetaDatasetError(lines[-1][len("error: "):] if lines else
                               f"the TFDS converter failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")


def run(args):
    if args.command == "convert":
        from metadataset import convert
        spec = convert.convert(args.image_folder, args.out, args.name, args.splits.split(","), args.seed)
        print(f"[metadataset] {args.out}: {spec.num_classes} classes {spec.classes_per_split}, "
              f"{sum(spec.images_per_class.values())} images")
        return None
    if args.command == "from-tfds":
        return _from_tfds(args)
    if args.command == "build-mini":
        from metadataset import mini
        specs = mini.build(args.out)
        for name, spec in specs.items():
            print(f"[metadataset] {Path(args.out) / name}: {spec.num_classes} classes, "
                  f"{sum(spec.images_per_class.values())} images")
        return None
    return _evaluate(args)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return cli.exit_code(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
