"""Grouping helpers: candidate (detection, ground truth) pairs and within-group ranks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalkit.types import IntArray


@dataclass(frozen=True)
class Pairs:
    """Every (detection, ground truth) pair that shares a group key (image and class).

    ``det`` and ``gt`` index the caller's detection and ground-truth arrays. Pairs come
    ordered by detection, then by ground-truth position in the caller's order.
    """

    det: IntArray
    gt: IntArray

    def __len__(self) -> int:
        return int(self.det.shape[0])


def group_key(image_index: IntArray, category_index: IntArray, num_categories: int) -> IntArray:
    """One integer per (image, category) group."""
    return image_index.astype(np.int64) * np.int64(max(num_categories, 1)) + category_index


# Up to this many distinct keys, a dense count table is cheaper than binary searches.
_DENSE_KEYS = 1 << 22


def pairs_by_key(det_key: IntArray, gt_key: IntArray) -> Pairs:
    """All pairs with equal keys, without a Python loop over groups."""
    gt_order = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[gt_order]
    top = int(max(det_key.max(initial=-1), gt_key.max(initial=-1))) + 1
    if top <= _DENSE_KEYS:
        per_key = np.bincount(gt_key, minlength=top)
        key_start = np.cumsum(per_key) - per_key
        start = key_start[det_key]
        counts = per_key[det_key]
    else:
        start = np.searchsorted(sorted_keys, det_key, side="left")
        counts = np.searchsorted(sorted_keys, det_key, side="right") - start
    total = int(counts.sum())
    det = np.repeat(np.arange(det_key.shape[0], dtype=np.int64), counts)
    # Offset of each pair inside its detection's run of ground truths.
    run_start = np.repeat(np.cumsum(counts) - counts, counts)
    within = np.arange(total, dtype=np.int64) - run_start
    gt = gt_order[np.repeat(start, counts) + within]
    return Pairs(det=det, gt=gt.astype(np.int64))


def first_per_group(sorted_keys: IntArray) -> IntArray:
    """Boolean mask of the first element of each run of equal keys."""
    mask = np.ones(sorted_keys.shape[0], bool)
    if sorted_keys.shape[0] > 1:
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=mask[1:])
    return mask


def segment_cumsum(values: IntArray, segment_starts: IntArray) -> IntArray:
    """Cumulative sum along the last axis restarting at each segment start (integers, exact)."""
    total = np.cumsum(values, axis=-1)
    if values.shape[-1] == 0:
        return total
    lengths = np.diff(np.append(segment_starts, values.shape[-1]))
    base = np.zeros((*values.shape[:-1], segment_starts.shape[0]), dtype=total.dtype)
    base[..., 1:] = total[..., segment_starts[1:] - 1]
    return total - np.repeat(base, lengths, axis=-1)
