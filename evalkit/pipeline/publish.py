"""A run's outputs appear together or not at all.

A run writes its detections, ``result.json``, report and quantized models into a staging
folder inside the output folder; :func:`publish` then moves them in. The previous run's
``result.json`` goes first (a reader finds no result rather than an old one beside new
detections), the new one last, and files the previous run published that this one does not
write are removed, so the folder never mixes two runs. Until then the previous run's outputs
stay whole and readable; an interrupted run leaves them as they were.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

STAGING = ".evalkit-staging"
MANIFEST = ".evalkit-published.json"
RESULT = "result.json"


def staging_dir(out: Path) -> Path:
    """The staging folder of output folder ``out``."""
    return out / STAGING


def _published(out: Path) -> list[str]:
    """What the previous run published (relative paths); [] before the first run."""
    try:
        names = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return [RESULT] if (out / RESULT).is_file() else []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def publish(out: Path) -> list[Path]:
    """Move everything in ``out``'s staging folder into ``out``; returns the new paths."""
    stage = staging_dir(out)
    new = sorted(
        str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file() and p.name != RESULT
    )
    (out / RESULT).unlink(missing_ok=True)
    for name in _published(out):
        if name not in new and name != RESULT and ".." not in Path(name).parts:
            (out / name).unlink(missing_ok=True)
    for name in new:
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (stage / name).replace(target)
    (stage / RESULT).replace(out / RESULT)
    manifest = out / f"{MANIFEST}.tmp"
    manifest.write_text(json.dumps([*new, RESULT], indent=1) + "\n")
    manifest.replace(out / MANIFEST)
    shutil.rmtree(stage, ignore_errors=True)
    return [out / n for n in (*new, RESULT)]
