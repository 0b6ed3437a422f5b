"""The confusion matrix: hand-derived cases, and a sequential greedy loop written from the
rules in evalkit/metrics/confusion.py on random inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evalkit.cli import main
from evalkit.metrics.confusion import confusion_matrix
from evalkit.types import Category, Detections, GroundTruth, ImageRecord

try:  # tests/ is a package in this repository
    from .coco_random import make_workload, write_workload
except ImportError:  # collected without the package (rootdir-less pytest run)
    from coco_random import make_workload, write_workload


def _gt(
    boxes: list[list[float]], classes: list[int], crowd: list[bool] | None = None
) -> GroundTruth:
    n = len(boxes)
    b = np.array(boxes, np.float64).reshape(n, 4)
    return GroundTruth(
        images=(ImageRecord(1, "1.jpg", 200, 200), ImageRecord(2, "2.jpg", 200, 200)),
        categories=(Category(1, "cat"), Category(2, "dog"), Category(3, "fox")),
        image_index=np.zeros(n, np.int64),
        category_index=np.array(classes),
        boxes_xywh_px=b,
        area=b[:, 2] * b[:, 3],
        iscrowd=np.array(crowd if crowd is not None else [False] * n),
        difficult=np.zeros(n, bool),
        annotation_id=np.arange(1, n + 1),
    )


def test_a_hand_derived_matrix() -> None:
    # cat at (0,0,10,10), dog at (50,50,10,10), fox at (100,100,10,10), a crowd at (150,...).
    gt = _gt(
        [[0, 0, 10, 10], [50, 50, 10, 10], [100, 100, 10, 10], [150, 150, 40, 40]],
        [0, 1, 2, 0],
        [False, False, False, True],
    )
    dets = Detections(
        np.zeros(6, np.int64),
        np.array([0, 0, 1, 1, 2, 0]),
        np.array(
            [
                [0, 0, 10, 10],  # cat on the cat: cat-cat
                [1, 0, 10, 10],  # a second cat on the cat: the first took it: background row
                [50, 50, 10, 10],  # dog on the dog, but below the score threshold: dropped
                [101, 100, 10, 10],  # dog on the fox: fox-dog
                [160, 160, 10, 10],  # fox inside the crowd: not counted
                [190, 0, 5, 5],  # cat on nothing: background row
            ],
            np.float64,
        ),
        np.array([0.9, 0.8, 0.3, 0.7, 0.9, 0.6]),
    )
    cm = confusion_matrix(gt, dets, iou_threshold=0.5, score_threshold=0.5)
    expected = np.zeros((4, 4), np.int64)
    expected[0, 0] = 1  # cat given cat
    expected[2, 1] = 1  # fox given dog
    expected[1, 3] = 1  # the dog missed (its detection scored 0.3)
    expected[3, 0] = 2  # two cats on nothing
    assert cm.matrix.tolist() == expected.tolist()
    assert cm.top_confusions() == [("fox", "dog", 1)]


def test_greedy_takes_the_highest_iou_first() -> None:
    # Two ground truths, two detections: d0 overlaps g0 at 0.86 and g1 at 0.95; d1 overlaps
    # g1 at 0.67 and g0 at 0.6. Greedy by IoU: (d0, g1) first, then (d1, g0).
    gt = _gt([[0, 0, 100, 100], [5, 0, 100, 100]], [0, 1])
    dets = Detections(
        np.zeros(2, np.int64),
        np.array([0, 1]),
        np.array([[5, 0, 100, 95], [25, 0, 100, 100]], np.float64),
        np.array([0.9, 0.9]),
    )
    cm = confusion_matrix(gt, dets, 0.5, 0.5)
    # d0-g1 (IoU 0.95) is taken first, d1-g0 (IoU 0.6) second: dog given cat, cat given dog.
    assert cm.matrix[1, 0] == 1 and cm.matrix[0, 1] == 1 and cm.matrix.sum() == 2


def _reference(gt: GroundTruth, dets: Detections, iou_t: float, score_t: float) -> np.ndarray:
    """The rules as a plain loop: all candidate pairs, sorted, taken one by one."""
    k = len(gt.categories)
    m = np.zeros((k + 1, k + 1), np.int64)
    ignored = gt.iscrowd | gt.difficult

    def iou(d: int, g: int) -> float:
        dx, dy, dw, dh = dets.boxes_xywh_px[d]
        gx, gy, gw, gh = gt.boxes_xywh_px[g]
        w = min(dx + dw, gx + gw) - max(dx, gx)
        h = min(dy + dh, gy + gh) - max(dy, gy)
        if w <= 0 or h <= 0:
            return 0.0
        union = dw * dh if gt.iscrowd[g] else dw * dh + gw * gh - w * h
        return w * h / union

    kept = [d for d in range(len(dets.scores)) if dets.scores[d] >= score_t]
    pairs = []
    for d in kept:
        for g in range(len(gt.image_index)):
            if gt.image_index[g] == dets.image_index[d] and not ignored[g] and iou(d, g) >= iou_t:
                pairs.append((-iou(d, g), -dets.scores[d], d, g))
    pairs.sort()
    used_d, used_g = set(), set()
    for _, _, d, g in pairs:
        if d not in used_d and g not in used_g:
            used_d.add(d)
            used_g.add(g)
            m[gt.category_index[g], dets.category_index[d]] += 1
    for g in range(len(gt.image_index)):
        if g not in used_g and not ignored[g]:
            m[gt.category_index[g], k] += 1
    for d in kept:
        if d in used_d:
            continue
        on_ignored = any(
            gt.image_index[g] == dets.image_index[d] and ignored[g] and iou(d, g) >= iou_t
            for g in range(len(gt.image_index))
        )
        if not on_ignored:
            m[k, dets.category_index[d]] += 1
    return m


@pytest.mark.parametrize("seed", range(0, 60, 6))
def test_random_workloads_equal_the_loop(seed: int) -> None:
    from evalkit.datasets.coco import parse_coco_ground_truth
    from evalkit.metrics import parse_coco_results

    doc, results = make_workload(seed)
    gt = parse_coco_ground_truth(doc)
    dets = parse_coco_results(results, gt)
    for iou_t, score_t in ((0.5, 0.0), (0.3, 0.5), (0.75, 0.2)):
        got = confusion_matrix(gt, dets, iou_t, score_t).matrix
        assert got.tolist() == _reference(gt, dets, iou_t, score_t).tolist(), (seed, iou_t)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc, _results, gt_path, dets_path = write_workload(tmp_path, 6)
    argv = ["evaluate", "--gt", str(gt_path), "--dets", str(dets_path), "--confusion", "0.4"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["confusion"]
    assert out["score_threshold"] == 0.4 and out["iou_threshold"] == 0.5
    assert out["labels"][-1] == "background"
    size = len(doc["categories"]) + 1
    assert len(out["matrix"]) == size and all(len(r) == size for r in out["matrix"])
    assert main(argv) == 0
    assert "confusion (IoU >= 0.5, score >= 0.4)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--confusion", "1.5"], "--confusion: a score threshold in [0, 1], got 1.5"),
        (["--thresholds", "0.5,2"], "score thresholds in [0, 1] expected"),
        (["--per-image", "--protocol", "voc12"], "available with --protocol coco only"),
    ],
)
def test_bad_analysis_flags_exit_2(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, gt_path, dets_path = write_workload(tmp_path, 2)
    argv = ["evaluate", "--gt", str(gt_path), "--dets", str(dets_path), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
