"""NMS output of many images to one :class:`Detections` record in dataset terms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evalkit.datasets.classes import ClassMapping
from evalkit.datasets.preprocess import Preprocessor
from evalkit.types import Detections, ImageDetections, ImageRecord


def to_detections(
    per_image: Sequence[ImageDetections],
    image_indices: Sequence[int],
    images: Sequence[ImageRecord],
    mapping: ClassMapping,
    preprocessor: Preprocessor | None = None,
) -> Detections:
    """Scale normalised corners to each image's pixels and map model classes to dataset
    categories; detections of model classes the dataset lacks are dropped (the mapping
    reports which). Output order is image order, then NMS order within each image.

    A letterboxing ``preprocessor`` maps the corners back through its letterbox; the
    normalised corners kept for ``st`` are then the image-normalised ones."""
    if len(per_image) != len(image_indices):
        raise ValueError(f"got {len(per_image)} NMS outputs for {len(image_indices)} image indices")
    if not per_image:
        return Detections.empty()
    counts = np.array([len(d) for d in per_image], np.int64)
    image_index = np.repeat(np.asarray(image_indices, np.int64), counts)
    norm = np.concatenate(
        [np.asarray(d.boxes_xyxy_norm, np.float32).reshape(-1, 4) for d in per_image]
    )
    boxes = norm.astype(np.float64)
    scores = np.concatenate([np.asarray(d.scores, np.float64) for d in per_image])
    model_class = np.concatenate([np.asarray(d.class_index, np.int64) for d in per_image])
    lookup = np.full(max(int(model_class.max(initial=-1)) + 1, 1), -1, np.int64)
    for model_idx, dataset_idx in mapping.model_to_dataset.items():
        if model_idx < lookup.shape[0]:
            lookup[model_idx] = dataset_idx
    category = lookup[model_class] if model_class.size else model_class
    keep = category >= 0
    widths = np.array([im.width for im in images], np.float64)[image_index]
    heights = np.array([im.height for im in images], np.float64)[image_index]
    if preprocessor is not None and preprocessor.resize == "letterbox":
        per = np.array([preprocessor.box_scale(im.width, im.height) for im in images], np.float64)
        sx, sy = per[image_index, 0], per[image_index, 1]
        x1, y1 = boxes[:, 0] * sx, boxes[:, 1] * sy
        x2, y2 = boxes[:, 2] * sx, boxes[:, 3] * sy
        norm = np.stack([x1 / widths, y1 / heights, x2 / widths, y2 / heights], 1).astype(
            np.float32
        )
    else:
        x1 = boxes[:, 0] * widths
        y1 = boxes[:, 1] * heights
        x2, y2 = boxes[:, 2] * widths, boxes[:, 3] * heights
    xywh = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    return Detections(
        image_index=image_index[keep],
        category_index=category[keep],
        boxes_xywh_px=xywh[keep],
        scores=scores[keep],
        boxes_xyxy_norm=norm[keep],
    )
