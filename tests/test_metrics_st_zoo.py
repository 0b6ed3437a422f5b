"""``st`` against the zoo's arithmetic (reference-pipeline.md 6b): float32 curves, float32
ground-truth scaling, model detections scaled from their normalised float32 corners.

The loop reference (tests/reference_loops.py) follows that arithmetic; here evalkit must
equal it with difference 0.0 on randomized sets built to hit the cases float64 gets
wrong - recalls that land exactly on a grid point of the 101, equal scores - and on
hand-built cases whose values are derived in the test.
"""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.metrics import evaluate
from evalkit.types import Detections, GroundTruth

from .reference_loops import st_reference
from .test_metrics_voc_st import make_dets, make_gt, random_case


def with_norm_boxes(gt: GroundTruth, dets: Detections, seed: int) -> Detections:
    """The same detections as a model gives them: float32 normalised corners alongside."""
    rng = np.random.default_rng(seed)
    w = np.array([im.width for im in gt.images], np.float64)[dets.image_index]
    h = np.array([im.height for im in gt.images], np.float64)[dets.image_index]
    x, y, bw, bh = dets.boxes_xywh_px.T
    norm = np.stack([x / w, y / h, (x + bw) / w, (y + bh) / h], axis=1)
    # Corners that land near half a pixel at 300 test tf.round's half-to-even.
    halves = rng.random(norm.shape) < 0.2
    norm[halves] = (np.round(norm[halves] * 300) + 0.5) / 300
    norm32 = np.clip(norm, 0, 1).astype(np.float32)
    return Detections(
        image_index=dets.image_index,
        category_index=dets.category_index,
        boxes_xywh_px=dets.boxes_xywh_px,
        scores=np.round(dets.scores, 2),  # equal scores, as an int8 model gives them
        boxes_xyxy_norm=norm32,
    )


@pytest.mark.parametrize("source", ["coco", "voc"])
@pytest.mark.parametrize("seed", range(40))
def test_model_detections_equal_the_zoo_arithmetic(seed: int, source: str) -> None:
    gt, dets = random_case(seed, source)  # type: ignore[arg-type]
    dets = with_norm_boxes(gt, dets, seed)
    ours = evaluate(gt, dets, protocol="st")
    ref = st_reference(gt, dets)
    assert ours.ap == ref.ap, (ours.ap, ref.ap)
    for mine, theirs in zip(ours.per_class, ref.per_class, strict=True):
        assert mine.ap == theirs.ap
        assert (mine.tp, mine.fp, mine.num_gt) == (theirs.tp, theirs.fp, theirs.num_gt)


def grid_case(n_gt: int, n_tp: int, n_fp: int) -> tuple[GroundTruth, Detections]:
    """``n_gt`` disjoint ground truths in one 300x300 image; ``n_tp`` detections exactly on
    the first ones, then ``n_fp`` on nothing, scores descending."""
    rows = [(0, 0, float(10 * (k % 25)), float(10 * (k // 25)), 5.0, 5.0) for k in range(n_gt)]
    gt = make_gt([(300, 300)], rows)
    tp_rows = rows[:n_tp]
    fp_rows = [(0, 0, 250.0 + k, 290.0, 1.0, 1.0) for k in range(n_fp)]
    scores = list(np.linspace(0.99, 0.5, n_tp + n_fp))
    return gt, make_dets(tp_rows + fp_rows, scores)


def test_recall_on_a_grid_point_uses_the_float32_value() -> None:
    # 55 ground truths, 11 true positives then one false positive. rec = 11/55 = 0.2 at the
    # TP and the FP; prec = 1 at the 11th detection, 11/12 after the FP.
    # In float64 rec is exactly the grid point 0.2 (linspace's 0.2 is the same double), so
    # np.interp at 0.2 takes the rightmost of the repeated 0.2 values: 11/12. In float32,
    # 11/55 is 0.2000000030: the grid point 0.2 falls just before it, on the segment from
    # (10/55, 1) to (rec11, 1) - value 1. Every other grid point is the same in both: from
    # 0.21 on the curve is the straight line to (1, 0) from (rec, 11/12).
    gt, dets = grid_case(55, 11, 1)
    result = evaluate(gt, dets, protocol="st")
    rec = float(np.float32(11) / np.float32(55))
    prec = float(np.float32(11) / (np.float32(1) + np.float32(11)))
    assert rec > 0.2
    grid = np.linspace(0, 1, 101)
    y = np.where(grid <= 0.2, 1.0, prec + (grid - rec) * (0.0 - prec) / (1.0 - rec))
    expected = float(np.sum(np.diff(grid) * (y[1:] + y[:-1]) / 2.0))
    assert result.ap == pytest.approx(expected, abs=1e-15)
    # Where float64 would have gone: y(0.2) = 11/12 instead of 1, one trapezoid each side.
    y64 = y.copy()
    y64[20] = 11 / 12
    float64_value = float(np.sum(np.diff(grid) * (y64[1:] + y64[:-1]) / 2.0))
    assert result.ap - float64_value == pytest.approx(0.01 * (1 - 11 / 12), abs=1e-7)
    assert result.ap == st_reference(gt, dets).ap


@pytest.mark.parametrize(("n_gt", "n_tp"), [(10, 3), (20, 7), (55, 11), (100, 30), (40, 28)])
def test_grid_coincidences_equal_the_reference(n_gt: int, n_tp: int) -> None:
    for n_fp in (0, 1, 3):
        gt, dets = grid_case(n_gt, n_tp, n_fp)
        assert evaluate(gt, dets, protocol="st").ap == st_reference(gt, dets).ap


def test_ground_truth_scaling_is_float32() -> None:
    # A box at x = 333 in a 999-wide image: the zoo multiplies float32(333) by
    # float32(300 / 999) in float32, which is not 333 * 300 / 999 = 100 in float64.
    from evalkit.metrics.st import st_ground_truth_xyxy

    gt = make_gt([(999, 777)], [(0, 0, 333.0, 259.0, 111.0, 100.0)])
    _, corners = st_ground_truth_xyxy(gt, 300)
    sx, sy = np.float32(300 / 999), np.float32(300 / 777)
    expected = [
        np.float32(333) * sx,
        np.float32(259) * sy,
        np.float32(444) * sx,
        np.float32(359) * sy,
    ]
    assert corners[0].tolist() == [float(v) for v in expected]
    assert corners.dtype == np.float64  # float32 values, held as doubles for the IoU


def test_model_detections_round_from_float32_corners() -> None:
    # A normalised corner c with c * 300 = k + 0.5 exactly in float32 rounds half to even;
    # going through pixels (c * W / W * 300 in float64) can land a hair off the half.
    gt = make_gt([(640, 480)], [(0, 0, 10.0, 10.0, 100.0, 100.0)])
    norm = np.array([[np.float32(2.5 / 300), 0.1, 0.5, 0.5]], np.float32)
    dets = Detections(
        image_index=np.array([0]),
        category_index=np.array([0]),
        boxes_xywh_px=np.array([[norm[0, 0] * 640.0, 48.0, 0.5 * 640, 0.5 * 480]]),
        scores=np.array([0.9]),
        boxes_xyxy_norm=norm,
    )
    from evalkit.metrics.st import st_detections_xyxy

    got = st_detections_xyxy(gt, dets, 300)
    assert got[0].tolist() == [float(np.round(v * np.float32(300))) for v in norm[0]]
