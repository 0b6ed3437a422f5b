"""The TIDE breakdown: hand-derived cases, and equality with tidecv (the TIDE authors' package)
on randomized inputs with ties, crowds, empty images and the per-image detection cap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tidecv import TIDE, Data

from evalkit.cli import main
from evalkit.datasets.coco import parse_coco_ground_truth
from evalkit.errors import InputError
from evalkit.metrics.results_file import parse_coco_results
from evalkit.metrics.tide import MAIN_ERRORS, SPECIAL_ERRORS, TideParams, tide_breakdown
from evalkit.types import Category, Detections, GroundTruth, ImageRecord

try:  # tests/ is a package in this repository
    from .coco_random import make_workload, write_workload
except ImportError:  # collected without the package (rootdir-less pytest run)
    from coco_random import make_workload, write_workload

CAT, DOG = 0, 1


def _gt(rows: list[tuple[int, int, list[float], bool]], images: int, classes: int) -> GroundTruth:
    n = len(rows)
    boxes = np.array([r[2] for r in rows], np.float64).reshape(n, 4)
    return GroundTruth(
        images=tuple(ImageRecord(i + 1, f"{i + 1}.jpg", 640, 480) for i in range(images)),
        categories=tuple(Category(c + 1, f"c{c}") for c in range(classes)),
        image_index=np.array([r[0] for r in rows], np.int64),
        category_index=np.array([r[1] for r in rows], np.int64),
        boxes_xywh_px=boxes,
        area=boxes[:, 2] * boxes[:, 3],
        iscrowd=np.array([r[3] for r in rows], bool),
        difficult=np.zeros(n, bool),
        annotation_id=np.arange(1, n + 1),
    )


def _dets(rows: list[tuple[int, int, list[float], float]]) -> Detections:
    n = len(rows)
    return Detections(
        image_index=np.array([r[0] for r in rows], np.int64),
        category_index=np.array([r[1] for r in rows], np.int64),
        boxes_xywh_px=np.array([r[2] for r in rows], np.float64).reshape(n, 4),
        scores=np.array([r[3] for r in rows], np.float64),
    )


def _ap(precision_at_recall: list[float]) -> float:
    """TIDE's 101-point AP from the precision read at each recall 0, 0.01, ..., 1."""
    return sum(precision_at_recall) / 101 * 100


def test_a_hand_derived_breakdown() -> None:
    a, b = [0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 10.0, 10.0]
    gt = _gt([(0, CAT, a, False), (0, DOG, b, False), (1, CAT, a, False)], images=2, classes=2)
    dets = _dets(
        [
            (0, CAT, [100.0, 100.0, 10.0, 10.0], 0.95),  # nothing near: background
            (0, CAT, a, 0.9),  # true positive on a
            (0, CAT, a, 0.8),  # a again: duplicate
            (0, CAT, b, 0.7),  # on the dog: classification
            (0, CAT, [25.0, 0.0, 10.0, 10.0], 0.65),  # IoU 1/3 with the dog only: both
            (0, CAT, [5.0, 0.0, 10.0, 10.0], 0.6),  # IoU 1/3 with a (taken): localisation
        ]
    )
    # Image 2's cat is missed (nothing points at it).
    result = tide_breakdown(gt, dets)
    assert result.counts == {"Cls": 1, "Loc": 1, "Both": 1, "Dupe": 1, "Bkg": 1, "Miss": 1}
    # Base: cat has 2 ground truths; precision 0 then 1/2 at recall 1/2 (the 0.95 first), made
    # non-increasing: 1/2 at recalls 0..0.5 (51 points). Dog: one ground truth, no detection.
    half = _ap([0.5] * 51)
    base = (half + 0) / 2
    assert result.ap == pytest.approx(base, abs=1e-12)
    # Fixing the background error removes the 0.95: cat precision 1 up to recall 1/2.
    assert result.delta_ap["Bkg"] == pytest.approx((_ap([1.0] * 51) + 0) / 2 - base, abs=1e-12)
    # Classification: the 0.7 becomes the dog's true positive (dog AP 100); cat unchanged.
    assert result.delta_ap["Cls"] == pytest.approx((half + 100) / 2 - base, abs=1e-12)
    # The missed cat stops counting: cat recall 1 at the 0.9, precision 1/2 there.
    assert result.delta_ap["Miss"] == pytest.approx((_ap([0.5] * 101) + 0) / 2 - base, abs=1e-12)
    # Localisation points at a taken ground truth: removed, below the true positive: no gain.
    for kind in ("Loc", "Both", "Dupe"):
        assert result.delta_ap[kind] == 0.0
    # False positives scored below every true positive: cat precision 1 up to recall 1/2.
    assert result.special["FalsePos"] == pytest.approx((_ap([1.0] * 51) + 0) / 2 - base, abs=1e-12)
    # No false negatives: cat one ground truth (recall 1, precision 1/2), dog none and no
    # detection: out of the mean.
    assert result.special["FalseNeg"] == pytest.approx(_ap([0.5] * 101) - base, abs=1e-12)


def test_localisation_fix_takes_the_highest_scoring_error_per_ground_truth() -> None:
    a = [0.0, 0.0, 10.0, 10.0]
    gt = _gt([(0, CAT, a, False)], images=1, classes=1)
    shifted = [5.0, 0.0, 10.0, 10.0]  # IoU 1/3
    dets = _dets([(0, CAT, shifted, 0.3), (0, CAT, shifted, 0.8), (0, CAT, shifted, 0.8)])
    result = tide_breakdown(gt, dets)
    assert result.counts["Loc"] == 3 and result.counts["Miss"] == 0
    # Fixed: the first 0.8 is a true positive, the other two are removed: AP 100.
    assert result.ap == 0.0
    assert result.delta_ap["Loc"] == 100.0


def test_a_detection_on_a_crowd_is_in_no_ap_but_still_an_error() -> None:
    a, crowd = [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 100.0, 100.0]
    gt = _gt([(0, CAT, a, False), (0, CAT, crowd, True)], images=1, classes=1)
    dets = _dets([(0, CAT, [60.0, 60.0, 10.0, 10.0], 0.9), (0, CAT, a, 0.5)])
    result = tide_breakdown(gt, dets)
    assert result.ap == 100.0  # the 0.9 inside the crowd is ignored
    assert result.counts["Bkg"] == 1


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(InputError, match="foreground"):
        TideParams(pos_threshold=0.0)
    with pytest.raises(InputError, match="background"):
        TideParams(pos_threshold=0.5, background_threshold=0.6)
    with pytest.raises(InputError, match="max_dets"):
        TideParams(max_dets=0)


def _random_case(
    seed: int,
) -> tuple[GroundTruth, Detections, TideParams]:
    rng = np.random.default_rng(seed)
    images = int(rng.integers(1, 12))
    classes = int(rng.integers(1, 5))
    gt_rows: list[tuple[int, int, list[float], bool]] = []
    det_rows: list[tuple[int, int, list[float], float]] = []
    # Coarse grids make equal IoUs and equal scores common.
    step = float(rng.choice([1.0, 5.0, 10.0]))
    levels = int(rng.choice([3, 10, 1000]))
    for image in range(images):
        for _ in range(int(rng.integers(0, 7))):
            x, y = (rng.integers(0, 20, 2) * step).tolist()
            w, h = (rng.integers(1, 8, 2) * step).tolist()
            gt_rows.append((image, int(rng.integers(0, classes)), [x, y, w, h], rng.random() < 0.1))
        own = [r for r in gt_rows if r[0] == image]
        for _ in range(int(rng.integers(0, 12))):
            if own and rng.random() < 0.7:
                box = list(own[int(rng.integers(0, len(own)))][2])
                box[0] += float(rng.integers(-3, 4)) * step / 2
                box[1] += float(rng.integers(-3, 4)) * step / 2
                box[2] = max(box[2] + float(rng.integers(-2, 3)) * step / 2, step / 2)
            else:
                box = [*(rng.integers(0, 25, 2) * step).tolist(), step * 3, step * 2]
            score = float(rng.integers(0, levels + 1)) / levels
            det_rows.append((image, int(rng.integers(0, classes)), box, score))
    if not any(not r[3] for r in gt_rows):  # tidecv divides by zero without any ground truth
        gt_rows.append((0, 0, [0.0, 0.0, step, step], False))
    # ... and without any detection once fixing the missed ground truths leaves no class.
    det_rows.append((0, 0, [0.0, 0.0, step, step], 0.5))
    pos = float(rng.choice([0.5, 0.5, 0.3, 0.75]))
    params = TideParams(
        pos_threshold=pos,
        background_threshold=float(rng.choice([0.1, 0.0, pos])),
        max_dets=int(rng.choice([100, 3, 1])),
    )
    return _gt(gt_rows, images, classes), _dets(det_rows), params


def _tidecv(gt: GroundTruth, dets: Detections, params: TideParams) -> tuple[object, ...]:
    truth = Data("gt", max_dets=params.max_dets)
    for i in range(len(gt.images)):
        truth.add_image(i, str(i))
    for i, c, box, crowd in zip(
        gt.image_index.tolist(),
        gt.category_index.tolist(),
        gt.boxes_xywh_px.tolist(),
        gt.iscrowd.tolist(),
        strict=True,
    ):
        if crowd:
            truth.add_ignore_region(i, c, box)
        else:
            truth.add_ground_truth(i, c, box)
    preds = Data("dets")
    for i, c, box, s in zip(
        dets.image_index.tolist(),
        dets.category_index.tolist(),
        dets.boxes_xywh_px.tolist(),
        dets.scores.tolist(),
        strict=True,
    ):
        preds.add_detection(i, c, s, box)
    tide = TIDE(
        pos_threshold=params.pos_threshold, background_threshold=params.background_threshold
    )
    run = tide.evaluate(truth, preds, mode=TIDE.BOX, name="run")
    main = tide.get_main_errors()["run"]
    special = tide.get_special_errors()["run"]
    counts = {k.short_name: v for k, v in run.count_errors().items()}
    return run.ap, main, special, counts


@pytest.mark.parametrize("seed", range(160))
def test_equal_to_tidecv_on_random_inputs(seed: int) -> None:
    if seed < 120:
        gt, dets, params = _random_case(seed)
    else:  # COCO-like workloads: crowds, images and categories without ground truth
        doc, results = make_workload(seed)
        gt = parse_coco_ground_truth(doc)
        dets, params = parse_coco_results(results, gt), TideParams()
    ap, main, special, counts = _tidecv(gt, dets, params)
    result = tide_breakdown(gt, dets, params)
    assert result.ap == ap
    assert result.delta_ap == {k: main[k] for k in MAIN_ERRORS}  # type: ignore[index]
    assert result.special == {k: special[k] for k in SPECIAL_ERRORS}  # type: ignore[index]
    assert result.counts == counts


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc, results, gt_path, dets_path = write_workload(tmp_path, 6)
    argv = ["evaluate", "--gt", str(gt_path), "--dets", str(dets_path), "--tide"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["tide"]
    gt = parse_coco_ground_truth(doc)
    expected = tide_breakdown(gt, parse_coco_results(results, gt)).to_dict()
    assert out == json.loads(json.dumps(expected))
    assert main([*argv, "--iou", "0.3", "--protocol", "voc07"]) == 0
    text = capsys.readouterr().out
    assert "TIDE error breakdown (IoU 0.3, background 0.1" in text and "FalseNeg" in text


def test_cli_refuses_a_bad_background_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--gt", str(tmp_path / "absent.json"), "--dets", str(tmp_path / "x")]
    assert main([*argv, "--tide", "--tide-background", "0.9"]) == 2
    err = capsys.readouterr().err
    assert "background IoU must be in [0, foreground IoU], got 0.9" in err
    assert "Traceback" not in err
