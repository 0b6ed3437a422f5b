"""Decoders: a model's raw outputs to per-box class scores and normalised corners (pre-NMS).

Registered in :data:`DECODERS`: ``st-ssd`` (the zoo's raw logits and prior offsets,
reference-pipeline.md section 4), ``tfod-ssd`` (TF-OD SSD exports cut before their NMS:
sigmoid scores, column j = COCO category id j, and anchor encodings) and ``decoded``
(scores and corners computed in the model, the deployed form); lazily, ``final-detections``
(:mod:`evalkit.postprocess.final`) and the other families' ``ultralytics``, ``yolox``,
``yolov2``, ``yoloxn`` and ``blazeface`` (:mod:`evalkit.postprocess.yolo`). The output forms
and :func:`detect_decoder`, which picks one from names and shapes, live in ``outputs.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from evalkit.errors import InputError
from evalkit.models.priors import ssd_priors
from evalkit.postprocess.outputs import (
    DECODED_BOXES,
    DECODED_OUTPUT_NAMES,
    DECODED_SCORES,
    ST_SSD_CENTER_VARIANCE,
    ST_SSD_NUM_PRIORS,
    ST_SSD_OFFSETS,
    ST_SSD_OUTPUT_NAMES,
    ST_SSD_SCORES,
    ST_SSD_SIZE_VARIANCE,
    TFOD_BOX_ENCODINGS,
    TFOD_CLASS_SCORES,
    TFOD_NUM_ANCHORS,
    TFOD_SCALES,
    Spec,
    box_and_score_outputs,
    detect_decoder,
)
from evalkit.postprocess.tfod_labels import load_coco_labels, tfod_class_names
from evalkit.registry import Registry
from evalkit.types import DecodedBoxes, RawOutputs

F32 = npt.NDArray[np.float32]

__all__ = [
    "DECODED_BOXES",
    "DECODED_OUTPUT_NAMES",
    "DECODED_SCORES",
    "DECODERS",
    "ST_SSD_CENTER_VARIANCE",
    "ST_SSD_NUM_PRIORS",
    "ST_SSD_OFFSETS",
    "ST_SSD_OUTPUT_NAMES",
    "ST_SSD_SCORES",
    "ST_SSD_SIZE_VARIANCE",
    "TFOD_BOX_ENCODINGS",
    "TFOD_CLASS_SCORES",
    "TFOD_NUM_ANCHORS",
    "TFOD_SCALES",
    "DecodedDecoder",
    "Decoder",
    "Spec",
    "StSsdDecoder",
    "TfodSsdDecoder",
    "detect_decoder",
    "load_coco_labels",
    "tfod_class_names",
    "torch_softmax",
]

# Probabilities from an int8 graph are dequantized values: allow a little past [0, 1].
_PROBABILITY_SLACK = 1e-2


class Decoder(Protocol):
    """Raw outputs of one model form to :class:`DecodedBoxes`."""

    @property
    def name(self) -> str: ...

    @property
    def class_names(self) -> tuple[str, ...] | None: ...

    def decode(self, outputs: RawOutputs) -> DecodedBoxes:
        """Scores (N, B, C) without background and clipped corners (N, B, 4), float32."""
        ...

    def settings(self) -> dict[str, Any]:
        """The decoder's parameters as plain JSON values, for result records."""
        ...


def _error(problem: str, model: str) -> InputError:
    return InputError(problem, path=model or None)


def _tensor(
    outputs: RawOutputs, name: str, what: str, expected: Sequence[int | str], model: str
) -> F32:
    """Output ``name`` as float32, checked against ``expected`` (strings are free) and NaN."""
    if name not in outputs.tensors:
        known = list(outputs.tensors)
        raise _error(f"missing output {name!r} ({what}); the model's outputs are {known}", model)
    array = np.asarray(outputs.tensors[name])
    if not np.issubdtype(array.dtype, np.floating):
        raise _error(f"output {name!r} ({what}): expected floats, got {array.dtype}", model)
    fits = array.ndim == len(expected) and all(
        not isinstance(e, int) or e == d for e, d in zip(expected, array.shape, strict=True)
    )
    if not fits:
        shown = "(" + ", ".join(str(e) for e in expected) + ")"
        raise _error(f"output {name!r} ({what}): expected shape {shown}, got {array.shape}", model)
    bad = ~np.isfinite(array)
    if bad.any():
        nan = int(np.isnan(array).sum())
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _error(
            f"output {name!r} ({what}) holds {nan} NaN and {int(bad.sum()) - nan} infinite "
            f"values (first at index {first}); the model or runtime produced invalid numbers",
            model,
        )
    return array.astype(np.float32, copy=False)


def _check_probabilities(array: F32, name: str, what: str, model: str) -> None:
    if array.size == 0:
        return
    lo, hi = float(array.min()), float(array.max())
    if lo < -_PROBABILITY_SLACK or hi > 1 + _PROBABILITY_SLACK:
        raise _error(
            f"output {name!r} ({what}): expected probabilities in [0, 1], got values in "
            f"[{lo:g}, {hi:g}]; raw logits need a decoder that applies softmax (st-ssd)",
            model,
        )


def torch_softmax(logits: Any) -> F32:
    """``torch.softmax(dim=-1)`` on float32 logits, as the zoo computes its scores (6b.3):
    a numpy softmax differs by 1-5 ulp in about 40% of the values, which reorders equal
    scores in NMS. torch is imported here, on first use."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    with torch.no_grad():
        return torch.softmax(tensor, dim=-1).numpy()


def _check_class_names(names: tuple[str, ...] | None, columns: int, model: str) -> None:
    if names is not None and len(names) != columns:
        raise _error(
            f"{len(names)} class names given but the model has {columns} class columns "
            "(background excluded)",
            model,
        )


@dataclass(frozen=True, eq=False)
class StSsdDecoder:
    """The zoo's ssd_mobilenetv2_pt outputs: softmax scores and prior-decoded corners."""

    name: ClassVar[str] = "st-ssd"
    names_from_model: ClassVar[bool] = False
    priors_cxcywh: Any = None  # (P, 4) (cx, cy, w, h); None: the zoo's 3000 priors
    center_variance: float = ST_SSD_CENTER_VARIANCE
    size_variance: float = ST_SSD_SIZE_VARIANCE
    scores_name: str = ST_SSD_SCORES
    offsets_name: str | None = None  # None: the one output besides ``scores_name``
    class_names: tuple[str, ...] | None = None
    model: str = ""

    def __post_init__(self) -> None:
        priors = ssd_priors() if self.priors_cxcywh is None else self.priors_cxcywh
        priors = np.array(priors, dtype=np.float32)
        if priors.ndim != 2 or priors.shape[1] != 4:
            raise ValueError(f"expected priors of shape (P, 4), got {priors.shape}")
        priors.setflags(write=False)
        object.__setattr__(self, "priors_cxcywh", priors)

    @classmethod
    def for_request(cls, request: DecoderRequest) -> StSsdDecoder:
        return cls(class_names=request.class_names, model=str(request.model))

    def decode(self, outputs: RawOutputs) -> DecodedBoxes:
        """Softmax over NC+1, drop background; decode offsets with variances; clip."""
        num = self.priors_cxcywh.shape[0]
        shape: tuple[int | str, ...] = ("N", num, "NC+1")
        logits = _tensor(outputs, self.scores_name, "class logits", shape, self.model)
        offsets_name = self.offsets_name or self._other_output(outputs)
        shape = (logits.shape[0], num, 4)
        offsets = _tensor(outputs, offsets_name, "box offsets", shape, self.model)
        if logits.shape[2] < 2:
            raise _error(
                f"output {self.scores_name!r}: no class column besides background", self.model
            )
        _check_class_names(self.class_names, logits.shape[2] - 1, self.model)
        probs = torch_softmax(logits)
        p = self.priors_cxcywh
        # Same operand order as the zoo: offset * variance * prior size + prior centre.
        centers = offsets[..., :2] * np.float32(self.center_variance) * p[:, 2:] + p[:, :2]
        sizes = np.exp(offsets[..., 2:] * np.float32(self.size_variance)) * p[:, 2:]
        corners = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=-1)
        np.clip(corners, 0.0, 1.0, out=corners)
        return DecodedBoxes(
            boxes_xyxy_norm=np.ascontiguousarray(corners, dtype=np.float32),
            scores=np.ascontiguousarray(probs[..., 1:], dtype=np.float32),
        )

    def _other_output(self, outputs: RawOutputs) -> str:
        others = [name for name in outputs.tensors if name != self.scores_name]
        if len(others) != 1:
            raise _error(
                f"expected one output besides {self.scores_name!r} (the box offsets), got "
                f"{others}; pass offsets_name",
                self.model,
            )
        return others[0]

    def settings(self) -> dict[str, Any]:
        return {
            "decoder": self.name,
            "num_priors": int(self.priors_cxcywh.shape[0]),
            "center_variance": self.center_variance,
            "size_variance": self.size_variance,
            "outputs": {"scores": self.scores_name, "offsets": self.offsets_name or "the other"},
            "class_names": None if self.class_names is None else list(self.class_names),
        }


@dataclass(frozen=True, eq=False)
class TfodSsdDecoder:
    """TF-OD SSD outputs: sigmoid scores (background column 0) and anchor encodings.

    ``clip`` (default on) clips corners to [0, 1] as TF-OD's own post-processing does
    with its clip window. Class column j (j >= 1) is COCO category id j.
    """

    name: ClassVar[str] = "tfod-ssd"
    anchors_ycxchw: Any = None  # (A, 4) (ya, xa, ha, wa), normalised; required
    scales: tuple[float, float, float, float] = TFOD_SCALES
    class_names: tuple[str, ...] | None = None
    clip: bool = True
    box_encodings_name: str = TFOD_BOX_ENCODINGS
    class_scores_name: str = TFOD_CLASS_SCORES
    model: str = ""

    def __post_init__(self) -> None:
        if self.anchors_ycxchw is None:
            raise ValueError("tfod-ssd needs its anchors: pass anchors_ycxchw (A, 4)")
        anchors = np.array(self.anchors_ycxchw, dtype=np.float32)
        if anchors.ndim != 2 or anchors.shape[1] != 4:
            raise ValueError(f"expected anchors of shape (A, 4), got {anchors.shape}")
        anchors.setflags(write=False)
        object.__setattr__(self, "anchors_ycxchw", anchors)

    names_from_model: ClassVar[bool] = True

    @classmethod
    def for_request(cls, request: DecoderRequest) -> TfodSsdDecoder:
        named = {"class_names": request.class_names} if request.class_names else {}
        directory = request.model_dir or request.model.parent
        return cls.from_model_dir(directory, model=str(request.model), **named)

    @classmethod
    def from_model_dir(cls, directory: str | Path, **settings: Any) -> TfodSsdDecoder:
        """Anchors from ``anchors_ycxchw.npy``; class names from ``coco_labels.txt`` if any."""
        directory = Path(directory)
        anchors_path = directory / "anchors_ycxchw.npy"
        if not anchors_path.is_file():
            raise InputError(
                "anchors file not found (expected anchors_ycxchw.npy)", path=anchors_path
            )
        try:
            anchors = np.load(anchors_path, allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"not a numpy array file: {exc}", path=anchors_path) from exc
        labels = directory / "coco_labels.txt"
        if labels.is_file() and "class_names" not in settings:
            settings["class_names"] = tfod_class_names(load_coco_labels(labels))
        return cls(anchors_ycxchw=anchors, **settings)

    def decode(self, outputs: RawOutputs) -> DecodedBoxes:
        """Drop column 0; yc = ty/10*ha + ya, h = exp(th/5)*ha (same for x, w); corners."""
        num = self.anchors_ycxchw.shape[0]
        shape: tuple[int | str, ...] = ("N", num, 4)
        enc = _tensor(outputs, self.box_encodings_name, "box encodings", shape, self.model)
        shape = (enc.shape[0], num, "C+1")
        scores = _tensor(outputs, self.class_scores_name, "class scores", shape, self.model)
        _check_probabilities(scores, self.class_scores_name, "sigmoid class scores", self.model)
        _check_class_names(self.class_names, scores.shape[2] - 1, self.model)
        a = self.anchors_ycxchw
        sy, sx, sh, sw = (np.float32(s) for s in self.scales)
        yc = enc[..., 0] / sy * a[:, 2] + a[:, 0]
        xc = enc[..., 1] / sx * a[:, 3] + a[:, 1]
        h = np.exp(enc[..., 2] / sh) * a[:, 2]
        w = np.exp(enc[..., 3] / sw) * a[:, 3]
        corners = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=-1)
        if self.clip:
            np.clip(corners, 0.0, 1.0, out=corners)
        return DecodedBoxes(
            boxes_xyxy_norm=np.ascontiguousarray(corners, dtype=np.float32),
            scores=np.ascontiguousarray(scores[..., 1:], dtype=np.float32),
        )

    def settings(self) -> dict[str, Any]:
        return {
            "decoder": self.name,
            "num_anchors": int(self.anchors_ycxchw.shape[0]),
            "scales_yxhw": list(self.scales),
            "clip": self.clip,
            "outputs": {"boxes": self.box_encodings_name, "scores": self.class_scores_name},
            "class_names": None if self.class_names is None else list(self.class_names),
        }


@dataclass(frozen=True, eq=False)
class DecodedDecoder:
    """Outputs already decoded in the model: probabilities and x1, y1, x2, y2 corners.

    ``has_background`` (default: the deployed zoo form, which keeps it) drops column 0.
    Without names, the (N, B, 4) output is taken as the boxes and the other as the scores.
    The deployed export names them :data:`DECODED_SCORES` and :data:`DECODED_BOXES`.
    """

    name: ClassVar[str] = "decoded"
    names_from_model: ClassVar[bool] = False
    has_background: bool = True
    scores_name: str | None = None
    boxes_name: str | None = None
    class_names: tuple[str, ...] | None = None
    clip: bool = False
    model: str = ""

    @classmethod
    def for_request(cls, request: DecoderRequest) -> DecodedDecoder:
        return cls(class_names=request.class_names, model=str(request.model))

    def decode(self, outputs: RawOutputs) -> DecodedBoxes:
        """Drop the background column if any; boxes passed through (optionally clipped)."""
        boxes_name, scores_name = self.boxes_name, self.scores_name
        if boxes_name is None or scores_name is None:
            specs = {k: tuple(np.shape(v)) for k, v in outputs.tensors.items()}
            try:
                found_boxes, found_scores, _ = box_and_score_outputs(specs)
            except InputError as exc:
                raise _error(f"decoded: {exc}", self.model) from exc
            boxes_name, scores_name = boxes_name or found_boxes, scores_name or found_scores
        scores = _tensor(outputs, scores_name, "class scores", ("N", "B", "C"), self.model)
        shape = (scores.shape[0], scores.shape[1], 4)
        boxes = _tensor(outputs, boxes_name, "boxes x1, y1, x2, y2", shape, self.model)
        _check_probabilities(scores, scores_name, "class scores", self.model)
        kept = scores[..., 1:] if self.has_background else scores
        _check_class_names(self.class_names, kept.shape[2], self.model)
        corners = np.array(boxes, dtype=np.float32)
        if self.clip:
            np.clip(corners, 0.0, 1.0, out=corners)
        return DecodedBoxes(corners, np.ascontiguousarray(kept, dtype=np.float32))

    def settings(self) -> dict[str, Any]:
        return {
            "decoder": self.name,
            "has_background": self.has_background,
            "clip": self.clip,
            "outputs": {"scores": self.scores_name, "boxes": self.boxes_name},
            "class_names": None if self.class_names is None else list(self.class_names),
        }


@dataclass(frozen=True)
class DecoderRequest:
    """What a run knows when it builds a variant's decoder."""

    model: Path
    class_names: tuple[str, ...] | None = None  # None: the decoder's own (or none)
    model_dir: Path | None = None  # a decoder's side files; None: the model's folder
    input_size: tuple[int, int] = (300, 300)  # (width, height) the model takes
    anchors: tuple[tuple[float, float], ...] = ()  # YOLOv2-style heads: (w, h) in grid cells
    strides: tuple[int, ...] = ()  # multi-level heads: each output's network stride


class DecoderFactory(Protocol):
    """A registered decoder: callable with its settings, or built for a run's variant.

    ``names_from_model``: the class names come with the model (a labels file), so a run does
    not apply the zoo's category-id rule to it."""

    names_from_model: bool

    def __call__(self, *args: Any, **settings: Any) -> Decoder: ...

    def for_request(self, request: DecoderRequest) -> Decoder: ...


DECODERS: Registry[DecoderFactory] = Registry("decoder")
for _decoder in (StSsdDecoder, TfodSsdDecoder, DecodedDecoder):
    DECODERS.add(_decoder.name, _decoder)
# TFLite_Detection_PostProcess outputs, used as they are (evalkit.postprocess.final).
DECODERS.add_lazy("final-detections", "evalkit.postprocess.final:FinalDetectionsDecoder")
# The zoo's other families (evalkit.postprocess.yolo).
for _name, _class in (
    ("ultralytics", "UltralyticsDecoder"),
    ("yolox", "YoloxDecoder"),
    ("yolov2", "YoloV2Decoder"),
    ("yoloxn", "YoloxnDecoder"),
    ("blazeface", "BlazeFaceDecoder"),
):
    DECODERS.add_lazy(_name, f"evalkit.postprocess.yolo:{_class}")
