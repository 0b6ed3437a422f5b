"""The TIDE error breakdown (Bolya et al., "TIDE: A General Toolbox for Identifying Object
Detection Errors", ECCV 2020): how much AP each kind of error costs, as the AP gained by
fixing only that kind. The rules below are the paper's, made concrete the way the authors'
package ``tidecv`` 1.0.1 makes them, so that evalkit's numbers equal its numbers
(``tests/test_tide.py`` compares them on randomized inputs, ties included).

Matching, per image (images in the ground truth's order):

* the image's detections are taken by descending score (equal scores keep their row order)
  and cut at ``max_dets`` (over all classes, not per class);
* each detection in turn takes, among the image's ground truths of its class that are still
  free, the one of highest IoU (pycocotools' box IoU; the first on a tie); it is a true
  positive when that IoU is ``>= pos_threshold`` (the foreground threshold t_f);
* a detection left unmatched that overlaps an ignored region of its class (a crowd, IoU over
  the detection's own area; a VOC "difficult" object, plain IoU) by more than t_f is ignored:
  it is in no AP, but it still gets an error below, as in tidecv.

Every unmatched detection gets the first error whose test passes, in this order (t_b is the
background threshold): no ground truth in the image: background; max IoU with a ground truth
of its class (free or not) in ``[t_b, t_f]``: localisation; max IoU with a ground truth of
another class ``>= t_f``: classification; max IoU with a matched ground truth of its class
``>= t_f``: duplicate; max IoU with any ground truth ``<= t_b``: background; otherwise both
(wrong class and poorly localised). A ground truth left unmatched is missed unless some
classification or localisation error points at it.

Fixing a kind: a classification error becomes a true positive of the ground truth's class,
a localisation error a true positive of its own class, but only the highest-scoring such
error per ground truth (the others, and those pointing at an already matched ground truth,
are removed); duplicate, background and both errors are removed; a missed ground truth no
longer counts. The special errors: false positive (every error scored below every true
positive) and false negative (every unmatched ground truth uncounted).

AP is TIDE's own: per class, precision made non-increasing, read at the 101 recalls
0, 0.01, ..., 1 at the first point reaching each (0 beyond the last), averaged, times 100;
mAP is the mean over the classes with a ground truth or a detection. It is not pycocotools'
AP50 (different matching ties, no per-class maxDets, classes with detections but no ground
truth count as 0), so both are shown. The breakdown's AP, like tidecv's, rebuilds each class
list with the errors first, which can move a tie: an error's delta is ``max(fixed - base, 0)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalkit.errors import InputError
from evalkit.metrics.iou import iou_coco_xywh
from evalkit.types import BoolArray, Detections, FloatArray, GroundTruth, IntArray

# tidecv's order and short names.
MAIN_ERRORS: tuple[str, ...] = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
SPECIAL_ERRORS: tuple[str, ...] = ("FalsePos", "FalseNeg")
_CLS, _LOC, _BOTH, _DUPE, _BKG, _MISS = range(6)
_RECALLS = np.array([i / 100 for i in range(101)])


@dataclass(frozen=True)
class TideParams:
    pos_threshold: float = 0.5
    background_threshold: float = 0.1
    max_dets: int = 100

    def __post_init__(self) -> None:
        if not 0.0 < self.pos_threshold <= 1.0:
            raise InputError(
                f"TIDE: the foreground IoU must be in (0, 1], got {self.pos_threshold}"
            )
        if not 0.0 <= self.background_threshold <= self.pos_threshold:
            raise InputError(
                "TIDE: the background IoU must be in [0, foreground IoU], "
                f"got {self.background_threshold}"
            )
        if self.max_dets < 1:
            raise InputError(f"TIDE: max_dets must be >= 1, got {self.max_dets}")


@dataclass(frozen=True)
class TideBreakdown:
    """TIDE's AP and, per error kind, the AP gained by fixing it (points, 0-100) and how many
    errors of that kind there were."""

    params: TideParams
    ap: float
    delta_ap: dict[str, float]
    special: dict[str, float]
    counts: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return {
            "pos_threshold": self.params.pos_threshold,
            "background_threshold": self.params.background_threshold,
            "max_dets": self.params.max_dets,
            "ap": self.ap,
            "delta_ap": dict(self.delta_ap),
            "special_delta_ap": dict(self.special),
            "counts": dict(self.counts),
        }


@dataclass
class _Tally:
    """What matching decided, in tidecv's insertion orders, as per-image array parts."""

    # Points of the base AP, in push order: class, score, true positive.
    point_class: list[IntArray] = field(default_factory=list)
    point_score: list[FloatArray] = field(default_factory=list)
    point_tp: list[BoolArray] = field(default_factory=list)
    # Class first-touch order of the base AP (ground truths, then detections, per image).
    touch: list[IntArray] = field(default_factory=list)
    # Errors in order: kind, class of the original point (-1: none, an ignored detection or a
    # missed ground truth), score, class of the fixed point (-1: removed when fixed).
    err_kind: list[IntArray] = field(default_factory=list)
    err_class: list[IntArray] = field(default_factory=list)
    err_score: list[FloatArray] = field(default_factory=list)
    err_fix: list[IntArray] = field(default_factory=list)
    # Ground truths that count and those left unmatched, by class (bincounts, summed).
    num_gt: list[IntArray] = field(default_factory=list)
    false_negatives: list[IntArray] = field(default_factory=list)


def _pair_iou(det: FloatArray, gt: FloatArray, crowd: bool) -> FloatArray:
    p, g = det.shape[0], gt.shape[0]
    flags = np.full(p * g, crowd)
    return iou_coco_xywh(np.repeat(det, g, axis=0), np.tile(gt, (p, 1)), flags).reshape(p, g)


def _greedy(cls_iou: FloatArray, pos: float) -> tuple[BoolArray, BoolArray]:
    """Each detection in turn takes its best free ground truth of its class (first on a
    tie) when that IoU reaches ``pos``. Detections with no such IoU at all never match and
    take nothing, so only the others are walked."""
    p, g = cls_iou.shape
    used, gt_used = np.zeros(p, bool), np.zeros(g, bool)
    if g == 0:
        return used, gt_used
    buffer = cls_iou.copy()
    for i in np.flatnonzero(cls_iou.max(axis=1) >= pos).tolist():
        row = buffer[i]
        j = int(row.argmax())
        if row[j] >= pos:
            used[i] = gt_used[j] = True
            buffer[:, j] = 0.0
    return used, gt_used


def _image(
    tally: _Tally,
    gt: GroundTruth,
    g_rows: IntArray,
    ign_rows: IntArray,
    dets: Detections,
    d_rows: IntArray,
    params: TideParams,
) -> None:
    pos, bkg = params.pos_threshold, params.background_threshold
    k = len(gt.categories)
    g_cls = gt.category_index[g_rows]
    tally.num_gt.append(np.bincount(g_cls, minlength=k))
    d_rows = d_rows[np.argsort(-dets.scores[d_rows], kind="stable")][: params.max_dets]
    p, g = d_rows.shape[0], g_rows.shape[0]
    d_cls = dets.category_index[d_rows]
    d_score = dets.scores[d_rows]
    d_box = dets.boxes_xywh_px[d_rows]
    iou = _pair_iou(d_box, gt.boxes_xywh_px[g_rows], False)
    same = d_cls[:, None] == g_cls[None, :]
    cls_iou = iou * same
    used, gt_used = _greedy(cls_iou, pos)
    ignored = np.zeros(p, bool)
    for r in ign_rows.tolist():
        crowd = bool(gt.iscrowd[r])
        over = _pair_iou(d_box, gt.boxes_xywh_px[r : r + 1], crowd)[:, 0] > pos
        ignored |= ~used & over & (d_cls == gt.category_index[r])
    counted = ~ignored
    tally.touch += [g_cls, d_cls[counted]]
    tally.point_class.append(d_cls[counted])
    tally.point_score.append(d_score[counted])
    tally.point_tp.append(used[counted])
    # The error of every unmatched detection: the first test that passes, in tidecv's order.
    wrong = np.flatnonzero(~used)
    kind = np.full(wrong.shape[0], _BKG, np.int64)
    target = np.full(wrong.shape[0], -1, np.int64)
    if g:
        a = cls_iou[wrong]
        b = (iou * ~same)[wrong]
        c = (cls_iou * gt_used[None, :])[wrong]
        a_arg, b_arg = a.argmax(axis=1), b.argmax(axis=1)
        rows = np.arange(wrong.shape[0])
        a_max, b_max = a[rows, a_arg], b[rows, b_arg]
        loc = (bkg <= a_max) & (a_max <= pos)
        cls = ~loc & (b_max >= pos)
        dupe = ~loc & ~cls & (c.max(axis=1) >= pos)
        background = ~loc & ~cls & ~dupe & (iou[wrong].max(axis=1) <= bkg)
        kind = np.select([loc, cls, dupe, background], [_LOC, _CLS, _DUPE, _BKG], _BOTH)
        target = np.where(loc, a_arg, np.where(cls, b_arg, -1))
    # A classification or localisation error pointing at a free ground truth makes it
    # usable (not missed); the first of the highest-scoring such errors is fixed.
    fix = np.full(wrong.shape[0], -1, np.int64)
    usable = np.zeros(g, bool)
    points = np.flatnonzero(target >= 0)
    points = points[~gt_used[target[points]]]
    best: dict[int, tuple[float, int]] = {}
    scores = d_score[wrong]
    for e in points.tolist():
        j = int(target[e])
        usable[j] = True
        if best.get(j, (-1.0, -1))[0] < scores[e]:
            best[j] = (float(scores[e]), e)
    for j, (_, e) in best.items():
        fix[e] = g_cls[j] if kind[e] == _CLS else d_cls[wrong[e]]
    missed = ~gt_used & ~usable
    tally.err_kind += [kind, np.full(int(missed.sum()), _MISS, np.int64)]
    tally.err_class += [np.where(ignored[wrong], -1, d_cls[wrong]), g_cls[missed]]
    tally.err_score += [scores, np.zeros(int(missed.sum()))]
    tally.err_fix += [fix, np.full(int(missed.sum()), -1, np.int64)]
    tally.false_negatives.append(np.bincount(g_cls[~gt_used], minlength=k))


def _first_seen(*sequences: IntArray) -> list[int]:
    """The distinct values in order of first appearance across the sequences in turn."""
    values = np.concatenate([np.asarray(s, np.int64) for s in sequences])
    distinct, first = np.unique(values, return_index=True)
    return distinct[np.argsort(first)].tolist()


def _class_ap(scores: FloatArray, tp: BoolArray, num_gt: int) -> float:
    if num_gt == 0:
        return 0
    order = np.argsort(-scores, kind="stable")
    hits = tp[order]
    n_true = np.cumsum(hits)
    n_all = np.arange(1, hits.shape[0] + 1)
    precision = n_true / n_all
    recall = n_true / num_gt
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.searchsorted(recall, _RECALLS, side="left")
    n = hits.shape[0]
    # Unreached recalls are the integer 0, reached ones floats, as in tidecv's list, so that
    # Python's sum adds exactly the same values in the same order.
    values = precision.tolist()
    y: list[float] = [values[k] if k < n else 0 for k in index.tolist()]
    return sum(y) / len(y) * 100


def _map(
    cls: IntArray, score: FloatArray, tp: BoolArray, num_gt: dict[int, int], order: list[int]
) -> float:
    by_class = np.argsort(cls, kind="stable")
    sorted_cls = cls[by_class]
    aps = []
    for c in order:
        lo, hi = np.searchsorted(sorted_cls, [c, c + 1])
        rows = by_class[lo:hi]
        count = num_gt.get(c, 0)
        if rows.shape[0] == 0 and count == 0:
            continue
        aps.append(_class_ap(score[rows], tp[rows], count))
    return sum(aps) / len(aps) if aps else 0.0


class _Fixer:
    """The AP with chosen error kinds fixed (tidecv's ``fix_errors``)."""

    def __init__(self, tally: _Tally) -> None:
        def cat(parts: list[Any], dtype: Any) -> Any:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        self.kind = cat(tally.err_kind, np.int64)
        self.orig = cat(tally.err_class, np.int64)
        self.fix = cat(tally.err_fix, np.int64)
        self.score = cat(tally.err_score, np.float64)
        pc = cat(tally.point_class, np.int64)
        ps = cat(tally.point_score, np.float64)
        ptp = cat(tally.point_tp, bool)
        self.base_order = _first_seen(*tally.touch)
        counts = np.sum(tally.num_gt, axis=0)
        self.num_gt = {c: int(counts[c]) for c in self.base_order}
        fn = np.sum(tally.false_negatives, axis=0)
        self.false_negatives = {c: int(fn[c]) for c in range(fn.shape[0]) if fn[c]}
        self.ap = _map(pc, ps, ptp, self.num_gt, self.base_order)
        # True positives, grouped by class in the base class order, each in push order.
        tp_rows = np.flatnonzero(ptp)
        rank = np.zeros(max(self.base_order, default=0) + 1, np.int64)
        rank[self.base_order] = np.arange(len(self.base_order))
        self.tp_rows = tp_rows[np.argsort(rank[pc[tp_rows]], kind="stable")]
        self.tp_class, self.tp_score = pc[self.tp_rows], ps[self.tp_rows]

    def fixed(
        self, kinds: frozenset[int] = frozenset(), *, rescore: bool = False, no_fn: bool = False
    ) -> float:
        chosen = np.isin(self.kind, list(kinds))
        num_gt = dict(self.num_gt)
        for c in self.orig[chosen & (self.kind == _MISS)].tolist():
            num_gt[c] -= 1
        if no_fn:
            for c in num_gt:
                num_gt[c] -= self.false_negatives.get(c, 0)
        pushed_class = np.where(chosen, self.fix, np.where(self.kind == _MISS, -1, self.orig))
        keep = pushed_class >= 0
        e_cls, e_score = pushed_class[keep], self.score[keep]
        e_tp = (chosen & (self.fix >= 0))[keep]
        t_score = self.tp_score
        if rescore:  # tidecv's FalsePositiveError: true positives 1, everything else 0
            e_score = np.zeros_like(e_score)
            t_score = np.ones_like(t_score)
        order = _first_seen(e_cls, self.tp_class, np.array(self.base_order, np.int64))
        cls = np.concatenate([e_cls, self.tp_class])
        score = np.concatenate([e_score, t_score])
        tp = np.concatenate([e_tp, np.ones(self.tp_class.shape[0], bool)])
        return _map(cls, score, tp, num_gt, order)


def tide_breakdown(
    gt: GroundTruth, dets: Detections, params: TideParams | None = None
) -> TideBreakdown:
    """The TIDE breakdown of ``dets`` against ``gt`` under the rules of this module."""
    params = params or TideParams()
    tally = _Tally()
    ignored = gt.iscrowd | gt.difficult
    gt_by_image = np.argsort(gt.image_index, kind="stable")
    det_by_image = np.argsort(dets.image_index, kind="stable")
    n = len(gt.images)
    g_bounds = np.searchsorted(gt.image_index[gt_by_image], np.arange(n + 1))
    d_bounds = np.searchsorted(dets.image_index[det_by_image], np.arange(n + 1))
    for i in range(n):
        rows = gt_by_image[g_bounds[i] : g_bounds[i + 1]]
        d_rows = det_by_image[d_bounds[i] : d_bounds[i + 1]]
        if rows.size == 0 and d_rows.size == 0:
            continue
        _image(tally, gt, rows[~ignored[rows]], rows[ignored[rows]], dets, d_rows, params)
    if not any(part.size for part in tally.touch):
        raise InputError("TIDE: nothing to break down (no ground truth and no detection)")
    fixer = _Fixer(tally)
    delta = {
        name: max(fixer.fixed(frozenset({kind})) - fixer.ap, 0)
        for kind, name in enumerate(MAIN_ERRORS)
    }
    special = {
        "FalsePos": fixer.fixed(rescore=True) - fixer.ap,
        "FalseNeg": fixer.fixed(no_fn=True) - fixer.ap,
    }
    counts = {name: int(np.count_nonzero(fixer.kind == k)) for k, name in enumerate(MAIN_ERRORS)}
    return TideBreakdown(params=params, ap=fixer.ap, delta_ap=delta, special=special, counts=counts)
