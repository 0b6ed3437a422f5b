"""``evalkit reproduce``: with nothing present and --offline, every missing piece is named
with its sha256 and the command that fetches it; end to end, a card of the shared SSD on
coco128 (registered as a local reference) is reproduced figure by figure."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.record import load_result
from evalkit.references import REFERENCES_ENV, reference_for
from evalkit.references.model_files import card_files

from .conftest import REPO

CARD = """schema: 1
model: tfod_ssd_coco128
source: {{repository: evalkit/tests, path: shared/models, card: tests/test_reproduce.py}}
evaluation: {{eval_iou: "0.5", nms_thresh: "0.5", score_thresh: "0.001", max_detections: 100,
  input_shape_hwc: [300, 300, 3]}}
n6_target: null
datasets:
  coco:
    dataset: {{name: coco128, split: train2017, classes: 80, images: 128}}
    ap50: {{protocol: st, float: "{float}", int8: "{int8}"}}
    n6: null
    files:
      float: {{path: coco/float.onnx, bytes: {float_bytes}, sha256: "{float_sha}"}}
      int8: {{path: coco/int8_qat_qdq.onnx, bytes: {int8_bytes}, sha256: "{int8_sha}"}}
"""


def test_offline_with_nothing_present_names_every_missing_piece(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "reproduce",
        "ssd_mobilenetv2_pt",
        "--dataset",
        "coco",
        "--offline",
        "--data-root",
        str(tmp_path / "data"),
        "--model-root",
        str(tmp_path / "models"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "3 thing(s) missing for ssd_mobilenetv2_pt on coco (offline)" in err
    assert f"evalkit datasets fetch coco-val2017 --root {tmp_path / 'data'}" in err
    for precision, f in card_files("ssd_mobilenetv2_pt", "coco").items():
        assert f.sha256 in err and str(f.local(tmp_path / "models")) in err
        assert f"--precision {precision} --model-root {tmp_path / 'models'}" in err
    assert "Traceback" not in err


def test_a_local_card_of_the_shared_model_on_coco128(
    shared_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tfod = shared_dir / "models" / "ssd_mobilenet_v2_coco_tfod"
    # The card's figures: this project's committed run of the same files on coco128.
    record = load_result(REPO / "benchmarks" / "baselines" / "tflite_coco128" / "result.json")
    figures = {"float": record.ap50("float_onnx", "st"), "int8": record.ap50("qat_onnx", "st")}
    models = tmp_path / "models" / "tfod_ssd_coco128" / "coco"
    models.mkdir(parents=True)
    facts = {}
    for precision, name in (("float", "float.onnx"), ("int8", "int8_qat_qdq.onnx")):
        (models / name).symlink_to(tfod / name)
        data = (tfod / name).read_bytes()
        facts[f"{precision}_bytes"] = len(data)
        facts[f"{precision}_sha"] = hashlib.sha256(data).hexdigest()
        facts[precision] = f"{100 * figures[precision]:.2f}"
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "tfod_ssd_coco128.yaml").write_text(CARD.format(**facts))
    # Set here too, so that the test's end takes it away again (the command sets it for the
    # rest of its process).
    monkeypatch.setenv(REFERENCES_ENV, str(cards))
    args = [
        "reproduce",
        "tfod_ssd_coco128",
        "--dataset",
        "coco",
        "--data",
        "coco128",
        "--data-root",
        str(shared_dir / "data"),
        "--model-root",
        str(tmp_path / "models"),
        "--references",
        str(cards),
        "--decoder",
        "tfod-ssd",
        "--class-names",
        "model",
        "--model-dir",
        str(tfod),
        "--offline",
        "--quiet",
        "--out",
        str(tmp_path / "out"),
    ]
    code = main(args)
    out = capsys.readouterr().out
    verdicts = {
        m[0]: m[1]
        for m in re.findall(
            r"^(\S+) \(\w+\) AP50 st .* (reproduces|does not reproduce)$", out, re.M
        )
    }
    # The published files reproduce the card made from them; evalkit's own int8 of the float
    # file is another model (calibrated on 1 image) and does not reproduce the QAT figure.
    assert verdicts == {
        "float": "reproduces",
        "int8": "reproduces",
        "int8_evalkit": "does not reproduce",
    }
    assert code == 1
    assert reference_for("tfod_ssd_coco128", "coco").dataset.images == 128  # the local card
    page = (tmp_path / "out" / "report.html").read_text()
    assert "REPRODUCES" in page and "DOES NOT REPRODUCE" in page
