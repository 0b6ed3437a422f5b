"""What makes two runs comparable: the dataset they scored and the settings that change
numbers. ``run`` writes both into ``result.json`` (``fingerprint``); ``check`` and ``compare``
refuse runs whose fingerprints differ unless told which differences are allowed.

Model differences (file, precision, size) are what a gate measures: never refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from evalkit.types import GroundTruth

Kind = Literal["dataset", "settings"]
KINDS: tuple[Kind, ...] = ("dataset", "settings")


def _digest(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def ground_truth_sha256(gt: GroundTruth) -> str:
    """A digest of exactly what is scored: images (ids, names, sizes, order), categories,
    and every annotation's image, class, box, area and flags, in file order."""
    images = json.dumps([[im.image_id, im.file_name, im.width, im.height] for im in gt.images])
    categories = json.dumps([[c.id, c.name] for c in gt.categories])
    columns = (
        gt.image_index,
        gt.category_index,
        gt.boxes_xywh_px,
        gt.area,
        gt.iscrowd,
        gt.difficult,
        gt.truncated,
    )
    return _digest(
        [
            images.encode(),
            categories.encode(),
            *(np.ascontiguousarray(c).tobytes() for c in columns),
        ]
    )


def image_list_sha256(gt: GroundTruth) -> str:
    """A digest of the image file names, in dataset order."""
    return _digest(im.file_name.encode() for im in gt.images)


def dataset_fingerprint(
    gt: GroundTruth,
    *,
    format: str,
    split: str,
    annotation_sha256: str | None,
) -> dict[str, Any]:
    """The ``fingerprint.dataset`` record of the set a run scored (after views, limits and
    skipped images)."""
    return {
        "format": format,
        "split": split,
        "annotation_sha256": annotation_sha256,
        "ground_truth_sha256": ground_truth_sha256(gt),
        "image_list_sha256": image_list_sha256(gt),
        "num_images": len(gt.images),
        "num_annotations": gt.num_annotations,
        "classes": list(gt.class_names),
    }


def split_of(annotations: str, root: str, split: str, format: str) -> str:
    """The split a dataset config names: VOC ``YEAR_DIR/SPLIT``, COCO the annotation file's
    stem without its ``instances_``/``person_keypoints_`` prefix (``val2017``)."""
    if format == "voc":
        return f"{Path(root).name} {split}".strip()
    stem = Path(annotations).stem
    return stem.split("_", 1)[1] if "_" in stem else stem


@dataclass(frozen=True)
class Difference:
    """One field two runs disagree on."""

    kind: Kind
    field: str
    a: Any
    b: Any

    def describe(self) -> str:
        return f"{self.kind} {self.field}: {_short(self.a)} vs {_short(self.b)}"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _walk(kind: Kind, prefix: str, a: Any, b: Any) -> list[Difference]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[Difference] = []
        for key in [*a, *(k for k in b if k not in a)]:
            out += _walk(kind, f"{prefix}.{key}" if prefix else str(key), a.get(key), b.get(key))
        return out
    return [] if a == b else [Difference(kind, prefix, a, b)]


def differences(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> list[Difference]:
    """Every dataset and settings field on which two ``fingerprint`` records differ. A run
    without a fingerprint (written before evalkit recorded one) differs in both kinds."""
    if a is None or b is None:
        missing = "absent (an older result.json)"
        return [
            Difference(
                kind, "fingerprint", "recorded" if a else missing, "recorded" if b else missing
            )
            for kind in KINDS
        ]
    return [d for kind in KINDS for d in _walk(kind, "", a.get(kind), b.get(kind))]
