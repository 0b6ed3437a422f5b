"""Pascal VOC devkit results files: ``comp4_det_<split>_<class>.txt``, one per class, one
detection per line: ``<image id> <confidence> <xmin> <ymin> <xmax> <ymax>`` with 1-based
pixel corners, as the devkit's ``VOCevaldet`` reads them.

evalkit keeps VOC boxes zero-based (``x = xmin - 1``, ``w = xmax - xmin``; see GroundTruth),
so a detection's corners are ``xmin = x + 1``, ``xmax = x + w + 1``. Numbers are written in
full precision (Python's shortest round-trip form), so a file read back gives the same
doubles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evalkit.errors import InputError
from evalkit.types import Detections, GroundTruth

PREFIX = "comp4_det"


def comp4_name(split: str, class_name: str) -> str:
    return f"{PREFIX}_{split}_{class_name}.txt"


def write_comp4(directory: str | Path, gt: GroundTruth, dets: Detections, split: str) -> list[Path]:
    """One file per class of ``gt`` (empty when the class has no detection), detections in
    their given order. Returns the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for k, cat in enumerate(gt.categories):
        rows = np.flatnonzero(dets.category_index == k)
        lines = []
        for i in rows.tolist():
            x, y, w, h = dets.boxes_xywh_px[i].tolist()
            image_id = gt.images[int(dets.image_index[i])].image_id
            corners = (x + 1.0, y + 1.0, x + w + 1.0, y + h + 1.0)
            lines.append(
                " ".join([str(image_id), repr(float(dets.scores[i])), *map(repr, corners)])
            )
        path = directory / comp4_name(split, cat.name)
        path.write_text("".join(line + "\n" for line in lines))
        written.append(path)
    return written


def _class_of(path: Path, gt: GroundTruth) -> int:
    """The class a results file is for: ``comp4_det_<split>_<class>.txt``, the longest class
    name of ``gt`` that ends the name (class names may hold underscores)."""
    stem = path.stem
    if not stem.startswith(PREFIX + "_"):
        raise InputError(f"expected a file named {PREFIX}_<split>_<class>.txt", path=path)
    matches = [(len(c.name), k) for k, c in enumerate(gt.categories) if stem.endswith("_" + c.name)]
    if not matches:
        known = ", ".join(c.name for c in gt.categories)
        raise InputError(f"names no class of the ground truth (known: {known})", path=path)
    return max(matches)[1]


def read_comp4(directory: str | Path, gt: GroundTruth) -> Detections:
    """Every ``comp4_det_*.txt`` of ``directory`` as detections of ``gt``: classes in the
    ground truth's order, lines in file order. A bad line is an error naming the file, the
    line and what was expected."""
    directory = Path(directory)
    files = sorted(directory.glob(f"{PREFIX}_*.txt"))
    if not files:
        raise InputError(f"no {PREFIX}_<split>_<class>.txt files", path=directory)
    by_class: dict[int, Path] = {}
    for path in files:
        k = _class_of(path, gt)
        if k in by_class:
            raise InputError(
                f"two files for class {gt.categories[k].name!r} (also {by_class[k].name})",
                path=path,
            )
        by_class[k] = path
    image_idx, cat_idx, boxes, scores = [], [], [], []
    for k in sorted(by_class):
        path = by_class[k]
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            fields = line.split()
            if len(fields) != 6:
                raise InputError(
                    f"expected '<image id> <confidence> <xmin> <ymin> <xmax> <ymax>', got {line!r}",
                    path=path,
                    record=where,
                )
            position = gt.image_position(fields[0])
            if position is None and fields[0].lstrip("-").isdigit():
                position = gt.image_position(int(fields[0]))
            if position is None:
                raise InputError(
                    f"image {fields[0]!r} is not an image of the ground truth",
                    path=path,
                    record=where,
                )
            try:
                score, x1, y1, x2, y2 = (float(v) for v in fields[1:])
            except ValueError:
                raise InputError(
                    f"expected numbers, got {line!r}", path=path, record=where
                ) from None
            if not all(np.isfinite((score, x1, y1, x2, y2))):
                raise InputError(f"non-finite number in {line!r}", path=path, record=where)
            if x2 < x1 or y2 < y1:
                raise InputError(f"xmax < xmin or ymax < ymin in {line!r}", path=path, record=where)
            image_idx.append(position)
            cat_idx.append(k)
            boxes.append((x1 - 1.0, y1 - 1.0, x2 - x1, y2 - y1))
            scores.append(score)
    if not scores:
        return Detections.empty()
    return Detections(
        np.array(image_idx, np.int64),
        np.array(cat_idx, np.int64),
        np.array(boxes, np.float64),
        np.array(scores, np.float64),
    )
