"""The command table: every subcommand registers under its name, and a command line imports
only its own command's module (so `evalkit evaluate` starts without what `run` needs)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from evalkit.cli import COMMANDS, _command_in, build_parser


def _names(parser: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_the_full_parser_has_every_command() -> None:
    assert _names(build_parser()) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_registers_under_its_name(name: str) -> None:
    assert name in _names(build_parser(name))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["evaluate", "--gt", "x"], "evaluate"),
        (["--debug", "run", "config.yaml"], "run"),
        (["--version"], None),
        ([], None),
        (["evalute"], None),  # a typo: the full parser says what exists
    ],
)
def test_the_command_is_the_first_argument_that_is_not_an_option(
    argv: list[str], expected: str | None
) -> None:
    assert _command_in(argv) == expected


def test_evaluate_does_not_import_what_other_commands_need() -> None:
    code = (
        "import sys\n"
        "from evalkit.cli import main\n"
        "assert main(['evaluate', '--gt', 'missing.json', '--dets', 'd.json']) == 2\n"
        "heavy = ('evalkit.pipeline', 'evalkit.bench', 'evalkit.runners', 'onnxruntime', "
        "'torch', 'cv2', 'yaml')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_typo_still_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from evalkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["evalute"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'evalute'" in err and "evaluate" in err


def test_other_commands_import_every_command_first() -> None:
    """Only the commands in LAZY_COMMANDS start with their own module alone."""
    from evalkit.cli import LAZY_COMMANDS

    assert frozenset({"evaluate"}) == LAZY_COMMANDS
    code = (
        "import sys\n"
        "from evalkit.cli import main\n"
        "assert main(['references']) == 0\n"
        "print('evalkit.cli.bench' in sys.modules and 'evalkit.cli.run' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True"
