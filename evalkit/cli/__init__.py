"""The ``evalkit`` command: parse, call the library, render. Exit codes: 0 success,
1 a check failed, 2 unusable input (a message naming the file or field, no traceback
unless ``--debug``), 130 interrupted (Ctrl-C)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evalkit._version import __version__
from evalkit.cli import bench as bench_cmd
from evalkit.cli import check as check_cmd
from evalkit.cli import compare as compare_cmd
from evalkit.cli import datasets as datasets_cmd
from evalkit.cli import demo as demo_cmd
from evalkit.cli import evaluate as evaluate_cmd
from evalkit.cli import export as export_cmd
from evalkit.cli import matrix as matrix_cmd
from evalkit.cli import models as models_cmd
from evalkit.cli import quantize as quantize_cmd
from evalkit.cli import references as references_cmd
from evalkit.cli import report as report_cmd
from evalkit.cli import reproduce as reproduce_cmd
from evalkit.cli import run as run_cmd
from evalkit.cli import stedgeai as stedgeai_cmd
from evalkit.errors import InputError
from evalkit.registry import UnknownNameError

# What ``pip install evalkit`` leaves out (evaluate, check, compare, references and datasets
# work without them): the packages of the ``run`` extra, by the name they are imported as.
EXTRA_PACKAGES = {
    "cv2": "opencv-python-headless",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "torch": "torch",
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "ai_edge_litert": "ai-edge-litert",
}

# Each subcommand module exposes add_parser(subparsers) and sets func on its parser.
COMMANDS = (
    demo_cmd,
    reproduce_cmd,
    run_cmd,
    matrix_cmd,
    evaluate_cmd,
    datasets_cmd,
    models_cmd,
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
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the Python traceback of an error instead of only its message",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def _os_error(exc: OSError) -> str:
    """An OSError as a user reads it: what failed, on which file."""
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    what = exc.strerror or str(exc)
    return f"{' -> '.join(names)}: {what}" if names else what


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"evalkit {args.command}"
    try:
        code: int = args.func(args)
    except (InputError, UnknownNameError, OSError) as exc:
        if args.debug:
            raise
        problem = _os_error(exc) if isinstance(exc, OSError) else str(exc)
        print(f"{prefix}: error: {problem}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if args.debug or top not in EXTRA_PACKAGES:
            raise
        print(
            f"{prefix}: error: this command needs {EXTRA_PACKAGES[top]}, which is not installed; "
            "install the run extra: pip install 'evalkit[run]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        # RunInterrupted says what is cached; a bare Ctrl-C elsewhere has nothing to keep.
        print(f"{prefix}: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
