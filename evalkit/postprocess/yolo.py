"""The zoo's other detector families (reference-pipeline.md section 10), decoded as the zoo's
evaluation decodes them (``object_detection/tf/src/postprocessing/postprocess.py``): every
decoder gives normalised x1, y1, x2, y2 corners clipped to [0, 1] and per-class scores, and
the run's NMS follows, as for the SSDs. Arithmetic in float32.

- ``ultralytics`` (yolov8n, yolo11n, yolo26n): one output (N, 4+K, F) (or (N, F, 4+K)):
  normalised cx, cy, w, h, then K class scores; no objectness.
- ``yolox`` (st_yolodv2*): one output (N, F, 4+1+K) (or channels first) over strides 8, 16,
  32, grids row by row: ``xy = (p + grid) * stride``, ``wh = exp(p) * stride``, divided by
  the input size; score = class probability x objectness (both already in the graph).
- ``yolov2`` (yolov2t, st_yololcv1): one grid (N, H, W, A*(5+K)) with anchors (w, h in grid
  cells): ``xy = (sigmoid(p) + cell) / grid``, ``wh = exp(p) * anchor / grid``, score =
  sigmoid(objectness) x softmax(classes). The cell of flat position k is
  ``(k mod H, k div H)``, the zoo's indexing (the same as (column, row) on square grids).
- ``yoloxn`` (st_yoloxn): one such YOLOv2 head per output, outputs taken largest grid
  first, anchors scaled per level by ``input / stride``.
- ``blazeface`` (face_detect_front): boxes (1, 512, 16), (1, 384, 16) and scores
  (1, 512, 1), (1, 384, 1) against MediaPipe's 896 front anchors; the first four box values
  are cx, cy, w, h in input pixels; score = sigmoid(clip(raw, -80, 80)); one class; corners
  not clipped (as the zoo's decode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from evalkit.errors import InputError
from evalkit.models.priors import BLAZEFACE_SIZE, blazeface_anchors
from evalkit.types import DecodedBoxes, RawOutputs

F32 = npt.NDArray[np.float32]
YOLOX_STRIDES = (8, 16, 32)
# MediaPipe's limit is 100; the zoo uses 80, safe for a float32 sigmoid.
BLAZEFACE_RAW_SCORE_LIMIT = 80.0


def _single(outputs: RawOutputs, model: str, what: str) -> F32:
    if len(outputs.tensors) != 1:
        raise InputError(
            f"{what}: expected one output, got {list(outputs.tensors)}", path=model or None
        )
    array = np.asarray(next(iter(outputs.tensors.values())))
    if not np.all(np.isfinite(array)):
        raise InputError(f"{what}: the output holds NaN or infinite values", path=model or None)
    return array.astype(np.float32)


def corners(cx: F32, cy: F32, w: F32, h: F32, clip: bool = True) -> F32:
    """Centre and size to x1, y1, x2, y2 (float32), clipped to [0, 1] unless told not."""
    half_w, half_h = w / np.float32(2), h / np.float32(2)
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)
    return np.clip(boxes, 0.0, 1.0) if clip else boxes


def _sigmoid(x: F32) -> F32:
    return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)


def _softmax(x: F32) -> F32:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def _names(request: Any) -> tuple[str, ...] | None:
    return None if request.class_names is None else tuple(request.class_names)


def _check_names(names: tuple[str, ...] | None, columns: int, model: str) -> None:
    if names is not None and len(names) != columns:
        raise InputError(
            f"{len(names)} class names given but the model has {columns} class columns",
            path=model or None,
        )


@dataclass(frozen=True)
class UltralyticsDecoder:
    name: ClassVar[str] = "ultralytics"
    names_from_model: ClassVar[bool] = False
    class_names: tuple[str, ...] | None = None
    model: str = ""

    @classmethod
    def for_request(cls, request: Any) -> UltralyticsDecoder:
        return cls(_names(request), str(request.model))

    def decode(self, outputs: RawOutputs) -> DecodedBoxes:
        raw = _single(outputs, self.model, self.name)
        if raw.ndim != 3:
            raise InputError(
                f"{self.name}: expected (N, 4+K, F), got {raw.shape}", path=self.model or None
            )
        width = 4 + len(self.class_names) if self.class_names else None
        if width is None and raw.shape[1] == raw.shape[2]:
            raise InputError(
                f"{self.name}: cannot tell (N, 4+K, F) from (N, F, 4+K) in "
                f"{raw.shape}: set class_names",
                path=self.model or None,
            )
        if (width is not None and raw.shape[1] == width) or (
            width is None and raw.shape[1] < raw.shape[2]
        ):
            raw = raw.transpose(0, 2, 1)  # (N, F, 4+K), as the zoo reads it
        _check_names(self.class_names, raw.shape[2] - 4, self.model)
        boxes = corners(raw[..., 0], raw[..., 1], raw[..., 2], raw[..., 3])
        return DecodedBoxes(np.ascontiguousarray(boxes), np.ascontiguousarray(raw[..., 4:]))

    def settings(self) -> dict[str, Any]:
        return {"decoder": self.name, "class_names": _listed(self.class_names)}


def yolox_grid(width: int, height: int, strides: Sequence[int] = YOLOX_STRIDES) -> tuple[F32, F32]:
    """Cell (x, y) and stride of every YOLOX prediction, level by level, row by row."""
    cells, steps = [], []
    for stride in strides:
        ys, xs = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        steps.append(np.full(xs.size, stride))
    return (
        np.concatenate(cells).astype(np.float32),
        np.concatenate(steps).astype(np.float32)[:, None],
    )


@dataclass(frozen=True)
class YoloxDecoder:
    name: ClassVar[str] = "yolox"
    names_from_model: ClassVar[bool] = False
    input_size: tuple[int, int] = (320, 320)  # (width, height) of the model input
    class_names: tuple[str, ...] | None = None
    strides: tuple[int, ...] = YOLOX_STRIDES
    model: str = ""

    @classmethod
    def for_request(cls, request: Any) -> YoloxDecoder:
        strides = tuple(request.strides) if request.strides else YOLOX_STRIDES
        return cls(tuple(request.input_size), _names(request), strides, str(request.model))

    def decode(self, outputs: RawOutputs) -> DecodedBoxes:
        raw = _single(outputs, self.model, self.name)
        width, height = self.input_size
        cells, strides = yolox_grid(width, height, self.strides)
        count = cells.shape[0]
        if raw.ndim == 3 and raw.shape[1] != count and raw.shape[2] == count:
            raw = raw.transpose(0, 2, 1)  # channels first (a target's layout)
        if raw.ndim != 3 or raw.shape[1] != count or raw.shape[2] < 6:
            raise InputError(
                f"{self.name}: expected (N, {count}, 5+K) for a {width}x{height} input with "
                f"strides {list(self.strides)}, got {raw.shape}",
                path=self.model or None,
            )
        _check_names(self.class_names, raw.shape[2] - 5, self.model)
        xy = (raw[..., 0:2] + cells) * strides
        wh = np.exp(raw[..., 2:4]) * strides
        size = np.array([width, height], np.float32)
        xy, wh = xy / size, wh / size
        boxes = corners(xy[..., 0], xy[..., 1], wh[..., 0], wh[..., 1])
        scores = raw[..., 5:] * raw[..., 4:5]
        return DecodedBoxes(np.ascontiguousarray(boxes), np.ascontiguousarray(scores))

    def settings(self) -> dict[str, Any]:
        return {
            "decoder": self.name,
            "input_size": list(self.input_size),
            "strides": list(self.strides),
            "class_names": _listed(self.class_names),
        }


def yolov2_head(feats: F32, anchors: F32, num_classes: int) -> tuple[F32, F32]:
    """One YOLOv2 grid (N, H, W, A*(5+K)) to corners (N, H*W*A, 4) and scores (N, H*W*A, K)."""
    n, h, w, channels = feats.shape
    a = anchors.shape[0]
    if channels != a * (5 + num_classes):
        raise ValueError(f"{channels} channels for {a} anchors x (5 + {num_classes} classes)")
    p = feats.reshape(n, h, w, a, 5 + num_classes)
    k = np.arange(h * w)
    # The zoo's cell indexing: flat position k has cell (k mod H, k div H).
    cell = np.stack([k % h, k // h], axis=1).astype(np.float32).reshape(1, h, w, 1, 2)
    dims = np.array([h, w], np.float32)
    xy = (_sigmoid(p[..., 0:2]) + cell) / dims
    wh = np.exp(p[..., 2:4]) * anchors.reshape(1, 1, 1, a, 2) / dims
    boxes = corners(xy[..., 0], xy[..., 1], wh[..., 0], wh[..., 1])
    scores = _sigmoid(p[..., 4:5]) * _softmax(p[..., 5:])
    return boxes.reshape(n, -1, 4), scores.reshape(n, -1, num_classes)


@dataclass(frozen=True)
class YoloV2Decoder:
    name: ClassVar[str] = "yolov2"
    names_from_model: ClassVar[bool] = False
    anchors: tuple[tuple[float, float], ...] = ()
    class_names: tuple[str, ...] | None = None
    model: str = ""

    @classmethod
    def for_request(cls, request: Any) -> YoloV2Decoder:
        if not request.anchors:
            raise InputError(
                f"the {cls.name} decoder needs the model's anchors (w, h in grid "
                "cells): set anchors",
                path=request.model,
            )
        anchors = tuple((float(w), float(h)) for w, h in request.anchors)
        return cls(anchors, _names(request), str(request.model))

    def _grid(self, feats: F32, anchors: F32) -> tuple[F32, F32]:
        if feats.ndim != 4:
            raise InputError(
                f"{self.name}: expected a grid (N, H, W, A*(5+K)), got {feats.shape}",
                path=self.model or None,
            )
        columns, rest = divmod(feats.shape[3], anchors.shape[0])
        if rest or columns < 6:
            raise InputError(
                f"{self.name}: {feats.shape[3]} channels do not hold "
                f"{anchors.shape[0]} anchors x (5 + K)",
                path=self.model or None,
            )
        _check_names(self.class_names, columns - 5, self.model)
        return yolov2_head(feats, anchors, columns - 5)

    def decode(self, outputs: RawOutputs) -> DecodedBoxes:
        feats = _single(outputs, self.model, self.name)
        boxes, scores = self._grid(feats, np.array(self.anchors, np.float32))
        return DecodedBoxes(boxes, scores)

    def settings(self) -> dict[str, Any]:
        return {
            "decoder": self.name,
            "anchors": [list(a) for a in self.anchors],
            "class_names": _listed(self.class_names),
        }


@dataclass(frozen=True)
class YoloxnDecoder(YoloV2Decoder):
    name: ClassVar[str] = "yoloxn"
    input_size: tuple[int, int] = (192, 192)
    strides: tuple[int, ...] = field(default=())

    @classmethod
    def for_request(cls, request: Any) -> YoloxnDecoder:
        base = YoloV2Decoder.for_request(request)
        if not request.strides:
            raise InputError(
                f"the {cls.name} decoder needs the network strides of its outputs: set strides",
                path=request.model,
            )
        return cls(
            base.anchors,
            base.class_names,
            base.model,
            tuple(request.input_size),
            tuple(int(s) for s in request.strides),
        )

    def decode(self, outputs: RawOutputs) -> DecodedBoxes:
        levels = sorted(
            (np.asarray(v, np.float32) for v in outputs.tensors.values()),
            key=lambda x: x.shape[1],
            reverse=True,
        )
        if len(levels) != len(self.strides):
            raise InputError(
                f"{self.name}: {len(levels)} outputs for strides {list(self.strides)}",
                path=self.model or None,
            )
        base = np.array(self.anchors, np.float32)
        parts = [
            self._grid(feats, base * np.float32(self.input_size[0] / stride))
            for feats, stride in zip(levels, self.strides, strict=True)
        ]
        boxes = np.concatenate([b for b, _ in parts], axis=1)
        scores = np.concatenate([s for _, s in parts], axis=1)
        return DecodedBoxes(boxes, scores)

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "input_size": list(self.input_size),
            "strides": list(self.strides),
        }


@dataclass(frozen=True)
class BlazeFaceDecoder:
    name: ClassVar[str] = "blazeface"
    names_from_model: ClassVar[bool] = False
    class_names: tuple[str, ...] | None = ("face",)
    model: str = ""

    @classmethod
    def for_request(cls, request: Any) -> BlazeFaceDecoder:
        names = _names(request) or ("face",)
        _check_names(names, 1, str(request.model))
        return cls(names, str(request.model))

    def decode(self, outputs: RawOutputs) -> DecodedBoxes:
        arrays = [np.asarray(v, np.float32) for v in outputs.tensors.values()]
        if len(arrays) != 4 or any(a.ndim != 3 for a in arrays):
            raise InputError(
                f"{self.name}: expected 4 outputs (N, anchors, 16 or 1), got "
                f"{[a.shape for a in arrays]}",
                path=self.model or None,
            )
        ordered = sorted(arrays, key=lambda a: (a.shape[1], a.shape[2]), reverse=True)
        boxes_raw = np.concatenate([ordered[0][..., :4], ordered[2][..., :4]], axis=1)
        scores_raw = np.concatenate([ordered[1][..., -1:], ordered[3][..., -1:]], axis=1)
        anchors = blazeface_anchors()
        if boxes_raw.shape[1] != anchors.shape[0]:
            raise InputError(
                f"{self.name}: {boxes_raw.shape[1]} boxes for {anchors.shape[0]} anchors",
                path=self.model or None,
            )
        scaled = boxes_raw / np.float32(BLAZEFACE_SIZE)
        centre = scaled[..., 0:2] + anchors
        boxes = corners(centre[..., 0], centre[..., 1], scaled[..., 2], scaled[..., 3], clip=False)
        limit = np.float32(BLAZEFACE_RAW_SCORE_LIMIT)
        scores = _sigmoid(np.clip(scores_raw, -limit, limit))
        return DecodedBoxes(np.ascontiguousarray(boxes), np.ascontiguousarray(scores))

    def settings(self) -> dict[str, Any]:
        return {
            "decoder": self.name,
            "anchors": "mediapipe front, 896",
            "class_names": _listed(self.class_names),
        }


def _listed(names: tuple[str, ...] | None) -> list[str] | None:
    return None if names is None else list(names)


FAMILY_DECODERS = (UltralyticsDecoder, YoloxDecoder, YoloV2Decoder, YoloxnDecoder, BlazeFaceDecoder)
