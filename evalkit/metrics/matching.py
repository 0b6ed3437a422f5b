"""Matching detections to ground truths, vectorised across images and classes.

Two rules exist among the references:

* best-then-claim (VOC devkit, model zoo): each detection looks only at its highest-IoU
  ground truth, whatever has been matched before, and claims it if the IoU passes and it is
  still free. The best ground truth does not depend on the matching state, so the whole set
  is decided at once: per ground truth, the earliest qualifying detection wins.
* greedy-available (pycocotools): each detection, in score order within its image and
  class, takes the best ground truth *still available*. Detections of the same group depend
  on each other, so this walks the within-group rank (at most ``maxDets`` steps) while every
  group and every IoU threshold advances together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalkit.metrics.pairs import Pairs, first_per_group
from evalkit.types import BoolArray, FloatArray, IntArray


@dataclass(frozen=True)
class BestMatch:
    """Per detection: the chosen ground truth (-1 for none) and its IoU (-inf for none)."""

    gt: IntArray
    iou: FloatArray


def best_ground_truth(pairs: Pairs, iou: FloatArray, num_dets: int) -> BestMatch:
    """Highest-IoU ground truth of each detection; the first one (in ground-truth order)
    wins ties, as ``numpy.argmax`` and MATLAB's ``max`` do in the references."""
    best_gt = np.full(num_dets, -1, np.int64)
    best_iou = np.full(num_dets, -np.inf, np.float64)
    if len(pairs) == 0:
        return BestMatch(best_gt, best_iou)
    order = np.lexsort((pairs.gt, -iou, pairs.det))
    first = first_per_group(pairs.det[order])
    chosen = order[first]
    best_gt[pairs.det[chosen]] = pairs.gt[chosen]
    best_iou[pairs.det[chosen]] = iou[chosen]
    return BestMatch(best_gt, best_iou)


def claim_in_order(
    best: BestMatch,
    processing_rank: IntArray,
    threshold: float,
    gt_ignored: BoolArray,
) -> tuple[BoolArray, BoolArray]:
    """Best-then-claim: returns (true positive, ignored) masks over detections.

    A detection whose best IoU reaches ``threshold`` on an ignored (VOC difficult) ground
    truth is ignored; on a regular one it is a true positive if no detection earlier in
    ``processing_rank`` claimed that ground truth. Everything else is a false positive.
    """
    passes = best.iou >= threshold
    on_ignored = np.zeros(passes.shape, bool)
    on_ignored[passes] = gt_ignored[best.gt[passes]]
    candidates = np.flatnonzero(passes & ~on_ignored)
    tp = np.zeros(passes.shape, bool)
    if candidates.size:
        order = candidates[np.lexsort((processing_rank[candidates], best.gt[candidates]))]
        tp[order[first_per_group(best.gt[order])]] = True
    return tp, on_ignored


def greedy_match(
    pairs: Pairs,
    iou: FloatArray,
    det_rank: IntArray,
    gt_ignored: BoolArray,
    gt_crowd: BoolArray,
    thresholds: FloatArray,
) -> IntArray:
    """pycocotools' ``evaluateImg`` matching for all groups and thresholds at once.

    ``det_rank`` is each detection's position in its group's score order. Returns, per
    threshold and detection, the matched ground truth index or -1 (shape (T, n_dets)).

    Per detection pycocotools scans ground truths with regular ones first, skips those
    already matched (crowds never count as matched), stops at the first ignored one once it
    holds a regular match, and keeps the last ground truth whose IoU is >= the best so far:
    so the winner is the maximum of (is regular, IoU, position), among the available pairs
    with IoU >= min(t, 1 - 1e-10).
    """
    num_dets = det_rank.shape[0]
    num_gts = gt_ignored.shape[0]
    num_t = thresholds.shape[0]
    matched_gt = np.full((num_t, num_dets), -1, np.int64)
    if len(pairs) == 0:
        return matched_gt
    limits = np.minimum(thresholds, 1 - 1e-10)
    keep = iou >= limits.min()
    p_det, p_gt, p_iou = pairs.det[keep], pairs.gt[keep], iou[keep]
    p_rank = det_rank[p_det]
    regular = ~gt_ignored[p_gt]
    # Within each detection the best eligible pair is the last one in this order.
    order = np.lexsort((p_gt, p_iou, regular, p_det, p_rank))
    p_det, p_gt, p_iou, p_rank = p_det[order], p_gt[order], p_iou[order], p_rank[order]
    passes = p_iou[:, None] >= limits[None, :]
    gt_taken = np.zeros((num_gts, num_t), bool)
    crowd = gt_crowd[p_gt][:, None]
    rank_bounds = np.searchsorted(p_rank, np.arange(int(p_rank.max()) + 2), side="left")
    for r in range(rank_bounds.shape[0] - 1):
        lo, hi = int(rank_bounds[r]), int(rank_bounds[r + 1])
        if lo == hi:
            continue
        step_gt = p_gt[lo:hi]
        eligible = passes[lo:hi] & (crowd[lo:hi] | ~gt_taken[step_gt])
        det_starts = np.flatnonzero(first_per_group(p_det[lo:hi]))
        position = np.where(eligible, np.arange(1, hi - lo + 1)[:, None], 0)
        best = np.maximum.reduceat(position, det_starts, axis=0)  # (dets in step, T)
        has = best > 0
        if not has.any():
            continue
        det_idx, t_idx = np.nonzero(has)
        chosen_gt = step_gt[best[det_idx, t_idx] - 1]
        gt_taken[chosen_gt, t_idx] = True
        matched_gt[t_idx, p_det[lo:hi][det_starts][det_idx]] = chosen_gt
    return matched_gt
