"""The COCO ground-truth loader's two paths: columns at once for plainly valid annotations,
record by record otherwise. They must accept exactly the same documents and give the same
columns; the record-by-record path names what is wrong."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalkit.datasets.coco import (
    _annotation_columns,
    _annotations_one_by_one,
    parse_coco_ground_truth,
)
from evalkit.errors import InputError

try:  # tests/ is a package in this repository
    from .coco_random import make_workload
except ImportError:  # collected without the package (rootdir-less pytest run)
    from coco_random import make_workload

PATH = Path("gt.json")


def _positions(doc: dict[str, Any]) -> tuple[dict[Any, int], dict[Any, int]]:
    return (
        {im["id"]: i for i, im in enumerate(doc["images"])},
        {c["id"]: i for i, c in enumerate(doc["categories"])},
    )


def _same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype or (x.dtype.kind == y.dtype.kind == "b")
        assert np.array_equal(x, y)


@pytest.mark.parametrize("seed", range(0, 60, 2))
def test_columns_equal_the_record_by_record_path(seed: int) -> None:
    doc, _ = make_workload(seed)
    images, cats = _positions(doc)
    fast = _annotation_columns(doc["annotations"], images, cats)
    assert fast is not None
    _same(fast, _annotations_one_by_one(doc["annotations"], images, cats, PATH))


def _base() -> dict[str, Any]:
    return {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 9, "height": 9}],
        "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12},
            {"id": 6, "image_id": 2, "category_id": 3, "bbox": [0.5, 1, 2, 2], "iscrowd": 1},
            {"image_id": 2, "category_id": 1, "bbox": [0, 0, 0, 0]},
        ],
    }


# Unusual but valid, and whether the columns path steps aside for it (the other path
# accepts them all; where the columns path does not step aside, it must agree).
VALID_VARIANTS = {
    "tuple bbox": (lambda a: a[0].update(bbox=(1, 2, 3, 4)), True),
    "numpy numbers": (lambda a: a[0].update(bbox=[np.float32(1), 2, 3, 4], area=np.int64(3)), True),
    "iscrowd as text": (lambda a: a[1].update(iscrowd="yes"), False),
    "float image id": (lambda a: a[0].update(image_id=1.0), False),
    "implicit id equal to an explicit one": (lambda a: a[0].update(id=3), False),
}

# Invalid: the columns path steps aside, the other path names the record.
INVALID_VARIANTS = {
    "unknown image": (lambda a: a[1].update(image_id=4), r"annotations\[1\].*image_id 4"),
    "unknown category": (lambda a: a[2].update(category_id=2), r"annotations\[2\].*category_id 2"),
    "missing bbox": (lambda a: a[0].pop("bbox"), r"annotations\[0\]: missing field 'bbox'"),
    "three numbers": (lambda a: a[1].update(bbox=[1, 2, 3]), r"annotations\[1\].*4 numbers"),
    "text in bbox": (lambda a: a[1].update(bbox=[1, "2", 3, 4]), r"annotations\[1\].*4 numbers"),
    "bool in bbox": (lambda a: a[1].update(bbox=[1, True, 3, 4]), r"annotations\[1\].*4 numbers"),
    "negative size": (lambda a: a[0].update(bbox=[1, 2, -3, 4]), r"annotations\[0\].*negative"),
    "infinite area": (lambda a: a[0].update(area=float("inf")), r"annotations\[0\].*finite"),
    "bool area": (lambda a: a[0].update(area=True), r"annotations\[0\].*area must be a number"),
    "float id": (lambda a: a[0].update(id=5.0), r"annotations\[0\].*id must be an integer"),
    "repeated id": (lambda a: a[1].update(id=5), r"annotations\[1\]: duplicate annotation id 5"),
    "huge number": (lambda a: a[0].update(bbox=[10**400, 2, 3, 4]), r"annotations\[0\].*range"),
    "not an object": (lambda a: a.append([1, 2]), r"annotations\[3\]: expected a JSON object"),
}


@pytest.mark.parametrize("name", VALID_VARIANTS)
def test_unusual_valid_annotations_load_the_same_either_way(name: str) -> None:
    doc = _base()
    change, steps_aside = VALID_VARIANTS[name]
    change(doc["annotations"])
    images, cats = _positions(doc)
    expected = _annotations_one_by_one(doc["annotations"], images, cats, PATH)
    fast = _annotation_columns(doc["annotations"], images, cats)
    assert (fast is None) == steps_aside
    if fast is not None:
        _same(fast, expected)
    gt = parse_coco_ground_truth(copy.deepcopy(doc), PATH)
    got = (gt.image_index, gt.category_index, gt.boxes_xywh_px, gt.area, gt.iscrowd)
    _same(got, expected[:5])


@pytest.mark.parametrize("name", INVALID_VARIANTS)
def test_bad_annotations_are_named(name: str) -> None:
    doc = _base()
    change, message = INVALID_VARIANTS[name]
    change(doc["annotations"])
    images, cats = _positions(doc)
    assert _annotation_columns(doc["annotations"], images, cats) is None
    with pytest.raises(InputError, match=message):
        parse_coco_ground_truth(doc, PATH)


def test_area_falls_back_to_width_times_height() -> None:
    doc = _base()
    gt = parse_coco_ground_truth(doc, PATH)
    assert gt.area.tolist() == [12.0, 4.0, 0.0]
    assert gt.iscrowd.tolist() == [False, True, False]
    assert gt.annotation_id.tolist() == [5, 6, 3]  # the third has none: its position + 1
