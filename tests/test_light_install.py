"""``pip install evalkit`` without extras: evaluating results files, gating and comparing
records, the references and the dataset manifests work with numpy, orjson, tqdm and PyYAML
alone; commands that need the run extra say so (exit 2), never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .conftest import REPO

FIXTURES = REPO / "tests" / "fixtures"
DEMO = REPO / "benchmarks" / "baselines" / "demo"


def _light(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "tests" / "light_install.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_evaluate_without_the_run_extra_matches_pycocotools() -> None:
    gt, dets = FIXTURES / "tiny_gt.json", FIXTURES / "tiny_dets.json"
    done = _light("evaluate", "--gt", str(gt), "--dets", str(dets), "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)["stats"]
    coco = COCO(str(gt))
    cocoeval = COCOeval(coco, coco.loadRes(str(dets)), "bbox")
    cocoeval.evaluate()
    cocoeval.accumulate()
    cocoeval.summarize()
    assert stats == pytest.approx(list(cocoeval.stats), abs=1e-12)


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("run", "--help"),
        ("check", str(DEMO), "--baseline", str(DEMO), "--no-latency"),
        ("compare", str(DEMO), str(DEMO)),
        ("references",),
        ("datasets", "list"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_light_commands_work_without_the_run_extra(args: tuple[str, ...]) -> None:
    done = _light(*args)
    assert done.returncode == 0, done.stderr


def test_a_command_that_needs_the_extra_says_how_to_install_it(tmp_path: Path) -> None:
    done = _light("report", str(DEMO), "--out", str(tmp_path))
    assert done.returncode == 2
    # The first of the run extra's modules the report imports is named.
    assert re.search(r"needs (pandas|matplotlib), which is not installed", done.stderr)
    assert "pip install 'evalkit[run]'" in done.stderr and "Traceback" not in done.stderr
