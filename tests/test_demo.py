"""``evalkit demo``: the whole job on the bundled model, gated against its committed
baseline the way CI gates any run."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.demo import load_demo_record
from evalkit.pipeline.result import RunRecord, load_result

from .conftest import REPO, host_int8_tolerances

BASELINE = REPO / "benchmarks" / "baselines" / "demo" / "result.json"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunRecord]:
    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--out", str(out), "--latency-runs", "3", "--quiet"]) == 0
    return out, load_result(out)


def test_demo_writes_the_contract(demo_run: tuple[Path, RunRecord]) -> None:
    out, record = demo_run
    assert set(record.variants) == {"float", "int8", "deployed"}
    assert (out / "report.html").is_file() and (out / "result.json").is_file()
    for variant in record.variants.values():
        assert set(variant.protocols) == {"coco", "st", "voc07", "voc12"}
        assert (out / variant.detections).is_file()
    assert record.variants["int8"].precision == "int8"
    assert record.reference is not None and record.reference.context_only is True


def test_the_demo_model_really_detects(demo_run: tuple[Path, RunRecord]) -> None:
    """The issue's bar: AP50 (coco) >= 0.8 in float, int8 within 1.5 points."""
    _, record = demo_run
    float_ap = record.ap50("float", "coco")
    assert float_ap >= 0.8
    assert float_ap - record.ap50("int8", "coco") <= 0.015
    # The deployed form (normalisation and decode inside the graph) finds the same boxes.
    assert abs(record.ap50("deployed", "coco") - float_ap) <= 0.002


def test_recorded_measurement_is_reproduced(demo_run: tuple[Path, RunRecord]) -> None:
    """The AP the checkpoint's record states is what the demo measures."""
    _, record = demo_run
    stated = load_demo_record().record["evaluation"]  # recorded to 6 decimals
    assert abs(stated["float"]["coco"]["ap50"] - record.ap50("float", "coco")) <= 5e-7


def test_demo_matches_its_baseline(demo_run: tuple[Path, RunRecord], tmp_path: Path) -> None:
    out, _ = demo_run
    code = main(
        [
            "check",
            str(out),
            "--baseline",
            str(BASELINE),
            "--no-latency",
            "--junit",
            str(tmp_path / "junit.xml"),
            *host_int8_tolerances(BASELINE, tmp_path),
        ]
    )
    assert code == 0


def test_missing_demo_model_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("evalkit.demo.RECORD", tmp_path / "missing.json")
    assert main(["demo", "--out", str(tmp_path / "out")]) == 2
    assert "the demo model is not installed" in capsys.readouterr().err
