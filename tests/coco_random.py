"""Seeded random COCO workloads for the pycocotools parity tests.

Provenance: everything is generated in memory by ``make_workload(seed)`` from numpy's
default generator (no external data), so a failing seed reproduces exactly. Each workload is
a COCO instances dict and a results list aimed at the corners where a reimplementation of
COCOeval drifts from it:

* crowd ground truths laid over regular ones, with detections inside and half inside them;
* images without any ground truth and a category listed without any ground truth, both
  with detections;
* tied scores within and across images (most seeds quantize scores to 11 values);
* more than 100 detections in one image and category (even seeds), so maxDets truncates;
* zero-width / zero-height boxes in ground truth and detections;
* ``area`` fields that differ from w*h, boxes in all three area ranges and on their edges;
* integer boxes whose IoU is exactly 0.5, 0.55, ..., 0.95 by construction;
* two ground truths tied on IoU with one detection (pycocotools: the later one wins);
* duplicate detections (same box and score, or same box with another score);
* an annotation with id 0 (two seeds in three), which pycocotools never counts as a match;
* image, category and annotation ids that are unsorted ints in the file (id 0 sometimes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Box = list[float]
Record = dict[str, Any]

# Side lengths that put w*h inside one pycocotools area range: small < 32**2 <= medium
# < 96**2 <= large. The edges themselves (32x32, 96x96) sit in two ranges at once, because
# COCOeval's range tests are inclusive on both ends.
SIDE_RANGES = {"small": (2.0, 31.0), "medium": (33.0, 95.0), "large": (97.0, 300.0)}
SIZES = ("small", "medium", "large", "edge", "degenerate")
SIZE_WEIGHTS = (0.35, 0.3, 0.2, 0.08, 0.07)
# A 20 x h box inside a 20 x 20 one has IoU h / 20 (integer arithmetic, one correctly
# rounded division), which lands on each COCOeval threshold 0.50 ... 0.95 in turn.
CONTAINED_HEIGHTS = tuple(range(10, 20))
# Two n*s wide boxes shifted by s have IoU (n - 1) / (n + 1): 0.5 for n = 3, 0.75 for n = 7.
SHIFT_WIDTHS = (3, 7)
HEAVY_GROUP_DETECTIONS = (101, 160)


@dataclass
class _Builder:
    """Accumulates one workload's records; every random choice comes from ``rng``."""

    rng: np.random.Generator
    quantized_scores: bool
    annotations: list[Record] = field(default_factory=list)
    results: list[Record] = field(default_factory=list)
    # Annotation positions that have at least one detection aimed at them: the id-0 quirk
    # only shows when the id-0 ground truth is actually matched.
    targeted: list[int] = field(default_factory=list)

    def score(self) -> float:
        """A detection score; quantized workloads draw from 11 values, so ties are common."""
        if self.quantized_scores:
            return float(self.rng.integers(0, 11)) / 10.0
        return float(self.rng.uniform(0.0, 1.0))

    def box(self, size: str) -> Box:
        """A random box whose w*h lies in the named area range, on a range edge or is 0."""
        rng = self.rng
        if size == "edge":
            w = h = float(rng.choice([32.0, 96.0]))
        elif size == "degenerate":
            side = float(rng.integers(1, 60))
            w, h = (0.0, side) if rng.random() < 0.5 else (side, 0.0)
        else:
            lo, hi = SIDE_RANGES[size]
            side = float(rng.uniform(lo, hi))
            stretch = float(np.sqrt(rng.uniform(0.5, 2.0)))
            w, h = side * stretch, side / stretch
        if rng.random() < 0.4:
            # Integer boxes make exact IoU ties between ground truths common.
            return [
                float(rng.integers(0, 500)),
                float(rng.integers(0, 400)),
                float(round(w)),
                float(round(h)),
            ]
        return [float(rng.uniform(0, 500)), float(rng.uniform(0, 400)), w, h]

    def random_size(self) -> str:
        """One of SIZES with the workload's size mix."""
        return str(self.rng.choice(SIZES, p=SIZE_WEIGHTS))

    def jitter(self, box: Box, amount: float) -> Box:
        """A detection near ``box``: full-precision float offsets proportional to its size."""
        x, y, w, h = box
        dx, dy, dw, dh = self.rng.normal(0.0, amount, 4) * max(w, h, 1.0)
        return [x + dx, y + dy, max(0.0, w + dw), max(0.0, h + dh)]

    def gt_area(self, box: Box) -> float:
        """The ``area`` field: usually w*h, sometimes what a segmentation would give instead."""
        rng = self.rng
        draw = rng.random()
        if draw < 0.12:
            return box[2] * box[3] * float(rng.uniform(0.4, 0.95))
        if draw < 0.18:
            return float(rng.choice([32.0**2, 96.0**2]))
        if draw < 0.24:
            return float(rng.uniform(0.0, 20000.0))
        return box[2] * box[3]

    def add_gt(self, image_id: int, cat_id: int, box: Box, area: float, crowd: bool) -> int:
        """Append one annotation (its id is set later) and return its position."""
        self.annotations.append(
            {
                "image_id": image_id,
                "category_id": cat_id,
                "bbox": box,
                "area": area,
                "iscrowd": int(crowd),
            }
        )
        return len(self.annotations) - 1

    def add_det(self, image_id: int, cat_id: int, box: Box, score: float) -> None:
        """Append one result record."""
        self.results.append(
            {"image_id": image_id, "category_id": cat_id, "bbox": box, "score": score}
        )

    def threshold_pair(self) -> tuple[Box, Box]:
        """A (ground truth, detection) pair of integer boxes whose IoU is a COCO threshold."""
        rng = self.rng
        k = float(rng.integers(1, 8))  # scale 1..7 moves the pair through all area ranges
        x, y = float(rng.integers(0, 400)), float(rng.integers(0, 300))
        if rng.random() < 0.6:
            h = float(rng.choice(CONTAINED_HEIGHTS))
            outer, inner = [x, y, 20 * k, 20 * k], [x, y + k * (20 - h), 20 * k, h * k]
            # Either box may be the larger one: the IoU is the same, the GT area is not.
            return (outer, inner) if rng.random() < 0.5 else (inner, outer)
        n = float(rng.choice(SHIFT_WIDTHS))
        s, height = k * float(rng.integers(1, 4)), k * float(rng.integers(5, 30))
        return [x, y, n * s, height], [x + s, y, n * s, height]

    def fill_group(self, image_id: int, cat_id: int) -> None:
        """Ground truths of one image and category, with detections aimed at them."""
        rng = self.rng
        regular: list[Box] = []
        for _ in range(int(rng.integers(1, 6))):
            if rng.random() < 0.3:
                gt_box, det_box = self.threshold_pair()
                self.targeted.append(
                    self.add_gt(image_id, cat_id, gt_box, gt_box[2] * gt_box[3], False)
                )
                dets = [det_box]
            else:
                gt_box = self.box(self.random_size())
                pos = self.add_gt(image_id, cat_id, gt_box, self.gt_area(gt_box), False)
                dets = [self.jitter(gt_box, 0.08) for _ in range(int(rng.integers(0, 3)))]
                if dets:
                    self.targeted.append(pos)
            regular.append(gt_box)
            for det_box in dets:
                score = self.score()
                self.add_det(image_id, cat_id, det_box, score)
                draw = rng.random()
                if draw < 0.12:  # an exact duplicate, score included
                    self.add_det(image_id, cat_id, list(det_box), score)
                elif draw < 0.2:  # the same box once more, scored differently
                    self.add_det(image_id, cat_id, list(det_box), self.score())
        if rng.random() < 0.4:
            self.add_crowd(image_id, cat_id, regular)
        if rng.random() < 0.25:
            self.add_equal_iou_pair(image_id, cat_id)

    def add_equal_iou_pair(self, image_id: int, cat_id: int) -> None:
        """Two ground truths tied on IoU with one detection, and a second detection after it."""
        # The first detection has IoU 9/11 with both; the second, scored lower, 9/11 with one
        # and 7/13 with the other, so above IoU 0.55 it matches only if the first detection
        # took the other one: pycocotools' "on equal IoU the later ground truth wins".
        rng = self.rng
        k = float(rng.integers(1, 11))
        x, y = float(rng.integers(0, 400)), float(rng.integers(0, 300))
        for dx in (0.0, 2.0):
            box = [x + dx * k, y, 10 * k, 10 * k]
            self.targeted.append(self.add_gt(image_id, cat_id, box, box[2] * box[3], False))
        score = self.score()
        self.add_det(image_id, cat_id, [x + k, y, 10 * k, 10 * k], score)
        # Left of the pair or right of it: IoU 9/11 with one ground truth, 7/13 with the other.
        shift = -1.0 if rng.random() < 0.5 else 3.0
        self.add_det(image_id, cat_id, [x + shift * k, y, 10 * k, 10 * k], score / 2)

    def add_crowd(self, image_id: int, cat_id: int, regular: list[Box]) -> None:
        """A crowd region over some of the group's regular boxes, and detections inside it."""
        rng = self.rng
        chosen = [regular[i] for i in rng.choice(len(regular), int(rng.integers(1, 3)))]
        x0 = min(b[0] for b in chosen) - float(rng.integers(0, 20))
        y0 = min(b[1] for b in chosen) - float(rng.integers(0, 20))
        x1 = max(b[0] + b[2] for b in chosen) + float(rng.integers(0, 20))
        y1 = max(b[1] + b[3] for b in chosen) + float(rng.integers(0, 20))
        crowd = [x0, y0, x1 - x0, y1 - y0]
        self.targeted.append(self.add_gt(image_id, cat_id, crowd, self.gt_area(crowd), True))
        for _ in range(int(rng.integers(1, 4))):
            fx, fy = rng.uniform(0.0, 0.7, 2)
            w, h = crowd[2] * float(rng.uniform(0.1, 0.3)), crowd[3] * float(rng.uniform(0.1, 0.3))
            self.add_det(
                image_id, cat_id, [x0 + fx * crowd[2], y0 + fy * crowd[3], w, h], self.score()
            )
        # Half inside the crowd: its crowd IoU (intersection over its own area) is 0.5.
        w, h = float(rng.integers(2, 40)) * 2, float(rng.integers(2, 40))
        self.add_det(image_id, cat_id, [x0 - w / 2, y0, w, h], self.score())

    def heavy_group(self, image_id: int, cat_id: int) -> None:
        """Over 100 detections in one image and category, true positives at low scores too."""
        # So the maxDets=100 cut, and score ties across it, change the result.
        rng = self.rng
        boxes = [self.box(self.random_size()) for _ in range(int(rng.integers(3, 9)))]
        for box in boxes:
            self.targeted.append(self.add_gt(image_id, cat_id, box, self.gt_area(box), False))
        for _ in range(int(rng.integers(*HEAVY_GROUP_DETECTIONS))):
            if rng.random() < 0.5:
                box = boxes[int(rng.integers(0, len(boxes)))]
                det = self.jitter(box, float(rng.choice([0.02, 0.1, 0.3])))
            else:
                det = self.box(self.random_size())
            self.add_det(image_id, cat_id, det, self.score())


def _distinct_ids(rng: np.random.Generator, count: int, with_zero: bool) -> list[int]:
    """``count`` distinct, unsorted int ids (plain ``int``: evalkit rejects numpy ints)."""
    ids = [int(v) for v in rng.choice(np.arange(1, 40 * count + 1), count, replace=False)]
    if with_zero:
        ids[int(rng.integers(0, count))] = 0
    return ids


def make_workload(seed: int) -> tuple[Record, list[Record]]:
    """One seeded COCO instances dict and results list (see the module docstring)."""
    rng = np.random.default_rng(seed)
    image_ids = _distinct_ids(rng, int(rng.integers(4, 10)), with_zero=seed % 5 == 0)
    cat_ids = _distinct_ids(rng, int(rng.integers(2, 5)), with_zero=seed % 5 == 0)
    builder = _Builder(rng, quantized_scores=seed % 4 != 3)
    no_gt_category = cat_ids[int(rng.integers(0, len(cat_ids)))]
    no_gt_images = set(image_ids[: int(rng.integers(1, 3))])
    groups_with_gt = []
    for image_id in image_ids:
        for cat_id in cat_ids:
            if image_id in no_gt_images or cat_id == no_gt_category:
                pass  # never annotated; detections still land here below
            elif rng.random() < 0.7:
                builder.fill_group(image_id, cat_id)
                groups_with_gt.append((image_id, cat_id))
            # Background false positives everywhere, no-GT images and category included.
            for _ in range(int(rng.poisson(1.2))):
                builder.add_det(
                    image_id, cat_id, builder.box(builder.random_size()), builder.score()
                )
    if seed % 2 == 0:
        annotated = [i for i in image_ids if i not in no_gt_images]
        heavy_image = annotated[int(rng.integers(0, len(annotated)))]
        heavy_cat = next(c for c in cat_ids if c != no_gt_category)
        builder.heavy_group(heavy_image, heavy_cat)

    annotations = builder.annotations
    ids = _distinct_ids(rng, len(annotations), with_zero=False) if annotations else []
    if seed % 3 != 2 and builder.targeted:
        ids[builder.targeted[int(rng.integers(0, len(builder.targeted)))]] = 0
    for ann, ann_id in zip(annotations, ids, strict=True):
        ann["id"] = ann_id
    # File order carries meaning (stable sorts), so shuffle it away from generation order.
    annotations = [annotations[i] for i in rng.permutation(len(annotations))]
    results = [builder.results[i] for i in rng.permutation(len(builder.results))]
    ground_truth = {
        "images": [
            {"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480} for i in image_ids
        ],
        "categories": [{"id": c, "name": f"class_{c}"} for c in cat_ids],
        "annotations": annotations,
    }
    return ground_truth, results


def write_workload(folder: Any, seed: int) -> tuple[Record, list[Record], Any, Any]:
    """``make_workload(seed)`` written as gt.json and dets.json into ``folder`` (a Path):
    the dicts and the two paths, for command-line tests."""
    import json

    gt, results = make_workload(seed)
    gt_path, dets_path = folder / "gt.json", folder / "dets.json"
    gt_path.write_text(json.dumps(gt))
    dets_path.write_text(json.dumps(results))
    return gt, results, gt_path, dets_path


def pycocotools_in_memory(gt: Record, results: list[Record]) -> Any:
    """pycocotools' COCOeval (bbox) on copies of in-memory dicts, not yet evaluated; its
    prints silenced."""
    import contextlib
    import copy
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO()
    coco_gt.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
    return COCOeval(coco_gt, coco_dt, "bbox")
