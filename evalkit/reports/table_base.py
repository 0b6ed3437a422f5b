"""The report's table type and the record readers every table and plot shares.

A Table keeps numbers (AP in percent, the card's unit) with ``<NA>`` where a figure does not
exist, a format per column for display, and the notes a reader needs to trust it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from evalkit.errors import InputError
from evalkit.jsonio import require
from evalkit.record import RunRecord
from evalkit.references import ORIGIN, PRECISIONS, DatasetReference, Precision

PUBLISHED = ORIGIN  # "published (model card)"
ESTIMATE = "estimate"
MIB = 2**20
KIB = 1024
AP = ".2f"  # the card's AP50 format
DELTA = "+.2f"  # AP points; the sign is the news
INT = ",d"


@dataclass(frozen=True, eq=False)
class Table:
    """One report table: numbers in ``frame``, a format spec per column ("" = text)."""

    name: str
    title: str
    caption: str
    frame: pd.DataFrame
    formats: Mapping[str, str]
    notes: tuple[str, ...] = ()


def make_table(
    name: str,
    title: str,
    caption: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
    notes: Sequence[str] = (),
) -> Table:
    """A Table whose numeric columns are nullable (Int64/Float64), so ints stay ints."""
    frame = pd.DataFrame([list(r) for r in rows], columns=[c for c, _ in columns], dtype=object)
    for column, spec in columns:
        if spec.endswith("d"):
            frame[column] = frame[column].astype("Int64")
        elif spec:
            frame[column] = frame[column].astype("Float64")
    return Table(name, title, caption, frame, dict(columns), tuple(notes))


def record_path(record: RunRecord) -> str:
    return str(record.path) if record.path is not None else "result.json"


def number_at(data: Any, key: str, where: str, record: RunRecord) -> float:
    """``data[key]`` as a float, or an InputError naming the field."""
    value = require(data, key, where, record_path(record))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(
            f"expected a number, got {value!r}", path=record_path(record), record=f"{where}.{key}"
        )
    return float(value)


def protocols_of(record: RunRecord) -> tuple[str, ...]:
    """Every protocol any variant was scored under, in first-seen order."""
    return tuple(dict.fromkeys(p for v in record.variants for p in record.protocols(v)))


def primary_protocol(record: RunRecord, reference: DatasetReference | None) -> str:
    """The card's protocol when the run has it (``st``), else the first one."""
    protocols = protocols_of(record)
    for protocol in (reference.protocol if reference else None, "st"):
        if protocol in protocols:
            return protocol
    return protocols[0]


def comparison(record: RunRecord) -> tuple[str, tuple[str, ...]]:
    """Base variant and the ones compared with it: float vs int8, else the first vs the rest."""
    names = list(record.variants)
    base = "float" if "float" in names and "int8" in names else names[0]
    # sorted is stable: int8 first, the others in run order.
    return base, tuple(sorted((n for n in names if n != base), key=lambda n: n != "int8"))


def precision_of(record: RunRecord, variant: str) -> Precision | None:
    """float / int8 from the runner's detection, else from the variant's name."""
    for candidate in (record.variants[variant].precision, variant):
        for precision in PRECISIONS:
            if candidate == precision:
                return precision
    return None


def published_ap(reference: DatasetReference | None, precision: Precision | None) -> float | None:
    """The card's AP50 in percent, with its published digits."""
    if reference is None or precision is None:
        return None
    percent = reference.ap50_float_percent if precision == "float" else reference.ap50_int8_percent
    return None if percent is None else float(percent)


def ap_or_none(record: RunRecord, variant: str, protocol: str) -> float | None:
    scores = record.protocol(variant, protocol)
    return None if scores is None else 100 * scores.ap50


def class_ap(record: RunRecord, variant: str, protocol: str) -> dict[str, float]:
    """Class name -> AP50 in percent (classes without ground truth are absent)."""
    scores = record.protocol(variant, protocol)
    items = () if scores is None else scores.per_class.items()
    return {c: 100 * float(ap) for c, ap in items}
