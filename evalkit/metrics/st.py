"""``st``: the model zoo's own AP protocol, the one behind the published AP50 figures.

Everything happens in model-input coordinates (``input_size`` square): ground truths are
scaled there and kept as float32, detections are scaled there and rounded half-to-even to
integers. No ignore regions (crowds are ordinary boxes), difficult VOC objects removed,
COCO images without any annotation dropped, best-then-claim matching with the +1 IoU, and
AP as a trapezoid over 101 recall points of the raw curve (no precision envelope), averaged
over the classes that have ground truth. See reference-pipeline.md section 6.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalkit.metrics.curves import claim_curves, class_results, mean_ap
from evalkit.metrics.interpolation import ap_st_trapezoid
from evalkit.metrics.iou import iou_st_xyxy, xywh_to_xyxy
from evalkit.metrics.protocol import EvalOptions, Protocol, register
from evalkit.types import Detections, EvalResult, FloatArray, GroundTruth, IntArray


def _image_sizes(gt: GroundTruth) -> tuple[IntArray, IntArray]:
    widths = np.array([im.width for im in gt.images], np.int64)
    heights = np.array([im.height for im in gt.images], np.int64)
    return widths, heights


def st_ground_truth_xyxy(gt: GroundTruth, input_size: int) -> tuple[IntArray, FloatArray]:
    """Rows of ``gt`` the zoo keeps and their corners in input coordinates (float32 values).

    Zoo arithmetic (reference-pipeline.md 6b.2): corners ``x + w`` in float64, cast to
    float32, then multiplied in float32 by ``S / W`` (a float64 quotient taken to float32).
    ``W``, ``H`` are the images' sizes in ``gt`` - the run passes the sizes as decoded.
    """
    widths, heights = _image_sizes(gt)
    if gt.source == "coco":
        keep = (gt.boxes_xywh_px[:, 2] > 0) & (gt.boxes_xywh_px[:, 3] > 0)
    else:
        keep = ~gt.difficult
    rows = np.flatnonzero(keep)
    corners = xywh_to_xyxy(gt.boxes_xywh_px[rows]).astype(np.float32)
    image = gt.image_index[rows]
    sx = (input_size / widths[image]).astype(np.float32)
    sy = (input_size / heights[image]).astype(np.float32)
    scaled = corners * np.stack([sx, sy, sx, sy], axis=1)
    # The zoo filters its padding rows with a float32 coordinate sum > 0.
    nonzero = scaled.sum(axis=1, dtype=np.float32) > 0
    return rows[nonzero], scaled[nonzero].astype(np.float64)


def st_detections_xyxy(gt: GroundTruth, dets: Detections, input_size: int) -> FloatArray:
    """Detection corners in input coordinates, rounded half-to-even (``tf.round``).

    A model's NMS output is scaled as the zoo scales it: normalised float32 corners times
    ``S`` in float32 (6b.7). Detections read from a results file have only pixels: their
    corners are normalised by the image size, times ``S``, in float64.
    """
    if dets.boxes_xyxy_norm is not None:
        return np.round(dets.boxes_xyxy_norm * np.float32(input_size)).astype(np.float64)
    widths, heights = _image_sizes(gt)
    corners = xywh_to_xyxy(dets.boxes_xywh_px)
    w = widths[dets.image_index].astype(np.float64)
    h = heights[dets.image_index].astype(np.float64)
    scaled = np.stack(
        [
            corners[:, 0] / w * input_size,
            corners[:, 1] / h * input_size,
            corners[:, 2] / w * input_size,
            corners[:, 3] / h * input_size,
        ],
        axis=1,
    )
    return np.round(scaled)


def _float32_curve(tp_cum: IntArray, fp_cum: IntArray, n: int) -> tuple[Any, Any]:
    """The zoo's recall and precision (6b.1): 0/1 flags as float32, float32 cumulative sums
    (which stop counting past 2**24, as the zoo's do), float32 quotients."""
    tp = np.diff(tp_cum, prepend=0).astype(np.float32)
    fp = np.diff(fp_cum, prepend=0).astype(np.float32)
    acc_tp = np.cumsum(tp)
    acc_fp = np.cumsum(fp)
    # ``n`` stays a Python int: numpy takes it as a float32 operand, as in the zoo.
    return acc_tp / n, acc_tp / (acc_fp + acc_tp)  # float32 arrays


def evaluate_st(gt: GroundTruth, dets: Detections, options: EvalOptions) -> EvalResult:
    num_classes = len(gt.categories)
    gt_rows, gt_xyxy = st_ground_truth_xyxy(gt, options.input_size)
    if gt.source == "coco":
        evaluated = np.zeros(len(gt.images), bool)
        evaluated[gt.image_index] = True  # any annotation at all, even one skipped above
    else:
        evaluated = np.ones(len(gt.images), bool)
    n_gt = np.bincount(gt.category_index[gt_rows], minlength=num_classes)

    det_xyxy = st_detections_xyxy(gt, dets, options.input_size)
    # Padding filter of the zoo: float32 coordinate sum > 0 (rounded corners are integers).
    keep = (
        evaluated[dets.image_index]
        & (n_gt[dets.category_index] > 0)
        & (det_xyxy.astype(np.float32).sum(axis=1, dtype=np.float32) > 0)
    )
    det_rows = np.flatnonzero(keep)
    det_image = dets.image_index[det_rows]
    det_class = dets.category_index[det_rows]
    # Pooled per class in image order, then NMS/file order, then one stable score sort:
    # lexsort is stable, so file order (det_rows ascending) breaks the remaining ties.
    order = np.lexsort((det_image, -dets.scores[det_rows], det_class))
    curves = claim_curves(
        det_image=det_image,
        det_class=det_class,
        det_xyxy=det_xyxy[det_rows],
        det_score=dets.scores[det_rows],
        processing_order=order,
        gt_image=gt.image_index[gt_rows],
        gt_class=gt.category_index[gt_rows],
        gt_xyxy=gt_xyxy,
        gt_ignored=np.zeros(gt_rows.shape[0], bool),
        num_classes=num_classes,
        threshold=options.match_iou,
        pair_iou=iou_st_xyxy,
    )

    def score(tp_cum: IntArray, fp_cum: IntArray, n: int) -> tuple[FloatArray, FloatArray, float]:
        rec, prec = _float32_curve(tp_cum, fp_cum, n)
        return rec, prec, ap_st_trapezoid(rec, prec)

    per_class = class_results(curves, gt.categories, n_gt, score)
    # The zoo averages with np.mean over its class numbers in ascending order; the order
    # of a pairwise sum can move the last bit.
    by_id = sorted((c for c in per_class if c.ap is not None), key=lambda c: c.category_id)
    return EvalResult(
        protocol="st",
        iou=options.match_iou,
        ap=mean_ap(by_id),
        per_class=per_class,
        num_images=int(evaluated.sum()),
        num_gt=int(n_gt.sum()),
        num_detections=int(det_rows.shape[0]),
        tp=sum(c.tp for c in per_class),
        fp=sum(c.fp for c in per_class),
        settings={"iou": options.match_iou, "input_size": options.input_size},
    )


register(
    Protocol(
        name="st",
        reference="STM32 model zoo object-detection evaluation",
        summary="model-input pixels, rounded detections, +1 IoU, no ignore regions, "
        "101-point trapezoid without envelope",
        run=evaluate_st,
        image_sizes="decoded",
    )
)
