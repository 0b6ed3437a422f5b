"""Errors about user input: they name the file, the record and what was expected."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Input that cannot be used as given (malformed file, unknown id, bad value)."""

    def __init__(
        self, problem: str, *, path: str | Path | None = None, record: str | None = None
    ) -> None:
        self.path = None if path is None else str(path)
        self.record = record
        self.problem = problem
        where = ""
        if self.path is not None:
            where = self.path
        if record is not None:
            where = f"{where}: {record}" if where else record
        super().__init__(f"{where}: {problem}" if where else problem)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what is cached and how to resume.

    A KeyboardInterrupt still, so a caller's ``except Exception`` does not swallow it."""
