"""Parity of the ``coco`` protocol with pycocotools' COCOeval (bbox), bit for bit.

pycocotools runs inside every test on the same dicts or files (it is a required test
dependency: these tests never skip for lack of it). Compared each time: the 12 summary
stats, ``eval['precision']`` (T,R,K,A,M) and ``eval['recall']`` (T,K,A,M) entry by entry,
and per-class AP@[.5:.95] and AP50.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evalkit.datasets.coco import load_coco_ground_truth, parse_coco_ground_truth
from evalkit.metrics import coco as coco_protocol
from evalkit.metrics import evaluate, load_coco_results, parse_coco_results, write_coco_results
from evalkit.types import EvalResult

try:  # tests/ is a package in this repository
    from .coco_random import Record, make_workload
except ImportError:  # collected without the package (rootdir-less pytest run)
    from coco_random import Record, make_workload

# pycocotools is deterministic, so evalkit must give its very bits (difference 0.0). Values
# derived by hand in a test are compared at 1e-12: the hand's arithmetic rounds its own way.
ATOL = 0.0
HAND_ATOL = 1e-12
GOLDEN = Path("data") / "coco_val2014_100"
# pycocotools' summarize() order.
STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)
SEEDS = range(60)


# --- running both sides ---------------------------------------------------------------


def _run_cocoeval(coco_gt: COCO, coco_dt: COCO) -> COCOeval:
    """evaluate + accumulate + summarize, with pycocotools' prints silenced."""
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _coco_in_memory(dataset: Record) -> COCO:
    """A pycocotools COCO object over a deep copy of ``dataset`` (pycocotools writes into it)."""
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def run_pycocotools(gt: Record, results: list[Record]) -> COCOeval:
    """COCOeval on in-memory dicts, results through ``loadRes`` as a user would pass them."""
    coco_gt = _coco_in_memory(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
    return _run_cocoeval(coco_gt, coco_dt)


def run_evalkit(gt: Record, results: list[Record]) -> EvalResult:
    """evalkit's ``coco`` protocol on the same dicts, through its public parsers."""
    ground_truth = parse_coco_ground_truth(copy.deepcopy(gt))
    detections = parse_coco_results(copy.deepcopy(results), ground_truth)
    return evaluate(ground_truth, detections, protocol="coco")


# --- comparing ------------------------------------------------------------------------


def _mean_valid(values: np.ndarray) -> float:
    """pycocotools' summary mean: over entries > -1, or -1 when there are none."""
    valid = values[values > -1]
    return -1.0 if valid.size == 0 else float(np.mean(valid))


def pycocotools_per_class(ev: COCOeval) -> dict[int, tuple[float, float]]:
    """Category id to (AP@[.5:.95], AP50) from COCOeval's precision array, area all, 100 dets."""
    precision = ev.eval["precision"]
    return {
        int(cat_id): (
            _mean_valid(precision[:, :, k, 0, -1]),
            _mean_valid(precision[0, :, k, 0, -1]),
        )
        for k, cat_id in enumerate(ev.params.catIds)
    }


def assert_close(what: str, ours: Any, ref: Any, atol: float = ATOL) -> None:
    """``assert_allclose`` at ``atol`` (exact by default), absolute; on failure show both
    sides and where they differ."""
    ours_arr = np.asarray(ours, dtype=np.float64)
    ref_arr = np.asarray(ref, dtype=np.float64)
    assert ours_arr.shape == ref_arr.shape, f"{what}: shape {ours_arr.shape} != {ref_arr.shape}"
    bad = np.argwhere(~(np.abs(ours_arr - ref_arr) <= atol))
    if ours_arr.size <= 64:
        detail = f"\n  evalkit:     {ours_arr.tolist()}\n  pycocotools: {ref_arr.tolist()}"
    else:  # a (10,101,K,4,3) array in full would bury the differing entries
        rows = [
            f"\n  {tuple(i)}: evalkit {ours_arr[tuple(i)]!r} pycocotools {ref_arr[tuple(i)]!r}"
            for i in bad[:12].tolist()
        ]
        detail = f"\n  {len(bad)} differing entries, first ones:" + "".join(rows)
    np.testing.assert_allclose(ours_arr, ref_arr, rtol=0, atol=atol, err_msg=what + detail)


def assert_parity(ours: EvalResult, ref: COCOeval, label: str) -> None:
    """Stats, precision and recall arrays and per-class AP/AP50 equal pycocotools' to 1e-12."""
    assert ours.stats is not None, f"{label}: the coco protocol returned no stats"
    assert ours.stat_names == STAT_NAMES, f"{label}: stat names {ours.stat_names}"
    assert_close(f"{label}: 12 stats {STAT_NAMES}", ours.stats, ref.stats)
    assert_close(f"{label}: precision (T,R,K,A,M)", ours.arrays["precision"], ref.eval["precision"])
    assert_close(f"{label}: recall (T,K,A,M)", ours.arrays["recall"], ref.eval["recall"])
    assert list(ours.arrays["category_ids"]) == list(ref.params.catIds), label
    expected = pycocotools_per_class(ref)
    got = {
        c.category_id: (
            -1.0 if c.ap_coco is None else c.ap_coco,
            -1.0 if c.ap is None else c.ap,
        )
        for c in ours.per_class
    }
    assert sorted(got) == sorted(expected), f"{label}: category ids differ"
    ids = sorted(expected)
    assert_close(
        f"{label}: per-class AP, ids {ids}", [got[i][0] for i in ids], [expected[i][0] for i in ids]
    )
    assert_close(
        f"{label}: per-class AP50, ids {ids}",
        [got[i][1] for i in ids],
        [expected[i][1] for i in ids],
    )
    # The headline of an iou=0.5 run is AP50 (stats[1]).
    assert_close(f"{label}: headline AP50", ours.ap, ref.stats[1])


# --- 1. golden: the published 100-image subset ---------------------------------------


def published_bbox_stats(path: Path) -> list[str]:
    """The 12 numbers of the ``type=bbox`` block of val2014_fake_eval_res.txt, as printed."""
    block = path.read_text().split("type=bbox", 1)[1].split("type=", 1)[0]
    values = re.findall(r"\]\s*=\s*(-?\d+\.\d+)", block)
    assert len(values) == 12, f"expected 12 bbox stats in {path}, found {values}"
    return values


def test_golden_coco_val2014_100(shared_dir: Path) -> None:
    """The 100-image val2014 subset: parity with pycocotools and with the published figures."""
    folder = shared_dir / GOLDEN
    gt_path = folder / "instances_val2014_100.json"
    res_path = folder / "instances_val2014_fakebbox100_results.json"
    gt = load_coco_ground_truth(gt_path)
    ours = evaluate(gt, load_coco_results(res_path, gt), protocol="coco")

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_dt = coco_gt.loadRes(str(res_path))
    ref = _run_cocoeval(coco_gt, coco_dt)
    assert_parity(ours, ref, "val2014_100")

    # pycocotools prints the stats with '%0.3f'; the published file is that print.
    published = published_bbox_stats(folder / "val2014_fake_eval_res.txt")
    assert ours.stats is not None
    assert [f"{s:0.3f}" for s in ours.stats] == published
    assert [f"{s:0.3f}" for s in ref.stats] == published


# --- 2. randomized parity -------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_random_workload_parity(seed: int) -> None:
    """Seeded workloads full of COCOeval's corner cases (see tests/coco_random.py)."""
    gt, results = make_workload(seed)
    assert_parity(run_evalkit(gt, results), run_pycocotools(gt, results), f"seed {seed}")


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_threads_do_not_change_a_bit(threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled core splits groups and categories among threads (large inputs only, by
    default): forced onto small seeded workloads, with more threads than categories, it still
    gives pycocotools' exact arrays."""
    monkeypatch.setattr(coco_protocol, "_threads", lambda num_detections: threads)
    for seed in range(0, 60, 3):
        gt, results = make_workload(seed)
        label = f"seed {seed}, {threads} threads"
        assert_parity(run_evalkit(gt, results), run_pycocotools(gt, results), label)


def test_random_workloads_cover_the_corner_cases() -> None:
    """The seeds above really contain each corner case, so parity on them means something."""
    seen: set[str] = set()
    for seed in SEEDS:
        seen |= workload_features(*make_workload(seed))
    wanted = {
        "crowd",
        "crowd over regular",
        "image without gt",
        "category without gt, with dets",
        "tie within image",
        "tie across images",
        "over 100 dets in a group",
        "degenerate gt",
        "degenerate det",
        "area field != w*h",
        "small",
        "medium",
        "large",
        "area on a range edge",
        "iou exactly 0.5",
        "iou exactly 0.75",
        "duplicate det",
        "annotation id 0",
        "unsorted image ids",
        "unsorted category ids",
        "image id 0",
    }
    assert wanted <= seen, f"missing: {sorted(wanted - seen)}"


def _iou(a: list[float], b: list[float]) -> float:
    """Plain IoU without +1 (for the coverage check only)."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def workload_features(gt: Record, results: list[Record]) -> set[str]:
    """Names of the corner cases one workload contains, computed from its records."""
    feats: set[str] = set()
    anns = gt["annotations"]
    image_ids = [im["id"] for im in gt["images"]]
    cat_ids = [c["id"] for c in gt["categories"]]
    feats |= {"unsorted image ids"} if image_ids != sorted(image_ids) else set()
    feats |= {"unsorted category ids"} if cat_ids != sorted(cat_ids) else set()
    feats |= {"image id 0"} if 0 in image_ids else set()
    feats |= {"annotation id 0"} if any(a["id"] == 0 for a in anns) else set()
    if {im for im in image_ids} - {a["image_id"] for a in anns}:
        feats.add("image without gt")
    gt_cats = {a["category_id"] for a in anns}
    if any(r["category_id"] not in gt_cats for r in results):
        feats.add("category without gt, with dets")
    crowds = [a for a in anns if a["iscrowd"]]
    feats |= {"crowd"} if crowds else set()
    for c in crowds:
        for a in anns:
            same = (a["image_id"], a["category_id"]) == (c["image_id"], c["category_id"])
            if same and not a["iscrowd"] and _iou(a["bbox"], c["bbox"]) > 0:
                feats.add("crowd over regular")
    for a in anns:
        w, h = a["bbox"][2:]
        feats |= {"degenerate gt"} if w * h == 0 else set()
        feats |= {"area field != w*h"} if a["area"] != w * h else set()
        feats |= {"area on a range edge"} if a["area"] in (32.0**2, 96.0**2) else set()
        area = a["area"]
        feats.add("small" if area < 32**2 else "medium" if area < 96**2 else "large")
    by_group: dict[tuple[int, int], list[Record]] = {}
    for r in results:
        by_group.setdefault((r["image_id"], r["category_id"]), []).append(r)
        feats |= {"degenerate det"} if r["bbox"][2] * r["bbox"][3] == 0 else set()
    images_by_score: dict[tuple[int, float], set[int]] = {}
    for (image_id, cat_id), dets in by_group.items():
        scores = [d["score"] for d in dets]
        feats |= {"tie within image"} if len(set(scores)) < len(scores) else set()
        feats |= {"over 100 dets in a group"} if len(dets) > 100 else set()
        keys = [(tuple(d["bbox"]), d["score"]) for d in dets]
        feats |= {"duplicate det"} if len(set(keys)) < len(keys) else set()
        for s in scores:
            images_by_score.setdefault((cat_id, s), set()).add(image_id)
        for a in anns:
            if (a["image_id"], a["category_id"]) == (image_id, cat_id) and not a["iscrowd"]:
                ious = {_iou(d["bbox"], a["bbox"]) for d in dets}
                feats |= {"iou exactly 0.5"} if 0.5 in ious else set()
                feats |= {"iou exactly 0.75"} if 0.75 in ious else set()
    if any(len(imgs) > 1 for imgs in images_by_score.values()):
        feats.add("tie across images")
    return feats


def _one_image(annotations: list[Record]) -> Record:
    """A one-image, one-category ground truth holding ``annotations``."""
    return {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 200, "height": 200}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"image_id": 1, "category_id": 1, "iscrowd": 0, **a} for a in annotations],
    }


def _dets(*rows: tuple[list[float], float]) -> list[Record]:
    """Results on image 1, category 1, from (bbox, score) rows."""
    return [{"image_id": 1, "category_id": 1, "bbox": b, "score": s} for b, s in rows]


def test_equal_iou_later_ground_truth_wins() -> None:
    """Ground truths a=[0,0,10,10], b=[2,0,10,10] (file order a, b); det1=[1,0,10,10] (0.9)
    has IoU 90/110 with both, det2=[3,0,10,10] (0.8) has 90/110 with b and 70/130 with a.

    pycocotools gives det1 the later one, b, at every threshold up to 0.8 (7 of them). So
    det2 gets a only at 0.5 (70/130 >= 0.5): AP 1 there; at 0.55..0.8 det2 is a false
    positive after a true positive, recall 1/2, sampled precision 1 at the 51 recall points
    0.00..0.50, AP 51/101; at 0.85..0.95 nothing matches, AP 0.
    AR: maxDets 1 keeps det1 (recall 1/2 at 7 thresholds), 100 adds det2 at 0.5 only.
    """
    gt = _one_image([{"id": 1, "bbox": [0, 0, 10, 10], "area": 100}])
    gt["annotations"].append({**gt["annotations"][0], "id": 2, "bbox": [2, 0, 10, 10]})
    results = _dets(([1, 0, 10, 10], 0.9), ([3, 0, 10, 10], 0.8))
    ours = run_evalkit(gt, results)
    assert_parity(ours, run_pycocotools(gt, results), "equal IoU")
    ap = (1 + 6 * 51 / 101) / 10
    ar100 = (1 + 6 * 0.5) / 10
    expected = [ap, 1.0, 51 / 101, ap, -1, -1, 0.35, ar100, ar100, ar100, -1, -1]
    assert_close("equal IoU: stats derived by hand", ours.stats, expected, HAND_ATOL)


def test_annotation_id_zero_never_counts_as_a_match() -> None:
    """pycocotools stores a match as the ground truth's id and tests it for truth, so a
    detection matched to id 0 is a false positive, and for area ranges an *unmatched* one.

    Ground truths: id 0 = [0,0,10,10] with area field 2000 (medium), id 1 = [50,50,40,40]
    (area 1600, medium). Detections, both exact: on id 0 (score 0.9, w*h = 100: small), on
    id 1 (0.8). Range all: FP then TP, precision 1/2 up to recall 1/2, AP 25.5/101 at every
    threshold. Range medium: the id-0 detection counts as unmatched and lies outside the
    range, so it is ignored: TP alone, AP 51/101. Small and large hold no ground truth: -1.
    AR1 keeps only the id-0 detection: 0.
    """
    gt = _one_image(
        [
            {"id": 0, "bbox": [0, 0, 10, 10], "area": 2000},
            {"id": 1, "bbox": [50, 50, 40, 40], "area": 1600},
        ]
    )
    results = _dets(([0, 0, 10, 10], 0.9), ([50, 50, 40, 40], 0.8))
    ours = run_evalkit(gt, results)
    assert_parity(ours, run_pycocotools(gt, results), "id 0")
    ap = 25.5 / 101
    expected = [ap, ap, ap, -1, 51 / 101, -1, 0.0, 0.5, 0.5, -1, 0.5, -1]
    assert_close("id 0: stats derived by hand", ours.stats, expected, HAND_ATOL)


def test_all_pairs_below_the_lowest_threshold() -> None:
    """One ground truth [0,0,20,20], one detection [0,0,10,10]: IoU 1/4 < 0.5 everywhere.

    Every threshold sees one false positive: AP 0 and AR 0 in ranges all and small (the
    ground truth's area 400 is small), -1 in medium and large.
    """
    gt = _one_image([{"id": 1, "bbox": [0, 0, 20, 20], "area": 400}])
    results = _dets(([0, 0, 10, 10], 0.9))
    ours = run_evalkit(gt, results)
    assert_parity(ours, run_pycocotools(gt, results), "below threshold")
    expected = [0.0, 0.0, 0.0, 0.0, -1, -1, 0.0, 0.0, 0.0, 0.0, -1, -1]
    assert_close("below threshold: stats derived by hand", ours.stats, expected, HAND_ATOL)


def test_ground_truth_without_annotations() -> None:
    """Detections but not one annotation: pycocotools leaves every entry at -1."""
    gt = _one_image([])
    results = _dets(([0, 0, 10, 10], 0.9))
    ours = run_evalkit(gt, results)
    assert_parity(ours, run_pycocotools(gt, results), "no annotations")
    assert list(ours.stats or ()) == [-1.0] * 12


def test_no_detections() -> None:
    """An empty results list: AP and AR are 0 wherever ground truth exists, -1 elsewhere.

    ``loadRes`` cannot take an empty list (it reads ``anns[0]``), so pycocotools' side is a
    results COCO object built directly with no annotations: COCOeval then sees ground truth
    and no detections, which is the case to compare.
    """
    gt, _ = make_workload(3)
    ours = run_evalkit(gt, [])
    coco_gt = _coco_in_memory(gt)
    coco_dt = _coco_in_memory({**gt, "annotations": []})
    assert_parity(ours, _run_cocoeval(coco_gt, coco_dt), "no detections")

    # Derived by hand: with no detections every curve is empty, so recall is 0 and every
    # sampled precision is 0 for each category with non-ignored ground truth in the range;
    # a stat is -1 only when no category has such ground truth in its area range.
    regular_areas = [a["area"] for a in gt["annotations"] if not a["iscrowd"]]
    in_range = {
        "all": bool(regular_areas),
        "small": any(a <= 32**2 for a in regular_areas),
        "medium": any(32**2 <= a <= 96**2 for a in regular_areas),
        "large": any(a >= 96**2 for a in regular_areas),
    }
    areas = ("all",) * 3 + ("small", "medium", "large") + ("all",) * 3
    areas += ("small", "medium", "large")
    expected = [0.0 if in_range[a] else -1.0 for a in areas]
    assert in_range["all"]
    assert list(ours.stats or ()) == expected
    assert ours.ap == 0.0


# --- hypothesis: tiny integer grids, where exact IoU ties and threshold hits abound ---------


@st.composite
def tiny_workloads(draw: st.DrawFn) -> tuple[Record, list[Record]]:
    """A few integer boxes on a 7x7 grid (scaled so all area ranges occur), ids unsorted."""
    scale = draw(st.sampled_from([1, 6, 17]))
    image_ids = draw(st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True))
    cat_ids = draw(st.lists(st.integers(0, 9), min_size=1, max_size=2, unique=True))
    coord, side = st.integers(0, 6), st.integers(0, 6)
    box = st.tuples(coord, coord, side, side)
    gt_rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(image_ids),
                st.sampled_from(cat_ids),
                box,
                st.sampled_from([0, 0, 0, 1]),  # iscrowd
                st.sampled_from([None, None, 0.0, 1024.0, 9216.0, 5000.0]),  # area override
            ),
            max_size=7,
        )
    )
    ann_ids = draw(
        st.lists(st.integers(0, 30), min_size=len(gt_rows), max_size=len(gt_rows), unique=True)
    )
    det_rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(image_ids),
                st.sampled_from(cat_ids),
                box,
                st.sampled_from([0.25, 0.5, 0.75, 1.0]),
            ),
            min_size=1,
            max_size=10,
        )
    )
    annotations = []
    for (image_id, cat_id, b, crowd, area), ann_id in zip(gt_rows, ann_ids, strict=True):
        bbox = [float(v * scale) for v in b]
        annotations.append(
            {
                "id": ann_id,
                "image_id": image_id,
                "category_id": cat_id,
                "bbox": bbox,
                "area": bbox[2] * bbox[3] if area is None else area,
                "iscrowd": crowd,
            }
        )
    gt = {
        "images": [
            {"id": i, "file_name": f"{i}.jpg", "width": 120, "height": 120} for i in image_ids
        ],
        "categories": [{"id": c, "name": f"c{c}"} for c in cat_ids],
        "annotations": annotations,
    }
    results = [
        {"image_id": i, "category_id": c, "bbox": [float(v * scale) for v in b], "score": s}
        for i, c, b, s in det_rows
    ]
    return gt, results


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(tiny_workloads())
def test_tiny_grid_parity(workload: tuple[Record, list[Record]]) -> None:
    """Hypothesis-drawn tiny workloads: parity with pycocotools, shrunk to a minimal case."""
    gt, results = workload
    assert_parity(run_evalkit(gt, results), run_pycocotools(gt, results), "tiny grid")


# --- 3. results files on disk ----------------------------------------------------------


def test_results_file_on_disk(tmp_path: Path) -> None:
    """json.dump of full-precision float64 boxes reads identically in evalkit and pycocotools."""
    gt_dict, results = make_workload(7)
    rng = np.random.default_rng(7)
    for r in results:  # every coordinate and score gets all 17 significant digits
        x, y, w, h = r["bbox"]
        dx, dy, sw, sh = rng.uniform(-1e-3, 1e-3, 2).tolist() + rng.uniform(1, 1.001, 2).tolist()
        r["bbox"] = [x + dx, y + dy, w * sw, h * sh]  # scaled, so zero sizes stay zero
        r["score"] = float(rng.uniform(0.0, 1.0))
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt_dict))
    res_path.write_text(json.dumps(results))

    gt = load_coco_ground_truth(gt_path)
    dets = load_coco_results(res_path, gt)
    # Bit-exact read: the floats evalkit holds are the ones that were written.
    assert dets.boxes_xywh_px.tolist() == [r["bbox"] for r in results]
    assert dets.scores.tolist() == [r["score"] for r in results]

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_dt = coco_gt.loadRes(str(res_path))  # loadRes only opens a path given as str
    assert_parity(evaluate(gt, dets, protocol="coco"), _run_cocoeval(coco_gt, coco_dt), "file")


def test_written_results_file_reads_back_in_pycocotools(tmp_path: Path) -> None:
    """A file from ``write_coco_results`` evaluates in pycocotools exactly as in evalkit."""
    gt_dict, results = make_workload(8)
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "written.json"
    gt_path.write_text(json.dumps(gt_dict))
    gt = load_coco_ground_truth(gt_path)
    dets = parse_coco_results(results, gt)
    write_coco_results(res_path, gt, dets)

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_dt = coco_gt.loadRes(str(res_path))
    assert_parity(evaluate(gt, dets, protocol="coco"), _run_cocoeval(coco_gt, coco_dt), "written")
