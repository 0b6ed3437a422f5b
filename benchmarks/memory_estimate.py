"""Activation-memory estimate of the exported zoo-form network, quantized to int8, next to
the model card's STM32N6 RAM figures.

For each published variant (81, 21 and 2 classes with background) the script exports the
zoo form with seeded weights, quantizes it with the zoo's settings (calibration: a few
seeded synthetic images; the sizes of activations do not depend on the values), and reads
the largest int8 activation and the peak of live int8 activations from the graph
(``evalkit.bench.memory``). The card's external RAM is the largest activation
(150x150x96 bytes = 2109.375 KiB); its internal RAM is set beside our peak-live estimate,
with the ratio. Recorded in ``benchmarks/results/memory_estimate.{md,json}``.

    python benchmarks/memory_estimate.py
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _results import write_results

from evalkit.bench.memory import activation_memory
from evalkit.models.export import export_onnx
from evalkit.models.ssd_mobilenetv2 import ssd_mobilenetv2
from evalkit.provenance import environment
from evalkit.quantize import ZOO_SETTINGS, quantize_model, sample_images
from evalkit.references import reference_for

RESULTS = Path(__file__).resolve().parent / "results" / "memory_estimate"
VARIANTS = (("coco", 81), ("voc", 21), ("coco_person", 2))
KIB = 1024


def calibration_folder(folder: Path, count: int = 4) -> list[Path]:
    """A few seeded noise images: calibration for a size measurement, not for accuracy."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"calib_{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def measure(dataset: str, num_classes: int, work: Path, images: list[Path]) -> dict[str, Any]:
    """Export, quantize and estimate one variant; the card's figures beside ours."""
    float_path = export_onnx(ssd_mobilenetv2(num_classes), work / f"{dataset}.onnx").path
    sample = sample_images(images, "synthetic noise", count=len(images), seed=0)
    int8 = quantize_model(
        float_path, work / f"{dataset}_int8.onnx", sample, ZOO_SETTINGS, progress=False
    )
    memory = activation_memory(int8.int8_model.path)
    n6 = reference_for("ssd_mobilenetv2_pt", dataset).n6
    internal = float(n6.internal_ram_kib) if n6 and n6.internal_ram_kib else None
    external = float(n6.external_ram_kib) if n6 and n6.external_ram_kib else None
    largest = memory.largest_int8_bytes / KIB
    peak = memory.peak_int8_bytes / KIB
    return {
        "dataset": dataset,
        "num_classes": num_classes,
        "largest_tensor": memory.largest.name,
        "largest_shape": list(memory.largest.shape),
        "largest_int8_kib": largest,
        "card_external_ram_kib": external,
        "peak_live_int8_kib": peak,
        "peak_node": memory.peak_node,
        "card_internal_ram_kib": internal,
        "peak_over_internal": None if internal is None else peak / internal,
    }


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="evalkit-memory-") as tmp:
        work = Path(tmp)
        images = calibration_folder(work / "calib")
        rows = [measure(name, nc, work, images) for name, nc in VARIANTS]
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [
        "# Activation memory: exported zoo form, int8, against the STM32N6 card",
        "",
        f"Recorded {created} by `python benchmarks/memory_estimate.py`.",
        "",
        "| variant | NC+1 | largest int8 activation | KiB | card external RAM KiB | "
        "peak live int8 KiB | card internal RAM KiB | peak / internal |",
        "|---|--:|---|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['num_classes']} | {r['largest_tensor']} "
            f"{'x'.join(str(d) for d in r['largest_shape'])} | {r['largest_int8_kib']:.3f} | "
            f"{r['card_external_ram_kib']} | {r['peak_live_int8_kib']:.2f} | "
            f"{r['card_internal_ram_kib']} | {r['peak_over_internal']:.2f} |"
        )
    lines += [
        "",
        "The largest int8 activation is the card's external RAM to the rounding of its two "
        "decimals. The peak of live activations is an upper bound of a naive schedule (each "
        "tensor live from its producer to its last consumer, no in-place reuse, no fusion, no "
        "tiling): the NPU compiler keeps less in internal RAM by fusing and tiling, which is "
        "why the ratio is above 1 and why it is an estimate, never an on-board figure.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    record = {
        "benchmark": "memory_estimate",
        "created": created,
        "rows": rows,
        "environment": environment(),
    }
    write_results(RESULTS, record, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
