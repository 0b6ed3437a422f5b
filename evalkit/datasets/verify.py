"""``verify``: a local copy of a dataset checked against its manifest."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.datasets.coco import load_coco_ground_truth
from evalkit.datasets.manifest import _EXPECTED_FIELDS, MARKER_NAME, Manifest, View
from evalkit.datasets.views import person_view
from evalkit.datasets.voc import load_voc_ground_truth
from evalkit.errors import InputError
from evalkit.types import GroundTruth

VIEWS = {"person": person_view}


@dataclass(frozen=True)
class CountCheck:
    """One count of a dataset copy against the manifest (None expected: unknown, not checked)."""

    what: str
    expected: int | None
    actual: int | None

    @property
    def ok(self) -> bool:
        """Unknown expectations pass; a count that could not be taken fails a known one."""
        return self.expected is None or self.actual == self.expected


@dataclass(frozen=True)
class VerifyResult:
    """A dataset copy checked against its manifest: counts, image files, problems."""

    name: str
    path: Path
    counts: tuple[CountCheck, ...]
    images_checked: int
    missing: tuple[str, ...]
    empty: tuple[str, ...]
    unreadable: tuple[str, ...]
    problems: tuple[str, ...]
    has_marker: bool | None  # None for a local set, which fetch never marks

    @property
    def ok(self) -> bool:
        """No problem, no bad image file, every known count matched."""
        bad_files = self.missing or self.empty or self.unreadable
        return not (self.problems or bad_files) and all(c.ok for c in self.counts)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (what ``verify --json`` prints)."""
        return {
            "dataset": self.name,
            "path": str(self.path),
            "ok": self.ok,
            "counts": {c.what: {"expected": c.expected, "actual": c.actual} for c in self.counts},
            "images_checked": self.images_checked,
            "missing": list(self.missing),
            "empty": list(self.empty),
            "unreadable": list(self.unreadable),
            "problems": list(self.problems),
            "has_marker": self.has_marker,
        }


def _view_of(gt: GroundTruth, view: View | None) -> tuple[list[str], int, int]:
    """Image files, annotation count and category count of the set or of its view."""
    if view is not None:
        gt = VIEWS[view](gt)
    return [im.file_name for im in gt.images], gt.num_annotations, len(gt.categories)


def check_image_files(
    folder: Path, names: list[str], *, decode: bool = True, workers: int | None = None
) -> dict[str, list[str]]:
    """Names of image files that are missing, empty (0 bytes) or that cv2 cannot decode."""
    import cv2  # lazy: only verify needs OpenCV (the run extra)

    from evalkit.datasets.images import check_complete

    def status(name: str) -> str:
        path = folder / name
        try:
            if path.stat().st_size == 0:
                return "empty"
        except FileNotFoundError:
            return "missing"
        if not decode:
            return "ok"
        # libjpeg decodes a truncated JPEG without complaint, so look for its end first.
        try:
            check_complete(path)
        except InputError:
            return "unreadable"
        # A 1/8-scale decode fails (None) on the same files as a full one, and lets libjpeg
        # skip most of the IDCT; cv2 releases the GIL, so threads run decodes in parallel.
        if cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
            return "unreadable"
        return "ok"

    found: dict[str, list[str]] = {"missing": [], "empty": [], "unreadable": [], "ok": []}
    with ThreadPoolExecutor(workers or min(16, os.cpu_count() or 1)) as pool:
        for name, state in zip(names, pool.map(status, names), strict=True):
            found[state].append(name)
    return found


def verify_dataset(
    manifest: Manifest, root: str | Path, *, decode: bool = True, workers: int | None = None
) -> VerifyResult:
    """Check ``root/<directory>`` against the manifest: counts, and every image file."""
    path = Path(root) / manifest.directory
    problems: list[str] = []
    names: list[str] = []
    actual: tuple[int | None, ...] = (None, None, None)
    if not path.is_dir():
        problems.append(f"dataset folder not found: {path}")
    else:
        annotations = path / manifest.layout.annotations
        try:
            gt = (
                load_coco_ground_truth(annotations)
                if manifest.format == "coco"
                else load_voc_ground_truth(annotations, manifest.layout.split or "")
            )
        except InputError as exc:
            problems.append(f"annotations unusable: {exc}")
        else:
            names, n_annotations, n_categories = _view_of(gt, manifest.view)
            actual = (len(names), n_annotations, n_categories)
    found = check_image_files(path / manifest.layout.images, names, decode=decode, workers=workers)
    want = manifest.expected
    return VerifyResult(
        name=manifest.name,
        path=path,
        counts=tuple(
            CountCheck(what, getattr(want, what), got)
            for what, got in zip(_EXPECTED_FIELDS, actual, strict=True)
        ),
        images_checked=len(names),
        missing=tuple(found["missing"]),
        empty=tuple(found["empty"]),
        unreadable=tuple(found["unreadable"]),
        problems=tuple(problems),
        has_marker=None if manifest.is_local else (path / MARKER_NAME).is_file(),
    )
