"""Mapping a model's classes onto a dataset's categories by name.

A COCO-trained model evaluated on VOC or COCO-Person needs its class indices translated to
the dataset's categories; names differ between the two conventions, hence the aliases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from evalkit.datasets.voc import VOC_CLASSES

# The 80 COCO category names in category id order: the zoo's class order for COCO models.
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)  # fmt: skip

# ``class_names: coco | coco_person | voc``: the model classes, background excluded, in the
# zoo's order for models trained on that set.
CLASS_PRESETS: Mapping[str, tuple[str, ...]] = {
    "coco": COCO_CLASSES,
    "coco_person": ("person",),
    "voc": VOC_CLASSES,
}

# COCO name -> VOC name; both spellings normalise to the same key.
COCO_VOC_ALIASES = {
    "airplane": "aeroplane",
    "motorcycle": "motorbike",
    "couch": "sofa",
    "tv": "tvmonitor",
    "dining table": "diningtable",
    "potted plant": "pottedplant",
}


def canonical_class_name(name: str) -> str:
    """Lower-cased, trimmed, with COCO spellings folded onto their VOC alias."""
    key = " ".join(name.strip().lower().split())
    return COCO_VOC_ALIASES.get(key, key)


@dataclass(frozen=True)
class ClassMapping:
    """Model class index -> dataset category position, plus what did not map."""

    model_to_dataset: dict[int, int]
    dropped_model_classes: tuple[str, ...]
    unmatched_dataset_classes: tuple[str, ...]

    def describe(self) -> str:
        """One line a person can read in a log."""
        text = f"{len(self.model_to_dataset)} model classes mapped"
        if self.dropped_model_classes:
            text += f"; dropped (not in the dataset): {', '.join(self.dropped_model_classes)}"
        if self.unmatched_dataset_classes:
            text += (
                f"; dataset classes no model class predicts: "
                f"{', '.join(self.unmatched_dataset_classes)}"
            )
        return text


def map_classes(model_classes: Sequence[str], dataset_classes: Sequence[str]) -> ClassMapping:
    """Match by canonical name; unmapped model classes are dropped and reported."""
    dataset_pos: dict[str, int] = {}
    for i, name in enumerate(dataset_classes):
        dataset_pos.setdefault(canonical_class_name(name), i)
    mapping: dict[int, int] = {}
    dropped: list[str] = []
    for i, name in enumerate(model_classes):
        pos = dataset_pos.get(canonical_class_name(name))
        if pos is None:
            dropped.append(name)
        else:
            mapping[i] = pos
    used = set(mapping.values())
    unmatched = tuple(n for i, n in enumerate(dataset_classes) if i not in used)
    return ClassMapping(mapping, tuple(dropped), unmatched)
