"""Pick the ground-truth loader from what a path is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evalkit.datasets.coco import load_coco_ground_truth
from evalkit.datasets.voc import load_voc_ground_truth
from evalkit.errors import InputError
from evalkit.types import GroundTruth


def load_ground_truth(
    path: str | Path, split: str | None = None, classes: Sequence[str] | None = None
) -> GroundTruth:
    """A COCO instances JSON file, or a VOC year directory (``.../VOC2007``) with a split
    and, for a VOC-layout set of other classes, its class list (default: VOC's 20)."""
    path = Path(path)
    if classes is not None and not path.is_dir():
        raise InputError(
            "a class list is for a VOC year directory; COCO files name theirs", path=path
        )
    if path.is_dir():
        if split is None:
            raise InputError(
                "a VOC year directory needs a split name (e.g. --split test)", path=path
            )
        if not (path / "Annotations").is_dir():
            raise InputError(
                "expected a VOC year directory with Annotations/ and ImageSets/", path=path
            )
        if classes is None:
            return load_voc_ground_truth(path, split)
        return load_voc_ground_truth(path, split, classes)
    if not path.exists():
        raise InputError(
            "ground truth not found (expected a COCO JSON file or a VOC year directory)", path=path
        )
    return load_coco_ground_truth(path)
