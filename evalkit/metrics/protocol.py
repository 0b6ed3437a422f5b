"""The protocol record and its registry: a protocol is data plus a composition of core
functions, registered under one name. Adding a protocol touches no other protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from evalkit.registry import Registry
from evalkit.types import Detections, EvalResult, GroundTruth


@dataclass(frozen=True)
class EvalOptions:
    """Settings every protocol receives. ``input_size`` only matters to ``st``."""

    iou: float = 0.5
    input_size: int = 300

    def __post_init__(self) -> None:
        if not 0.0 < self.iou <= 1.0:
            raise ValueError(f"iou must be in (0, 1], got {self.iou}")
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


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def register(protocol: Protocol) -> Protocol:
    return PROTOCOLS.add(protocol.name, protocol)
