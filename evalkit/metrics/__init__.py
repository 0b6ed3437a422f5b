"""The metrics engine: one functional core, four registered AP protocols.

>>> from evalkit.metrics import evaluate
>>> result = evaluate(ground_truth, detections, protocol="coco")  # doctest: +SKIP
>>> result.ap, result.stats  # doctest: +SKIP
"""

from __future__ import annotations

from evalkit.errors import InputError

# Importing the protocol modules registers them.
from evalkit.metrics import coco as _coco  # noqa: F401
from evalkit.metrics import st as _st  # noqa: F401
from evalkit.metrics import voc as _voc  # noqa: F401
from evalkit.metrics.coco_params import AreaRange, CocoParams
from evalkit.metrics.protocol import DEFAULT_PROTOCOLS, PROTOCOLS, EvalOptions, Protocol
from evalkit.metrics.results_file import load_coco_results, parse_coco_results, write_coco_results
from evalkit.types import Detections, EvalResult, GroundTruth


def evaluate(
    ground_truth: GroundTruth,
    detections: Detections,
    protocol: str = "coco",
    match_iou: float = 0.5,
    input_size: int = 300,
    *,
    iou: float | None = None,
    coco: CocoParams | None = None,
) -> EvalResult:
    """Score ``detections`` against ``ground_truth`` under one registered protocol;
    ``match_iou`` is the IoU a detection needs to match a ground-truth box (``iou`` is its
    earlier name, still accepted). ``coco`` sets COCOeval's parameters (thresholds, maxDets,
    area ranges, class-agnostic, image and category subsets) for the ``coco`` protocol."""
    if coco is not None and protocol != "coco":
        raise InputError(f"COCOeval parameters apply to the coco protocol only, not {protocol}")
    options = EvalOptions(
        match_iou=match_iou if iou is None else iou, input_size=input_size, coco=coco
    )
    return PROTOCOLS.get(protocol).run(ground_truth, detections, options)


__all__ = [
    "DEFAULT_PROTOCOLS",
    "PROTOCOLS",
    "AreaRange",
    "CocoParams",
    "EvalOptions",
    "EvalResult",
    "Protocol",
    "evaluate",
    "load_coco_results",
    "parse_coco_results",
    "write_coco_results",
]
