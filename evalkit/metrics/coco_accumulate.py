"""pycocotools' ``accumulate()`` for one area range and maxDets, over all categories and IoU
thresholds at once, touching only the points where the answer can change.

pycocotools builds, per category and threshold, the cumulative TP/FP curve over every
detection, envelopes precision from the right and samples it at 101 recall thresholds.
Two facts make most of that work unnecessary, without changing a single bit of the result:

* Between two true positives the TP count is constant and the FP count only grows, so
  precision only falls: the right-envelope at any point is the max of the precision there
  and at the true positives after it.
* Recall only rises at true positives, so the first index where recall reaches a threshold
  is a true positive (or index 0 for threshold 0): the c-th one, for the smallest count c
  whose ``c / npig`` reaches the threshold in floating point.

So each curve is reduced to its first point plus its true positives, precision is computed
there with pycocotools' exact expression ``tp / (fp + tp + eps)``, and the envelope at the
101 sampled points comes from block maxima (``maximum.reduceat``) and a right-to-left
running max over at most 101 blocks per curve. Max is exact, so the result is bit-equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalkit.metrics.interpolation import COCO_RECALL_THRESHOLDS
from evalkit.types import BoolArray, FloatArray, IntArray


@dataclass(frozen=True)
class Accumulated:
    """Per (threshold, category): sampled precision (T, R, K), final recall (T, K), counts."""

    precision: FloatArray
    recall: FloatArray
    tp: IntArray
    fp: IntArray


def _first_count_reaching(npig: IntArray) -> IntArray:
    """(K, R): the smallest integer c with float(c / npig) >= each recall threshold."""
    npig_f = np.maximum(npig, 1).astype(np.float64)[:, None]  # rows with npig 0 are unused
    guess = np.ceil(COCO_RECALL_THRESHOLDS[None, :] * npig_f).astype(np.int64)
    best = np.full(guess.shape, np.iinfo(np.int64).max, np.int64)
    # Rounding can only move the answer by one either way; test a window around the guess
    # with the exact comparison pycocotools' searchsorted makes.
    for shift in (2, 1, 0, -1, -2):
        c = np.maximum(guess + shift, 0)
        ok = (c.astype(np.float64) / npig_f) >= COCO_RECALL_THRESHOLDS[None, :]
        best = np.where(ok, np.minimum(best, c), best)
    return best


@dataclass(frozen=True)
class Marks:
    """Sparse (T, n) flags as sorted flat keys ``t * n + position``: which detections are
    true positives and which are ignored, per IoU threshold."""

    tp_key: IntArray
    ig_key: IntArray
    num_t: int
    n: int

    @classmethod
    def from_dense(cls, is_tp: BoolArray, is_ignored: BoolArray) -> Marks:
        return cls(np.flatnonzero(is_tp), np.flatnonzero(is_ignored), *is_tp.shape)


def _contains(sorted_keys: IntArray, queries: IntArray) -> BoolArray:
    at = np.searchsorted(sorted_keys, queries)
    found = np.zeros(queries.shape, bool)
    inside = at < sorted_keys.shape[0]
    found[inside] = sorted_keys[at[inside]] == queries[inside]
    return found


def accumulate(marks: Marks, categories: IntArray, npig: IntArray) -> Accumulated:
    """Curves of detections already in accumulate order (grouped by ascending category
    position ``categories``); ``npig`` counts each category's non-ignored ground truths.
    Categories with ``npig == 0`` stay at -1, as in pycocotools."""
    num_t, n = marks.num_t, marks.n
    tp_key, ig_key = marks.tp_key, marks.ig_key
    num_k = npig.shape[0]
    num_r = COCO_RECALL_THRESHOLDS.shape[0]
    precision = -np.ones((num_t, num_r, num_k))
    recall = -np.ones((num_t, num_k))
    bounds = np.searchsorted(categories, np.arange(num_k + 1), side="left")
    n_k = np.diff(bounds)

    # Keys are sorted, so the count of marks before any point is a searchsorted.
    bound_key = np.arange(num_t)[:, None] * n + bounds[None, :]
    tp_before = np.searchsorted(tp_key, bound_key)
    ig_before = np.searchsorted(ig_key, bound_key)
    n_tp = np.diff(tp_before, axis=1)
    n_fp = n_k[None, :] - n_tp - np.diff(ig_before, axis=1)

    evaluated = npig > 0
    recall[:, evaluated] = 0.0
    precision[:, :, evaluated] = 0.0
    has_curve = np.broadcast_to(evaluated & (n_k > 0), (num_t, num_k))
    recall[has_curve] = (n_tp / np.maximum(npig, 1)[None, :])[has_curve]
    seg_t, seg_k = np.nonzero(has_curve)
    if seg_t.size == 0:
        return Accumulated(precision, recall, n_tp, n_fp)

    # One compressed curve per (t, k): its first point, then its true positives in order.
    length = 1 + n_tp[seg_t, seg_k]
    seg_off = np.cumsum(length) - length
    seg_of = np.full((num_t, num_k), -1, np.int64)
    seg_of[seg_t, seg_k] = np.arange(seg_t.size)
    total = int(length.sum())
    tp_count = np.empty(total, np.float64)
    fp_count = np.empty(total, np.float64)

    first_key = seg_t * n + bounds[seg_k]
    first_tp = _contains(tp_key, first_key)
    tp_count[seg_off] = first_tp
    fp_count[seg_off] = ~first_tp & ~_contains(ig_key, first_key)

    tp_t, tp_pos = np.divmod(tp_key, n)
    tp_cat = categories[tp_pos]
    tp_seg = seg_of[tp_t, tp_cat]
    in_seg = tp_seg >= 0
    count = np.arange(tp_key.shape[0]) - tp_before[tp_t, tp_cat] + 1
    ignored_so_far = np.searchsorted(ig_key, tp_key) - ig_before[tp_t, tp_cat]
    fp_so_far = (tp_pos - bounds[tp_cat] + 1) - count - ignored_so_far
    slot = seg_off[tp_seg[in_seg]] + count[in_seg]
    tp_count[slot] = count[in_seg]
    fp_count[slot] = fp_so_far[in_seg]
    pr = tp_count / (fp_count + tp_count + np.spacing(1))

    # Sampled points: index c* of each curve, or its last point when recall never gets there
    # (those samples are 0 in pycocotools; they still bound the blocks before them).
    c_star = _first_count_reaching(npig)[seg_k]  # (S, R)
    reached = c_star <= n_tp[seg_t, seg_k][:, None]
    idx = seg_off[:, None] + np.where(reached, c_star, (length - 1)[:, None])
    blocks = np.maximum.reduceat(pr, idx.ravel()).reshape(idx.shape)
    suffix = np.maximum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1]
    precision[seg_t, :, seg_k] = np.where(reached, suffix, 0.0)
    return Accumulated(precision, recall, n_tp, n_fp)
