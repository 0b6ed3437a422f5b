"""Does our int8 quantization reproduce the size of the zoo's published int8 ONNX files?

Exports the zoo form of ssd_mobilenetv2_pt with seeded random weights for NC+1 = 81 (COCO),
21 (VOC) and 2 (COCO-Person), quantizes each with the zoo's settings (evalkit's
``ZOO_SETTINGS``: quant_pre_process, then QDQ per-channel QInt8/QInt8 MinMax, symmetric
weights, asymmetric activations, int32 bias) and compares the int8 file sizes with the
published ones (target: within 0.5%).

Calibration: the zoo used 1% of the evaluation images; their content changes only the
scales and zero points, not the file's structure, so this script calibrates on a handful of
seeded synthetic images it writes itself (noise, gradients, a black and a white patch so
the input range is the full [0, 255]). Weights differ from the zoo's, so digests never match.
Each variant is quantized twice and the two files compared byte for byte (determinism).
Records ``benchmarks/results/quantize_fidelity.{json,md}``.

    python benchmarks/quantize_fidelity.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _results import write_results

from evalkit.models.export import export_onnx
from evalkit.models.ssd_mobilenetv2 import ssd_mobilenetv2
from evalkit.provenance import environment
from evalkit.quantize import ZOO_SETTINGS, folder_images, quantize_model, sample_images
from evalkit.references import reference_for

SCHEMA_VERSION = 1
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "quantize_fidelity"
REFERENCE = "ssd_mobilenetv2_pt"
DATASETS = ("coco", "voc", "coco_person")
PAIRS = (("coco", "voc"), ("voc", "coco_person"))
REL_TARGET = 5e-3


def write_calibration_images(folder: Path, count: int, seed: int) -> None:
    """Seeded synthetic RGB images of assorted sizes, as PNG (lossless)."""
    rng = np.random.default_rng(seed)
    sizes = [(300, 300), (480, 640), (375, 500), (640, 427)]
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ramp = np.linspace(0, 255, w, dtype=np.float64)[None, :, None]
        image = (0.5 * noise + 0.5 * ramp).astype(np.uint8)
        image[: h // 5, : w // 5] = 0
        image[-(h // 5) :, -(w // 5) :] = 255
        cv2.imwrite(str(folder / f"synthetic_{i:02d}.png"), image)


def run(seed: int, calib_count: int, workdir: Path) -> dict[str, Any]:
    """Export, quantize (twice) and compare the three variants."""
    images = workdir / "calibration"
    images.mkdir()
    write_calibration_images(images, calib_count, seed)
    sample = sample_images(folder_images(images), "synthetic images", count=calib_count, seed=seed)
    rows: dict[str, dict[str, Any]] = {}
    for name in DATASETS:
        entry = reference_for(REFERENCE, name)
        num_classes = entry.dataset.classes + 1  # the class output counts background
        float_path = workdir / f"{name}.onnx"
        exported = export_onnx(ssd_mobilenetv2(num_classes, seed=seed), float_path)
        start = time.perf_counter()
        first = quantize_model(float_path, workdir / f"{name}_int8.onnx", sample, progress=False)
        seconds = time.perf_counter() - start
        again = quantize_model(float_path, workdir / f"{name}_again.onnx", sample, progress=False)
        published = entry.files["int8"].bytes
        diff = first.int8_model.bytes - published
        rows[name] = {
            "num_classes": num_classes,
            "float_bytes": exported.size_bytes,
            "published_float_bytes": entry.files["float"].bytes,
            "int8_bytes": first.int8_model.bytes,
            "published_int8_bytes": published,
            "diff_bytes": diff,
            "relative_error": diff / published,
            "within_target": abs(diff) / published <= REL_TARGET,
            "int8_sha256": first.int8_model.sha256,
            "deterministic": first.int8_model.sha256 == again.int8_model.sha256,
            "int8_nodes": dict(sorted(first.node_counts.items())),
            "quantize_s": round(seconds, 2),
        }
        for path in workdir.glob(f"{name}*.onnx"):
            path.unlink()
    differences = []
    for a, b in PAIRS:
        ours = rows[a]["int8_bytes"] - rows[b]["int8_bytes"]
        published = rows[a]["published_int8_bytes"] - rows[b]["published_int8_bytes"]
        differences.append({"pair": f"{a} - {b}", "bytes": ours, "published_bytes": published})
    return {
        "calibration": sample.to_dict() | {"files": [p.name for p in sample.files]},
        "variants": rows,
        "differences": differences,
    }


def render_text(record: dict[str, Any]) -> str:
    """The table as printed and written to the markdown file."""
    lines = [
        "| variant | NC+1 | ours int8 bytes | published int8 bytes | diff | relative error | "
        "within 0.5% | deterministic |",
        "|---|--:|--:|--:|--:|--:|:-:|:-:|",
    ]
    for name, row in record["variants"].items():
        lines.append(
            f"| {name} | {row['num_classes']} | {row['int8_bytes']:,} | "
            f"{row['published_int8_bytes']:,} | {row['diff_bytes']:+,} | "
            f"{row['relative_error'] * 100:+.4f}% | "
            f"{'yes' if row['within_target'] else 'NO'} | "
            f"{'yes' if row['deterministic'] else 'NO'} |"
        )
    lines += ["", "| difference | ours bytes | published bytes | diff |", "|---|--:|--:|--:|"]
    for d in record["differences"]:
        lines.append(
            f"| {d['pair']} | {d['bytes']:,} | {d['published_bytes']:,} | "
            f"{d['bytes'] - d['published_bytes']:+,} |"
        )
    return "\n".join(lines)


def render_markdown(record: dict[str, Any]) -> str:
    """The record as a markdown page."""
    env = record["environment"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    git = env.get("git") or {}
    nodes = record["variants"]["coco_person"]["int8_nodes"]
    return "\n".join(
        [
            "# Quantization fidelity: ssd_mobilenetv2_pt int8 vs the published int8 files",
            "",
            f"Recorded {record['created']} by `{record['command']}`.",
            "",
            f"- Machine: {env['cpu']}, {env['python']}; {packages}; git "
            f"{git.get('revision', '?')}{' (dirty)' if git.get('dirty') else ''}",
            f"- Settings: {json.dumps(record['settings']['quantize'])}",
            f"- Weights: seeded random (seed {record['settings']['seed']}), zoo export form.",
            f"- Calibration: {record['settings']['calib_count']} synthetic images written by "
            "the script (seeded noise + gradient, a black and a white patch); their content "
            "moves scales and zero points only.",
            f"- int8 graph (coco_person): {', '.join(f'{k} {v}' for k, v in nodes.items())}",
            "- 'deterministic': a second quantization of the same inputs gave the same sha256.",
            "- Differences between variants are off by tens of bytes because onnxruntime "
            "stores each activation zero point as a varint (`int32_data`): a negative one "
            "takes 10 bytes, a positive one 1, so the size moves in steps of 9 bytes with the "
            "calibrated ranges (weights and images), which are not the zoo's.",
            "- All three variants lack about 9.5 KB against the published files, the same for "
            "each, so it sits in the graph parts every variant shares (names, value_info, node "
            "attributes) rather than in weights; the zoo did not record its onnxruntime "
            "version, so the cause is not pinned down.",
            "",
            render_text(record),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="weights and images seed")
    parser.add_argument("--calib-count", type=int, default=8, help="synthetic images")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="result path without suffix"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="evalkit_quantize_fidelity_") as tmp:
        block = run(args.seed, args.calib_count, Path(tmp))
    record = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "quantize_fidelity",
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "command": "python benchmarks/quantize_fidelity.py"
        + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "settings": {
            "seed": args.seed,
            "calib_count": args.calib_count,
            "relative_target": REL_TARGET,
            "quantize": ZOO_SETTINGS.to_dict(),
        },
        "environment": environment(),
        **block,
    }
    print(render_text(record))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.output, record, render_markdown(record))
    met = all(r["within_target"] and r["deterministic"] for r in record["variants"].values())
    print(f"targets {'met' if met else 'NOT met'}; recorded {args.output}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
