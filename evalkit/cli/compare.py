"""``evalkit compare A B [--json]``: two runs' metrics side by side, with B's change from A."""

from __future__ import annotations

import argparse
import json
from typing import Any, Literal

from evalkit.cli.check import add_allow_different, text_table
from evalkit.compare import Comparison, Row, compare
from evalkit.record import load_result

_UNITS = {"points": " pt", "percent": "%", "count": ""}
_SIDES: tuple[Literal["a", "b"], ...] = ("a", "b")


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "compare",
        help="two runs' metrics side by side, with deltas",
        description="Every metric both result.json files have, per variant and protocol (AP50, "
        "per-class AP, the 12 COCO stats, TP/FP, latency p50/p90, model bytes, images/s), with "
        "B's change from A: AP in points, latency, bytes and images/s in percent, counts by "
        "difference. Metrics only one run has are listed apart. AP values are shown in percent. "
        "Runs on different datasets or settings are refused unless --allow-different says so.",
    )
    parser.add_argument("a", metavar="A", help="result.json (or its run directory)")
    parser.add_argument("b", metavar="B", help="result.json (or its run directory)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--changed-only", action="store_true", help="leave out the metrics that did not move"
    )
    parser.add_argument(
        "--sort",
        choices=("file", "change"),
        default="file",
        help="row order: as in the files (default), or largest change first",
    )
    add_allow_different(parser)
    parser.set_defaults(func=run)


def _value(row: Row, value: float | None) -> str:
    if value is None:
        return "-"
    if row.unit == "points":  # AP-like fractions read as percent, as in the model cards
        return f"{100 * value:.2f}"
    if row.metric.endswith("_ms"):
        return f"{value:.3f}"
    return f"{value:.1f}" if row.metric == "images_per_s" else f"{value:.0f}"


def _delta(row: Row) -> str:
    if row.delta is None:
        return "-"
    digits = 0 if row.unit == "count" else 2
    return f"{row.delta:+.{digits}f}{_UNITS[row.unit]}"


def render_comparison(comparison: Comparison) -> str:
    """The table of shared metrics, then what only A or only B has."""
    common = [r for r in comparison.rows if r.a is not None and r.b is not None]
    headers = ["variant", "protocol", "metric", "A", "B", "delta"]
    body = [
        [r.variant, r.protocol or "-", r.metric, _value(r, r.a), _value(r, r.b), _delta(r)]
        for r in common
    ]
    rows = text_table([headers, *body], numeric=range(3, 6))
    warning = [comparison.warning] if comparison.warning else []
    parts = [f"A: {comparison.a_label}", f"B: {comparison.b_label}", *warning, "", rows]
    for side in _SIDES:
        if only := comparison.only_in(side):
            # One line per variant/protocol: a dataset with 80 classes makes long lists.
            groups: dict[str, list[str]] = {}
            for r in only:
                groups.setdefault(f"{r.variant}/{r.protocol or '-'}", []).append(r.metric)
            parts += ["", f"only in {side.upper()} ({len(only)}):"]
            parts += [f"  {scope}: {', '.join(metrics)}" for scope, metrics in groups.items()]
    return "\n".join([*parts, *([""] if warning else []), *warning])


def run(args: argparse.Namespace) -> int:
    comparison = compare(load_result(args.a), load_result(args.b), allow=args.allow_different)
    if args.changed_only:
        comparison = comparison.changed()
    if args.sort == "change":
        comparison = comparison.by_change()
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=2))
    else:
        print(render_comparison(comparison))
    return 0
