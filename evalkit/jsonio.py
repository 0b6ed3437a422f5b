"""Reading JSON files and validating their records, with errors that say where."""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

import orjson

from evalkit.errors import InputError


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing or malformed file raises InputError naming it."""
    return parse_json_bytes(read_bytes(path), path)


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes; a missing file or a directory raises InputError naming it."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except IsADirectoryError:
        raise InputError("expected a JSON file, found a directory", path=path) from None


def parse_json_bytes(raw: bytes, path: str | Path) -> Any:
    """Parse the JSON text of ``path``; malformed text raises InputError naming it.

    orjson parses several times faster than the standard library (results files run to
    hundreds of MB) and, like it, rounds every number to the nearest double, so values are
    identical to what pycocotools' json.load sees. Files it refuses (NaN, Infinity, which
    Python's json writes) are read again by the standard library.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", path=Path(path)
        ) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 JSON: {exc}", path=Path(path)) from None


def require(record: Any, key: str, where: str, path: str | Path) -> Any:
    """``record[key]``, or an InputError naming the record and the missing field."""
    if not isinstance(record, dict):
        raise InputError(
            f"expected a JSON object, got {type(record).__name__}", path=path, record=where
        )
    if key not in record:
        raise InputError(f"missing field {key!r}", path=path, record=where)
    return record[key]


def as_box(value: Any, where: str, path: str | Path) -> tuple[float, float, float, float]:
    """A finite [x, y, w, h] with non-negative size, or an InputError saying what arrived."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise InputError(
            f"expected bbox [x, y, w, h] of 4 numbers, got {value!r}", path=path, record=where
        )
    # float("3") would accept a string; a box written as text is a broken writer, not a box.
    if not all(is_number(v) for v in value):
        raise InputError(
            f"expected bbox [x, y, w, h] of 4 numbers, got {value!r}", path=path, record=where
        )
    try:
        x, y, w, h = (float(v) for v in value)
    except OverflowError:  # an integer written with hundreds of digits
        raise InputError(
            f"bbox has a value beyond the range of a double: {value!r}", path=path, record=where
        ) from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise InputError(f"bbox has a non-finite value: {value!r}", path=path, record=where)
    if w < 0 or h < 0:
        raise InputError(f"bbox has a negative width or height: {value!r}", path=path, record=where)
    return x, y, w, h


def is_number(value: object) -> bool:
    """A JSON or numpy number; bool is a Real in Python but never a score or a coordinate,
    and text that looks like a number is a broken writer."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def as_number(value: Any, field: str, where: str, path: str | Path) -> float:
    """A finite number (bool is not a number here), or an InputError."""
    if not is_number(value):
        raise InputError(f"{field} must be a number, got {value!r}", path=path, record=where)
    try:
        number = float(value)
    except OverflowError:  # an integer written with hundreds of digits
        raise InputError(
            f"{field} is beyond the range of a double: {value!r}", path=path, record=where
        ) from None
    if not math.isfinite(number):
        raise InputError(f"{field} must be finite, got {value!r}", path=path, record=where)
    return number
