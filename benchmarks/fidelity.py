"""Does our ssd_mobilenetv2 export reproduce the zoo's published float ONNX files?

Exports the zoo form (seeded weights) for NC+1 = 81 (COCO), 21 (VOC) and 2 (COCO-Person)
and compares each file size with the published one (target: within 0.1%) and the size
differences between variants with the published differences (target: exact; they depend
only on the classification heads' shapes and protobuf length prefixes, not on weights).
Weights differ from the zoo's, so digests never match; sizes do because every float32
initializer is stored raw. Records ``benchmarks/results/fidelity.{json,md}``.

    python benchmarks/fidelity.py                 # TorchScript exporter, records results
    python benchmarks/fidelity.py --dynamo        # also the dynamo exporter, for comparison
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import onnx
import torch
from _results import machine_info, write_results

from evalkit.models.export import OPSET, Exporter, export_onnx
from evalkit.models.ssd_mobilenetv2 import ssd_mobilenetv2
from evalkit.references import reference_for

SCHEMA_VERSION = 1
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "fidelity"
REFERENCE = "ssd_mobilenetv2_pt"
DATASETS = ("coco", "voc", "coco_person")
# Published differences between variants (bytes): COCO - VOC, VOC - Person.
PAIRS = (("coco", "voc"), ("voc", "coco_person"))
REL_TARGET = 1e-3
# torch <= 2.9 writes a 5-character producer_version ("2.x.y"); a longer one adds bytes.
PUBLISHED_PRODUCER_VERSION_LEN = 5


def _onnx_facts(path: Path) -> dict[str, Any]:
    """What the file holds beyond weights: counts and names that decide its last bytes."""
    proto = onnx.load(str(path))
    graph = proto.graph
    elements = sum(int(torch.Size(t.dims).numel()) for t in graph.initializer)
    return {
        "producer_version": proto.producer_version,
        "initializers": len(graph.initializer),
        "initializer_elements": elements,
        "nodes": len(graph.node),
        # The dynamo exporter's extra bytes live here: per-node metadata_props (source
        # stack traces, class hierarchies) and intermediate value_info.
        "node_bytes": sum(n.ByteSize() for n in graph.node),
        "value_info": len(graph.value_info),
        "value_info_bytes": sum(v.ByteSize() for v in graph.value_info),
        "bytes_beyond_raw_weights": path.stat().st_size - 4 * elements,
    }


def run_exporter(exporter: Exporter, seed: int, workdir: Path) -> dict[str, Any]:
    """Export the three variants with one exporter and compare them with the published files."""
    rows: dict[str, dict[str, Any]] = {}
    for name in DATASETS:
        published_entry = reference_for(REFERENCE, name)
        # The class output counts background: COCO's 80 classes make 81.
        num_classes = published_entry.dataset.classes + 1
        model = ssd_mobilenetv2(num_classes, seed=seed)
        start = time.perf_counter()
        result = export_onnx(model, workdir / f"{exporter}_{name}.onnx", exporter=exporter)
        seconds = time.perf_counter() - start
        published = published_entry.files["float"].bytes
        facts = _onnx_facts(result.path)
        diff = result.size_bytes - published
        rows[name] = {
            "num_classes": num_classes,
            "bytes": result.size_bytes,
            "published_bytes": published,
            "diff_bytes": diff,
            "relative_error": diff / published,
            "within_target": abs(diff) / published <= REL_TARGET,
            # What is left once the producer_version length is that of the zoo's torch.
            "diff_after_producer_version": diff
            - (len(facts["producer_version"]) - PUBLISHED_PRODUCER_VERSION_LEN),
            "sha256": result.sha256,
            "parameters": result.parameters,
            "output_names": list(result.output_names),
            "export_s": round(seconds, 2),
            **facts,
        }
        result.path.unlink()
    differences = []
    for a, b in PAIRS:
        ours = rows[a]["bytes"] - rows[b]["bytes"]
        published = rows[a]["published_bytes"] - rows[b]["published_bytes"]
        delta_c = rows[a]["num_classes"] - rows[b]["num_classes"]
        differences.append(
            {
                "pair": f"{a} - {b}",
                "bytes": ours,
                "published_bytes": published,
                "exact": ours == published,
                # 6 heads * 6 priors * dC classes * (9*2880 + 64 weights + 1 bias) floats.
                "raw_weight_bytes": 4 * 155_940 * delta_c,
                "protobuf_overhead_bytes": published - 4 * 155_940 * delta_c,
            }
        )
    return {"variants": rows, "differences": differences}


def render_text(record: dict[str, Any]) -> str:
    """The tables as printed and written to the markdown file."""
    lines: list[str] = []
    for exporter, block in record["exporters"].items():
        lines += [
            f"Exporter: {exporter} (opset {record['settings']['opset']})",
            "",
            "| variant | NC+1 | ours bytes | published bytes | diff | relative error | "
            "within 0.1% | diff after producer_version |",
            "|---|--:|--:|--:|--:|--:|:-:|--:|",
        ]
        for name, row in block["variants"].items():
            lines.append(
                f"| {name} | {row['num_classes']} | {row['bytes']:,} | "
                f"{row['published_bytes']:,} | {row['diff_bytes']:+,} | "
                f"{row['relative_error'] * 100:+.6f}% | "
                f"{'yes' if row['within_target'] else 'NO'} | "
                f"{row['diff_after_producer_version']:+,} |"
            )
        lines += [
            "",
            "| difference | ours bytes | published bytes | exact | raw weights | protobuf |",
            "|---|--:|--:|:-:|--:|--:|",
        ]
        for d in block["differences"]:
            lines.append(
                f"| {d['pair']} | {d['bytes']:,} | {d['published_bytes']:,} | "
                f"{'yes' if d['exact'] else 'NO'} | {d['raw_weight_bytes']:,} | "
                f"{d['protobuf_overhead_bytes']:+,} |"
            )
        lines.append("")
    return "\n".join(lines)


def render_markdown(record: dict[str, Any]) -> str:
    """The record as a markdown page."""
    m = record["machine"]
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    return "\n".join(
        [
            "# Export fidelity: ssd_mobilenetv2_pt zoo form vs the published float files",
            "",
            f"Recorded {record['created']} by `{record['command']}`.",
            "",
            f"- Machine: {m['platform']}, Python {m['python']}; packages: {pkgs}; git "
            f"{m['git'].get('revision', '?')}{' (dirty)' if m['git'].get('dirty') else ''}, "
            f"evalkit/models sha256 {m['git'].get('evalkit_models_sha256', '?')}",
            f"- Settings: seed {record['settings']['seed']}, opset {record['settings']['opset']}, "
            "zoo form (float32 NCHW input 'input', dynamic batch, constant folding)",
            "- 'diff after producer_version': the difference left once our producer_version "
            f"string is counted at the {PUBLISHED_PRODUCER_VERSION_LEN} characters of a "
            "torch 2.x.y release.",
            "- 'protobuf': published difference minus the raw float32 bytes of the extra "
            "head weights (length prefixes and dims varints that grow with the tensor sizes).",
            "",
            render_text(record),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="weights seed (default 0)")
    parser.add_argument("--dynamo", action="store_true", help="also run the dynamo exporter")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="result path without suffix"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    exporters: list[Exporter] = ["torchscript"]
    if args.dynamo:
        exporters.append("dynamo")
    with tempfile.TemporaryDirectory(prefix="evalkit_fidelity_") as tmp:
        blocks = {e: run_exporter(e, args.seed, Path(tmp)) for e in exporters}
    record = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "fidelity",
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "command": "python benchmarks/fidelity.py"
        + "".join(f" {a}" for a in (argv or sys.argv[1:])),
        "settings": {"seed": args.seed, "opset": OPSET, "relative_target": REL_TARGET},
        "machine": machine_info(
            ("torch", "onnx", "onnxscript", "protobuf"),
            REPO / "evalkit" / "models",
            "evalkit_models_sha256",
        ),
        "exporters": blocks,
    }
    print(render_text(record))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.output, record, render_markdown(record))
    main_block = blocks["torchscript"]
    met = all(r["within_target"] for r in main_block["variants"].values()) and all(
        d["exact"] for d in main_block["differences"]
    )
    print(f"targets {'met' if met else 'NOT met'}; recorded {args.output}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
