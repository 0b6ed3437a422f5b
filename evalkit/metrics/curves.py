"""Per-class cumulative TP/FP curves under the best-then-claim rule (VOC devkit, zoo)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from evalkit.metrics.matching import best_ground_truth, claim_in_order
from evalkit.metrics.pairs import group_key, pairs_by_key, segment_cumsum
from evalkit.types import BoolArray, Category, ClassResult, FloatArray, IntArray

PairIou = Callable[[FloatArray, FloatArray], FloatArray]


@dataclass(frozen=True)
class ClassCurves:
    """Cumulative true/false positives of each class over its detections in processing
    order; ``bounds[k]:bounds[k+1]`` is class k's slice. Ignored detections stay in the
    curve as flat steps (the VOC devkit keeps them with tp = fp = 0)."""

    tp_cum: IntArray
    fp_cum: IntArray
    bounds: IntArray
    # Scores and decisions (1 true positive, 0 false positive, -1 ignored) in the same order.
    scores: FloatArray
    flags: IntArray

    def of(self, k: int) -> tuple[IntArray, IntArray]:
        lo, hi = int(self.bounds[k]), int(self.bounds[k + 1])
        return self.tp_cum[lo:hi], self.fp_cum[lo:hi]

    def decisions_of(self, k: int) -> tuple[FloatArray, IntArray]:
        lo, hi = int(self.bounds[k]), int(self.bounds[k + 1])
        return self.scores[lo:hi], self.flags[lo:hi]


def claim_curves(
    *,
    det_image: IntArray,
    det_class: IntArray,
    det_xyxy: FloatArray,
    det_score: FloatArray,
    processing_order: IntArray,
    gt_image: IntArray,
    gt_class: IntArray,
    gt_xyxy: FloatArray,
    gt_ignored: BoolArray,
    num_classes: int,
    threshold: float,
    pair_iou: PairIou,
    strict: bool = False,
) -> ClassCurves:
    """Match detections (visited in ``processing_order``, grouped by class) to ground truths
    of their image and class and accumulate per-class TP/FP curves."""
    det_key = group_key(det_image, det_class, num_classes)
    gt_key = group_key(gt_image, gt_class, num_classes)
    pairs = pairs_by_key(det_key, gt_key)
    iou = pair_iou(det_xyxy[pairs.det], gt_xyxy[pairs.gt])
    best = best_ground_truth(pairs, iou, det_key.shape[0])
    rank = np.empty(det_key.shape[0], np.int64)
    rank[processing_order] = np.arange(det_key.shape[0], dtype=np.int64)
    tp, ignored = claim_in_order(best, rank, threshold, gt_ignored, strict)
    tp_sorted = tp[processing_order].astype(np.int64)
    fp_sorted = (~tp & ~ignored)[processing_order].astype(np.int64)
    classes = det_class[processing_order]
    bounds = np.searchsorted(classes, np.arange(num_classes + 1), side="left")
    starts = np.flatnonzero(np.diff(bounds) > 0)
    seg_starts = bounds[starts]
    flags = np.where(tp, 1, np.where(ignored, -1, 0))[processing_order]
    return ClassCurves(
        tp_cum=segment_cumsum(tp_sorted, seg_starts),
        fp_cum=segment_cumsum(fp_sorted, seg_starts),
        bounds=bounds,
        scores=det_score[processing_order],
        flags=flags.astype(np.int64),
    )


# (cumulative TP, cumulative FP, number of ground truths) -> (recall, precision, AP)
CurveScore = Callable[[IntArray, IntArray, int], tuple[FloatArray, FloatArray, float]]


def class_results(
    curves: ClassCurves,
    categories: Sequence[Category],
    num_gt: IntArray,
    score: CurveScore,
) -> tuple[ClassResult, ...]:
    """One ClassResult per category; a category without ground truth gets AP None (left
    out of the mean by every best-then-claim protocol)."""
    results = []
    for k, cat in enumerate(categories):
        tp_cum, fp_cum = curves.of(k)
        if num_gt[k] == 0:
            rec = prec = np.zeros(tp_cum.shape)
            ap: float | None = None
        else:
            rec, prec, ap = score(tp_cum, fp_cum, int(num_gt[k]))
        results.append(
            ClassResult(
                name=cat.name,
                category_id=cat.id,
                ap=ap,
                num_gt=int(num_gt[k]),
                num_detections=int(tp_cum.shape[0]),
                tp=int(tp_cum[-1]) if tp_cum.size else 0,
                fp=int(fp_cum[-1]) if fp_cum.size else 0,
                recall=np.asarray(rec, np.float64),
                precision=np.asarray(prec, np.float64),
                decisions=curves.decisions_of(k),
            )
        )
    return tuple(results)


def mean_ap(per_class: Sequence[ClassResult]) -> float:
    """Unweighted mean over the classes that count (0.0 when none does)."""
    aps = [c.ap for c in per_class if c.ap is not None]
    return float(np.mean(aps)) if aps else 0.0
