"""A plain loop implementation of TensorFlow's combined non-max suppression.

Written from the rules (reference-pipeline.md section 4, and TF's CPU kernel
``CombinedNonMaxSuppression`` in tensorflow/core/kernels/image/non_max_suppression_op.cc:
``DoNMSPerClass`` then ``SelectResultPerBatch``), one class and one box at a time with Python
lists and float32 scalars, so that it shares no code and no vectorisation trick with
``evalkit.postprocess.nms``. It exists only for the parity tests and the speed benchmark;
obviousness is the point.

Equal scores come out as TF's containers order them: the candidates of a class go into a
``std::priority_queue`` keyed on score alone, in box order, and the per-class result table
(unfilled slots included) is put through ``std::sort``; both are emulated step by step in
``tests/stl_order.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .stl_order import PriorityQueue, std_sort


@dataclass(frozen=True)
class RefDetection:
    """One kept box: its image, box (anchor) index, class index, score and output corners."""

    image: int
    box: int
    class_index: int
    score: float
    corners: tuple[float, float, float, float]


def tf_iou(a: tuple[Any, ...], b: tuple[Any, ...]) -> Any:
    """TF's ``IOU()`` on two boxes of four float32 scalars, in float32 step by step."""
    # Corners may come in either order: take min and max of each axis first.
    a_lo0, a_hi0 = min(a[0], a[2]), max(a[0], a[2])
    a_lo1, a_hi1 = min(a[1], a[3]), max(a[1], a[3])
    b_lo0, b_hi0 = min(b[0], b[2]), max(b[0], b[2])
    b_lo1, b_hi1 = min(b[1], b[3]), max(b[1], b[3])
    area_a = (a_hi0 - a_lo0) * (a_hi1 - a_lo1)
    area_b = (b_hi0 - b_lo0) * (b_hi1 - b_lo1)
    # A box without area overlaps nothing.
    if area_a <= 0 or area_b <= 0:
        return np.float32(0.0)
    side0 = max(min(a_hi0, b_hi0) - max(a_lo0, b_lo0), np.float32(0.0))
    side1 = max(min(a_hi1, b_hi1) - max(a_lo1, b_lo1), np.float32(0.0))
    inter = side0 * side1
    return inter / (area_a + area_b - inter)


def reference_nms(
    boxes: Any,
    scores: Any,
    *,
    score_threshold: float = 0.001,
    iou_threshold: float = 0.5,
    max_per_class: int = 100,
    max_total: int = 100,
    clip_boxes: bool = True,
) -> list[list[RefDetection]]:
    """Combined NMS of (N, B, 4) boxes and (N, B, C) scores, one list per image."""
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    score_thr = np.float32(score_threshold)
    iou_thr = np.float32(iou_threshold)
    n_images, n_boxes, n_classes = scores.shape
    per_class_limit = min(max_per_class, n_boxes)
    out: list[list[RefDetection]] = []
    for image in range(n_images):
        image_boxes = [tuple(np.float32(v) for v in boxes[image, b]) for b in range(n_boxes)]
        # The per-class result table: per_class_limit slots per class, unfilled ones
        # (score -1, box -1) sorted along with the rest.
        table: list[tuple[Any, int, int]] = [
            (np.float32(-1.0), -1, -1) for _ in range(per_class_limit * n_classes)
        ]
        for c in range(n_classes):
            queue = PriorityQueue(lambda a, b: a[0] < b[0])
            for b in range(n_boxes):
                s = scores[image, b, c]
                if s > score_thr:  # strictly above the threshold
                    queue.push((s, b))
            selected: list[int] = []
            while len(selected) < per_class_limit and len(queue):
                s, b = queue.top()
                queue.pop()
                suppressed = False
                for k in reversed(selected):
                    if tf_iou(image_boxes[b], image_boxes[k]) > iou_thr:
                        suppressed = True
                        break
                if not suppressed:
                    table[c * per_class_limit + len(selected)] = (s, b, c)
                    selected.append(b)
        std_sort(table, lambda a, b: a[0] > b[0])
        filled = sum(1 for row in table if row[1] > -1)
        image_out = []
        for s, b, c in table[: min(filled, max_total)]:
            corners = tuple(float(v) for v in image_boxes[b])
            if clip_boxes:
                corners = tuple(max(min(v, 1.0), 0.0) for v in corners)
            image_out.append(RefDetection(image, b, c, float(s), corners))  # type: ignore[arg-type]
        out.append(image_out)
    return out
