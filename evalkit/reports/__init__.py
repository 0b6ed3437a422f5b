"""Reports rendered only from a run record (``result.json``) and the card it is compared with.

``render_report(record, out_dir)`` writes ``report.html`` (self-contained), ``report.md``, one
CSV per table and one PNG per figure, and returns the list of files as a ``ReportFiles``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evalkit.record import ModelFile, RunRecord, VariantRecord
from evalkit.references import DatasetReference, reference_for
from evalkit.reports.analysis_plots import ANALYSIS_PLOTS
from evalkit.reports.analysis_tables import ANALYSIS_TABLES
from evalkit.reports.html import Section, html_document, markdown_document
from evalkit.reports.plots import PLOTTERS, Plot, render_plots
from evalkit.reports.tables import (
    PUBLISHED,
    Table,
    build_tables,
    make_table,
    protocols_of,
)
from evalkit.reports.verdict import verdict_table

__all__ = [
    "Plot",
    "ReportFiles",
    "Section",
    "Table",
    "record_reference",
    "render_report",
    "run_info",
]


@dataclass(frozen=True)
class ReportFiles:
    """The files one ``render_report`` call wrote."""

    out_dir: Path
    html: Path
    markdown: Path
    csv: tuple[Path, ...]
    plots: tuple[Path, ...]

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file written, the HTML first."""
        return (self.html, self.markdown, *self.csv, *self.plots)


def record_reference(record: RunRecord) -> DatasetReference | None:
    """The published figures a record names under ``reference`` (None when it names none)."""
    named = record.reference
    return None if named is None else reference_for(named.model, named.dataset)


def run_info(record: RunRecord, reference: DatasetReference | None) -> Table:
    """What ran, when, where and with which settings (the report's header)."""
    # environment is provenance (evalkit.provenance), shown as found, "n/a" where absent.
    env = record.environment or {}
    git = env.get("git") or {}
    packages = env.get("packages") or {}
    uname = env.get("uname") or {}
    revision = git.get("revision")
    dirty = " (with uncommitted changes)" if git.get("dirty") else ""
    ds = record.dataset
    rows: list[tuple[str, str]] = [
        ("run", record.name or "n/a"),
        ("created", str(record.created or "n/a")),
        ("git revision", f"{revision}{dirty}" if revision else "n/a (not run from a git checkout)"),
        ("evalkit", str(packages.get("evalkit") or "n/a")),
        (
            "machine",
            f"{env.get('cpu', 'n/a')}; {env.get('logical_cores', 'n/a')} logical cores; "
            f"{uname.get('system', '')} {uname.get('machine', '')}".strip(),
        ),
        ("python", str(env.get("python") or "n/a")),
        ("onnxruntime", str(packages.get("onnxruntime") or "n/a")),
        (
            "dataset",
            f"{_or_na(ds.name)} ({_or_na(ds.format)}): {_or_na(ds.num_images)} images, "
            f"{_or_na(ds.num_annotations)} annotations, {len(ds.classes)} classes, "
            f"{len(ds.skipped)} images skipped",
        ),
    ]
    for name, variant in record.variants.items():
        model = variant.model or ModelFile()
        rows.append(
            (
                f"variant {name}",
                f"{_or_na(model.path)} ({_or_na(model.precision)}, "
                f"decoder {_or_na(variant.decoder_name)})",
            )
        )
        rows += _variant_provenance(name, variant)
    nms = {
        ", ".join(f"{k}={v}" for k, v in (variant.nms or {}).items()) or "n/a"
        for variant in record.variants.values()
    }
    rows.append(("NMS", "; ".join(sorted(nms))))
    rows.append(("protocols", ", ".join(protocols_of(record))))
    if reference is None:
        rows.append(("reference", "none: no published figures to compare with"))
    else:
        rows.append(
            (
                "reference",
                f"{reference.model} on {reference.dataset.name} {reference.dataset.split} "
                f"({PUBLISHED}, protocol {reference.protocol})",
            )
        )
        rows.append(("compared with the card", card_verdict(record)))
    return make_table(
        "run",
        "Run",
        "What was evaluated, when, where and how.",
        [("field", ""), ("value", "")],
        rows,
    )


def card_verdict(record: RunRecord) -> str:
    """Whether the run's AP is set against the card's, and why (``reference.why``)."""
    named = record.reference
    if named is None or named.comparable is None:  # written before runs decided it
        return "context only: this result.json does not record whether it is comparable"
    verdict = "yes" if named.comparable else "no, context only"
    return f"{verdict}: {named.why or 'no reason recorded'}"


def _or_na(value: object) -> str:
    return "n/a" if value is None else str(value)


def _variant_provenance(name: str, variant: VariantRecord) -> list[tuple[str, str]]:
    """Class mapping, calibration and duplicate detections of one variant, where recorded."""
    rows = []
    if variant.class_mapping:
        rows.append((f"  {name}: class mapping", variant.class_mapping))
    # calibration is evalkit.quantize's provenance, shown as found.
    calibration = variant.calibration
    if calibration:
        text = (
            f"{calibration.get('count', 'n/a')} image(s) from {calibration.get('source', 'n/a')}"
            f", seed {calibration.get('seed', 'n/a')}"
        )
        if calibration.get("warning"):
            text += f" (WARNING: {calibration['warning']})"
        rows.append((f"  {name}: calibration", text))
    duplicates = variant.duplicate_detections
    if duplicates:
        rows.append(
            (
                f"  {name}: duplicate detections",
                f"WARNING: {duplicates} detection(s) exactly repeat another one",
            )
        )
    return rows


def sections(tables: dict[str, Table], plots: dict[str, Plot]) -> tuple[Section, ...]:
    """The report's reading order: accuracy, variant comparison, host, STM32N6."""
    return (
        Section(
            "Accuracy",
            "How well each variant detects, under each protocol, against the model card.",
            (tables["accuracy"], plots["protocols"], tables["coco_stats"]),
        ),
        Section(
            "Variant comparison",
            "What changes between variants (for int8 vs float: what quantization costs).",
            (
                tables["variant_delta"],
                tables["per_class"],
                plots["class_delta"],
                plots["pr_curves"],
            ),
        ),
        Section(
            "Errors and operating points",
            "Which errors each variant makes and how it behaves at the score threshold a "
            "device would use; for int8 vs float: which errors quantization added.",
            (
                tables["operating_points"],
                plots["f1_curves"],
                tables["tide"],
                plots["tide_bars"],
                tables["confusions"],
                plots["confusion"],
            ),
        ),
        Section(
            "Model size and host latency",
            "Measured in this run on the host CPU; the STM32N6 figures follow.",
            (tables["model_size"], tables["host_latency"], plots["latency"]),
        ),
        Section(
            "STM32N6 memory and latency",
            "Published card figures, on-board measurements and evalkit's estimate, side by side.",
            (tables["n6"],),
        ),
    )


def render_report(
    record: RunRecord, out_dir: str | Path, *, reference: DatasetReference | None = None
) -> ReportFiles:
    """Write the report of ``record`` into ``out_dir``; ``reference`` defaults to the record's."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if reference is None:
        reference = record_reference(record)
    tables = {
        "verdict": verdict_table(record, reference),
        "run": run_info(record, reference),
        **build_tables(record, reference),
        **{t.name: t for t in (build(record, reference) for build in ANALYSIS_TABLES)},
    }
    plots = render_plots(record, reference, out, (*PLOTTERS, *ANALYSIS_PLOTS))
    csv = []
    for table in tables.values():
        path = out / f"{table.name}.csv"
        # "n/a" is one of pandas' default NA markers, so read_csv gets the gaps back.
        table.frame.to_csv(path, index=False, na_rep="n/a", float_format="%.6f")
        csv.append(path)
    title = f"evalkit report: {record.name or 'run'}"
    header = tables["run"]
    parts = sections(tables, plots)
    markdown = out / "report.md"
    lead = tables["verdict"]
    markdown.write_text(markdown_document(title, header, parts, lead), encoding="utf-8")
    html = out / "report.html"
    html.write_text(html_document(title, header, parts, lead), encoding="utf-8")
    drawn = tuple(p.path for p in plots.values() if p.path is not None)
    return ReportFiles(out, html, markdown, tuple(csv), drawn)
