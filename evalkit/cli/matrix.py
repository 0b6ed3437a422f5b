"""``evalkit matrix MATRIX.yaml``: models x datasets x precisions, one run per cell."""

from __future__ import annotations

import argparse
from typing import Any

from evalkit.errors import InputError


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "matrix",
        help="run every model of a matrix file on every dataset (locally or on Ray)",
        description="One evalkit run per (model, dataset) cell, each with the model's "
        "variants (float, int8, ...); cells run one after another, or as independent Ray "
        "tasks with --executor ray. Writes each cell's run folder, matrix.json and "
        "matrix.md (every cell's AP50 beside the card's). Gate it with "
        "evalkit check MATRIX_DIR --baseline BASELINE_MATRIX_DIR. The file's format: "
        "see evalkit.matrix.config.",
    )
    parser.add_argument("matrix", help="matrix YAML file")
    parser.add_argument("--out", help="output folder (overrides 'output')")
    parser.add_argument("--executor", help="local (default) or ray (overrides executor.kind)")
    parser.add_argument("--address", help="ray: the cluster address (default: a local one)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (CI)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evalkit.api import write_report
    from evalkit.matrix.config import load_matrix
    from evalkit.matrix.run import run_matrix

    overrides: dict[str, Any] = {}
    if args.out:
        overrides["output"] = args.out
    if args.quiet:
        overrides["quiet"] = True
    if args.executor:
        overrides["executor.kind"] = args.executor
    if args.address:
        overrides["executor.address"] = args.address
    matrix = load_matrix(args.matrix, overrides)
    outcome = run_matrix(matrix, log=print, render=write_report)
    print()
    print((outcome.out_dir / "matrix.md").read_text())
    print(f"matrix: {outcome.out_dir / 'matrix.json'}")
    if outcome.failed:
        names = ", ".join(c.key for c in outcome.failed)
        raise InputError(
            f"{len(outcome.failed)} cell(s) failed: {names}; the others are in their folders",
            path=outcome.out_dir / "matrix.json",
        )
    return 0
