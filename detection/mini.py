"""python -m detection mini: the detection stage of run_all.sh's offline mini profile.

Converts the checkpoint, writes the tiny COCO-format dataset (detection/tiny_coco.py), and
runs detectron2's real trainer and COCOEvaluator for a few CPU iterations of Mask R-CNN and
Keypoint R-CNN with FPN, at the tiny images' native size; one results record per task, with
the APs measured (dataset "tiny_coco").

The mini profile pretrains ResNet-18s, and the protocol's configs are R50. Rather than
building an untrained R50 (which would measure nothing about the pretraining), the mini
stage transfers the checkpoint it is given at its own depth: the FPN configs with
RESNETS.DEPTH 18 (detectron2 supports basic-block ResNets in FPN backbones; C4's res5 head
needs bottlenecks, so the C4 and VOC tasks are not part of the mini stage). Records carry
"arch", so an R18 mini number is never mistaken for the R50 protocol. These are smoke numbers:
a few dozen iterations on 24 images, not a benchmark.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import record_run_name
from detection import convert, tiny_coco, train
from detection.errors import UnsupportedBackbone

TASKS = ("coco_mask_fpn", "coco_kp_fpn")
MAX_ITER = 50
# Small and short; the architecture and the optimiser (SGD lr 0.02, momentum 0.9, wd 1e-4) are
# the protocol's. The mask head (4 convs of 256 channels at 14x14) and the keypoint head (8
# convs of 512) cost ~1 and ~7 GFLOP per region on CPU, so the number of regions is what is
# cut: 32 sampled per training image (at most 8 foreground), 10 detections per test image
# (a tiny image has at most 4 objects). Native 160x120 images, batch 2 with the learning rate
# scaled linearly (0.02 x 2 / 16, the rule detectron2 documents; at 0.02 the keypoint head
# diverged from some R18 checkpoints), a short warm-up.
OPTS = ["INPUT.MIN_SIZE_TRAIN", "(120,)", "INPUT.MAX_SIZE_TRAIN", "160", "INPUT.MIN_SIZE_TEST", "120",
        "INPUT.MAX_SIZE_TEST", "160", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.0025",
        "SOLVER.WARMUP_ITERS", "10",
        "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "100000", "TEST.PRECISE_BN.NUM_ITER", "2",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN", "128", "MODEL.RPN.POST_NMS_TOPK_TEST", "128",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "TEST.DETECTIONS_PER_IMAGE", "10"]
NUM_CLASSES = {"coco_mask_fpn": len(tiny_coco.CATEGORIES), "coco_kp_fpn": 1}


def run(args) -> list[Path]:
    out = Path(args.out)
    data = tiny_coco.make(out / "tiny_coco")
    try:
        _, info = convert.source_backbone(args.ckpt)
    except UnsupportedBackbone as exc:  # e.g. the profile's CMC runs: nothing to transfer, no record
        print(f"[detection] mini: skipping {exc}")
        return []
    run_name = record_run_name(args.run, info.get("config"), args.ckpt)
    weights = out / run_name / "detection" / "weights.pkl"
    convert.convert_file(args.ckpt, weights, expect="any", verbose=False)
    paths = []
    for task in args.tasks or TASKS:
        opts = OPTS + ["MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES[task])]
        targs = argparse.Namespace(
            task=task, weights=str(weights), dataset_root=str(data), dataset_name="tiny_coco", num_gpus=0,
            resume=False, eval_only=False, max_iter=args.max_iter or MAX_ITER, opts=opts, results=args.results,
            run=run_name, out=str(out), workers=0 if args.workers is None else args.workers, seed=args.seed,
            quiet=not getattr(args, "verbose", False), num_machines=1, machine_rank=0, dist_url="auto")
        paths.append(train.run(targs))
        # smoke runs are never resumed: drop detectron2's final checkpoint (120-180 MB each)
        for name in ("model_final.pth", "last_checkpoint"):
            (out / run_name / "detection" / task / name).unlink(missing_ok=True)
    return paths
