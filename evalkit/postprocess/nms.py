"""TensorFlow's combined non-max suppression (``tf.image.combined_non_max_suppression``), in numpy.

reference-pipeline.md section 4: per class, candidates scoring above 0.001, greedy suppression
of boxes whose IoU with a kept box exceeds 0.5, at most 100 kept per class; then the 100
highest scores of the image across classes. A box (anchor) may be reported for several
classes. The rules below are those of TF's CPU kernel, tensorflow/core/kernels/image/
non_max_suppression_op.cc (``CombinedNonMaxSuppressionOp`` -> ``BatchedNonMaxSuppressionOp``
-> ``DoNMSPerClass`` per (image, class), then ``SelectResultPerBatch`` per image) and of its
Python wrapper in tensorflow/python/ops/image_ops_impl.py:

- thresholds are converted to float32 and scores compared with ``score > threshold``
  (strictly): a score equal to float32(0.001) is not a candidate;
- IoU is computed in float32 on corners taken as ``min``/``max`` of each axis (a box given
  with y1 > y2 or x1 > x2 is the same box); a box whose area is ``<= 0`` has IoU 0 with
  everything, so it neither suppresses nor is suppressed; a candidate is dropped when its IoU
  with a kept box of its class is ``> iou_threshold`` (equal is kept);
- at most ``min(max_per_class, num_boxes)`` kept per class, the greedy pass stopping there;
- across classes the kept boxes of an image are sorted by descending score and the first
  ``max_total`` are returned (``valid_detections``); ``pad_per_class`` only changes the zero
  padding after them, so it is not a setting here and no padding is returned;
- ``clip_boxes`` clamps the *returned* corners to [0, 1]; IoU used the unclipped ones.

Equal scores: TF orders them by its heap (``std::priority_queue`` comparing scores only) and
its unstable ``std::sort``, i.e. in an order the API does not define. evalkit fixes one:
within a class the lower box index is taken first (the rule TF's single-class
``NonMaxSuppressionV3..V5`` kernels state), and in the output equal scores come in class
order, then in per-class selection order.

Inputs are cast to float32 first (the op takes float32). Non-finite corners and NaN scores
are refused (TF would silently drop NaN scores, and IoU is meaningless on them).

The implementation handles all classes of an image at once: candidates sorted by (class,
-score, box), then rounds over chunks of the next ranks of every unfinished class. A round
drops the chunk's candidates that overlap a box their class kept in earlier rounds, computes
the IoU of the remaining same-class pairs inside the chunk, and resolves the greedy order
within the chunk by fixed-point iteration (exact: the greedy result is its only fixed
point). IoU is only computed for pairs that a sweep in x cannot rule out. A class leaves
once it holds ``max_per_class`` boxes or runs out of candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from evalkit.errors import InputError
from evalkit.types import DecodedBoxes, ImageDetections

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

ALGORITHM = "tf.image.combined_non_max_suppression"
TIE_ORDER = "within a class lower box index first; in the output class order, then class rank"
# Ranks per class in the first round; later rounds at most double it and take about what
# the class still needs at its keep rate. Most classes of an SSD image hold fewer candidates
# and finish in the first round (64 measured best on benchmarks/nms_speed.py).
FIRST_CHUNK = 64
# Pairs per IoU block (see _Boxes._exceeding).
PAIR_BLOCK = 1 << 15


@dataclass(frozen=True)
class NmsSettings:
    """Combined-NMS parameters, recorded in every result; defaults are section 4's."""

    iou_threshold: float = 0.5
    score_threshold: float = 0.001
    max_per_class: int = 100
    max_total: int = 100
    clip_boxes: bool = True

    def __post_init__(self) -> None:
        # TF's CombinedNonMaxSuppressionOp rejects the same values.
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {self.iou_threshold!r}")
        if np.isnan(self.score_threshold):
            raise ValueError("score_threshold must be a number, got NaN")
        for name in ("max_per_class", "max_total"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the settings and the rules they run under."""
        return {
            "algorithm": ALGORITHM,
            "iou_threshold": float(self.iou_threshold),
            "score_threshold": float(self.score_threshold),
            "max_per_class": int(self.max_per_class),
            "max_total": int(self.max_total),
            "clip_boxes": bool(self.clip_boxes),
            "tie_order": TIE_ORDER,
        }


@dataclass(frozen=True, eq=False)
class NmsSelection:
    """What NMS kept for one image, in output order: box (anchor) and class indices,
    scores, and the returned corners (clipped when the settings say so)."""

    box_index: I64
    class_index: I64
    scores: F32
    boxes_xyxy_norm: F32

    def __len__(self) -> int:
        return int(self.box_index.shape[0])

    def to_detections(self) -> ImageDetections:
        """The record the rest of the pipeline consumes."""
        return ImageDetections(
            boxes_xyxy_norm=self.boxes_xyxy_norm, scores=self.scores, class_index=self.class_index
        )


# --- input checks ---------------------------------------------------------------------------


def _float32(value: Any, name: str, expected: str) -> F32:
    """``value`` as a float32 array, or an InputError naming the tensor and its dtype."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise InputError(f"expected a real {expected} array, got dtype {array.dtype}", record=name)
    # TF's kernel reads float32; cast once here so thresholds compare like TF's.
    return np.asarray(array, dtype=np.float32)


def _check_inputs(boxes: Any, scores: Any, *, batched: bool) -> tuple[F32, F32]:
    """(N, B, 4) boxes and (N, B, C) scores (no N when not batched) as float32, or an
    InputError naming the tensor, the expected and the actual shape, or the first NaN."""
    prefix = "DecodedBoxes." if batched else ""
    lead = "(N, B" if batched else "(B"
    box_name, score_name = f"{prefix}boxes_xyxy_norm", f"{prefix}scores"
    box_arr = _float32(boxes, box_name, f"{lead}, 4)")
    score_arr = _float32(scores, score_name, f"{lead}, C)")
    rank = 3 if batched else 2
    if box_arr.ndim != rank or box_arr.shape[-1] != 4:
        raise InputError(f"expected shape {lead}, 4), got {box_arr.shape}", record=box_name)
    if score_arr.ndim != rank or score_arr.shape[:-1] != box_arr.shape[:-1]:
        want = ", ".join(f"{d}" for d in box_arr.shape[:-1])
        raise InputError(
            f"expected shape {lead}, C) = ({want}, C) to match {box_name} {box_arr.shape}, "
            f"got {score_arr.shape}",
            record=score_name,
        )
    bad_boxes = ~np.isfinite(box_arr)
    if bad_boxes.any():
        where = tuple(int(i) for i in np.argwhere(bad_boxes)[0])
        raise InputError(
            f"expected finite corners, got {box_arr[where]} at index {where} "
            f"({int(bad_boxes.sum())} non-finite values)",
            record=box_name,
        )
    nan_scores = np.isnan(score_arr)
    if nan_scores.any():
        where = tuple(int(i) for i in np.argwhere(nan_scores)[0])
        raise InputError(
            f"expected numbers, got NaN at index {where} ({int(nan_scores.sum())} NaN scores)",
            record=score_name,
        )
    return box_arr, score_arr


# --- vectorised core ------------------------------------------------------------------------


def _ragged_arange(starts: I64, lengths: I64) -> I64:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` without a loop."""
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def _ascending_bits(values: F32) -> npt.NDArray[np.uint64]:
    """Unsigned keys in the order of the float32 ``values`` (0.0 and -0.0 equal)."""
    bits = (values + np.float32(0.0)).view(np.uint32)  # -0.0 + 0.0 is +0.0
    negative = (bits >> np.uint32(31)).astype(np.bool_)
    # IEEE order as unsigned integers: flip every bit of a negative, the sign bit otherwise.
    return np.where(negative, ~bits, bits | np.uint32(0x80000000)).astype(np.uint64)


def _descending_key(score: F32) -> npt.NDArray[np.uint64]:
    """Unsigned keys that sort float32 scores descending, equal scores equal."""
    return np.uint64(0xFFFFFFFF) - _ascending_bits(score)


def _stable_order(key: npt.NDArray[np.uint64], high: I64 | None = None) -> I64:
    """Stable argsort by (``high``, 32-bit ``key``): three 16-bit radix passes (numpy sorts
    16-bit integers stably by radix), several times faster than a 64-bit merge sort."""
    digits = [(key & np.uint64(0xFFFF)).astype(np.uint16), (key >> np.uint64(16)).astype(np.uint16)]
    if high is not None:
        if high.size and int(high.max()) > 0xFFFF:
            return np.argsort((high.astype(np.uint64) << np.uint64(32)) | key, kind="stable")
        digits.append(high.astype(np.uint16))
    order = np.argsort(digits[0], kind="stable")
    for digit in digits[1:]:
        order = order[np.argsort(digit[order], kind="stable")]
    return order


def _round_up_float32(values: npt.NDArray[np.float64]) -> F32:
    """float32 values no smaller than the float64 ones, so a bound only ever loosens."""
    out = values.astype(np.float32)
    low = out.astype(np.float64) < values
    out[low] = np.nextafter(out[low], np.float32(np.inf))
    return out


_Table = tuple[F32, F32, F32, F32, F32]


def _iou_exceeds(a: _Table, b: _Table, threshold: np.float32) -> Bool:
    """TF's ``IOU(a, b) > threshold`` on paired (x_lo, x_hi, y_lo, y_hi, area) columns,
    bit-identical to its float32 arithmetic."""
    with np.errstate(invalid="ignore", divide="ignore"):
        height = np.minimum(a[3], b[3])
        height -= np.maximum(a[2], b[2])
        np.maximum(height, np.float32(0.0), out=height)
        width = np.minimum(a[1], b[1])
        width -= np.maximum(a[0], b[0])
        np.maximum(width, np.float32(0.0), out=width)
        inter = height
        inter *= width
        # TF: intersection / (area_i + area_j - intersection), left to right in float32.
        union = a[4] + b[4]
        union -= inter
        inter /= union
        return inter > threshold


class _Boxes:
    """An image's boxes as TF's IOU() sees them, and the same-class pairs whose IoU exceeds
    the threshold, found by sweeps in x that skip the pairs which cannot.

    ``group`` arguments are class indices: pairs never cross them.
    """

    def __init__(self, boxes: F32, threshold: np.float32) -> None:
        # TF IOU(): min/max per axis, so either corner order describes the same box.
        x_lo = np.minimum(boxes[:, 0], boxes[:, 2])
        x_hi = np.maximum(boxes[:, 0], boxes[:, 2])
        y_lo = np.minimum(boxes[:, 1], boxes[:, 3])
        y_hi = np.maximum(boxes[:, 1], boxes[:, 3])
        area = (y_hi - y_lo) * (x_hi - x_lo)
        # TF IOU(): area <= 0 on either side gives IoU 0, which never exceeds a threshold in
        # [0, 1]. A NaN area makes every comparison of that box's pairs false, the same way.
        area[area <= 0] = np.nan
        self.table: _Table = (x_lo, x_hi, y_lo, y_hi, area)
        self.threshold = threshold
        # IoU <= (x overlap) / max(width_a, width_b), so a pair can only exceed t when the box
        # starting later in x starts before x_hi - t * width of the other. 0.999 t leaves a
        # margin far above float32 rounding (float64 bounds, rounded up).
        slack = 0.999 * float(threshold) if threshold >= 1e-5 else 0.0
        x_hi64 = x_hi.astype(np.float64)
        bound = _round_up_float32(x_hi64 - slack * (x_hi64 - x_lo.astype(np.float64)))
        self.lo_key = _ascending_bits(x_lo)
        self.bound_key = _ascending_bits(bound)

    def _exceeding(self, rows: I64, length: I64, partner: I64) -> I64:
        """Positions in the pair list (row k of ``rows`` ``length[k]`` times, against rows
        ``partner`` of ``rows``) whose IoU exceeds the threshold; ``rows`` are box indices."""
        table = tuple(np.take(column, rows) for column in self.table)
        ends = np.cumsum(length)
        total = int(ends[-1]) if ends.size else 0
        # Blocks of about PAIR_BLOCK pairs keep the ten temporary columns in cache; past a
        # few hundred thousand pairs, memory traffic otherwise triples the cost per pair.
        cuts: list[int] = []
        if total > PAIR_BLOCK:
            cuts = np.unique(
                np.searchsorted(ends, np.arange(PAIR_BLOCK, total, PAIR_BLOCK))
            ).tolist()
        hits = []
        row_start, pair_start = 0, 0
        for row_end in [*cuts, rows.size]:
            if row_end <= row_start:
                continue
            pair_end = int(ends[row_end - 1])
            block_length = length[row_start:row_end]
            # The leading box repeats in runs: np.repeat is far cheaper than a gather.
            lead = tuple(np.repeat(column[row_start:row_end], block_length) for column in table)
            block_partner = partner[pair_start:pair_end]
            other = tuple(np.take(column, block_partner) for column in table)
            hit = _iou_exceeds(lead, other, self.threshold)  # type: ignore[arg-type]
            hits.append(np.flatnonzero(hit) + pair_start)
            row_start, pair_start = row_end, pair_end
        return np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64)

    def _keys(self, box: I64, group: I64) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """(group, x_lo) and (group, bound) as single sortable integers."""
        high = group.astype(np.uint64) << np.uint64(32)
        return high | self.lo_key[box], high | self.bound_key[box]

    def pairs_within(self, box: I64, group: I64) -> tuple[I64, I64]:
        """Positions (i, j) of same-group pairs among ``box`` whose IoU exceeds the
        threshold: each box against those of its group starting in x from it to its bound."""
        lo, bound = self._keys(box, group)
        order = np.argsort(lo, kind="stable")
        end = np.searchsorted(lo[order], bound[order], side="right")
        here = np.arange(box.size, dtype=np.int64)
        length = np.maximum(end - here - 1, 0)
        partner = _ragged_arange(here + 1, length)
        hit = self._exceeding(box[order], length, partner)
        return order[np.repeat(here, length)[hit]], order[partner[hit]]

    def suppressed_by(self, box: I64, group: I64, kept_box: I64, kept_group: I64) -> I64:
        """Positions in ``box`` whose IoU with a kept box of the same group exceeds the
        threshold (possibly repeated)."""
        lo, bound = self._keys(box, group)
        kept_lo, kept_bound = self._keys(kept_box, kept_group)
        kept_order = np.argsort(kept_lo, kind="stable")
        kept_lo, kept_bound = kept_lo[kept_order], kept_bound[kept_order]
        order = np.argsort(lo, kind="stable")
        sorted_lo = lo[order]
        # Rows: the candidates, then the kept boxes in x order. Each candidate leads against
        # the kept boxes starting at or after it, up to its bound ...
        first = np.searchsorted(kept_lo, lo, side="left")
        lead_length = np.maximum(np.searchsorted(kept_lo, bound, side="right") - first, 0)
        lead_partner = _ragged_arange(first, lead_length) + box.size
        # ... and each kept box against the candidates starting strictly after it.
        first = np.searchsorted(sorted_lo, kept_lo, side="right")
        follow_length = np.maximum(np.searchsorted(sorted_lo, kept_bound, side="right") - first, 0)
        follow_partner = order[_ragged_arange(first, follow_length)]
        hit = self._exceeding(
            np.concatenate([box, kept_box[kept_order]]),
            np.concatenate([lead_length, follow_length]),
            np.concatenate([lead_partner, follow_partner]),
        )
        n_lead = lead_partner.size
        lead = np.repeat(np.arange(box.size, dtype=np.int64), lead_length)
        return np.concatenate(
            [lead[hit[hit < n_lead]], follow_partner[hit[hit >= n_lead] - n_lead]]
        )


def _greedy_within(alive: Bool, hit_later: I64, hit_earlier: I64) -> Bool:
    """Greedy keep flags of ranked boxes where ``hit_earlier[k]`` would suppress
    ``hit_later[k]``: the fixed point of "alive and no kept earlier box suppresses it".

    Iterating from "all alive kept" fixes one more rank per pass at least, and the greedy
    result is the only fixed point, so stopping at the first unchanged pass is exact.
    """
    keep = alive.copy()
    while True:
        blocked = np.zeros(alive.size, dtype=np.bool_)
        blocked[np.compress(keep[hit_earlier], hit_later)] = True
        new_keep = alive & ~blocked
        if np.array_equal(new_keep, keep):
            return keep
        keep = new_keep


def _select(boxes: F32, scores: F32, settings: NmsSettings) -> tuple[I64, I64, F32]:
    """Kept (box index, class index, score) of one image's (B, 4) corners and (B, C)
    scores, in output order."""
    n_boxes, n_classes = scores.shape
    # Wrapper: ops.convert_to_tensor(..., dtype=float32) on both thresholds.
    score_thr = np.float32(settings.score_threshold)
    iou_thr = np.float32(settings.iou_threshold)
    # BatchedNonMaxSuppressionOp: size_per_class = min(max_size_per_class, num_boxes).
    cap = min(int(settings.max_per_class), n_boxes)
    # DoNMSPerClass: candidates are scores strictly above the threshold.
    flat = np.flatnonzero(scores > score_thr)
    score = scores.reshape(-1)[flat]
    box, cls = np.divmod(flat, n_classes)
    # By class, then descending score. The sort is stable and flatnonzero lists a class's
    # candidates in box order, so equal scores keep ascending box index.
    order = _stable_order(_descending_key(score), cls)
    box, cls, score = box[order], cls[order], score[order]
    boxes_ = _Boxes(boxes, iou_thr)

    count = np.bincount(cls, minlength=n_classes).astype(np.int64)
    start = np.cumsum(count) - count
    done = np.zeros(n_classes, dtype=np.int64)  # ranks already decided per class
    kept_n = np.zeros(n_classes, dtype=np.int64)
    kept = np.zeros(0, dtype=np.int64)  # candidate positions, hence in (class, rank) order
    chunk = FIRST_CHUNK
    active = np.flatnonzero(count > 0) if cap > 0 else np.zeros(0, dtype=np.int64)
    while active.size:
        size = np.minimum(count[active] - done[active], chunk)
        if kept.size:
            # Past the first round: the ranks that fill the class at its keep rate so far,
            # with a margin; pairs grow with the square of a chunk, so overshooting costs.
            rate = np.maximum(kept_n[active] / np.maximum(done[active], 1), 0.05)
            want = np.ceil((cap - kept_n[active]) * 1.25 / rate).astype(np.int64) + 8
            size = np.minimum(size, np.maximum(want, 16))
        cand = _ragged_arange(start[active] + done[active], size)
        cand_cls, cand_box = cls[cand], box[cand]
        # DoNMSPerClass: a candidate whose IoU with any selected box exceeds the threshold
        # is not selected. Boxes kept in earlier rounds rank above the whole chunk.
        alive = np.ones(cand.size, dtype=np.bool_)
        is_active = np.zeros(n_classes, dtype=np.bool_)
        is_active[active] = True
        earlier = kept[is_active[cls[kept]]]
        if earlier.size:
            alive[boxes_.suppressed_by(cand_box, cand_cls, box[earlier], cls[earlier])] = False
        live = np.flatnonzero(alive)
        i, j = boxes_.pairs_within(cand_box[live], cand_cls[live])
        # Chunk positions follow rank inside a class: the lower position suppresses.
        keep = _greedy_within(alive, live[np.maximum(i, j)], live[np.minimum(i, j)])
        # DoNMSPerClass stops at size_per_class selections: the greedy result is built in
        # rank order, so the capped result is its first (cap - kept so far) boxes.
        running = np.cumsum(keep)
        block_first = np.cumsum(size) - size
        before = np.repeat(running[block_first] - keep[block_first], size)
        keep &= kept_n[cand_cls] + running - before <= cap
        kept_n += np.bincount(cand_cls[keep], minlength=n_classes)
        kept = np.sort(np.concatenate([kept, cand[keep]]), kind="stable")  # merges two runs
        done[active] += size
        active = active[(done[active] < count[active]) & (kept_n[active] < cap)]
        chunk *= 2

    # SelectResultPerBatch: the kept boxes by descending score, the first max_total of
    # them. The sort is stable over (class, rank)-ordered positions, so equal scores stay in
    # class order, then rank order.
    kept = kept[_stable_order(_descending_key(score[kept]))][: settings.max_total]
    return box[kept], cls[kept], score[kept]


def _selection(boxes: F32, settings: NmsSettings, box: I64, cls: I64, score: F32) -> NmsSelection:
    """The record of one image's kept rows, with the returned corners."""
    corners = boxes[box]
    if settings.clip_boxes:
        # SelectResultPerBatch: max(min(coord, 1), 0) on the returned corners only.
        corners = np.clip(corners, np.float32(0.0), np.float32(1.0))
    return NmsSelection(
        box_index=box.astype(np.int64),
        class_index=cls.astype(np.int64),
        scores=score.astype(np.float32),
        boxes_xyxy_norm=corners.astype(np.float32).reshape(-1, 4),
    )


# --- public API -----------------------------------------------------------------------------


def select_batch(decoded: DecodedBoxes, settings: NmsSettings) -> list[NmsSelection]:
    """Combined NMS of a batch, with box indices: one NmsSelection per image."""
    boxes, scores = _check_inputs(decoded.boxes_xyxy_norm, decoded.scores, batched=True)
    # TF runs each (image, class) on its own; image by image keeps temporaries in cache.
    return [
        _selection(boxes[i], settings, *_select(boxes[i], scores[i], settings))
        for i in range(scores.shape[0])
    ]


def select_image(boxes_xyxy_norm: Any, scores: Any, settings: NmsSettings) -> NmsSelection:
    """Combined NMS of one image's (B, 4) corners and (B, C) scores, with box indices."""
    boxes, score_arr = _check_inputs(boxes_xyxy_norm, scores, batched=False)
    return _selection(boxes, settings, *_select(boxes, score_arr, settings))


def nms_image(
    boxes_xyxy_norm: Any, scores: Any, settings: NmsSettings | None = None
) -> ImageDetections:
    """Combined NMS of one image: (B, 4) corners and (B, C) scores to its detections."""
    return select_image(boxes_xyxy_norm, scores, settings or NmsSettings()).to_detections()


def nms_batch(decoded: DecodedBoxes, settings: NmsSettings) -> list[ImageDetections]:
    """Combined NMS of a batch under ``settings``: one ImageDetections per image."""
    return [selection.to_detections() for selection in select_batch(decoded, settings)]


def combined_nms(
    decoded: DecodedBoxes,
    *,
    score_threshold: float = 0.001,
    iou_threshold: float = 0.5,
    max_per_class: int = 100,
    max_total: int = 100,
    clip_boxes: bool = True,
) -> list[ImageDetections]:
    """``tf.image.combined_non_max_suppression`` of a batch: one ImageDetections per image."""
    settings = NmsSettings(
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        max_per_class=max_per_class,
        max_total=max_total,
        clip_boxes=clip_boxes,
    )
    return nms_batch(decoded, settings)
