"""Bad input to the metrics engine: clear errors naming file, record and expectation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evalkit.datasets.coco import load_coco_ground_truth, parse_coco_ground_truth
from evalkit.errors import InputError
from evalkit.metrics import evaluate, load_coco_results, parse_coco_results

GT = {
    "images": [{"id": 1, "width": 100, "height": 80}, {"id": 2, "width": 100, "height": 80}],
    "categories": [{"id": 1, "name": "cat"}, {"id": 5, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400},
        {"id": 2, "image_id": 2, "category_id": 5, "bbox": [0, 0, 50, 40], "area": 2000},
    ],
}


def _det(**overrides: object) -> dict[str, object]:
    det: dict[str, object] = {
        "image_id": 1,
        "category_id": 1,
        "bbox": [10, 10, 20, 20],
        "score": 0.9,
    }
    det.update(overrides)
    return det


def _write(tmp_path: Path, name: str, payload: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return path


def test_malformed_json_names_file_and_position(tmp_path: Path) -> None:
    gt_path = _write(tmp_path, "gt.json", GT)
    bad = tmp_path / "dets.json"
    bad.write_text('[{"image_id": 1, "category_id": 1,')
    gt = load_coco_ground_truth(gt_path)
    with pytest.raises(InputError, match=r"dets\.json: malformed JSON at line 1, column"):
        load_coco_results(bad, gt)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_det(image_id=99), r"record 1: image_id 99 is not an image of the ground truth"),
        (_det(category_id=3), r"record 1: category_id 3 is not a category of the ground truth"),
        (_det(bbox=[1, 2, float("nan"), 4]), r"record 1: bbox has a non-finite value"),
        (_det(bbox=[1, 2, float("inf"), 4]), r"record 1: bbox has a non-finite value"),
        (_det(bbox=[1, 2, -3, 4]), r"record 1: bbox has a negative width or height"),
        (_det(bbox=[1, 2, 3]), r"record 1: expected bbox \[x, y, w, h\] of 4 numbers"),
        (_det(score=float("nan")), r"record 1: score must be finite"),
        (_det(score="high"), r"record 1: score must be a number"),
        (
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
            r"record 1: missing field 'score'",
        ),
    ],
)
def test_bad_detection_record(tmp_path: Path, record: dict[str, object], message: str) -> None:
    gt = load_coco_ground_truth(_write(tmp_path, "gt.json", GT))
    path = _write(tmp_path, "dets.json", [_det(), record])
    with pytest.raises(InputError, match=message) as info:
        load_coco_results(path, gt)
    assert info.value.path == str(path)


def test_results_must_be_a_list(tmp_path: Path) -> None:
    gt = parse_coco_ground_truth(GT)
    with pytest.raises(InputError, match="expected a JSON list of detections, got dict"):
        parse_coco_results({"annotations": []}, gt, "x.json")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["annotations"][1].update(image_id=7),
            r"annotations\[1\] \(id 2\): image_id 7 is not in 'images'",
        ),
        (
            lambda d: d["annotations"][0].update(category_id=2),
            r"annotations\[0\] \(id 1\): category_id 2 is not in 'categories'",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[0, 0, -1, 5]),
            r"annotations\[0\]: bbox has a negative width or height",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[0, float("nan"), 1, 5]),
            r"annotations\[0\]: bbox has a non-finite value",
        ),
        (lambda d: d["images"][0].pop("width"), r"images\[0\]: missing field 'width'"),
        (lambda d: d.pop("categories"), r"top level: missing field 'categories'"),
    ],
)
def test_bad_ground_truth(tmp_path: Path, mutate: object, message: str) -> None:
    data = json.loads(json.dumps(GT))
    mutate(data)  # type: ignore[operator]
    path = _write(tmp_path, "gt.json", data)
    with pytest.raises(InputError, match=message):
        load_coco_ground_truth(path)


@pytest.mark.parametrize("protocol", ["coco", "st", "voc07", "voc12"])
def test_empty_detections_score_zero(protocol: str) -> None:
    gt = parse_coco_ground_truth(GT)
    dets = parse_coco_results([], gt)
    result = evaluate(gt, dets, protocol=protocol)
    assert result.ap == 0.0
    assert result.tp == 0 and result.fp == 0
    assert [c.ap for c in result.per_class] == [0.0, 0.0]


def test_coco_iou_must_be_one_of_its_thresholds() -> None:
    gt = parse_coco_ground_truth(GT)
    with pytest.raises(ValueError, match="one of its IoU thresholds"):
        evaluate(gt, parse_coco_results([], gt), protocol="coco", iou=0.52)


def test_category_by_name_is_accepted() -> None:
    gt = parse_coco_ground_truth(GT)
    dets = parse_coco_results([_det(category_id="dog", image_id=2, bbox=[0, 0, 50, 40])], gt)
    assert dets.category_index.tolist() == [1]
    np.testing.assert_array_equal(dets.boxes_xywh_px, [[0.0, 0.0, 50.0, 40.0]])
