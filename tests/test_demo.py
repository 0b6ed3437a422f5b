"""``evalkit demo``: the whole job on the bundled model, gated against its committed
baseline the way CI gates any run."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.demo import DEMO_DATASET, DEMO_REFERENCE, load_demo_record
from evalkit.pipeline.result import RunRecord, load_result
from evalkit.references import reference_for
from evalkit.reproduce import judge

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
    # The demo is reproduce on the embedded default: its own card, on its own set.
    assert record.reference is not None and record.reference.model == "ssd_mobilenetv2_demo"
    assert record.reference.comparable is True, record.reference.why


def test_the_demo_report_shows_the_analyses(demo_run: tuple[Path, RunRecord]) -> None:
    """Operating points, TIDE and confusion per variant, with the int8 - float change."""
    out, record = demo_run
    for variant in record.variants.values():
        assert variant.analysis is not None
    html = (out / "report.html").read_text()
    for text in ("Errors and operating points", "TIDE error breakdown", "int8 - float"):
        assert text in html
    for name in ("f1_curves", "tide_bars", "confusion"):
        assert (out / f"{name}.png").stat().st_size > 10_000
    tide_rows = (out / "tide.csv").read_text().splitlines()
    assert any(row.startswith("int8 - float,") for row in tide_rows)


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


def test_the_demo_card_holds_the_recorded_figures() -> None:
    """The card's figures are the checkpoint record's, rounded to two decimals as a card is."""
    card = reference_for(DEMO_REFERENCE, DEMO_DATASET)
    stated = load_demo_record().record["evaluation"]
    for precision in ("float", "int8"):
        recorded = 100 * stated[precision]["st"]["ap50"]  # 6 decimals: +-5e-5 points
        published = card.ap50(precision)
        assert published is not None and card.protocol == "st"
        assert abs(100 * published - recorded) <= 0.005 + 5e-5, precision


def test_the_demo_reproduces_its_card(demo_run: tuple[Path, RunRecord]) -> None:
    out, record = demo_run
    done = judge(record, out, reference_for(DEMO_REFERENCE, DEMO_DATASET))
    # float, deployed, int8 and the int8 cost: each within the card's rounding.
    assert [v.status for v in done.verdicts] == ["reproduces"] * 4, done.verdicts
    assert done.reproduces


def test_reproduce_on_the_demo_card_is_the_demo(
    demo_run: tuple[Path, RunRecord], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``evalkit reproduce ssd_mobilenetv2_demo --dataset shapes``: the same run, end to end,
    with reproduce's exit code; flags that fetch or pick files are refused for it."""
    out, record = demo_run
    capsys.readouterr()
    argv = ["reproduce", DEMO_REFERENCE, "--dataset", DEMO_DATASET, "--quiet"]
    assert main([*argv, "--data-root", str(out / "data"), "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    assert printed.count(" reproduces") == 4, printed
    again = load_result(tmp_path / "r")
    for name in record.variants:
        assert again.ap50(name, "st") == record.ap50(name, "st")
    assert main([*argv, "--model-root", str(tmp_path)]) == 2
    assert "needs no --model-root: it is what evalkit demo runs" in capsys.readouterr().err
    assert main(["reproduce", DEMO_REFERENCE, "--dataset", "coco"]) == 2
    assert "is on --dataset shapes only" in capsys.readouterr().err
