"""Train the tiny family networks (evalkit/models/families.py) on the synthetic shapes and
record how well ``evalkit run`` scores them.

For each family: generate (or reuse) the shapes dataset, train on CPU
(evalkit/models/family_train.py), save ``evalkit/family_models/<family>.pt`` (float32
state_dict), export it to ONNX, run ``evalkit run`` on the validation split with the
family's decoder and pre-processing, and write the figures into
``evalkit/family_models/families.json``.

    python scripts/train_families.py                      # every family, ~4-15 min each (2 cores)
    python scripts/train_families.py --family yolox        # one
    python scripts/train_families.py --evaluate-only       # re-score the saved weights
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evalkit.api import run  # noqa: E402
from evalkit.datasets.dataset import open_coco  # noqa: E402
from evalkit.datasets.synthetic import SyntheticDataset, generate  # noqa: E402
from evalkit.hashing import file_sha256  # noqa: E402
from evalkit.models.families import (  # noqa: E402
    NETS,
    FamilyNet,
    decoder_options,
    export_onnx,
    run_config,
)
from evalkit.models.family_train import (  # noqa: E402
    FamilyTrainSettings,
    load_family_data,
    train_family,
)
from evalkit.pipeline.config import load_config  # noqa: E402

OUT = REPO / "evalkit" / "family_models"
RECORD = OUT / "families.json"
# The demo model's dataset settings (objects of 0.2 to 0.7 of the shorter side), with more
# training images: these small nets overfit 1,500 (training loss down, val AP down).
DATA: dict[str, Any] = {
    "num_train": 6000,
    "num_val": 100,
    "seed": 0,
    "max_objects": 4,
    "object_size": (0.2, 0.7),
}
# BlazeFace detects one class: its set holds circles only.
FACE_CLASSES = ("circle",)


def dataset_for(family: str, root: Path) -> SyntheticDataset:
    if family == "blazeface":
        return generate(root / "shapes_one_class_6k", classes=FACE_CLASSES, **DATA)
    return generate(root / "shapes_6k", **DATA)


def load_net(family: str, weights: Path, data: SyntheticDataset) -> FamilyNet:
    net = NETS[family](len(data.classes))
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


def evaluate(family: str, weights: Path, data: SyntheticDataset, work: Path) -> dict[str, Any]:
    """Export the saved weights and score them with ``evalkit run`` on the val split."""
    net = load_net(family, weights, data)
    model = work / f"{family}.onnx"
    export_onnx(net, model)
    return score(net, model, data, work)


def score(net: FamilyNet, model: Path, data: SyntheticDataset, work: Path) -> dict[str, Any]:
    """AP50 per protocol of a model file of ``net`` (ONNX or TFLite) on the val split."""
    config = run_config(
        net,
        model,
        data.coco_annotation_file("val"),
        data.coco_image_dir("val"),
        work / f"run_{model.name}",
        list(data.classes),
    )
    path = work / f"{model.name}.yaml"
    path.write_text(json.dumps(config))
    outcome = run(load_config(path), log=lambda _: None)
    protocols = outcome.record.variants["float"].protocols
    return {p: round(r.ap50, 6) for p, r in protocols.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=sorted(NETS), action="append")
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "family_data")
    parser.add_argument("--epochs", type=int, default=FamilyTrainSettings.epochs)
    parser.add_argument("--evaluate-only", action="store_true")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
    record["dataset"] = {**DATA, "object_size": list(DATA["object_size"])}
    record.setdefault("families", {})
    for family in args.family or sorted(NETS):
        data = dataset_for(family, args.data)
        weights = OUT / f"{family}.pt"
        entry = record["families"].get(family, {})
        if not args.evaluate_only:
            torch.manual_seed(0)
            net = NETS[family](len(data.classes))
            t0 = time.perf_counter()
            train_data = load_family_data(open_coco(
                data.coco_annotation_file("train"), data.coco_image_dir("train")
            ), net)  # fmt: skip
            load_s = time.perf_counter() - t0
            # One class is easier: BlazeFace reaches the bar in far fewer epochs.
            epochs = args.epochs if family != "blazeface" else min(args.epochs, 12)
            settings = FamilyTrainSettings(epochs=epochs)
            entry = {"training": train_family(net, train_data, settings), "data_loading_s": load_s}
            torch.save(net.state_dict(), weights)
            entry["parameters"] = sum(p.numel() for p in net.parameters())
        entry["classes"] = list(data.classes)
        entry["checkpoint"] = {"bytes": weights.stat().st_size, "sha256": file_sha256(weights)}
        entry["options"] = decoder_options(NETS[family](len(data.classes)))
        with tempfile.TemporaryDirectory() as work:
            entry["ap50_val"] = evaluate(family, weights, data, Path(work))
        print(f"[{family}] AP50 on val: {entry['ap50_val']}")
        record["families"][family] = entry
        RECORD.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
