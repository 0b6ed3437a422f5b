"""Turning one class's cumulative precision/recall curve into an AP value."""

from __future__ import annotations

import numpy as np

from evalkit.types import FloatArray

# pycocotools' Params: built with these exact expressions so the floats are identical.
COCO_IOU_THRESHOLDS: FloatArray = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
COCO_RECALL_THRESHOLDS: FloatArray = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1)
# The Python VOC devkit (voc_eval.py) samples recall at np.arange(0., 1.1, 0.1); note that
# its fourth value is 0.30000000000000004, not 0.3.
VOC07_RECALL_POINTS: FloatArray = np.arange(0.0, 1.1, 0.1)
ST_RECALL_POINTS: FloatArray = np.linspace(0, 1, 101)


def envelope_from_right(precision: FloatArray) -> FloatArray:
    """Make precision non-increasing in recall: each value becomes the max to its right."""
    if precision.shape[-1] == 0:
        return precision.copy()
    return np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]


def sample_coco_101(recall: FloatArray, precision: FloatArray) -> FloatArray:
    """pycocotools' 101-point sampling of the enveloped precision (rows are IoU thresholds).

    ``recall`` is (n,) per row or broadcastable (T, n); returns (T, 101), zero where the
    recall threshold is never reached (pycocotools leaves those entries at 0).
    """
    precision = np.atleast_2d(precision)
    recall = np.broadcast_to(np.atleast_2d(recall), precision.shape)
    n = precision.shape[1]
    out = np.zeros((precision.shape[0], COCO_RECALL_THRESHOLDS.shape[0]), np.float64)
    if n == 0:
        return out
    env = envelope_from_right(precision)
    for t in range(precision.shape[0]):
        idx = np.searchsorted(recall[t], COCO_RECALL_THRESHOLDS, side="left")
        ok = idx < n
        out[t, ok] = env[t, idx[ok]]
    return out


def ap_voc07(recall: FloatArray, precision: FloatArray) -> float:
    """VOC2007 11-point AP: mean over t of max precision at recall >= t (0 if none)."""
    if recall.shape[0] == 0:
        return 0.0
    # max(prec[rec >= t]) for all t at once: recall is non-decreasing, so the candidates are
    # a suffix and the answer is the right-envelope at its first index.
    env = envelope_from_right(precision)
    first = np.searchsorted(recall, VOC07_RECALL_POINTS, side="left")
    picks = np.where(first < recall.shape[0], env[np.minimum(first, recall.shape[0] - 1)], 0.0)
    # The devkit accumulates p / 11 one term at a time; keep that order.
    ap = 0.0
    for p in picks:
        ap = ap + float(p) / 11.0
    return ap


def ap_voc12(recall: FloatArray, precision: FloatArray) -> float:
    """VOC2010+ all-point AP: sentinels, precision envelope, sum of recall steps."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = envelope_from_right(np.concatenate(([0.0], precision, [0.0])))
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def ap_st_trapezoid(recall: FloatArray, precision: FloatArray) -> float:
    """The model zoo's AP: trapezoid over 101 recall points of the raw curve, no envelope."""
    if recall.shape[0] == 0:
        recall = np.zeros(1)
        precision = np.zeros(1)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    y = np.interp(ST_RECALL_POINTS, mrec, mpre)
    # numpy.trapezoid's own formula, written out so the result does not depend on which
    # numpy name (trapz / trapezoid) is available.
    d = np.diff(ST_RECALL_POINTS)
    return float(np.add.reduce(d * (y[1:] + y[:-1]) / 2.0))


def precision_at_recall_grid(recall: FloatArray, precision: FloatArray) -> FloatArray:
    """A curve for display and comparison: the right-envelope of precision sampled at the
    101 COCO recall points (0 where recall never gets there), whatever the protocol."""
    return sample_coco_101(np.asarray(recall, np.float64), np.asarray(precision, np.float64))[0]
