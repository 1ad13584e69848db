"""A tiny generated dataset in COCO's exact on-disk format, for tests and the mini profile.

    OUT/train2017/*.png, OUT/val2017/*.png
    OUT/annotations/instances_{train,val}2017.json         boxes + polygon masks, 4 classes
    OUT/annotations/person_keypoints_{train,val}2017.json  persons with COCO's 17 keypoints

Each image (160x120, light noisy background) holds one stick-figure "person" and two or
three coloured shapes (square, disc, triangle), each in its own cell of a 3x2 grid so that
nothing overlaps: the polygons drawn are exactly the ground-truth masks. A person is a set of
polygons (head, torso, limbs): COCO allows several polygons per object. Its keypoints are the
joints of the drawing, named and connected as COCO's person keypoints (detectron2 takes the
names and the flip map from its builtin COCO metadata). Seeded: the same files every time.
Smoke data that exercises every stage, not a benchmark.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# COCO's person keypoints, in COCO's order, and its 1-based skeleton
KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                  "left_knee", "right_knee", "left_ankle", "right_ankle")
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
            [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]
CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"},
              {"id": 2, "name": "square", "supercategory": "shape"},
              {"id": 3, "name": "disc", "supercategory": "shape"},
              {"id": 4, "name": "triangle", "supercategory": "shape"}]
COLOURS = {1: (40, 40, 160), 2: (200, 40, 40), 3: (40, 160, 60), 4: (220, 160, 20)}
WIDTH, HEIGHT, COLS, ROWS = 160, 120, 3, 2
SPLITS = {"train2017": 24, "val2017": 8}

# a person facing the viewer, in a unit box (x right, y down): joint positions; the person's
# left is the image's right, as in COCO
_JOINTS = {"nose": (0.50, 0.10), "left_eye": (0.55, 0.07), "right_eye": (0.45, 0.07), "left_ear": (0.60, 0.09),
           "right_ear": (0.40, 0.09), "left_shoulder": (0.68, 0.25), "right_shoulder": (0.32, 0.25),
           "left_elbow": (0.85, 0.40), "right_elbow": (0.15, 0.40), "left_wrist": (0.92, 0.55),
           "right_wrist": (0.08, 0.55), "left_hip": (0.62, 0.58), "right_hip": (0.38, 0.58),
           "left_knee": (0.66, 0.78), "right_knee": (0.34, 0.78), "left_ankle": (0.70, 0.97),
           "right_ankle": (0.30, 0.97)}
_LIMBS = [("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("right_shoulder", "right_elbow"),
          ("right_elbow", "right_wrist"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
          ("right_hip", "right_knee"), ("right_knee", "right_ankle")]


def _regular(cx, cy, r, n, phase=0.0):
    return [(cx + r * math.cos(phase + 2 * math.pi * i / n), cy + r * math.sin(phase + 2 * math.pi * i / n))
            for i in range(n)]


def _bar(p, q, half):
    """Quadrilateral of half-width `half` around the segment p-q."""
    (x0, y0), (x1, y1) = p, q
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    nx, ny = -(y1 - y0) / length * half, (x1 - x0) / length * half
    return [(x0 + nx, y0 + ny), (x1 + nx, y1 + ny), (x1 - nx, y1 - ny), (x0 - nx, y0 - ny)]


def person(x, y, w, h):
    """(polygons, keypoints [x, y, v] * 17) of a stick figure in the box (x, y, w, h)."""
    pt = {k: (x + u * w, y + v * h) for k, (u, v) in _JOINTS.items()}
    limb = max(1.5, 0.07 * w)
    polygons = [_regular(pt["nose"][0], pt["nose"][1], 0.12 * h, 10),
                [pt["left_shoulder"], pt["left_hip"], pt["right_hip"], pt["right_shoulder"]]]
    polygons += [_bar(pt[a], pt[b], limb) for a, b in _LIMBS]
    keypoints = [c for name in KEYPOINT_NAMES for c in (pt[name][0], pt[name][1], 2)]
    return polygons, keypoints


def shape(category, cx, cy, r, rng):
    if category == 2:
        return [_regular(cx, cy, r * math.sqrt(2), 4, math.pi / 4)]  # axis-aligned square
    if category == 3:
        return [_regular(cx, cy, r, 20)]
    return [_regular(cx, cy, r, 3, -math.pi / 2 + rng.uniform(-0.3, 0.3))]


def _area_and_box(polygons):
    """COCO's own mask area (pycocotools rasterises the union of the polygons) and the box."""
    from pycocotools import mask as mask_util

    area = int(mask_util.area(mask_util.merge(mask_util.frPyObjects([[c for p in poly for c in p] for poly in polygons],
                                                                    HEIGHT, WIDTH))))
    xs = [p[0] for poly in polygons for p in poly]
    ys = [p[1] for poly in polygons for p in poly]
    x0, y0 = max(0.0, min(xs)), max(0.0, min(ys))
    x1, y1 = min(float(WIDTH), max(xs)), min(float(HEIGHT), max(ys))
    return area, [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def _image(rng: random.Random, nrng: np.random.Generator):
    """(PIL image, [(category, polygons, keypoints or None)])."""
    base = np.array([rng.randint(200, 240) for _ in range(3)], dtype=np.int16)
    pixels = np.clip(base + nrng.integers(-12, 13, size=(HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    cw, ch = WIDTH / COLS, HEIGHT / ROWS
    cells = rng.sample(range(COLS * ROWS), rng.randint(3, 4))
    objects = []
    for i, cell in enumerate(cells):
        x0, y0 = (cell % COLS) * cw, (cell // COLS) * ch
        if i == 0:  # one person per image, drawn at the origin, then moved wholly inside its cell
            h = rng.uniform(0.7, 0.85) * ch
            polygons, keypoints = person(0.0, 0.0, h * rng.uniform(0.6, 0.8), h)
            xs, ys = [q[0] for poly in polygons for q in poly], [q[1] for poly in polygons for q in poly]
            dx = x0 - min(xs) + rng.uniform(0, max(0.0, cw - (max(xs) - min(xs))))
            dy = y0 - min(ys) + rng.uniform(0, max(0.0, ch - (max(ys) - min(ys))))
            polygons = [[(px + dx, py + dy) for px, py in poly] for poly in polygons]
            keypoints = [round(c + (dx if j % 3 == 0 else dy if j % 3 == 1 else 0), 2) for j, c in enumerate(keypoints)]
            category = 1
        else:
            category = rng.choice((2, 3, 4))
            r = rng.uniform(0.22, 0.34) * min(cw, ch)
            m = r * 1.45  # keep the whole shape inside its cell
            polygons = shape(category, x0 + rng.uniform(m, cw - m), y0 + rng.uniform(m, ch - m), r, rng)
            keypoints = None
        colour = tuple(int(np.clip(c + rng.randint(-25, 25), 0, 255)) for c in COLOURS[category])
        for poly in polygons:
            draw.polygon(poly, fill=colour)
        objects.append((category, polygons, keypoints))
    return img, objects


def make(out: str | Path, seed: int = 0) -> Path:
    """Write the dataset under `out` (files are overwritten); returns `out`."""
    out = Path(out)
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 1
    for split, count in SPLITS.items():
        (out / split).mkdir(exist_ok=True)
        images, instances, persons = [], [], []
        for i in range(count):
            image_id = (1 if split == "train2017" else 100001) + i
            name = f"{image_id:012d}.png"
            img, objects = _image(rng, nrng)
            img.save(out / split / name)
            images.append({"id": image_id, "file_name": name, "width": WIDTH, "height": HEIGHT})
            for category, polygons, keypoints in objects:
                area, box = _area_and_box(polygons)
                ann = {"id": ann_id, "image_id": image_id, "category_id": category, "bbox": box, "area": area,
                       "iscrowd": 0, "segmentation": [[round(c, 2) for p in poly for c in p] for poly in polygons]}
                instances.append(ann)
                if keypoints is not None:
                    persons.append({**ann, "keypoints": keypoints, "num_keypoints": len(KEYPOINT_NAMES)})
                ann_id += 1
        info = {"description": "ringbench tiny COCO-format smoke data (detection/tiny_coco.py)", "version": "1"}
        person_category = {**CATEGORIES[0], "keypoints": list(KEYPOINT_NAMES), "skeleton": SKELETON}
        (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"info": info, "licenses": [], "images": images, "annotations": instances, "categories": CATEGORIES}))
        (out / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps(
            {"info": info, "licenses": [], "images": images, "annotations": persons,
             "categories": [person_category]}))
    return out
