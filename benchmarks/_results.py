"""What every benchmark script records beside its numbers, and how it writes them: the
machine and software (evalkit.provenance, plus what benchmarks also need: thread variables,
a digest of the measured sources) and the ``results/NAME.{json,md}`` pair."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from evalkit.provenance import environment

REPO = Path(__file__).resolve().parents[1]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def sources_sha256(folder: Path) -> str:
    """A short digest of the Python sources under ``folder``: what was measured, even in a
    tree with uncommitted edits."""
    digest = hashlib.sha256()
    for source in sorted(folder.rglob("*.py")):
        digest.update(source.relative_to(REPO).as_posix().encode() + source.read_bytes())
    return digest.hexdigest()[:16]


def machine_info(packages: Sequence[str], sources: Path, digest_key: str) -> dict[str, Any]:
    """CPU, cores, thread variables, platform, Python, the named packages' versions, and the
    git revision with ``digest_key`` = the digest of ``sources``."""
    env = environment()
    git: dict[str, Any] = dict(env.get("git") or {})
    git[digest_key] = sources_sha256(sources)
    return {
        "cpu": env["cpu"],
        "logical_cores": env["logical_cores"],
        "usable_cores": env["usable_cores"],
        "thread_env": {v: os.environ.get(v) for v in THREAD_VARIABLES},
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in ("evalkit", *packages)},
        "git": git,
    }


def write_results(output: Path, record: dict[str, Any], markdown: str) -> None:
    """``output.json`` (the record) and ``output.md`` (its rendering), folders made."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown if markdown.endswith("\n") else markdown + "\n")
