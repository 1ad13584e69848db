"""python -m detection train: fine-tune converted weights with detectron2's own DefaultTrainer,
launch, checkpointer and evaluators in MoCo's detection protocol, then write a results record.

Tasks (configs in detection/configs/):
    coco_mask_c4    Mask R-CNN R50-C4, COCO 1x       bbox + segm AP    COCOEvaluator
    coco_mask_fpn   Mask R-CNN R50-FPN, COCO 1x      bbox + segm AP    COCOEvaluator
    coco_kp_fpn     Keypoint R-CNN R50-FPN, COCO 1x  bbox + keypoints  COCOEvaluator
    voc_c4          Faster R-CNN R50-C4, VOC 24k     bbox AP/AP50/AP75 PascalVOCDetectionEvaluator

COCO evaluation uses pycocotools' official COCOeval (use_fast_impl=False): the fast C++ one
needs detectron2's compiled ops, which the registry build of detectron2 lacks. Weights with
another depth than 50 (the mini profile's ResNet-18) set RESNETS.DEPTH; basic-block ResNets
work with the FPN tasks only (C4's res5 head is a bottleneck stage).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

from detection.errors import DetectionError

CONFIGS = Path(__file__).parent / "configs"


@dataclasses.dataclass(frozen=True)
class Task:
    config: str
    dataset: str     # the record's dataset
    annotations: str  # COCO json prefix, or "voc"
    c4: bool


TASKS = {
    "coco_mask_c4": Task("coco_mask_c4_1x.yaml", "coco", "instances", True),
    "coco_mask_fpn": Task("coco_mask_fpn_1x.yaml", "coco", "instances", False),
    "coco_kp_fpn": Task("coco_kp_fpn_1x.yaml", "coco", "person_keypoints", False),
    "voc_c4": Task("voc_c4_24k.yaml", "voc", "voc", True),
}
SPLITS = ("train2017", "val2017")
VOC_SETS = {"ringbench_voc_2007_trainval": ("VOC2007", "trainval", 2007),
            "ringbench_voc_2012_trainval": ("VOC2012", "trainval", 2012),
            "ringbench_voc_2007_test": ("VOC2007", "test", 2007)}
SYNC_NORMS = ("SyncBN", "naiveSyncBN", "nnSyncBN", "naiveSyncBN_N")
NORM_KEYS = ("RESNETS", "FPN", "ROI_BOX_HEAD", "ROI_MASK_HEAD", "ROI_KEYPOINT_HEAD")
AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def require_detectron2():
    try:
        import detectron2
    except ImportError:
        raise DetectionError("detectron2 is not installed in this Python; install it with: "
                             "bash detection/install_detectron2.sh") from None
    return detectron2


def dataset_files(task: str, root: str | os.PathLike, eval_only: bool = False) -> dict:
    """{registered name: (annotation json or VOC dir, image dir or split, year)} for `task`,
    checked on disk: a missing file is one line naming it."""
    root, spec = Path(root), TASKS[task]
    if spec.annotations == "voc":
        sets = {n: (root / d, split, year) for n, (d, split, year) in VOC_SETS.items()
                if not (eval_only and split != "test")}
        for directory, split, _ in sets.values():
            listing = directory / "ImageSets" / "Main" / f"{split}.txt"
            if not listing.is_file():
                raise DetectionError(f"{listing}: not found (--dataset-root must hold VOC2007/ and VOC2012/)")
        return sets
    prefix = "ringbench_keypoints_coco_2017" if spec.annotations == "person_keypoints" else "ringbench_coco_2017"
    sets = {}
    for split in SPLITS[1:] if eval_only else SPLITS:
        json_file, images = root / "annotations" / f"{spec.annotations}_{split}.json", root / split
        if not json_file.is_file():
            raise DetectionError(f"{json_file}: annotation file not found (--dataset-root {root} must hold "
                                 f"annotations/{spec.annotations}_{{train,val}}2017.json)")
        if not images.is_dir():
            raise DetectionError(f"{images}: image directory not found")
        sets[f"{prefix}_{split[:-4]}"] = (json_file, images, None)
    return sets


def register(task: str, sets: dict) -> None:
    """Register the sets with detectron2's own loaders (again if this process did before)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances, register_pascal_voc
    from detectron2.data.datasets.builtin_meta import _get_builtin_metadata
    from detectron2.data.datasets.pascal_voc import CLASS_NAMES

    for name, (path, images, year) in sets.items():
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        if TASKS[task].annotations == "voc":
            register_pascal_voc(name, str(path), images, year, CLASS_NAMES)
        else:
            # keypoint names, flip map and skeleton: COCO's person metadata, as detectron2's
            # builtin keypoints_coco_* sets (training flips need the flip map)
            meta = _get_builtin_metadata("coco_person") if TASKS[task].annotations == "person_keypoints" else {}
            meta = {k: v for k, v in meta.items() if k.startswith("keypoint")}
            register_coco_instances(name, meta, str(path), str(images))


def _register_extra_norm_head():
    """MoCo's Res5ROIHeadsExtraNorm (moco/detection/train_net.py): BN after the res5 head."""
    from detectron2.layers import get_norm
    from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads

    if "Res5ROIHeadsExtraNorm" in ROI_HEADS_REGISTRY:
        return

    @ROI_HEADS_REGISTRY.register()
    class Res5ROIHeadsExtraNorm(Res5ROIHeads):
        def __init__(self, cfg, input_shape):
            super().__init__(cfg, input_shape)
            self.res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, self.res5[-1].out_channels))


def _trainer_class():
    from detectron2.engine import DefaultTrainer
    from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

    class Trainer(DefaultTrainer):
        @classmethod
        def build_evaluator(cls, cfg, dataset_name, output_folder=None):
            if "voc" in dataset_name:
                return PascalVOCDetectionEvaluator(dataset_name)
            tasks = ("bbox",) + ("segm",) * cfg.MODEL.MASK_ON + ("keypoints",) * cfg.MODEL.KEYPOINT_ON
            return COCOEvaluator(dataset_name, tasks, distributed=True,
                                 output_dir=output_folder or os.path.join(cfg.OUTPUT_DIR, "inference"),
                                 max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
                                 use_fast_impl=False, kpt_oks_sigmas=cfg.TEST.KEYPOINT_OKS_SIGMAS)

        # build_writers: detectron2's own (console, metrics.json, TensorBoard events in OUTPUT_DIR)

    return Trainer


def build_cfg(opts: dict):
    """The resolved detectron2 config of a run (before the per-process norm fallback)."""
    import torch
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / TASKS[opts["task"]].config))
    cfg.MODEL.WEIGHTS = str(opts["weights"])
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() and opts["num_gpus"] > 0 else "cpu"
    cfg.OUTPUT_DIR = str(opts["output_dir"])
    cfg.SEED = opts["seed"]
    cfg.DATALOADER.NUM_WORKERS = opts["workers"]
    depth = opts["depth"]
    if depth != 50:
        cfg.MODEL.RESNETS.DEPTH = depth
        if depth in (18, 34):  # basic blocks: detectron2 requires 64 channels out of res2
            cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    if opts["max_iter"]:
        cfg.SOLVER.MAX_ITER = opts["max_iter"]
    cfg.merge_from_list(list(opts["opts"]))  # the user's overrides win
    return cfg


def fall_back_from_sync_bn(cfg, world_size: int) -> str | None:
    """SyncBN needs a process group of CUDA devices: with one process, or on CPU, use BN
    (per-process batch statistics). Returns the warning, or None when nothing changed."""
    if world_size > 1 and cfg.MODEL.DEVICE != "cpu":
        return None
    changed = [f"MODEL.{k}.NORM" for k in NORM_KEYS if cfg.MODEL[k].get("NORM") in SYNC_NORMS]
    for key in changed:
        cfg.MODEL[key.split(".")[1]].NORM = "BN"
    if not changed:
        return None
    why = "this run has one process" if world_size == 1 else f"this run's {world_size} processes are on the CPU"
    return (f"{', '.join(changed)}: SyncBN needs a process group of CUDA devices and {why}, so BN is used "
            f"instead (batch statistics of one process); results may differ from the multi-GPU protocol")


def metrics_of(results: dict) -> tuple[dict, dict]:
    """({"bbox/AP": ..}, {"bbox/AP-<class>": ..}) from detectron2's result dict; NaN -> None."""
    def clean(v):
        v = float(v)
        return None if math.isnan(v) else round(v, 4)

    metrics, per_class = {}, {}
    for iou in ("bbox", "segm", "keypoints"):
        for key, value in (results.get(iou) or {}).items():
            if key in AP_KEYS:
                metrics[f"{iou}/{key}"] = clean(value)
            elif key.startswith("AP-"):
                per_class[f"{iou}/{key}"] = clean(value)
    return metrics, per_class


def _loggers(output_dir: str, quiet: bool) -> None:
    """detectron2's loggers for this task, set up before default_setup (which then reuses them).
    One process may run several tasks (mini): the handlers of the previous one go, or its
    log.txt would collect this task's log too. quiet: the console shows warnings only, log.txt
    keeps everything."""
    from detectron2.utils import comm
    from detectron2.utils.logger import setup_logger

    for name in ("detectron2", "fvcore"):
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            logger.removeHandler(h)
    setup_logger.cache_clear()  # memoised on its arguments: the calls below match default_setup's
    for logger in (setup_logger(output_dir, distributed_rank=comm.get_rank(), name="fvcore"),
                   setup_logger(output_dir, distributed_rank=comm.get_rank())):
        for h in logger.handlers:
            if quiet and getattr(h, "stream", None) in (sys.stdout, sys.stderr):
                h.setLevel(logging.WARNING)
                h.addFilter(_expected)


def _expected(record: logging.LogRecord) -> bool:
    """Console filter (quiet): the list of detection-head weights a backbone checkpoint lacks is
    expected (convert accounts for every backbone key); log.txt keeps it."""
    return not (record.name == "fvcore.common.checkpoint" and "not found in the checkpoint" in record.getMessage())


@contextlib.contextmanager
def _console(output_dir: str, quiet: bool):
    """quiet: what detectron2's stack prints besides its log (pycocotools' evaluation tables on
    stdout, library warnings) goes to OUTPUT_DIR/console.txt, not the console."""
    if not quiet:
        yield
        return
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(output_dir) / "console.txt", "a") as f, contextlib.redirect_stdout(f), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" on CPU
        try:
            yield
        finally:
            f.writelines(f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})\n" for w in caught)


def _divergence(exc: BaseException) -> str | None:
    """detectron2 signals a diverged run with FloatingPointError, which a hook (PreciseBN) may
    then mask with an error of its own: look along the exception chain."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, FloatingPointError):
            return str(exc).splitlines()[0] if str(exc) else "non-finite values"
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def worker(opts: dict) -> None:
    """One process (of `launch`): build, train and/or evaluate; rank 0 writes the record."""
    _loggers(str(opts["output_dir"]), opts["quiet"])  # (before _console: its warnings reach the console)
    with _console(str(opts["output_dir"]), opts["quiet"]):
        results, iterations, cfg, norm_warning = _train_or_test(opts)
    _record(opts, results, iterations, cfg, norm_warning)


def _train_or_test(opts: dict):
    """detectron2's part of a worker: set-up, training (or not) and the evaluation."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.engine import default_setup
    from detectron2.utils import comm

    register(opts["task"], opts["sets"])
    _register_extra_norm_head()
    Trainer = _trainer_class()
    cfg = build_cfg(opts)
    norm_warning = fall_back_from_sync_bn(cfg, comm.get_world_size())
    cfg.freeze()
    # detectron2's logging set-up (log.txt and config.yaml in OUTPUT_DIR), seeding, cudnn
    default_setup(cfg, argparse.Namespace(config_file=str(CONFIGS / TASKS[opts["task"]].config),
                                          eval_only=opts["eval_only"], weights=opts["weights"], opts=opts["opts"]))
    if norm_warning:
        logging.getLogger("detectron2").warning(norm_warning)

    if opts["eval_only"]:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=opts["resume"])
        results, iterations = Trainer.test(cfg, model), None
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=opts["resume"])
        try:
            trainer.train()
        except Exception as exc:
            diverged = _divergence(exc)
            if diverged is None:
                raise
            raise DetectionError(f"{opts['task']}: training diverged by iteration {trainer.iter} ({diverged}); "
                                 f"no record written; a lower SOLVER.BASE_LR may help") from None
        # DefaultTrainer.train() returns the results only when TEST.EXPECTED_RESULTS is set;
        # its EvalHook keeps those of the final evaluation here. trainer.iter == MAX_ITER now.
        results, iterations = getattr(trainer, "_last_eval_results", {}), trainer.iter
    return results, iterations, cfg, norm_warning


def _record(opts: dict, results, iterations, cfg, norm_warning) -> None:
    """Rank 0 writes the record of what the evaluation returned."""
    import detectron2
    import yaml
    from detectron2.utils import comm

    if not comm.is_main_process():
        return
    metrics, per_class = metrics_of(results)
    if not metrics:
        raise DetectionError(f"{opts['task']}: the evaluation returned no AP (results: {dict(results)})")
    info = opts["provenance"]
    done = f"{iterations} of {cfg.SOLVER.MAX_ITER} iterations" if iterations is not None else "evaluation only"
    setting = (f"{TASKS[opts['task']].config}, {done} at batch {cfg.SOLVER.IMS_PER_BATCH}, base lr "
               f"{cfg.SOLVER.BASE_LR:g}, backbone norm {cfg.MODEL.RESNETS.NORM}, on {opts['dataset_name']}")
    path = opts["harness"].write(
        opts["task"], opts["dataset_name"], metrics, checkpoint=opts["weights"], seed=cfg.SEED,
        wall_s=time.time() - opts["start"], arch=opts["arch"], norm=cfg.MODEL.RESNETS.NORM,
        norm_warning=norm_warning, world_size=comm.get_world_size(), device=cfg.MODEL.DEVICE,
        eval_only=opts["eval_only"], iterations=iterations, max_iter=cfg.SOLVER.MAX_ITER, setting=setting,
        ims_per_batch=cfg.SOLVER.IMS_PER_BATCH, per_class=per_class,
        evaluator="PascalVOCDetectionEvaluator" if opts["task"] == "voc_c4" else "COCOEvaluator (pycocotools COCOeval)",
        protocol_config=TASKS[opts["task"]].config, detectron2_config=yaml.safe_load(cfg.dump()),
        output_dir=cfg.OUTPUT_DIR, detectron2_version=detectron2.__version__,
        source_checkpoint=info.get("source"), source_sha256=info.get("source_sha256"))
    shown = ", ".join(f"{k} {'n/a' if v is None else f'{v:.2f}'}" for k, v in metrics.items()
                      if k.endswith(("/AP", "/AP50")))
    print(f"[detection] {opts['task']} {opts['run']}: {shown} -> {path}")


def run(args) -> Path:
    """Validate everything that can fail fast, then launch the workers; returns the record's path."""
    from detection import convert

    start = time.time()
    require_detectron2()
    if not str(args.weights).endswith(".pkl"):
        raise DetectionError(f"{args.weights}: weights must be a .pkl written by python -m detection convert "
                             f"(detectron2 reads other suffixes as its own training checkpoints)")
    weights = convert.read_weights(args.weights)
    arch = convert.weights_arch(weights)
    if arch is None:
        raise DetectionError(f"{args.weights}: no ResNet backbone (stem.*, res2-res5.*) in the weights")
    if TASKS[args.task].c4 and arch in ("resnet18", "resnet34"):
        raise DetectionError(f"{args.weights}: a {arch} has basic blocks; the C4 task {args.task} needs a "
                             f"bottleneck ResNet (R50) for its res5 head: use coco_mask_fpn or coco_kp_fpn")
    import torch

    if args.machine_rank >= args.num_machines:
        raise DetectionError(f"--machine-rank {args.machine_rank}: expected 0 .. {args.num_machines - 1} "
                             f"(--num-machines {args.num_machines})")
    if args.num_machines > 1 and not str(args.dist_url).startswith("tcp://"):
        raise DetectionError(f"--dist-url {args.dist_url!r}: several machines need the address of machine 0, "
                             f"e.g. tcp://HOST:PORT")
    num_gpus = torch.cuda.device_count() if args.num_gpus is None else args.num_gpus
    if num_gpus > torch.cuda.device_count():
        raise DetectionError(f"--num-gpus {num_gpus}: only {torch.cuda.device_count()} CUDA device(s) here")
    root = args.dataset_root or ("data/voc" if args.task == "voc_c4" else "data/coco")
    sets = dataset_files(args.task, root, args.eval_only)
    info = weights.get("ringbench") or {}
    from core.harness import Harness
    from pretrain.registry import names
    harness = Harness("detection", args.results, args.run)
    run_name = harness.checkpoint(info.get("config"), args.weights, **names(info.get("config") or {}))
    opts = {
        "task": args.task, "weights": str(args.weights), "arch": arch, "depth": convert.ARCH_DEPTH[arch],
        "sets": sets, "num_gpus": num_gpus, "resume": args.resume, "eval_only": args.eval_only,
        "max_iter": args.max_iter, "opts": args.opts or [], "harness": harness, "run": run_name,
        "output_dir": Path(args.out) / run_name / "detection" / args.task, "seed": args.seed,
        "workers": min(4, os.cpu_count() or 1) if args.workers is None else args.workers,
        "dataset_name": args.dataset_name or TASKS[args.task].dataset, "provenance": info, "start": start,
        "quiet": args.quiet,
    }
    from detection.launch import launch

    # one process (CPU or one GPU): worker runs here; several GPUs or machines: one process each
    launch(worker, num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(opts,))
    if args.machine_rank != 0:  # rank 0, on machine 0, writes the record
        return None
    from core import records

    path = records.path_for(args.results, {"run": run_name, "stage": "detection", "task": args.task})
    if not path.is_file() or path.stat().st_mtime < start:
        raise DetectionError(f"{args.task}: training finished but no results record was written ({path})")
    return path
