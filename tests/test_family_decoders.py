"""The zoo's other families' decoders (evalkit.postprocess.yolo), by round trip: boxes
encoded into each head's raw output by the inverse of the zoo's rules, decoded back; and the
rules a wrong decoder would get wrong (transposed layouts, the zoo's grid indexing, anchor
scaling per level, MediaPipe's anchor order, score clipping) pinned by hand-derived values."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.errors import InputError
from evalkit.postprocess.decoders import DECODERS, DecoderRequest
from evalkit.postprocess.yolo import (
    BlazeFaceDecoder,
    UltralyticsDecoder,
    YoloV2Decoder,
    YoloxDecoder,
    YoloxnDecoder,
    blazeface_anchors,
    yolov2_head,
    yolox_grid,
)
from evalkit.types import RawOutputs

F32 = np.float32


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Centre and size, normalised, well inside the image (no clipping)."""
    cxcy = rng.uniform(0.3, 0.7, (n, 2))
    wh = rng.uniform(0.05, 0.4, (n, 2))
    return np.concatenate([cxcy, wh], axis=1).astype(F32)


def _corners(cxcywh: np.ndarray) -> np.ndarray:
    c, s = cxcywh[..., :2].astype(np.float64), cxcywh[..., 2:].astype(np.float64)
    return np.concatenate([c - s / 2, c + s / 2], axis=-1)


def test_every_family_is_registered() -> None:
    for name in ("ultralytics", "yolox", "yolov2", "yoloxn", "blazeface", "final-detections"):
        assert name in DECODERS


def test_ultralytics_reads_4_plus_k_by_f_in_either_layout() -> None:
    rng = np.random.default_rng(0)
    boxes = _boxes(rng, 50)
    scores = rng.random((50, 3)).astype(F32)
    rows = np.concatenate([boxes, scores], axis=1)  # (F, 4+K)
    decoder = UltralyticsDecoder(class_names=("a", "b", "c"))
    for raw in (rows.T[None], rows[None]):  # the export's (1, 4+K, F), and (1, F, 4+K)
        got = decoder.decode(RawOutputs({"output0": raw}))
        assert np.allclose(got.boxes_xyxy_norm[0], _corners(boxes), atol=1e-7)
        assert np.array_equal(got.scores[0], scores)
    with pytest.raises(InputError, match="4 class names given but the model has 3"):
        UltralyticsDecoder(class_names=("a", "b", "c", "d")).decode(RawOutputs({"o": rows[None]}))


def test_yolox_inverts_the_grid_and_stride_encoding() -> None:
    rng = np.random.default_rng(1)
    width, height = 64, 32
    cells, strides = yolox_grid(width, height)
    count = cells.shape[0]
    assert count == sum((width // s) * (height // s) for s in (8, 16, 32))
    # Row by row per level: the 3rd prediction of the stride-8 level is column 2 of row 0,
    # the (W/8 + 1)-th is column 0 of row 1.
    assert cells[2].tolist() == [2, 0] and cells[width // 8].tolist() == [0, 1]
    boxes = _boxes(rng, count)
    size = np.array([width, height], np.float64)
    centre_px, size_px = boxes[:, :2] * size, boxes[:, 2:] * size
    raw_xy = centre_px / strides - cells
    raw_wh = np.log(size_px / strides)
    obj = rng.random((count, 1))
    probs = rng.random((count, 2))
    raw = np.concatenate([raw_xy, raw_wh, obj, probs], axis=1).astype(F32)[None]
    decoder = YoloxDecoder(input_size=(width, height), class_names=("a", "b"))
    got = decoder.decode(RawOutputs({"output": raw}))
    assert np.allclose(got.boxes_xyxy_norm[0], _corners(boxes), atol=2e-6)
    assert np.array_equal(got.scores[0], raw[0, :, 5:] * raw[0, :, 4:5])
    # Channels first (a target's layout) decodes the same.
    same = decoder.decode(RawOutputs({"output": raw.transpose(0, 2, 1)}))
    assert np.array_equal(same.boxes_xyxy_norm, got.boxes_xyxy_norm)
    with pytest.raises(
        InputError, match=r"expected \(N, 84, 5\+K\) for a 64x64 input .* got \(1, 42, 7\)"
    ):
        YoloxDecoder(input_size=(64, 64)).decode(RawOutputs({"output": raw}))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def test_yolov2_inverts_its_head_and_keeps_the_zoos_cell_order() -> None:
    rng = np.random.default_rng(2)
    h = w = 4
    anchors = np.array([[1.0, 2.0], [3.0, 1.5]], F32)
    k = 3
    offsets = rng.uniform(0.05, 0.95, (1, h, w, 2, 2))
    sizes = rng.uniform(0.05, 0.4, (1, h, w, 2, 2))  # normalised w, h
    raw = np.zeros((1, h, w, 2, 5 + k), np.float64)
    raw[..., 0:2] = _logit(offsets)
    raw[..., 2:4] = np.log(sizes * np.array([h, w]) / anchors)
    raw[..., 4:] = rng.normal(size=(1, h, w, 2, 1 + k))
    feats = raw.reshape(1, h, w, 2 * (5 + k)).astype(F32)
    decoder = YoloV2Decoder(anchors=((1.0, 2.0), (3.0, 1.5)), class_names=("a", "b", "c"))
    got = decoder.decode(RawOutputs({"grid": feats}))
    # On a square grid the cell at row r, column c is (x = c, y = r).
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    cell = np.stack([cols, rows], axis=-1)[None, :, :, None, :]
    centre = (offsets + cell) / np.array([w, h])
    want = _corners(np.concatenate([centre, sizes], axis=-1)).reshape(1, -1, 4)
    assert np.allclose(got.boxes_xyxy_norm, np.clip(want, 0, 1), atol=2e-6)  # the zoo clips
    p = raw[..., 4:].reshape(1, -1, 1 + k)
    softmax = np.exp(p[..., 1:]) / np.exp(p[..., 1:]).sum(axis=-1, keepdims=True)
    assert np.allclose(got.scores, softmax / (1 + np.exp(-p[..., :1])), atol=1e-6)


def test_yolov2_cells_on_a_non_square_grid_follow_the_zoos_indexing() -> None:
    h, w = 2, 3  # flat position k has cell (k mod H, k div H), divided by (H, W)
    feats = np.zeros((1, h, w, 6), F32)  # one anchor, one class, all logits 0
    boxes, _ = yolov2_head(feats, np.array([[1.0, 1.0]], F32), 1)
    centres = (boxes[0, :, :2] + boxes[0, :, 2:]) / 2
    want = [(((k % h) + 0.5) / h, ((k // h) + 0.5) / w) for k in range(h * w)]
    assert np.allclose(centres, want, atol=1e-7)


def test_yoloxn_decodes_levels_largest_grid_first_with_anchors_scaled_per_level() -> None:
    rng = np.random.default_rng(3)
    anchors = ((0.5, 0.75),)
    small = rng.normal(size=(1, 2, 2, 7)).astype(F32)  # stride 16 at 32x32
    large = rng.normal(size=(1, 4, 4, 7)).astype(F32)  # stride 8
    decoder = YoloxnDecoder(anchors=anchors, class_names=("a", "b"), input_size=(32, 32),
                            strides=(8, 16))  # fmt: skip
    got = decoder.decode(RawOutputs({"first": small, "second": large}))
    base = np.array(anchors, F32)
    b8, s8 = yolov2_head(large, base * F32(32 / 8), 2)
    b16, s16 = yolov2_head(small, base * F32(32 / 16), 2)
    assert np.array_equal(got.boxes_xyxy_norm, np.concatenate([b8, b16], axis=1))
    assert np.array_equal(got.scores, np.concatenate([s8, s16], axis=1))
    request = DecoderRequest(model=__import__("pathlib").Path("m.onnx"), anchors=anchors)
    with pytest.raises(InputError, match="needs the network strides"):
        YoloxnDecoder.for_request(request)


def test_blazeface_anchors_and_round_trip() -> None:
    anchors = blazeface_anchors()
    assert anchors.shape == (896, 2)
    # Stride 8: a 16x16 grid, two anchors a cell; then the three stride-16 layers merged:
    # an 8x8 grid, six anchors a cell.
    assert anchors[0].tolist() == anchors[1].tolist() == [0.5 / 16, 0.5 / 16]
    assert anchors[2].tolist() == [1.5 / 16, 0.5 / 16]
    assert anchors[512].tolist() == anchors[517].tolist() == [0.5 / 8, 0.5 / 8]
    assert anchors[518].tolist() == [1.5 / 8, 0.5 / 8]
    rng = np.random.default_rng(4)
    boxes = _boxes(rng, 896)
    raw_boxes = rng.normal(size=(896, 16)).astype(F32)  # 12 keypoint values ride along
    raw_boxes[:, :2] = (boxes[:, :2] - anchors) * 128
    raw_boxes[:, 2:4] = boxes[:, 2:] * 128
    raw_scores = rng.normal(scale=3, size=(896, 1)).astype(F32)
    raw_scores[0, 0], raw_scores[1, 0] = 100.0, -100.0  # clipped to +-80 first
    outputs = {  # given in another order than the decoder wants them
        "s384": raw_scores[None, 512:], "b512": raw_boxes[None, :512],
        "b384": raw_boxes[None, 512:], "s512": raw_scores[None, :512],
    }  # fmt: skip
    got = BlazeFaceDecoder().decode(RawOutputs(outputs))
    assert np.allclose(got.boxes_xyxy_norm[0], _corners(boxes), atol=2e-6)
    want = 1 / (1 + np.exp(-np.clip(raw_scores.astype(np.float64), -80, 80)))
    assert np.allclose(got.scores[0], want, atol=1e-6)
    assert got.scores[0, 0, 0] == F32(1 / (1 + np.exp(F32(-80))))


def test_family_decoders_that_need_settings_say_so() -> None:
    path = __import__("pathlib").Path("m.onnx")
    with pytest.raises(InputError, match="needs the model's anchors"):
        YoloV2Decoder.for_request(DecoderRequest(model=path))
    decoder = YoloV2Decoder(anchors=((1.0, 1.0), (2.0, 2.0)))
    with pytest.raises(InputError, match="do not hold 2 anchors"):
        decoder.decode(RawOutputs({"grid": np.zeros((1, 2, 2, 13), F32)}))
    with pytest.raises(InputError, match="NaN or infinite"):
        UltralyticsDecoder().decode(RawOutputs({"o": np.full((1, 7, 9), np.nan, F32)}))
