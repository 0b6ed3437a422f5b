"""evalkit's combined NMS against ``tf.image.combined_non_max_suppression`` itself.

TensorFlow is a test dependency (tensorflow-cpu): this parity test never skips. Outputs are
compared whole: count, order, box corners, scores and classes, bit for bit, on inputs made
to be hard for the order of equal scores (quantized scores as int8 models give, duplicate
and overlapping boxes, several classes, per-class and total limits that cut inside runs of
equal scores), at the zoo's sizes and on small ones.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf

from evalkit.postprocess.nms import NmsSettings, select_image

F32 = np.float32


def tf_combined(boxes: Any, scores: Any, s: NmsSettings) -> tuple[Any, Any, Any]:
    """TF's kept (corners, scores, classes) of one image, boxes shared by all classes as
    the zoo passes them (tiled to q = num_classes)."""
    n_boxes, n_classes = scores.shape
    tiled = np.broadcast_to(boxes[None, :, None, :], (1, n_boxes, n_classes, 4))
    out = tf.image.combined_non_max_suppression(
        tf.constant(np.ascontiguousarray(tiled, F32)),
        tf.constant(scores[None].astype(F32)),
        max_output_size_per_class=s.max_per_class,
        max_total_size=s.max_total,
        iou_threshold=s.iou_threshold,
        score_threshold=s.score_threshold,
        clip_boxes=s.clip_boxes,
    )
    n = int(out[3].numpy()[0])
    return out[0].numpy()[0, :n], out[1].numpy()[0, :n], out[2].numpy()[0, :n]


def assert_same_as_tf(boxes: Any, scores: Any, s: NmsSettings) -> None:
    mine = select_image(boxes, scores, s)
    corners, kept_scores, classes = tf_combined(boxes, scores, s)
    assert len(mine) == kept_scores.shape[0], (len(mine), kept_scores.shape[0])
    np.testing.assert_array_equal(mine.scores, kept_scores)
    np.testing.assert_array_equal(mine.class_index.astype(F32), classes)
    np.testing.assert_array_equal(mine.boxes_xyxy_norm, corners)


def quantized_softmax(rng: np.random.Generator, n_boxes: int, n_classes: int) -> Any:
    """Softmax of int8-quantized logits: few distinct logit rows, so many equal scores."""
    step = F32(0.25)
    logits = np.round(rng.normal(0, 2, (n_boxes, n_classes + 1)) / step) * step
    logits[:, 0] += 4.0  # mostly background, as an SSD's anchors are
    # Repeated rows: anchors of a flat region give identical outputs.
    rows = rng.integers(0, max(1, n_boxes // 4), n_boxes)
    logits = logits[rows].astype(F32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True))[:, 1:].astype(F32)


def clustered_boxes(rng: np.random.Generator, n_boxes: int, grid: float | None) -> Any:
    centres = rng.random((max(1, n_boxes // 6), 2))
    c = centres[rng.integers(0, centres.shape[0], n_boxes)] + rng.normal(0, 0.03, (n_boxes, 2))
    wh = rng.uniform(0.02, 0.4, (n_boxes, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    if grid:
        boxes = np.round(boxes / grid) * grid  # exact duplicates and equal IoUs
    return boxes.astype(F32)


@pytest.mark.parametrize("seed", range(60))
def test_random_tied_workloads_equal_tf(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_boxes = int(rng.integers(1, 500))
    n_classes = int(rng.integers(1, 9))
    boxes = clustered_boxes(rng, n_boxes, [None, 0.05, 0.1][seed % 3])
    if seed % 2:
        scores = quantized_softmax(rng, n_boxes, n_classes)
    else:
        levels = int(rng.integers(2, 12))
        scores = (rng.integers(0, levels, (n_boxes, n_classes)) / levels).astype(F32)
    s = NmsSettings(
        iou_threshold=float(rng.choice([0.0, 0.3, 0.5, 0.6, 1.0])),
        score_threshold=float(rng.choice([0.0, 0.001, 0.01, 0.2])),
        max_per_class=int(rng.choice([1, 5, 20, 100])),
        max_total=int(rng.choice([1, 7, 50, 100, 300])),
        clip_boxes=bool(seed % 4),
    )
    assert_same_as_tf(boxes, scores, s)


@pytest.mark.parametrize("seed", range(3))
def test_zoo_sized_int8_like_images_equal_tf(seed: int) -> None:
    """3000 boxes x 80 classes, score 0.001, IoU 0.5, 100/100: the zoo's setting."""
    rng = np.random.default_rng(100 + seed)
    boxes = clustered_boxes(rng, 3000, 1 / 300)
    scores = quantized_softmax(rng, 3000, 80)
    assert_same_as_tf(boxes, scores, NmsSettings())


def test_heap_order_differs_from_index_order_and_tf_agrees() -> None:
    """Equal scores where "lower box index first" keeps other boxes than TF does.

    Boxes 0, 2, 4 are one box A, 1, 3, 5 another B, 6 and 7 a third C; all score 0.5 in one
    class, three kept at most. Pushed in index order with equal keys, the heap is
    [0..7] (a push rises only past a strictly smaller parent). A pop moves the last element
    into the root's hole, which sinks along right children (ties take the right child):
    pop 0 leaves [2, 1, 6, 3, 4, 5, 7], pop 2 (suppressed by 0) leaves [6, 1, 5, 3, 4, 7],
    pop 6 (kept) leaves [5, 1, 7, 3, 4], pop 5 (kept). TF keeps 0, 6, 5; the index rule
    would keep 0, 1, 6.
    """
    same = [0.1, 0.1, 0.5, 0.5]
    boxes = np.array([same, [0.6, 0.6, 0.9, 0.9]] * 3 + [[0.0, 0.6, 0.2, 0.9]] * 2, F32)
    scores = np.full((boxes.shape[0], 1), 0.5, F32)
    s = NmsSettings(max_per_class=3, max_total=3)
    assert_same_as_tf(boxes, scores, s)
    assert select_image(boxes, scores, s).box_index.tolist() == [0, 6, 5]


# The kernel takes shortcuts that must not change a single output: the candidate scan tests
# 16 classes at a time (class counts around and across that width below), the IoU of a
# candidate with the kept boxes runs in blocks of 32 (per-class limits above that), and the
# final sort is replaced by a selection when the top scores are distinct (continuous scores)
# but not when equal scores meet at the cut (ties placed exactly at it below).


@pytest.mark.parametrize("seed", range(24))
def test_distinct_scores_and_class_counts_around_the_scan_width_equal_tf(seed: int) -> None:
    rng = np.random.default_rng(500 + seed)
    n_boxes = int(rng.integers(50, 800))
    n_classes = int(rng.choice([1, 15, 16, 17, 21, 33, 80, 91]))
    boxes = clustered_boxes(rng, n_boxes, None)
    # Sparse continuous scores: few candidates per box, as a float SSD gives.
    scores = (rng.random((n_boxes, n_classes)) ** 8).astype(F32)
    s = NmsSettings(
        iou_threshold=float(rng.choice([0.3, 0.5, 0.7])),
        score_threshold=float(rng.choice([0.001, 0.05])),
        max_per_class=int(rng.choice([31, 32, 33, 64, 100])),
        max_total=int(rng.choice([1, 50, 100, 5000])),
        clip_boxes=bool(seed % 2),
    )
    assert_same_as_tf(boxes, scores, s)


@pytest.mark.parametrize("cut", [1, 7, 20])
def test_equal_scores_at_the_cut_equal_tf(cut: int) -> None:
    """Distinct scores except a run of equal ones straddling the max_total-th place, so the
    order of the kept set depends on std::sort's own handling of equal keys."""
    rng = np.random.default_rng(cut)
    n_boxes, n_classes = 400, 12
    boxes = clustered_boxes(rng, n_boxes, None)
    scores = (rng.random((n_boxes, n_classes)) * 0.5).astype(F32)
    top = np.argsort(-scores, axis=None)[: 3 * cut + 8]
    scores.flat[top[:cut]] = F32(0.9) + F32(0.01) * np.arange(cut, 0, -1, dtype=F32)
    scores.flat[top[cut : cut + 2 * cut + 8]] = F32(0.75)  # the run across the cut
    assert_same_as_tf(boxes, scores, NmsSettings(iou_threshold=1.0, max_total=cut + 2))


def test_boxes_without_area_equal_tf() -> None:
    """A box of zero area has IoU 0 with everything, so it neither suppresses nor is
    suppressed, even under IoU threshold 0; reversed corners are the same box for TF."""
    rng = np.random.default_rng(7)
    boxes = clustered_boxes(rng, 120, 0.05)
    boxes[::5, 2] = boxes[::5, 0]  # zero width
    boxes[1::7, 1] = boxes[1::7, 3] + 0.1  # corners given reversed: the same box for TF
    scores = (rng.random((120, 3)) ** 2).astype(F32)
    for iou in (0.0, 0.5):
        assert_same_as_tf(boxes, scores, NmsSettings(iou_threshold=iou))


def test_zoo_sized_float_like_images_equal_tf() -> None:
    """3000 boxes x 80 classes with continuous scores: the selection shortcut's case."""
    rng = np.random.default_rng(321)
    boxes = clustered_boxes(rng, 3000, None)
    logits = rng.normal(0, 2, (3000, 81)).astype(F32)
    logits[:, 0] += 6.0
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores = (e / e.sum(axis=1, keepdims=True))[:, 1:].astype(F32)
    assert_same_as_tf(boxes, scores, NmsSettings())
