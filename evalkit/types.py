"""Frozen records that cross stage boundaries.

Box arrays carry their format in the field name (``boxes_xywh_px``: top-left corner, width
and height in original-image pixels). Arrays are columnar so that every stage can work on
whole datasets with numpy instead of looping over Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ImageId = int | str
# The arithmetic a model computes in (a runner detects it; a run records it).
Precision = Literal["float", "int8"]
PRECISIONS: tuple[Precision, ...] = ("float", "int8")
GroundTruthSource = Literal["coco", "voc"]


@dataclass(frozen=True)
class Category:
    """One object class: its dataset id (COCO category id, or 1-based VOC index) and name."""

    id: int
    name: str


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset: its id (COCO int id or VOC image name), file and size."""

    image_id: ImageId
    file_name: str
    width: int
    height: int


def _frozen(array: npt.ArrayLike, dtype: npt.DTypeLike, shape_tail: tuple[int, ...] = ()) -> Any:
    """Copy ``array`` to ``dtype`` and make it read-only, so records stay immutable."""
    out = np.array(array, dtype=dtype, copy=True)
    if shape_tail and out.size == 0:
        out = out.reshape((0, *shape_tail))
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The annotations of an evaluated set, one row per annotated object.

    ``images`` keeps the dataset's own order (the ``images`` list of a COCO file, the
    split-file order of VOC): the ``st`` protocol depends on it. Annotation rows keep file
    order too (pycocotools matches ground truths of an image in that order).

    VOC boxes are stored zero-based: ``x = xmin - 1`` and ``w = xmax - xmin`` so that
    ``x + w`` is the zoo's shifted ``xmax - 1``; +1-convention IoUs are unchanged by the
    shift, so the VOC devkit rules still hold exactly.
    """

    images: tuple[ImageRecord, ...]
    categories: tuple[Category, ...]
    image_index: IntArray
    category_index: IntArray
    boxes_xywh_px: FloatArray
    area: FloatArray
    iscrowd: BoolArray
    difficult: BoolArray
    annotation_id: IntArray
    source: GroundTruthSource = "coco"
    name: str = ""
    # VOC <truncated>; left empty (all False) when the source has no such flag.
    truncated: BoolArray = field(default_factory=lambda: np.zeros(0, np.bool_))
    _image_lookup: dict[ImageId, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(np.asarray(self.image_index))
        set_ = object.__setattr__
        set_(self, "image_index", _frozen(self.image_index, np.int64))
        set_(self, "category_index", _frozen(self.category_index, np.int64))
        set_(self, "boxes_xywh_px", _frozen(self.boxes_xywh_px, np.float64, (4,)))
        set_(self, "area", _frozen(self.area, np.float64))
        set_(self, "iscrowd", _frozen(self.iscrowd, np.bool_))
        set_(self, "difficult", _frozen(self.difficult, np.bool_))
        set_(self, "annotation_id", _frozen(self.annotation_id, np.int64))
        truncated = self.truncated if len(self.truncated) else np.zeros(n, np.bool_)
        set_(self, "truncated", _frozen(truncated, np.bool_))
        columns = {
            "category_index": self.category_index,
            "boxes_xywh_px": self.boxes_xywh_px,
            "area": self.area,
            "iscrowd": self.iscrowd,
            "difficult": self.difficult,
            "annotation_id": self.annotation_id,
            "truncated": self.truncated,
        }
        for column, values in columns.items():
            if len(values) != n:
                raise ValueError(
                    f"GroundTruth column {column!r} has {len(values)} rows, expected {n}"
                )
        if self.boxes_xywh_px.shape != (n, 4):
            raise ValueError(
                f"GroundTruth.boxes_xywh_px must have shape ({n}, 4), "
                f"got {self.boxes_xywh_px.shape}"
            )
        set_(self, "_image_lookup", {im.image_id: i for i, im in enumerate(self.images)})
        if len(self._image_lookup) != len(self.images):
            raise ValueError("GroundTruth.images holds duplicate image ids")

    @property
    def num_annotations(self) -> int:
        return int(self.image_index.shape[0])

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    @property
    def image_lookup(self) -> dict[ImageId, int]:
        """Image id to position in ``images`` (do not modify)."""
        return self._image_lookup

    def image_position(self, image_id: ImageId) -> int | None:
        """Index of ``image_id`` in ``images``, or None when the set has no such image."""
        return self._image_lookup.get(image_id)


@dataclass(frozen=True, eq=False)
class Detections:
    """Scored boxes for the images of one :class:`GroundTruth`, one row per detection.

    ``image_index`` and ``category_index`` index that ground truth's ``images`` and
    ``categories``. Row order is meaningful: it is the producer's order (file order for a
    results file, NMS output order for a model), and every protocol's tie-breaking uses it.

    ``boxes_xyxy_norm`` (float32, optional) are the NMS output's own normalised corners when
    the detections come from a model: the ``st`` protocol scales those, as the zoo does,
    instead of going back from pixels (which can round differently).
    """

    image_index: IntArray
    category_index: IntArray
    boxes_xywh_px: FloatArray
    scores: FloatArray
    boxes_xyxy_norm: Any = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "image_index", _frozen(self.image_index, np.int64))
        set_(self, "category_index", _frozen(self.category_index, np.int64))
        set_(self, "boxes_xywh_px", _frozen(self.boxes_xywh_px, np.float64, (4,)))
        set_(self, "scores", _frozen(self.scores, np.float64))
        n = self.image_index.shape[0]
        if self.boxes_xyxy_norm is not None:
            set_(self, "boxes_xyxy_norm", _frozen(self.boxes_xyxy_norm, np.float32, (4,)))
            if self.boxes_xyxy_norm.shape != (n, 4):
                raise ValueError(
                    f"Detections.boxes_xyxy_norm must have shape ({n}, 4), "
                    f"got {self.boxes_xyxy_norm.shape}"
                )
        if self.category_index.shape != (n,) or self.scores.shape != (n,):
            raise ValueError(
                f"Detections columns disagree: {n} image indices, "
                f"{self.category_index.shape[0]} category indices, {self.scores.shape[0]} scores"
            )
        if self.boxes_xywh_px.shape != (n, 4):
            raise ValueError(
                f"Detections.boxes_xywh_px must have shape ({n}, 4), got {self.boxes_xywh_px.shape}"
            )

    def __len__(self) -> int:
        return int(self.image_index.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            image_index=np.zeros(0, np.int64),
            category_index=np.zeros(0, np.int64),
            boxes_xywh_px=np.zeros((0, 4), np.float64),
            scores=np.zeros(0, np.float64),
        )


@dataclass(frozen=True, eq=False)
class ClassResult:
    """One class under one protocol: AP at the protocol's IoU, counts and its PR curve.

    ``recall``/``precision`` are the cumulative curve over the class's detections in
    evaluation order (for ``coco``: the 101 interpolated precision values at the recall
    thresholds). ``ap`` is None for a class the protocol leaves out of the mean (no
    ground truth).
    """

    name: str
    category_id: int
    ap: float | None
    num_gt: int
    num_detections: int
    tp: int
    fp: int
    recall: FloatArray
    precision: FloatArray
    ap_coco: float | None = None
    # Best-then-claim protocols (st, voc): each detection's score and decision (1 true
    # positive, 0 false positive, -1 ignored) in evaluation order, for operating points.
    decisions: tuple[FloatArray, IntArray] | None = None


@dataclass(frozen=True, eq=False)
class EvalResult:
    """Everything one protocol measured on one set of detections."""

    protocol: str
    iou: float
    ap: float
    per_class: tuple[ClassResult, ...]
    num_images: int
    num_gt: int
    num_detections: int
    tp: int
    fp: int
    stats: tuple[float, ...] | None = None
    stat_names: tuple[str, ...] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ap_key(self) -> str:
        """Name of the headline metric, e.g. ``AP50`` for IoU 0.5."""
        return f"AP{round(self.iou * 100):d}"

    def per_class_ap(self) -> dict[str, float]:
        """Class name to AP, for the classes that count in the mean."""
        return {c.name: c.ap for c in self.per_class if c.ap is not None}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no large arrays)."""
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "iou": self.iou,
            # "ap" is the headline whatever the IoU; the AP50-style key names the IoU too.
            "ap": self.ap,
            self.ap_key: self.ap,
            "per_class": self.per_class_ap(),
            "classes": [
                {
                    "name": c.name,
                    "category_id": c.category_id,
                    "AP": c.ap,
                    "num_gt": c.num_gt,
                    "num_detections": c.num_detections,
                    "tp": c.tp,
                    "fp": c.fp,
                    # At the headline IoU: the share of the class's ground truths found.
                    "recall": c.tp / c.num_gt if c.num_gt else None,
                    **({"AP_50_95": c.ap_coco} if c.ap_coco is not None else {}),
                }
                for c in self.per_class
            ],
            "num_images": self.num_images,
            "num_gt": self.num_gt,
            "num_detections": self.num_detections,
            "tp": self.tp,
            "fp": self.fp,
            "settings": dict(self.settings),
        }
        if self.stats is not None:
            out["stats"] = list(self.stats)
            out["stat_names"] = list(self.stat_names or ())
        return out


@dataclass(frozen=True, eq=False)
class RawOutputs:
    """One batch of a model's output tensors, by output name, batch dimension first, exactly
    as the runtime returned them (no decoding)."""

    tensors: dict[str, Any]

    def batch_size(self) -> int:
        return int(next(iter(self.tensors.values())).shape[0]) if self.tensors else 0


@dataclass(frozen=True, eq=False)
class DecodedBoxes:
    """A batch of per-box scores and corners before NMS.

    ``boxes_xyxy_norm`` is (N, B, 4) float32 corners normalised to the model input;
    ``scores`` is (N, B, C) float32, one column per model class (background removed).
    """

    boxes_xyxy_norm: Any
    scores: Any


@dataclass(frozen=True, eq=False)
class ImageDetections:
    """NMS output for one image, in output order: normalised corners, scores and model
    class indices (columns of :class:`DecodedBoxes.scores`)."""

    boxes_xyxy_norm: Any
    scores: Any
    class_index: Any

    def __len__(self) -> int:
        return int(self.scores.shape[0])
