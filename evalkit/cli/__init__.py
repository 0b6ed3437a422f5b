"""The ``evalkit`` command: parse, call the library, render. Exit codes: 0 success,
1 a check failed, 2 unusable input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evalkit import __version__
from evalkit.cli import bench as bench_cmd
from evalkit.cli import check as check_cmd
from evalkit.cli import compare as compare_cmd
from evalkit.cli import datasets as datasets_cmd
from evalkit.cli import demo as demo_cmd
from evalkit.cli import evaluate as evaluate_cmd
from evalkit.cli import export as export_cmd
from evalkit.cli import quantize as quantize_cmd
from evalkit.cli import references as references_cmd
from evalkit.cli import report as report_cmd
from evalkit.cli import run as run_cmd
from evalkit.cli import stedgeai as stedgeai_cmd
from evalkit.errors import InputError
from evalkit.registry import UnknownNameError

# Each subcommand module exposes add_parser(subparsers) and sets func on its parser.
COMMANDS = (
    demo_cmd,
    run_cmd,
    evaluate_cmd,
    datasets_cmd,
    references_cmd,
    export_cmd,
    quantize_cmd,
    bench_cmd,
    stedgeai_cmd,
    report_cmd,
    compare_cmd,
    check_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evalkit",
        description="Reproduce, compare and regression-check edge object detectors.",
    )
    parser.add_argument("--version", action="version", version=f"evalkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except (InputError, UnknownNameError) as exc:
        print(f"evalkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
