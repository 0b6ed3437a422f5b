"""The committed baselines, re-run and gated with ``evalkit check`` as CI would."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.pipeline.config import load_config
from evalkit.pipeline.run import run

from .conftest import REPO, host_int8_tolerances

CONFIG = REPO / "benchmarks" / "configs" / "tfod_coco128.yaml"
BASELINE = REPO / "benchmarks" / "baselines" / "tfod_coco128" / "result.json"


def test_real_data_run_matches_its_baseline(
    shared_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The shared model on coco128 (float, evalkit-quantized int8, QAT int8) under all four
    protocols, within 0.5 AP50 points of the committed result. Latency is not gated here:
    CI machines are shared and their timings are noise."""
    monkeypatch.setenv("EVALKIT_DATA", str(shared_dir))
    config = load_config(
        CONFIG, {"output": str(tmp_path / "run"), "quiet": True, "latency.runs": 0}
    )
    outcome = run(config, log=lambda _: None)
    # 128 train2017 images are not the card's 5000 val2017 ones: the card is context only.
    reference = outcome.record.reference
    assert reference is not None and reference.comparable is False
    assert "5000 on the card" in (reference.why or "")
    summary = tmp_path / "summary.md"
    junit = tmp_path / "junit.xml"
    code = main(
        [
            "check",
            str(outcome.out_dir),
            "--baseline",
            str(BASELINE),
            "--no-latency",
            "--summary",
            str(summary),
            "--junit",
            str(junit),
            *host_int8_tolerances(BASELINE, tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS" in summary.read_text()
    # The case: the same run gated against the synthetic demo's baseline is refused.
    demo = REPO / "benchmarks" / "baselines" / "demo" / "result.json"
    assert main(["check", str(outcome.out_dir), "--baseline", str(demo), "--no-latency"]) == 2
    err = capsys.readouterr().err
    assert "not comparable" in err and "differ in dataset and settings" in err
    assert "dataset num_images: 128 vs 100" in err
