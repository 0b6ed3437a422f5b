"""TF-OD label files: ``coco_labels.txt`` beside a TF-OD SSD export, to the model's class
names by score column (column j = COCO category id j)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from evalkit.errors import InputError


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
