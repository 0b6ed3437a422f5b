"""The zoo's other detector families end to end: for each, a tiny network with that family's
head (evalkit/models/families.py), trained on the synthetic shapes by
scripts/train_families.py and committed, exported to ONNX here, and scored by ``evalkit run``
with the family's decoder and pre-processing. A decoder that read the outputs wrongly could
not reach the bar; wrong settings are shown to fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from evalkit.cli import main
from evalkit.datasets.synthetic import SyntheticDataset, generate
from evalkit.hashing import file_sha256
from evalkit.models.families import NETS, YOLOV2_ANCHORS, export_onnx, run_config
from evalkit.pipeline.result import load_result

from .conftest import REPO

MODELS = REPO / "evalkit" / "family_models"
RECORD = json.loads((MODELS / "families.json").read_text())
BAR = 0.8
FAMILIES = sorted(NETS)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SyntheticDataset]:
    """The training script's validation split (it does not depend on the training split's
    size), in its multi-class and one-class forms."""
    data = {k: v for k, v in RECORD["dataset"].items() if k != "num_train"}
    data["object_size"] = tuple(data["object_size"])
    root = tmp_path_factory.mktemp("shapes")
    return {
        "shapes": generate(root / "multi", num_train=0, **data),
        "one_class": generate(root / "one", num_train=0, classes=("circle",), **data),
    }


def _run(
    family: str,
    shapes: dict[str, SyntheticDataset],
    work: Path,
    model: Path | None = None,
    **overrides: Any,
) -> tuple[int, Path]:
    """``evalkit run`` on the validation split: the committed weights exported to ONNX here,
    or ``model`` (a committed TFLite export)."""
    data = shapes["one_class" if family == "blazeface" else "shapes"]
    net = NETS[family](len(data.classes))
    if model is None:
        state = torch.load(MODELS / f"{family}.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        model = work / f"{family}.onnx"
        export_onnx(net, model)
    config = run_config(
        net,
        model,
        data.coco_annotation_file("val"),
        data.coco_image_dir("val"),
        work / "out",
        list(data.classes),
    )
    config["variants"]["float"].update(overrides)
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return main(["run", str(path)]), work / "out"


@pytest.mark.parametrize("family", FAMILIES)
def test_the_trained_family_model_reaches_the_bar_through_evalkit_run(
    family: str, shapes: dict[str, SyntheticDataset], tmp_path: Path
) -> None:
    code, out = _run(family, shapes, tmp_path)
    assert code == 0
    record = load_result(out)
    variant = record.variants["float"]
    ap50 = variant.protocols["coco"].ap50
    assert ap50 >= BAR, (family, ap50)
    # What the training script recorded for these weights (onnxruntime's CPU kernels may
    # move a borderline detection between machines, not more).
    assert abs(ap50 - RECORD["families"][family]["ap50_val"]["coco"]) <= 0.01
    assert variant.decoder_name == family
    assert (variant.preprocessing or {})["name"].startswith(NETS[family].preprocessor)


# The families the zoo ships as int8 TFLite (yolov8n/yolo11n, st_yoloxn, yolov2t and
# st_yololcv1, BlazeFace front): their tiny nets are exported so too, by
# scripts/export_family_tflite.py (onnx2tf), and committed.
TFLITE_FAMILIES = ["blazeface", "ultralytics", "yolov2", "yoloxn"]
# What int8 may cost against the float ONNX model: a decoder or a runner that read the
# quantized tensors wrongly loses far more.
QUANTIZATION_COST = 0.03


def test_every_family_the_zoo_ships_as_tflite_has_a_committed_export() -> None:
    exported = sorted(f for f, e in RECORD["families"].items() if "tflite" in e)
    assert exported == TFLITE_FAMILIES


@pytest.mark.parametrize("family", TFLITE_FAMILIES)
def test_the_int8_tflite_export_runs_through_the_litert_runner(
    family: str, shapes: dict[str, SyntheticDataset], tmp_path: Path
) -> None:
    entry = RECORD["families"][family]
    export = entry["tflite"]
    path = MODELS / export["file"]
    assert file_sha256(path) == export["sha256"]
    # Exported from the committed weights, not from an earlier training.
    assert export["checkpoint_sha256"] == file_sha256(MODELS / f"{family}.pt")
    code, out = _run(family, shapes, tmp_path, model=path)
    assert code == 0
    variant = load_result(out).variants["float"]
    assert variant.model is not None and variant.model.format == "tflite"
    assert variant.precision == "int8"
    assert (variant.runner or {})["name"] == "litert"
    assert variant.decoder_name == family
    ap50 = variant.protocols["coco"].ap50
    assert abs(ap50 - export["ap50_val"]["coco"]) <= 0.01
    assert ap50 >= entry["ap50_val"]["coco"] - QUANTIZATION_COST, (family, ap50)


@pytest.mark.parametrize("family", ["yolov2", "yoloxn", "blazeface"])
def test_the_family_is_detected_from_its_outputs(
    family: str, shapes: dict[str, SyntheticDataset], tmp_path: Path
) -> None:
    code, out = _run(family, shapes, tmp_path, decoder="auto")
    assert code == 0
    variant = load_result(out).variants["float"]
    assert variant.decoder_name == family
    assert f"{family}: " in (variant.decoder or {})["why"]
    assert variant.protocols["coco"].ap50 >= BAR


@pytest.mark.parametrize("family", ["ultralytics", "yolox"])
def test_ultralytics_and_yolox_outputs_are_refused_as_ambiguous(
    family: str,
    shapes: dict[str, SyntheticDataset],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _ = _run(family, shapes, tmp_path, decoder="auto")
    assert code == 2
    err = capsys.readouterr().err
    assert "ambiguous output" in err and "decoder: ultralytics or decoder: yolox" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("family", "wrong"),
    [
        ("yolov2", {"anchors": [list(a) for a in reversed(YOLOV2_ANCHORS)]}),  # anchor order
        ("yoloxn", {"strides": [32, 16, 8]}),  # per-level anchor scaling
        ("yolox", {"preprocessor": "unit-nhwc"}),  # another family's input
    ],
)
def test_wrong_decoder_settings_fail(
    family: str, wrong: dict[str, Any], shapes: dict[str, SyntheticDataset], tmp_path: Path
) -> None:
    code, out = _run(family, shapes, tmp_path, **wrong)
    if code == 0:
        assert load_result(out).variants["float"].protocols["coco"].ap50 < BAR / 2
    else:
        assert code == 2


def test_other_families_outputs_are_refused(
    shapes: dict[str, SyntheticDataset], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ultralytics model read as yolox: its columns do not fit, exit 2 with the reason."""
    code, _ = _run("ultralytics", shapes, tmp_path, decoder="yolox")
    assert code == 2
    assert "class names given but the model has" in capsys.readouterr().err


def test_a_bad_analysis_setting_is_refused_before_anything_runs(
    shapes: dict[str, SyntheticDataset], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = shapes["shapes"]
    net = NETS["yolox"](len(data.classes))
    config = run_config(
        net,
        tmp_path / "absent.onnx",
        data.coco_annotation_file("val"),
        data.coco_image_dir("val"),
        tmp_path / "out",
        list(data.classes),
    )
    config["analysis"] = {"iou": 0.5, "tide_background": 0.9}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "analysis" in err and "background IoU" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_zoo_tf_preprocessing_runs_and_is_recorded(
    shapes: dict[str, SyntheticDataset], tmp_path: Path
) -> None:
    """The yoloxn net (trained on OpenCV-resized inputs) through the zoo's TF pipeline
    pre-processing: tf.image.resize bilinear, x * (1/127.5) - 1, recorded as such."""
    code, out = _run("yoloxn", shapes, tmp_path, preprocessor="zoo-tf-signed-bilinear")
    assert code == 0
    variant = load_result(out).variants["float"]
    settings = variant.preprocessing or {}
    assert settings["name"] == "zoo-tf-signed-bilinear@128x128"
    assert settings["interpolation"] == "tf-bilinear" and settings["arithmetic"] == "multiply-add"
    assert variant.protocols["coco"].ap50 >= BAR


def test_an_unknown_preprocessor_name_is_exit_2_with_the_known_ones(
    shapes: dict[str, SyntheticDataset], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _run("yoloxn", shapes, tmp_path, preprocessor="zoo-tf-signed-bicubic")
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "zoo-tf-signed-bicubic" in err and "zoo-tf-signed-bilinear" in err
