"""Combined NMS: parity with the loop reference, hand-derived cases, properties, bad input.

The reference (``tests/nms_reference.py``) is written one box at a time from TF's kernel
rules; every randomized workload must give the same kept list (box index, class, score,
order and returned corners) from both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalkit.errors import InputError
from evalkit.postprocess.nms import (
    NmsSelection,
    NmsSettings,
    combined_nms,
    nms_image,
    select_batch,
    select_image,
)
from evalkit.types import DecodedBoxes

from .nms_reference import reference_nms, tf_iou

F32_THRESHOLD = np.float32(0.001)


def _rows(selection: NmsSelection) -> list[tuple[int, int, float]]:
    return list(
        zip(
            selection.box_index.tolist(),
            selection.class_index.tolist(),
            selection.scores.tolist(),
            strict=True,
        )
    )


def assert_matches_reference(boxes: Any, scores: Any, settings_: NmsSettings) -> None:
    """Ours and the reference agree on every image: rows, order and returned corners."""
    ours = select_batch(DecodedBoxes(boxes, scores), settings_)
    ref = reference_nms(
        boxes,
        scores,
        score_threshold=settings_.score_threshold,
        iou_threshold=settings_.iou_threshold,
        max_per_class=settings_.max_per_class,
        max_total=settings_.max_total,
        clip_boxes=settings_.clip_boxes,
    )
    assert len(ours) == len(ref)
    for image, (mine, theirs) in enumerate(zip(ours, ref, strict=True)):
        expected = [(d.box, d.class_index, d.score) for d in theirs]
        assert _rows(mine) == expected, f"image {image}: {_rows(mine)[:8]} vs {expected[:8]}"
        corners = np.array([d.corners for d in theirs], dtype=np.float32).reshape(-1, 4)
        np.testing.assert_array_equal(mine.boxes_xyxy_norm, corners)


# --- randomized workloads -------------------------------------------------------------------


def random_workload(seed: int) -> tuple[Any, Any, NmsSettings]:
    """Boxes and scores with the awkward cases mixed in: ties, duplicates, zero areas,
    flipped corners, boxes past [0, 1], scores at exactly the threshold."""
    rng = np.random.default_rng(seed)
    n_images = int(rng.integers(1, 4))
    n_boxes = int(rng.integers(0, 90))
    n_classes = int(rng.integers(1, 6))
    centre = rng.random((n_images, n_boxes, 2)) * 1.2 - 0.1
    size = rng.random((n_images, n_boxes, 2)) * rng.choice([0.1, 0.4, 0.8])
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
    if seed % 4 == 0:  # coarse grid: duplicate boxes and zero areas
        boxes = np.round(boxes * 4) / 4
    if n_boxes >= 4:
        boxes[:, 1] = boxes[:, 0]  # an exact duplicate
        boxes[:, 2, 2] = boxes[:, 2, 0]  # zero width
    flip = rng.random((n_images, n_boxes)) < 0.3
    boxes[flip] = boxes[flip][:, [2, 3, 0, 1]]  # y1 > y2 and x1 > x2: the same boxes
    if seed % 3 == 0:  # few distinct values: many equal scores
        scores = rng.choice([0.0, 0.001, 0.3, 0.5, 0.9], size=(n_images, n_boxes, n_classes))
    else:
        scores = rng.random((n_images, n_boxes, n_classes)) ** 3
        scores[rng.random(scores.shape) < 0.1] = F32_THRESHOLD
    if seed % 7 == 0:
        scores *= 0.0009  # everything below the threshold
    thresholds = [0.001, 0.001, 0.2, 0.0]
    if seed % 5 == 0:  # logit-like scores: negatives, and -0.0 tying with 0.0
        scores = np.round(rng.normal(0, 1, scores.shape), 1)
        zeros = scores == 0
        scores[zeros] = rng.choice([-0.0, 0.0], int(zeros.sum()))
        thresholds = [-1.0, -0.5, 0.0]
    chosen = NmsSettings(
        iou_threshold=float(rng.choice([0.0, 0.3, 0.5, 0.5, 0.7, 1.0])),
        score_threshold=float(rng.choice(thresholds)),
        max_per_class=int(rng.choice([1, 3, 10, 100])),
        max_total=int(rng.choice([1, 5, 20, 100])),
        clip_boxes=bool(rng.random() < 0.7),
    )
    return boxes.astype(np.float32), scores.astype(np.float32), chosen


@pytest.mark.parametrize("seed", range(80))
def test_random_workloads_match_reference(seed: int) -> None:
    boxes, scores, chosen = random_workload(seed)
    assert_matches_reference(boxes, scores, chosen)


@pytest.mark.parametrize("seed", range(4))
def test_many_survivors_and_rounds_match_reference(seed: int) -> None:
    """More than 100 survivors per class, more candidates than one round takes, clusters
    that suppress across rounds, and a per-class limit above 100."""
    rng = np.random.default_rng(1000 + seed)
    n_boxes, n_classes = 420, 2
    centres = rng.random((12, 2))
    centre = centres[rng.integers(0, 12, n_boxes)] + rng.normal(0, 0.05, (n_boxes, 2))
    size = np.where(rng.random((n_boxes, 1)) < 0.5, 0.02, 0.12) * (0.5 + rng.random((n_boxes, 2)))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)[None]
    scores = np.round(rng.random((1, n_boxes, n_classes)), 2)  # many ties
    chosen = NmsSettings(max_per_class=[100, 100, 150, 400][seed], max_total=[100, 300][seed % 2])
    assert_matches_reference(boxes.astype(np.float32), scores.astype(np.float32), chosen)


# --- hand-derived cases ---------------------------------------------------------------------


def _one_class(boxes: Any, scores: Sequence[float], **kwargs: Any) -> NmsSelection:
    """NMS of one image with a single class."""
    return select_image(
        np.array(boxes, np.float32), np.array(scores, np.float32)[:, None], NmsSettings(**kwargs)
    )


def test_iou_exactly_at_threshold_is_kept() -> None:
    # A = unit square, B = its lower half: inter 0.5, union 1 + 0.5 - 0.5 = 1, IoU 0.5 exactly.
    # TF drops a box only when IoU > threshold, so at 0.5 both stay; at 0.49 B goes.
    boxes = [[0, 0, 1, 1], [0, 0, 1, 0.5]]
    assert _one_class(boxes, [0.9, 0.8]).box_index.tolist() == [0, 1]
    assert _one_class(boxes, [0.9, 0.8], iou_threshold=0.49).box_index.tolist() == [0]


def test_greedy_chain_keeps_what_a_suppressed_box_would_have_suppressed() -> None:
    # Unit-height strips shifted by 0.25: IoU(A, B) = IoU(B, C) = 0.75 / 1.25 = 0.6 > 0.5 and
    # IoU(A, C) = 0.5 / 1.5 = 1/3. Greedy: A kept, B suppressed by A, C kept (B is gone).
    boxes = [[0, 0, 1, 1], [0.25, 0, 1.25, 1], [0.5, 0, 1.5, 1]]
    got = _one_class(boxes, [0.9, 0.8, 0.7], clip_boxes=False)
    assert got.box_index.tolist() == [0, 2]


def test_scores_at_the_threshold_are_not_candidates() -> None:
    # TF: score > float32(score_threshold), strictly. The next float32 up is a candidate.
    above = float(np.nextafter(F32_THRESHOLD, np.float32(1)))
    got = _one_class([[0, 0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6]], [float(F32_THRESHOLD), above])
    assert got.box_index.tolist() == [1]
    # float64 0.001 lies below float32(0.001): compared in float64 it would pass.
    assert float(F32_THRESHOLD) > 0.001
    # float64 input is rounded to float32 first (TF's op takes float32): 0.00100000006 lies
    # above float32(0.001) = 0.00100000004750 but rounds to it (the next float32 is
    # 0.00100000016392), so it is not a candidate.
    rounded = np.array([[0.00100000006], [0.002]], np.float64)
    assert rounded[0, 0] > float(F32_THRESHOLD)
    assert np.float32(rounded[0, 0]) == F32_THRESHOLD
    got = select_image(np.array([[0, 0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6]]), rounded, NmsSettings())
    assert got.box_index.tolist() == [1]


def test_flipped_corners_are_the_same_box() -> None:
    # (x2, y2, x1, y1) describes the unit square too: IoU 1 with the first, suppressed.
    got = _one_class([[0, 0, 1, 1], [1, 1, 0, 0]], [0.9, 0.8])
    assert got.box_index.tolist() == [0]


def test_zero_area_boxes_neither_suppress_nor_are_suppressed() -> None:
    # TF IOU() returns 0 when either area is <= 0: two identical zero-width boxes both stay,
    # and so does a unit square containing them.
    boxes = [[0.2, 0.2, 0.2, 0.5], [0.2, 0.2, 0.2, 0.5], [0, 0, 1, 1]]
    assert _one_class(boxes, [0.9, 0.8, 0.7]).box_index.tolist() == [0, 1, 2]


def test_equal_scores_pop_from_the_heap() -> None:
    # Three equal scores pushed in box order 0, 1, 2: the heap keeps 0 on top (a push only
    # rises past a strictly smaller parent); popping it moves 1 up (the last element, 2,
    # sinks into the hole and does not rise past an equal). So 0 is kept, 1 suppressed by
    # it, 2 kept.
    got = _one_class([[0.5, 0.5, 0.9, 0.9], [0.5, 0.5, 0.9, 0.9], [0, 0, 0.1, 0.1]], [0.7] * 3)
    assert got.box_index.tolist() == [0, 2]


def test_classes_are_suppressed_separately_and_share_anchors() -> None:
    # The same box scores in two classes: no argmax per anchor, both reported. Within
    # class 0 the duplicate anchor 1 is suppressed by anchor 0.
    boxes = np.array([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]], np.float32)
    scores = np.array([[0.9, 0.6], [0.8, 0.0]], np.float32)
    got = select_image(boxes, scores, NmsSettings())
    assert got.box_index.tolist() == [0, 0]
    assert got.class_index.tolist() == [0, 1]


def test_per_class_limit_and_total_limit() -> None:
    # Five disjoint boxes in class 0 (scores .9 .8 .7 .6 .5) and two in class 1 (.85 .55):
    # max_per_class=3 keeps .9 .8 .7 of class 0; max_total=4 then keeps .9 .85 .8 .7.
    boxes = np.array([[i / 10, 0, i / 10 + 0.05, 0.05] for i in range(7)], np.float32)
    scores = np.zeros((7, 2), np.float32)
    scores[:5, 0] = [0.9, 0.8, 0.7, 0.6, 0.5]
    scores[5:, 1] = [0.85, 0.55]
    got = select_image(boxes, scores, NmsSettings(max_per_class=3, max_total=4))
    assert got.scores.tolist() == pytest.approx([0.9, 0.85, 0.8, 0.7])
    assert got.class_index.tolist() == [0, 1, 0, 0]
    assert got.box_index.tolist() == [0, 5, 1, 2]


def test_equal_scores_across_classes_in_std_sort_order() -> None:
    # Disjoint boxes, all scoring 0.5, in a table of 2 slots per class:
    # [c0 b1, -, c1 b1, -, c2 b0, -]. std::sort of 6 elements is an insertion sort (under
    # 16), which is stable: class 0, then class 1, then class 2; max_total=2 cuts class 2.
    boxes = np.array([[0, 0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6]], np.float32)
    scores = np.array([[0.0, 0.0, 0.5], [0.5, 0.5, 0.0]], np.float32)
    got = select_image(boxes, scores, NmsSettings(max_total=2))
    assert got.class_index.tolist() == [0, 1]
    assert got.box_index.tolist() == [1, 1]


def test_clipping_applies_to_returned_corners_only() -> None:
    # A = unit square, B = [-1, 0, 1, 1]: inter 1, union 2 + 1 - 1 = 2, IoU 0.5, not > 0.5,
    # so B stays; clipped it would equal A (IoU 1), but IoU uses the unclipped corners.
    boxes = [[0, 0, 1, 1], [-1, 0, 1, 1]]
    got = _one_class(boxes, [0.9, 0.8])
    assert got.box_index.tolist() == [0, 1]
    np.testing.assert_array_equal(got.boxes_xyxy_norm[1], [0, 0, 1, 1])
    unclipped = _one_class(boxes, [0.9, 0.8], clip_boxes=False)
    np.testing.assert_array_equal(unclipped.boxes_xyxy_norm[1], [-1, 0, 1, 1])


@pytest.mark.parametrize(("n_boxes", "n_classes"), [(0, 3), (5, 0), (4, 2)])
def test_nothing_above_threshold_gives_empty_typed_output(n_boxes: int, n_classes: int) -> None:
    boxes = np.tile(np.array([0, 0, 0.5, 0.5], np.float32), (n_boxes, 1))
    scores = np.full((n_boxes, n_classes), 0.0005, np.float32)
    got = nms_image(boxes, scores)
    assert len(got) == 0
    assert got.boxes_xyxy_norm.shape == (0, 4)
    assert got.boxes_xyxy_norm.dtype == np.float32
    assert got.scores.dtype == np.float32
    assert got.class_index.dtype == np.int64


def test_batch_equals_images_one_by_one_and_keyword_api() -> None:
    boxes, scores, _ = random_workload(5)
    boxes, scores = np.concatenate([boxes] * 3), np.concatenate([scores] * 3)
    chosen = NmsSettings(max_total=7)
    batch = combined_nms(DecodedBoxes(boxes, scores), max_total=7)
    assert len(batch) == boxes.shape[0]
    for i, detections in enumerate(batch):
        single = nms_image(boxes[i], scores[i], chosen)
        np.testing.assert_array_equal(detections.class_index, single.class_index)
        np.testing.assert_array_equal(detections.scores, single.scores)
        np.testing.assert_array_equal(detections.boxes_xyxy_norm, single.boxes_xyxy_norm)


# --- properties -----------------------------------------------------------------------------

coordinate = st.sampled_from([0.0, 0.125, 0.25, 0.375, 0.5, 0.6, 0.75, 1.0])
score_value = st.sampled_from([0.0, 0.001, 0.002, 0.3, 0.5, 0.5, 0.9])


@st.composite
def workloads(draw: st.DrawFn) -> tuple[Any, Any, NmsSettings]:
    """Small workloads on a coarse grid, so that ties, duplicates and zero areas are common."""
    n_boxes = draw(st.integers(0, 14))
    n_classes = draw(st.integers(1, 3))
    boxes = np.array(
        draw(
            st.lists(
                st.lists(coordinate, min_size=4, max_size=4), min_size=n_boxes, max_size=n_boxes
            )
        ),
        np.float32,
    ).reshape(n_boxes, 4)
    scores = np.array(
        draw(st.lists(score_value, min_size=n_boxes * n_classes, max_size=n_boxes * n_classes)),
        np.float32,
    ).reshape(n_boxes, n_classes)
    chosen = NmsSettings(
        iou_threshold=draw(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])),
        max_per_class=draw(st.integers(1, 6)),
        max_total=draw(st.integers(1, 10)),
    )
    return boxes, scores, chosen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads())
def test_hypothesis_matches_reference(workload: tuple[Any, Any, NmsSettings]) -> None:
    boxes, scores, chosen = workload
    assert_matches_reference(boxes[None], scores[None], chosen)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads())
def test_invariants(workload: tuple[Any, Any, NmsSettings]) -> None:
    boxes, scores, chosen = workload
    got = select_image(boxes, scores, chosen)
    # Sorted by descending score, at most max_total, at most max_per_class per class.
    assert np.all(np.diff(got.scores) <= 0)
    assert len(got) <= chosen.max_total
    assert np.all(np.bincount(got.class_index, minlength=1) <= chosen.max_per_class)
    assert np.all(got.scores > np.float32(chosen.score_threshold))
    # No two kept boxes of one class overlap by more than the threshold.
    threshold = np.float32(chosen.iou_threshold)
    for a in range(len(got)):
        for b in range(a + 1, len(got)):
            if got.class_index[a] == got.class_index[b]:
                box_a = tuple(boxes[got.box_index[a]])
                box_b = tuple(boxes[got.box_index[b]])
                assert not tf_iou(box_a, box_b) > threshold


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads())
def test_idempotent(workload: tuple[Any, Any, NmsSettings]) -> None:
    """NMS of NMS output (each kept row a box scoring only in its class) keeps every row;
    equal scores may come out in another order (TF's heap and unstable sort)."""
    boxes, scores, chosen = workload
    first = select_image(boxes, scores, chosen)
    again_scores = np.zeros((len(first), max(scores.shape[1], 1)), np.float32)
    again_scores[np.arange(len(first)), first.class_index] = first.scores
    # The grid lies in [0, 1], so clipping left the corners as they were.
    second = select_image(first.boxes_xyxy_norm, again_scores, chosen)
    assert sorted(second.box_index.tolist()) == list(range(len(first)))
    np.testing.assert_array_equal(second.scores, first.scores)
    np.testing.assert_array_equal(second.class_index, first.class_index[second.box_index])
    np.testing.assert_array_equal(second.boxes_xyxy_norm, first.boxes_xyxy_norm[second.box_index])
    if np.unique(first.scores).size == len(first):  # distinct scores: the very same order
        assert second.box_index.tolist() == list(range(len(first)))


# --- settings and bad input -----------------------------------------------------------------


def test_settings_defaults_and_record() -> None:
    record = NmsSettings().to_dict()
    assert record["iou_threshold"] == 0.5
    assert record["score_threshold"] == 0.001
    assert record["max_per_class"] == 100
    assert record["max_total"] == 100
    assert record["clip_boxes"] is True
    assert record["algorithm"] == "tf.image.combined_non_max_suppression"
    assert json.loads(json.dumps(record)) == record
    with pytest.raises(AttributeError):
        NmsSettings().iou_threshold = 0.4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iou_threshold": 1.5}, "iou_threshold must be in [0, 1], got 1.5"),
        ({"iou_threshold": -0.1}, "iou_threshold must be in [0, 1]"),
        ({"score_threshold": float("nan")}, "score_threshold must be a number >= -1"),
        ({"score_threshold": -1.5}, "score_threshold must be a number >= -1"),
        ({"max_per_class": 0}, "max_per_class must be a positive integer, got 0"),
        ({"max_total": 2.5}, "max_total must be a positive integer, got 2.5"),
        ({"max_total": True}, "max_total must be a positive integer, got True"),
    ],
)
def test_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        NmsSettings(**kwargs)


GOOD_BOXES = np.zeros((2, 5, 4), np.float32)
GOOD_SCORES = np.zeros((2, 5, 3), np.float32)


@pytest.mark.parametrize(
    ("boxes", "scores", "message"),
    [
        (
            np.zeros((5, 4), np.float32),
            GOOD_SCORES,
            r"DecodedBoxes.boxes_xyxy_norm: expected shape \(N, B, 4\), got \(5, 4\)",
        ),
        (
            np.zeros((2, 5, 3), np.float32),
            GOOD_SCORES,
            r"DecodedBoxes.boxes_xyxy_norm: expected shape \(N, B, 4\), got \(2, 5, 3\)",
        ),
        (
            GOOD_BOXES,
            np.zeros((2, 6, 3), np.float32),
            r"DecodedBoxes.scores: expected shape \(N, B, C\) = \(2, 5, C\) .* got \(2, 6, 3\)",
        ),
        (
            GOOD_BOXES,
            np.zeros((1, 5, 3), np.float32),
            r"DecodedBoxes.scores: expected shape .* got \(1, 5, 3\)",
        ),
        (
            GOOD_BOXES,
            np.zeros((2, 5), np.float32),
            r"DecodedBoxes.scores: expected shape .* got \(2, 5\)",
        ),
        (
            GOOD_BOXES,
            np.where(np.arange(30).reshape(2, 5, 3) == 7, np.nan, 0.0),
            r"DecodedBoxes.scores: expected numbers, got NaN at index \(0, 2, 1\) \(1 NaN",
        ),
        (
            np.where(np.arange(40).reshape(2, 5, 4) == 9, np.nan, 0.0),
            GOOD_SCORES,
            r"DecodedBoxes.boxes_xyxy_norm: expected finite corners, got nan at index \(0, 2, 1\)",
        ),
        (
            np.where(np.arange(40).reshape(2, 5, 4) == 0, np.inf, 0.0),
            GOOD_SCORES,
            r"DecodedBoxes.boxes_xyxy_norm: expected finite corners, got inf",
        ),
        (
            GOOD_BOXES,
            GOOD_SCORES.astype(str),
            r"DecodedBoxes.scores: expected a real \(N, B, C\) array, got dtype <U",
        ),
        (
            GOOD_BOXES.astype(bool),
            GOOD_SCORES,
            r"DecodedBoxes.boxes_xyxy_norm: expected a real \(N, B, 4\) array, got dtype bool",
        ),
    ],
)
def test_bad_batch_input(boxes: Any, scores: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        combined_nms(DecodedBoxes(boxes, scores))


def test_bad_single_image_input() -> None:
    with pytest.raises(InputError, match=r"^scores: expected shape \(B, C\) = \(5, C\)"):
        nms_image(np.zeros((5, 4), np.float32), np.zeros((4, 3), np.float32))
    with pytest.raises(InputError, match=r"^boxes_xyxy_norm: expected shape \(B, 4\), got \(5,\)"):
        nms_image(np.zeros(5, np.float32), np.zeros((5, 3), np.float32))


def test_more_classes_than_the_radix_sort_covers() -> None:
    # 70000 classes overflow the 16-bit class digit: the 64-bit sort takes over. Class 69999
    # holds two disjoint boxes (.9, .8) and class 3 a third (.85), so the order interleaves.
    boxes = np.array([[0, 0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6], [0.2, 0.2, 0.3, 0.3]], np.float32)
    scores = np.zeros((3, 70000), np.float32)
    scores[0, 69999], scores[1, 69999], scores[2, 3] = 0.9, 0.8, 0.85
    got = select_image(boxes, scores, NmsSettings())
    assert got.class_index.tolist() == [69999, 3, 69999]
    assert got.box_index.tolist() == [0, 2, 1]


def test_infinite_scores_of_both_signs_are_not_taken_for_nan() -> None:
    """Their sum is NaN (the quick test for a NaN score); the exact test then finds none."""
    scores = np.zeros((1, 5, 3), np.float32)
    scores[0, 1, 0], scores[0, 3, 2] = np.inf, -np.inf
    boxes = np.tile(np.array([0.1, 0.1, 0.4, 0.4], np.float32), (1, 5, 1))
    (out,) = select_batch(DecodedBoxes(boxes, scores), NmsSettings())
    assert out.scores.tolist() == [np.inf]
