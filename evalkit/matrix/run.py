"""Run every cell of a matrix: one after another here, or each as an independent Ray task
(``executor: {kind: ray}``, with the cell's custom resources: a cell that holds a board
never shares it). A cell that fails is recorded with its error and the others still run;
``matrix.json`` lists every cell, its folder, status and times, and ``matrix.md`` sets
every cell's AP50 beside the card's."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from evalkit.errors import InputError
from evalkit.matrix.config import Cell, MatrixConfig, cells
from evalkit.matrix.table import MATRIX_FILE, matrix_markdown
from evalkit.pipeline.executors import ExecutorConfig
from evalkit.pipeline.run import run as run_pipeline
from evalkit.record import RunRecord

KIND = "evalkit.matrix"
Render = Callable[[RunRecord, Path], Sequence[Path]]


@dataclass(frozen=True)
class CellResult:
    """What became of one cell: its run folder (relative to the matrix's), or its error."""

    model: str
    dataset: str
    folder: str
    status: Literal["ok", "error"]
    error: str | None
    started: float  # seconds since the epoch, where the cell ran
    finished: float

    @property
    def key(self) -> str:
        return f"{self.model}/{self.dataset}"


@dataclass(frozen=True)
class MatrixOutcome:
    """The matrix folder, its cells' results and the files written."""

    out_dir: Path
    cells: tuple[CellResult, ...]
    executor: dict[str, Any]

    @property
    def failed(self) -> tuple[CellResult, ...]:
        return tuple(c for c in self.cells if c.status != "ok")


def run_cell(cell: Cell, root: str, render: Render | None) -> CellResult:
    """One cell's run (its batches in the process that runs the cell)."""
    started = time.time()
    config = replace(cell.config, executor=ExecutorConfig())
    folder = str(Path(config.output).relative_to(root))
    try:
        run_pipeline(config, log=lambda _: None, render=render)
    except InputError as exc:
        return CellResult(cell.model, cell.dataset, folder, "error", str(exc), started, time.time())
    except Exception:  # a task failure elsewhere must not lose the other cells
        problem = traceback.format_exc(limit=3)
        return CellResult(cell.model, cell.dataset, folder, "error", problem, started, time.time())
    return CellResult(cell.model, cell.dataset, folder, "ok", None, started, time.time())


def run_matrix(
    matrix: MatrixConfig, *, log: Callable[[str], None] = print, render: Render | None = None
) -> MatrixOutcome:
    """Every cell of ``matrix``, then ``matrix.json`` and ``matrix.md`` in its folder."""
    todo = cells(matrix)
    out = Path(matrix.output)
    out.mkdir(parents=True, exist_ok=True)
    log(f"{len(todo)} cell(s): {', '.join(c.key for c in todo)}")
    if matrix.executor.kind == "ray":
        results, executor = _on_ray(matrix, todo, render, log)
    else:
        results, executor = [], {"kind": "local"}
        for cell in todo:
            results.append(run_cell(cell, matrix.output, render))
            _say(results[-1], log)
    outcome = MatrixOutcome(out, tuple(results), executor)
    _write(matrix, outcome)
    return outcome


def _say(result: CellResult, log: Callable[[str], None]) -> None:
    took = f"{result.finished - result.started:.1f} s"
    if result.status == "ok":
        log(f"[{result.key}] done in {took}: {result.folder}")
    else:
        log(f"[{result.key}] FAILED after {took}: {(result.error or '').splitlines()[0]}")


def _on_ray(
    matrix: MatrixConfig, todo: list[Cell], render: Render | None, log: Callable[[str], None]
) -> tuple[list[CellResult], dict[str, Any]]:
    from evalkit.pipeline.ray_executor import RayExecutor

    executor = RayExecutor(matrix.executor)  # connects, or starts a local cluster
    ray = executor.ray
    try:
        task = ray.remote(run_cell)
        pending = {
            task.options(
                num_cpus=matrix.executor.cpus_per_actor,
                resources={**matrix.executor.resources, **cell.resources} or None,
                max_retries=1,
            ).remote(cell, matrix.output, render): cell
            for cell in todo
        }
        done: dict[str, CellResult] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready[0])
            done[cell.key] = ray.get(ready[0])
            _say(done[cell.key], log)
        described = {**executor.describe(), "cells": len(todo)}
        described.pop("actors", None)
    finally:
        executor.close()
    return [done[c.key] for c in todo], described


def _write(matrix: MatrixConfig, outcome: MatrixOutcome) -> None:
    record = {
        "kind": KIND,
        "name": matrix.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "executor": outcome.executor,
        "cells": [asdict(c) for c in outcome.cells],
    }
    tmp = outcome.out_dir / f"{MATRIX_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(outcome.out_dir / MATRIX_FILE)
    (outcome.out_dir / "matrix.md").write_text(matrix_markdown(matrix.name, outcome.out_dir))
