"""Every COCOeval parameter, any value: evalkit against pycocotools with the same Params set.

Seeded workloads (tests/coco_random.py) meet random parameter sets: IoU thresholds (0 and 1
included), recall thresholds (unsorted too), maxDets (any order), area ranges with their own
labels, class-agnostic evaluation, image and category subsets. ``eval['precision']`` and
``eval['recall']`` must be pycocotools' bit for bit; the summary numbers must be the means
pycocotools' ``_summarize`` takes over those arrays.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from evalkit.cli import main
from evalkit.cli.render import _COCO_LINES
from evalkit.datasets.coco import parse_coco_ground_truth
from evalkit.errors import InputError
from evalkit.metrics import AreaRange, CocoParams, evaluate, parse_coco_results
from evalkit.types import EvalResult

try:  # tests/ is a package in this repository
    from .coco_random import Record, make_workload, pycocotools_in_memory
except ImportError:  # collected without the package (rootdir-less pytest run)
    from coco_random import Record, make_workload, pycocotools_in_memory


def _random_params(rng: np.random.Generator, gt: Record) -> CocoParams:
    kind = rng.integers(0, 3)
    if kind == 0:
        ious = tuple(float(v) for v in rng.choice(np.linspace(0.05, 0.95, 19), rng.integers(1, 5)))
    elif kind == 1:
        ious = tuple(float(v) for v in np.round(rng.uniform(0, 1, rng.integers(1, 4)), 3))
    else:
        ious = (0.0, 0.5, 1.0)
    ious = tuple(dict.fromkeys(ious))
    recalls: tuple[float, ...] = tuple(np.linspace(0, 1, int(rng.integers(2, 30))).tolist())
    if rng.random() < 0.3:
        recalls = tuple(float(v) for v in rng.permutation(np.round(rng.uniform(0, 1, 8), 2)))
    # Any order: COCOeval sorts them, and so does CocoParams.
    max_dets = tuple(int(v) for v in rng.choice(np.arange(1, 150), rng.integers(1, 5), False))
    areas = [AreaRange("all", 0.0, 1e10)] if rng.random() < 0.7 else []
    for i in range(int(rng.integers(0 if areas else 1, 4))):
        low = float(rng.choice([0, 16, 100, 32**2, 2500]))
        areas.append(AreaRange(f"r{i}", low, low + float(rng.choice([50, 1000, 1e4, 1e6]))))
    image_ids = [im["id"] for im in gt["images"]]
    cat_ids = [c["id"] for c in gt["categories"]]
    pick_images = rng.random() < 0.4
    pick_cats = rng.random() < 0.4
    return CocoParams(
        iou_thresholds=ious,
        recall_thresholds=recalls,
        max_dets=max_dets,
        area_ranges=tuple(areas),
        use_cats=bool(rng.random() < 0.6),
        image_ids=tuple(int(i) for i in rng.choice(image_ids, max(1, len(image_ids) // 2), False))
        if pick_images
        else None,
        category_ids=tuple(int(c) for c in rng.choice(cat_ids, max(1, len(cat_ids) - 1), False))
        if pick_cats
        else None,
    )


def _pycocotools(gt: Record, results: list[Record], params: CocoParams) -> COCOeval:
    ev = pycocotools_in_memory(gt, results)
    with contextlib.redirect_stdout(io.StringIO()):
        p = ev.params
        p.iouThrs = np.array(params.iou_thresholds)
        p.recThrs = np.array(params.recall_thresholds)
        p.maxDets = list(params.max_dets)
        p.areaRng = [[a.low, a.high] for a in params.area_ranges]
        p.areaRngLbl = [a.label for a in params.area_ranges]
        p.useCats = int(params.use_cats)
        if params.image_ids is not None:
            p.imgIds = sorted(params.image_ids)
        if params.category_ids is not None:
            p.catIds = sorted(int(c) for c in params.category_ids)
        ev.evaluate()
        ev.accumulate()
    return ev


def _evalkit(gt: Record, results: list[Record], params: CocoParams) -> EvalResult:
    ground_truth = parse_coco_ground_truth(copy.deepcopy(gt))
    dets = parse_coco_results(copy.deepcopy(results), ground_truth)
    return evaluate(ground_truth, dets, "coco", params.iou_thresholds[0], coco=params)


def _reference_stats(ev: COCOeval, params: CocoParams) -> list[float]:
    """pycocotools' ``_summarize`` over its own arrays, for each of evalkit's stats."""
    out = []
    for stat in params.stats:
        aind = [i for i, label in enumerate(ev.params.areaRngLbl) if label == stat.area]
        mind = [i for i, m in enumerate(ev.params.maxDets) if m == stat.max_dets]
        s = ev.eval["precision"] if stat.is_ap else ev.eval["recall"]
        if stat.iou is not None:
            s = s[np.where(stat.iou == ev.params.iouThrs)[0]]
        s = s[:, :, :, aind, mind] if stat.is_ap else s[:, :, aind, mind]
        out.append(-1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1])))
    return out


@pytest.mark.parametrize("seed", range(100))
def test_random_parameters_match_pycocotools(seed: int) -> None:
    gt, results = make_workload(seed)
    params = _random_params(np.random.default_rng(1000 + seed), gt)
    ours = _evalkit(gt, results, params)
    ref = _pycocotools(gt, results, params)
    label = f"seed {seed}: {params.describe()}"
    assert ours.arrays["precision"].shape == ref.eval["precision"].shape, label
    np.testing.assert_array_equal(ours.arrays["precision"], ref.eval["precision"], label)
    np.testing.assert_array_equal(ours.arrays["recall"], ref.eval["recall"], label)
    assert list(ours.stats or ()) == _reference_stats(ref, params), label


def test_the_random_parameters_cover_each_kind() -> None:
    seen: set[str] = set()
    for seed in range(100):
        gt, _ = make_workload(seed)
        p = _random_params(np.random.default_rng(1000 + seed), gt)
        seen |= {"agnostic"} if not p.use_cats else set()
        seen |= {"image subset"} if p.image_ids else set()
        seen |= {"category subset"} if p.category_ids else set()
        seen |= {"no all area"} if "all" not in [a.label for a in p.area_ranges] else set()
        seen |= (
            {"unsorted recall"}
            if list(p.recall_thresholds) != sorted(p.recall_thresholds)
            else set()
        )
        seen |= {"iou 0 and 1"} if {0.0, 1.0} <= set(p.iou_thresholds) else set()
    assert seen == {
        "agnostic",
        "image subset",
        "category subset",
        "no all area",
        "unsorted recall",
        "iou 0 and 1",
    }


def test_default_parameters_name_pycocotools_twelve() -> None:
    params = CocoParams()
    assert params.is_default
    names = [s.name for s in params.stats]
    assert names == [
        *("AP", "AP50", "AP75", "APs", "APm", "APl"),
        *("AR1", "AR10", "AR100", "ARs", "ARm", "ARl"),
    ]
    assert [s.describe(params.iou_thresholds) for s in params.stats] == list(_COCO_LINES)


def test_other_parameters_name_their_stats() -> None:
    params = CocoParams(
        iou_thresholds=(0.3, 0.6),
        max_dets=(50, 5),
        area_ranges=(
            AreaRange("all", 0, 1e10),
            AreaRange("tiny", 0, 64),
            AreaRange("small", 0, 1024),
        ),
    )
    names = [s.name for s in params.stats]
    assert names == ["AP", "AP30", "AP60", "AP_tiny", "APs", "AR5", "AR50", "AR_tiny", "ARs"]
    assert params.max_dets == (5, 50)  # sorted, as COCOeval.evaluate() sorts them


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iou_thresholds": ()}, "at least one IoU threshold"),
        ({"iou_thresholds": (0.5, 1.5)}, r"IoU thresholds in \[0, 1\]"),
        ({"iou_thresholds": (0.5, 0.5)}, "distinct IoU thresholds"),
        ({"recall_thresholds": (-0.1,)}, "recall thresholds"),
        ({"max_dets": (0, 10)}, "maxDets as positive integers"),
        ({"max_dets": (10, 10)}, "distinct maxDets"),
        ({"area_ranges": (AreaRange("a", 0, 1), AreaRange("a", 1, 2))}, "distinct labels"),
        ({"area_ranges": (AreaRange("a", 5, 1),)}, "low <= high"),
        ({"image_ids": ()}, "at least one image id"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CocoParams(**kwargs)


def test_unknown_ids_and_other_protocols_are_refused() -> None:
    gt, results = make_workload(3)
    ground_truth = parse_coco_ground_truth(copy.deepcopy(gt))
    dets = parse_coco_results(copy.deepcopy(results), ground_truth)
    with pytest.raises(InputError, match="image ids not in the ground truth: 987654"):
        evaluate(ground_truth, dets, "coco", coco=CocoParams(image_ids=(987654,)))
    with pytest.raises(InputError, match="categories not in the ground truth: nope"):
        evaluate(ground_truth, dets, "coco", coco=CocoParams(category_ids=("nope",)))
    with pytest.raises(InputError, match="coco protocol only"):
        evaluate(ground_truth, dets, "voc07", coco=CocoParams(max_dets=(5,)))
    with pytest.raises(InputError, match=r"one of its IoU thresholds \(0.3, 0.6\); got 0.5"):
        evaluate(ground_truth, dets, "coco", coco=CocoParams(iou_thresholds=(0.3, 0.6)))


def _files(tmp_path: Path, seed: int) -> tuple[Record, list[Record], Path, Path]:
    gt, results = make_workload(seed)
    gt_path, dets_path = tmp_path / "gt.json", tmp_path / "dets.json"
    gt_path.write_text(json.dumps(gt))
    dets_path.write_text(json.dumps(results))
    return gt, results, gt_path, dets_path


def test_cli_flags_match_pycocotools(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, results, gt_path, dets_path = _files(tmp_path, 8)
    cats = sorted(c["id"] for c in gt["categories"])[:2]
    argv = [
        *("evaluate", "--gt", str(gt_path), "--dets", str(dets_path), "--json"),
        *("--iou-thresholds", "0.35,0.6", "--max-dets", "3,40", "--recall-thresholds", "0,0.5,1"),
        *("--area-ranges", "all=0:1e10,tiny=0:400", "--categories", ",".join(map(str, cats))),
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    params = CocoParams(
        iou_thresholds=(0.35, 0.6),
        recall_thresholds=(0.0, 0.5, 1.0),
        max_dets=(3, 40),
        area_ranges=(AreaRange("all", 0, 1e10), AreaRange("tiny", 0, 400)),
        category_ids=tuple(cats),
    )
    ref = _pycocotools(gt, results, params)
    assert out["stats"] == _reference_stats(ref, params)
    assert out["stat_names"] == ["AP", "AP35", "AP60", "AP_tiny", "AR3", "AR40", "AR_tiny"]
    assert out["iou"] == 0.35  # no --iou, 0.5 not a threshold: the first one
    assert out["settings"]["coco_params"]["max_dets"] == [3, 40]
    assert sorted(c["category_id"] for c in out["classes"]) == cats


def test_cli_class_agnostic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, results, gt_path, dets_path = _files(tmp_path, 5)
    argv = ["evaluate", "--gt", str(gt_path), "--dets", str(dets_path), "--class-agnostic"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = _pycocotools(gt, results, CocoParams(use_cats=False))
    assert out["stats"] == _reference_stats(ref, CocoParams(use_cats=False))
    assert out["classes"] == []
    assert main(argv) == 0  # the text rendering copes with no per-class rows
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-dets", "a,b"], "expected comma-separated integers"),
        (["--area-ranges", "all"], "LABEL=LOW:HIGH"),
        (["--iou-thresholds", "0.5,2"], "IoU thresholds in [0, 1]"),
        (["--protocol", "st", "--class-agnostic"], "--class-agnostic: COCOeval parameters apply"),
        (["--image-ids", "424242"], "image ids not in the ground truth: 424242"),
    ],
)
def test_cli_bad_flags_exit_2(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, gt_path, dets_path = _files(tmp_path, 2)
    argv = ["evaluate", "--gt", str(gt_path), "--dets", str(dets_path), *flags]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage error
        code = int(exc.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err.replace("\n", " ")
