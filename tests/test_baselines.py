"""The committed baselines, re-run and gated with ``evalkit check`` as CI would."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.pipeline.config import load_config
from evalkit.pipeline.run import run

from .conftest import REPO

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
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS" in summary.read_text()
