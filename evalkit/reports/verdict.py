"""The box a report opens with: does the run reproduce the card, what did int8 cost, how
big and fast is each variant, and the STM32N6 figures (published and estimated); the
details follow in the report's sections."""

from __future__ import annotations

from evalkit.record import RunRecord
from evalkit.references import DatasetReference
from evalkit.references.verdict import card_verdicts
from evalkit.reports.table_base import Table, make_table


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def verdict_table(record: RunRecord, card: DatasetReference | None) -> Table:
    """Question and answer rows, most important first."""
    rows: list[tuple[str, str]] = []
    named = record.reference
    if named is None or card is None:
        rows.append(("compared with a model card", "no: the run names no reference"))
    else:
        verdict = "yes" if named.comparable else "no, the card is context only"
        rows.append(
            (
                f"comparable with {named.model} on {named.dataset}",
                f"{verdict}: {named.why or 'no reason recorded'}",
            )
        )
    for v in card_verdicts(record, card):
        # A delta only where the run scored the card's own set (context is not a result).
        shown = v.difference is not None and v.status != "context only"
        difference = f" ({v.difference:+.2f} pt)" if shown else ""
        rows.append(
            (
                v.figure,
                f"{v.status.upper()}: {_figure(v.measured)} measured, "
                f"{_figure(v.published)} published{difference}",
            )
        )
    sizes, speeds = [], []
    for name, variant in record.variants.items():
        if variant.model is not None and variant.model.bytes is not None:
            sizes.append(f"{name} {variant.model.bytes / 2**20:.2f} MiB")
        p50 = record.latency_p50_ms(name)
        speeds.append(f"{name} {'n/a' if p50 is None else f'{p50:.2f} ms'}")
    rows.append(("model size", ", ".join(sizes) or "n/a"))
    rows.append(("host latency p50 (this machine)", ", ".join(speeds) or "n/a"))
    rows.append(("STM32N6, published", _n6_published(card)))
    rows.append(("STM32N6, estimated", _n6_estimate(record)))
    return make_table(
        "verdict",
        "At a glance",
        "Measured here against the card, figure by figure (a figure reproduces within the "
        "card's rounding, 0.01 AP points); the sections below hold the details.",
        [("question", ""), ("answer", "")],
        rows,
    )


def _n6_published(card: DatasetReference | None) -> str:
    n6 = None if card is None else card.n6
    if n6 is None:
        return "n/a (the card publishes none for this set)"
    latency = ", ".join(f"{ms} ms (STEdgeAI {version})" for version, ms in n6.latency_ms.items())
    return (
        f"internal RAM {n6.internal_ram_kib or 'n/a'} KiB, external RAM "
        f"{n6.external_ram_kib or 'n/a'} KiB, weights {n6.weights_flash_kib or 'n/a'} KiB; "
        f"{latency or 'latency n/a'}"
    )


def _n6_estimate(record: RunRecord) -> str:
    parts = []
    for name, variant in record.variants.items():
        memory = variant.memory or {}
        peak, largest = memory.get("peak_int8_bytes"), memory.get("largest_int8_bytes")
        if variant.precision == "int8" and peak and largest:
            parts.append(
                f"{name}: largest int8 activation {largest / 1024:.2f} KiB, peak of "
                f"live ones {peak / 1024:.2f} KiB (static upper bound)"
            )
    return "; ".join(parts) or "n/a (no int8 ONNX variant)"
