"""The library's front door: a run with its report (``evalkit.run``).

:func:`evalkit.pipeline.run.run` evaluates and publishes; it is handed the report renderer
here, one layer above both, so the pipeline and the reports never import each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evalkit.pipeline.config import RunConfig
from evalkit.pipeline.run import Log, RunOutcome
from evalkit.pipeline.run import run as run_pipeline
from evalkit.record import RunRecord
from evalkit.reports import render_report

__all__ = ["RunOutcome", "run", "write_report"]


def write_report(record: RunRecord, folder: Path) -> Sequence[Path]:
    """``report.html``, ``report.md``, the CSVs and the plots of ``record``, in ``folder``."""
    return render_report(record, folder).paths


def run(config: RunConfig, *, log: Log = print) -> RunOutcome:
    """Evaluate ``config``'s variants; publish detections, ``result.json`` and the report."""
    return run_pipeline(config, log=log, render=write_report)
