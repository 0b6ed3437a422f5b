"""What each way of installing evalkit puts on disk: a fresh virtual environment per
install line (``pip install .`` for evaluation only, ``.[run]`` for everything the README's
main command needs, ``.[run,ray,test]`` for the test command), measured as the size of its
site-packages and the packages pip reports. Records ``benchmarks/results/install_size.*``.

    python benchmarks/install_size.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import REPO, machine_info, write_results

EXTRAS = ("", "run", "run,ray,test")


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def _packages(python: Path) -> list[str]:
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [p["name"] for p in json.loads(listed)]


def measure(extras: str, work: Path) -> dict[str, Any]:
    """A fresh venv with evalkit installed (not editable) with ``extras``."""
    venv = work / (extras.replace(",", "_") or "base")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    empty = _size(venv)
    before = set(_packages(python))
    target = f"{REPO}[{extras}]" if extras else str(REPO)
    start = time.perf_counter()
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", target], check=True, capture_output=True
    )
    seconds = time.perf_counter() - start
    packages = sorted(set(_packages(python)) - before)
    size = _size(venv) - empty
    print(f"{target.replace(str(REPO), '.')}: {size / 2**20:.0f} MiB, {len(packages)} packages")
    return {
        "install": f"pip install '.{'[' + extras + ']' if extras else ''}'",
        "bytes": size,
        "packages": packages,
        "seconds": round(seconds, 1),
    }


def render_markdown(record: dict[str, Any]) -> str:
    lines = [
        "# Install size",
        "",
        f"Recorded {record['created']} by `python benchmarks/install_size.py` "
        "(a fresh venv per line, packages from the machine's package index; seconds depend "
        "on its cache).",
        "",
        "| install | MiB on disk | packages added | seconds |",
        "|---|--:|--:|--:|",
    ]
    for row in record["installs"]:
        lines.append(
            f"| `{row['install']}` | {row['bytes'] / 2**20:.0f} | {len(row['packages'])} "
            f"| {row['seconds']} |"
        )
    base = record["installs"][0]
    lines += ["", f"`pip install evalkit` brings: {', '.join(base['packages'])}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/install_size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        installs = [measure(extras, Path(work)) for extras in EXTRAS]
    record = {
        "benchmark": "install_size",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(("pip",), REPO / "evalkit", "evalkit_sources_sha256"),
        "installs": installs,
    }
    write_results(args.output, record, render_markdown(record))


if __name__ == "__main__":
    main()
