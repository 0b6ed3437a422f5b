"""Matching detections to ground truths, vectorised across images and classes.

Two rules exist among the references:

* best-then-claim (VOC devkit, model zoo): each detection looks only at its highest-IoU
  ground truth, whatever has been matched before, and claims it if the IoU passes and it is
  still free. The best ground truth does not depend on the matching state, so the whole set
  is decided at once: per ground truth, the earliest qualifying detection wins. That rule
  lives here.
* greedy-available (pycocotools): each detection, in score order within its image and
  class, takes the best ground truth *still available*. That rule lives in the compiled
  core of the ``coco`` protocol (:mod:`evalkit.metrics._cocoeval`).
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
    strict: bool = False,
) -> tuple[BoolArray, BoolArray]:
    """Best-then-claim: returns (true positive, ignored) masks over detections.

    A detection whose best IoU reaches ``threshold`` on an ignored (VOC difficult) ground
    truth is ignored; on a regular one it is a true positive if no detection earlier in
    ``processing_rank`` claimed that ground truth. Everything else is a false positive.
    """
    passes = best.iou > threshold if strict else best.iou >= threshold
    on_ignored = np.zeros(passes.shape, bool)
    on_ignored[passes] = gt_ignored[best.gt[passes]]
    candidates = np.flatnonzero(passes & ~on_ignored)
    tp = np.zeros(passes.shape, bool)
    if candidates.size:
        order = candidates[np.lexsort((processing_rank[candidates], best.gt[candidates]))]
        tp[order[first_per_group(best.gt[order])]] = True
    return tp, on_ignored
