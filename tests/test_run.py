"""``evalkit run`` end to end on real data: config, outputs, resume, invalidation, errors."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evalkit.api import run
from evalkit.cli import main
from evalkit.datasets.dataset import open_coco
from evalkit.errors import InputError, RunInterrupted
from evalkit.metrics.analysis import AnalysisSettings, analyse, analysis_difference
from evalkit.metrics.results_file import load_coco_results
from evalkit.pipeline import together as together_module
from evalkit.pipeline.config import describe_fields, load_config
from evalkit.pipeline.inputs import limited
from evalkit.pipeline.result import load_result

LIMIT = 12


def _config(shared_dir: Path, out: Path, **extra: Any) -> dict[str, Any]:
    models = shared_dir / "models" / "ssd_mobilenet_v2_coco_tfod"
    data = shared_dir / "data" / "coco128"
    config: dict[str, Any] = {
        "name": "test run",
        "dataset": {
            "format": "coco",
            "annotations": str(data / "annotations" / "instances_train2017.json"),
            "images": str(data / "images"),
            "limit": LIMIT,
        },
        "variants": {
            "float": {"model": str(models / "float.onnx"), "decoder": "tfod-ssd"},
            "int8": {"model": str(models / "int8_qat_qdq.onnx")},  # decoder detected
        },
        "batch_size": 4,
        "latency": {"runs": 2, "warmup": 1},
        "reference": {"model": "ssd_mobilenetv2_pt", "dataset": "coco"},
        "output": str(out),
        "quiet": True,
    }
    config.update(extra)
    return config


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def finished(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    run(load_config(_write(out.parent / "c.yaml", _config(shared_dir, out))), log=lambda _: None)
    return out


def test_each_variant_records_its_analyses(shared_dir: Path, finished: Path) -> None:
    """Operating points, confusion and TIDE per variant, equal to the analyses of the
    variant's own detections file; the report shows them and the float -> int8 change."""
    record = load_result(finished)
    data = shared_dir / "data" / "coco128"
    dataset = open_coco(data / "annotations" / "instances_train2017.json", data / "images")
    gt = limited(dataset, LIMIT).ground_truth
    for name, variant in record.variants.items():
        assert variant.analysis is not None
        assert variant.timings is not None and variant.timings.analysis_s is not None
        dets = load_coco_results(finished / variant.detections, gt)
        again = json.loads(json.dumps(analyse(gt, dets, AnalysisSettings()).to_dict()))
        assert variant.analysis == again, name
        assert variant.analysis["tide"]["counts"]["Bkg"] > 0
    float_, int8 = (record.variants[v].analysis for v in ("float", "int8"))
    assert float_ is not None and int8 is not None
    change = analysis_difference(float_, int8)
    assert set(change["operating_points"]["at"]) == {"0.3", "0.5"}
    html = (finished / "report.html").read_text()
    for heading in ("Errors and operating points", "TIDE error breakdown", "F1"):
        assert heading in html
    for png in ("f1_curves.png", "tide_bars.png", "confusion.png"):
        assert (finished / png).is_file()


def test_outputs_follow_the_contract(finished: Path) -> None:
    record = load_result(finished)
    assert record.schema_version == 3
    assert set(record.variants) == {"float", "int8"}
    written = json.loads((finished / "result.json").read_text())  # the file's own contract
    assert written == record.to_dict()
    for name, variant in written["variants"].items():
        assert set(variant["protocols"]) == {"coco", "st", "voc07", "voc12"}
        assert (finished / variant["detections"]).is_file()
        assert variant["model"]["precision"] == ("int8" if name == "int8" else "float")
        assert len(variant["latency"]["raw_ms"]) == 2
        for scores in variant["protocols"].values():
            assert 0 <= scores["AP50"] <= 1 and scores["per_class"]
    assert record.variants["int8"].decoder_name == "tfod-ssd"
    assert "box_encodings" in (record.variants["int8"].decoder or {})["why"]
    assert record.dataset.num_images == LIMIT
    assert (finished / "report.html").is_file() and (finished / "report.md").is_file()


def test_detections_file_rescored_by_pycocotools(finished: Path, shared_dir: Path) -> None:
    """The written detections, re-scored by pycocotools on the same images, give the
    run's own coco AP50 (the file is a faithful, standard COCO results file)."""
    record = load_result(finished)
    ann = json.loads((shared_dir / "data/coco128/annotations/instances_train2017.json").read_text())
    ids = [im["id"] for im in ann["images"][:LIMIT]]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": ann["images"][:LIMIT],
            "categories": ann["categories"],
            "annotations": [a for a in ann["annotations"] if a["image_id"] in set(ids)],
        }
        gt.createIndex()
        dets = gt.loadRes(str(finished / record.variants["float"].detections))
        cocoeval = COCOeval(gt, dets, "bbox")
        cocoeval.evaluate()
        cocoeval.accumulate()
        cocoeval.summarize()
    assert abs(record.ap50("float", "coco") - cocoeval.stats[1]) <= 1e-12


def test_killed_run_resumes_to_identical_results(
    shared_dir: Path, finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    config = _config(shared_dir, out, latency={"runs": 0})
    path = _write(tmp_path / "c.yaml", config)
    real_finish = together_module._finish
    calls = {"n": 0}

    def dying_finish(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the process is killed mid-run
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(together_module, "_finish", dying_finish)
    with pytest.raises(RunInterrupted, match=r"interrupted: \d+/24 images cached in .*cache"):
        run(load_config(path), log=lambda _: None)
    assert not (out / "result.json").exists()  # nothing half-written was published
    monkeypatch.setattr(together_module, "_finish", real_finish)
    lines = (out / "cache" / "float.jsonl").read_text().splitlines()
    assert 1 < len(lines) < LIMIT + 1  # some predictions were kept, not all
    resumed = load_result(run(load_config(path), log=lambda _: None).out_dir)
    assert resumed.variants["float"].timings.cached_images == len(lines) - 1
    reference = load_result(finished)
    for name in ("float", "int8"):
        assert resumed.variants[name].protocols == reference.variants[name].protocols
        got = json.loads((out / f"detections_{name}.json").read_text())
        want = json.loads((finished / f"detections_{name}.json").read_text())
        assert got == want


def test_changed_setting_invalidates_the_cache(shared_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = _config(shared_dir, out, latency={"runs": 0})
    config["variants"] = {"float": config["variants"]["float"]}
    config["dataset"]["limit"] = 4
    run(load_config(_write(tmp_path / "a.yaml", config)), log=lambda _: None)
    config["nms"] = {"iou_threshold": 0.6}
    messages: list[str] = []
    outcome = run(load_config(_write(tmp_path / "b.yaml", config)), log=messages.append)
    record = load_result(outcome.out_dir)
    assert record.variants["float"].timings.cached_images == 0
    assert any("set aside" in m for m in messages)
    assert (record.variants["float"].nms or {})["iou_threshold"] == 0.6


def test_unknown_field_suggests_the_near_match(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", {"variants": {"f": {"model": "x"}}, "protocol": ["st"]})
    with pytest.raises(
        InputError, match=r"unknown field 'protocol' \(did you mean 'protocols'\?\)"
    ):
        load_config(path)
    good = _write(tmp_path / "d.yaml", {"variants": {"f": {"model": "x"}}})
    with pytest.raises(InputError, match=r"nms: unknown field 'iou' \(did you mean"):
        load_config(good, {"nms.iou": "0.3"})
    assert load_config(good, {"protocols": "st,coco"}).protocols == ["st", "coco"]


def test_env_variables_expand_and_missing_ones_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "c.yaml", {"variants": {"f": {"model": "${MODELS}/a.onnx"}}})
    monkeypatch.setenv("MODELS", "/m")
    assert load_config(path).variants["f"].model == "/m/a.onnx"
    monkeypatch.delenv("MODELS")
    with pytest.raises(InputError, match=r"environment variable \$\{MODELS\} is not set"):
        load_config(path)


def test_cli_errors_exit_2(shared_dir: Path, tmp_path: Path, capsys: Any) -> None:
    config = _config(shared_dir, tmp_path / "out")
    config["variants"]["float"]["model"] = str(tmp_path / "missing.onnx")
    path = _write(tmp_path / "c.yaml", config)
    assert main(["run", str(path)]) == 2
    assert "missing.onnx: variants.float.model: model file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: [unclosed")
    assert main(["run", str(bad)]) == 2
    assert "malformed YAML" in capsys.readouterr().err


def test_help_documents_every_field(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for name, _, _ in describe_fields():
        assert name in text
