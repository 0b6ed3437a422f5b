"""``evalkit stedgeai import FILE``: the on-board figures of a STEdgeAI report."""

from __future__ import annotations

import argparse
import json
from typing import Any

from evalkit.bench.stedgeai import Figure, OnBoardFigures, import_report

_KIND_FILE = {"network_c_info": "network_c_info.json", "network_report": "network_report.json"}


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "stedgeai",
        help="read on-board figures from STEdgeAI reports",
        description="STEdgeAI (ST Edge AI Core) report files, read the way the STM32 model zoo "
        "reads them for its model cards.",
    )
    sub = parser.add_subparsers(dest="stedgeai_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "import",
        help="print the figures of a network_c_info.json or network_report.json",
        description="Internal/external RAM and weights flash in KiB, activations, inference "
        "time (ms, inf/s; present after an on-target validation), MACs and tool version. "
        "The kind of report is recognised from its content, not its name.",
    )
    p.add_argument("file", metavar="FILE", help="network_c_info.json or network_report.json")
    p.add_argument("--json", action="store_true", help="print the record as one JSON object")
    p.set_defaults(func=run_import)


def _kib(size_bytes: int | None) -> str | None:
    """KiB with two decimals as on the model card, bytes alongside."""
    return None if size_bytes is None else f"{size_bytes / 1024:.2f} KiB ({size_bytes:,} bytes)"


def render(figures: OnBoardFigures) -> str:
    """The figures as aligned text; a missing figure says why."""
    speed = figures.inferences_per_second
    time = None if figures.inference_time_ms is None else f"{figures.inference_time_ms:.2f} ms"
    rows: list[tuple[str, Figure, str | None]] = [
        ("STEdgeAI version", "tool_version", figures.tool_version),
        ("internal RAM", "internal_ram", _kib(figures.internal_ram_bytes)),
        ("external RAM", "external_ram", _kib(figures.external_ram_bytes)),
        ("weights flash", "weights_flash", _kib(figures.weights_flash_bytes)),
        ("activations", "activations", _kib(figures.activations_bytes)),
        ("inference time", "inference_time", time),
        ("inferences/s", "inference_time", None if speed is None else f"{speed:.2f}"),
        ("cycles", "cycles", None if figures.cycles is None else f"{figures.cycles:,}"),
        ("MACs", "macs", None if figures.macs is None else f"{figures.macs:,}"),
    ]
    schema = "" if figures.schema_version is None else f", schema {figures.schema_version}"
    lines = [f"{figures.source_path} ({_KIND_FILE[figures.kind]}{schema})"]
    width = max(len(label) for label, _, _ in rows)
    for label, figure, text in rows:
        shown = text if text is not None else f"unavailable: {figures.reason_unavailable(figure)}"
        lines.append(f"  {label:<{width}}  {shown}")
    return "\n".join(lines)


def run_import(args: argparse.Namespace) -> int:
    figures = import_report(args.file)
    print(json.dumps(figures.to_dict(), indent=2) if args.json else render(figures))
    return 0
