"""The protocol record and its registry: a protocol is data plus a composition of core
functions, registered under one name. Adding a protocol touches no other protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from evalkit.metrics.coco_params import CocoParams
from evalkit.registry import Registry
from evalkit.types import Detections, EvalResult, GroundTruth


@dataclass(frozen=True)
class EvalOptions:
    """Settings every protocol receives. ``match_iou`` is the IoU at which a detection
    matches a ground-truth box (not NMS's suppression IoU); ``input_size`` only matters to
    ``st``."""

    match_iou: float = 0.5
    input_size: int = 300
    # COCOeval's parameters for the coco protocol (None: pycocotools' defaults).
    coco: CocoParams | None = None

    def __post_init__(self) -> None:
        # COCOeval takes any threshold in [0, 1], 0 included; the protocols' own rules, (0, 1].
        low_ok = self.match_iou >= 0.0 if self.coco is not None else self.match_iou > 0.0
        if not (low_ok and self.match_iou <= 1.0):
            interval = "[0, 1]" if self.coco is not None else "(0, 1]"
            raise ValueError(f"match_iou must be in {interval}, got {self.match_iou}")
        if self.input_size <= 0:
            raise ValueError(
                f"input_size must be a positive number of pixels, got {self.input_size}"
            )


Evaluator = Callable[[GroundTruth, Detections, EvalOptions], EvalResult]


@dataclass(frozen=True)
class Protocol:
    """A named AP protocol: what it reproduces and the function that computes it."""

    name: str
    reference: str
    summary: str
    run: Evaluator
    # Which image sizes the ground truth is scaled by: as annotated, or as the images
    # decoded (the zoo's st scales by the image it read, reference-pipeline.md 6b.2).
    image_sizes: Literal["annotated", "decoded"] = "annotated"


PROTOCOLS: Registry[Protocol] = Registry("protocol")

# What a run scores unless told otherwise, in the order tables show them: the four protocols
# of reference-pipeline.md section 5.
DEFAULT_PROTOCOLS = ("coco", "st", "voc07", "voc12")


def register(protocol: Protocol) -> Protocol:
    return PROTOCOLS.add(protocol.name, protocol)
