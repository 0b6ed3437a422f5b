"""Plain reference implementations of the ``voc07``, ``voc12`` and ``st`` AP protocols.

Written from the rules in reference-pipeline.md sections 6 and 8, one detection at a time
with Python loops and lists, so that they share no code and no vectorisation trick with
``evalkit.metrics``. They exist only for the parity tests in ``test_metrics_voc_st.py``;
speed is irrelevant, obviousness is the point.

Conventions the written rules leave open follow the Python VOC devkit (``voc_eval.py``) and
the model zoo, as evalkit documents them: corners are ``x2 = x + w``; voc07 samples recall
at ``np.arange(0., 1.1, 0.1)`` and adds ``p / 11`` one term at a time.

``st`` follows the zoo's own arithmetic (reference-pipeline.md 6b), since bit-exactness is
the test: ground-truth corners cast to float32 and multiplied in float32 by
``float32(S / W)``; a model's detections as ``round(float32(corner) * float32(S))``
(results-file detections ``round((x / W) * S)`` in float64); TP/FP counts, recall and
precision in float32; then the zoo's own numpy calls for the last steps (``np.interp`` on
the 101 points, ``np.trapezoid``, ``np.mean`` over classes in id order), whose summation
order a loop would not reproduce.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from evalkit.types import Detections, GroundTruth

Box = tuple[float, float, float, float]

# voc_eval.py's recall points; the fourth is 0.30000000000000004, not 0.3, and a recall of
# exactly 3/10 does not reach it. Built once, then only read element by element.
VOC07_RECALL_POINTS: list[float] = [float(t) for t in np.arange(0.0, 1.1, 0.1)]
# Section 6 names this grid; ten of its points (0.7 among them) lie a hair above the
# decimal, which matters where the raw st curve jumps at a recall of exactly 7/10.
ST_RECALL_POINTS: list[float] = [float(x) for x in np.linspace(0, 1, 101)]


@dataclass(frozen=True)
class RefClass:
    """One class as the reference sees it: AP (None when left out of the mean) and counts."""

    ap: float | None
    num_gt: int
    tp: int
    fp: int


@dataclass(frozen=True)
class RefResult:
    """Mean AP over the counted classes and the per-class details, in category order."""

    ap: float
    per_class: list[RefClass]


def corners(x: float, y: float, w: float, h: float) -> Box:
    """Corners of an ``[x, y, w, h]`` box, with ``x2 = x + w`` (no +1)."""
    return (x, y, x + w, y + h)


def iou_voc(a: Box, b: Box) -> float:
    """VOC devkit IoU: +1 on widths and heights, each overlap side clamped at zero."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]) + 1.0, 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]) + 1.0, 0.0)
    inter = iw * ih
    if inter == 0.0:
        return 0.0
    union = (
        (a[2] - a[0] + 1.0) * (a[3] - a[1] + 1.0)
        + (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0)
        - inter
    )
    return inter / union


def iou_st(a: Box, b: Box) -> float:
    """Model zoo IoU: +1 convention; disjoint only when one box starts beyond the other's end."""
    if a[0] > b[2] or a[2] < b[0] or a[1] > b[3] or a[3] < b[1]:
        return 0.0
    inter_x = min(a[2], b[2]) - max(a[0], b[0]) + 1.0
    inter_y = min(a[3], b[3]) - max(a[1], b[1]) + 1.0
    inter = max(inter_x, 0.0) * max(inter_y, 0.0)
    union = (
        (a[2] - a[0] + 1.0) * (a[3] - a[1] + 1.0)
        + (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0)
        - inter
    )
    return inter / union if union > 0.0 else 0.0


def best_match(
    det: Box, candidates: list[int], gt_boxes: dict[int, Box], iou_fn: Callable[[Box, Box], float]
) -> int:
    """Row of the highest-IoU candidate ground truth; the first one wins ties, -1 if there is
    no candidate."""
    best, best_iou = -1, -np.inf
    for j in candidates:
        value = iou_fn(det, gt_boxes[j])
        if value > best_iou:  # strict: numpy argmax / MATLAB max keep the first maximum
            best, best_iou = j, value
    return best


def voc07_ap(rec: list[float], prec: list[float]) -> float:
    """Mean over the 11 recall points of the best precision at recall >= t (0 if none)."""
    ap = 0.0
    for t in VOC07_RECALL_POINTS:
        reached = [p for r, p in zip(rec, prec, strict=True) if r >= t]
        ap = ap + (max(reached) if reached else 0.0) / 11.0
    return ap


def voc12_ap(rec: list[float], prec: list[float]) -> float:
    """All-point AP: sentinels, precision made non-increasing, sum of recall steps."""
    mrec = [0.0, *rec, 1.0]
    mpre = [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    ap = 0.0
    for i in range(len(mrec) - 1):
        if mrec[i + 1] != mrec[i]:
            ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1]
    return ap


def interp(x: float, xp: list[float], fp: list[float]) -> float:
    """``numpy.interp`` for one point on a non-decreasing ``xp`` with repeated values.

    numpy picks the last j with ``xp[j] <= x`` (so at a repeated x the rightmost value wins)
    and returns ``fp[j]`` when x equals ``xp[j]`` or j is the last index.
    """
    if x < xp[0]:
        return fp[0]
    j = 0
    while j + 1 < len(xp) and xp[j + 1] <= x:
        j += 1
    if j == len(xp) - 1 or x == xp[j]:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    return slope * (x - xp[j]) + fp[j]


def st_ap(rec: list[float], prec: list[float]) -> float:
    """Trapezoid over ``linspace(0, 1, 101)`` of the raw curve with sentinels (1 at recall 0,
    0 at recall 1) and no precision envelope."""
    if not rec:
        rec, prec = [0.0], [0.0]
    mrec = np.array([0.0, *rec, 1.0])
    mpre = np.array([1.0, *prec, 0.0])
    x = np.linspace(0, 1, 101)
    # The zoo calls np.trapz; numpy 2 names it np.trapezoid (the same formula).
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    return float(trapezoid(np.interp(x, mrec, mpre), x))


def _mean(values: list[float]) -> float:
    """Unweighted mean, 0.0 for an empty list (nothing to average)."""
    return sum(values) / len(values) if values else 0.0


def voc_reference(
    gt: GroundTruth,
    dets: Detections,
    interpolation: Literal["voc07", "voc12"],
    iou_threshold: float = 0.5,
    decisions: dict[int, int] | None = None,
) -> RefResult:
    """Pascal VOC devkit AP: original pixels, +1 IoU, difficult ground truth ignored.
    ``decisions``, when given, receives each detection row's decision: 1 true positive,
    0 false positive, -1 ignored (matched a difficult object)."""
    decided = {} if decisions is None else decisions
    gt_boxes = {j: corners(*map(float, row)) for j, row in enumerate(gt.boxes_xywh_px)}
    per_class: list[RefClass] = []
    for k in range(len(gt.categories)):
        # Ground truths of class k, per image, in annotation order (ties go to the first).
        by_image: dict[int, list[int]] = {}
        npos = 0
        for j in range(gt.num_annotations):
            if int(gt.category_index[j]) == k:
                by_image.setdefault(int(gt.image_index[j]), []).append(j)
                if not gt.difficult[j]:
                    npos += 1
        rows = [i for i in range(len(dets)) if int(dets.category_index[i]) == k]
        # Python's sort is stable: equal scores keep the input (row) order, as MATLAB's.
        rows = sorted(rows, key=lambda i: -float(dets.scores[i]))
        matched: set[int] = set()
        tp = fp = 0
        rec: list[float] = []
        prec: list[float] = []
        for i in rows:
            box = corners(*map(float, dets.boxes_xywh_px[i]))
            j = best_match(box, by_image.get(int(dets.image_index[i]), []), gt_boxes, iou_voc)
            if j >= 0 and iou_voc(box, gt_boxes[j]) >= iou_threshold:
                if gt.difficult[j]:
                    # Neither TP nor FP. The devkit keeps a flat step in the curve; leaving
                    # the point out gives the same AP: it repeats the previous point (or,
                    # before the first TP/FP, adds recall 0 at precision 0, never a maximum).
                    decided[i] = -1
                    continue
                if j in matched:
                    fp += 1
                    decided[i] = 0
                else:
                    matched.add(j)
                    tp += 1
                    decided[i] = 1
            else:
                fp += 1
                decided[i] = 0
            if npos:
                rec.append(tp / npos)
                prec.append(tp / (tp + fp))
        if npos == 0:
            per_class.append(RefClass(ap=None, num_gt=0, tp=tp, fp=fp))
            continue
        ap = voc07_ap(rec, prec) if interpolation == "voc07" else voc12_ap(rec, prec)
        per_class.append(RefClass(ap=ap, num_gt=npos, tp=tp, fp=fp))
    return RefResult(ap=_mean([c.ap for c in per_class if c.ap is not None]), per_class=per_class)


def st_ground_truth(gt: GroundTruth, input_size: int) -> tuple[dict[int, Box], set[int]]:
    """The ground truths the zoo keeps (row -> corners in input pixels, float32 values) and
    the images it evaluates."""
    if gt.source == "coco":
        # Any annotation at all makes an image count, even one skipped just below.
        evaluated = {int(i) for i in gt.image_index}
    else:
        evaluated = set(range(len(gt.images)))
    kept: dict[int, Box] = {}
    for j in range(gt.num_annotations):
        x, y, w, h = (float(v) for v in gt.boxes_xywh_px[j])
        if gt.source == "coco" and (w <= 0 or h <= 0):
            continue
        if gt.source == "voc" and gt.difficult[j]:
            continue
        image = gt.images[int(gt.image_index[j])]
        x1, y1, x2, y2 = corners(x, y, w, h)
        sx = np.float32(input_size / image.width)
        sy = np.float32(input_size / image.height)
        scaled = [
            np.float32(x1) * sx,
            np.float32(y1) * sy,
            np.float32(x2) * sx,
            np.float32(y2) * sy,
        ]
        if not scaled[0] + scaled[1] + scaled[2] + scaled[3] > 0:  # float32 sum, as kept
            continue
        kept[j] = (float(scaled[0]), float(scaled[1]), float(scaled[2]), float(scaled[3]))
    return kept, evaluated


def st_detection_box(gt: GroundTruth, dets: Detections, i: int, input_size: int) -> Box:
    """Detection ``i`` in input pixels: normalised corners times the size, rounded
    half-to-even (Python's ``round`` on a float, like ``numpy.round``)."""
    if dets.boxes_xyxy_norm is not None:
        s = np.float32(input_size)
        x1, y1, x2, y2 = (float(round(float(np.float32(v) * s))) for v in dets.boxes_xyxy_norm[i])
        return (x1, y1, x2, y2)
    image = gt.images[int(dets.image_index[i])]
    x1, y1, x2, y2 = corners(*map(float, dets.boxes_xywh_px[i]))
    return (
        float(round(x1 / image.width * input_size)),
        float(round(y1 / image.height * input_size)),
        float(round(x2 / image.width * input_size)),
        float(round(y2 / image.height * input_size)),
    )


def st_reference(
    gt: GroundTruth,
    dets: Detections,
    iou_threshold: float = 0.5,
    input_size: int = 300,
    decisions: dict[int, int] | None = None,
) -> RefResult:
    """The model zoo's AP: input pixels, rounded detections, +1 IoU, no ignore regions,
    101-point trapezoid of the raw curve, mean over classes with ground truth.
    ``decisions``, when given, receives each scored detection row's decision (1 true
    positive, 0 false positive); detections the zoo leaves out get none."""
    decided = {} if decisions is None else decisions
    kept, evaluated = st_ground_truth(gt, input_size)
    per_class: list[RefClass] = []
    for k in range(len(gt.categories)):
        by_image: dict[int, list[int]] = {}
        for j in kept:  # dict order is row order
            if int(gt.category_index[j]) == k:
                by_image.setdefault(int(gt.image_index[j]), []).append(j)
        n_gt = sum(len(v) for v in by_image.values())
        if n_gt == 0:
            per_class.append(RefClass(ap=None, num_gt=0, tp=0, fp=0))
            continue
        rows: list[int] = []
        for i in range(len(dets)):
            if int(dets.category_index[i]) != k or int(dets.image_index[i]) not in evaluated:
                continue
            if not sum(st_detection_box(gt, dets, i, input_size)) > 0:
                continue
            rows.append(i)
        # Pool in image order then row (NMS / file) order, then one stable score sort.
        rows = sorted(rows, key=lambda i: int(dets.image_index[i]))
        rows = sorted(rows, key=lambda i: -float(dets.scores[i]))
        matched: set[int] = set()
        tp = fp = 0
        rec: list[float] = []
        prec: list[float] = []
        f32 = np.float32
        for i in rows:
            box = st_detection_box(gt, dets, i, input_size)
            j = best_match(box, by_image.get(int(dets.image_index[i]), []), kept, iou_st)
            # No fall-back to the second-best ground truth: a taken best one means FP.
            if j >= 0 and iou_st(box, kept[j]) >= iou_threshold and j not in matched:
                matched.add(j)
                tp += 1
                decided[i] = 1
            else:
                fp += 1
                decided[i] = 0
            # float32 counts (exact below 2**24) and float32 quotients, as the zoo's arrays.
            rec.append(float(f32(tp) / f32(n_gt)))
            prec.append(float(f32(tp) / (f32(fp) + f32(tp))))
        per_class.append(RefClass(ap=st_ap(rec, prec), num_gt=n_gt, tp=tp, fp=fp))
    order = sorted(range(len(gt.categories)), key=lambda k: gt.categories[k].id)
    aps = [per_class[k].ap for k in order if per_class[k].ap is not None]
    return RefResult(ap=float(np.mean(aps)) if aps else 0.0, per_class=per_class)
