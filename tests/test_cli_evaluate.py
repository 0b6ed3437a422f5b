"""``evalkit evaluate`` end to end: table, JSON, exit codes, VOC ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.datasets.coco import load_coco_ground_truth
from evalkit.metrics import evaluate, load_coco_results

from .conftest import FIXTURES, REPO

TINY_GT = FIXTURES / "tiny_gt.json"
TINY_DETS = FIXTURES / "tiny_dets.json"


@pytest.mark.parametrize("protocol", ["coco", "st", "voc07", "voc12"])
def test_json_output_matches_library(protocol: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "evaluate",
            "--gt",
            str(TINY_GT),
            "--dets",
            str(TINY_DETS),
            "--protocol",
            protocol,
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    gt = load_coco_ground_truth(TINY_GT)
    expected = evaluate(gt, load_coco_results(TINY_DETS, gt), protocol=protocol)
    assert out["protocol"] == protocol
    assert out["AP50"] == expected.ap
    assert out["per_class"] == expected.per_class_ap()
    assert set(out["per_class"]) == {"circle", "square", "triangle"}
    if protocol == "coco":
        assert out["stats"] == list(expected.stats or ())
        assert len(out["stats"]) == 12
    else:
        assert "stats" not in out


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--gt", str(TINY_GT), "--dets", str(TINY_DETS)]) == 0
    out = capsys.readouterr().out
    assert "class" in out and "AP50" in out and "circle" in out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in out


def test_bad_input_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "dets.json"
    bad.write_text(
        json.dumps([{"image_id": 12345, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}])
    )
    assert main(["evaluate", "--gt", str(TINY_GT), "--dets", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: record 0: image_id 12345 is not an image of the ground truth" in err


def test_voc_directory_needs_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Annotations").mkdir()
    assert main(["evaluate", "--gt", str(tmp_path), "--dets", str(TINY_DETS)]) == 2
    assert "needs a split name" in capsys.readouterr().err


def test_unknown_protocol_is_rejected_by_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--gt", str(TINY_GT), "--dets", str(TINY_DETS), "--protocol", "voc"])
    assert info.value.code == 2
    assert "invalid choice: 'voc'" in capsys.readouterr().err


def test_voc_ground_truth_with_names(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    year = shared_dir / "data" / "voc_sample" / "VOCdevkit" / "VOC2012"
    from evalkit.datasets.voc import load_voc_ground_truth

    gt = load_voc_ground_truth(year, "sample")
    # Perfect detections written with VOC names and with 1-based indices give the same AP.
    by_name, by_index = [], []
    for i, c, box in zip(gt.image_index, gt.category_index, gt.boxes_xywh_px, strict=True):
        base = {"image_id": gt.images[i].image_id, "bbox": box.tolist(), "score": 1.0}
        by_name.append({**base, "category_id": gt.categories[c].name})
        by_index.append({**base, "category_id": int(c) + 1})
    results = []
    for name, records in (("names.json", by_name), ("index.json", by_index)):
        path = tmp_path / name
        path.write_text(json.dumps(records))
        assert (
            main(
                [
                    "evaluate",
                    "--gt",
                    str(year),
                    "--split",
                    "sample",
                    "--dets",
                    str(path),
                    "--protocol",
                    "voc07",
                    "--json",
                ]
            )
            == 0
        )
        results.append(json.loads(capsys.readouterr().out))
    assert results[0] == results[1]
    assert results[0]["num_gt"] == 273 - 38  # difficult objects do not count
    assert results[0]["tp"] == 235 and results[0]["fp"] == 0


def test_module_entry_point() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalkit",
            "evaluate",
            "--gt",
            str(TINY_GT),
            "--dets",
            str(TINY_DETS),
            "--protocol",
            "st",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["protocol"] == "st"
