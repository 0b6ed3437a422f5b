"""Host latency measurement: run counts, statistics from the raw runs, recorded settings,
inputs built from the model, errors, the ``evalkit bench`` command.

The tiny models are built here with onnx.helper so that these tests run in a second or two;
nothing asserts a speed, since timings depend on the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import evalkit.cli as cli
from evalkit.bench import latency
from evalkit.bench.latency import (
    LatencyComparison,
    LatencyResult,
    compare_latency,
    measure_latency,
)
from evalkit.errors import InputError

Dim = int | str


def _model(path: Path, shape: list[Dim], elem_type: int) -> Path:
    """X -> Cast(float) -> Relu -> Y: a one-input model of the given input shape and type."""
    x = helper.make_tensor_value_info("x", elem_type, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Relu", ["xf"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "tiny", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    # An IR version every onnxruntime this project supports can read.
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture
def float_model(tmp_path: Path) -> Path:
    """Float NCHW input with a dynamic batch axis."""
    return _model(tmp_path / "tiny_float.onnx", ["N", 3, 8, 8], TensorProto.FLOAT)


@pytest.fixture
def uint8_model(tmp_path: Path) -> Path:
    """uint8 NHWC input with a fixed batch of 1, like the TF-OD SSD exports."""
    return _model(tmp_path / "tiny_uint8.onnx", [1, 8, 8, 3], TensorProto.UINT8)


def _expect_summary_from_raw(result: LatencyResult) -> None:
    raw = np.asarray(result.raw_ms)
    s = result.summary
    p50, p90, p99 = np.percentile(raw, [50, 90, 99])
    assert (s.p50_ms, s.p90_ms, s.p99_ms) == (p50, p90, p99)
    assert (s.mean_ms, s.min_ms, s.max_ms, s.std_ms) == (
        raw.mean(),
        raw.min(),
        raw.max(),
        raw.std(),
    )
    assert s.images_per_s == result.settings.batch * 1000.0 / p50
    assert result.to_dict()["summary"]["p90_ms"] == p90


def test_counts_warmup_apart_and_stats_from_raw_runs(float_model: Path) -> None:
    ticks: list[int] = []
    result = measure_latency(float_model, runs=7, warmup=3, progress=ticks.append)
    assert len(result.raw_ms) == 7 and result.settings.runs == 7
    assert len(result.warmup_ms) == 3 and result.settings.warmup == 3
    # One progress tick per run, warm-ups included.
    assert ticks == [1] * 10
    assert all(t > 0 for t in (*result.raw_ms, *result.warmup_ms, result.session_create_ms))
    _expect_summary_from_raw(result)


def test_zero_warmup_and_single_run(float_model: Path) -> None:
    result = measure_latency(float_model, runs=1, warmup=0)
    assert result.warmup_ms == () and len(result.raw_ms) == 1
    assert result.summary.p50_ms == result.summary.p99_ms == result.raw_ms[0]
    assert result.summary.std_ms == 0.0


def test_threads_are_recorded_as_the_session_reports_them(float_model: Path) -> None:
    one = measure_latency(float_model, threads=1, runs=2, warmup=1).settings
    assert (one.threads, one.intra_op_threads, one.inter_op_threads) == (1, 1, 1)
    assert one.execution_mode == "ORT_SEQUENTIAL"
    default = measure_latency(float_model, runs=2, warmup=1).settings
    # 0 is onnxruntime's "choose for me" (one thread per physical core).
    assert (default.threads, default.intra_op_threads) == (None, 0)
    assert default.allow_spinning is True and default.provider == "CPUExecutionProvider"


def test_dynamic_batch_takes_the_batch(float_model: Path) -> None:
    result = measure_latency(float_model, batch=3, runs=4, warmup=1)
    (info,) = result.inputs
    assert (info.name, info.shape, info.dtype) == ("x", (3, 3, 8, 8), "float32")
    assert result.settings.batch == 3
    assert result.summary.images_per_s == 3 * 1000.0 / result.summary.p50_ms


def test_other_dynamic_axes_take_one(tmp_path: Path) -> None:
    path = _model(tmp_path / "hw.onnx", ["N", 3, "H", "W"], TensorProto.FLOAT)
    assert measure_latency(path, batch=2, runs=1, warmup=0).inputs[0].shape == (2, 3, 1, 1)


def test_uint8_input_and_fixed_batch(uint8_model: Path) -> None:
    result = measure_latency(uint8_model, runs=3, warmup=1)
    assert [(i.shape, i.dtype) for i in result.inputs] == [((1, 8, 8, 3), "uint8")]
    with pytest.raises(InputError, match=r"fixed batch of 1.*asked for batch 2"):
        measure_latency(uint8_model, batch=2, runs=1)


def test_random_input_is_fixed_by_the_seed_and_spans_the_dtype() -> None:
    info = latency.InputInfo("x", (1, 16, 16, 3), "uint8")
    a = latency._random_input(np.random.default_rng(0), info)
    b = latency._random_input(np.random.default_rng(0), info)
    assert a.dtype == np.uint8 and np.array_equal(a, b)
    assert a.min() < 16 and a.max() > 239  # 768 draws over 0..255 reach both ends
    f = latency._random_input(np.random.default_rng(0), latency.InputInfo("x", (64,), "float32"))
    assert f.dtype == np.float32 and f.min() >= -1.0 and f.max() < 1.0


def test_model_file_and_environment_are_recorded(float_model: Path) -> None:
    result = measure_latency(float_model, runs=2, warmup=0)
    assert result.model.sha256 == hashlib.sha256(float_model.read_bytes()).hexdigest()
    assert result.model.bytes == float_model.stat().st_size
    env = result.environment
    assert env["packages"]["onnxruntime"] == ort.__version__
    assert env["packages"]["numpy"] == np.__version__
    assert env["logical_cores"] == os.cpu_count()
    assert env["uname"]["machine"] == platform.machine()
    assert env["python"].endswith(platform.python_version())
    assert isinstance(env["cpu"], str) and env["cpu"]


def test_round_trip_through_json(float_model: Path) -> None:
    result = measure_latency(float_model, threads=1, batch=2, runs=3, warmup=1)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["schema"] == latency.SCHEMA_VERSION and data["kind"] == "latency"
    assert LatencyResult.from_dict(data) == result
    with pytest.raises(InputError, match="expected schema"):
        LatencyResult.from_dict({**data, "schema": 99})
    with pytest.raises(InputError, match="malformed"):
        LatencyResult.from_dict({k: v for k, v in data.items() if k != "raw_ms"})


def test_compare_interleaves_abba_and_reports_the_ratio(
    float_model: Path, uint8_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    real_run_once = latency._Bench.run_once

    def logged(self: latency._Bench) -> float:
        order.append(self.path.name)
        return real_run_once(self)

    monkeypatch.setattr(latency._Bench, "run_once", logged)
    ticks: list[int] = []
    pair = compare_latency(float_model, uint8_model, runs=4, warmup=2, progress=ticks.append)
    f, q = "tiny_float.onnx", "tiny_uint8.onnx"
    # Warm-ups first, each model on its own; then timed runs A B, B A, A B, B A.
    assert order == [f, f, q, q, f, q, q, f, f, q, q, f]
    assert len(ticks) == 12
    for result in (pair.float_result, pair.int8_result):
        assert (len(result.warmup_ms), len(result.raw_ms)) == (2, 4)
        assert result.settings.allow_spinning is False
        _expect_summary_from_raw(result)
    assert pair.ratio["p50"] == pair.int8_result.summary.p50_ms / pair.float_result.summary.p50_ms
    assert (
        pair.ratio["mean"] == pair.int8_result.summary.mean_ms / pair.float_result.summary.mean_ms
    )
    data = json.loads(json.dumps(pair.to_dict()))
    assert data["kind"] == "latency_comparison" and data["schedule"] == latency.COMPARE_SCHEDULE
    assert LatencyComparison.from_dict(data) == pair


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"this is not a protobuf", "onnxruntime cannot load"), (b"", "onnxruntime cannot load")],
)
def test_unloadable_file_names_the_file(tmp_path: Path, content: bytes, reason: str) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=reason) as info:
        measure_latency(bad, runs=1)
    assert info.value.path == str(bad)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found") as info:
        measure_latency(tmp_path / "missing.onnx", runs=1)
    assert info.value.path == str(tmp_path / "missing.onnx")
    with pytest.raises(InputError, match="found a directory"):
        measure_latency(tmp_path, runs=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"runs": 0}, "runs must be at least 1, got 0"),
        ({"warmup": -1}, "warmup must be at least 0, got -1"),
        ({"batch": 0}, "batch must be at least 1, got 0"),
        ({"threads": 0}, "threads must be at least 1"),
    ],
)
def test_bad_settings(float_model: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        measure_latency(float_model, **kwargs)


def test_cli_table_for_one_and_two_models(
    float_model: Path, uint8_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["bench", str(float_model), "--runs", "3", "--warmup", "1"]) == 0
    one = capsys.readouterr().out
    argv = ["bench", str(float_model), str(uint8_model), "--runs", "2", "--threads", "1"]
    assert cli.main(argv) == 0
    two = capsys.readouterr().out
    assert "p50 ms" in one and "img/s" in one and "session ms" in one
    assert "tiny_float.onnx" in one and "ratio" not in one
    assert "3 timed runs after 1 warm-up runs" in one
    assert "intra-op threads onnxruntime default" in one
    assert "ratio tiny_uint8.onnx / tiny_float.onnx" in two
    assert "intra-op threads 1," in two and "schedule: runs interleaved" in two


def test_cli_json(float_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", str(float_model), "--runs", "4", "--warmup", "2", "--batch", "2"]
    assert cli.main([*argv, "--threads", "1", "--json", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "latency" and len(data["raw_ms"]) == 4 and len(data["warmup_ms"]) == 2
    assert data["settings"]["batch"] == 2 and data["settings"]["intra_op_threads"] == 1
    assert data["inputs"] == [{"name": "x", "shape": [2, 3, 8, 8], "dtype": "float32"}]


@pytest.mark.parametrize("name", ["missing.onnx", "text.onnx"])
def test_cli_unusable_model_exits_2(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "text.onnx").write_text("not a model\n")
    assert cli.main(["bench", str(tmp_path / name), "--runs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evalkit bench: error:") and name in err


def test_shared_float_and_int8_models(shared_dir: Path) -> None:
    models = shared_dir / "models" / "ssd_mobilenet_v2_coco_tfod"
    paths = (models / "float.onnx", models / "int8_qat_qdq.onnx")
    pair = compare_latency(*paths, threads=1, runs=3, warmup=1)
    for path, result in zip(paths, (pair.float_result, pair.int8_result), strict=True):
        # Facts that hold whatever the precision: the TF-OD export's uint8 NHWC input.
        assert [(i.shape, i.dtype) for i in result.inputs] == [((1, 300, 300, 3), "uint8")]
        assert result.model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert result.model.bytes == path.stat().st_size
        assert (len(result.raw_ms), len(result.warmup_ms)) == (3, 1)
        assert result.settings.intra_op_threads == 1
        assert result.settings.provider == "CPUExecutionProvider"
        _expect_summary_from_raw(result)
    assert all(np.isfinite(v) and v > 0 for v in pair.ratio.values())
