"""The torchmetrics mode: with the float32 thresholds torchmetrics' MeanAveragePrecision hands
COCOeval (``CocoParams.torchmetrics()``, ``--torchmetrics-thresholds``), evalkit gives
torchmetrics' own numbers, computed here by torchmetrics itself (pycocotools backend).

torchmetrics checks for torchvision, which does not load beside the pinned torch, and calls
its ``box_convert`` from ``xywh`` to ``xywh`` (the format these boxes are handed over in),
which returns a copy. The stub below does that and nothing else: any other conversion fails
the test.
"""

from __future__ import annotations

import copy
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchmetrics.detection.mean_ap as mean_ap

from evalkit.cli import main
from evalkit.datasets.coco import parse_coco_ground_truth
from evalkit.metrics import CocoParams, evaluate, parse_coco_results

try:  # tests/ is a package in this repository
    from .coco_random import Record, make_workload
except ImportError:  # collected without the package (rootdir-less pytest run)
    from coco_random import Record, make_workload

TORCHMETRICS_KEYS = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


@pytest.fixture
def torchmetrics_map(monkeypatch: pytest.MonkeyPatch) -> Any:
    def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
        # torchvision returns a copy when the formats agree; anything else is not this test.
        assert in_fmt == out_fmt == "xywh", f"box_convert({in_fmt} -> {out_fmt})"
        return boxes.clone()

    ops = types.ModuleType("torchvision.ops")
    ops.box_convert = box_convert  # type: ignore[attr-defined]
    vision = types.ModuleType("torchvision")
    vision.ops = ops  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", vision)
    monkeypatch.setitem(sys.modules, "torchvision.ops", ops)
    monkeypatch.setattr(mean_ap, "_TORCHVISION_AVAILABLE", True)
    return mean_ap.MeanAveragePrecision


def _float32_workload(seed: int) -> tuple[Record, list[Record]]:
    """A seeded workload with image ids 0..n-1 in file order (torchmetrics numbers images by
    their place), categories covering every label, and boxes and scores exact in float32
    (torchmetrics holds them as float32 tensors), detections in image order."""
    gt, results = make_workload(seed)
    position = {im["id"]: i for i, im in enumerate(gt["images"])}
    for im in gt["images"]:
        im["id"] = position[im["id"]]
    for i, ann in enumerate(gt["annotations"]):
        ann["image_id"] = position[ann["image_id"]]
        ann["bbox"] = [float(np.float32(v)) for v in ann["bbox"]]
        ann["area"] = ann["bbox"][2] * ann["bbox"][3]
        ann["id"] = i + 1
    for r in results:
        r["image_id"] = position[r["image_id"]]
        r["bbox"] = [float(np.float32(v)) for v in r["bbox"]]
        r["score"] = float(np.float32(r["score"]))
    results.sort(key=lambda r: r["image_id"])  # stable: file order within an image
    labels = {a["category_id"] for a in gt["annotations"]} | {r["category_id"] for r in results}
    gt["categories"] = [{"id": c, "name": f"c{c}"} for c in sorted(labels)]
    return gt, results


def _torchmetrics(metric_class: Any, gt: Record, results: list[Record]) -> list[float]:
    metric = metric_class(iou_type="bbox", box_format="xywh", backend="pycocotools")
    metric.warn_on_many_detections = False  # the workloads cut at maxDets on purpose
    preds, targets = [], []
    for im in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == im["id"]]
        dets = [r for r in results if r["image_id"] == im["id"]]
        targets.append(
            {
                "boxes": torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(
                    -1, 4
                ),
                "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
                "iscrowd": torch.tensor([int(a["iscrowd"]) for a in anns], dtype=torch.int64),
            }
        )
        preds.append(
            {
                "boxes": torch.tensor([r["bbox"] for r in dets], dtype=torch.float32).reshape(
                    -1, 4
                ),
                "scores": torch.tensor([r["score"] for r in dets], dtype=torch.float32),
                "labels": torch.tensor([r["category_id"] for r in dets], dtype=torch.int64),
            }
        )
    metric.update(preds, targets)
    out = metric.compute()
    return [float(out[key]) for key in TORCHMETRICS_KEYS]


def _evalkit(gt: Record, results: list[Record], params: CocoParams | None) -> list[float]:
    ground_truth = parse_coco_ground_truth(copy.deepcopy(gt))
    dets = parse_coco_results(copy.deepcopy(results), ground_truth)
    stats = evaluate(ground_truth, dets, "coco", coco=params).stats
    assert stats is not None
    return [float(np.float32(v)) for v in stats]  # torchmetrics returns float32 tensors


@pytest.mark.parametrize("seed", range(0, 60, 4))
def test_the_torchmetrics_mode_gives_torchmetrics_numbers(seed: int, torchmetrics_map: Any) -> None:
    gt, results = _float32_workload(seed)
    expected = _torchmetrics(torchmetrics_map, gt, results)
    assert _evalkit(gt, results, CocoParams.torchmetrics()) == expected, seed


def test_the_thresholds_are_torchmetrics_own(torchmetrics_map: Any) -> None:
    metric = torchmetrics_map(iou_type="bbox", box_format="xywh", backend="pycocotools")
    params = CocoParams.torchmetrics()
    assert list(params.iou_thresholds) == metric.iou_thresholds
    assert list(params.recall_thresholds) == metric.rec_thresholds
    assert list(params.max_dets) == metric.max_detection_thresholds
    # ... which are not pycocotools': that is the whole difference.
    assert params.recall_thresholds != CocoParams().recall_thresholds


def test_the_two_modes_differ_where_a_recall_falls_between_the_spellings(
    torchmetrics_map: Any,
) -> None:
    """One class, 100 ground truths, 7 found first: recall 0.07 reaches pycocotools' 0.07
    but not float32's 0.07000000029802322, so the 101-point AP differs."""
    n = 100
    gt = {
        "images": [{"id": 0, "width": 2000, "height": 2000}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": i + 1, "image_id": 0, "category_id": 1, "bbox": [20.0 * i, 0.0, 10.0, 10.0],
             "area": 100.0, "iscrowd": 0}
            for i in range(n)
        ],
    }  # fmt: skip
    results = [
        {"image_id": 0, "category_id": 1, "bbox": [20.0 * i, 0.0, 10.0, 10.0], "score": 0.9}
        for i in range(7)
    ] + [{"image_id": 0, "category_id": 1, "bbox": [0.0, 500.0, 10.0, 10.0], "score": 0.5}]
    tm = _evalkit(gt, results, CocoParams.torchmetrics())
    assert tm == _torchmetrics(torchmetrics_map, gt, results)
    assert tm[0] != _evalkit(gt, results, None)[0]


def test_cli_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, results = _float32_workload(8)
    gt_path, dets_path = tmp_path / "gt.json", tmp_path / "dets.json"
    gt_path.write_text(json.dumps(gt))
    dets_path.write_text(json.dumps(results))
    argv = ["evaluate", "--gt", str(gt_path), "--dets", str(dets_path), "--json"]
    assert main([*argv, "--torchmetrics-thresholds"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stat_names"][:3] == ["AP", "AP50", "AP75"]
    got = [float(np.float32(v)) for v in out["stats"]]
    assert got == _evalkit(gt, results, CocoParams.torchmetrics())
    assert main([*argv, "--torchmetrics-thresholds", "--iou-thresholds", "0.5"]) == 2
    assert "give one or the other" in capsys.readouterr().err
