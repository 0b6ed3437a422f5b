"""COCO results files (``[{image_id, category_id, bbox: [x, y, w, h], score}, ...]``).

Coordinates stay float64 in original pixels exactly as written, so a file evaluates here
exactly as pycocotools evaluates it. For VOC ground truth ``image_id`` is the image name and
``category_id`` the class name or its 1-based index.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import evalkit.metrics._cocoeval as _cocoeval
import evalkit.metrics._results_json as _results_json
from evalkit.errors import InputError
from evalkit.jsonio import as_box, as_number, is_number, parse_json_bytes, read_bytes, require
from evalkit.types import Detections, GroundTruth, IntArray


def exact_duplicates(dets: Detections) -> int:
    """How many detections repeat an earlier one exactly (image, class, box and score;
    -0.0 equals 0.0).

    pycocotools scores every copy, so a results file concatenated twice silently lowers AP;
    the count lets the caller say so instead.
    """
    if len(dets.scores) < 2:
        return 0
    c = np.ascontiguousarray
    return _cocoeval.count_duplicates(
        c(dets.image_index), c(dets.category_index), c(dets.boxes_xywh_px), c(dets.scores)
    )


def category_lookup(gt: GroundTruth) -> dict[Any, int]:
    """Category id, or name, to position (an id wins over an equal name)."""
    lookup: dict[Any, int] = {}
    for i, cat in enumerate(gt.categories):
        lookup[cat.id] = i
        lookup.setdefault(cat.name, i)
    return lookup


def _record_error(
    records: Sequence[Any], gt: GroundTruth, path: Path, ignore_unknown: bool = False
) -> InputError:
    """Find the first bad record the slow way, to say exactly what is wrong with it
    (``ignore_unknown``: a category the ground truth lacks is not wrong)."""
    categories = category_lookup(gt)
    for i, rec in enumerate(records):
        where = f"record {i}"
        image_id = require(rec, "image_id", where, path)
        if gt.image_position(image_id) is None:
            return InputError(
                f"image_id {image_id!r} is not an image of the ground truth "
                f"{gt.name or ''}".rstrip(),
                path=path,
                record=where,
            )
        cat = require(rec, "category_id", where, path)
        unknown = not isinstance(cat, bool) and not _hashable_in(cat, categories)
        if isinstance(cat, bool) or (unknown and not ignore_unknown) or not _hashable(cat):
            return InputError(
                f"category_id {cat!r} is not a category of the ground truth "
                f"(known: {', '.join(str(c.id) for c in gt.categories)})",
                path=path,
                record=where,
            )
        as_box(require(rec, "bbox", where, path), where, path)
        as_number(require(rec, "score", where, path), "score", where, path)
    return InputError("unreadable records", path=path)


def _floats(values: list[Any]) -> np.ndarray:
    """float64 as Python's float() converts each value: numpy refuses an integer beyond
    int64 (a JSON integer of 20+ digits) that float() rounds like any other number."""
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:
        rows = [[float(v) for v in row] if isinstance(row, list) else float(row) for row in values]
        return np.array(rows, dtype=np.float64)


def _all_numbers(records: Sequence[Any]) -> bool:
    """Every score and bbox value a real number, not a bool or text. The types present are
    collected first (a JSON parser gives int and float), so the per-value check runs only
    when something else, such as a numpy number, is there."""
    kinds = {type(r["score"]) for r in records}
    kinds.update(type(v) for r in records for v in r["bbox"])
    if kinds <= {int, float}:
        return True
    return all(is_number(r["score"]) for r in records) and all(
        is_number(v) for r in records for v in r["bbox"]
    )


def parse_coco_results(records: Any, gt: GroundTruth, path: str | Path = "<memory>") -> Detections:
    """Validate parsed results against ``gt`` and return them as columnar detections."""
    path = Path(path)
    if not isinstance(records, list):
        raise InputError(
            f"expected a JSON list of detections, got {type(records).__name__}", path=path
        )
    if not records:
        return Detections.empty()
    categories = category_lookup(gt)
    try:
        # Fast path: column extraction; any surprise falls back to a record-by-record check.
        n = len(records)
        images = gt.image_lookup
        image_index = np.fromiter((images.get(r["image_id"], -1) for r in records), np.int64, n)
        category_index = np.fromiter(
            (categories.get(r["category_id"], -1) for r in records), np.int64, n
        )
        boxes = _floats([r["bbox"] for r in records])
        scores = _floats([r["score"] for r in records])
        ok = (
            boxes.shape == (n, 4)
            and bool(np.all(image_index >= 0))
            and bool(np.all(category_index >= 0))
            and bool(np.isfinite(boxes).all())
            and bool(np.isfinite(scores).all())
            and bool((boxes[:, 2:] >= 0).all())
            # True == 1 in a dict lookup and np.array turns True and "0.9" into floats: only
            # real numbers pass the fast path, anything else gets the record-by-record message.
            and _all_numbers(records)
            and not any(type(r["category_id"]) is bool for r in records)
        )
    except (KeyError, TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise _record_error(records, gt, path)
    return Detections(
        image_index=image_index.astype(np.int64),
        category_index=category_index.astype(np.int64),
        boxes_xywh_px=boxes,
        scores=scores,
    )


def drop_unknown_categories(records: Any, gt: GroundTruth) -> tuple[Any, dict[str, int]]:
    """The records without those whose ``category_id`` is not a category of ``gt``, and how
    many of each such id were dropped (keyed by the id as text, for JSON). pycocotools
    ignores them: it evaluates the ground truth's categories only. Anything else wrong with a
    record (a bool id, a missing field) is left for :func:`parse_coco_results` to report."""
    if not isinstance(records, list):
        return records, {}
    categories = category_lookup(gt)
    kept: list[Any] = []
    dropped: dict[str, int] = {}
    for rec in records:
        cat = rec.get("category_id") if isinstance(rec, dict) else None
        known = cat is None or isinstance(cat, bool) or _hashable_in(cat, categories)
        if known:
            kept.append(rec)
        else:
            dropped[str(cat)] = dropped.get(str(cat), 0) + 1
    return kept, dict(sorted(dropped.items()))


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _hashable_in(value: Any, lookup: dict[Any, int]) -> bool:
    try:
        return value in lookup
    except TypeError:  # a list or a dict as an id: parse_coco_results names the record
        return True


def load_coco_results(
    path: str | Path, gt: GroundTruth, *, ignore_unknown_categories: bool = False
) -> Detections:
    """Read a COCO results file whose detections refer to ``gt``'s images and categories;
    with ``ignore_unknown_categories``, detections of other categories are dropped (see
    :func:`load_coco_results_counted` for how many)."""
    return load_coco_results_counted(path, gt, ignore_unknown_categories)[0]


class ResultsPrefetch:
    """A results file read, and in the plain form parsed to columns, on a background thread
    (the parser releases the GIL), so that the ground truth loads meanwhile. An error, such
    as a missing file, is raised by :meth:`take`, where the caller would have met it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._raw = b""
        self._columns: RawColumns | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name="evalkit-results", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self._raw = read_bytes(self.path)
            self._columns = _results_json.columns(self._raw, compiled_threads())
        except BaseException as exc:  # raised again in the caller's thread, by take()
            self._error = exc

    def take(self) -> tuple[bytes, RawColumns | None]:
        """The file's bytes and its columns (None unless in the plain form), handed over:
        this object keeps no reference, so they go as soon as the caller drops them."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        taken = self._raw, self._columns
        self._raw, self._columns = b"", None
        return taken


RawColumns = tuple[bytes, bytes, bytes, bytes]


def compiled_threads() -> int:
    """Threads for the compiled parts (parser, COCO core): the CPUs this process may use, up
    to 4. Their results never depend on it."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, usable or 1))


def load_coco_results_counted(
    path: str | Path,
    gt: GroundTruth,
    ignore_unknown_categories: bool,
    prefetched: ResultsPrefetch | None = None,
) -> tuple[Detections, dict[str, int]]:
    """:func:`load_coco_results` and the detections dropped per unknown ``category_id``;
    ``prefetched`` is the same file already being read (:class:`ResultsPrefetch`)."""
    if prefetched is not None:
        raw, parsed = prefetched.take()
    else:
        raw = read_bytes(path)
        parsed = _results_json.columns(raw, compiled_threads())
    if parsed is not None:
        del raw  # the text is not needed on this path; a large file goes before evaluation
        plain = _plain_columns(parsed, gt, ignore_unknown_categories)
        if plain is not None:
            return plain
        raw = read_bytes(path)  # something to report: the general path names it
    records = parse_json_bytes(raw, path)
    if not ignore_unknown_categories:
        return parse_coco_results(records, gt, path), {}
    kept, dropped = drop_unknown_categories(records, gt)
    try:
        return parse_coco_results(kept, gt, path), dropped
    except InputError:
        if not isinstance(records, list):
            raise
        # Named by its place in the file, not in what is left after dropping.
        raise _record_error(records, gt, Path(path), ignore_unknown=True) from None


def _positions(query: IntArray, ids: list[Any]) -> IntArray | None:
    """Position of each queried id among ``ids`` (-1 when absent); None unless every id is
    an int that numpy holds (the general path handles other ids)."""
    if not all(type(i) is int and -(2**63) <= i < 2**63 for i in ids):
        return None
    known = np.asarray(ids, np.int64)
    if known.size == 0 or query.size == 0:
        return np.full(query.shape, -1, np.int64)
    low, high = int(known.min()), int(known.max())
    if high - low <= 4 * (known.size + query.size):  # COCO's ids: a table beats a search
        table = np.full(high - low + 1, -1, np.int64)
        table[known - low] = np.arange(known.size)
        inside = (query >= low) & (query <= high)
        return np.where(inside, table[np.where(inside, query - low, 0)], -1)
    order = np.argsort(known, kind="stable")
    at = np.minimum(np.searchsorted(known[order], query), known.size - 1)
    return np.where(known[order][at] == query, order[at], -1)


def _plain_columns(
    parsed: RawColumns, gt: GroundTruth, ignore_unknown_categories: bool
) -> tuple[Detections, dict[str, int]] | None:
    """Detections from a results file in the plain form, read straight to columns (the C++
    reader, :mod:`evalkit.metrics._results_json`, gives the doubles Python's json gives), or
    None: then the general path reads it, and names what is wrong if anything is."""
    image_ids, category_ids = (np.frombuffer(b, np.int64) for b in parsed[:2])
    boxes = np.frombuffer(parsed[2], np.float64).reshape(-1, 4)
    scores = np.frombuffer(parsed[3], np.float64)
    image_index = _positions(image_ids, [im.image_id for im in gt.images])
    category_index = _positions(category_ids, [c.id for c in gt.categories])
    if image_index is None or category_index is None or bool((image_index < 0).any()):
        return None
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all() and (boxes[:, 2:] >= 0).all()):
        return None
    dropped: dict[str, int] = {}
    unknown = category_index < 0
    if unknown.any():
        if not ignore_unknown_categories:
            return None
        values, counts = np.unique(category_ids[unknown], return_counts=True)
        dropped = dict(
            sorted((str(v), n) for v, n in zip(values.tolist(), counts.tolist(), strict=True))
        )
        keep = ~unknown
        image_index, category_index = image_index[keep], category_index[keep]
        boxes, scores = boxes[keep], scores[keep]
    if image_index.size == 0:
        return Detections.empty(), dropped
    return Detections(image_index, category_index, boxes, scores), dropped


def coco_results_records(gt: GroundTruth, dets: Detections) -> list[dict[str, Any]]:
    """Detections as COCO result records (image ids and category ids of ``gt``)."""
    image_ids = [im.image_id for im in gt.images]
    cat_ids = [c.id for c in gt.categories]
    return [
        {"image_id": image_ids[i], "category_id": cat_ids[c], "bbox": box, "score": s}
        for i, c, box, s in zip(
            dets.image_index.tolist(),
            dets.category_index.tolist(),
            dets.boxes_xywh_px.tolist(),
            dets.scores.tolist(),
            strict=True,
        )
    ]


def write_coco_results(path: str | Path, gt: GroundTruth, dets: Detections) -> None:
    """Write a results file that pycocotools' ``loadRes`` reads back to the same floats."""
    Path(path).write_text(json.dumps(coco_results_records(gt, dets)))
