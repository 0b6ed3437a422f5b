"""voc07, voc12 and st against plain loop references, hand-derived cases and invariants.

The references (``reference_loops.py``) are written from reference-pipeline.md sections 6
and 8 with one Python loop per detection; evalkit's engine is vectorised. Agreement on
randomized sets that hit every rule (difficult, crowd, zero-width, empty images, classes
without ground truth, equal scores, duplicates, IoU exactly at the threshold, touching
boxes) is the main evidence that the vectorised rules are the written ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import numpy as np
import pytest

from evalkit.metrics import evaluate
from evalkit.types import Category, Detections, EvalResult, GroundTruth, ImageRecord

from .reference_loops import (
    RefResult,
    interp,
    iou_st,
    iou_voc,
    st_reference,
    voc_reference,
)

Source = Literal["coco", "voc"]
Protocol = Literal["voc07", "voc12", "st"]
PROTOCOLS: tuple[Protocol, ...] = ("voc07", "voc12", "st")
TOL = 1e-12
SEEDS = range(40)
# At input size 300, 300x300 and 600x600 make st's scaling exact (identity or halving), so
# IoUs built to be exactly 0.5 in pixels stay exact in model-input pixels; the other sizes
# (and inputs 320, 256) give st fractional ground truth and genuine rounding.
SIZES = ((300, 300), (600, 600), (150, 300), (640, 480), (500, 375), (333, 500))

Row = tuple[int, int, float, float, float, float]  # image, class, x, y, w, h


# --------------------------------------------------------------------------------------
# Building records
# --------------------------------------------------------------------------------------


def make_gt(
    images: list[tuple[int, int]],
    rows: list[Row],
    *,
    num_classes: int = 1,
    source: Source = "coco",
    difficult: list[bool] | None = None,
    iscrowd: list[bool] | None = None,
) -> GroundTruth:
    """A GroundTruth from image sizes and ``(image, class, x, y, w, h)`` rows."""
    n = len(rows)
    return GroundTruth(
        images=tuple(
            ImageRecord(
                image_id=i + 1 if source == "coco" else f"{i:06d}",
                file_name=f"{i:06d}.jpg",
                width=w,
                height=h,
            )
            for i, (w, h) in enumerate(images)
        ),
        categories=tuple(Category(id=c, name=f"class{c}") for c in range(1, num_classes + 1)),
        image_index=np.array([r[0] for r in rows], np.int64),
        category_index=np.array([r[1] for r in rows], np.int64),
        boxes_xywh_px=np.array([r[2:] for r in rows], np.float64).reshape(n, 4),
        area=np.array([r[4] * r[5] for r in rows], np.float64),
        iscrowd=np.array(iscrowd if iscrowd is not None else [False] * n, bool),
        difficult=np.array(difficult if difficult is not None else [False] * n, bool),
        annotation_id=np.arange(1, n + 1, dtype=np.int64),
        source=source,
    )


def make_dets(rows: list[Row], scores: list[float]) -> Detections:
    """Detections from ``(image, class, x, y, w, h)`` rows and their scores."""
    n = len(rows)
    return Detections(
        image_index=np.array([r[0] for r in rows], np.int64),
        category_index=np.array([r[1] for r in rows], np.int64),
        boxes_xywh_px=np.array([r[2:] for r in rows], np.float64).reshape(n, 4),
        scores=np.array(scores, np.float64),
    )


def gt_row(gt: GroundTruth, j: int) -> Row:
    """Ground-truth row ``j`` as ``(image, class, x, y, w, h)``."""
    x, y, w, h = (float(v) for v in gt.boxes_xywh_px[j])
    return int(gt.image_index[j]), int(gt.category_index[j]), x, y, w, h


def det_row(dets: Detections, i: int) -> Row:
    """Detection row ``i`` as ``(image, class, x, y, w, h)``."""
    x, y, w, h = (float(v) for v in dets.boxes_xywh_px[i])
    return int(dets.image_index[i]), int(dets.category_index[i]), x, y, w, h


def reference(
    protocol: Protocol,
    gt: GroundTruth,
    dets: Detections,
    iou: float = 0.5,
    input_size: int = 300,
) -> RefResult:
    """The loop reference for ``protocol``."""
    if protocol == "st":
        return st_reference(gt, dets, iou_threshold=iou, input_size=input_size)
    return voc_reference(gt, dets, protocol, iou_threshold=iou)


def describe(result: EvalResult, ref: RefResult) -> str:
    """Both vectors side by side, so a parity failure shows where the two part ways."""
    lines = [f"mAP evalkit={result.ap!r} reference={ref.ap!r}"]
    for ours, theirs in zip(result.per_class, ref.per_class, strict=True):
        lines.append(
            f"  {ours.name}: ap {ours.ap!r} vs {theirs.ap!r}; tp {ours.tp} vs {theirs.tp}; "
            f"fp {ours.fp} vs {theirs.fp}; num_gt {ours.num_gt} vs {theirs.num_gt}"
        )
    return "\n".join(lines)


def assert_matches_reference(result: EvalResult, ref: RefResult) -> None:
    """mAP and every per-class AP within 1e-12 (``st``: identical, difference 0.0), identical
    exclusions and TP/FP/GT counts."""
    message = describe(result, ref)
    tol = 0.0 if result.protocol == "st" else TOL
    assert len(result.per_class) == len(ref.per_class), message
    for ours, theirs in zip(result.per_class, ref.per_class, strict=True):
        assert (ours.ap is None) == (theirs.ap is None), message
        if ours.ap is not None and theirs.ap is not None:
            assert abs(ours.ap - theirs.ap) <= tol, message
        assert (ours.tp, ours.fp, ours.num_gt) == (theirs.tp, theirs.fp, theirs.num_gt), message
    assert abs(result.ap - ref.ap) <= tol, message


def same_result(a: EvalResult, b: EvalResult) -> bool:
    """Bit-identical mAP, per-class APs and counts (for the invariance properties)."""
    return a.ap == b.ap and [(c.ap, c.tp, c.fp, c.num_gt) for c in a.per_class] == [
        (c.ap, c.tp, c.fp, c.num_gt) for c in b.per_class
    ]


# --------------------------------------------------------------------------------------
# Randomized sets
# --------------------------------------------------------------------------------------


class CaseBuilder:
    """Draws one randomized evaluation set; every choice comes from one seeded generator."""

    def __init__(self, seed: int, source: Source) -> None:
        self.rng = np.random.default_rng([seed, 0 if source == "coco" else 1])
        self.source = source
        self.grid = str(self.rng.choice(["int", "quarter", "float"]))
        if source == "voc":
            self.grid = "int"  # VOC annotations are whole pixels; detections vary below
        self.det_grid = str(self.rng.choice(["int", "quarter", "float"]))
        self.score_mode = str(self.rng.choice(["ties", "continuous", "mixed"]))
        self.num_classes = int(self.rng.integers(1, 5))
        # Some classes never get ground truth (excluded from the mean; detections on them).
        size = int(self.rng.integers(1, self.num_classes + 1))
        self.gt_classes = [int(k) for k in self.rng.choice(self.num_classes, size, replace=False)]
        self.images: list[tuple[int, int]] = []
        self.gt_rows: list[Row] = []
        self.difficult: list[bool] = []
        self.crowd: list[bool] = []
        self.det_rows: list[Row] = []
        self.scores: list[float] = []

    def q(self, value: float, grid: str) -> float:
        """Snap a coordinate to the grid (whole pixels, quarters, or left continuous)."""
        if grid == "int":
            return float(round(value))
        if grid == "quarter":
            return round(value * 4) / 4
        return float(value)

    def score(self) -> float:
        """A score; the coarse grid makes many exact ties."""
        if self.score_mode == "ties" or (self.score_mode == "mixed" and self.rng.random() < 0.5):
            return int(self.rng.integers(0, 6)) / 5
        return float(self.rng.random())

    def gt_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """A ground-truth box; some have +1 width 3s (a shift by s then gives IoU 0.5) and
        some COCO ones zero width or height, some VOC ones are one pixel at the origin."""
        rng = self.rng
        if rng.random() < 0.3:
            w = 3.0 * int(rng.integers(1, 9)) - 1.0
        else:
            w = self.q(rng.uniform(0, 80), self.grid)
        h = self.q(rng.uniform(0, 80), self.grid)
        if self.source == "coco" and rng.random() < 0.1:
            if rng.random() < 0.5:
                w = 0.0
            else:
                h = 0.0
        x = self.q(rng.uniform(0, width - w - 1), self.grid)
        y = self.q(rng.uniform(0, height - h - 1), self.grid)
        if self.source == "voc" and rng.random() < 0.03:
            x = y = w = h = 0.0  # xmin = xmax = 1: st drops it (its corners sum to 0)
        return x, y, w, h

    def add_det(self, image: int, k: int, box: tuple[float, float, float, float]) -> None:
        """Append one detection (clipped at the image origin, as NMS output is)."""
        x, y, w, h = box
        self.det_rows.append((image, k, max(x, 0.0), max(y, 0.0), max(w, 0.0), max(h, 0.0)))
        self.scores.append(self.score())

    def dets_for(self, image: int, k: int, box: tuple[float, float, float, float]) -> None:
        """Detections aimed at one ground truth: copies, duplicates, jitter, a shift that
        makes the +1 IoU exactly 0.5, edge-to-edge neighbours, and wrong classes."""
        rng = self.rng
        x, y, w, h = box
        if rng.random() < 0.15:
            k = int(rng.integers(self.num_classes))
        mode = int(rng.integers(6))
        if mode == 0:
            self.add_det(image, k, box)
        elif mode == 1:  # duplicates: the second is an FP (or ignored on a difficult one)
            for _ in range(int(rng.integers(2, 4))):
                self.add_det(image, k, box)
        elif mode == 2:
            dx, dy, dw, dh = (float(v) for v in rng.normal(0, 3, 4))
            g = self.det_grid
            self.add_det(
                image,
                k,
                (self.q(x + dx, g), self.q(y + dy, g), self.q(w + dw, g), self.q(h + dh, g)),
            )
        elif mode == 3:  # IoU (a - s)/(a + s) with a = w + 1: exactly 0.5 when a = 3s
            s = (w + 1) / 3
            self.add_det(image, k, (x + s, y, w, h))
        elif mode == 4:  # touching, half a pixel apart, one pixel apart, half overlapping
            gap = float(rng.choice([0.0, 0.5, 1.0, -0.5]))
            self.add_det(image, k, (x + w + gap, y, self.q(rng.uniform(0, 20), "int"), h))
        # mode 5: missed
        if rng.random() < 0.05:
            self.add_det(image, k, (0.0, 0.0, 0.25, 0.25))  # rounds to all zeros in st

    def build(self) -> tuple[GroundTruth, Detections]:
        """The ground truth and the (shuffled) detections of one set."""
        rng = self.rng
        for image in range(int(rng.integers(1, 7))):
            width, height = SIZES[int(rng.integers(len(SIZES)))]
            self.images.append((width, height))
            n_gt = 0 if rng.random() < 0.2 else int(rng.integers(1, 6))
            for _ in range(n_gt):
                k = int(rng.choice(self.gt_classes))
                box = self.gt_box(width, height)
                # Now and then the same box twice (flags drawn apart): equal IoUs, where
                # only "the first ground truth wins" decides, e.g. difficult or not.
                for _ in range(2 if rng.random() < 0.1 else 1):
                    self.gt_rows.append((image, k, *box))
                    self.crowd.append(self.source == "coco" and bool(rng.random() < 0.2))
                    self.difficult.append(self.source == "voc" and bool(rng.random() < 0.25))
                self.dets_for(image, k, box)
            for _ in range(int(rng.integers(0, 4))):  # background FPs, any class
                k = int(rng.integers(self.num_classes))
                bw, bh = self.q(rng.uniform(0, 60), "int"), self.q(rng.uniform(0, 60), "int")
                bx = self.q(rng.uniform(0, width - bw), self.det_grid)
                by = self.q(rng.uniform(0, height - bh), self.det_grid)
                self.add_det(image, k, (bx, by, bw, bh))
        gt = make_gt(
            self.images,
            self.gt_rows,
            num_classes=self.num_classes,
            source=self.source,
            difficult=self.difficult,
            iscrowd=self.crowd,
        )
        order = rng.permutation(len(self.det_rows))  # producer order is not image order
        dets = make_dets([self.det_rows[i] for i in order], [self.scores[i] for i in order])
        return gt, dets


def random_case(seed: int, source: Source) -> tuple[GroundTruth, Detections]:
    """One randomized set for ``seed`` and ground-truth ``source``."""
    return CaseBuilder(seed, source).build()


def random_settings(seed: int) -> tuple[float, int]:
    """The IoU threshold (mostly 0.5; low ones make st's disjointness rule decide matches)
    and the st input size for one seed."""
    rng = np.random.default_rng([seed, 2])
    return float(rng.choice([0.5, 0.5, 0.5, 0.05, 0.1, 0.75])), int(rng.choice([300, 320, 256]))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("source", ["coco", "voc"])
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_loop_reference(seed: int, source: Source, protocol: Protocol) -> None:
    gt, dets = random_case(seed, source)
    iou, input_size = random_settings(seed)
    result = evaluate(gt, dets, protocol=protocol, iou=iou, input_size=input_size)
    assert_matches_reference(result, reference(protocol, gt, dets, iou, input_size))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("source", ["coco", "voc"])
@pytest.mark.parametrize("seed", range(5))
def test_matches_loop_reference_on_larger_sets(
    seed: int, source: Source, protocol: Protocol
) -> None:
    # Concatenating several small sets gives long curves with many classes and ties.
    parts = [random_case(1000 + 10 * seed + i, source) for i in range(6)]
    num_classes = max(len(g.categories) for g, _ in parts)
    images: list[tuple[int, int]] = []
    gt_rows: list[Row] = []
    det_rows: list[Row] = []
    scores: list[float] = []
    difficult: list[bool] = []
    crowd: list[bool] = []
    for gt, dets in parts:
        offset = len(images)
        images += [(im.width, im.height) for im in gt.images]
        for j in range(gt.num_annotations):
            image, k, x, y, w, h = gt_row(gt, j)
            gt_rows.append((image + offset, k, x, y, w, h))
        difficult += [bool(v) for v in gt.difficult]
        crowd += [bool(v) for v in gt.iscrowd]
        for i in range(len(dets)):
            image, k, x, y, w, h = det_row(dets, i)
            det_rows.append((image + offset, k, x, y, w, h))
        scores += [float(s) for s in dets.scores]
    gt = make_gt(
        images,
        gt_rows,
        num_classes=num_classes,
        source=source,
        difficult=difficult,
        iscrowd=crowd,
    )
    dets = make_dets(det_rows, scores)
    result = evaluate(gt, dets, protocol=protocol)
    assert_matches_reference(result, reference(protocol, gt, dets))


def test_random_sets_exercise_the_rules() -> None:
    # Guards the generator: parity on sets that never reach a rule proves nothing about it.
    seen = dict.fromkeys(
        [
            "iou exactly 0.5",
            "voc overlap where st is disjoint",
            "touching edges",
            "difficult",
            "crowd",
            "zero width coco gt",
            "image without gt",
            "class without gt with detections",
            "equal scores",
            "fractional detection",
        ],
        0,
    )
    for seed in SEEDS:
        for source in ("coco", "voc"):
            gt, dets = random_case(seed, source)
            boxes = [(x, y, x + w, y + h) for x, y, w, h in gt.boxes_xywh_px.tolist()]
            for i in range(len(dets)):
                x, y, w, h = dets.boxes_xywh_px[i].tolist()
                d = (x, y, x + w, y + h)
                for j, g in enumerate(boxes):
                    if gt.image_index[j] != dets.image_index[i]:
                        continue
                    seen["iou exactly 0.5"] += iou_voc(d, g) == 0.5
                    seen["voc overlap where st is disjoint"] += (
                        iou_voc(d, g) > 0 and iou_st(d, g) == 0
                    )
                    seen["touching edges"] += d[0] == g[2]
            seen["difficult"] += int(gt.difficult.sum())
            seen["crowd"] += int(gt.iscrowd.sum())
            seen["zero width coco gt"] += int(
                ((gt.boxes_xywh_px[:, 2] == 0) & (gt.source == "coco")).sum()
            )
            seen["image without gt"] += len(gt.images) - len(set(gt.image_index.tolist()))
            without = set(range(len(gt.categories))) - set(gt.category_index.tolist())
            seen["class without gt with detections"] += sum(
                int(k) in without for k in dets.category_index
            )
            seen["equal scores"] += len(dets) - len(set(dets.scores.tolist()))
            seen["fractional detection"] += int((dets.boxes_xywh_px % 1 != 0).any())
    assert all(count >= 5 for count in seen.values()), seen


def test_interp_helper_is_numpy_interp() -> None:
    # The st reference re-implements np.interp by hand; pin it to numpy on curves with the
    # repeated recall values (a false positive repeats the recall) where the rule matters.
    rng = np.random.default_rng(7)
    grid = np.linspace(0, 1, 101)
    for _ in range(200):
        xp = np.concatenate(([0.0], np.sort(rng.integers(0, 11, 12) / 10), [1.0]))
        fp = np.concatenate(([1.0], rng.random(12), [0.0]))
        expected = np.interp(grid, xp, fp)
        got = [interp(float(x), xp.tolist(), fp.tolist()) for x in grid]
        assert np.abs(np.array(got) - expected).max() <= 1e-15


# --------------------------------------------------------------------------------------
# Hand-derived cases
# --------------------------------------------------------------------------------------

SQUARE = [(300, 300)]  # st's scaling to a 300 input is then the identity


def ap_of(gt: GroundTruth, dets: Detections, protocol: Protocol, iou: float = 0.5) -> EvalResult:
    """evaluate(), after checking the loop reference agrees (so each case checks both)."""
    result = evaluate(gt, dets, protocol=protocol, iou=iou)
    assert_matches_reference(result, reference(protocol, gt, dets, iou))
    return result


def test_perfect_detector() -> None:
    # Two GT, two exact detections: rec = [0.5, 1], prec = [1, 1].
    # voc07: every recall point sees precision 1; voc_eval.py adds 1/11 eleven times, which
    #   in float64 is 1.0000000000000002 (mathematically 1).
    # voc12: mrec = [0, .5, 1, 1], envelope [1, 1, 1, 0]: .5 * 1 + .5 * 1 = 1.
    # st: mrec = [0, .5, 1, 1], mpre = [1, 1, 1, 0], no envelope. numpy's interp takes the
    #   last of the repeated recall 1 values, so y(1) = 0 while y(x) = 1 for x <= 0.99:
    #   99 intervals of 0.01 * 1, then 0.01 * (1 + 0) / 2 = 0.005: AP = 0.995, the ceiling
    #   of the zoo's protocol.
    rows: list[Row] = [(0, 0, 10, 10, 20, 20), (0, 0, 100, 100, 30, 40)]
    gt = make_gt(SQUARE, rows)
    dets = make_dets(rows, [0.9, 0.8])
    assert ap_of(gt, dets, "voc07").ap == 1.0000000000000002
    assert ap_of(gt, dets, "voc12").ap == 1.0
    assert ap_of(gt, dets, "st").ap == 0.995


def test_true_false_true_with_a_duplicate() -> None:
    # Two GT; detections: on A (0.9, TP), on A again (0.8, duplicate: FP), on B (0.7, TP).
    # rec = [1/2, 1/2, 1], prec = [1, 1/2, 2/3].
    # voc07: t in {0, .1, .2, .3, .4, .5} reach rec 1/2 -> max(1, 1/2, 2/3) = 1;
    #   t in {.6, .7, .8, .9, 1} only rec 1 -> 2/3. AP = (6 + 5 * 2/3) / 11 = 28/33.
    # voc12: mrec = [0, .5, .5, 1, 1], envelope of [0, 1, .5, 2/3, 0] = [1, 1, 2/3, 2/3, 0];
    #   steps at 0 -> .5 (* 1) and .5 -> 1 (* 2/3): .5 + 1/3 = 5/6.
    # st: mpre = [1, 1, .5, 2/3, 0] over mrec = [0, .5, .5, 1, 1]. y = 1 on [0, .49];
    #   y(.5) = .5 (the later of the repeated .5 wins); y = .5 + (x - .5)/3 on (.5, 1); y(1) = 0.
    #   Trapezoid: .49 + .01 * (1 + .5)/2 + .49 * (.5 + (.5 + .49/3))/2 + .01 * (.5 + .49/3)/2
    #   = .49 + .0075 + .2850166... + .0033166... = 943/1200.
    a, b = (0, 0, 10.0, 10.0, 20.0, 20.0), (0, 0, 100.0, 100.0, 30.0, 40.0)
    gt = make_gt(SQUARE, [a, b])
    dets = make_dets([a, a, b], [0.9, 0.8, 0.7])
    voc07 = ap_of(gt, dets, "voc07")
    assert math.isclose(voc07.ap, 28 / 33, rel_tol=0, abs_tol=1e-15)  # 11 float additions
    assert (voc07.per_class[0].tp, voc07.per_class[0].fp) == (2, 1)
    # .5 + .5 * (2/3) lands one ulp below the float nearest 5/6.
    assert math.isclose(ap_of(gt, dets, "voc12").ap, 5 / 6, rel_tol=0, abs_tol=1e-15)
    p = float(np.float32(2) / np.float32(3))
    y99 = 0.5 + 0.98 * (p - 0.5)
    expected = 0.49 + 0.0075 + 0.49 * (0.5 + y99) / 2 + 0.01 * y99 / 2
    assert math.isclose(ap_of(gt, dets, "st").ap, expected, rel_tol=0, abs_tol=1e-15)
    assert not math.isclose(expected, 943 / 1200, rel_tol=0, abs_tol=1e-9)  # float32 shows


def test_difficult_only_match_is_ignored_by_voc_and_false_for_st() -> None:
    # VOC source: A regular, B difficult, far apart. Detections: B (0.9), A (0.8), B (0.7).
    # voc: both detections on B are ignored (a difficult GT is never "taken", so the second
    #   is ignored too, not a duplicate FP); A is a TP. rec = [1], prec = [1]:
    #   voc07 = 11 * (1/11) = 1.0000000000000002, voc12 = 1; tp = 1, fp = 0, n_pos = 1.
    # st: B is removed, so both detections on it are FPs (IoU 0 with A):
    #   rec = [0, 1, 1], prec = [0, 1/2, 1/3]; mrec = [0, 0, 1, 1, 1], mpre = [1, 0, .5, 1/3, 0].
    #   y(0) = 0 (last repeated 0), y = x/2 on (0, 1), y(1) = 0.
    #   AP = .99^2 / 4 + .01 * (.495 + 0)/2 = .245025 + .002475 = 0.2475; tp = 1, fp = 2.
    a, b = (0, 0, 10.0, 10.0, 20.0, 20.0), (0, 0, 100.0, 100.0, 30.0, 40.0)
    gt = make_gt(SQUARE, [a, b], source="voc", difficult=[False, True])
    dets = make_dets([b, a, b], [0.9, 0.8, 0.7])
    for protocol, expected in (("voc07", 1.0000000000000002), ("voc12", 1.0)):
        result = ap_of(gt, dets, protocol)
        assert result.ap == expected
        assert (result.per_class[0].tp, result.per_class[0].fp, result.num_gt) == (1, 0, 1)
    st = ap_of(gt, dets, "st")
    assert st.ap == 0.2475
    assert (st.per_class[0].tp, st.per_class[0].fp, st.num_gt) == (1, 2, 1)


def test_plus_one_iou_reaches_the_threshold() -> None:
    # GT corners [10, 10, 12, 12], detection [11, 10, 13, 12] (both w = h = 2).
    # +1 convention: areas 3 * 3 = 9 each, intersection (12 - 11 + 1) * 3 = 6,
    #   IoU = 6 / (9 + 9 - 6) = 0.5 exactly, and >= 0.5 passes: a TP.
    # Without +1 it would be (1 * 2) / (4 + 4 - 2) = 1/3: an FP.
    # So voc07 = 1.0000000000000002, voc12 = 1, st = 0.995 (scaling is the identity here).
    gt = make_gt(SQUARE, [(0, 0, 10, 10, 2, 2)])
    dets = make_dets([(0, 0, 11, 10, 2, 2)], [0.5])
    assert ap_of(gt, dets, "voc07").ap == 1.0000000000000002
    assert ap_of(gt, dets, "voc12").ap == 1.0
    assert ap_of(gt, dets, "st").ap == 0.995


def test_st_rounds_detections_half_to_even() -> None:
    # GT corners [10, 10, 21, 19]: +1 area 12 * 10 = 120. Image 300 = input 300, so a
    # detection's x2 of 14.5 stays 14.5 before rounding.
    # x2 = 14.5 rounds half-to-even to 14: area 5 * 10 = 50 inside the GT, IoU 50/120 < 0.5:
    #   an FP, rec = prec = [0], and AP = 0 (y = 0 everywhere: mpre = [1, 0, 0] over
    #   mrec = [0, 0, 1] and the later 0 wins at x = 0). Half-up (15) would give 60/120 = 0.5,
    #   a TP and 0.995.
    # x2 = 15.5 rounds to 16 (even): 70/120 >= 0.5, a TP: AP = 0.995.
    gt = make_gt(SQUARE, [(0, 0, 10, 10, 11, 9)])
    down = make_dets([(0, 0, 10, 10, 4.5, 9)], [0.5])
    up = make_dets([(0, 0, 10, 10, 5.5, 9)], [0.5])
    assert ap_of(gt, down, "st").ap == 0.0
    assert ap_of(gt, up, "st").ap == 0.995


def test_voc07_recall_points_follow_the_python_devkit() -> None:
    # Ten GT; detections TP, TP, TP, FP, TP: rec = [.1, .2, .3, .3, .4],
    # prec = [1, 1, 1, .75, .8]. voc_eval.py's fourth recall point is 0.30000000000000004,
    # which rec = 3/10 (= 0.3 in float64) does not reach, so t = .3 sees only rec .4 -> .8:
    # AP = (1 + 1 + 1 + .8 + .8 + 0 * 6) / 11 = 4.6/11 (an exact 0.3 would give 4.8/11).
    rows: list[Row] = [(0, 0, 25.0 * i, 10.0, 10.0, 10.0) for i in range(10)]
    gt = make_gt(SQUARE, rows)
    miss: Row = (0, 0, 10.0, 200.0, 10.0, 10.0)
    dets = make_dets([rows[0], rows[1], rows[2], miss, rows[3]], [0.9, 0.8, 0.7, 0.6, 0.5])
    result = ap_of(gt, dets, "voc07")
    assert math.isclose(result.ap, 4.6 / 11, rel_tol=0, abs_tol=1e-15)


def test_st_disjointness_is_not_the_voc_clamp() -> None:
    # VOC source, 600x600 images, input 300: GT corners [10, 10, 19, 19] become
    # [5, 5, 9.5, 9.5]; a detection at [20, 10, 29, 19] becomes [10, 5, 14.5 -> 14, 9.5 -> 10].
    # st: x1 = 10 > GT x2 = 9.5, so the boxes are disjoint: IoU 0, an FP even at iou=0.04.
    #   (The VOC clamp would give width 9.5 - 10 + 1 = .5, height 9.5 - 5 + 1 = 5.5, IoU
    #   2.75 / (30 + 30.25 - 2.75) = 0.0478 >= 0.04, a TP.) rec = prec = [0]: AP = 0.
    # voc in original pixels: width 19 - 20 + 1 = 0, IoU 0: an FP too, AP 0.
    # Moved one pixel left, [19, 10, 28, 19] touches the GT edge in pixels (voc: width 1,
    #   IoU 10/190 >= 0.04, a TP). In st it becomes [9.5 -> 10, ...] and is still disjoint.
    gt = make_gt([(600, 600)], [(0, 0, 10, 10, 9, 9)], source="voc")
    apart = make_dets([(0, 0, 20, 10, 9, 9)], [0.5])
    touching = make_dets([(0, 0, 19, 10, 9, 9)], [0.5])
    assert ap_of(gt, apart, "st", iou=0.04).ap == 0.0
    assert ap_of(gt, apart, "voc12", iou=0.04).ap == 0.0
    assert ap_of(gt, touching, "voc12", iou=0.04).ap == 1.0
    assert ap_of(gt, touching, "st", iou=0.04).ap == 0.0


def test_st_touching_edges_overlap_by_one_pixel() -> None:
    # Identity scaling: GT [10, 10, 19, 19], detection [19, 10, 28, 19]. x1 = 19 is not
    # beyond x2 = 19, so they overlap: 1 * 10 / (100 + 100 - 10) = 1/19 >= 0.05: a TP, 0.995.
    gt = make_gt(SQUARE, [(0, 0, 10, 10, 9, 9)])
    dets = make_dets([(0, 0, 19, 10, 9, 9)], [0.5])
    assert ap_of(gt, dets, "st", iou=0.05).ap == 0.995


def test_zero_width_coco_ground_truth_and_unannotated_images() -> None:
    # COCO source. Image 0: GT A; image 1: only a zero-width GT Z; image 2: no annotation.
    # Detections: image 2 (0.95), exactly Z on image 1 (0.9), exactly A on image 0 (0.8).
    # st: Z is skipped but image 1 still counts (it has an annotation); image 2 is dropped
    #   with its detection. Order: Z-detection FP, A TP; n_gt = 1, rec = [0, 1],
    #   prec = [0, 1/2] -> 0.2475 as in the difficult case. (Keeping image 2 would give
    #   FP, FP, TP -> y = x/3 and 0.165.)
    # voc: Z is an ordinary 1-pixel-wide box, n_pos = 2. Order: FP, TP (Z), TP (A):
    #   rec = [0, .5, 1], prec = [0, .5, 2/3]; the envelope is 2/3 from recall 0 to 1, so
    #   voc12 = .5 * 2/3 + .5 * 2/3 = 2/3 and voc07 = 11 * (2/3)/11 = 2/3.
    a: Row = (0, 0, 10.0, 10.0, 20.0, 20.0)
    z: Row = (1, 0, 50.0, 50.0, 0.0, 10.0)
    gt = make_gt(SQUARE * 3, [a, z])
    dets = make_dets([(2, 0, 10.0, 10.0, 20.0, 20.0), z, a], [0.95, 0.9, 0.8])
    st = ap_of(gt, dets, "st")
    assert st.ap == 0.2475
    assert (st.num_images, st.num_gt, st.per_class[0].tp, st.per_class[0].fp) == (2, 1, 1, 1)
    voc12 = ap_of(gt, dets, "voc12")
    assert voc12.ap == 2 / 3
    assert (voc12.num_gt, voc12.per_class[0].tp, voc12.per_class[0].fp) == (2, 2, 1)
    assert math.isclose(ap_of(gt, dets, "voc07").ap, 2 / 3, rel_tol=0, abs_tol=1e-15)


def test_no_detections() -> None:
    # voc: empty curves, every recall point unreached: 0. st: rec = prec = [0], so
    # mrec = [0, 0, 1], mpre = [1, 0, 0]; the later 0 wins at x = 0 and y = 0 elsewhere: 0.
    gt = make_gt(SQUARE, [(0, 0, 10.0, 10.0, 20.0, 20.0)])
    for protocol in PROTOCOLS:
        result = ap_of(gt, Detections.empty(), protocol)
        assert (result.ap, result.per_class[0].ap, result.tp, result.fp) == (0.0, 0.0, 0, 0)


def test_crowd_is_an_ordinary_box_everywhere() -> None:
    # A crowd GT matched exactly: a TP under voc and st (neither has ignore regions), and a
    # second detection on it a duplicate FP (pycocotools would instead ignore both).
    # rec = [1, 1], prec = [1, 1/2]: voc12 = 1, st = 0.995 (the FP comes after full recall).
    row: Row = (0, 0, 10.0, 10.0, 20.0, 20.0)
    gt = make_gt(SQUARE, [row], iscrowd=[True])
    dets = make_dets([row, row], [0.9, 0.8])
    voc12 = ap_of(gt, dets, "voc12")
    assert (voc12.ap, voc12.per_class[0].tp, voc12.per_class[0].fp) == (1.0, 1, 1)
    st = ap_of(gt, dets, "st")
    assert (st.ap, st.per_class[0].tp, st.per_class[0].fp) == (0.995, 1, 1)


def test_no_fallback_to_the_second_best_ground_truth() -> None:
    # Two GT of one class; both detections overlap A best. The first takes A; the second's
    # best is still A (taken) so it is an FP even though its IoU with B passes.
    # Boxes (+1 sizes): A [0, 0, 9, 9], B [4, 0, 13, 9]; detection [1, 0, 10, 9]:
    #   IoU with A = 9*10 / (100 + 100 - 90) = 9/11, with B = 7*10 / (200 - 70) = 7/13 >= .5.
    # rec = [.5, .5], prec = [1, .5]. voc12: envelope 1 up to recall .5, then 0: AP = .5.
    # st: mrec = [0, .5, .5, 1], mpre = [1, 1, .5, 0]: y = 1 on [0, .49], y(.5) = .5 (the
    #   later repeated .5 wins), then y = 1 - x down to y(1) = 0. Trapezoid:
    #   .49 + .01 * (1 + .5)/2 + .5 * (.5 + 0)/2 = .49 + .0075 + .125 = .6225.
    a: Row = (0, 0, 0.0, 0.0, 9.0, 9.0)
    b: Row = (0, 0, 4.0, 0.0, 9.0, 9.0)
    det: Row = (0, 0, 1.0, 0.0, 9.0, 9.0)
    gt = make_gt(SQUARE, [a, b])
    dets = make_dets([det, det], [0.9, 0.8])
    assert ap_of(gt, dets, "voc12").ap == 0.5
    assert math.isclose(ap_of(gt, dets, "st").ap, 0.6225, rel_tol=0, abs_tol=1e-15)


# --------------------------------------------------------------------------------------
# Invariants the rules imply
# --------------------------------------------------------------------------------------


def with_distinct_scores(dets: Detections, seed: int) -> Detections:
    """The same detections with all scores distinct (so the order of rows cannot matter)."""
    rng = np.random.default_rng(seed)
    scores = (rng.permutation(len(dets)) + 1) / (len(dets) + 1)
    return replace(dets, scores=scores)


def permute_detections(dets: Detections, order: np.ndarray) -> Detections:
    """The detection rows in a new order."""
    return Detections(
        image_index=dets.image_index[order],
        category_index=dets.category_index[order],
        boxes_xywh_px=dets.boxes_xywh_px[order],
        scores=dets.scores[order],
    )


def reorder_images(
    gt: GroundTruth, dets: Detections, order: np.ndarray
) -> tuple[GroundTruth, Detections]:
    """The same set with ``images`` listed in ``order`` (old positions), indices remapped."""
    new_position = np.empty(len(order), np.int64)
    new_position[order] = np.arange(len(order))
    gt2 = replace(
        gt,
        images=tuple(gt.images[i] for i in order),
        image_index=new_position[gt.image_index],
        _image_lookup={},
    )
    dets2 = replace(dets, image_index=new_position[dets.image_index])
    return gt2, dets2


def interleave_ground_truth(gt: GroundTruth, seed: int) -> GroundTruth:
    """Shuffle GT rows but keep the order within each (image, class) group: the rules only
    use that order (first of equal IoUs wins), so nothing may change."""
    rng = np.random.default_rng(seed)
    slots = rng.permutation(gt.num_annotations)
    groups: dict[tuple[int, int], list[int]] = {}
    for j in range(gt.num_annotations):
        groups.setdefault((int(gt.image_index[j]), int(gt.category_index[j])), []).append(j)
    order = np.empty(gt.num_annotations, np.int64)
    for rows in groups.values():
        # This group's rows, in their original order, fill the slots it was shuffled to.
        for position, row in zip(sorted(slots[rows]), rows, strict=True):
            order[position] = row
    return replace(
        gt,
        image_index=gt.image_index[order],
        category_index=gt.category_index[order],
        boxes_xywh_px=gt.boxes_xywh_px[order],
        area=gt.area[order],
        iscrowd=gt.iscrowd[order],
        difficult=gt.difficult[order],
        annotation_id=gt.annotation_id[order],
        _image_lookup={},
    )


INVARIANCE_SEEDS = range(12)


def evaluate_all(gt: GroundTruth, dets: Detections) -> list[EvalResult]:
    """The three protocols on one set."""
    return [evaluate(gt, dets, protocol=p) for p in PROTOCOLS]


@pytest.mark.parametrize("source", ["coco", "voc"])
@pytest.mark.parametrize("seed", INVARIANCE_SEEDS)
def test_distinct_scores_make_detection_order_irrelevant(seed: int, source: Source) -> None:
    # Every protocol sorts by score; with no ties the input order has nothing left to decide.
    gt, dets = random_case(seed, source)
    dets = with_distinct_scores(dets, seed)
    shuffled = permute_detections(dets, np.random.default_rng(seed).permutation(len(dets)))
    for a, b in zip(evaluate_all(gt, dets), evaluate_all(gt, shuffled), strict=True):
        assert same_result(a, b), (a.protocol, a.ap, b.ap)


@pytest.mark.parametrize("source", ["coco", "voc"])
@pytest.mark.parametrize("seed", INVARIANCE_SEEDS)
def test_distinct_scores_make_image_order_irrelevant(seed: int, source: Source) -> None:
    # st pools images in list order only to break score ties; VOC never looks at it.
    gt, dets = random_case(seed, source)
    dets = with_distinct_scores(dets, seed)
    order = np.random.default_rng(seed).permutation(len(gt.images))
    gt2, dets2 = reorder_images(gt, dets, order)
    for a, b in zip(evaluate_all(gt, dets), evaluate_all(gt2, dets2), strict=True):
        assert same_result(a, b), (a.protocol, a.ap, b.ap)


@pytest.mark.parametrize("source", ["coco", "voc"])
@pytest.mark.parametrize("seed", INVARIANCE_SEEDS)
def test_ground_truth_order_matters_only_within_a_group(seed: int, source: Source) -> None:
    gt, dets = random_case(seed, source)
    gt2 = interleave_ground_truth(gt, seed)
    for a, b in zip(evaluate_all(gt, dets), evaluate_all(gt2, dets), strict=True):
        assert same_result(a, b), (a.protocol, a.ap, b.ap)


MONOTONE: list[Callable[[np.ndarray], np.ndarray]] = [
    lambda s: 10.0 * s + 3.0,
    lambda s: np.exp(4.0 * s) - 2.0,
    lambda s: s**3,
]


@pytest.mark.parametrize("source", ["coco", "voc"])
@pytest.mark.parametrize("seed", INVARIANCE_SEEDS)
def test_monotone_rescaling_of_scores_changes_nothing(seed: int, source: Source) -> None:
    # Only the order of scores (ties included) enters any protocol; these maps keep it
    # (ties stay ties, and the generator's scores are far enough apart not to merge).
    gt, dets = random_case(seed, source)
    base = evaluate_all(gt, dets)
    for transform in MONOTONE:
        rescaled = replace(dets, scores=transform(dets.scores))
        for a, b in zip(base, evaluate_all(gt, rescaled), strict=True):
            assert same_result(a, b), (a.protocol, a.ap, b.ap)


@pytest.mark.parametrize("source", ["coco", "voc"])
@pytest.mark.parametrize("seed", INVARIANCE_SEEDS)
def test_detections_on_classes_without_ground_truth_change_nothing(
    seed: int, source: Source
) -> None:
    # Such classes are left out of the mean; an extra class with no GT at all is the
    # plainest one (existing GT-less classes may already carry detections).
    gt, dets = random_case(seed, source)
    extra = len(gt.categories)
    gt2 = replace(gt, categories=(*gt.categories, Category(id=999, name="unseen")))
    rng = np.random.default_rng(seed)
    n = 5
    more = make_dets(
        [
            (int(rng.integers(len(gt.images))), extra, *rng.uniform(0, 100, 4).tolist())
            for _ in range(n)
        ],
        rng.random(n).tolist(),
    )
    dets2 = Detections(
        image_index=np.concatenate((dets.image_index, more.image_index)),
        category_index=np.concatenate((dets.category_index, more.category_index)),
        boxes_xywh_px=np.concatenate((dets.boxes_xywh_px, more.boxes_xywh_px)),
        scores=np.concatenate((dets.scores, more.scores)),
    )
    for a, b in zip(evaluate_all(gt, dets), evaluate_all(gt2, dets2), strict=True):
        assert a.ap == b.ap, a.protocol
        assert b.per_class[-1].ap is None
        assert [c.ap for c in a.per_class] == [c.ap for c in b.per_class[:-1]]


@pytest.mark.parametrize("source", ["coco", "voc"])
@pytest.mark.parametrize("seed", INVARIANCE_SEEDS)
def test_perfect_predictions_give_one_under_voc(seed: int, source: Source) -> None:
    # One exact detection per ground truth (difficult ones too: those are ignored).
    # voc12 gives exactly 1; voc07 adds 1/11 eleven times: 1.0000000000000002.
    # Repeated boxes are kept once: both copies' detections would best-match the first copy
    # (the second detection an FP), so no detector can be perfect on them.
    drawn, _ = random_case(seed, source)
    keep: dict[Row, int] = {}
    for j in range(drawn.num_annotations):
        keep.setdefault(gt_row(drawn, j), j)
    rows = list(keep)
    gt = make_gt(
        [(im.width, im.height) for im in drawn.images],
        rows,
        num_classes=len(drawn.categories),
        source=source,
        difficult=[bool(drawn.difficult[j]) for j in keep.values()],
    )
    dets = make_dets(rows, np.random.default_rng(seed).random(len(rows)).tolist())
    for protocol, expected in (("voc07", 1.0000000000000002), ("voc12", 1.0)):
        result = evaluate(gt, dets, protocol=protocol)
        counted = [c.ap for c in result.per_class if c.ap is not None]
        assert counted == [expected] * len(counted), (protocol, counted)
