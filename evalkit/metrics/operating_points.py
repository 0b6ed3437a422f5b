"""Operating points: precision, recall and F1 against the score threshold a device keeps
detections at, per class and over all classes; the F1-optimal threshold; and the numbers at
the thresholds a user names.

Input is what a protocol's matching decided, per class: each detection's score and whether
it is a true positive, a false positive or ignored (a match to a crowd or out-of-range ground
truth, which counts as neither), and the number of ground truths that count. At threshold
``s`` the detections kept are those with ``score >= s``; with ``TP`` and ``FP`` among them and
``N`` ground truths: precision ``TP / (TP + FP)``, recall ``TP / N`` and
F1 ``2 TP / (TP + FP + N)`` (the harmonic mean of the two, written without a division by
zero). A number that does not exist (precision with nothing kept, recall with no ground
truth) is None, never 0 or NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evalkit.errors import InputError
from evalkit.types import BoolArray, EvalResult, FloatArray, IntArray


@dataclass(frozen=True)
class OperatingPoint:
    """The detections kept at ``threshold`` and how good they are."""

    threshold: float
    tp: int
    fp: int
    num_gt: int
    precision: float | None
    recall: float | None
    f1: float | None

    @classmethod
    def of(cls, threshold: float, tp: int, fp: int, num_gt: int) -> OperatingPoint:
        return cls(
            threshold=threshold,
            tp=tp,
            fp=fp,
            num_gt=num_gt,
            precision=tp / (tp + fp) if tp + fp else None,
            recall=tp / num_gt if num_gt else None,
            f1=2 * tp / (tp + fp + num_gt) if tp + fp + num_gt else None,
        )

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Curve:
    """One class's (or all classes') points, one per distinct score, highest first:
    ``thresholds[i]`` keeps the detections scoring at least it."""

    name: str
    category_id: int | None
    num_gt: int
    thresholds: FloatArray
    tp: IntArray
    fp: IntArray

    @property
    def f1(self) -> FloatArray:
        denominator = self.tp + self.fp + self.num_gt
        return np.divide(
            2 * self.tp, denominator, out=np.zeros(self.tp.shape), where=denominator > 0
        )

    def best(self) -> OperatingPoint | None:
        """The F1-optimal point (the highest threshold among equals), or None when the class
        has no ground truth or no detection."""
        if self.thresholds.size == 0 or self.num_gt == 0:
            return None
        i = int(np.argmax(self.f1))
        return OperatingPoint.of(
            float(self.thresholds[i]), int(self.tp[i]), int(self.fp[i]), self.num_gt
        )

    def at(self, threshold: float) -> OperatingPoint:
        """The point at a given threshold: everything scoring at least it is kept."""
        kept = int(np.searchsorted(-self.thresholds, -threshold, side="right"))
        tp = int(self.tp[kept - 1]) if kept else 0
        fp = int(self.fp[kept - 1]) if kept else 0
        return OperatingPoint.of(threshold, tp, fp, self.num_gt)


def curve(
    name: str,
    category_id: int | None,
    scores: FloatArray,
    is_tp: BoolArray,
    is_fp: BoolArray,
    num_gt: int,
) -> Curve:
    """A curve from detections in any order (ignored ones have neither flag)."""
    counted = is_tp | is_fp
    scores, is_tp, is_fp = scores[counted], is_tp[counted], is_fp[counted]
    order = np.argsort(-scores, kind="stable")
    scores, is_tp, is_fp = scores[order], is_tp[order], is_fp[order]
    cum_tp = np.cumsum(is_tp, dtype=np.int64)
    cum_fp = np.cumsum(is_fp, dtype=np.int64)
    last_of_score = np.ones(scores.shape, bool)  # a threshold keeps every equal score
    last_of_score[:-1] = scores[:-1] != scores[1:]
    return Curve(
        name,
        category_id,
        num_gt,
        scores[last_of_score],
        cum_tp[last_of_score],
        cum_fp[last_of_score],
    )


@dataclass(frozen=True)
class OperatingPoints:
    """Per class and over all classes (detections pooled, micro-averaged): the F1-optimal
    point and the points at the requested thresholds, under one protocol's matching."""

    protocol: str
    iou: float
    thresholds: tuple[float, ...]
    overall: Curve
    per_class: tuple[Curve, ...]

    def to_dict(self) -> dict[str, object]:
        def entry(c: Curve) -> dict[str, object]:
            best = c.best()
            return {
                "name": c.name,
                "category_id": c.category_id,
                "num_gt": c.num_gt,
                "best_f1": None if best is None else best.to_dict(),
                "at": [c.at(t).to_dict() for t in self.thresholds],
            }

        return {
            "protocol": self.protocol,
            "iou": self.iou,
            "thresholds": list(self.thresholds),
            "overall": entry(self.overall),
            "per_class": [entry(c) for c in self.per_class],
        }


def pooled(curves: Sequence[tuple[FloatArray, BoolArray, BoolArray]], num_gt: int) -> Curve:
    """All classes' detections as one curve (micro-average)."""
    if not curves:
        empty = np.zeros(0)
        return curve("all classes", None, empty, empty.astype(bool), empty.astype(bool), num_gt)
    scores, tp, fp = (np.concatenate(column) for column in zip(*curves, strict=True))
    return curve("all classes", None, scores, tp, fp, num_gt)


def protocol_operating_points(
    result: EvalResult, thresholds: Sequence[float] = ()
) -> OperatingPoints:
    """Operating points under a best-then-claim protocol's own matching (st, voc07, voc12,
    ...), from the decisions its result keeps per class. Every class is pooled, those without
    ground truth too: a device keeps their detections, false positives all (as in the coco
    protocol's pooled curve); ``st`` has already left them out by its own rule."""
    per_class, parts = [], []
    for c in result.per_class:
        if c.decisions is None:
            raise InputError(f"the {result.protocol} protocol keeps no per-detection decisions")
        scores, flags = c.decisions
        part = (scores, flags == 1, flags == 0)
        per_class.append(curve(c.name, c.category_id, *part, c.num_gt))
        parts.append(part)
    return OperatingPoints(
        protocol=result.protocol,
        iou=result.iou,
        thresholds=tuple(float(t) for t in thresholds),
        overall=pooled(parts, sum(c.num_gt for c in result.per_class)),
        per_class=tuple(per_class),
    )
