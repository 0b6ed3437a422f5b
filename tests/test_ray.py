"""The Ray executor on a local cluster started by these tests (``ray.init(num_cpus=2)``):
the same numbers and byte-identical detections as the local executor, on the demo set
(float and an int8 the run quantizes) and on coco128 with the shared model; a killed actor
is restarted and its batch retried; an interrupted run resumes from the cache."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

from evalkit.cli import main
from evalkit.datasets.dataset import open_coco
from evalkit.datasets.synthetic import generate
from evalkit.demo import export_demo_models, load_demo_record
from evalkit.errors import InputError
from evalkit.matrix.table import load_matrix_cells
from evalkit.pipeline.config import QuantizeConfig, RunConfig, VariantConfig, load_config
from evalkit.pipeline.executors import ExecutorConfig, RunnerSpec
from evalkit.pipeline.predict import predict
from evalkit.pipeline.ray_executor import RayExecutor
from evalkit.pipeline.run import run
from evalkit.postprocess.decoders import TfodSsdDecoder
from evalkit.postprocess.nms import NmsSettings
from evalkit.record import load_result
from evalkit.runners.onnx import OnnxRunner

from .conftest import REPO


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    # One fake board: a matrix cell that needs it holds it alone. No usage reports.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2,
        resources={"board": 1},
        include_dashboard=False,
        logging_level=logging.ERROR,
        _node_ip_address="127.0.0.1",  # the test cluster talks on the loopback only
    )
    yield
    ray.shutdown()


def _same_outputs(a: Path, b: Path) -> None:
    """Two run folders hold the same numbers and byte-identical detections files."""
    first, second = load_result(a), load_result(b)
    assert set(first.variants) == set(second.variants)
    for name, variant in first.variants.items():
        assert variant.protocols == second.variants[name].protocols
        detections = (a / variant.detections).read_bytes()
        assert detections == (b / variant.detections).read_bytes()
        assert len(detections) > 1000


def test_demo_set_float_and_int8_equal_the_local_run(
    small_set: tuple[Path, RunConfig], tmp_path: Path
) -> None:
    _, config = small_set
    variants = {
        **config.variants,
        "int8": VariantConfig(quantize=QuantizeConfig(source="float", calib_count=2)),
    }
    config = replace(config, variants=variants, batch_size=2)
    local = run(replace(config, output=str(tmp_path / "local")), log=lambda _: None)
    on_ray = replace(
        config,
        output=str(tmp_path / "ray"),
        executor=ExecutorConfig(kind="ray", actors=2),
    )
    remote = run(on_ray, log=lambda _: None)
    _same_outputs(local.out_dir, remote.out_dir)
    executor = remote.record.executor or {}
    assert executor["kind"] == "ray" and executor["actors"] == {"float": 2, "int8": 2}
    assert local.record.executor == {"kind": "local"}


def test_coco128_with_the_shared_model_equals_the_local_run(
    shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALKIT_DATA", str(shared_dir))
    config = REPO / "benchmarks" / "configs" / "tfod_coco128.yaml"
    base = {"quiet": True, "latency.runs": 0}
    local = load_config(config, {**base, "output": str(tmp_path / "local")})
    assert main(
        ["run", str(config), "--executor", "ray", "--out", str(tmp_path / "ray"), "--quiet",
         "--set", "latency.runs=0"]
    ) == 0  # fmt: skip
    run(local, log=lambda _: None)
    _same_outputs(tmp_path / "local", tmp_path / "ray")
    assert load_result(tmp_path / "ray").dataset.num_images == 128


def _tfod(shared_dir: Path) -> tuple[Any, OnnxRunner, TfodSsdDecoder, RunnerSpec]:
    model_dir = shared_dir / "models" / "ssd_mobilenet_v2_coco_tfod"
    data = shared_dir / "data" / "coco128"
    dataset = open_coco(data / "annotations" / "instances_train2017.json", data / "images")
    runner = OnnxRunner(model_dir / "int8_qat_qdq.onnx", batch_size=4)
    decoder = TfodSsdDecoder.from_model_dir(model_dir)
    spec = RunnerSpec(model_dir / "int8_qat_qdq.onnx", {"batch_size": 4})
    return dataset, runner, decoder, spec


def test_a_killed_actor_is_restarted_and_its_batch_retried(shared_dir: Path) -> None:
    dataset, runner, decoder, spec = _tfod(shared_dir)
    indices = list(range(32))
    local = predict(dataset, runner, decoder, NmsSettings(), batch_size=4, indices=indices,
                    progress=False)  # fmt: skip
    executor = RayExecutor(ExecutorConfig(kind="ray", actors=2))
    variant = executor.for_variant("qat", spec)
    killed: list[int] = []

    def kill_once(_: int) -> None:
        if not killed:
            actor = ray.get_actor(f"evalkit-{executor.token}-qat-0")
            killed.append(ray.get(actor.pid.remote()))
            ray.kill(actor, no_restart=False)

    remote = predict(dataset, runner, decoder, NmsSettings(), batch_size=4, indices=indices,
                     progress=False, executor=variant, on_batch=kill_once)  # fmt: skip
    assert killed and remote.image_indices == local.image_indices
    for a, b in zip(remote.per_image, local.per_image, strict=True):
        assert a.boxes_xyxy_norm.tobytes() == b.boxes_xyxy_norm.tobytes()
        assert a.scores.tobytes() == b.scores.tobytes()
        assert a.class_index.tobytes() == b.class_index.tobytes()


def test_an_interrupted_ray_run_resumes_from_its_cache(
    small_set: tuple[Path, RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, config = small_set
    config = replace(config, batch_size=1, executor=ExecutorConfig(kind="ray", actors=1))
    local = run(replace(config, output=str(tmp_path / "local"), executor=ExecutorConfig()))
    real = predict
    calls: list[int] = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        def stop(count: int) -> None:
            calls.append(count)
            if len(calls) == 3:
                raise KeyboardInterrupt

        return real(*args, **{**kwargs, "on_batch": stop})

    monkeypatch.setattr("evalkit.pipeline.variant.predict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(config, log=lambda _: None)
    monkeypatch.setattr("evalkit.pipeline.variant.predict", real)
    resumed = run(config, log=lambda _: None)
    timings = resumed.record.variants["float"].timings
    assert timings is not None and timings.cached_images == 3 and timings.images == 3
    _same_outputs(local.out_dir, resumed.out_dir)


def test_without_ray_the_executor_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a)
    )
    with pytest.raises(InputError, match=r"pip install 'evalkit\[ray\]'"):
        load_config(None, {"variants.a.model": "m.onnx", "executor.kind": "ray"})
    path = tmp_path / "c.yaml"
    path.write_text("variants: {a: {model: m.onnx}}\n")
    assert main(["run", str(path), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "executor.kind: the ray executor needs Ray: pip install 'evalkit[ray]'" in err
    assert main(["run", str(path), "--executor", "dask"]) == 2
    assert "unknown executor 'dask'" in capsys.readouterr().err


def _matrix(root: Path, out: str, **extra: Any) -> Path:
    """A 2 x 2 matrix on the demo set: the demo model (float and an int8 the run makes)
    and its deployed export, on the synthetic set's COCO and VOC layouts."""
    demo = load_demo_record()
    names = list(demo.class_names)
    data = root / "data"
    if not (root / "models" / "float.onnx").is_file():
        generate(data, **{**demo.dataset_arguments, "num_train": 2, "num_val": 6})
        export_demo_models(demo, root)
    models = root / "models"
    spec: dict[str, Any] = {
        "name": "demo matrix",
        "output": str(root / out),
        "quiet": True,
        "run": {"protocols": ["st", "coco"], "latency": {"runs": 0}, "batch_size": 2},
        "datasets": {
            "coco_val": {
                "format": "coco",
                "annotations": str(data / "coco" / "annotations" / "instances_val.json"),
                "images": str(data / "coco" / "images" / "val"),
            },
            "voc_val": {
                "format": "voc",
                "root": str(data / "VOCdevkit" / "VOC2012"),
                "split": "val",
                "classes": names,
            },
        },
        "models": {
            "demo": {
                "variants": {
                    "float": {"model": str(models / "float.onnx"), "class_names": names},
                    "int8": {"quantize": {"source": "float", "calib_count": 2},
                             "class_names": names},
                },
                "reference": {"model": "ssd_mobilenetv2_pt", "context_only": True},
            },
            "deployed": {
                "variants": {
                    "float": {"model": str(models / "deployed.onnx"), "decoder": "decoded",
                              "class_names": names},
                },
            },
        },
        **extra,
    }  # fmt: skip
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_2x2_matrix_on_ray_equals_the_local_one_and_gates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = _matrix(tmp_path, "local")
    assert main(["matrix", str(local)]) == 0
    assert main(["matrix", str(_matrix(tmp_path, "ray")), "--executor", "ray"]) == 0
    out = capsys.readouterr().out
    assert "| demo | voc_val | int8 |" in out and "| deployed | coco_val | float |" in out
    cells = load_matrix_cells(tmp_path / "ray")
    assert [c.key for c in cells] == [
        "demo/coco_val", "demo/voc_val", "deployed/coco_val", "deployed/voc_val"
    ]  # fmt: skip
    for cell in cells:
        _same_outputs(tmp_path / "local" / cell.model / cell.dataset,
                      tmp_path / "ray" / cell.model / cell.dataset)  # fmt: skip
        assert cell.record is not None and cell.record.ap50("float" if cell.model == "deployed"
                                                            else "int8", "st") > 0.5  # fmt: skip
    record = json.loads((tmp_path / "ray" / "matrix.json").read_text())
    assert record["executor"]["kind"] == "ray" and record["executor"]["cells"] == 4
    # Gate: the ray matrix against the local one passes; a cell that lost AP fails, named.
    ray_dir, local_dir = str(tmp_path / "ray"), str(tmp_path / "local")
    assert main(["check", ray_dir, "--baseline", local_dir, "--no-latency"]) == 0
    assert "PASS" in capsys.readouterr().out
    cell_file = tmp_path / "local" / "demo" / "voc_val" / "result.json"
    data = json.loads(cell_file.read_text())
    data["variants"]["int8"]["protocols"]["st"]["AP50"] += 0.02
    cell_file.write_text(json.dumps(data))
    assert main(["check", ray_dir, "--baseline", local_dir, "--no-latency"]) == 1
    assert "fail    ap50 demo/voc_val:int8/st" in capsys.readouterr().out
    # A matrix is checked against a matrix, never against one run.
    assert main(["check", ray_dir, "--baseline", str(cell_file), "--no-latency"]) == 2


def _intervals(folder: Path) -> list[tuple[float, float]]:
    cells = json.loads((folder / "matrix.json").read_text())["cells"]
    assert all(c["status"] == "ok" for c in cells)
    return sorted((c["started"], c["finished"]) for c in cells)


def test_cells_that_need_the_board_run_one_at_a_time(tmp_path: Path) -> None:
    path = _matrix(tmp_path, "board", executor={"kind": "ray"})
    spec = yaml.safe_load(path.read_text())
    del spec["datasets"]["voc_val"]
    for model in spec["models"].values():
        model["resources"] = {"board": 1}
    path.write_text(yaml.safe_dump(spec))
    assert main(["matrix", str(path)]) == 0
    first, second = _intervals(tmp_path / "board")
    assert first[1] <= second[0]  # the second cell waited for the board
    # Without the board, the same two cells share the cluster's two CPUs.
    for model in spec["models"].values():
        del model["resources"]
    spec["output"] = str(tmp_path / "free")
    path.write_text(yaml.safe_dump(spec))
    assert main(["matrix", str(path)]) == 0
    first, second = _intervals(tmp_path / "free")
    assert second[0] < first[1]


def test_a_failed_cell_is_recorded_and_the_others_still_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _matrix(tmp_path, "broken")
    spec = yaml.safe_load(path.read_text())
    spec["models"]["deployed"]["variants"]["float"]["model"] = str(tmp_path / "gone.onnx")
    path.write_text(yaml.safe_dump(spec))
    assert main(["matrix", str(path)]) == 2
    err = capsys.readouterr().err
    assert "2 cell(s) failed: deployed/coco_val, deployed/voc_val" in err
    cells = {c.key: c for c in load_matrix_cells(tmp_path / "broken")}
    assert cells["demo/voc_val"].record is not None
    assert "model file not found" in (cells["deployed/coco_val"].error or "")
    # A cell whose configuration is wrong is refused before any cell runs.
    spec["run"]["protocols"] = ["st", "cocoo"]
    path.write_text(yaml.safe_dump(spec))
    assert main(["matrix", str(path)]) == 2
    assert "unknown protocol 'cocoo' (did you mean 'coco'?)" in capsys.readouterr().err
