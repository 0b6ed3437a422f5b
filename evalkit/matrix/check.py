"""``evalkit check`` over a matrix: every cell of the baseline matrix gated against the
same cell of the result (the same rules as one run), in one report whose check names start
with the cell (``tfod/coco128:int8/st``); a cell that is missing or failed in the result
fails the gate."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

from evalkit.fingerprint import Difference, Kind
from evalkit.gate import Check, CheckReport, Tolerances, check
from evalkit.matrix.table import load_matrix_cells


def check_matrix(
    result: str | Path,
    baseline: str | Path,
    tolerances: Tolerances | None = None,
    allow: Collection[Kind] = (),
) -> CheckReport:
    """Gate every cell of ``baseline`` against the same cell of ``result``."""
    start = time.perf_counter()
    after = {c.key: c for c in load_matrix_cells(result)}
    checks: list[Check] = []
    differences: list[Difference] = []
    notes: list[str] = []
    for cell in load_matrix_cells(baseline):
        if cell.record is None:
            continue  # the baseline has nothing to hold this cell to
        got = after.get(cell.key)
        problem = None
        if got is None:
            problem = "cell missing from the result (the baseline has it)"
        elif got.record is None:
            problem = f"cell failed in the result: {(got.error or '').splitlines()[0]}"
        if problem is not None or got is None or got.record is None:
            checks.append(Check("ap50", cell.key, "fail", None, None, None, None, problem or ""))
            continue
        report = check(got.record, cell.record, tolerances, allow)
        checks += [replace(c, scope=f"{cell.key}:{c.scope}") for c in report.checks]
        differences += [replace(d, field=f"{cell.key}: {d.field}") for d in report.differences]
        notes += [n for n in report.notes if n not in notes]
    return CheckReport(
        str(result),
        str(baseline),
        tuple(checks),
        time.perf_counter() - start,
        tuple(differences),
        tuple(notes),
    )
