"""Shared fixtures. Real data comes from ``$EVALKIT_DATA`` (the team's shared/ folder)."""

from __future__ import annotations

import json
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


def host_int8_tolerances(baseline: Path, folder: Path) -> list[str]:
    """``check`` arguments for gating this host's run against a committed baseline.

    The same int8 model file scores differently on CPUs whose int8 dot products saturate
    (AVX2 without VNNI) and on those that sum exactly (VNNI): 0.82 AP50 points apart on
    coco128 (evalkit.provenance.int8_dot_product). On a host of the baseline's kind the
    default 0.5-point gate applies to every variant; on another kind the int8 variants get
    1.5 points (and check says why in its NOTE line), float variants keep 0.5."""
    from evalkit.provenance import int8_dot_product

    data = json.loads(baseline.read_text())
    if (data.get("environment") or {}).get("int8_dot_product") == int8_dot_product():
        return []
    int8 = [
        name
        for name, variant in data["variants"].items()
        if (variant.get("model") or {}).get("precision") == "int8"
    ]
    path = folder / "int8_host_tolerances.yaml"
    path.write_text("ap50:\n" + "".join(f"  {name}: 1.5\n" for name in int8))
    return ["--tolerances", str(path)]
