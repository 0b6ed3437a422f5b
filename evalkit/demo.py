"""``evalkit demo``: the whole job out of the box, on nothing but the repository.

It generates (or reuses) the synthetic shapes dataset, exports the committed small
``ssd_mobilenetv2`` (``evalkit/demo_model``) to ONNX in the zoo's form and the deployed
form, quantizes the zoo form with the zoo's settings on training-split images, evaluates
float, int8 and deployed under all four protocols, measures host latency and writes
``result.json`` and the report. It is ``evalkit reproduce`` on the embedded default: the
demo model has its own card (``demo_model/ssd_mobilenetv2_demo.yaml``, the figures recorded
when the checkpoint was made), and the run ends with the same verdict per figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evalkit.api import run
from evalkit.datasets.synthetic import generate
from evalkit.errors import InputError
from evalkit.pipeline.config import (
    DatasetConfig,
    LatencyConfig,
    QuantizeConfig,
    ReferenceConfig,
    RunConfig,
    VariantConfig,
)
from evalkit.pipeline.run import Log
from evalkit.references import reference_for
from evalkit.reproduce import Reproduction, judge

DEMO_DIR = Path(__file__).resolve().parent / "demo_model"
CHECKPOINT = DEMO_DIR / "ssd_mobilenetv2_demo.pt"
RECORD = DEMO_DIR / "ssd_mobilenetv2_demo.json"
# The demo model's card (a registered reference) and its dataset key.
DEMO_REFERENCE = "ssd_mobilenetv2_demo"
DEMO_DATASET: Literal["shapes"] = "shapes"


@dataclass(frozen=True)
class DemoModel:
    """The committed checkpoint's record: how to build it and what it detects."""

    record: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return list(self.record["model"]["class_names"])

    @property
    def dataset_arguments(self) -> dict[str, Any]:
        """generate() arguments (JSON lists back to the tuples the generator records)."""
        params = dict(self.record["dataset"]["parameters"])
        return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def load_demo_record() -> DemoModel:
    """The demo model's record (shipped with the package)."""
    if not RECORD.is_file() or not CHECKPOINT.is_file():
        raise InputError(
            "the demo model is not installed (expected it beside the package)", path=DEMO_DIR
        )
    return DemoModel(json.loads(RECORD.read_text()))


def export_demo_models(demo: DemoModel, out: Path) -> tuple[Path, Path]:
    """The checkpoint as ONNX: zoo form (raw outputs) and deployed form (uint8 in,
    softmax scores and decoded boxes out)."""
    from evalkit.models.export import export_onnx
    from evalkit.models.ssd_mobilenetv2 import load_checkpoint, ssd_mobilenetv2_demo

    model = ssd_mobilenetv2_demo(int(demo.record["model"]["arguments"]["num_classes"]))
    load_checkpoint(model, CHECKPOINT)
    models = out / "models"
    models.mkdir(parents=True, exist_ok=True)
    zoo = export_onnx(model, models / "float.onnx", form="zoo").path
    deployed = export_onnx(model, models / "deployed.onnx", form="deployed").path
    return zoo, deployed


def demo_config(
    demo: DemoModel, out: Path, data_root: Path, *, quiet: bool, latency_runs: int
) -> RunConfig:
    """The run the demo performs, as an ordinary configuration."""
    names = demo.class_names
    return RunConfig(
        name="evalkit demo: ssd_mobilenetv2 (small) on synthetic shapes",
        dataset=DatasetConfig(
            format="coco",
            annotations=str(data_root / "coco" / "annotations" / "instances_val.json"),
            images=str(data_root / "coco" / "images" / "val"),
        ),
        variants={
            "float": VariantConfig(
                model=str(out / "models" / "float.onnx"), decoder="st-ssd", class_names=names
            ),
            "int8": VariantConfig(
                quantize=QuantizeConfig(
                    source="float", seed=0, images=str(data_root / "coco" / "images" / "train")
                ),
                decoder="st-ssd",
                class_names=names,
            ),
            "deployed": VariantConfig(
                model=str(out / "models" / "deployed.onnx"), decoder="decoded", class_names=names
            ),
        },
        batch_size=8,
        latency=LatencyConfig(runs=latency_runs, warmup=3),
        reference=ReferenceConfig(model=DEMO_REFERENCE, dataset=DEMO_DATASET),
        output=str(out),
        quiet=quiet,
    )


def run_demo(
    out: str | Path,
    *,
    data: str | Path | None = None,
    quiet: bool = False,
    latency_runs: int = 20,
    log: Log = print,
) -> Reproduction:
    """Generate or reuse the data, export, quantize, evaluate, benchmark, report, and set
    every figure against the demo model's card."""
    out = Path(out)
    demo = load_demo_record()
    data_root = Path(data) if data is not None else out / "data"
    dataset = generate(data_root, **demo.dataset_arguments)
    log(
        ("reused" if dataset.reused else "generated")
        + f" the synthetic dataset in {data_root} ({dataset.num_images})"
    )
    export_demo_models(demo, out)
    log(f"exported the demo model to {out / 'models'} (zoo form and deployed form)")
    config = demo_config(demo, out, data_root, quiet=quiet, latency_runs=latency_runs)
    outcome = run(config, log=log)
    return judge(outcome.record, outcome.out_dir, reference_for(DEMO_REFERENCE, DEMO_DATASET))
