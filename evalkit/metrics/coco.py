"""``coco``: pycocotools' COCOeval for bounding boxes, reproduced to the last bit.

Same parameters by default (10 IoU thresholds, 101 recall points, maxDets 1/10/100, four
area ranges) and any others (:class:`~evalkit.metrics.coco_params.CocoParams`: thresholds,
maxDets, area ranges, class-agnostic, image and category subsets); same tie-breaking
(stable mergesorts); same quirks (a crowd is matched by any number of detections; a match
to a ground truth whose id is 0 counts as no match, because pycocotools stores matches as
ids and tests them for truth).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

import evalkit.metrics._cocoeval as _cocoeval
from evalkit.errors import InputError
from evalkit.metrics.coco_params import CocoParams, summarize
from evalkit.metrics.protocol import EvalOptions, Protocol, register
from evalkit.metrics.results_file import category_lookup, compiled_threads
from evalkit.types import ClassResult, Detections, EvalResult, FloatArray, GroundTruth, IntArray

DEFAULT_PARAMS = CocoParams()
# pycocotools' 12 summary numbers, as its defaults name them.
STAT_NAMES = tuple(stat.name for stat in DEFAULT_PARAMS.stats)


@dataclass(frozen=True)
class CocoArrays:
    """pycocotools' ``eval['precision']`` (T,R,K,A,M) and ``eval['recall']`` (T,K,A,M),
    categories in ascending id order as pycocotools lays them out (K is 1 and the id -1
    when evaluation is class-agnostic)."""

    precision: FloatArray
    recall: FloatArray
    category_ids: IntArray
    tp: IntArray  # (T, K, A, M) true positives at the end of each curve
    fp: IntArray
    num_gt: IntArray  # (K, A) non-ignored ground truths
    num_detections: IntArray  # (K, M) detections entering each curve
    num_images: int  # images evaluated (imgIds)


def _mean_valid(values: FloatArray) -> float:
    """pycocotools' summary: mean of the entries that are not -1, or -1 if there are none."""
    valid = values[values > -1]
    return -1.0 if valid.size == 0 else float(np.mean(valid))


def _sorted_ranks(keys: list[int] | list[str] | list[int | str]) -> IntArray:
    """Rank of each key in ascending order (pycocotools evaluates sorted ids)."""
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    ranks = np.empty(len(keys), np.int64)
    ranks[np.asarray(order, np.int64)] = np.arange(len(keys), dtype=np.int64)
    return ranks


def _threads(num_detections: int) -> int:
    """One thread for small inputs, where starting threads costs more than it saves."""
    return 1 if num_detections < 20_000 else compiled_threads()


def selected_positions(
    wanted: tuple[object, ...] | None, lookup: dict[Any, int], what: str
) -> IntArray:
    """Positions of the wanted ids (all when None); an id the ground truth lacks is an error.
    Ids given as text match integer ids too (as a command line writes them)."""
    if wanted is None:
        return np.arange(len(set(lookup.values())), dtype=np.int64)
    found, unknown = set(), []
    for key in wanted:
        position = lookup.get(key)
        if position is None and isinstance(key, str) and key.lstrip("-").isdigit():
            position = lookup.get(int(key))
        if position is None:
            unknown.append(key)
        else:
            found.add(position)
    if unknown:
        raise InputError(f"{what} not in the ground truth: {', '.join(map(str, unknown))}")
    return np.array(sorted(found), np.int64)


@dataclass(frozen=True)
class Slots:
    """Every evaluated detection in accumulate() order, with what matching decided for it:
    ``det`` indexes the detections, ``flags`` is (slots, A*T) (1 true positive, 2 ignored,
    0 false positive; column ``a * T + t``), ``category_start`` (K+1) each category's range."""

    det: IntArray
    flags: npt.NDArray[np.uint8]
    category_start: IntArray


def coco_arrays(
    gt: GroundTruth, dets: Detections, params: CocoParams = DEFAULT_PARAMS
) -> CocoArrays:
    """Run COCOeval's evaluate() + accumulate() with ``params`` on columnar records (the
    compiled core, :mod:`evalkit.metrics._cocoeval`, says how it stays bit-identical)."""
    return _run(gt, dets, params, want_slots=False)[0]


def _run(
    gt: GroundTruth, dets: Detections, params: CocoParams, want_slots: bool
) -> tuple[CocoArrays, Slots | None]:
    images = selected_positions(params.image_ids, gt.image_lookup, "image ids")
    cats = selected_positions(params.category_ids, category_lookup(gt), "categories")
    # Only the selected images and categories take part (imgIds, catIds): ranks among them
    # in ascending id order, -1 for the rest.
    img_rank = np.full(len(gt.images), -1, np.int64)
    img_rank[images] = _sorted_ranks([gt.images[i].image_id for i in images.tolist()])
    cat_rank = np.full(len(gt.categories), -1, np.int64)
    cat_rank[cats] = _sorted_ranks([gt.categories[i].id for i in cats.tolist()])
    everything = slice(None)  # no subset: no copies of the columns
    subset = params.image_ids is not None or params.category_ids is not None
    g_keep = (
        (img_rank[gt.image_index] >= 0) & (cat_rank[gt.category_index] >= 0)
        if subset
        else everything
    )
    d_keep = (
        (img_rank[dets.image_index] >= 0) & (cat_rank[dets.category_index] >= 0)
        if subset
        else everything
    )
    num_t, num_r = len(params.iou_thresholds), len(params.recall_thresholds)
    num_a, num_m = len(params.area_ranges), len(params.max_dets)
    num_k = len(cats) if params.use_cats else 1
    c = np.ascontiguousarray
    raw = _cocoeval.evaluate(
        c(img_rank[gt.image_index[g_keep]]),
        c(cat_rank[gt.category_index[g_keep]]),
        c(gt.boxes_xywh_px[g_keep]),
        c(gt.area[g_keep]),
        c(gt.iscrowd[g_keep], np.uint8),
        c(gt.annotation_id[g_keep] != 0, np.uint8),
        c(img_rank[dets.image_index[d_keep]]),
        c(cat_rank[dets.category_index[d_keep]]),
        c(dets.boxes_xywh_px[d_keep]),
        c(dets.scores[d_keep]),
        len(images),
        len(cats),
        np.array(params.iou_thresholds, np.float64),
        np.array(params.recall_thresholds, np.float64),
        np.array([(a.low, a.high) for a in params.area_ranges], np.float64),
        np.array(params.max_dets, np.int64),
        params.use_cats,
        _threads(len(dets.scores[d_keep])),
        want_slots,
    )
    precision_b, recall_b, tp_b, fp_b, num_gt_b, num_det_b = raw[:6]
    curve = (num_t, num_k, num_a, num_m)
    precision = np.frombuffer(precision_b, np.float64).reshape(num_t, num_r, num_k, num_a, num_m)
    recall = np.frombuffer(recall_b, np.float64).reshape(curve)
    tp = np.frombuffer(tp_b, np.int64).reshape(curve)
    fp = np.frombuffer(fp_b, np.int64).reshape(curve)
    num_gt = np.frombuffer(num_gt_b, np.int64).reshape(num_k, num_a)
    num_det = np.frombuffer(num_det_b, np.int64).reshape(num_k, num_m)
    if params.use_cats:
        category_ids = np.array(sorted(gt.categories[i].id for i in cats.tolist()), np.int64)
    else:
        category_ids = np.array([-1], np.int64)
    arrays = CocoArrays(precision, recall, category_ids, tp, fp, num_gt, num_det, len(images))
    if not want_slots:
        return arrays, None
    kept = np.arange(len(dets.scores))[d_keep]  # slot_det indexes the detections passed
    slot_det, flags, start = raw[6:]
    slots = Slots(
        det=kept[np.frombuffer(slot_det, np.int64)],
        flags=np.frombuffer(flags, np.uint8).reshape(-1, num_t * num_a),
        category_start=np.frombuffer(start, np.int64),
    )
    return arrays, slots


@dataclass(frozen=True)
class Decisions:
    """What pycocotools' matching decided for each evaluated detection at one IoU threshold,
    area range "all" and the last maxDets: ``flag`` per slot of ``slots`` (1 true positive,
    2 ignored, 0 false positive)."""

    arrays: CocoArrays
    slots: Slots
    flag: npt.NDArray[np.uint8]
    iou: float
    area: int  # the area range used (params.all_area)


def coco_decisions(
    gt: GroundTruth, dets: Detections, match_iou: float, params: CocoParams = DEFAULT_PARAMS
) -> Decisions:
    """Run the core keeping its per-detection decisions, for analyses beyond AP."""
    t = _threshold_index(match_iou, params.iou_thresholds)
    arrays, slots = _run(gt, dets, params, want_slots=True)
    assert slots is not None
    a = params.all_area
    flag = slots.flags[:, a * len(params.iou_thresholds) + t]
    return Decisions(arrays, slots, flag, float(params.iou_thresholds[t]), a)


def _threshold_index(iou: float, thresholds: tuple[float, ...]) -> int:
    hits = np.flatnonzero(np.isclose(thresholds, iou, rtol=0.0, atol=1e-9))
    if hits.size == 0:
        allowed = ", ".join(f"{t:g}" for t in thresholds)
        raise InputError(
            f"the coco protocol reports AP at one of its IoU thresholds ({allowed}); got {iou}"
        )
    return int(hits[0])


def evaluate_coco(gt: GroundTruth, dets: Detections, options: EvalOptions) -> EvalResult:
    params = options.coco or DEFAULT_PARAMS
    t = _threshold_index(options.match_iou, params.iou_thresholds)
    arrays = coco_arrays(gt, dets, params)
    a = params.all_area  # per-class and headline numbers: area "all", the last maxDets
    by_id = {c.id: c for c in gt.categories}
    per_class = []
    for k, cat_id in enumerate(arrays.category_ids.tolist() if params.use_cats else []):
        curve = arrays.precision[t, :, k, a, -1]
        ap = _mean_valid(curve)
        ap_all = _mean_valid(arrays.precision[:, :, k, a, -1])
        per_class.append(
            ClassResult(
                name=by_id[cat_id].name,
                category_id=cat_id,
                ap=None if ap == -1 else ap,
                num_gt=int(arrays.num_gt[k, a]),
                num_detections=int(arrays.num_detections[k, -1]),
                tp=int(arrays.tp[t, k, a, -1]),
                fp=int(arrays.fp[t, k, a, -1]),
                recall=np.array(params.recall_thresholds),
                precision=curve.copy(),
                ap_coco=None if ap_all == -1 else ap_all,
            )
        )
    settings: dict[str, object] = {
        "iou": float(params.iou_thresholds[t]),
        "max_dets": list(params.max_dets),
    }
    if not params.is_default:
        settings["coco_params"] = params.describe()
        # pycocotools' printed line for each stat, for renderers.
        settings["stat_lines"] = [stat.describe(params.iou_thresholds) for stat in params.stats]
    return EvalResult(
        protocol="coco",
        iou=float(params.iou_thresholds[t]),
        ap=_mean_valid(arrays.precision[t, :, :, a, -1]),
        per_class=tuple(per_class),
        num_images=arrays.num_images,
        num_gt=int(arrays.num_gt[:, a].sum()),
        num_detections=int(arrays.num_detections[:, -1].sum()),
        tp=int(arrays.tp[t, :, a, -1].sum()),
        fp=int(arrays.fp[t, :, a, -1].sum()),
        stats=summarize(params, arrays.precision, arrays.recall),
        stat_names=tuple(stat.name for stat in params.stats),
        settings=settings,
        arrays={
            "precision": arrays.precision,
            "recall": arrays.recall,
            "category_ids": arrays.category_ids,
        },
    )


register(
    Protocol(
        name="coco",
        reference="pycocotools COCOeval (iouType='bbox')",
        summary="original pixels, IoU without +1, crowds ignored, 101-point interpolated AP",
        run=evaluate_coco,
    )
)
