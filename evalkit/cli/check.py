"""``evalkit check RESULT --baseline BASELINE``: exit 1 when the run regressed, for CI."""

from __future__ import annotations

import argparse
from collections.abc import Container, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from evalkit.errors import InputError
from evalkit.fingerprint import KINDS
from evalkit.gate import HEADERS, CheckReport, Scoped, Tolerances, check, load_tolerances
from evalkit.matrix.table import is_matrix
from evalkit.record import load_result

_AP50_DROP = 0.5
_LATENCY_PERCENT = 10.0


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check",
        help="gate a run against a baseline (exit 1 on a regression)",
        description="Check RESULT against BASELINE: every AP50 of the baseline (per variant "
        "and protocol) must exist in the result and drop by at most the tolerance; per-class "
        "AP drops warn (they fail only if the tolerance file sets per_class_ap); latency p50 "
        "may rise by at most a percentage when both runs have latency. Runs on different "
        "datasets or settings (result.json's fingerprint) are refused unless "
        "--allow-different says so. "
        "Exit 0: all within "
        "tolerance; 1: a regression; 2: unusable input. Tolerance file format: see "
        "evalkit.gate's docstring.",
    )
    parser.add_argument("result", metavar="RESULT", help="result.json (or its run directory)")
    parser.add_argument("--baseline", required=True, metavar="BASELINE", help="result.json")
    parser.add_argument(
        "--max-ap50-drop",
        type=_non_negative,
        metavar="POINTS",
        help=f"largest AP50 drop that passes, in AP points (default {_AP50_DROP}; "
        "overrides the tolerance file's default)",
    )
    parser.add_argument(
        "--max-latency-increase",
        type=_non_negative,
        metavar="PERCENT",
        help=f"largest latency p50 increase that passes (default {_LATENCY_PERCENT:g}; "
        "overrides the tolerance file's default)",
    )
    parser.add_argument("--tolerances", metavar="FILE.yaml", help="per-metric tolerances")
    parser.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    parser.add_argument(
        "--summary",
        metavar="FILE",
        help="append a markdown summary (e.g. $GITHUB_STEP_SUMMARY, which steps append to)",
    )
    add_allow_different(parser)
    parser.add_argument(
        "--no-latency",
        action="store_true",
        help="skip the latency check (CI machines whose timing is noise)",
    )
    parser.set_defaults(func=run)


def add_allow_different(parser: argparse.ArgumentParser) -> None:
    """``--allow-different KIND``: the one way past the comparability refusal."""
    parser.add_argument(
        "--allow-different",
        action="append",
        choices=KINDS,
        default=[],
        metavar="{" + ",".join(KINDS) + "}",
        help="compare runs whose dataset (or number-changing settings) differ; refused "
        "otherwise, with the list of differences (exit 2). Repeat for both. The output then "
        "says so in capitals.",
    )


def tolerances_from_args(args: argparse.Namespace) -> Tolerances:
    """Built-in defaults, then the tolerance file, then the flags given (defaults only)."""
    tol = Tolerances(Scoped(_AP50_DROP), Scoped(_LATENCY_PERCENT))
    if args.tolerances:
        tol = load_tolerances(args.tolerances, tol)
    if args.max_ap50_drop is not None:
        tol = replace(tol, ap50=replace(tol.ap50, default=args.max_ap50_drop))
    if args.max_latency_increase is not None:
        latency = replace(tol.latency_p50_percent, default=args.max_latency_increase)
        tol = replace(tol, latency_p50_percent=latency)
    if args.no_latency:
        tol = replace(tol, latency_p50_percent=Scoped(None))
    return tol


def text_table(rows: Sequence[Sequence[str]], numeric: Container[int]) -> str:
    """Header first; words left-aligned, the ``numeric`` columns right-aligned; a rule under
    the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    rows = [rows[0], ["-" * w for w in widths], *rows[1:]]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    )


def render_report(report: CheckReport) -> str:
    """Failures, warnings, skips, then passes as a plain table; the headline last."""
    shown, hidden = report.listed()
    parts = [
        f"{report.result} against baseline {report.baseline}",
        *([report.warning] if report.warning else []),
        "",
        text_table([HEADERS, *(c.cells() for c in shown)], numeric=range(2, 6)),
        "",
    ]
    if hidden:
        parts.append(f"{hidden} passing per-class checks not listed")
    return "\n".join([*parts, report.headline, *([report.warning] if report.warning else [])])


def _write(path: str, text: str, mode: str) -> None:
    try:
        with Path(path).open(mode, encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", path=path) from None


def run(args: argparse.Namespace) -> int:
    tolerances = tolerances_from_args(args)
    matrices = [is_matrix(Path(p)) for p in (args.result, args.baseline)]
    if any(matrices):
        if not all(matrices):
            raise InputError(
                "a matrix folder is checked against a matrix folder (both hold matrix.json)",
                path=args.result if not matrices[0] else args.baseline,
            )
        from evalkit.matrix.check import check_matrix

        report = check_matrix(args.result, args.baseline, tolerances, args.allow_different)
    else:
        result, baseline = load_result(args.result), load_result(args.baseline)
        report = check(result, baseline, tolerances, allow=args.allow_different)
    print(render_report(report))
    if args.junit:
        _write(args.junit, report.to_junit_xml(), "w")
    if args.summary:
        _write(args.summary, report.to_markdown(), "a")
    return 0 if report.passed else 1
