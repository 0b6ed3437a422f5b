"""Static quantization: zoo settings applied, determinism, calibration sampling, fidelity of
the int8 file sizes, and clear errors on bad input.

Models are exported here from seeded weights (the demo network for most tests, the full one
for the size check); calibration images are synthetic PNGs written into tmp_path (seeded
noise plus a black and a white patch, so the input range is exactly [0, 255]), except the
real-data test, which reads coco128 from ``$EVALKIT_DATA``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from evalkit.cli import quantize as quantize_cmd
from evalkit.datasets.preprocess import PREPROCESSORS
from evalkit.errors import InputError
from evalkit.models.export import export_onnx
from evalkit.models.ssd_mobilenetv2 import ssd_mobilenetv2, ssd_mobilenetv2_demo
from evalkit.quantize import (
    ZOO_SETTINGS,
    ImageCalibrationReader,
    QuantizeSettings,
    dataset_images,
    folder_images,
    quantize_for_run,
    quantize_model,
    sample_images,
)
from evalkit.references import reference_for
from evalkit.registry import UnknownNameError


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Seeded synthetic PNGs of assorted sizes, each with pure black and white patches."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        h, w = [(300, 300), (240, 320), (480, 360)][i % 3]
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        image[:60, :60] = 0
        image[-60:, -60:] = 255
        path = folder / f"img_{i:02d}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("quantize")


@pytest.fixture(scope="module")
def images(work: Path) -> Path:
    write_images(work / "images", 6)
    return work / "images"


@pytest.fixture(scope="module")
def demo_float(work: Path) -> Path:
    return export_onnx(ssd_mobilenetv2_demo(3, seed=0), work / "demo.onnx").path


@pytest.fixture(scope="module")
def demo_int8(work: Path, demo_float: Path, images: Path) -> tuple[Path, object]:
    sample = sample_images(folder_images(images), str(images), count=3, seed=0)
    result = quantize_model(demo_float, work / "demo_int8.onnx", sample, progress=False)
    return result.int8_model.path, result


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _axis(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "axis"), None)


def test_zoo_settings_are_the_reference_recipe() -> None:
    # reference-pipeline.md section 5, field by field.
    assert ZOO_SETTINGS.to_dict() == {
        "pre_process": {
            "skip_optimization": False,
            "skip_onnx_shape": False,
            "skip_symbolic_shape": True,
        },
        "quant_format": "QDQ",
        "method": "MinMax",
        "per_channel": True,
        "activation_type": "QInt8",
        "weight_type": "QInt8",
        "extra_options": {
            "WeightSymmetric": True,
            "ActivationSymmetric": False,
            "QuantizeBias": True,
        },
        "exclude_nodes": [],
        "exclude_op_types": [],
        "zoo_settings": True,
    }


def test_int8_graph_carries_the_zoo_settings(demo_int8: tuple[Path, object]) -> None:
    model = onnx.load(str(demo_int8[0]))
    init = _initializers(model)
    producer = {out: n for n in model.graph.node for out in n.output}
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert not ops & {"QLinearConv", "ConvInteger", "MatMulInteger"}  # QDQ, not QOperator
    # Float input and output: the interface is unchanged.
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs
    for conv in convs:
        x_dq, w_dq, b_dq = (producer[name] for name in conv.input)
        assert {x_dq.op_type, w_dq.op_type, b_dq.op_type} == {"DequantizeLinear"}
        weight, w_scale, w_zero = (init[name] for name in w_dq.input)
        # Per-channel along the output channels, int8, symmetric (all zero points 0).
        assert weight.dtype == np.int8
        assert _axis(w_dq) == 0 and w_scale.shape == (weight.shape[0],)
        assert w_zero.dtype == np.int8 and not w_zero.any()
        # QuantizeBias: int32 bias whose scale is input scale x weight scale, zero point 0.
        bias, b_scale, b_zero = (init[name] for name in b_dq.input)
        assert bias.dtype == np.int32 and not b_zero.any()
        x_scale = init[x_dq.input[1]]
        np.testing.assert_array_equal(b_scale, (x_scale * w_scale).astype(np.float32))
    # Asymmetric activations: the input spans (0 - 127)/128 .. (255 - 127)/128, so MinMax
    # gives scale (1 + 127/128) / 255 = 1/128 and zero point round(-128 + 127) = -1.
    q_input = next(n for n in model.graph.node if n.input[0] == "input")
    assert q_input.op_type == "QuantizeLinear"
    assert init[q_input.input[1]] == np.float32(1 / 128)
    assert init[q_input.input[2]] == np.int8(-1)


def test_result_records_what_was_done(demo_float: Path, demo_int8: tuple[Path, object]) -> None:
    path, result = demo_int8
    record = result.to_dict()  # type: ignore[attr-defined]
    data = path.read_bytes()
    assert record["int8_model"] == {
        "path": str(path),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert record["float_model"]["bytes"] == demo_float.stat().st_size
    assert record["seed"] == 0
    assert record["calibration"]["count"] == 3
    assert record["calibration"]["population"] == 6
    assert record["calibration"]["files"] == [str(p) for p in result.calibration.files]  # type: ignore[attr-defined]
    assert record["preprocessor"]["name"] == "st-ssd"
    assert record["onnxruntime_version"]
    assert record["counts"]["int8_nodes"]["QuantizeLinear"] > 0
    assert set(record["durations_s"]) >= {"pre_process", "calibrate_and_quantize", "total"}
    assert record["environment"]["packages"]["onnxruntime"]
    json.dumps(record)  # plain JSON values only


def test_deterministic_across_paths_and_processes(
    tmp_path: Path, demo_float: Path, demo_int8: tuple[Path, object], images: Path
) -> None:
    reference = demo_int8[0].read_bytes()
    # Another float path and output folder, same process.
    copy = tmp_path / "elsewhere" / "model copy.onnx"
    copy.parent.mkdir()
    shutil.copy(demo_float, copy)
    sample = sample_images(folder_images(images), str(images), count=3, seed=0)
    again = quantize_model(copy, tmp_path / "out" / "int8.onnx", sample, progress=False)
    assert again.int8_model.path.read_bytes() == reference
    # A fresh process with another hash seed, pinned to one CPU (so onnxruntime sizes its
    # thread pool differently from this process's).
    script = (
        "import os, sys\n"
        "if hasattr(os, 'sched_setaffinity'):\n"
        "    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from evalkit.quantize import *; "
        "s = sample_images(folder_images(sys.argv[1]), sys.argv[1], count=3, seed=0); "
        "quantize_model(sys.argv[2], sys.argv[3], s, progress=False)"
    )
    target = tmp_path / "proc.onnx"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run(
        [sys.executable, "-c", script, str(images), str(demo_float), str(target)],
        check=True,
        env=env,
        capture_output=True,
    )
    assert target.read_bytes() == reference


def test_sampling_is_seeded_recorded_and_one_percent() -> None:
    files = [Path(f"im_{i:05d}.jpg") for i in range(5000)]
    # 1% by default, floor, at least one: 5000 -> 50, 4952 -> 49, 99 -> 1 (0.99 floors to 0).
    assert len(sample_images(files, "s", check=False).files) == 50
    assert len(sample_images(files[:4952], "s", check=False).files) == 49
    assert len(sample_images(files[:99], "s", check=False).files) == 1
    a = sample_images(files, "s", seed=3, check=False)
    assert a == sample_images(files, "s", seed=3, check=False)
    assert a.files != sample_images(files, "s", seed=4, check=False).files
    assert list(a.files) == sorted(a.files) and len(set(a.files)) == 50
    expected = np.sort(np.random.default_rng(3).choice(5000, 50, replace=False))
    assert a.files == tuple(files[i] for i in expected)
    counted = sample_images(files, "s", count=7, fraction=0.5, check=False)
    assert len(counted.files) == 7 and counted.to_dict()["fraction"] is None


@pytest.mark.parametrize(
    ("count", "fraction", "message"),
    [
        (11, None, "asked for 11 calibration images but the calibration set holds only 10"),
        (0, None, "expected a calibration count >= 1"),
        (None, 0.0, "expected a calibration fraction in (0, 1]"),
        (None, 1.5, "expected a calibration fraction in (0, 1]"),
    ],
)
def test_bad_sample_sizes(count: int | None, fraction: float | None, message: str) -> None:
    files = [Path(f"{i}.jpg") for i in range(10)]
    with pytest.raises(InputError, match=re.escape(message)):
        sample_images(files, "calib/dir", count=count, fraction=fraction, check=False)


def test_empty_missing_and_unreadable_calibration_sets(tmp_path: Path, demo_float: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match="empty calibration set") as info:
        folder_images(empty)
    assert str(empty) in str(info.value)
    with pytest.raises(InputError, match="does not exist"):
        folder_images(tmp_path / "missing")
    bad = tmp_path / "bad"
    write_images(bad, 2)
    (bad / "broken.jpg").write_bytes(b"this is not a jpeg")
    # Header check at sampling time names the file before any quantization starts.
    with pytest.raises(InputError) as info:
        sample_images(folder_images(bad), str(bad), count=3)
    assert "broken.jpg" in str(info.value)
    # Unchecked, the calibration reader reports it while onnxruntime calibrates.
    sample = sample_images(folder_images(bad), str(bad), count=3, check=False)
    out = tmp_path / "never.onnx"
    with pytest.raises(InputError) as info:
        quantize_model(demo_float, out, sample, progress=False)
    assert "broken.jpg" in str(info.value)
    assert not out.exists() and not out.with_name("never.onnx.partial").exists()


def test_already_quantized_model_is_refused(
    tmp_path: Path, demo_int8: tuple[Path, object], images: Path
) -> None:
    sample = sample_images(folder_images(images), str(images), count=1)
    with pytest.raises(InputError, match=r"already quantized: .*QuantizeLinear.*QDQ") as info:
        quantize_model(demo_int8[0], tmp_path / "twice.onnx", sample, progress=False)
    assert str(demo_int8[0]) in str(info.value)
    # QOperator / integer-operator form: a tiny graph with one ConvInteger node.
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("ConvInteger", ["x", "w"], ["y"], name="conv")],
        "tiny",
        [
            onnx.helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, [1, 3, 8, 8]),
            onnx.helper.make_tensor_value_info("w", onnx.TensorProto.UINT8, [4, 3, 3, 3]),
        ],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT32, None)],
    )
    tiny = tmp_path / "tiny_integer.onnx"
    onnx.save(onnx.helper.make_model(graph), str(tiny))
    with pytest.raises(InputError, match=r"already quantized: 1 ConvInteger \(integer operators\)"):
        quantize_model(tiny, tmp_path / "x.onnx", sample, progress=False)


def test_not_a_model_and_bad_dataset_specs(tmp_path: Path, images: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"")
    sample = sample_images(folder_images(images), str(images), count=1)
    with pytest.raises(InputError, match="expected an ONNX float model"):
        quantize_model(junk, tmp_path / "x.onnx", sample, progress=False)
    with pytest.raises(InputError, match="float model ONNX file not found"):
        quantize_model(tmp_path / "nope.onnx", tmp_path / "x.onnx", sample, progress=False)
    with pytest.raises(InputError, match="expected a dataset SPEC KIND:FIRST:SECOND"):
        dataset_images("coco:only-one-part")
    with pytest.raises(UnknownNameError, match="unknown dataset kind 'cocoa'"):
        dataset_images("cocoa:a.json:images")


def test_exclusions_leave_nodes_in_float(tmp_path: Path, demo_float: Path, images: Path) -> None:
    sample = sample_images(folder_images(images), str(images), count=1)
    prepared = onnx.load(str(demo_float))
    first_conv = next(n.name for n in prepared.graph.node if n.op_type == "Conv")
    settings = QuantizeSettings(exclude_nodes=(first_conv,))
    result = quantize_model(demo_float, tmp_path / "ex.onnx", sample, settings, progress=False)
    model = onnx.load(str(result.int8_model.path))
    conv = next(n for n in model.graph.node if n.name == first_conv)
    weights = {t.name: t for t in model.graph.initializer}
    assert weights[conv.input[1]].data_type == onnx.TensorProto.FLOAT
    assert result.to_dict()["settings"]["zoo_settings"] is False
    with pytest.raises(InputError, match="unknown: 'nonexistent_node'"):
        quantize_model(
            demo_float,
            tmp_path / "x.onnx",
            sample,
            QuantizeSettings(exclude_nodes=("nonexistent_node",)),
            progress=False,
        )
    with pytest.raises(InputError, match=r"no node of op type \['Gemm'\]"):
        quantize_model(
            demo_float,
            tmp_path / "x.onnx",
            sample,
            QuantizeSettings(exclude_op_types=("Gemm",)),
            progress=False,
        )
    with pytest.raises(InputError, match="calibration method"):
        QuantizeSettings(method="Histogram")  # type: ignore[arg-type]


def test_reader_streams_evaluation_preprocessing(images: Path) -> None:
    files = folder_images(images)[:2]
    reader = ImageCalibrationReader(files, "input", PREPROCESSORS.get("st-ssd"), progress=False)
    assert len(reader) == 2
    for path in files:
        item = reader.get_next()
        assert item is not None and list(item) == ["input"]
        np.testing.assert_array_equal(item["input"], PREPROCESSORS.get("st-ssd").apply_file(path))
    assert reader.get_next() is None and reader.fed == 2


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="evalkit")
    quantize_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_cli_quantize(
    tmp_path: Path,
    demo_float: Path,
    demo_int8: tuple[Path, object],
    images: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, record = tmp_path / "cli.onnx", tmp_path / "cli.json"
    argv = ["quantize", str(demo_float), "--out", str(out), "--calib-images", str(images)]
    assert _run_cli([*argv, "--calib-count", "3", "--record", str(record), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "the zoo's settings" in text and "3 of 6 images" in text
    assert out.read_bytes() == demo_int8[0].read_bytes()  # same seed, same draw, same bytes
    assert json.loads(record.read_text())["calibration"]["count"] == 3
    # Default: 1% of 6 images floors to 0, so one image.
    assert _run_cli([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calibration"]["count"] == 1
    with pytest.raises(InputError, match="asked for 7 calibration images"):
        _run_cli([*argv, "--calib-count", "7"])


# Published int8 sizes (reference-pipeline.md section 1): ours must be within 0.5%.
@pytest.mark.parametrize("dataset", ["coco_person", "voc", "coco"])
def test_int8_size_matches_published(tmp_path: Path, images: Path, dataset: str) -> None:
    entry = reference_for("ssd_mobilenetv2_pt", dataset)
    float_path = export_onnx(
        ssd_mobilenetv2(entry.dataset.classes + 1, seed=0), tmp_path / "f.onnx"
    )
    sample = sample_images(folder_images(images), str(images), count=2, seed=0)
    result = quantize_model(float_path.path, tmp_path / "q.onnx", sample, progress=False)
    published = entry.files["int8"].bytes
    relative = abs(result.int8_model.bytes - published) / published
    assert relative <= 5e-3, (result.int8_model.bytes, published, relative)


def test_real_images_one_percent_of_coco128(
    shared_dir: Path, tmp_path: Path, demo_float: Path
) -> None:
    folder = shared_dir / "data" / "coco128" / "images"
    sample = sample_images(folder_images(folder), str(folder))
    assert sample.population == 128 and len(sample.files) == 1  # floor(1.28) = 1
    result = quantize_model(demo_float, tmp_path / "coco128.onnx", sample, progress=False)
    assert result.to_dict()["calibration"]["files"] == [str(sample.files[0])]
    assert result.node_counts["QuantizeLinear"] > 0


class _FolderDataset:
    """Just what quantize_for_run reads of a Dataset: name, folder, length, image paths."""

    def __init__(self, folder: Path) -> None:
        self.name, self.image_dir = "synthetic", folder
        self._files = folder_images(folder)

    def __len__(self) -> int:
        return len(self._files)

    def image_path(self, index: int) -> Path:
        return self._files[index]


def test_quantize_for_run_writes_model_and_record(
    tmp_path: Path, demo_float: Path, demo_int8: tuple[Path, object], images: Path
) -> None:
    dataset = _FolderDataset(images)
    made = quantize_for_run(demo_float, tmp_path / "models" / "int8.onnx", dataset, count=3)  # type: ignore[arg-type]
    path = made.path
    assert made.calibration.files == demo_int8[1].calibration.files  # type: ignore[attr-defined]
    assert path.read_bytes() == demo_int8[0].read_bytes()  # same images, same seed
    record = json.loads((tmp_path / "models" / "int8.quantize.json").read_text())
    assert record["calibration"]["files"] == [str(p) for p in demo_int8[1].calibration.files]  # type: ignore[attr-defined]
