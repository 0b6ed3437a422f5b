"""Operating points (precision, recall, F1 against the score threshold), on hand-derived
cases and against pycocotools' own matching (its dtMatches / dtIgnore)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest

from evalkit.cli import main
from evalkit.datasets.coco import parse_coco_ground_truth
from evalkit.errors import InputError
from evalkit.metrics import evaluate, parse_coco_results
from evalkit.metrics.coco_matches import coco_operating_points, coco_per_image
from evalkit.metrics.operating_points import OperatingPoint, curve, protocol_operating_points

try:  # tests/ is a package in this repository
    from .coco_random import Record, make_workload, pycocotools_in_memory, write_workload
    from .reference_loops import st_reference, voc_reference
except ImportError:  # collected without the package (rootdir-less pytest run)
    from coco_random import Record, make_workload, pycocotools_in_memory, write_workload
    from reference_loops import st_reference, voc_reference


def test_a_hand_derived_curve() -> None:
    # Scores 0.9 TP, 0.8 FP, 0.8 TP, 0.7 ignored, 0.5 FP; 4 ground truths.
    scores = np.array([0.8, 0.9, 0.5, 0.8, 0.7])
    tp = np.array([False, True, False, True, False])
    fp = np.array([True, False, True, False, False])
    c = curve("a", 1, scores, tp, fp, 4)
    assert c.thresholds.tolist() == [0.9, 0.8, 0.5]  # one point per distinct score
    assert c.tp.tolist() == [1, 2, 2] and c.fp.tolist() == [0, 1, 2]
    # F1 = 2TP / (TP + FP + N): 2/5, 4/7, 4/8
    assert c.f1.tolist() == [2 / 5, 4 / 7, 4 / 8]
    best = c.best()
    assert best == OperatingPoint(0.8, 2, 1, 4, 2 / 3, 0.5, 4 / 7)
    assert c.at(0.85) == OperatingPoint(0.85, 1, 0, 4, 1.0, 0.25, 2 / 5)
    assert c.at(0.8) == OperatingPoint(0.8, 2, 1, 4, 2 / 3, 0.5, 4 / 7)  # >= keeps equals
    assert c.at(0.95) == OperatingPoint(0.95, 0, 0, 4, None, 0.0, 0.0)  # nothing kept
    assert c.at(0.0) == OperatingPoint(0.0, 2, 2, 4, 0.5, 0.5, 0.5)


def test_ties_in_f1_take_the_highest_threshold() -> None:
    # 0.9 TP (F1 2/3 with N=2), 0.6 FP, 0.3 TP: F1 at 0.3 = 4/(2+1+2) = 0.8; make a tie:
    scores = np.array([0.9, 0.6, 0.3, 0.2])
    tp = np.array([True, False, True, False])
    fp = ~tp
    c = curve("a", 1, scores, tp, fp, 1)
    # N=1: F1 = 2/(1+0+1)=1 at 0.9; later points lower.
    assert c.best() == OperatingPoint(0.9, 1, 0, 1, 1.0, 1.0, 1.0)
    equal = curve("b", 2, np.array([0.9, 0.5]), np.array([True, True]), np.array([False, False]), 4)
    f1 = equal.f1.tolist()
    assert f1 == [2 / 5, 4 / 6]
    flat = curve("c", 3, np.array([0.9, 0.5]), np.array([True, False]), np.array([False, False]), 1)
    assert flat.thresholds.tolist() == [0.9]  # the ignored detection is no point


def test_no_ground_truth_or_no_detection() -> None:
    none = curve("a", 1, np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), 3)
    assert none.best() is None
    assert none.at(0.5) == OperatingPoint(0.5, 0, 0, 3, None, 0.0, 0.0)
    no_gt = curve("b", 2, np.array([0.5]), np.array([False]), np.array([True]), 0)
    assert no_gt.best() is None
    assert no_gt.at(0.1) == OperatingPoint(0.1, 0, 1, 0, 0.0, None, 0.0)


def _pycocotools_flags(gt: Record, results: list[Record], t: int) -> dict[int, tuple[bool, bool]]:
    """pycocotools' own decision per detection (by its 1-based id): (tp, fp) at IoU index t,
    area all, the last maxDets, as accumulate() turns dtMatches and dtIgnore into them."""
    ev = pycocotools_in_memory(gt, results)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
    flags: dict[int, tuple[bool, bool]] = {}
    num_a = len(ev.params.areaRng)
    num_i = len(ev.params.imgIds)
    for k in range(len(ev.params.catIds)):
        for i in range(num_i):
            e = ev.evalImgs[k * num_a * num_i + i]  # area index 0 = all
            if e is None:
                continue
            for j, det_id in enumerate(e["dtIds"]):
                matched, ignored = e["dtMatches"][t, j], e["dtIgnore"][t, j]
                flags[det_id] = (bool(matched) and not ignored, not matched and not ignored)
    return flags


@pytest.mark.parametrize("seed", range(0, 60, 3))
def test_points_equal_those_from_pycocotools_matching(seed: int) -> None:
    gt, results = make_workload(seed)
    ground_truth = parse_coco_ground_truth(copy.deepcopy(gt))
    dets = parse_coco_results(copy.deepcopy(results), ground_truth)
    thresholds = (0.0, 0.25, 0.5, 0.9)
    for t, iou in ((0, 0.5), (5, 0.75)):
        points = coco_operating_points(ground_truth, dets, thresholds, match_iou=iou)
        flags = _pycocotools_flags(gt, results, t)
        ids = sorted(flags)
        scores = np.array([results[i - 1]["score"] for i in ids])
        cats = np.array([results[i - 1]["category_id"] for i in ids])
        tp = np.array([flags[i][0] for i in ids])
        fp = np.array([flags[i][1] for i in ids])
        for c in points.per_class:
            sel = cats == c.category_id
            expected = curve(c.name, c.category_id, scores[sel], tp[sel], fp[sel], c.num_gt)
            assert c.thresholds.tolist() == expected.thresholds.tolist(), (seed, c.name)
            assert c.tp.tolist() == expected.tp.tolist() and c.fp.tolist() == expected.fp.tolist()
        pooled = curve("all", None, scores, tp, fp, points.overall.num_gt)
        assert points.overall.tp.tolist() == pooled.tp.tolist()
        assert points.overall.num_gt == sum(c.num_gt for c in points.per_class)


def test_cli_prints_and_writes_operating_points(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, _results, gt_path, dets_path = write_workload(tmp_path, 4)
    argv = ["evaluate", "--gt", str(gt_path), "--dets", str(dets_path), "--thresholds", "0.3,0.5"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    points = out["operating_points"]
    assert points["thresholds"] == [0.3, 0.5] and points["iou"] == 0.5
    assert [p["threshold"] for p in points["overall"]["at"]] == [0.3, 0.5]
    assert {"precision", "recall", "f1", "tp", "fp"} <= set(points["overall"]["best_f1"])
    assert len(points["per_class"]) == len(gt["categories"])
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "best F1" in text and "@0.3" in text


@pytest.mark.parametrize("seed", range(0, 40, 3))
@pytest.mark.parametrize("protocol", ["voc07", "voc12", "st"])
def test_points_under_st_and_voc_equal_those_of_their_reference_loops(
    seed: int, protocol: str
) -> None:
    """Each detection's decision under the protocol's own matching, from the sequential
    loops written from the zoo's and the devkit's code (tests/reference_loops.py)."""
    gt, results = make_workload(seed)
    ground_truth = parse_coco_ground_truth(copy.deepcopy(gt))
    if seed % 2:  # some objects difficult, as in VOC
        flags = np.zeros(ground_truth.num_annotations, bool)
        flags[::4] = True
        ground_truth = dataclasses.replace(ground_truth, difficult=flags)
    dets = parse_coco_results(copy.deepcopy(results), ground_truth)
    decided: dict[int, int] = {}
    if protocol == "st":
        st_reference(ground_truth, dets, decisions=decided)
    else:
        voc_reference(ground_truth, dets, "voc07", decisions=decided)
    result = evaluate(ground_truth, dets, protocol=protocol)
    points = protocol_operating_points(result, (0.0, 0.25, 0.5, 0.9))
    rows = np.array(sorted(decided), np.int64)
    flag = np.array([decided[int(i)] for i in rows], np.int64)
    scores, cats = dets.scores[rows], dets.category_index[rows]
    for k, c in enumerate(points.per_class):
        sel = cats == k
        expected = curve(c.name, c.category_id, scores[sel], flag[sel] == 1, flag[sel] == 0, 0)
        assert c.thresholds.tolist() == expected.thresholds.tolist(), (seed, c.name)
        assert c.tp.tolist() == expected.tp.tolist() and c.fp.tolist() == expected.fp.tolist()
        assert c.num_gt == result.per_class[k].num_gt
    pooled = curve("all", None, scores, flag == 1, flag == 0, 0)
    assert points.overall.tp.tolist() == pooled.tp.tolist()
    assert points.overall.fp.tolist() == pooled.fp.tolist()
    assert points.overall.num_gt == result.num_gt
    assert points.protocol == protocol


def test_cli_operating_points_under_voc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, gt_path, dets_path = write_workload(tmp_path, 4)
    argv = ["evaluate", "--gt", str(gt_path), "--dets", str(dets_path), "--protocol", "voc07"]
    assert main([*argv, "--thresholds", "0.5", "--json"]) == 0
    points = json.loads(capsys.readouterr().out)["operating_points"]
    assert points["protocol"] == "voc07" and points["thresholds"] == [0.5]
    assert main([*argv, "--per-image"]) == 2
    assert "--per-image: available with --protocol coco only" in capsys.readouterr().err


def test_bad_thresholds_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, results, gt_path, dets_path = write_workload(tmp_path, 4)
    argv = ["evaluate", "--gt", str(gt_path), "--dets", str(dets_path)]
    assert main([*argv, "--thresholds", "0.5,1.5"]) == 2
    assert "thresholds in [0, 1]" in capsys.readouterr().err
    with pytest.raises(InputError, match="thresholds in \\[0, 1\\]"):
        ground_truth = parse_coco_ground_truth(copy.deepcopy(gt))
        coco_operating_points(
            ground_truth, parse_coco_results(results, ground_truth), (1.5,), match_iou=0.5
        )


@pytest.mark.parametrize("seed", range(0, 60, 5))
def test_per_image_counts_equal_pycocotools_evalimgs(seed: int) -> None:
    gt, results = make_workload(seed)
    ground_truth = parse_coco_ground_truth(copy.deepcopy(gt))
    dets = parse_coco_results(copy.deepcopy(results), ground_truth)
    rows = {r["image_id"]: r for r in coco_per_image(ground_truth, dets, match_iou=0.5)}
    ev = pycocotools_in_memory(gt, results)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
    expected = {i: {"num_gt": 0, "tp": 0, "fp": 0} for i in ev.params.imgIds}
    num_a, num_i = len(ev.params.areaRng), len(ev.params.imgIds)
    for k in range(len(ev.params.catIds)):
        for i, image_id in enumerate(ev.params.imgIds):
            e = ev.evalImgs[k * num_a * num_i + i]
            if e is None:
                continue
            matched, ignored = e["dtMatches"][0], e["dtIgnore"][0]
            expected[image_id]["tp"] += int(np.sum((matched > 0) & ~ignored))
            expected[image_id]["fp"] += int(np.sum((matched == 0) & ~ignored))
            expected[image_id]["num_gt"] += int(np.sum(~np.asarray(e["gtIgnore"], bool)))
    assert sorted(rows) == sorted(expected)
    for image_id, counts in expected.items():
        row = rows[image_id]
        assert (row["num_gt"], row["tp"], row["fp"]) == (
            counts["num_gt"],
            counts["tp"],
            counts["fp"],
        ), (seed, image_id)


def test_the_headline_key_is_stable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _gt, _results, gt_path, dets_path = write_workload(tmp_path, 4)
    base = ["evaluate", "--gt", str(gt_path), "--dets", str(dets_path), "--json"]
    assert main([*base, "--iou", "0.75", "--per-image"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ap"] == out["AP75"] and out["iou"] == 0.75
    assert {"image_id", "num_gt", "tp", "fp"} <= set(out["per_image"][0])
    assert all(c["recall"] is None or 0 <= c["recall"] <= 1 for c in out["classes"])
