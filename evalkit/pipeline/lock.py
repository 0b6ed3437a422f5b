"""One run per output folder: an exclusive lock file naming its holder.

The lock is written whole before it appears (a temporary file hard-linked into place, which
fails when a lock already exists), so a reader never sees half a holder. A lock whose
process is gone (same host, no such pid) is taken over, and the run says so; a lock held by
a live process, or by another host whose processes cannot be checked, refuses the run.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from evalkit.errors import InputError

LOCK_NAME = ".evalkit-run.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds an output folder."""

    pid: int
    host: str
    started: str

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}"

    @classmethod
    def me(cls) -> Holder:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(os.getpid(), socket.gethostname(), now)


def _read(path: Path) -> Holder | None:
    """The holder a lock file names; None when it is unreadable (not written by evalkit)."""
    try:
        data: Any = json.loads(path.read_text())
        return Holder(int(data["pid"]), str(data["host"]), str(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


class FolderLock:
    """``with FolderLock(out, log):`` holds ``out`` for this process until the block ends."""

    def __init__(self, folder: Path, log: Callable[[str], None] = print) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self.log = log
        self.holder = Holder.me()

    def _try_create(self) -> bool:
        tmp = self.folder / f"{LOCK_NAME}.{self.holder.pid}.tmp"
        tmp.write_text(json.dumps(asdict(self.holder)) + "\n")
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        return True

    def acquire(self) -> None:
        try:
            for _ in range(3):  # another process may take over a stale lock between our steps
                if self._try_create():
                    return
                holder = _read(self.path)
                if holder is None or holder.host != self.holder.host or _alive(holder.pid):
                    raise self._held(holder)
                # Moving the stale lock aside is atomic: of two runs taking it over, one wins.
                aside = self.path.with_name(f"{LOCK_NAME}.stale.{self.holder.pid}")
                try:
                    self.path.rename(aside)
                except FileNotFoundError:
                    continue
                aside.unlink()
                self.log(
                    f"took over the lock of an earlier run that is gone ({holder.describe()}); "
                    f"its cached predictions are kept: {self.path}"
                )
        except OSError as exc:
            raise InputError(
                f"cannot lock the output folder: {exc.strerror or exc}", path=self.folder
            ) from None
        raise self._held(_read(self.path))

    def _held(self, holder: Holder | None) -> InputError:
        if holder is None:
            who = "a lock file that is not evalkit's (or is unreadable)"
        elif holder.host != self.holder.host:
            who = (
                f"another machine's run ({holder.describe()}), which cannot be checked from "
                "here; if it is gone, delete the lock file"
            )
        else:
            who = f"a running evalkit process ({holder.describe()})"
        return InputError(
            f"this output folder is in use by {who}; wait for it to finish or choose another "
            "output folder",
            path=self.path,
        )

    def release(self) -> None:
        holder = _read(self.path)
        if holder is not None and holder == self.holder:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
