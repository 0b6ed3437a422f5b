"""NMS output to dataset detections: pixel scaling, class mapping, order, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.datasets.classes import map_classes
from evalkit.postprocess.assemble import to_detections
from evalkit.types import ImageDetections, ImageRecord

IMAGES = (ImageRecord(1, "a.jpg", 200, 100), ImageRecord(2, "b.jpg", 50, 40))


def _dets(boxes: list[list[float]], scores: list[float], classes: list[int]) -> ImageDetections:
    return ImageDetections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(classes, np.int64),
    )


def test_scaled_mapped_and_in_order() -> None:
    mapping = map_classes(["car", "dragon", "person"], ["person", "car"])
    per_image = [
        _dets([[0.5, 0.5, 1.0, 1.0]], [0.9], [1]),  # dragon: not in the dataset, dropped
        _dets([[0.0, 0.25, 0.5, 0.75], [0.1, 0.1, 0.2, 0.2]], [0.8, 0.7], [2, 0]),
    ]
    dets = to_detections(per_image, [1, 0], IMAGES, mapping)
    assert dets.image_index.tolist() == [0, 0]
    assert dets.category_index.tolist() == [0, 1]  # person -> 0, car -> 1
    # Image 0 is 200x100: x1 = 0 * 200, y1 = 0.25 * 100, w = 0.5 * 200 - 0, h = 75 - 25.
    np.testing.assert_allclose(dets.boxes_xywh_px[0], [0.0, 25.0, 100.0, 50.0])
    np.testing.assert_allclose(dets.scores, [0.8, 0.7], rtol=1e-6)


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="got 1 NMS outputs for 2 image indices"):
        to_detections([_dets([], [], [])], [0, 1], IMAGES, map_classes(["a"], ["a"]))
