"""The analyses that decide deployment, for one set of detections: operating points
(precision, recall and F1 against the score threshold, under pycocotools' matching), the
confusion matrix at a score threshold, and the TIDE error breakdown; and what changed between
two variants' analyses (float -> int8: what quantization did).

``evalkit run`` records :meth:`Analysis.to_dict` per variant (``result.json``:
``variants.NAME.analysis``); :func:`analysis_difference` works on those records, so a report
needs only the run record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalkit.errors import InputError
from evalkit.metrics.coco_matches import coco_operating_points
from evalkit.metrics.confusion import ConfusionMatrix, confusion_matrix
from evalkit.metrics.operating_points import Curve, OperatingPoints
from evalkit.metrics.tide import MAIN_ERRORS, TideBreakdown, TideParams, tide_breakdown
from evalkit.types import Detections, GroundTruth

# The pooled F1 curve is recorded at these score thresholds (0, 0.01, ..., 1).
CURVE_THRESHOLDS = tuple(i / 100 for i in range(101))


@dataclass(frozen=True)
class AnalysisSettings:
    """Matching IoU of all three analyses; the score thresholds the device may use (P/R/F1
    at each); the score threshold of the confusion matrix; TIDE's background IoU."""

    iou: float = 0.5
    thresholds: tuple[float, ...] = (0.3, 0.5)
    confusion_score: float = 0.5
    tide_background: float = 0.1

    def __post_init__(self) -> None:
        for name, value in (("iou", self.iou), ("confusion_score", self.confusion_score)):
            if not 0.0 <= value <= 1.0:
                raise InputError(f"analysis.{name}: expected a value in [0, 1], got {value}")
        if not all(0.0 <= t <= 1.0 for t in self.thresholds):
            raise InputError(
                f"analysis.thresholds: expected scores in [0, 1], got {list(self.thresholds)}"
            )
        TideParams(self.iou, self.tide_background)  # refuses a bad background IoU


def _curve_samples(c: Curve) -> dict[str, list[Any]]:
    points = [c.at(t) for t in CURVE_THRESHOLDS]
    return {
        "thresholds": list(CURVE_THRESHOLDS),
        "precision": [p.precision for p in points],
        "recall": [p.recall for p in points],
        "f1": [p.f1 for p in points],
    }


@dataclass(frozen=True)
class Analysis:
    settings: AnalysisSettings
    operating_points: OperatingPoints
    confusion: ConfusionMatrix
    tide: TideBreakdown

    def to_dict(self) -> dict[str, Any]:
        return {
            "iou": self.settings.iou,
            "operating_points": {
                **self.operating_points.to_dict(),
                "overall_curve": _curve_samples(self.operating_points.overall),
            },
            "confusion": self.confusion.to_dict(),
            "tide": self.tide.to_dict(),
        }


def analyse(
    gt: GroundTruth, dets: Detections, settings: AnalysisSettings | None = None
) -> Analysis:
    """The three analyses of ``dets`` against ``gt``."""
    s = settings or AnalysisSettings()
    return Analysis(
        settings=s,
        operating_points=coco_operating_points(gt, dets, s.thresholds, s.iou),
        confusion=confusion_matrix(gt, dets, s.iou, s.confusion_score),
        tide=tide_breakdown(gt, dets, TideParams(s.iou, s.tide_background)),
    )


def _point_delta(base: Mapping[str, Any] | None, other: Mapping[str, Any] | None) -> Any:
    if base is None or other is None:
        return None
    out: dict[str, Any] = {"threshold": [base["threshold"], other["threshold"]]}
    for key in ("precision", "recall", "f1", "tp", "fp"):
        a, b = base.get(key), other.get(key)
        out[key] = None if a is None or b is None else b - a
    return out


def analysis_difference(base: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """``other - base`` of two recorded analyses (``Analysis.to_dict``): the overall best-F1
    point and the points at each shared threshold, each TIDE delta and count, and the
    confusion cells (None where the two were made with different settings)."""
    out: dict[str, Any] = {}
    a_op, b_op = base["operating_points"], other["operating_points"]
    shared = [t for t in a_op["thresholds"] if t in b_op["thresholds"]]
    a_at = dict(zip(a_op["thresholds"], a_op["overall"]["at"], strict=True))
    b_at = dict(zip(b_op["thresholds"], b_op["overall"]["at"], strict=True))
    out["operating_points"] = {
        "best_f1": _point_delta(a_op["overall"]["best_f1"], b_op["overall"]["best_f1"]),
        "at": {str(t): _point_delta(a_at[t], b_at[t]) for t in shared},
    }
    a_t, b_t = base["tide"], other["tide"]
    out["tide"] = {
        "delta_ap": {k: b_t["delta_ap"][k] - a_t["delta_ap"][k] for k in MAIN_ERRORS},
        "counts": {k: b_t["counts"][k] - a_t["counts"][k] for k in MAIN_ERRORS},
        "ap": b_t["ap"] - a_t["ap"],
    }
    a_c, b_c = base["confusion"], other["confusion"]
    same = a_c["labels"] == b_c["labels"] and a_c["score_threshold"] == b_c["score_threshold"]
    out["confusion"] = (
        (np.array(b_c["matrix"]) - np.array(a_c["matrix"])).tolist() if same else None
    )
    return out
