"""``evalkit evaluate --ignore-unknown-categories``: detections of categories the ground
truth lacks are dropped and counted, as pycocotools ignores them (it evaluates the ground
truth's categories only), so an 80-class results file scores against a person-only set;
without the flag such a detection is an error naming it."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evalkit.cli import main

GT_CATEGORIES = (1, 3, 5)
DET_CATEGORIES = (1, 2, 3, 4, 5, 7)


def _files(tmp_path: Path, seed: int) -> tuple[Path, Path, dict[str, int]]:
    """A random set (three categories) and detections over six, some on other categories."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in range(20)]
    anns = []
    for k in range(int(rng.integers(20, 60))):
        x, y = rng.uniform(0, 500), rng.uniform(0, 380)
        w, h = rng.uniform(8, 120), rng.uniform(8, 90)
        anns.append(
            {
                "id": k + 1,
                "image_id": int(rng.integers(0, 20)),
                "category_id": int(rng.choice(GT_CATEGORIES)),
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
            }
        )
    dets, dropped = [], {}
    for a in anns:  # near each object, some on its class, some on one the set lacks
        for _ in range(int(rng.integers(1, 4))):
            cat = int(rng.choice(DET_CATEGORIES))
            box = [v + float(rng.normal(0, 6)) for v in a["bbox"]]
            box[2], box[3] = abs(box[2]), abs(box[3])
            dets.append(
                {"image_id": a["image_id"], "category_id": cat, "bbox": box, "score": rng.random()}
            )
            if cat not in GT_CATEGORIES:
                dropped[str(cat)] = dropped.get(str(cat), 0) + 1
    cats = [{"id": c, "name": f"c{c}"} for c in GT_CATEGORIES]
    gt_path, det_path = tmp_path / "gt.json", tmp_path / "dets.json"
    gt_path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    det_path.write_text(json.dumps(dets))
    return gt_path, det_path, dict(sorted(dropped.items()))


def _pycocotools_stats(gt_path: Path, det_path: Path) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        e = COCOeval(gt, gt.loadRes(str(det_path)), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return [float(v) for v in e.stats]


@pytest.mark.parametrize("seed", range(6))
def test_dropped_and_counted_and_scored_as_pycocotools_scores_the_whole_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int
) -> None:
    gt_path, det_path, dropped = _files(tmp_path, seed)
    assert dropped  # the case under test is there
    argv = ["evaluate", "--gt", str(gt_path), "--dets", str(det_path), "--json"]
    assert main([*argv, "--ignore-unknown-categories"]) == 0
    captured = capsys.readouterr()
    out: dict[str, Any] = json.loads(captured.out)
    assert out["dropped_unknown_categories"] == dropped
    assert f"dropped {sum(dropped.values())} detection(s)" in captured.err
    expected = _pycocotools_stats(gt_path, det_path)
    assert np.max(np.abs(np.array(out["stats"]) - expected)) <= 1e-12


def test_without_the_flag_an_unknown_category_is_an_error_naming_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt_path, det_path, _ = _files(tmp_path, 0)
    first = next(
        i
        for i, d in enumerate(json.loads(det_path.read_text()))
        if d["category_id"] not in GT_CATEGORIES
    )
    assert main(["evaluate", "--gt", str(gt_path), "--dets", str(det_path)]) == 2
    err = capsys.readouterr().err
    assert f"record {first}" in err and "is not a category of the ground truth" in err
    assert "Traceback" not in err


def test_other_faults_are_still_reported_with_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt_path, det_path, _ = _files(tmp_path, 1)
    dets = json.loads(det_path.read_text())
    dets[3]["category_id"] = True  # not a number: never dropped as "unknown"
    det_path.write_text(json.dumps(dets))
    argv = ["evaluate", "--gt", str(gt_path), "--dets", str(det_path)]
    assert main([*argv, "--ignore-unknown-categories"]) == 2
    assert "record 3" in capsys.readouterr().err
