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
    wins ties, as ``numpy.argmax`` and MATLAB's ``max`` do in the references.

    ``pairs`` must be grouped by detection with ground truths ascending (as
    :func:`pairs_by_key` makes them), so "first" is the lowest position in each group.
    """
    best_gt = np.full(num_dets, -1, np.int64)
    best_iou = np.full(num_dets, -np.inf, np.float64)
    if len(pairs) == 0:
        return BestMatch(best_gt, best_iou)
    starts = np.flatnonzero(first_per_group(pairs.det))
    group_max = np.maximum.reduceat(iou, starts)
    sizes = np.diff(np.append(starts, len(pairs)))
    at_max = np.flatnonzero(iou == np.repeat(group_max, sizes))
    chosen = at_max[first_per_group(pairs.det[at_max])]
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


@dataclass(frozen=True)
class SparseMatches:
    """Matches as parallel arrays: IoU-threshold index, detection, ground truth."""

    threshold: IntArray
    det: IntArray
    gt: IntArray


class GreedyMatcher:
    """pycocotools' ``evaluateImg`` matching for all groups and thresholds at once.

    Per detection pycocotools scans ground truths with regular ones first, skips those
    already matched (crowds never count as matched), stops at the first ignored one once it
    holds a regular match, and keeps the last ground truth whose IoU is >= the best so far:
    so the winner is the maximum of (is regular, IoU, position) among the available pairs
    with IoU >= min(t, 1 - 1e-10).

    Built once per evaluation (the pair order does not depend on the area range); call
    :meth:`match` once per area range with that range's ignore flags.
    """

    def __init__(
        self, pairs: Pairs, iou: FloatArray, det_rank: IntArray, thresholds: FloatArray
    ) -> None:
        self.num_dets = det_rank.shape[0]
        self.limits = np.minimum(thresholds, 1 - 1e-10)
        keep = iou >= self.limits.min() if len(pairs) else np.zeros(0, bool)
        p_det, p_gt, p_iou = pairs.det[keep], pairs.gt[keep], iou[keep]
        # Pairs arrive by detection with ground truths ascending; order each detection's
        # pairs by IoU (stable, so equal IoUs keep ground-truth order), then all pairs by
        # within-group rank (stable, so each detection's pairs stay together).
        order = np.lexsort((p_iou, p_det))
        order = order[np.argsort(det_rank[p_det[order]], kind="stable")]
        self.det, self.gt, self.iou = p_det[order], p_gt[order], p_iou[order]
        rank = det_rank[self.det]
        top = int(rank.max()) + 2 if rank.size else 1
        self.rank_bounds = np.searchsorted(rank, np.arange(top), side="left")
        self.passes = self.iou[:, None] >= self.limits[None, :]

    def match(self, gt_ignored: BoolArray, gt_crowd: BoolArray) -> SparseMatches:
        """Every match made, as (threshold index, detection, ground truth) triples."""
        num_t = self.limits.shape[0]
        gt_taken = np.zeros((gt_ignored.shape[0], num_t), bool)
        regular = ~gt_ignored[self.gt][:, None]
        crowd = gt_crowd[self.gt][:, None]
        found: list[tuple[IntArray, IntArray, IntArray]] = []
        for r in range(self.rank_bounds.shape[0] - 1):
            lo, hi = int(self.rank_bounds[r]), int(self.rank_bounds[r + 1])
            if lo == hi:
                continue
            step_gt = self.gt[lo:hi]
            eligible = self.passes[lo:hi] & (crowd[lo:hi] | ~gt_taken[step_gt])
            det_starts = np.flatnonzero(first_per_group(self.det[lo:hi]))
            # Within a detection pairs ascend in (IoU, position): the last eligible regular
            # pair wins, else the last eligible ignored one.
            position = np.arange(1, hi - lo + 1)[:, None]
            best_regular = np.maximum.reduceat(
                np.where(eligible & regular[lo:hi], position, 0), det_starts, axis=0
            )
            best_ignored = np.maximum.reduceat(
                np.where(eligible & ~regular[lo:hi], position, 0), det_starts, axis=0
            )
            best = np.where(best_regular > 0, best_regular, best_ignored)
            det_idx, t_idx = np.nonzero(best)
            if det_idx.size == 0:
                continue
            chosen_gt = step_gt[best[det_idx, t_idx] - 1]
            gt_taken[chosen_gt, t_idx] = True
            found.append((t_idx, self.det[lo:hi][det_starts][det_idx], chosen_gt))
        if not found:
            empty = np.zeros(0, np.int64)
            return SparseMatches(empty, empty, empty)
        t_all, det_all, gt_all = (np.concatenate(column) for column in zip(*found, strict=True))
        return SparseMatches(t_all, det_all, gt_all)
