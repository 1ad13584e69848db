"""detectron2 transfer (COCO detection, instance segmentation, keypoints; VOC detection).

Not built yet: tracked as its own issue (conversion, configs, trainer wrapper, tiny COCO data).
"""
