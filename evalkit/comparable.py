"""Whether two runs may be compared at all: same dataset, same number-changing settings.

``check`` and ``compare`` call :func:`require_comparable` first. A difference in a kind the
caller did not allow is an InputError (exit 2) listing every difference; an allowed one is
returned so the report can say, loudly, what it compared across. The models themselves
(file, precision, size) are what a comparison measures and are never looked at here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from evalkit.errors import InputError
from evalkit.fingerprint import KINDS, Difference, Kind, differences
from evalkit.record import RunRecord


def _shared_settings(fingerprint: Mapping[str, Any] | None, shared: Collection[str]) -> Any:
    """The fingerprint with only the variants both runs have: a variant one run lacks is a
    missing metric (reported as such), not a settings difference."""
    if fingerprint is None:
        return None
    settings = fingerprint.get("settings")
    if not isinstance(settings, Mapping) or not isinstance(settings.get("variants"), Mapping):
        return fingerprint
    variants = {k: v for k, v in settings["variants"].items() if k in shared}
    return {**fingerprint, "settings": {**settings, "variants": variants}}


def run_differences(a: RunRecord, b: RunRecord) -> list[Difference]:
    """Every dataset and settings field on which runs ``a`` and ``b`` differ."""
    shared = [v for v in a.variants if v in b.variants]
    return differences(
        _shared_settings(a.fingerprint, shared), _shared_settings(b.fingerprint, shared)
    )


def label(record: RunRecord) -> str:
    return str(record.path) if record.path is not None else record.name


def require_comparable(
    a: RunRecord, b: RunRecord, allow: Collection[Kind] = ()
) -> tuple[Difference, ...]:
    """The differences between ``a`` and ``b``, all of kinds in ``allow``; else InputError."""
    found = run_differences(a, b)
    refused = [d for d in found if d.kind not in allow]
    if refused:
        kinds = sorted({d.kind for d in refused}, key=KINDS.index)
        listed = "\n".join(f"  {d.describe()}" for d in refused)
        flag = " ".join(f"--allow-different {k}" for k in kinds)
        problem = (
            f"not comparable with {label(b)}: the runs differ in {' and '.join(kinds)}\n"
            f"{listed}\n"
            f"(each line: this run's value vs the other's. Re-run one of them on the other's "
            f"dataset and settings, or pass {flag} to compare anyway.)"
        )
        raise InputError(problem, path=label(a), record="fingerprint")
    return tuple(found)


def allowed_warning(found: Collection[Difference], notes: Collection[str] = ()) -> str | None:
    """The line a report leads with when it compared across allowed differences, followed
    by the hosts' notes (:func:`host_notes`)."""
    lines = list(notes)
    if found:
        kinds = sorted({d.kind for d in found}, key=KINDS.index)
        lines.insert(
            0,
            f"WARNING: compared across DIFFERENT {' AND '.join(k.upper() for k in kinds)} "
            f"({len(found)} difference(s) allowed): " + "; ".join(d.describe() for d in found),
        )
    return "\n".join(lines) or None


def host_notes(a: RunRecord, b: RunRecord) -> tuple[str, ...]:
    """What the two runs' hosts make incomparable without being a dataset or settings
    difference: int8 models computed with other int8 arithmetic (see
    :func:`evalkit.provenance.int8_dot_product`) give other outputs from the same file."""
    if not (_has_int8(a) and _has_int8(b)):
        return ()
    kinds = [(r.environment or {}).get("int8_dot_product") for r in (a, b)]
    if kinds[0] == kinds[1] and kinds[0] is not None:
        return ()
    shown = [k or "not recorded" for k in kinds]
    return (
        f"NOTE: int8 figures come from different int8 arithmetic ({shown[0]} vs {shown[1]}): "
        "the same int8 model scores differently on these CPUs (up to about 1 AP50 point "
        "measured), so an int8 difference here is partly the host's",
    )


def _has_int8(record: RunRecord) -> bool:
    return any(v.precision == "int8" for v in record.variants.values())
