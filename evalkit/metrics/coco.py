"""``coco``: pycocotools' COCOeval for bounding boxes, reproduced to the last bit.

Same parameters (10 IoU thresholds, 101 recall points, maxDets 1/10/100, four area
ranges), same tie-breaking (stable mergesorts), same quirks (a crowd is matched by any
number of detections; a match to a ground truth whose id is 0 counts as no match, because
pycocotools stores matches as ids and tests them for truth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import evalkit.metrics._cocoeval as _cocoeval
from evalkit.metrics.interpolation import COCO_IOU_THRESHOLDS, COCO_RECALL_THRESHOLDS
from evalkit.metrics.protocol import EvalOptions, Protocol, register
from evalkit.metrics.results_file import compiled_threads
from evalkit.types import ClassResult, Detections, EvalResult, FloatArray, GroundTruth, IntArray

MAX_DETS = (1, 10, 100)
AREA_RANGES = ((0.0**2, 1e5**2), (0.0**2, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
AREA_LABELS = ("all", "small", "medium", "large")
STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)
# (is AP, IoU threshold or None for all, area label, maxDets) in pycocotools' order.
_SUMMARY = (
    (True, None, "all", 100),
    (True, 0.5, "all", 100),
    (True, 0.75, "all", 100),
    (True, None, "small", 100),
    (True, None, "medium", 100),
    (True, None, "large", 100),
    (False, None, "all", 1),
    (False, None, "all", 10),
    (False, None, "all", 100),
    (False, None, "small", 100),
    (False, None, "medium", 100),
    (False, None, "large", 100),
)


@dataclass(frozen=True)
class CocoArrays:
    """pycocotools' ``eval['precision']`` (T,R,K,A,M) and ``eval['recall']`` (T,K,A,M),
    categories in ascending id order as pycocotools lays them out."""

    precision: FloatArray
    recall: FloatArray
    category_ids: IntArray
    tp: IntArray  # (T, K, A, M) true positives at the end of each curve
    fp: IntArray
    num_gt: IntArray  # (K, A) non-ignored ground truths
    num_detections: IntArray  # (K, M) detections entering each curve


def _mean_valid(values: FloatArray) -> float:
    """pycocotools' summary: mean of the entries that are not -1, or -1 if there are none."""
    valid = values[values > -1]
    return -1.0 if valid.size == 0 else float(np.mean(valid))


def _sorted_ranks(keys: list[int] | list[str] | list[int | str]) -> IntArray:
    """Rank of each key in ascending order (pycocotools evaluates sorted ids)."""
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    ranks = np.empty(len(keys), np.int64)
    ranks[np.asarray(order, np.int64)] = np.arange(len(keys), dtype=np.int64)
    return ranks


def _threads(num_detections: int) -> int:
    """One thread for small inputs, where starting threads costs more than it saves."""
    return 1 if num_detections < 20_000 else compiled_threads()


def coco_arrays(gt: GroundTruth, dets: Detections) -> CocoArrays:
    """Run COCOeval's evaluate() + accumulate() on columnar records (the compiled core,
    :mod:`evalkit.metrics._cocoeval`, says how it stays bit-identical)."""
    num_t, num_r = COCO_IOU_THRESHOLDS.shape[0], COCO_RECALL_THRESHOLDS.shape[0]
    num_k, num_a, num_m = len(gt.categories), len(AREA_RANGES), len(MAX_DETS)
    cat_rank = _sorted_ranks([c.id for c in gt.categories])
    img_rank = _sorted_ranks([im.image_id for im in gt.images])
    c64 = np.ascontiguousarray
    raw = _cocoeval.evaluate(
        c64(img_rank[gt.image_index]),
        c64(cat_rank[gt.category_index]),
        c64(gt.boxes_xywh_px),
        c64(gt.area),
        c64(gt.iscrowd, np.uint8),
        c64(gt.annotation_id != 0, np.uint8),
        c64(img_rank[dets.image_index]),
        c64(cat_rank[dets.category_index]),
        c64(dets.boxes_xywh_px),
        c64(dets.scores),
        len(gt.images),
        num_k,
        c64(COCO_IOU_THRESHOLDS),
        c64(COCO_RECALL_THRESHOLDS),
        c64(AREA_RANGES, np.float64),
        np.asarray(MAX_DETS, np.int64),
        True,
        _threads(len(dets.scores)),
    )
    precision_b, recall_b, tp_b, fp_b, num_gt_b, num_det_b = raw
    curve = (num_t, num_k, num_a, num_m)
    precision = np.frombuffer(precision_b, np.float64).reshape(num_t, num_r, num_k, num_a, num_m)
    recall = np.frombuffer(recall_b, np.float64).reshape(curve)
    tp = np.frombuffer(tp_b, np.int64).reshape(curve)
    fp = np.frombuffer(fp_b, np.int64).reshape(curve)
    num_gt = np.frombuffer(num_gt_b, np.int64).reshape(num_k, num_a)
    num_det = np.frombuffer(num_det_b, np.int64).reshape(num_k, num_m)
    category_ids = np.array([c.id for c in gt.categories], np.int64)
    sorted_ids = np.empty_like(category_ids)
    sorted_ids[cat_rank] = category_ids
    return CocoArrays(precision, recall, sorted_ids, tp, fp, num_gt, num_det)


def summarize(arrays: CocoArrays) -> tuple[float, ...]:
    """The 12 numbers COCOeval.summarize() prints, in its order."""
    stats = []
    for is_ap, iou_thr, area, max_det in _SUMMARY:
        a = AREA_LABELS.index(area)
        m = MAX_DETS.index(max_det)
        values = arrays.precision if is_ap else arrays.recall
        if iou_thr is not None:
            values = values[np.where(iou_thr == COCO_IOU_THRESHOLDS)[0]]
        values = values[:, :, :, a, m] if is_ap else values[:, :, a, m]
        stats.append(_mean_valid(values))
    return tuple(stats)


def _threshold_index(iou: float) -> int:
    hits = np.flatnonzero(np.isclose(COCO_IOU_THRESHOLDS, iou, rtol=0.0, atol=1e-9))
    if hits.size == 0:
        allowed = ", ".join(f"{t:.2f}" for t in COCO_IOU_THRESHOLDS)
        raise ValueError(
            f"the coco protocol reports AP at one of its IoU thresholds ({allowed}); got {iou}"
        )
    return int(hits[0])


def evaluate_coco(gt: GroundTruth, dets: Detections, options: EvalOptions) -> EvalResult:
    t = _threshold_index(options.match_iou)
    arrays = coco_arrays(gt, dets)
    stats = summarize(arrays)
    by_id = {c.id: c for c in gt.categories}
    per_class = []
    for k, cat_id in enumerate(arrays.category_ids.tolist()):
        curve = arrays.precision[t, :, k, 0, -1]
        ap = _mean_valid(curve)
        ap_all = _mean_valid(arrays.precision[:, :, k, 0, -1])
        per_class.append(
            ClassResult(
                name=by_id[cat_id].name,
                category_id=cat_id,
                ap=None if ap == -1 else ap,
                num_gt=int(arrays.num_gt[k, 0]),
                num_detections=int(arrays.num_detections[k, -1]),
                tp=int(arrays.tp[t, k, 0, -1]),
                fp=int(arrays.fp[t, k, 0, -1]),
                recall=COCO_RECALL_THRESHOLDS.copy(),
                precision=curve.copy(),
                ap_coco=None if ap_all == -1 else ap_all,
            )
        )
    headline = _mean_valid(arrays.precision[t, :, :, 0, -1])
    return EvalResult(
        protocol="coco",
        iou=float(COCO_IOU_THRESHOLDS[t]),
        ap=headline,
        per_class=tuple(per_class),
        num_images=len(gt.images),
        num_gt=int(arrays.num_gt[:, 0].sum()),
        num_detections=int(arrays.num_detections[:, -1].sum()),
        tp=int(arrays.tp[t, :, 0, -1].sum()),
        fp=int(arrays.fp[t, :, 0, -1].sum()),
        stats=stats,
        stat_names=STAT_NAMES,
        settings={"iou": float(COCO_IOU_THRESHOLDS[t]), "max_dets": list(MAX_DETS)},
        arrays={
            "precision": arrays.precision,
            "recall": arrays.recall,
            "category_ids": arrays.category_ids,
        },
    )


register(
    Protocol(
        name="coco",
        reference="pycocotools COCOeval (iouType='bbox')",
        summary="original pixels, IoU without +1, crowds ignored, 101-point interpolated AP",
        run=evaluate_coco,
    )
)
