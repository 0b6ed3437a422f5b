"""The ``evalkit`` command: parse, call the library, render. Exit codes: 0 success,
1 a check failed, 2 unusable input (a message naming the file or field, no traceback
unless ``--debug``), 130 interrupted (Ctrl-C)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from evalkit._version import __version__
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

# Each subcommand by name, and the module whose add_parser(subparsers) registers it (and
# sets func on its parser), in the order help lists them.
COMMANDS: dict[str, str] = {
    "demo": "evalkit.cli.demo",
    "reproduce": "evalkit.cli.reproduce",
    "run": "evalkit.cli.run",
    "matrix": "evalkit.cli.matrix",
    "evaluate": "evalkit.cli.evaluate",
    "datasets": "evalkit.cli.datasets",
    "models": "evalkit.cli.models",
    "references": "evalkit.cli.references",
    "export": "evalkit.cli.export",
    "quantize": "evalkit.cli.quantize",
    "diagnose": "evalkit.cli.quantize",
    "bench": "evalkit.cli.bench",
    "stedgeai": "evalkit.cli.stedgeai",
    "report": "evalkit.cli.report",
    "compare": "evalkit.cli.compare",
    "check": "evalkit.cli.check",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command-line parser; with ``only``, just that subcommand is registered."""
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
    modules = dict.fromkeys(m for name, m in COMMANDS.items() if only in (None, name))
    for module in modules:  # a module registering two commands is asked once
        importlib.import_module(module).add_parser(subparsers)
    return parser


# Commands whose start-up time matters enough to import their own module only (evaluate's
# end-to-end time is measured against hotcoco). The others import every command module first,
# as before: with a late first import of their heavy modules, a handled Ctrl-C during
# `evalkit run` under load sometimes ended as a SIGINT death instead of exit status 130
# (tests/test_no_silent_wrong.py under CPU load: 1 in 12 runs, none in 30 with everything
# imported first; the cause was not found).
LAZY_COMMANDS = frozenset({"evaluate"})


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand the command line names, if it is one. The top-level options take no
    value, so it is the first argument that is not an option."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def _os_error(exc: OSError) -> str:
    """An OSError as a user reads it: what failed, on which file."""
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    what = exc.strerror or str(exc)
    return f"{' -> '.join(names)}: {what}" if names else what


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    parser = build_parser(command if command in LAZY_COMMANDS else None)
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
