"""Float-vs-int8 diagnostics on the demo network: per-tensor SQNR as onnxruntime computes it,
output and detection agreement, the plot, the CLI, and refusals of wrong model pairs.

Images are synthetic PNGs (tests/test_quantize.py's ``write_images``: seeded noise with a
black and a white patch), except the real-data test, which reads coco128.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
from onnxruntime.quantization.qdq_loss_debug import (
    collect_activations,
    compute_activation_error,
    create_activation_matching,
    modify_model_output_intermediate_tensors,
)

from evalkit.cli import quantize as quantize_cmd
from evalkit.datasets.preprocess import PREPROCESSORS
from evalkit.errors import InputError
from evalkit.models.export import export_onnx
from evalkit.models.ssd_mobilenetv2 import ssd_mobilenetv2_demo
from evalkit.quantize import folder_images, quantize_model, sample_images
from evalkit.quantize.diagnose import DiagnoseResult, diagnose, match_detections, plot_sqnr
from evalkit.types import ImageDetections
from tests.test_quantize import write_images


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(float model, int8 model, image folder), the int8 model calibrated on 3 images."""
    work = tmp_path_factory.mktemp("diagnose")
    images = work / "images"
    write_images(images, 5, seed=1)
    float_path = export_onnx(ssd_mobilenetv2_demo(3, seed=0), work / "float.onnx").path
    sample = sample_images(folder_images(images), str(images), count=3, seed=0)
    quantize_model(float_path, work / "int8.onnx", sample, progress=False)
    return float_path, work / "int8.onnx", images


@pytest.fixture(scope="module")
def result(pair: tuple[Path, Path, Path]) -> DiagnoseResult:
    float_path, int8_path, images = pair
    sample = sample_images(folder_images(images), str(images), count=3, seed=5)
    return diagnose(float_path, int8_path, sample, chunk=2)


def test_tensors_match_and_rank(result: DiagnoseResult) -> None:
    assert len(result.tensors) > 50 and result.unmatched_tensors == ()
    positions = [t.position for t in result.tensors]
    assert positions == sorted(positions)  # graph order
    worst = result.worst()
    assert [t.sqnr_db for t in worst] == sorted(t.sqnr_db for t in result.tensors)
    for t in (t for t in result.tensors if t.relative_error > 0):
        # Away from the epsilon floor, two views of one ratio: rel = 10^(-SQNR/20).
        assert math.isclose(t.relative_error, 10 ** (-t.sqnr_db / 20), rel_tol=1e-9)
    # The input quantizes losslessly: (x - 127) / 128 of uint8 pixels are multiples of the
    # 1/128 scale MinMax picks, so the noise is 0 and SQNR sits at onnxruntime's epsilon
    # floor, 20 log10(||x|| / eps).
    image_input = next(t for t in result.tensors if t.name == "input")
    assert image_input.op_type == "graph input" and image_input.position == -1
    assert image_input.relative_error == 0.0 and image_input.sqnr_db > 300


def test_sqnr_equals_onnxruntime_over_all_images(
    tmp_path: Path, pair: tuple[Path, Path, Path], result: DiagnoseResult
) -> None:
    """Sums over chunks of 2 images give onnxruntime's SQNR computed on all at once."""
    float_path, int8_path, _ = pair
    pre = PREPROCESSORS.get("st-ssd")
    batches = [pre.apply_file(f) for f in result.images.files]
    acts = {}
    for name, path in (("float", float_path), ("int8", int8_path)):
        augmented = tmp_path / f"{name}.onnx"
        modify_model_output_intermediate_tensors(str(path), str(augmented))
        acts[name] = collect_activations(str(augmented), iter([{"input": b} for b in batches]))
    matching = create_activation_matching(acts["int8"], acts["float"])
    expected = compute_activation_error(matching)
    gaps = [
        max(
            abs(t.sqnr_db - expected[t.name]["xmodel_err"]),
            abs(t.qdq_sqnr_db - expected[t.name]["qdq_err"]),
        )
        for t in result.tensors
    ]
    # onnxruntime takes the norms in float32 (a float32 sum over up to ~1e6 elements, relative
    # error ~1e-5), evalkit sums squares in float64: 1e-3 dB bounds that difference (3.3e-4
    # measured), far below anything a ranking depends on.
    assert max(gaps) < 1e-3


def test_outputs_and_detections(result: DiagnoseResult) -> None:
    assert [o.name for o in result.outputs] == ["scores", "boxes_xyxy_norm"]
    for o in result.outputs:
        assert 0 < o.relative_error < 1 and o.max_abs_error >= o.mean_abs_error > 0
    d = result.detections
    # The NMS keeps at most 100 per image: 3 images.
    assert 0 < d.float_detections <= 300 and 0 < d.int8_detections <= 300
    assert 0 < d.matched <= min(d.float_detections, d.int8_detections)
    assert d.precision == d.matched / d.int8_detections
    assert d.recall == d.matched / d.float_detections
    assert d.mean_iou is not None and 0.5 <= d.mean_iou <= 1.0
    record = result.to_dict()
    assert record["kind"] == "diagnose" and record["settings"]["decoder"] == "st-ssd"
    assert record["tensors"][0]["sqnr_db"] == result.worst(1)[0].sqnr_db
    json.dumps(record)


def _dets(boxes: list[list[float]], classes: list[int]) -> ImageDetections:
    n = len(boxes)
    return ImageDetections(
        boxes_xyxy_norm=np.array(boxes, np.float32).reshape(n, 4),
        scores=np.linspace(0.9, 0.1, n, dtype=np.float32),
        class_index=np.array(classes, np.int64),
    )


def test_match_detections_by_hand() -> None:
    reference = _dets([[0, 0, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0], [0, 0, 0.4, 0.4]], [0, 0, 1])
    candidate = _dets(
        [
            [0, 0, 0.4, 0.2],  # IoU 0.5 with reference 0 (area .08 / .16): a match, at 0.5
            [0, 0, 0.4, 0.4],  # same box as reference 0, already taken; class 0: no match
            [0.5, 0.5, 1.0, 1.0],  # reference 1 exactly: IoU 1
            [0, 0, 0.4, 0.4],  # class 1: reference 2 exactly
        ],
        [0, 0, 0, 1],
    )
    assert match_detections(reference, candidate) == pytest.approx([0.5, 1.0, 1.0])
    assert match_detections(reference, _dets([], [])) == []
    # Same boxes, other class: nothing matches.
    assert match_detections(reference, _dets([[0.5, 0.5, 1.0, 1.0]], [1])) == []


def test_plot_is_a_png(tmp_path: Path, result: DiagnoseResult) -> None:
    path = plot_sqnr(result, tmp_path / "plots" / "sqnr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wrong_pairs_are_refused(pair: tuple[Path, Path, Path], result: DiagnoseResult) -> None:
    float_path, int8_path, _ = pair
    with pytest.raises(InputError, match="expected a QDQ-quantized model") as info:
        diagnose(float_path, float_path, result.images)
    assert str(float_path) in str(info.value)
    with pytest.raises(InputError, match="already quantized"):
        diagnose(int8_path, int8_path, result.images)


def test_cli_diagnose(
    tmp_path: Path, pair: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    float_path, int8_path, images = pair
    parser = argparse.ArgumentParser(prog="evalkit")
    quantize_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    argv = ["diagnose", str(float_path), str(int8_path), "--images", str(images), "--count", "2"]
    args = parser.parse_args([*argv, "--out", str(tmp_path), "--top", "5"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "Activations, worst 5 of" in text and "Detections after NMS" in text
    record = json.loads((tmp_path / "diagnose.json").read_text())
    assert record["images"]["count"] == 2
    assert (tmp_path / "diagnose_sqnr.png").is_file()


def test_real_images(shared_dir: Path, pair: tuple[Path, Path, Path]) -> None:
    folder = shared_dir / "data" / "coco128" / "images"
    sample = sample_images(folder_images(folder), str(folder), count=2, seed=0)
    found = diagnose(pair[0], pair[1], sample)
    assert found.images.files == sample.files and found.tensors
    assert found.detections.float_detections > 0
