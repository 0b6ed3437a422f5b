"""Outputs that are already a model's final detections (TFLite's
``TFLite_Detection_PostProcess``: boxes, classes, scores, count): taken as they are, with no
second NMS, and every record says so. :func:`detections` is the one place that turns a
batch's raw outputs into per-image detections: NMS for every other decoder, this one's own
selection for final outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from evalkit.errors import InputError
from evalkit.postprocess.nms import NmsSettings, nms_batch
from evalkit.postprocess.outputs import final_detection_outputs
from evalkit.postprocess.tfod_labels import load_coco_labels, tfod_class_names
from evalkit.types import DecodedBoxes, ImageDetections, RawOutputs

LABELS_FILE = "coco_labels.txt"


@runtime_checkable
class FinalDecoder(Protocol):
    """A decoder whose model already selected its detections."""

    def final_detections(self, outputs: RawOutputs) -> list[ImageDetections]: ...


def detections(decoder: Any, outputs: RawOutputs, nms: NmsSettings) -> list[ImageDetections]:
    """Per-image detections of one batch: the model's own for final outputs, else NMS."""
    if isinstance(decoder, FinalDecoder):
        return decoder.final_detections(outputs)
    return nms_batch(decoder.decode(outputs), nms)


def nms_record(decoder: Any, nms: NmsSettings) -> dict[str, Any]:
    """What a variant's record says about NMS: its settings, or that none was applied."""
    if isinstance(decoder, FinalDecoder):
        return {
            "applied": False,
            "why": "the model's outputs are its final detections (its own NMS ran in the "
            "graph); evalkit applies no second NMS, so the run's nms settings do not apply",
        }
    return nms.to_dict()


@dataclass(frozen=True)
class FinalDetectionsDecoder:
    """``TFLite_Detection_PostProcess`` outputs, in the op's order: boxes (N, K, 4) as
    normalised (ymin, xmin, ymax, xmax), class label indices (N, K) as floats, scores
    (N, K), valid count (N,). Label index k is class ``class_names[k]``; without names, a
    ``coco_labels.txt`` beside the model gives them (index k = COCO category id k + 1).
    Corners are clipped to [0, 1] (``clip``)."""

    name: ClassVar[str] = "final-detections"
    names_from_model: ClassVar[bool] = True
    class_names: tuple[str, ...] | None = None
    clip: bool = True
    model: str = ""

    @classmethod
    def for_request(cls, request: Any) -> FinalDetectionsDecoder:
        names = request.class_names
        labels = Path(request.model_dir or Path(request.model).parent) / LABELS_FILE
        if names is None and labels.is_file():
            names = tfod_class_names(load_coco_labels(labels))
        return cls(class_names=names, model=str(request.model))

    def decode(self, outputs: RawOutputs) -> DecodedBoxes:
        raise InputError(
            "final detections have no pre-NMS form (they are used as they are)", path=self.model
        )

    def final_detections(self, outputs: RawOutputs) -> list[ImageDetections]:
        specs = {k: tuple(np.shape(v)) for k, v in outputs.tensors.items()}
        found = final_detection_outputs(specs)
        if found is None:
            raise InputError(
                "expected the outputs of TFLite_Detection_PostProcess: boxes (N, K, 4), "
                f"classes (N, K), scores (N, K), count (N,); got {specs}",
                path=self.model,
            )
        boxes, classes, scores, count = (np.asarray(outputs.tensors[n]) for n in found)
        names = self.class_names
        out = []
        for i in range(boxes.shape[0]):
            k = int(count[i])
            if not 0 <= k <= boxes.shape[1]:
                raise InputError(f"image {i}: count {k} outside 0..{boxes.shape[1]}",
                                 path=self.model)  # fmt: skip
            labels = classes[i, :k]
            if not np.all(labels == np.round(labels)) or (k and labels.min() < 0):
                raise InputError(f"image {i}: class labels are not indices: {labels[:5]}",
                                 path=self.model)  # fmt: skip
            index = labels.astype(np.int64)
            if names is not None and k and index.max() >= len(names):
                raise InputError(
                    f"image {i}: class label {int(index.max())} but {len(names)} class names",
                    path=self.model,
                )
            ymin, xmin, ymax, xmax = (boxes[i, :k, j].astype(np.float32) for j in range(4))
            corners = np.stack([xmin, ymin, xmax, ymax], axis=1)
            if self.clip:
                np.clip(corners, 0.0, 1.0, out=corners)
            out.append(ImageDetections(corners, scores[i, :k].astype(np.float32), index))
        return out

    def settings(self) -> dict[str, Any]:
        return {
            "decoder": self.name,
            "clip": self.clip,
            "second_nms": False,
            "class_names": None if self.class_names is None else list(self.class_names),
        }
