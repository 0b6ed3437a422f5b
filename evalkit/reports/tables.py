"""The report's tables as pandas DataFrames, built only from a run record and the model card
(the Table type and shared readers: ``table_base.py``; the STM32N6 table: ``n6_table.py``).

Published figures, measured figures and estimates sit in separate, labelled columns.
"""

from __future__ import annotations

from collections.abc import Callable

from evalkit.metrics.coco import STAT_NAMES
from evalkit.record import ModelFile, ReferenceVerdict, RunRecord
from evalkit.references import DatasetReference
from evalkit.reports.n6_table import n6_figures
from evalkit.reports.table_base import (
    AP,
    DELTA,
    ESTIMATE,
    INT,
    KIB,
    MIB,
    PUBLISHED,
    Table,
    ap_or_none,
    class_ap,
    comparison,
    make_table,
    precision_of,
    primary_protocol,
    protocols_of,
    published_ap,
)


def accuracy(record: RunRecord, reference: DatasetReference | None) -> Table:
    """AP50 per variant and protocol, measured vs published, with counts."""
    measured, published = "AP50 measured (%)", f"AP50 {PUBLISHED} (%)"
    delta = "delta measured - published (AP pts)"
    columns = [
        ("variant", ""), ("protocol", ""), (measured, AP), (published, AP), (delta, DELTA),
        ("GT", INT), ("detections", INT), ("TP", INT), ("FP", INT),
    ]  # fmt: skip
    rows = []
    # The run decided whether it scored the card's own set (reference.comparable); if not,
    # subtracting the card's AP from this run's would mean nothing: context, no delta.
    named = record.reference or ReferenceVerdict("", "")
    context_only = named.comparable is not True
    why = named.why or (
        "the configuration marks the reference context_only"
        if named.context_only
        else "this result.json does not record whether its dataset is the card's"
    )
    for name, variant in record.variants.items():
        for protocol, scores in variant.protocols.items():
            ap = 100 * scores.ap50
            card = None
            if reference is not None and protocol == reference.protocol:
                card = published_ap(reference, precision_of(record, name))
            counts = [scores.num_gt, scores.num_detections, scores.tp, scores.fp]
            gap = ap - card if card is not None and not context_only else None
            rows.append([name, protocol, ap, card, gap, *counts])
    notes = []
    if reference is None:
        notes.append("No reference in this run: every published figure is n/a.")
    elif context_only:
        notes.append(
            f"The published figures ({reference.model} on {reference.dataset.name} "
            f"{reference.dataset.split}) are shown for context only, not compared (no delta): "
            f"{why}."
        )
    else:
        notes.append(
            f"The card ({reference.model}, {reference.dataset.name}) publishes AP50 under the "
            f"{reference.protocol!r} protocol only; other protocols show n/a."
        )
    caption = (
        "AP50 of each variant under each protocol; delta = measured - published in AP "
        "points (negative: below the card)."
    )
    return make_table("accuracy", "AP50: measured vs published", caption, columns, rows, notes)


def variant_delta(record: RunRecord, reference: DatasetReference | None) -> Table:
    """AP50 change from the base variant to each other one, per protocol."""
    base, others = comparison(record)
    columns = [
        ("protocol", ""), ("compared", ""), ("base AP50 (%)", AP), ("other AP50 (%)", AP),
        ("delta other - base (AP pts)", DELTA), (f"delta {PUBLISHED} (AP pts)", DELTA),
    ]  # fmt: skip
    rows = []
    card_delta = None
    if reference is not None:
        card_f, card_q = reference.ap50_float_percent, reference.ap50_int8_percent
        if card_f is not None and card_q is not None:
            card_delta = float(card_q - card_f)  # Decimal: exact in the published digits
    for other in others:
        pair = (precision_of(record, base), precision_of(record, other))
        for protocol in protocols_of(record):
            a, b = ap_or_none(record, base, protocol), ap_or_none(record, other, protocol)
            is_card = reference is not None and protocol == reference.protocol
            card = card_delta if is_card and pair == ("float", "int8") else None
            diff = None if a is None or b is None else b - a
            rows.append([protocol, f"{other} vs {base}", a, b, diff, card])
    notes = [] if others else ["Only one variant in this run: nothing to compare."]
    caption = (
        f"AP50 of each variant minus that of {base!r} on the same images; negative: the "
        "variant loses accuracy (for int8: the quantization cost)."
    )
    return make_table(
        "variant_delta", "AP50 change between variants", caption, columns, rows, notes
    )


def per_class(record: RunRecord, reference: DatasetReference | None) -> Table:
    """Per-class AP50 of the base and the first compared variant, largest drop first."""
    protocol = primary_protocol(record, reference)
    base, others = comparison(record)
    base_ap = class_ap(record, base, protocol)
    scores = record.protocol(base, protocol)
    gt = {} if scores is None else scores.num_gt_by_class()
    classes = list(dict.fromkeys([*base_ap, *record.dataset.classes]))
    notes = [f"Protocol {protocol!r}; classes without ground truth have no AP (n/a)."]
    if not others:
        columns = [("class", ""), ("GT", INT), (f"{base} AP50 (%)", AP)]
        rows = [[c, gt.get(c), base_ap.get(c)] for c in classes]
        notes.append("Only one variant in this run: no per-class comparison.")
        title = f"Per-class AP50 ({protocol})"
        return make_table("per_class", title, "AP50 of each class.", columns, rows, notes)
    other = others[0]
    other_ap = class_ap(record, other, protocol)
    delta = f"delta {other} - {base} (AP pts)"
    columns = [
        ("class", ""), ("GT", INT), (f"{base} AP50 (%)", AP), (f"{other} AP50 (%)", AP),
        (delta, DELTA),
    ]  # fmt: skip
    rows = []
    for c in classes:
        a, b = base_ap.get(c), other_ap.get(c)
        rows.append([c, gt.get(c), a, b, None if a is None or b is None else b - a])
    # Largest drop first; classes without a delta last, in dataset order.
    rows.sort(key=lambda r: (r[4] is None, r[4] if r[4] is not None else 0.0))
    if len(others) > 1:
        notes.append(f"Shown for {other} vs {base}; the CSV of variant_delta covers the rest.")
    caption = (
        f"AP50 of each class for {base} and {other}, sorted by delta (most negative first: "
        f"the classes {other} loses most)."
    )
    title = f"Per-class AP50: {other} vs {base} ({protocol})"
    return make_table("per_class", title, caption, columns, rows, notes)


def coco_stats(record: RunRecord, reference: DatasetReference | None) -> Table:
    """The 12 COCO summary numbers per variant, in percent."""
    columns = [("variant", ""), *((name, AP) for name in STAT_NAMES)]
    rows = []
    for name, variant in record.variants.items():
        coco = variant.protocols.get("coco")
        stats = None if coco is None else coco.stats  # 12 numbers, checked when read
        if stats is None:
            continue
        # pycocotools writes -1 where a stat is undefined (no ground truth of that size).
        rows.append([name, *(None if s < 0 else 100 * float(s) for s in stats)])
    notes = [] if rows else ["No COCO protocol stats in this run."]
    caption = "pycocotools' summary (AP at IoU 0.50:0.95, by size; AR by detections), in %."
    return make_table("coco_stats", "COCO summary statistics", caption, columns, rows, notes)


def model_size(record: RunRecord, reference: DatasetReference | None) -> Table:
    """Model file size measured, next to the card's file, and graph statistics if recorded."""
    columns = [
        ("variant", ""), ("precision", ""), ("file bytes (measured)", INT), ("file MiB", ".2f"),
        (f"file bytes {PUBLISHED}", INT), ("same file as published", ""), ("parameters", INT),
        ("weight bytes", INT), ("GMACs", ".3f"),
    ]  # fmt: skip
    rows = []
    for name, variant in record.variants.items():
        model = variant.model or ModelFile()
        size = model.bytes
        precision = precision_of(record, name)
        card = None if reference is None or precision is None else reference.files.get(precision)
        same = "n/a"
        if card is not None and model.sha256:
            same = "yes (sha256)" if card.sha256 == model.sha256 else "no"
        stats = variant.model_stats or {}  # evalkit.bench.model_stats, as recorded
        macs = stats.get("macs")
        rows.append([
            name, precision or "n/a", size, None if size is None else size / MIB,
            None if card is None else card.bytes, same, stats.get("params"),
            stats.get("weight_bytes"), None if macs is None else macs / 1e9,
        ])  # fmt: skip
    notes = ["MiB = bytes / 2^20. Parameters, weight bytes and MACs: evalkit's ONNX reading."]
    caption = "Size of each model file; the published column is the card's file of that precision."
    return make_table("model_size", "Model size", caption, columns, rows, notes)


def host_latency(record: RunRecord, reference: DatasetReference | None) -> Table:
    """Host CPU latency (onnxruntime) of each variant, measured in this run."""
    columns = [
        ("variant", ""), ("p50 (ms)", ".2f"), ("p90 (ms)", ".2f"), ("p99 (ms)", ".2f"),
        ("mean (ms)", ".2f"), ("images/s", ".1f"), ("timed runs", INT), ("threads", ""),
    ]  # fmt: skip
    rows, missing = [], []
    for name, variant in record.variants.items():
        latency = variant.latency
        if latency is None:
            missing.append(name)
            continue
        figures = [latency.ms(s) for s in ("p50", "p90", "p99", "mean")]
        threads = latency.threads
        rows.append(
            [name, *figures, latency.images_per_s, len(latency.raw_ms), str(threads or "default")]
        )
    notes = ["Measured on this run's host CPU with onnxruntime, not on an STM32 board."]
    if missing:
        notes.append(f"No latency pass for: {', '.join(missing)} (latency.runs was 0).")
    caption = "Milliseconds per inference (batch 1 unless set); images/s = batch / p50."
    return make_table("host_latency", "Host latency (measured)", caption, columns, rows, notes)


__all__ = [
    "AP",
    "BUILDERS",
    "DELTA",
    "ESTIMATE",
    "INT",
    "KIB",
    "MIB",
    "PUBLISHED",
    "Table",
    "build_tables",
    "class_ap",
    "comparison",
    "make_table",
    "precision_of",
    "primary_protocol",
    "protocols_of",
    "published_ap",
]


BUILDERS: tuple[Callable[[RunRecord, DatasetReference | None], Table], ...] = (
    accuracy, variant_delta, per_class, coco_stats, model_size, host_latency,
    n6_figures,
)  # fmt: skip


def build_tables(record: RunRecord, reference: DatasetReference | None) -> dict[str, Table]:
    """Every report table by name, in reading order."""
    tables = (build(record, reference) for build in BUILDERS)
    return {t.name: t for t in tables}
