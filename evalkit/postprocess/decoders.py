"""Decoders: a model's raw outputs to per-box class scores and normalised corners (pre-NMS).

Registered in :data:`DECODERS`: ``st-ssd`` (the zoo's raw logits and prior offsets,
reference-pipeline.md section 4), ``tfod-ssd`` (TF-OD SSD exports cut before their NMS:
sigmoid scores, column j = COCO category id j, and anchor encodings) and ``decoded``
(scores and corners computed in the model, the deployed form). :func:`detect_decoder`
chooses one from output names and shapes and says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from evalkit.errors import InputError
from evalkit.models.priors import ZOO_PRIOR_SPECS, ssd_priors
from evalkit.registry import Registry
from evalkit.types import DecodedBoxes, RawOutputs

F32 = npt.NDArray[np.float32]

# The zoo form, in the network's return order: class logits (N, 3000, NC+1), background in
# column 0, then offsets (N, 3000, 4) as (tx, ty, tw, th) against priors (cx, cy, w, h).
# The zoo's export names only its first output, ``output``; the offsets keep a number the
# exporter picks, so st-ssd takes "the other output" as the offsets. The torch runner
# names them ST_SSD_OFFSETS (the export helper's ZOO_OUTPUT_NAMES must keep "output").
ST_SSD_SCORES = "output"
ST_SSD_OFFSETS = "offsets"
ST_SSD_OUTPUT_NAMES = (ST_SSD_SCORES, ST_SSD_OFFSETS)
ST_SSD_CENTER_VARIANCE = 0.1
ST_SSD_SIZE_VARIANCE = 0.2
ST_SSD_NUM_PRIORS = sum(s.feature_map_size**2 * s.priors_per_location for s in ZOO_PRIOR_SPECS)

# The deployed form (models/export.py DEPLOYED_OUTPUT_NAMES): softmax scores with the
# background column (N, 3000, NC+1) and clipped corners x1, y1, x2, y2 (N, 3000, 4).
DECODED_SCORES = "scores"
DECODED_BOXES = "boxes"
DECODED_OUTPUT_NAMES = (DECODED_SCORES, DECODED_BOXES)

# TF-OD SSD (TFLite_Detection_PostProcess inputs): encodings (ty, tx, th, tw), sigmoid scores.
TFOD_BOX_ENCODINGS = "box_encodings"
TFOD_CLASS_SCORES = "class_scores"
TFOD_NUM_ANCHORS = 1917  # SSD MobileNet 300x300: 19x19x3 + (10x10 + 5x5 + 3x3 + 2x2 + 1) x 6
TFOD_SCALES = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w scale factors of TF-OD's box coder

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
    has_background: bool = True
    scores_name: str | None = None
    boxes_name: str | None = None
    class_names: tuple[str, ...] | None = None
    clip: bool = False
    model: str = ""

    def decode(self, outputs: RawOutputs) -> DecodedBoxes:
        """Drop the background column if any; boxes passed through (optionally clipped)."""
        boxes_name, scores_name = self.boxes_name, self.scores_name
        if boxes_name is None or scores_name is None:
            specs = {k: tuple(np.shape(v)) for k, v in outputs.tensors.items()}
            try:
                found_boxes, found_scores, _ = _box_and_score_outputs(specs)
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


DecoderFactory = Callable[..., Decoder]
DECODERS: Registry[DecoderFactory] = Registry("decoder")
DECODERS.add(StSsdDecoder.name, StSsdDecoder)
DECODERS.add(TfodSsdDecoder.name, TfodSsdDecoder)
DECODERS.add(DecodedDecoder.name, DecodedDecoder)


def load_coco_labels(path: str | Path) -> dict[int, str]:
    """``index name`` lines (TF-OD's label files) to COCO category id (index + 1) -> name."""
    path = Path(path)
    if not path.is_file():
        raise InputError("label file not found (expected `index name` lines)", path=path)
    labels: dict[int, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        index, _, label = line.strip().partition(" ")
        if not index.isdigit() or not label.strip():
            raise InputError(
                f"expected `index name`, got {line!r}", path=path, record=f"line {number}"
            )
        category_id = int(index) + 1
        if category_id in labels:
            raise InputError(f"index {index} appears twice", path=path, record=f"line {number}")
        labels[category_id] = label.strip()
    return labels


def tfod_class_names(labels: Mapping[int, str], num_classes: int = 90) -> tuple[str, ...]:
    """Names of class columns 1..num_classes (COCO ids); ids without a label: ``unused-<id>``."""
    extra = sorted(i for i in labels if not 1 <= i <= num_classes)
    if extra:
        raise InputError(f"label ids {extra} fall outside the model's 1..{num_classes} columns")
    return tuple(labels.get(i, f"unused-{i}") for i in range(1, num_classes + 1))


Spec = Sequence[int | str | None]
_BOX_NAMES = (DECODED_BOXES, TFOD_BOX_ENCODINGS, ST_SSD_OFFSETS)
_SCORE_NAMES = (DECODED_SCORES, TFOD_CLASS_SCORES, ST_SSD_SCORES)


def _describe(specs: Mapping[str, Spec]) -> str:
    return ", ".join(f"{name} {tuple(shape)}" for name, shape in specs.items()) or "none"


def _box_and_score_outputs(specs: Mapping[str, Spec]) -> tuple[str, str, int | str | None]:
    """(boxes name, scores name, box count) of a two-output detector, or an InputError."""
    if len(specs) != 2 or any(len(shape) != 3 for shape in specs.values()):
        raise InputError(
            "expected two rank-3 outputs, boxes (N, B, 4) and scores (N, B, C); "
            f"got {_describe(specs)}"
        )
    four = [name for name, shape in specs.items() if shape[2] == 4]
    if len(four) == 2:  # 4 score columns too: only conventional names can decide
        four = [n for n in four if n in _BOX_NAMES] or [n for n in four if n not in _SCORE_NAMES]
    if len(four) != 1:
        raise InputError(f"cannot tell which output holds the boxes (N, B, 4): {_describe(specs)}")
    boxes = four[0]
    scores = next(name for name in specs if name != boxes)
    count_boxes, count_scores = specs[boxes][1], specs[scores][1]
    if (
        isinstance(count_boxes, int)
        and isinstance(count_scores, int)
        and count_boxes != count_scores
    ):
        raise InputError(f"outputs disagree on the box count B: {_describe(specs)}")
    return boxes, scores, count_boxes if isinstance(count_boxes, int) else count_scores


def detect_decoder(output_specs: Mapping[str, Spec]) -> tuple[str, str]:
    """(decoder name, why) from output names and shapes; ambiguity lists the candidates."""
    try:
        boxes, scores, count = _box_and_score_outputs(output_specs)
    except InputError as exc:
        raise InputError(f"no decoder fits: {exc}; pass a decoder explicitly") from exc
    seen = f"{boxes} {tuple(output_specs[boxes])} and {scores} {tuple(output_specs[scores])}"
    # Strength 2: names and box count both fit; 1: the shapes fit but the names say nothing.
    candidates: list[tuple[int, str, str]] = []
    if (boxes, scores) == (TFOD_BOX_ENCODINGS, TFOD_CLASS_SCORES):
        candidates.append((2, "tfod-ssd", "TF-OD SSD output names (anchor encodings, sigmoid)"))
    elif count == TFOD_NUM_ANCHORS:
        candidates.append((1, "tfod-ssd", f"{count} boxes = TF-OD SSD300 anchors"))
    if count == ST_SSD_NUM_PRIORS:
        named = scores == ST_SSD_SCORES
        why = f"{count} boxes = the zoo's SSD priors" + (
            f"; {ST_SSD_SCORES!r} is the zoo export's name for its raw class logits"
            if named
            else ""
        )
        candidates.append((2 if named else 1, "st-ssd", why))
    named = (boxes, scores) == (DECODED_BOXES, DECODED_SCORES)
    why = "scores and x1, y1, x2, y2 corners already computed in the model"
    candidates.append(
        (2, "decoded", f"the deployed export's names; {why}") if named else (1, "decoded", why)
    )
    best = max(strength for strength, _, _ in candidates)
    top = [(name, why) for strength, name, why in candidates if strength == best]
    if len(top) > 1:
        listed = "; ".join(f"{name}: {why}" for name, why in top)
        raise InputError(
            f"ambiguous outputs {seen}: raw and decoded forms cannot be told apart from "
            f"these names and shapes; candidates: {listed}. Pass a decoder explicitly"
        )
    name, why = top[0]
    if name == "decoded" and best == 1:
        why += f" (no known raw form has {count} boxes, so the outputs are taken as decoded)"
    return name, f"{name}: outputs {seen}: {why}"
