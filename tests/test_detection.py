"""detection/: conversion, configs, the tiny COCO data, detectron2 training + COCO evaluation."""
import builtins
import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from core import checkpoint
from detection import convert, tiny_coco, train
from detection.__main__ import main
from pretrain import models

ROOT = Path(__file__).parent.parent


def ckpt(tmp_path, arch, **extra):
    net = models.backbone(arch)
    payload = {"format": checkpoint.FORMAT, "version": 1, "arch": arch, "cifar_stem": False,
               "backbone": net.state_dict(), "config": {"name": f"det_{arch}", "method": {"name": "moco"},
                                                        "negatives": {"sampler": "ring"}}, **extra}
    path = tmp_path / f"{arch}.pt"
    checkpoint.atomic_save(payload, path)
    return path, net.state_dict()


def cfg_for(task, weights, depth=50, opts=()):
    cfg = train.build_cfg({"task": task, "weights": weights, "num_gpus": 0, "output_dir": "unused", "seed": 0,
                           "workers": 0, "depth": depth, "max_iter": None, "opts": list(opts)})
    train.fall_back_from_sync_bn(cfg, 1)
    return cfg


# ------------------------------------------------------------------------ conversion

def test_rename_rules_cover_every_torchvision_key_exactly_once():
    for arch in ("resnet18", "resnet50"):
        sd = {k: v for k, v in getattr(torchvision.models, arch)(weights=None).state_dict().items()
              if not k.startswith("fc.")}
        model, found, mapping = convert.convert(sd, expect="any")
        assert found == arch and len(mapping) == len(sd) == len(model)
        assert sorted(old for old, _ in mapping) == sorted(sd)  # every source key used once
        assert len({new for _, new in mapping}) == len(sd)        # onto distinct names
    assert convert.rename("conv1.weight") == "stem.conv1.weight"
    assert convert.rename("bn1.running_var") == "stem.conv1.norm.running_var"
    assert convert.rename("layer1.0.bn3.bias") == "res2.0.conv3.norm.bias"
    assert convert.rename("layer4.2.conv2.weight") == "res5.2.conv2.weight"
    assert convert.rename("layer3.0.downsample.0.weight") == "res4.0.shortcut.weight"
    assert convert.rename("layer3.0.downsample.1.num_batches_tracked") == "res4.0.shortcut.norm.num_batches_tracked"
    assert convert.rename("fc.weight") is None and convert.rename("layer5.0.conv1.weight") is None


def test_convert_cli_writes_moco_style_pickle_and_prints_mapping(tmp_path, capsys):
    path, sd = ckpt(tmp_path, "resnet50")
    assert main(["convert", str(path), str(tmp_path / "w.pkl")]) == 0
    out = capsys.readouterr().out
    assert "layer1.0.bn1.weight -> res2.0.conv1.norm.weight" in out and "conv1.weight -> stem.conv1.weight" in out
    with open(tmp_path / "w.pkl", "rb") as f:
        obj = pickle.load(f)
    assert obj["__author__"] == "ringbench" and obj["matching_heuristics"] is True
    assert len(obj["model"]) == len(sd) and all(isinstance(v, np.ndarray) for v in obj["model"].values())
    assert np.array_equal(obj["model"]["res4.5.conv3.norm.running_mean"], sd["layer3.5.bn3.running_mean"].numpy())
    assert obj["ringbench"]["arch"] == "resnet50" and obj["ringbench"]["config"]["name"] == "det_resnet50"


def test_convert_refuses_unknown_layouts_with_one_line(tmp_path, capsys):
    r18, _ = ckpt(tmp_path, "resnet18")
    assert main(["convert", "--arch", "resnet50", str(r18), str(tmp_path / "a.pkl")]) == 2  # asked for an R50
    err = capsys.readouterr().err
    assert "holds a resnet18 backbone but the target is resnet50" in err and err.count("\n") == 1
    assert main(["convert", "--quiet", str(r18), str(tmp_path / "a.pkl")]) == 0  # default: the checkpoint's own
    assert pickle.loads((tmp_path / "a.pkl").read_bytes())["ringbench"]["arch"] == "resnet18"
    cmc = models.backbone("cmc_resnet18")
    checkpoint.atomic_save({"format": checkpoint.FORMAT, "version": 1, "arch": "cmc_resnet18", "cifar_stem": False,
                            "backbone": cmc.state_dict(), "config": None}, tmp_path / "cmc.pt")
    assert main(["convert", str(tmp_path / "cmc.pt"), str(tmp_path / "b.pkl")]) == 2
    assert "CMC backbone" in capsys.readouterr().err
    stem = models.backbone("resnet50", cifar_stem=True)
    torch.save(stem.state_dict(), tmp_path / "cifar.pt")
    assert main(["convert", str(tmp_path / "cifar.pt"), str(tmp_path / "c.pkl")]) == 2
    assert "CIFAR stem" in capsys.readouterr().err
    sd = torchvision.models.resnet50(weights=None).state_dict()
    sd["layer2.0.extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "odd.pt")
    assert main(["convert", str(tmp_path / "odd.pt"), str(tmp_path / "d.pkl")]) == 2
    assert "unexpected ['layer2.0.extra.weight']" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in ("b.pkl", "c.pkl", "d.pkl"))


def test_converted_resnet50_loads_into_detectron2_c4_and_fpn_with_no_missing_backbone_keys(tmp_path):
    pytest.importorskip("detectron2")
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    path, sd = ckpt(tmp_path, "resnet50")
    convert.convert_file(path, tmp_path / "w.pkl", verbose=False)
    train._register_extra_norm_head()
    for task, prefix in (("coco_mask_c4", "backbone."), ("coco_mask_fpn", "backbone.bottom_up.")):
        model = build_model(cfg_for(task, str(tmp_path / "w.pkl")))
        checkpointer = DetectionCheckpointer(model)
        # the incompatible keys of exactly what resume_or_load does with the file
        incompatible = checkpointer._load_model(checkpointer._load_file(str(tmp_path / "w.pkl")))
        assert incompatible.unexpected_keys == [] and incompatible.incorrect_shapes == []
        assert [k for k in incompatible.missing_keys if k.startswith(prefix)] == []
        state = model.state_dict()
        if task == "coco_mask_c4":  # res2-res4 in the backbone, res5 in the box head (+ MoCo's extra BN)
            assert [k for k in incompatible.missing_keys if k.startswith("roi_heads.res5.")] == \
                [f"roi_heads.res5.norm.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
            assert torch.equal(state["roi_heads.res5.2.conv3.weight"], sd["layer4.2.conv3.weight"])
        else:
            assert torch.equal(state["backbone.bottom_up.res5.2.conv3.weight"], sd["layer4.2.conv3.weight"])
        assert torch.equal(state[f"{prefix}stem.conv1.weight"], sd["conv1.weight"])
        assert torch.equal(state[f"{prefix}res3.0.shortcut.norm.running_var"], sd["layer2.0.downsample.1.running_var"])


# ------------------------------------------------------------------------ configs

def test_configs_follow_the_moco_protocol():
    pytest.importorskip("detectron2")
    from detectron2.config import get_cfg

    for task, spec in train.TASKS.items():
        cfg = get_cfg()
        cfg.merge_from_file(str(train.CONFIGS / spec.config))
        assert cfg.INPUT.FORMAT == "RGB" and cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False
        assert list(cfg.MODEL.PIXEL_MEAN) == [123.675, 116.28, 103.53]
        assert list(cfg.MODEL.PIXEL_STD) == [58.395, 57.12, 57.375]
        assert cfg.MODEL.RESNETS.NORM == "SyncBN" and cfg.MODEL.RESNETS.DEPTH == 50
        assert cfg.MODEL.BACKBONE.FREEZE_AT == 0 and cfg.TEST.PRECISE_BN.ENABLED
        assert cfg.MODEL.ROI_HEADS.NAME == ("Res5ROIHeadsExtraNorm" if spec.c4 else "StandardROIHeads")
        assert cfg.SOLVER.MAX_ITER == (24000 if task == "voc_c4" else 90000)
        assert cfg.MODEL.MASK_ON == task.startswith("coco_mask") and cfg.MODEL.KEYPOINT_ON == (task == "coco_kp_fpn")
        # one process, or processes on the CPU: BN instead of SyncBN, with the reason; a process
        # group of GPUs keeps SyncBN
        two = cfg.clone()
        two.MODEL.DEVICE = "cuda"
        assert train.fall_back_from_sync_bn(two, 2) is None and two.MODEL.RESNETS.NORM == "SyncBN"
        cpus = cfg.clone()
        cpus.MODEL.DEVICE = "cpu"
        assert "2 processes are on the CPU" in train.fall_back_from_sync_bn(cpus, 2) and cpus.MODEL.RESNETS.NORM == "BN"
        warning = train.fall_back_from_sync_bn(cfg, 1)
        assert "SyncBN needs a process group" in warning and cfg.MODEL.RESNETS.NORM == "BN"
        assert cfg.MODEL.FPN.NORM in ("", "BN")


# ------------------------------------------------------------------------ tiny dataset

def test_tiny_coco_is_valid_coco_with_person_keypoints(tmp_path):
    root = tiny_coco.make(tmp_path / "tiny")
    assert main(["make-tiny", str(tmp_path / "again")]) == 0  # seeded: the same files
    for name in ("instances_val2017.json", "person_keypoints_train2017.json"):
        assert (root / "annotations" / name).read_bytes() == (tmp_path / "again" / "annotations" / name).read_bytes()
    inst = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    kp = json.loads((root / "annotations" / "person_keypoints_train2017.json").read_text())
    assert len(inst["images"]) == tiny_coco.SPLITS["train2017"] == len(kp["annotations"])  # one person each
    assert {c["name"] for c in inst["categories"]} == {"person", "square", "disc", "triangle"}
    for a in inst["annotations"]:
        x, y, w, h = a["bbox"]
        xs = np.concatenate([p[0::2] for p in a["segmentation"]])
        ys = np.concatenate([p[1::2] for p in a["segmentation"]])
        assert w > 8 and h > 8 and 0 < a["area"] <= (w + 1) * (h + 1)
        assert xs.min() >= x - 0.02 and xs.max() <= x + w + 0.02 and ys.min() >= y - 0.02 and ys.max() <= y + h + 0.02
    person = kp["annotations"][0]
    assert person["num_keypoints"] == 17 and len(person["keypoints"]) == 51
    assert kp["categories"][0]["keypoints"] == list(tiny_coco.KEYPOINT_NAMES)
    if importlib.util.find_spec("detectron2"):  # the names detectron2's COCO metadata uses
        from detectron2.data.datasets.builtin_meta import COCO_PERSON_KEYPOINT_NAMES
        assert tuple(COCO_PERSON_KEYPOINT_NAMES) == tiny_coco.KEYPOINT_NAMES


def test_ground_truth_as_predictions_gives_ap_100_through_coco_evaluator(tmp_path):
    pytest.importorskip("detectron2")
    from detectron2.data import DatasetCatalog
    from detectron2.structures import Boxes, BoxMode, Instances, polygons_to_bitmask

    root = tiny_coco.make(tmp_path / "tiny")
    for task, tasks in (("coco_mask_fpn", ("bbox", "segm")), ("coco_kp_fpn", ("bbox", "keypoints"))):
        sets = train.dataset_files(task, root, eval_only=True)
        train.register(task, sets)
        (name,) = sets
        evaluator = train._trainer_class().build_evaluator(cfg_for(task, "unused"), name, str(tmp_path / task))
        assert evaluator._use_fast_impl is False
        evaluator.reset()
        for d in DatasetCatalog.get(name):  # detectron2's own reading of the json
            annos, (h, w) = d["annotations"], (d["height"], d["width"])
            inst = Instances((h, w))
            inst.pred_boxes = Boxes(torch.tensor([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                                                  for a in annos], dtype=torch.float32))
            inst.scores = torch.ones(len(annos))
            inst.pred_classes = torch.tensor([a["category_id"] for a in annos])
            inst.pred_masks = torch.tensor(np.stack([polygons_to_bitmask(a["segmentation"], h, w) for a in annos]))
            if task == "coco_kp_fpn":
                inst.pred_keypoints = torch.tensor([a["keypoints"] for a in annos], dtype=torch.float32).view(-1, 17, 3)
            evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
        results = evaluator.evaluate()
        assert set(results) == set(tasks)
        for iou in tasks:
            for key in ("AP", "AP50", "AP75"):
                assert results[iou][key] == pytest.approx(100.0), (task, iou, key, results[iou])
        metrics, per_class = train.metrics_of(results)
        assert metrics[f"{tasks[1]}/AP"] == pytest.approx(100.0) and all(v is None or v >= 0 for v in metrics.values())


def write_tiny_voc(root, tiny):
    """The tiny val images as VOC2007 test (VOCdevkit layout, 1-based integer boxes); objects
    take the 20 VOC class names in turn so that every class has ground truth."""
    from detectron2.data.datasets.pascal_voc import CLASS_NAMES
    from PIL import Image

    voc = root / "VOC2007"
    for d in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    coco = json.loads((tiny / "annotations" / "instances_val2017.json").read_text())
    ids, k = [], 0
    for img in coco["images"]:
        stem = Path(img["file_name"]).stem
        Image.open(tiny / "val2017" / img["file_name"]).convert("RGB").save(voc / "JPEGImages" / f"{stem}.jpg")
        objects = ""
        for a in (a for a in coco["annotations"] if a["image_id"] == img["id"]):
            x, y, w, h = a["bbox"]
            box = [round(x) + 1, round(y) + 1, round(x + w), round(y + h)]
            objects += (f"<object><name>{CLASS_NAMES[k % 20]}</name><pose>Unspecified</pose><truncated>0</truncated>"
                        f"<difficult>0</difficult><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
                        f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>")
            k += 1
        (voc / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>{img['width']}</width>"
            f"<height>{img['height']}</height><depth>3</depth></size>{objects}</annotation>")
        ids.append(stem)
    (voc / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids) + "\n")
    assert k >= 20


def test_voc_ground_truth_as_predictions_gives_ap_100_through_pascal_voc_evaluator(tmp_path):
    pytest.importorskip("detectron2")
    from detectron2.data import DatasetCatalog
    from detectron2.structures import Boxes, BoxMode, Instances

    write_tiny_voc(tmp_path / "voc", tiny_coco.make(tmp_path / "tiny"))
    sets = train.dataset_files("voc_c4", tmp_path / "voc", eval_only=True)  # VOC2007 test only
    train.register("voc_c4", sets)
    (name,) = sets
    evaluator = train._trainer_class().build_evaluator(cfg_for("voc_c4", "unused"), name)
    evaluator.reset()
    for d in DatasetCatalog.get(name):  # detectron2's VOC reader (0-based boxes)
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                                              for a in d["annotations"]], dtype=torch.float32))
        inst.scores = torch.ones(len(d["annotations"]))
        inst.pred_classes = torch.tensor([a["category_id"] for a in d["annotations"]])
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
    results = evaluator.evaluate()
    assert results["bbox"] == pytest.approx({"AP": 100.0, "AP50": 100.0, "AP75": 100.0})


# ------------------------------------------------------------------------ end to end

@pytest.mark.slow
def test_mini_trains_and_evaluates_both_tasks_end_to_end_on_cpu(tmp_path, capsys):
    pytest.importorskip("detectron2")
    from core import records
    from reports import frames

    path, _ = ckpt(tmp_path, "resnet18")
    results = tmp_path / "results"
    assert main(["mini", "--ckpt", str(path), "--results", str(results), "--out", str(tmp_path / "runs"),
                 "--max-iter", "2"]) == 0
    # warnings only (README): our result lines and detectron2's warnings, not its 150-line log,
    # pycocotools' tables or the expected list of new head weights (in log.txt and console.txt)
    shown = capsys.readouterr()
    lines = (shown.out + shown.err).splitlines()
    assert all(line.startswith(("[detection]", "WARNING")) for line in lines) and len(lines) <= 6, lines
    for task, iou in (("coco_mask_fpn", "segm"), ("coco_kp_fpn", "keypoints")):
        rec = json.loads((results / "det_resnet18" / "detection" / f"{task}.json").read_text())
        assert rec["stage"] == "detection" and rec["task"] == task and rec["dataset"] == "tiny_coco"
        assert rec["arch"] == "resnet18" and rec["iterations"] == 2 and rec["norm"] == "BN"
        assert rec["method"] == "moco" and rec["negatives"] == "ring" and rec["wall_s"] > 0
        assert rec["detectron2_config"]["MODEL"]["RESNETS"]["DEPTH"] == 18
        assert rec["detectron2_config"]["INPUT"]["FORMAT"] == "RGB"
        for key in ("bbox/AP", "bbox/AP50", "bbox/AP75", f"{iou}/AP", f"{iou}/AP50", f"{iou}/AP75"):
            assert rec["metrics"][key] is None or 0.0 <= rec["metrics"][key] <= 100.0
        assert (tmp_path / "runs" / "det_resnet18" / "detection" / task / "log.txt").is_file()
        assert "Average Precision" in (tmp_path / "runs" / "det_resnet18" / "detection" / task / "console.txt").read_text()
        # detectron2's own TensorBoard writer: events beside its log
        assert list((tmp_path / "runs" / "det_resnet18" / "detection" / task).glob("events.out.tfevents.*"))
        assert not (tmp_path / "runs" / "det_resnet18" / "detection" / task / "model_final.pth").exists()
    frame = frames.detection(records.load_all(results))  # the report reads them
    assert {"bbox AP", "segm AP", "keypoints AP"} <= set(frame["metric"])
    # the C4 configs need bottleneck blocks: an R18 is refused before any work
    weights = tmp_path / "runs" / "det_resnet18" / "detection" / "weights.pkl"
    assert main(["train", "--task", "coco_mask_c4", "--weights", str(weights), "--results", str(results)]) == 2
    assert "needs a bottleneck ResNet" in capsys.readouterr().err


@pytest.mark.slow
def test_c4_trains_evaluates_and_resumes_through_the_train_command(tmp_path, capsys):
    """R50-C4 Mask R-CNN (MoCo's extra res5 BN), 2 iterations, then --resume to 3."""
    pytest.importorskip("detectron2")
    root = tiny_coco.make(tmp_path / "tiny")
    path, _ = ckpt(tmp_path, "resnet50")
    convert.convert_file(path, tmp_path / "w.pkl", verbose=False)
    small = ["MODEL.ROI_HEADS.NUM_CLASSES", "4", "INPUT.MIN_SIZE_TRAIN", "(120,)", "INPUT.MAX_SIZE_TRAIN", "160",
             "INPUT.MIN_SIZE_TEST", "120", "INPUT.MAX_SIZE_TEST", "160", "SOLVER.IMS_PER_BATCH", "2",
             "TEST.PRECISE_BN.NUM_ITER", "1", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
             "TEST.DETECTIONS_PER_IMAGE", "10", "MODEL.RPN.POST_NMS_TOPK_TEST", "64"]
    common = ["train", "--task", "coco_mask_c4", "--weights", str(tmp_path / "w.pkl"), "--dataset-root", str(root),
              "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--run", "c4", "--workers", "0",
              "--quiet"]
    record = tmp_path / "results" / "c4" / "detection" / "coco_mask_c4.json"
    assert main([*common, "--max-iter", "2", "--opts", *small]) == 0
    first = json.loads(record.read_text())
    assert first["iterations"] == 2 and first["dataset"] == "coco" and first["arch"] == "resnet50"
    assert {"bbox/AP", "segm/AP"} <= set(first["metrics"]) and first["norm"] == "BN" and first["norm_warning"]
    assert main([*common, "--max-iter", "3", "--resume", "--opts", *small]) == 0
    assert json.loads(record.read_text())["iterations"] == 3
    log = (tmp_path / "runs" / "c4" / "detection" / "coco_mask_c4" / "log.txt").read_text()
    assert "Starting training from iteration 2" in log  # continued, not restarted


@pytest.mark.slow
def test_two_machines_on_cpu_train_one_model_and_write_one_record(tmp_path):
    """--num-machines 2 --machine-rank 0/1 --dist-url tcp://..., as two commands (gloo on CPU),
    the way the pretraining DDP test starts processes: both ranks train the same iterations in
    one process group; machine 0 alone writes the record, which says world size 2; a second
    machine's rank is checked."""
    pytest.importorskip("detectron2")
    import socket
    import subprocess
    import sys

    from detection import mini
    root = tiny_coco.make(tmp_path / "tiny")
    path, _ = ckpt(tmp_path, "resnet18")
    convert.convert_file(path, tmp_path / "w.pkl", expect="any", verbose=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    opts = mini.OPTS + ["MODEL.ROI_HEADS.NUM_CLASSES", str(mini.NUM_CLASSES["coco_mask_fpn"]), "SOLVER.IMS_PER_BATCH", "2"]
    def command(rank):
        return [sys.executable, "-m", "detection", "train", "--task", "coco_mask_fpn", "--weights", str(tmp_path / "w.pkl"),
                "--dataset-root", str(root), "--out", str(tmp_path / f"runs{rank}"), "--results", str(tmp_path / f"res{rank}"),
                "--run", "two", "--workers", "0", "--max-iter", "2", "--num-gpus", "0", "--num-machines", "2",
                "--machine-rank", str(rank), "--dist-url", f"tcp://127.0.0.1:{port}", "--opts", *opts]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    procs = [subprocess.Popen(command(r), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for r in (0, 1)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    record = json.loads((tmp_path / "res0" / "two" / "detection" / "coco_mask_fpn.json").read_text())
    assert record["world_size"] == 2 and record["iterations"] == 2 and not (tmp_path / "res1").exists()
    assert "2 processes are on the CPU" in record["norm_warning"]
    for rank, name in ((0, "log.txt"), (1, "log.txt.rank1")):  # each machine's own detectron2 log
        log = (tmp_path / f"runs{rank}" / "two" / "detection" / "coco_mask_fpn" / name).read_text()
        assert f"Rank of current process: {rank}. World size: 2" in log and "Starting training from iteration 0" in log
    assert main(["train", "--task", "coco_mask_fpn", "--weights", str(tmp_path / "w.pkl"), "--dataset-root", str(root),
                 "--num-machines", "2", "--machine-rank", "2", "--results", str(tmp_path / "r")]) == 2


# ------------------------------------------------------------------------ failures

def test_diverging_training_is_one_line_exit_2_and_no_record(tmp_path, capsys):
    pytest.importorskip("detectron2")
    root = tiny_coco.make(tmp_path / "tiny")
    path, _ = ckpt(tmp_path, "resnet18")
    convert.convert_file(path, tmp_path / "w.pkl", expect="any", verbose=False)
    small = ["MODEL.ROI_HEADS.NUM_CLASSES", "4", "INPUT.MIN_SIZE_TRAIN", "(120,)", "INPUT.MAX_SIZE_TRAIN", "160",
             "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "1e8", "SOLVER.WARMUP_ITERS", "0",
             "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16"]
    assert main(["train", "--task", "coco_mask_fpn", "--weights", str(tmp_path / "w.pkl"), "--dataset-root", str(root),
                 "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--workers", "0",
                 "--max-iter", "5", "--quiet", "--opts", *small]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: coco_mask_fpn: training diverged by iteration") and "BASE_LR" in err
    assert not (tmp_path / "results").exists()


def test_missing_detectron2_is_one_line_and_no_record(tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_detectron2(name, *args, **kwargs):
        if name == "detectron2" or name.startswith("detectron2."):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_detectron2)
    assert main(["train", "--task", "coco_mask_fpn", "--weights", str(tmp_path / "w.pkl"),
                 "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "detectron2 is not installed" in err and "install_detectron2.sh" in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists()


def test_bad_weights_and_dataset_fail_fast_with_one_line_and_no_record(tmp_path, capsys):
    pytest.importorskip("detectron2")
    root = tiny_coco.make(tmp_path / "tiny")
    path, _ = ckpt(tmp_path, "resnet50")
    convert.convert_file(path, tmp_path / "w.pkl", verbose=False)
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with open(tmp_path / "code.pkl", "wb") as f:  # a pickle that would run code: refused unread
        pickle.dump({"model": {"x": subprocess.Popen}}, f)
    common = ["--results", str(tmp_path / "results"), "--dataset-root", str(root)]
    cases = [(["--weights", str(tmp_path / "none.pkl")], "weights file not found"),
             (["--weights", str(path)], "weights must be a .pkl"),
             (["--weights", str(tmp_path / "junk.pkl")], "not a detectron2 weights pickle"),
             (["--weights", str(tmp_path / "code.pkl")], "not a detectron2 weights pickle"),
             (["--weights", str(tmp_path / "w.pkl"), "--dataset-root", str(tmp_path / "nowhere")],
              "annotations/instances_train2017.json: annotation file not found"),
             (["--weights", str(tmp_path / "w.pkl"), "--task", "voc_c4"],
              "VOC2007/ImageSets/Main/trainval.txt: not found")]
    for extra, message in cases:
        task = [] if "--task" in extra else ["--task", "coco_mask_fpn"]
        assert main(["train", *task, *common, *extra]) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "results").exists()


def test_install_script_is_idempotent_where_detectron2_imports():
    pytest.importorskip("detectron2")
    script = ROOT / "detection" / "install_detectron2.sh"
    done = subprocess.run(["bash", str(script), sys.executable], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "already installed" in done.stderr
