"""SSD priors (anchor boxes) of the model zoo's ssd_mobilenetv2_pt, in numpy.

reference-pipeline.md section 4: one spec per source feature map, six priors per location
(square min, square sqrt(min*max), then for each aspect ratio r the pair
(min*sqrt(r), min/sqrt(r)) and (min/sqrt(r), min*sqrt(r))), row-major over (y, x), centres
at (i + 0.5) / (image_size / shrinkage), everything divided by the image size and clamped
to [0, 1] once built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class PriorSpec:
    """One source feature map: its size, stride in pixels and the square prior sizes."""

    feature_map_size: int
    shrinkage: int
    min_size: float
    max_size: float
    aspect_ratios: tuple[int, ...] = (2, 3)

    @property
    def priors_per_location(self) -> int:
        return 2 + 2 * len(self.aspect_ratios)


ZOO_PRIOR_SPECS = (
    PriorSpec(19, 16, 60, 105),
    PriorSpec(10, 32, 105, 150),
    PriorSpec(5, 64, 150, 195),
    PriorSpec(3, 100, 195, 240),
    PriorSpec(2, 150, 240, 285),
    PriorSpec(1, 300, 285, 330),
)


def ssd_priors(
    specs: Sequence[PriorSpec] = ZOO_PRIOR_SPECS, image_size: int = 300
) -> npt.NDArray[np.float32]:
    """(num_priors, 4) float32 priors as (cx, cy, w, h), normalised and clamped to [0, 1]."""
    rows: list[tuple[float, float, float, float]] = []
    for spec in specs:
        scale = image_size / spec.shrinkage
        small = spec.min_size / image_size
        big = math.sqrt(spec.max_size * spec.min_size) / image_size
        for j in range(spec.feature_map_size):
            for i in range(spec.feature_map_size):
                cx = (i + 0.5) / scale
                cy = (j + 0.5) / scale
                rows.append((cx, cy, small, small))
                rows.append((cx, cy, big, big))
                for ratio in spec.aspect_ratios:
                    root = math.sqrt(ratio)
                    rows.append((cx, cy, small * root, small / root))
                    rows.append((cx, cy, small / root, small * root))
    priors = np.array(rows, dtype=np.float32)
    np.clip(priors, 0.0, 1.0, out=priors)
    return priors


# BlazeFace front (face_detect_front): MediaPipe's anchors for a 128 x 128 input.
BLAZEFACE_STRIDES = (8, 16, 16, 16)
BLAZEFACE_SIZE = 128
F32 = npt.NDArray[np.float32]


def blazeface_anchors(
    size: int = BLAZEFACE_SIZE, strides: Sequence[int] = BLAZEFACE_STRIDES
) -> F32:
    """MediaPipe's SSD anchor centres for the front model (offset 0.5, interpolated scale
    aspect ratio 1: two anchors a cell per layer, layers of one stride merged)."""
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < len(strides):
        last, repeats = layer, 0
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
            repeats += 2
        cells = size // strides[layer]
        for y in range(cells):
            for x in range(cells):
                centres += [((x + 0.5) / cells, (y + 0.5) / cells)] * repeats
        layer = last
    return np.array(centres, np.float32)
