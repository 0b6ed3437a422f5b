"""``voc07`` and ``voc12``: the Pascal VOC devkit rules, differing only in interpolation.

Per class over the whole set, detections by descending confidence (stable: ties keep input
order, as the MATLAB devkit's sort does), IoU with the +1 convention in original pixels,
each detection judged against its single best ground truth: a difficult one makes it
ignored, a free one a TP, a taken one (or IoU below threshold) an FP.

``voc07-pyfrcnn`` and ``voc12-pyfrcnn`` are py-faster-rcnn's ``voc_eval.py`` instead, which
many Python code bases copied: ties in confidence in ``np.argsort(-confidence)``'s order (not
stable), and a match needs the IoU to exceed the threshold (the devkit: to reach it). They
differ from the devkit only on equal scores and on IoUs exactly at the threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evalkit.metrics.curves import claim_curves, class_results, mean_ap
from evalkit.metrics.interpolation import ap_voc07, ap_voc12
from evalkit.metrics.iou import iou_voc_xyxy, xywh_to_xyxy
from evalkit.metrics.protocol import EvalOptions, Protocol, register
from evalkit.types import Detections, EvalResult, FloatArray, GroundTruth, IntArray


@dataclass(frozen=True)
class VocRules:
    """What distinguishes one VOC protocol from another: its name and interpolation."""

    name: str
    year: str
    interpolate: Callable[[FloatArray, FloatArray], float]
    # py-faster-rcnn's voc_eval.py: np.argsort(-confidence) per class and ovmax > threshold.
    pyfrcnn: bool = False


def _pyfrcnn_order(dets: Detections, num_classes: int) -> IntArray:
    """Per class (ascending), its detections in input order sorted by ``np.argsort`` of the
    negated confidences with numpy's default kind, as voc_eval.py sorts each class file."""
    parts = []
    for k in range(num_classes):
        rows = np.flatnonzero(dets.category_index == k)
        parts.append(rows[np.argsort(-dets.scores[rows])])
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def evaluate_voc(
    rules: VocRules, gt: GroundTruth, dets: Detections, options: EvalOptions
) -> EvalResult:
    num_classes = len(gt.categories)
    if rules.pyfrcnn:
        order = _pyfrcnn_order(dets, num_classes)
    else:  # stable: equal scores keep input order, as the MATLAB devkit's sort does
        order = np.lexsort((-dets.scores, dets.category_index))
    curves = claim_curves(
        det_image=dets.image_index,
        det_class=dets.category_index,
        det_xyxy=xywh_to_xyxy(dets.boxes_xywh_px),
        det_score=dets.scores,
        processing_order=order,
        gt_image=gt.image_index,
        gt_class=gt.category_index,
        gt_xyxy=xywh_to_xyxy(gt.boxes_xywh_px),
        gt_ignored=gt.difficult,
        num_classes=num_classes,
        threshold=options.match_iou,
        pair_iou=iou_voc_xyxy,
        strict=rules.pyfrcnn,
    )
    npos = np.bincount(gt.category_index[~gt.difficult], minlength=num_classes)

    def score(
        tp_cum: IntArray, fp_cum: IntArray, n_pos: int
    ) -> tuple[FloatArray, FloatArray, float]:
        tp = tp_cum.astype(np.float64)
        fp = fp_cum.astype(np.float64)
        rec = tp / float(n_pos)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        return rec, prec, rules.interpolate(rec, prec)

    # A class without non-difficult ground truth would divide by zero in the devkit; it is
    # not averaged.
    per_class = class_results(curves, gt.categories, npos, score)
    return EvalResult(
        protocol=rules.name,
        iou=options.match_iou,
        ap=mean_ap(per_class),
        per_class=per_class,
        num_images=len(gt.images),
        num_gt=int(npos.sum()),
        num_detections=len(dets),
        tp=sum(c.tp for c in per_class),
        fp=sum(c.fp for c in per_class),
        settings={
            "iou": options.match_iou,
            "interpolation": rules.year,
            "rules": "py-faster-rcnn voc_eval.py" if rules.pyfrcnn else "MATLAB devkit",
        },
    )


def _voc_protocol(rules: VocRules, summary: str) -> Protocol:
    def run(gt: GroundTruth, dets: Detections, options: EvalOptions) -> EvalResult:
        return evaluate_voc(rules, gt, dets, options)

    reference = "py-faster-rcnn voc_eval.py" if rules.pyfrcnn else "Pascal VOC devkit"
    return Protocol(name=rules.name, reference=reference, summary=summary, run=run)


register(
    _voc_protocol(
        VocRules("voc07", "11-point", ap_voc07),
        "VOC2007 11-point AP, +1 IoU in original pixels, difficult ignored",
    )
)
register(
    _voc_protocol(
        VocRules("voc12", "all-point", ap_voc12),
        "VOC2010+ all-point AP, +1 IoU in original pixels, difficult ignored",
    )
)
register(
    _voc_protocol(
        VocRules("voc07-pyfrcnn", "11-point", ap_voc07, pyfrcnn=True),
        "voc07 as py-faster-rcnn's voc_eval.py computes it (IoU > threshold, unstable sort)",
    )
)
register(
    _voc_protocol(
        VocRules("voc12-pyfrcnn", "all-point", ap_voc12, pyfrcnn=True),
        "voc12 as py-faster-rcnn's voc_eval.py computes it (IoU > threshold, unstable sort)",
    )
)
