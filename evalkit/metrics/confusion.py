"""Confusion matrix at a stated IoU and score threshold: which class the kept detections gave
each ground truth, how many ground truths were missed and how many detections hit nothing.

The rules (the ones detection tool kits such as Ultralytics use, written down here):

* detections with ``score >= score_threshold`` are kept;
* in each image, a kept detection and a ground truth form a candidate pair when their IoU
  (pycocotools' ``bbIou``: no +1) is ``>= iou_threshold``, *whatever the two classes*;
* pairs are taken one-to-one greedily by descending IoU (ties: higher score, then earlier
  detection, then earlier ground truth): ``matrix[true class, predicted class]``;
* a ground truth left alone is missed (column ``background``); a detection left alone is a
  false detection (row ``background``), unless it overlaps an ignored region (a crowd, or a
  VOC "difficult" object) by the IoU threshold (the crowd IoU is over the detection's own
  area), then it is not counted. Ignored ground truths are never rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalkit.metrics.iou import iou_coco_xywh
from evalkit.metrics.pairs import pairs_by_key
from evalkit.types import Detections, GroundTruth, IntArray


@dataclass(frozen=True)
class ConfusionMatrix:
    """``matrix[i, j]``: ground truths of class i given class j; index K (the last) is
    background (row: false detections, column: missed ground truths)."""

    classes: tuple[str, ...]
    matrix: IntArray
    iou_threshold: float
    score_threshold: float

    def to_dict(self) -> dict[str, object]:
        return {
            "iou_threshold": self.iou_threshold,
            "score_threshold": self.score_threshold,
            "labels": [*self.classes, "background"],
            "rows": "true class (background: false detections)",
            "columns": "predicted class (background: missed ground truths)",
            "matrix": self.matrix.tolist(),
        }

    def top_confusions(self, n: int = 10) -> list[tuple[str, str, int]]:
        """The largest off-diagonal cells between two classes, largest first."""
        k = len(self.classes)
        cells = [
            (int(self.matrix[i, j]), self.classes[i], self.classes[j])
            for i in range(k)
            for j in range(k)
            if i != j and self.matrix[i, j] > 0
        ]
        cells.sort(key=lambda c: -c[0])
        return [(true, predicted, count) for count, true, predicted in cells[:n]]


def _greedy_one_to_one(det: IntArray, gt: IntArray, order: IntArray) -> tuple[IntArray, IntArray]:
    """Pairs taken greedily in ``order`` (best first), each detection and ground truth once.
    Done in rounds: a pair that is the first remaining one of both its detection and its
    ground truth is what the sequential greedy would take (nothing before it in the order
    can claim either), so every round takes all such pairs at once."""
    det, gt = det[order], gt[order]
    taken_det, taken_gt = [], []
    while det.size:
        first_of_det = np.zeros(det.size, bool)
        first_of_det[np.unique(det, return_index=True)[1]] = True
        first_of_gt = np.zeros(det.size, bool)
        first_of_gt[np.unique(gt, return_index=True)[1]] = True
        take = first_of_det & first_of_gt
        taken_det.append(det[take])
        taken_gt.append(gt[take])
        keep = ~np.isin(det, det[take]) & ~np.isin(gt, gt[take])
        det, gt = det[keep], gt[keep]
    if not taken_det:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(taken_det), np.concatenate(taken_gt)


def confusion_matrix(
    gt: GroundTruth, dets: Detections, iou_threshold: float = 0.5, score_threshold: float = 0.5
) -> ConfusionMatrix:
    """The confusion matrix of ``dets`` against ``gt`` under the rules of this module."""
    k = len(gt.categories)
    kept = np.flatnonzero(dets.scores >= score_threshold)
    ignored = gt.iscrowd | gt.difficult
    pairs = pairs_by_key(dets.image_index[kept], gt.image_index)
    det_rows, gt_rows = kept[pairs.det], pairs.gt
    iou = iou_coco_xywh(
        dets.boxes_xywh_px[det_rows], gt.boxes_xywh_px[gt_rows], gt.iscrowd[gt_rows]
    )
    close = iou >= iou_threshold
    regular = close & ~ignored[gt_rows]
    d, g, v = det_rows[regular], gt_rows[regular], iou[regular]
    order = np.lexsort((g, d, -dets.scores[d], -v))
    matched_det, matched_gt = _greedy_one_to_one(d, g, order)
    matrix = np.zeros((k + 1, k + 1), np.int64)
    np.add.at(matrix, (gt.category_index[matched_gt], dets.category_index[matched_det]), 1)
    missed = np.ones(len(gt.image_index), bool)
    missed[matched_gt] = False
    missed &= ~ignored
    matrix[:k, k] = np.bincount(gt.category_index[missed], minlength=k)
    lonely = np.ones(len(dets.scores), bool)
    lonely[matched_det] = False
    lonely[det_rows[close & ignored[gt_rows]]] = False  # on an ignored region: not counted
    lonely_kept = kept[lonely[kept]]
    matrix[k, :k] = np.bincount(dets.category_index[lonely_kept], minlength=k)
    return ConfusionMatrix(
        classes=tuple(c.name for c in gt.categories),
        matrix=matrix,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
    )
