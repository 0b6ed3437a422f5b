"""COCO instances JSON (and any COCO-format set) to :class:`GroundTruth`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evalkit.errors import InputError
from evalkit.jsonio import as_box, as_number, read_json, require
from evalkit.types import BoolArray, Category, FloatArray, GroundTruth, ImageRecord, IntArray


def _int_id(value: Any, field: str, where: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{field} must be an integer, got {value!r}", path=path, record=where)
    return value


def _unique_positions(ids: list[int | str], section: str, path: Path) -> dict[int | str, int]:
    """id -> position in ``section``; a repeated id is an error naming both records."""
    positions: dict[int | str, int] = {}
    for i, key in enumerate(ids):
        earlier = positions.setdefault(key, i)
        if earlier != i:
            raise InputError(
                f"duplicate id {key} (also {section}[{earlier}]); {section} ids must be unique",
                path=path,
                record=f"{section}[{i}]",
            )
    return positions


Columns = tuple[IntArray, IntArray, FloatArray, FloatArray, BoolArray, IntArray]


def _annotation_columns(
    annotations: list[Any], image_pos: dict[Any, int], cat_pos: dict[Any, int]
) -> Columns | None:
    """The annotations as columns when every one is plainly valid (JSON types, known image
    and category, finite box with non-negative size, unique ids), else None. Accepts exactly
    what :func:`_annotations_one_by_one` accepts, without a Python call per value."""
    n = len(annotations)
    if any(type(a) is not dict for a in annotations):
        return None
    try:
        image_index = np.fromiter(
            (image_pos.get(a["image_id"], -1) for a in annotations), np.int64, n
        )
        category_index = np.fromiter(
            (cat_pos.get(a["category_id"], -1) for a in annotations), np.int64, n
        )
        bbox = [a["bbox"] for a in annotations]
    except (KeyError, TypeError):  # a missing field, an unhashable id
        return None
    raw_area = [a.get("area") for a in annotations]
    ids = [a.get("id", i + 1) for i, a in enumerate(annotations)]
    if (
        (image_index < 0).any()
        or (category_index < 0).any()
        or {type(b) for b in bbox} - {list}
        or any(len(b) != 4 for b in bbox)
        or {type(v) for b in bbox for v in b} - {int, float}
        or {type(v) for v in raw_area} - {int, float, type(None)}
        or {type(v) for v in ids} - {int}
    ):
        return None
    try:
        boxes = np.array(bbox, np.float64).reshape(n, 4)
        ann_id = np.array(ids, np.int64)
        given = np.array([np.nan if v is None else v for v in raw_area], np.float64)
    except OverflowError:  # an integer beyond int64 or double: the slow path says which
        return None
    if not np.isfinite(boxes).all() or (boxes[:, 2:] < 0).any():
        return None
    absent = np.array([v is None for v in raw_area], bool)
    if not np.isfinite(given[~absent]).all():
        return None
    # pycocotools uses the 'area' field for area ranges; w*h when absent.
    area = np.where(absent, boxes[:, 2] * boxes[:, 3], given)
    # Sorted neighbours, not np.unique, which imports numpy.ma (tens of ms in a fresh process).
    explicit = np.sort(ann_id[np.array(["id" in a for a in annotations], bool)])
    if (explicit[1:] == explicit[:-1]).any():
        return None
    iscrowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in annotations), bool, n)
    return image_index, category_index, boxes, area, iscrowd, ann_id


def _annotations_one_by_one(
    annotations: list[Any], image_pos: dict[Any, int], cat_pos: dict[Any, int], path: Path
) -> Columns:
    """The annotations checked one at a time: an InputError names the first bad one."""
    n = len(annotations)
    image_index = np.empty(n, np.int64)
    category_index = np.empty(n, np.int64)
    boxes = np.empty((n, 4), np.float64)
    area = np.empty(n, np.float64)
    iscrowd = np.empty(n, bool)
    ann_id = np.empty(n, np.int64)
    first_with_id: dict[int, int] = {}
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        img = require(ann, "image_id", where, path)
        if img not in image_pos:
            raise InputError(
                f"image_id {img!r} is not in 'images'",
                path=path,
                record=f"{where} (id {ann.get('id')!r})",
            )
        cat = require(ann, "category_id", where, path)
        if cat not in cat_pos:
            raise InputError(
                f"category_id {cat!r} is not in 'categories'",
                path=path,
                record=f"{where} (id {ann.get('id')!r})",
            )
        image_index[i] = image_pos[img]
        category_index[i] = cat_pos[cat]
        boxes[i] = as_box(require(ann, "bbox", where, path), where, path)
        # pycocotools uses the 'area' field for area ranges; fall back to w*h when absent.
        raw_area = ann.get("area")
        area[i] = (
            boxes[i, 2] * boxes[i, 3]
            if raw_area is None
            else as_number(raw_area, "area", where, path)
        )
        iscrowd[i] = bool(ann.get("iscrowd", 0))
        ann_id[i] = _int_id(ann.get("id", i + 1), "id", where, path)
        if "id" in ann:
            # pycocotools indexes annotations by id and silently keeps the last of a pair,
            # so a repeated id would score differently here and there: refuse it.
            earlier = first_with_id.setdefault(int(ann_id[i]), i)
            if earlier != i:
                raise InputError(
                    f"duplicate annotation id {int(ann_id[i])} (also annotations[{earlier}]); "
                    "annotation ids must be unique",
                    path=path,
                    record=where,
                )
    return image_index, category_index, boxes, area, iscrowd, ann_id


def parse_coco_ground_truth(data: Any, path: str | Path = "<memory>") -> GroundTruth:
    """Validate a parsed COCO instances document and turn it into columnar records."""
    path = Path(path)
    if not isinstance(data, dict):
        raise InputError(
            "expected a COCO instances object with images, annotations, categories", path=path
        )
    images = []
    for i, im in enumerate(require(data, "images", "top level", path)):
        where = f"images[{i}]"
        images.append(
            ImageRecord(
                image_id=_int_id(require(im, "id", where, path), "id", where, path),
                file_name=str(im.get("file_name", "")),
                width=int(as_number(require(im, "width", where, path), "width", where, path)),
                height=int(as_number(require(im, "height", where, path), "height", where, path)),
            )
        )
    categories = []
    for i, cat in enumerate(require(data, "categories", "top level", path)):
        where = f"categories[{i}]"
        categories.append(
            Category(
                id=_int_id(require(cat, "id", where, path), "id", where, path),
                name=str(require(cat, "name", where, path)),
            )
        )
    image_pos = _unique_positions([im.image_id for im in images], "images", path)
    cat_pos = _unique_positions([c.id for c in categories], "categories", path)

    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise InputError("'annotations' must be a list", path=path)
    columns = _annotation_columns(annotations, image_pos, cat_pos)
    if columns is None:  # something unusual: the record-by-record check names it
        columns = _annotations_one_by_one(annotations, image_pos, cat_pos, path)
    image_index, category_index, boxes, area, iscrowd, ann_id = columns
    n = len(annotations)
    return GroundTruth(
        images=tuple(images),
        categories=tuple(categories),
        image_index=image_index,
        category_index=category_index,
        boxes_xywh_px=boxes,
        area=area,
        iscrowd=iscrowd,
        difficult=np.zeros(n, bool),
        annotation_id=ann_id,
        source="coco",
        name=path.name,
    )


def load_coco_ground_truth(path: str | Path) -> GroundTruth:
    """Read a COCO instances JSON file (``instances_val2017.json`` or any COCO-format set)."""
    return parse_coco_ground_truth(read_json(path), path)
