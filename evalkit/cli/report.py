"""``evalkit report RUN_DIR [--out DIR]``: re-render a run's report from its result.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evalkit.record import load_result


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="re-render a run's report (HTML, Markdown, CSV, PNG) from its result.json",
        description="Read RUN_DIR/result.json (or a result.json path) and write report.html, "
        "report.md, one CSV per table and one PNG per figure. Published figures come from "
        "the reference the run names. Nothing is re-measured.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder or its result.json")
    parser.add_argument(
        "--out", metavar="DIR", help="where to write the report (default: the run folder)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load, render, list the files written; a bad record raises InputError (exit 2)."""
    # pandas and matplotlib load only when a report is rendered, not on every evalkit call.
    from evalkit.reports import render_report

    record = load_result(args.run_dir)
    default = record.path.parent if record.path is not None else Path(args.run_dir)
    files = render_report(record, Path(args.out) if args.out else default)
    print(f"report: {files.html}")
    for path in files.paths[1:]:
        print(f"  {path}")
    return 0
