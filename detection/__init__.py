"""detectron2 transfer of a pretrained backbone (docs/design.md §5): COCO detection, instance
segmentation and person keypoints, Pascal VOC detection, in MoCo's detection protocol.

- convert: checkpoint (ringbench, torchvision or MoCo) -> detectron2 weights pickle, every
  key accounted for; unknown layouts refused.
- configs/: the protocol's YAML configs (Mask R-CNN R50-C4 / R50-FPN 1x, Keypoint R-CNN
  R50-FPN 1x, VOC Faster R-CNN R50-C4 24k; RGB input, torchvision mean/std, SyncBN).
- train: detectron2's DefaultTrainer, launch and evaluators (COCOEvaluator with pycocotools'
  COCOeval, PascalVOCDetectionEvaluator) and the results record.
- tiny_coco: a generated dataset in COCO's on-disk format; mini: the mini profile's stage.
- install_detectron2.sh: installs detectron2 (not on the registry under its own name).

Entry points: python -m detection {convert,train,make-tiny,mini} (see __main__).
"""
