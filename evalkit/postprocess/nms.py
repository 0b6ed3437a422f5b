"""TensorFlow's combined non-max suppression (``tf.image.combined_non_max_suppression``), exactly.

reference-pipeline.md section 4: per class, candidates scoring above 0.001, greedy suppression
of boxes whose IoU with a kept box exceeds 0.5, at most 100 kept per class; then the 100
highest scores of the image across classes. A box (anchor) may be reported for several
classes. The rules below are those of TF's CPU kernel, tensorflow/core/kernels/image/
non_max_suppression_op.cc (``CombinedNonMaxSuppressionOp`` -> ``BatchedNonMaxSuppressionOp``
-> ``DoNMSPerClass`` per (image, class), then ``SelectResultPerBatch`` per image) and of its
Python wrapper in tensorflow/python/ops/image_ops_impl.py:

- thresholds are converted to float32 and scores compared with ``score > threshold``
  (strictly): a score equal to float32(0.001) is not a candidate;
- IoU is computed in float32 on corners taken as ``min``/``max`` of each axis (a box given
  with y1 > y2 or x1 > x2 is the same box); a box whose area is ``<= 0`` has IoU 0 with
  everything, so it neither suppresses nor is suppressed; a candidate is dropped when its IoU
  with a kept box of its class is ``> iou_threshold`` (equal is kept);
- at most ``min(max_per_class, num_boxes)`` kept per class, the greedy pass stopping there;
- across classes the kept boxes of an image are sorted by descending score and the first
  ``max_total`` are returned (``valid_detections``); ``pad_per_class`` only changes the zero
  padding after them, so it is not a setting here and no padding is returned;
- ``clip_boxes`` clamps the *returned* corners to [0, 1]; IoU used the unclipped ones.

Equal scores (frequent with int8 models) come out in the order of TF's containers, which
the API leaves undefined but the zoo's published numbers depend on (reference-pipeline.md
6b.4): per class the candidates enter a ``std::priority_queue`` ordered by score alone, in
box order, and selection pops from it; the kept boxes of all classes then go through an
unstable ``std::sort`` by descending score over the whole per-class table (its unfilled
slots included). The kernel is therefore the small C++ extension ``_tfnms`` (built with the
package), which uses those same containers the same way; ``tests/test_nms_tensorflow.py``
checks it against ``tf.image.combined_non_max_suppression`` itself, output for output, on
inputs full of equal scores, and ``tests/nms_reference.py`` emulates the two containers
step by step in Python as a second, independent reference. The kernel skips only work that
cannot change an output (its header lists it), which the same tests cover with distinct,
tied and boundary-tied scores. Calling TensorFlow instead was
measured and rejected: ``benchmarks/nms_speed.py`` (results in ``benchmarks/results/``).

Inputs are cast to float32 first (the op takes float32). Non-finite corners and NaN scores
are refused (TF would silently drop NaN scores, and IoU is meaningless on them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from evalkit.errors import InputError
from evalkit.postprocess import _tfnms
from evalkit.types import DecodedBoxes, ImageDetections

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

ALGORITHM = "tf.image.combined_non_max_suppression"
TIE_ORDER = "TensorFlow CPU kernel: std::priority_queue per class, std::sort across classes"


@dataclass(frozen=True)
class NmsSettings:
    """Combined-NMS parameters, recorded in every result; defaults are section 4's. Also the
    ``nms`` section of a run's configuration (the help texts are ``evalkit run --help``'s)."""

    iou_threshold: float = field(
        default=0.5, metadata={"help": "suppress a box whose IoU with a kept one exceeds this"}
    )
    score_threshold: float = field(default=0.001, metadata={"help": "keep scores above this"})
    max_per_class: int = field(default=100, metadata={"help": "kept boxes per class"})
    max_total: int = field(default=100, metadata={"help": "kept boxes per image"})
    clip_boxes: bool = field(
        default=True, metadata={"help": "clamp returned corners to [0, 1] (as TF's op)"}
    )

    def __post_init__(self) -> None:
        # TF's CombinedNonMaxSuppressionOp rejects the same values.
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {self.iou_threshold!r}")
        # TF accepts any threshold, but below -1 its unfilled table slots (score -1) would
        # sort among real boxes and come out as detections of box -1.
        if not self.score_threshold >= -1.0:
            raise ValueError(
                f"score_threshold must be a number >= -1, got {self.score_threshold!r}"
            )
        for name in ("max_per_class", "max_total"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the settings and the rules they run under."""
        return {
            "algorithm": ALGORITHM,
            "iou_threshold": float(self.iou_threshold),
            "score_threshold": float(self.score_threshold),
            "max_per_class": int(self.max_per_class),
            "max_total": int(self.max_total),
            "clip_boxes": bool(self.clip_boxes),
            "tie_order": TIE_ORDER,
        }


@dataclass(frozen=True, eq=False)
class NmsSelection:
    """What NMS kept for one image, in output order: box (anchor) and class indices,
    scores, and the returned corners (clipped when the settings say so)."""

    box_index: I64
    class_index: I64
    scores: F32
    boxes_xyxy_norm: F32

    def __len__(self) -> int:
        return int(self.box_index.shape[0])

    def to_detections(self) -> ImageDetections:
        """The record the rest of the pipeline consumes."""
        return ImageDetections(
            boxes_xyxy_norm=self.boxes_xyxy_norm, scores=self.scores, class_index=self.class_index
        )


# --- input checks ---------------------------------------------------------------------------


def _float32(value: Any, name: str, expected: str) -> F32:
    """``value`` as a float32 array, or an InputError naming the tensor and its dtype."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise InputError(f"expected a real {expected} array, got dtype {array.dtype}", record=name)
    # TF's kernel reads float32; cast once here so thresholds compare like TF's.
    return np.asarray(array, dtype=np.float32)


def _check_inputs(boxes: Any, scores: Any, *, batched: bool) -> tuple[F32, F32]:
    """(N, B, 4) boxes and (N, B, C) scores (no N when not batched) as float32, or an
    InputError naming the tensor, the expected and the actual shape, or the first NaN."""
    prefix = "DecodedBoxes." if batched else ""
    lead = "(N, B" if batched else "(B"
    box_name, score_name = f"{prefix}boxes_xyxy_norm", f"{prefix}scores"
    box_arr = _float32(boxes, box_name, f"{lead}, 4)")
    score_arr = _float32(scores, score_name, f"{lead}, C)")
    rank = 3 if batched else 2
    if box_arr.ndim != rank or box_arr.shape[-1] != 4:
        raise InputError(f"expected shape {lead}, 4), got {box_arr.shape}", record=box_name)
    if score_arr.ndim != rank or score_arr.shape[:-1] != box_arr.shape[:-1]:
        want = ", ".join(f"{d}" for d in box_arr.shape[:-1])
        raise InputError(
            f"expected shape {lead}, C) = ({want}, C) to match {box_name} {box_arr.shape}, "
            f"got {score_arr.shape}",
            record=score_name,
        )
    bad_boxes = ~np.isfinite(box_arr)
    if bad_boxes.any():
        where = tuple(int(i) for i in np.argwhere(bad_boxes)[0])
        raise InputError(
            f"expected finite corners, got {box_arr[where]} at index {where} "
            f"({int(bad_boxes.sum())} non-finite values)",
            record=box_name,
        )
    # A NaN anywhere makes the sum NaN, and the sum needs no mask array: the exact check
    # runs only then (the sum is NaN without one when +inf and -inf are both present).
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.add.reduce(score_arr, axis=None)
    if np.isnan(total) and (nan_scores := np.isnan(score_arr)).any():
        where = tuple(int(i) for i in np.argwhere(nan_scores)[0])
        raise InputError(
            f"expected numbers, got NaN at index {where} ({int(nan_scores.sum())} NaN scores)",
            record=score_name,
        )
    return box_arr, score_arr


# --- the kernel ----------------------------------------------------------------------------


def _kernel(boxes: F32, scores: F32, settings: NmsSettings) -> NmsSelection:
    """One image's (B, 4) corners and (B, C) scores through the kernel: kept rows in TF's
    output order, corners clipped there when the settings say so."""
    n_boxes, n_classes = scores.shape
    box, cls, score, corners = _tfnms.select(
        np.ascontiguousarray(boxes),
        np.ascontiguousarray(scores),
        n_boxes,
        n_classes,
        float(np.float32(settings.score_threshold)),
        float(np.float32(settings.iou_threshold)),
        int(settings.max_per_class),
        int(settings.max_total),
        bool(settings.clip_boxes),
    )
    return NmsSelection(
        box_index=np.frombuffer(box, np.int32).astype(np.int64),
        class_index=np.frombuffer(cls, np.int32).astype(np.int64),
        scores=np.frombuffer(score, np.float32).copy(),
        boxes_xyxy_norm=np.frombuffer(corners, np.float32).reshape(-1, 4).copy(),
    )


# --- public API -----------------------------------------------------------------------------


def select_batch(decoded: DecodedBoxes, settings: NmsSettings) -> list[NmsSelection]:
    """Combined NMS of a batch, with box indices: one NmsSelection per image."""
    boxes, scores = _check_inputs(decoded.boxes_xyxy_norm, decoded.scores, batched=True)
    return [_kernel(boxes[i], scores[i], settings) for i in range(scores.shape[0])]


def select_image(boxes_xyxy_norm: Any, scores: Any, settings: NmsSettings) -> NmsSelection:
    """Combined NMS of one image's (B, 4) corners and (B, C) scores, with box indices."""
    boxes, score_arr = _check_inputs(boxes_xyxy_norm, scores, batched=False)
    return _kernel(boxes, score_arr, settings)


def nms_image(
    boxes_xyxy_norm: Any, scores: Any, settings: NmsSettings | None = None
) -> ImageDetections:
    """Combined NMS of one image: (B, 4) corners and (B, C) scores to its detections."""
    return select_image(boxes_xyxy_norm, scores, settings or NmsSettings()).to_detections()


def nms_batch(decoded: DecodedBoxes, settings: NmsSettings) -> list[ImageDetections]:
    """Combined NMS of a batch under ``settings``: one ImageDetections per image."""
    return [selection.to_detections() for selection in select_batch(decoded, settings)]


def combined_nms(
    decoded: DecodedBoxes,
    *,
    score_threshold: float = NmsSettings.score_threshold,
    iou_threshold: float = NmsSettings.iou_threshold,
    max_per_class: int = NmsSettings.max_per_class,
    max_total: int = NmsSettings.max_total,
    clip_boxes: bool = NmsSettings.clip_boxes,
) -> list[ImageDetections]:
    """``tf.image.combined_non_max_suppression`` of a batch: one ImageDetections per image."""
    settings = NmsSettings(
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        max_per_class=max_per_class,
        max_total=max_total,
        clip_boxes=clip_boxes,
    )
    return nms_batch(decoded, settings)
