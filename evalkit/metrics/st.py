"""``st``: the model zoo's own AP protocol, the one behind the published AP50 figures.

Everything happens in model-input coordinates (``input_size`` square): ground truths are
scaled there and kept as float32, detections are scaled there and rounded half-to-even to
integers. No ignore regions (crowds are ordinary boxes), difficult VOC objects removed,
COCO images without any annotation dropped, best-then-claim matching with the +1 IoU, and
AP as a trapezoid over 101 recall points of the raw curve (no precision envelope), averaged
over the classes that have ground truth. See reference-pipeline.md section 6.
"""

from __future__ import annotations

import numpy as np

from evalkit.metrics.curves import claim_curves, class_results, mean_ap
from evalkit.metrics.interpolation import ap_st_trapezoid
from evalkit.metrics.iou import iou_st_xyxy, xywh_to_xyxy
from evalkit.metrics.protocol import EvalOptions, Protocol, register
from evalkit.types import Detections, EvalResult, FloatArray, GroundTruth, IntArray


def _image_sizes(gt: GroundTruth) -> tuple[FloatArray, FloatArray]:
    widths = np.array([im.width for im in gt.images], np.float64)
    heights = np.array([im.height for im in gt.images], np.float64)
    return widths, heights


def st_ground_truth_xyxy(gt: GroundTruth, input_size: int) -> tuple[np.ndarray, FloatArray]:
    """Rows of ``gt`` the zoo keeps and their corners in input coordinates (float32)."""
    widths, heights = _image_sizes(gt)
    if gt.source == "coco":
        keep = (gt.boxes_xywh_px[:, 2] > 0) & (gt.boxes_xywh_px[:, 3] > 0)
    else:
        keep = ~gt.difficult
    rows = np.flatnonzero(keep)
    corners = xywh_to_xyxy(gt.boxes_xywh_px[rows])
    w = widths[gt.image_index[rows]]
    h = heights[gt.image_index[rows]]
    scaled = np.stack(
        [
            corners[:, 0] * input_size / w,
            corners[:, 1] * input_size / h,
            corners[:, 2] * input_size / w,
            corners[:, 3] * input_size / h,
        ],
        axis=1,
    ).astype(np.float32)
    nonzero = scaled.sum(axis=1) != 0
    return rows[nonzero], scaled[nonzero].astype(np.float64)


def st_detections_xyxy(gt: GroundTruth, dets: Detections, input_size: int) -> FloatArray:
    """Detection corners normalised by the image size, times ``input_size``, rounded
    half-to-even (numpy's rounding), as the zoo scales its NMS output."""
    widths, heights = _image_sizes(gt)
    corners = xywh_to_xyxy(dets.boxes_xywh_px)
    w = widths[dets.image_index]
    h = heights[dets.image_index]
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
    keep = (
        evaluated[dets.image_index] & (n_gt[dets.category_index] > 0) & (det_xyxy.sum(axis=1) != 0)
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
        processing_order=order,
        gt_image=gt.image_index[gt_rows],
        gt_class=gt.category_index[gt_rows],
        gt_xyxy=gt_xyxy,
        gt_ignored=np.zeros(gt_rows.shape[0], bool),
        num_classes=num_classes,
        threshold=options.iou,
        pair_iou=iou_st_xyxy,
    )

    def score(tp_cum: IntArray, fp_cum: IntArray, n: int) -> tuple[FloatArray, FloatArray, float]:
        rec = tp_cum / n
        prec = tp_cum / (tp_cum + fp_cum)  # every detection is a TP or an FP: no zero
        return rec, prec, ap_st_trapezoid(rec, prec)

    per_class = class_results(curves, gt.categories, n_gt, score)
    return EvalResult(
        protocol="st",
        iou=options.iou,
        ap=mean_ap(per_class),
        per_class=per_class,
        num_images=int(evaluated.sum()),
        num_gt=int(n_gt.sum()),
        num_detections=int(det_rows.shape[0]),
        tp=sum(c.tp for c in per_class),
        fp=sum(c.fp for c in per_class),
        settings={"iou": options.iou, "input_size": options.input_size},
    )


register(
    Protocol(
        name="st",
        reference="STM32 model zoo object-detection evaluation",
        summary="model-input pixels, rounded detections, +1 IoU, no ignore regions, "
        "101-point trapezoid without envelope",
        run=evaluate_st,
    )
)
