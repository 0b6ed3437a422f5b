"""Decoders: hand-derived cases, independent plain implementations, autodetection.

The plain references below loop box by box in float64 with ``math``; the decoders work on
whole float32 arrays, so the comparisons allow float32 rounding (a few 1e-7) and no more.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from evalkit.errors import InputError
from evalkit.models.priors import ssd_priors
from evalkit.postprocess.decoders import (
    DECODED_OUTPUT_NAMES,
    DECODERS,
    ST_SSD_NUM_PRIORS,
    ST_SSD_OUTPUT_NAMES,
    DecodedDecoder,
    StSsdDecoder,
    TfodSsdDecoder,
    detect_decoder,
    load_coco_labels,
    tfod_class_names,
)
from evalkit.registry import UnknownNameError
from evalkit.types import RawOutputs

F32 = npt.NDArray[np.float32]
LN2, LN3 = math.log(2.0), math.log(3.0)


def f32(values: object) -> F32:
    return np.asarray(values, dtype=np.float32)


# ----------------------------------------------------------------------------- st-ssd


def test_st_ssd_hand_computed() -> None:
    priors = f32([[0.5, 0.5, 0.2, 0.4], [0.05, 0.95, 0.2, 0.2]])
    # Box 0: logits (0, ln 3, 0) -> exp (1, 3, 1) / 5 -> background 0.2 dropped -> (0.6, 0.2).
    # Box 1: equal logits -> 1/3 each.
    logits = f32([[[0.0, LN3, 0.0], [0.0, 0.0, 0.0]]])
    # Box 0 offsets (tx, ty, tw, th) = (1, -2, 0, 5 ln 2):
    #   cx = 1 * 0.1 * 0.2 + 0.5 = 0.52     cy = -2 * 0.1 * 0.4 + 0.5 = 0.42
    #   w = exp(0) * 0.2 = 0.2              h = exp(ln 2) * 0.4 = 0.8
    #   -> (0.52 - 0.1, 0.42 - 0.4, 0.52 + 0.1, 0.42 + 0.4) = (0.42, 0.02, 0.62, 0.82)
    # Box 1 offsets 0: the prior itself, (-0.05, 0.85, 0.15, 1.05), clipped to (0, .85, .15, 1).
    offsets = f32([[[1.0, -2.0, 0.0, 5 * LN2], [0.0, 0.0, 0.0, 0.0]]])
    out = StSsdDecoder(priors_cxcywh=priors).decode(
        RawOutputs({"output": logits, "417": offsets})  # the zoo export's naming
    )
    assert out.scores.dtype == np.float32 and out.boxes_xyxy_norm.dtype == np.float32
    np.testing.assert_allclose(out.scores, [[[0.6, 0.2], [1 / 3, 1 / 3]]], rtol=1e-6)
    np.testing.assert_allclose(
        out.boxes_xyxy_norm,
        [[[0.42, 0.02, 0.62, 0.82], [0.0, 0.85, 0.15, 1.0]]],
        rtol=0,
        atol=2e-7,
    )


def plain_st_ssd(logits: F32, offsets: F32, priors: F32) -> tuple[F32, F32]:
    """Box by box in float64: softmax, drop column 0, decode, corners, clip."""
    n, b, c = logits.shape
    scores = np.zeros((n, b, c - 1))
    boxes = np.zeros((n, b, 4))
    for i in range(n):
        for j in range(b):
            row = [float(v) for v in logits[i, j]]
            top = max(row)
            exps = [math.exp(v - top) for v in row]
            scores[i, j] = [e / sum(exps) for e in exps[1:]]
            tx, ty, tw, th = (float(v) for v in offsets[i, j])
            px, py, pw, ph = (float(v) for v in priors[j])
            cx, cy = tx * 0.1 * pw + px, ty * 0.1 * ph + py
            w, h = math.exp(tw * 0.2) * pw, math.exp(th * 0.2) * ph
            corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            boxes[i, j] = [min(max(v, 0.0), 1.0) for v in corners]
    return boxes.astype(np.float32), scores.astype(np.float32)


def random_st_outputs(seed: int, n: int, classes: int) -> tuple[F32, F32]:
    rng = np.random.default_rng(seed)
    logits = f32(rng.normal(0, 4, (n, ST_SSD_NUM_PRIORS, classes + 1)))
    offsets = f32(rng.normal(0, 2, (n, ST_SSD_NUM_PRIORS, 4)))
    return logits, offsets


def test_st_ssd_matches_plain_loop_on_a_subset() -> None:
    logits, offsets = random_st_outputs(1, 2, 20)
    out = StSsdDecoder().decode(RawOutputs({"output": logits, "417": offsets}))
    assert out.scores.shape == (2, 3000, 20) and out.boxes_xyxy_norm.shape == (2, 3000, 4)
    # Every 7th box keeps the Python loop quick while touching all six feature maps.
    pick = np.arange(0, ST_SSD_NUM_PRIORS, 7)
    boxes, scores = plain_st_ssd(logits[:, pick], offsets[:, pick], ssd_priors()[pick])
    np.testing.assert_allclose(out.scores[:, pick], scores, rtol=2e-6, atol=1e-12)
    np.testing.assert_allclose(out.boxes_xyxy_norm[:, pick], boxes, rtol=0, atol=5e-7)


def test_st_ssd_needs_one_other_output() -> None:
    zeros = f32(np.zeros((1, 3000, 4)))
    outputs = RawOutputs({"output": f32(np.zeros((1, 3000, 3))), "a": zeros, "b": zeros})
    with pytest.raises(InputError, match=r"one output besides 'output' .* \['a', 'b'\]"):
        StSsdDecoder().decode(outputs)
    out = StSsdDecoder(offsets_name="b").decode(outputs)
    assert out.boxes_xyxy_norm.shape == (1, 3000, 4)


def test_st_ssd_matches_the_deployed_decode() -> None:
    """The deployed export decodes inside the graph (models.ssd_mobilenetv2.decode)."""
    from evalkit.models.ssd_mobilenetv2 import decode, priors_tensor

    logits, offsets = random_st_outputs(4, 1, 20)
    out = StSsdDecoder().decode(RawOutputs({"output": logits, "417": offsets}))
    scores, boxes = decode(torch.from_numpy(logits), torch.from_numpy(offsets), priors_tensor())
    np.testing.assert_allclose(out.boxes_xyxy_norm, boxes.numpy(), rtol=0, atol=2.5e-7)
    np.testing.assert_allclose(out.scores, scores[..., 1:].numpy(), rtol=2e-6, atol=1e-12)


def test_st_ssd_matches_torch_box_utils() -> None:
    """The zoo's torch formulation (pytorch-ssd box_utils), float32 throughout."""
    logits, offsets = random_st_outputs(2, 2, 80)
    out = StSsdDecoder().decode(
        RawOutputs(dict(zip(ST_SSD_OUTPUT_NAMES, (logits, offsets), strict=True)))
    )
    priors, loc = torch.from_numpy(ssd_priors()), torch.from_numpy(offsets)
    centre_form = torch.cat(
        [
            loc[..., :2] * 0.1 * priors[..., 2:] + priors[..., :2],
            torch.exp(loc[..., 2:] * 0.2) * priors[..., 2:],
        ],
        dim=-1,
    )
    corners = torch.cat(
        [
            centre_form[..., :2] - centre_form[..., 2:] / 2,
            centre_form[..., :2] + centre_form[..., 2:] / 2,
        ],
        dim=-1,
    ).clamp(0, 1)
    scores = torch.softmax(torch.from_numpy(logits), dim=2)[..., 1:]
    # Same operations in the same order; only exp/sum kernels may differ by an ulp.
    np.testing.assert_allclose(out.boxes_xyxy_norm, corners.numpy(), rtol=0, atol=2.5e-7)
    np.testing.assert_allclose(out.scores, scores.numpy(), rtol=2e-6, atol=1e-12)


# ----------------------------------------------------------------------------- tfod-ssd


def test_tfod_hand_computed() -> None:
    anchors = f32([[0.5, 0.25, 0.2, 0.4]])  # (ya, xa, ha, wa)
    # (ty, tx, th, tw) = (1, -2.5, 5 ln 2, 0):
    #   yc = 1/10 * 0.2 + 0.5 = 0.52        xc = -2.5/10 * 0.4 + 0.25 = 0.15
    #   h = exp(ln 2) * 0.2 = 0.4           w = exp(0) * 0.4 = 0.4
    #   -> x1 = 0.15 - 0.2 = -0.05, y1 = 0.32, x2 = 0.35, y2 = 0.72
    enc = f32([[[1.0, -2.5, 5 * LN2, 0.0]]])
    scores = f32([[[0.9, 0.1, 0.7]]])  # column 0 (background) is dropped
    outputs = RawOutputs({"box_encodings": enc, "class_scores": scores})
    clipped = TfodSsdDecoder(anchors_ycxchw=anchors).decode(outputs)
    np.testing.assert_allclose(clipped.boxes_xyxy_norm, [[[0.0, 0.32, 0.35, 0.72]]], atol=2e-7)
    np.testing.assert_array_equal(clipped.scores, f32([[[0.1, 0.7]]]))
    raw = TfodSsdDecoder(anchors_ycxchw=anchors, clip=False).decode(outputs)
    np.testing.assert_allclose(raw.boxes_xyxy_norm, [[[-0.05, 0.32, 0.35, 0.72]]], atol=2e-7)


def test_tfod_matches_plain_loop() -> None:
    rng = np.random.default_rng(3)
    a = 50
    anchors = f32(np.column_stack([rng.uniform(0, 1, (a, 2)), rng.uniform(0.05, 0.9, (a, 2))]))
    enc = f32(rng.normal(0, 3, (2, a, 4)))
    scores = f32(rng.uniform(0, 1, (2, a, 91)))
    out = TfodSsdDecoder(anchors_ycxchw=anchors, clip=False).decode(
        RawOutputs({"box_encodings": enc, "class_scores": scores})
    )
    expected = np.zeros((2, a, 4))
    for i in range(2):
        for j in range(a):
            ty, tx, th, tw = (float(v) for v in enc[i, j])
            ya, xa, ha, wa = (float(v) for v in anchors[j])
            yc, xc = ty / 10 * ha + ya, tx / 10 * wa + xa
            h, w = math.exp(th / 5) * ha, math.exp(tw / 5) * wa
            expected[i, j] = (xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2)
    np.testing.assert_allclose(out.boxes_xyxy_norm, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out.scores, scores[..., 1:])


def test_tfod_class_names_from_a_label_file(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("0  person\n1  bicycle\n\n3  motorcycle\n5 traffic light\n")
    by_id = load_coco_labels(labels)
    assert by_id == {1: "person", 2: "bicycle", 4: "motorcycle", 6: "traffic light"}
    names = tfod_class_names(by_id, num_classes=6)
    assert names == ("person", "bicycle", "unused-3", "motorcycle", "unused-5", "traffic light")


@pytest.mark.parametrize("text", ["person\n", "0\n", "x person\n", "0 a\n0 b\n"])
def test_bad_label_file(tmp_path: Path, text: str) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text(text)
    with pytest.raises(InputError, match=r"labels\.txt: line"):
        load_coco_labels(labels)


def test_class_name_count_must_match_columns() -> None:
    outputs = RawOutputs(
        {"box_encodings": f32(np.zeros((1, 1, 4))), "class_scores": f32(np.zeros((1, 1, 4)))}
    )
    decoder = TfodSsdDecoder(anchors_ycxchw=f32([[0.5, 0.5, 0.1, 0.1]]), class_names=("a", "b"))
    with pytest.raises(InputError, match="2 class names given but the model has 3 class columns"):
        decoder.decode(outputs)


# ----------------------------------------------------------------------------- decoded


def test_decoded_with_and_without_background() -> None:
    scores = f32([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]])
    boxes = f32([[[0.1, 0.2, 0.3, 0.4], [-0.1, 0.0, 0.5, 1.2]]])
    outputs = RawOutputs({"out_scores": scores, "out_boxes": boxes})
    with_bg = DecodedDecoder().decode(outputs)  # boxes found as the (N, B, 4) output
    np.testing.assert_array_equal(with_bg.scores, scores[..., 1:])
    np.testing.assert_array_equal(with_bg.boxes_xyxy_norm, boxes)
    without = DecodedDecoder(has_background=False, clip=True).decode(outputs)
    np.testing.assert_array_equal(without.scores, scores)
    np.testing.assert_array_equal(
        without.boxes_xyxy_norm, f32([[[0.1, 0.2, 0.3, 0.4], [0, 0, 0.5, 1]]])
    )


# ----------------------------------------------------------------------------- bad outputs


def test_missing_output_lists_the_outputs() -> None:
    outputs = RawOutputs(
        {"logits": f32(np.zeros((1, 3000, 3))), "417": f32(np.zeros((1, 3000, 4)))}
    )
    with pytest.raises(
        InputError, match=r"m\.onnx: missing output 'output' \(class logits\).*'logits', '417'"
    ):
        StSsdDecoder(model="m.onnx").decode(outputs)


def test_wrong_shape_names_tensor_and_expected_shape() -> None:
    outputs = RawOutputs(
        {"output": f32(np.zeros((1, 1917, 3))), "417": f32(np.zeros((1, 1917, 4)))}
    )
    with pytest.raises(
        InputError,
        match=r"output 'output' \(class logits\): expected shape \(N, 3000, NC\+1\), "
        r"got \(1, 1917, 3\)",
    ):
        StSsdDecoder().decode(outputs)
    outputs = RawOutputs(
        {"output": f32(np.zeros((2, 3000, 3))), "417": f32(np.zeros((1, 3000, 4)))}
    )
    with pytest.raises(InputError, match=r"expected shape \(2, 3000, 4\), got \(1, 3000, 4\)"):
        StSsdDecoder().decode(outputs)


def test_nan_output_is_an_error() -> None:
    logits = f32(np.zeros((1, 3000, 3)))
    logits[0, 17, 2] = np.nan
    outputs = RawOutputs({"output": logits, "417": f32(np.zeros((1, 3000, 4)))})
    with pytest.raises(InputError, match=r"'output' \(class logits\) holds 1 NaN .*\(0, 17, 2\)"):
        StSsdDecoder().decode(outputs)


def test_logits_given_to_a_probability_decoder() -> None:
    outputs = RawOutputs(
        {"box_encodings": f32(np.zeros((1, 1, 4))), "class_scores": f32([[[-3.0, 4.0]]])}
    )
    with pytest.raises(
        InputError, match=r"expected probabilities in \[0, 1\], got values in \[-3, 4\]"
    ):
        TfodSsdDecoder(anchors_ycxchw=f32([[0.5, 0.5, 0.1, 0.1]])).decode(outputs)


# ----------------------------------------------------------------------------- detection


def test_registry_holds_the_three_forms() -> None:
    assert set(DECODERS.names()) == {
        "st-ssd", "tfod-ssd", "decoded", "final-detections",  # the SSD forms, TFLite's own
        "ultralytics", "yolox", "yolov2", "yoloxn", "blazeface",  # the zoo's other families
    }  # fmt: skip
    assert isinstance(DECODERS.get("st-ssd")(), StSsdDecoder)
    with pytest.raises(UnknownNameError, match="did you mean 'tfod-ssd'"):
        DECODERS.get("tfod")


def test_detect_tfod_from_the_shared_models_specs() -> None:
    # The shapes shared/README.md documents for float.onnx and int8_qat_qdq.onnx.
    specs = {"box_encodings": (1, 1917, 4), "class_scores": (1, 1917, 91)}
    name, why = detect_decoder(specs)
    assert name == "tfod-ssd"
    assert "box_encodings (1, 1917, 4)" in why and "TF-OD" in why


def test_detect_st_ssd_from_the_export_names() -> None:
    # The zoo export names only the logits; the offsets keep the exporter's number.
    specs = {"output": ("batch_size", 3000, 81), "417": ("batch_size", 3000, 4)}
    name, why = detect_decoder(specs)
    assert name == "st-ssd" and "3000 boxes" in why and "raw class logits" in why


def test_detect_deployed_from_the_export_names() -> None:
    name, why = detect_decoder({"scores": (1, 3000, 21), "boxes": (1, 3000, 4)})
    assert name == "decoded" and "deployed export's names" in why


def test_names_agree_with_the_export() -> None:
    from evalkit.models.export import DEPLOYED_OUTPUT_NAMES, ZOO_OUTPUT_NAMES

    assert ZOO_OUTPUT_NAMES[0] == ST_SSD_OUTPUT_NAMES[0]
    assert DEPLOYED_OUTPUT_NAMES == DECODED_OUTPUT_NAMES


@pytest.mark.parametrize(
    ("specs", "candidates"),
    [
        ({"a": (1, 3000, 21), "b": (1, 3000, 4)}, ("st-ssd", "decoded")),
        ({"a": (1, 1917, 91), "b": (1, 1917, 4)}, ("tfod-ssd", "decoded")),
    ],
)
def test_detect_ambiguous_lists_candidates(
    specs: dict[str, tuple[int, ...]], candidates: tuple[str, str]
) -> None:
    with pytest.raises(InputError, match="ambiguous") as info:
        detect_decoder(specs)
    message = str(info.value)
    assert all(f"{c}:" in message for c in candidates) and "Pass a decoder explicitly" in message


def test_detect_decoded_by_elimination_says_so() -> None:
    name, why = detect_decoder({"s": (1, 500, 81), "b": (1, 500, 4)})
    assert name == "decoded" and "no known raw form has 500 boxes" in why


@pytest.mark.parametrize(
    ("specs", "problem"),
    [
        ({"boxes": (1, 3000, 4)}, "expected two rank-3 outputs"),
        ({"a": (1, 10, 4), "b": (1, 10, 4), "c": (1, 10, 3)}, "expected two rank-3 outputs"),
        ({"a": (1, 10, 5), "b": (1, 10, 3)}, "cannot tell which output holds the boxes"),
        ({"a": (1, 10, 4), "b": (1, 11, 3)}, "outputs disagree on the box count"),
    ],
)
def test_detect_fails_clearly(specs: dict[str, tuple[int, ...]], problem: str) -> None:
    with pytest.raises(InputError, match=f"no decoder fits: {problem}"):
        detect_decoder(specs)
