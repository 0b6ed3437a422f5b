"""Shared fixtures. Real data comes from ``$EVALKIT_DATA`` (the team's shared/ folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evalkit.datasets.synthetic import generate
from evalkit.demo import export_demo_models, load_demo_record
from evalkit.pipeline.config import DatasetConfig, LatencyConfig, RunConfig, VariantConfig

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared/ folder. Unset outside CI: the real-data tests skip and say why;
    in CI (CI=true) a missing folder is a failure, never a silent skip."""
    value = os.environ.get("EVALKIT_DATA")
    if not value:
        if os.environ.get("CI"):
            pytest.fail("EVALKIT_DATA is not set in CI; .ci/run must point it at ../shared")
        pytest.skip("real-data test: set EVALKIT_DATA to the team's shared/ folder to run it")
    path = Path(value)
    if not (path / "data").is_dir():
        pytest.fail(f"EVALKIT_DATA={value} has no data/ folder")
    return path


@pytest.fixture
def small_set(tmp_path: Path) -> tuple[Path, RunConfig]:
    """Six synthetic val images, the demo model exported, a run config over them."""
    demo = load_demo_record()
    generate(tmp_path / "data", **{**demo.dataset_arguments, "num_train": 2, "num_val": 6})
    export_demo_models(demo, tmp_path)
    config = RunConfig(
        dataset=DatasetConfig(
            annotations=str(tmp_path / "data" / "coco" / "annotations" / "instances_val.json"),
            images=str(tmp_path / "data" / "coco" / "images" / "val"),
        ),
        variants={"float": VariantConfig(model=str(tmp_path / "models" / "float.onnx"))},
        protocols=["st", "coco"],
        latency=LatencyConfig(runs=0),
        output=str(tmp_path / "run"),
        quiet=True,
    )
    return tmp_path, config
