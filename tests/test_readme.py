"""Every ``evalkit`` command the README shows parses with the real command line, and the
README's two commands are the ones ``.ci/run`` and the docs promise."""

from __future__ import annotations

import re
import shlex

import pytest

from evalkit.cli import build_parser

from .conftest import REPO

README = (REPO / "README.md").read_text()


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def _evalkit_commands() -> list[str]:
    commands = []
    for block in _bash_blocks(README):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith((".venv/bin/evalkit ", "evalkit ")):
                    commands.append(part.split("evalkit ", 1)[1])
    return commands


COMMANDS = _evalkit_commands()


def test_readme_shows_commands() -> None:
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("command", COMMANDS)
def test_command_parses(command: str) -> None:
    args = build_parser().parse_args(shlex.split(command.replace("$GITHUB_STEP_SUMMARY", "s")))
    assert callable(args.func)


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    test_command = _bash_blocks(README)[1].strip()
    assert test_command in ci
    assert "pytest" in test_command
    assert "evalkit demo" in _bash_blocks(README)[0]
