"""The STM32N6 table: the card's memory and latency, on-board reports', and evalkit's
activation estimate, in separate labelled columns."""

from __future__ import annotations

from evalkit.bench.stedgeai import OnBoardFigures
from evalkit.record import RunRecord
from evalkit.references import DatasetReference
from evalkit.reports.table_base import (
    ESTIMATE,
    KIB,
    PUBLISHED,
    Table,
    make_table,
    number_at,
    record_path,
)


def _onboard(record: RunRecord, name: str) -> OnBoardFigures | None:
    data = record.variants[name].onboard
    return None if data is None else OnBoardFigures.from_dict(data, path=record_path(record))


def _version_order(figure: str) -> tuple[bool, tuple[int, ...], str]:
    """Latency before inferences/s, then by numeric version ("4.0.0" before "10.2.0")."""
    version = figure.split("STEdgeAI ", 1)[-1].split(" ", 1)[0]
    numbers = tuple(int(p) for p in version.split(".") if p.isdigit())
    return (figure.startswith("inferences"), numbers, figure)


def n6_figures(record: RunRecord, reference: DatasetReference | None) -> Table:
    """STM32N6 memory and latency: the card's, on-board reports', and evalkit's estimate."""
    figures: dict[str, dict[str, float | None]] = {}
    columns: list[tuple[str, str]] = [("figure", "")]

    def put(figure: str, column: str, value: float | None) -> None:
        if value is not None:
            figures.setdefault(figure, {})[column] = value

    memory_rows = ("internal RAM (KiB)", "external RAM (KiB)", "weights flash (KiB)")
    n6 = reference.n6 if reference is not None else None
    notes = []
    if n6 is not None:
        columns.append((PUBLISHED, ".2f"))
        card = (n6.internal_ram_kib, n6.external_ram_kib, n6.weights_flash_kib)
        for figure, kib in zip(memory_rows, card, strict=True):
            put(figure, PUBLISHED, None if kib is None else float(kib))
        for version, ms in n6.latency_ms.items():
            put(f"latency, STEdgeAI {version} (ms)", PUBLISHED, float(ms))
        for version, rate in n6.inferences_per_s.items():
            put(f"inferences/s, STEdgeAI {version}", PUBLISHED, float(rate))
        if n6.memory_stedgeai_version is None:
            notes.append("The card gives no STEdgeAI version for its memory figures.")
    for name in record.variants:
        board = _onboard(record, name)
        if board is None:
            continue
        column = f"measured on board: {name} (STEdgeAI {board.tool_version or 'version n/a'})"
        columns.append((column, ".2f"))
        values = (board.internal_ram_kib, board.external_ram_kib, board.weights_flash_kib)
        for figure, measured in zip(memory_rows, values, strict=True):
            put(figure, column, measured)
        put("activations (KiB)", column, board.activations_kib)
        version = board.tool_version or "version n/a"
        put(f"latency, STEdgeAI {version} (ms)", column, board.inference_time_ms)
        put(f"inferences/s, STEdgeAI {version}", column, board.inferences_per_second)
    for name, variant in record.variants.items():
        memory = variant.memory  # evalkit.bench.memory's estimate, as recorded
        if memory is None:
            continue
        column = f"{ESTIMATE}: {name} (evalkit, ONNX graph)"
        columns.append((column, ".2f"))
        where = f"variants.{name}.memory"
        largest = number_at(memory, "largest_int8_bytes", where, record) / KIB
        peak = number_at(memory, "peak_int8_bytes", where, record) / KIB
        # The card's external RAM holds the largest int8 activation (150x150x96 for
        # ssd_mobilenetv2_pt); its internal RAM is compared with our peak of live tensors.
        put("largest int8 activation (KiB)", column, largest)
        put("peak live int8 activations (KiB)", column, peak)
        if n6 is not None and n6.internal_ram_kib:
            put("peak live / card internal RAM", column, peak / float(n6.internal_ram_kib))
        if n6 is not None and n6.external_ram_kib:
            put("largest / card external RAM", column, largest / float(n6.external_ram_kib))
    if len(columns) == 1:
        notes.append("No STM32N6 figures: no reference card, on-board report or estimate.")
    else:
        notes.append(
            "Estimates are read from the ONNX graph by evalkit (every activation at 1 byte per "
            "element; live from producer to last consumer, in node order, with no fusion, "
            "in-place reuse, tiling or alignment): compare them with the card's RAM, but they "
            "are not on-board figures."
        )
    # Memory first, then latency and rate rows, each in STEdgeAI version order.
    order = [
        *memory_rows,
        "activations (KiB)",
        "largest int8 activation (KiB)",
        "largest / card external RAM",
        "peak live int8 activations (KiB)",
        "peak live / card internal RAM",
    ]
    names = order + sorted((f for f in figures if f not in order), key=_version_order)
    rows = [[f, *(figures[f].get(c) for c, _ in columns[1:])] for f in names if f in figures]
    caption = (
        "STM32N6 memory and latency: the card's figures (published), figures read from "
        "STEdgeAI reports (measured on board) and evalkit's activation estimate."
    )
    return make_table("n6", "STM32N6 memory and latency", caption, columns, rows, notes)
