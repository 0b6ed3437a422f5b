"""IoU of box pairs under the three conventions the protocols need (the coco protocol's
compiled core has its own copy of pycocotools' rule, in C++).

Every function works element-wise on paired rows (``a[i]`` with ``b[i]``), so callers build
the candidate pairs once (see :mod:`evalkit.metrics.pairs`) and get one vectorised pass.
"""

from __future__ import annotations

import numpy as np

from evalkit.types import BoolArray, FloatArray


def iou_coco_xywh(det_xywh: FloatArray, gt_xywh: FloatArray, gt_crowd: BoolArray) -> FloatArray:
    """pycocotools' ``bbIou`` on paired rows: no +1, a crowd ground truth's union is the
    detection's own area. Operation order follows maskApi.c so results are bit-identical."""
    dx, dy, dw, dh = det_xywh.T
    gx, gy, gw, gh = gt_xywh.T
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    overlap = (w > 0) & (h > 0)
    inter = np.where(overlap, w * h, 0.0)
    det_area = dw * dh
    union = np.where(gt_crowd, det_area, det_area + gw * gh - inter)
    out = np.zeros(inter.shape, np.float64)
    np.divide(inter, union, out=out, where=overlap)
    return out


def iou_voc_xyxy(det_xyxy: FloatArray, gt_xyxy: FloatArray) -> FloatArray:
    """VOC devkit IoU on paired rows: +1 on widths and heights, clamped at zero."""
    iw = np.maximum(
        np.minimum(det_xyxy[:, 2], gt_xyxy[:, 2]) - np.maximum(det_xyxy[:, 0], gt_xyxy[:, 0]) + 1.0,
        0.0,
    )
    ih = np.maximum(
        np.minimum(det_xyxy[:, 3], gt_xyxy[:, 3]) - np.maximum(det_xyxy[:, 1], gt_xyxy[:, 1]) + 1.0,
        0.0,
    )
    inter = iw * ih
    union = (
        (det_xyxy[:, 2] - det_xyxy[:, 0] + 1.0) * (det_xyxy[:, 3] - det_xyxy[:, 1] + 1.0)
        + (gt_xyxy[:, 2] - gt_xyxy[:, 0] + 1.0) * (gt_xyxy[:, 3] - gt_xyxy[:, 1] + 1.0)
        - inter
    )
    out = np.zeros(inter.shape, np.float64)
    np.divide(inter, union, out=out, where=inter > 0)
    return out


def iou_st_xyxy(det_xyxy: FloatArray, gt_xyxy: FloatArray) -> FloatArray:
    """The model zoo's IoU on paired rows: +1 convention, but boxes count as disjoint when
    one's x1 lies beyond the other's x2 (or y likewise), not when the +1 width is <= 0.

    The two rules differ for fractional coordinates (the zoo's ground truth is float after
    scaling to the model input), e.g. det x1 = 100 against gt x2 = 99.5 is disjoint here.
    """
    disjoint = (
        (det_xyxy[:, 0] > gt_xyxy[:, 2])
        | (det_xyxy[:, 2] < gt_xyxy[:, 0])
        | (det_xyxy[:, 1] > gt_xyxy[:, 3])
        | (det_xyxy[:, 3] < gt_xyxy[:, 1])
    )
    iw = np.minimum(det_xyxy[:, 2], gt_xyxy[:, 2]) - np.maximum(det_xyxy[:, 0], gt_xyxy[:, 0]) + 1.0
    ih = np.minimum(det_xyxy[:, 3], gt_xyxy[:, 3]) - np.maximum(det_xyxy[:, 1], gt_xyxy[:, 1]) + 1.0
    # The zoo clamps each side at zero (max(inter_x, 0.) * max(inter_y, 0.)).
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    det_area = (det_xyxy[:, 2] - det_xyxy[:, 0] + 1.0) * (det_xyxy[:, 3] - det_xyxy[:, 1] + 1.0)
    gt_area = (gt_xyxy[:, 2] - gt_xyxy[:, 0] + 1.0) * (gt_xyxy[:, 3] - gt_xyxy[:, 1] + 1.0)
    union = det_area + gt_area - inter
    out = np.zeros(inter.shape, np.float64)
    # ... and returns 0 unless the union is positive.
    np.divide(inter, union, out=out, where=~disjoint & (union > 0))
    return out


def xywh_to_xyxy(boxes_xywh: FloatArray) -> FloatArray:
    """Corners ``x2 = x + w`` as the references compute them (no +1)."""
    out = boxes_xywh.astype(np.float64, copy=True)
    out[:, 2] = boxes_xywh[:, 0] + boxes_xywh[:, 2]
    out[:, 3] = boxes_xywh[:, 1] + boxes_xywh[:, 3]
    return out
