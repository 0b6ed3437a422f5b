"""Analyses of pycocotools' matching beyond AP: operating points (precision, recall, F1
against the score threshold) and per-image counts, both from the compiled core's own
per-detection decisions (:func:`evalkit.metrics.coco.coco_decisions`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evalkit.errors import InputError
from evalkit.metrics.coco import DEFAULT_PARAMS, coco_decisions, selected_positions
from evalkit.metrics.coco_params import CocoParams
from evalkit.metrics.operating_points import OperatingPoints, curve, pooled
from evalkit.metrics.results_file import category_lookup
from evalkit.types import Detections, GroundTruth


def coco_per_image(
    gt: GroundTruth,
    dets: Detections,
    match_iou: float = 0.5,
    params: CocoParams = DEFAULT_PARAMS,
) -> list[dict[str, Any]]:
    """Per evaluated image, under pycocotools' matching at ``match_iou`` (area "all", the
    last maxDets): its ground truths that count (not crowd, inside the area range), and its
    true and false positives (ignored detections are neither)."""
    decided = coco_decisions(gt, dets, match_iou, params)
    image_of = dets.image_index[decided.slots.det]
    n = len(gt.images)
    tp = np.bincount(image_of[decided.flag == 1], minlength=n)
    fp = np.bincount(image_of[decided.flag == 0], minlength=n)
    area = params.area_ranges[decided.area]
    counted = ~gt.iscrowd & (gt.area >= area.low) & (gt.area <= area.high)
    if params.category_ids is not None:
        chosen = selected_positions(params.category_ids, category_lookup(gt), "categories")
        counted &= np.isin(gt.category_index, chosen)
    num_gt = np.bincount(gt.image_index[counted], minlength=n)
    images = selected_positions(params.image_ids, gt.image_lookup, "image ids").tolist()
    return [
        {
            "image_id": gt.images[i].image_id,
            "file_name": gt.images[i].file_name,
            "num_gt": int(num_gt[i]),
            "tp": int(tp[i]),
            "fp": int(fp[i]),
        }
        for i in sorted(images, key=lambda i: gt.images[i].image_id)
    ]


def coco_operating_points(
    gt: GroundTruth,
    dets: Detections,
    thresholds: Sequence[float] = (),
    match_iou: float = 0.5,
    params: CocoParams = DEFAULT_PARAMS,
) -> OperatingPoints:
    """Precision, recall and F1 against the score threshold under pycocotools' matching at
    ``match_iou`` (area "all", the last maxDets), per category and pooled; the points at
    ``thresholds`` besides the F1-optimal one."""
    if not all(0.0 <= t <= 1.0 for t in thresholds):
        raise InputError(f"score thresholds in [0, 1] expected, got {list(thresholds)}")
    decided = coco_decisions(gt, dets, match_iou, params)
    arrays, slots, flag, a = decided.arrays, decided.slots, decided.flag, decided.area
    scores = dets.scores[slots.det]
    names = {c.id: c.name for c in gt.categories}
    per_class, pooled_parts = [], []
    for k, category_id in enumerate(arrays.category_ids.tolist()):
        lo, hi = int(slots.category_start[k]), int(slots.category_start[k + 1])
        part = (scores[lo:hi], flag[lo:hi] == 1, flag[lo:hi] == 0)
        pooled_parts.append(part)
        name = names.get(category_id, "all classes")
        cid = category_id if params.use_cats else None
        per_class.append(curve(name, cid, *part, int(arrays.num_gt[k, a])))
    overall = pooled(pooled_parts, int(arrays.num_gt[:, a].sum()))
    return OperatingPoints(
        protocol="coco",
        iou=decided.iou,
        thresholds=tuple(float(v) for v in thresholds),
        overall=overall,
        per_class=tuple(per_class) if params.use_cats else (),
    )
