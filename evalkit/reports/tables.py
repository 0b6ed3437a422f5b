"""The report's tables as pandas DataFrames, built only from a run record and the model card.

Every table keeps numbers (AP in percent, the card's unit) with ``<NA>`` where a figure does
not exist, a format per column for display, and the notes a reader needs to trust it.
Published figures, measured figures and estimates sit in separate, labelled columns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from evalkit.bench.stedgeai import OnBoardFigures
from evalkit.errors import InputError
from evalkit.jsonio import require
from evalkit.metrics.coco import STAT_NAMES
from evalkit.pipeline.result import RunRecord
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


def _where(record: RunRecord) -> str:
    return str(record.path) if record.path is not None else "result.json"


def _number(data: Any, key: str, where: str, record: RunRecord) -> float:
    """``data[key]`` as a float, or an InputError naming the field."""
    value = require(data, key, where, _where(record))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(
            f"expected a number, got {value!r}", path=_where(record), record=f"{where}.{key}"
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
    model = record.variants[variant].get("model") or {}
    for candidate in (model.get("precision"), variant):
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


def _ap_or_none(record: RunRecord, variant: str, protocol: str) -> float | None:
    if protocol not in record.variants[variant]["protocols"]:
        return None
    return 100 * record.ap50(variant, protocol)


def class_ap(record: RunRecord, variant: str, protocol: str) -> dict[str, float]:
    """Class name -> AP50 in percent (classes without ground truth are absent)."""
    scores = record.variants[variant]["protocols"].get(protocol) or {}
    items = scores.get("per_class", {}).items()
    return {str(c): 100 * float(ap) for c, ap in items if ap is not None}


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
    named = record.data.get("reference") or {}
    context_only = named.get("comparable") is not True
    why = str(
        named.get("why")
        or (
            "the configuration marks the reference context_only"
            if named.get("context_only")
            else "this result.json does not record whether its dataset is the card's"
        )
    )
    for name, variant in record.variants.items():
        for protocol, scores in variant["protocols"].items():
            ap = 100 * record.ap50(name, protocol)
            card = None
            if reference is not None and protocol == reference.protocol:
                card = published_ap(reference, precision_of(record, name))
            counts = [scores.get(k) for k in ("num_gt", "num_detections", "tp", "fp")]
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
            a, b = _ap_or_none(record, base, protocol), _ap_or_none(record, other, protocol)
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
    scores = record.variants[base]["protocols"].get(protocol) or {}
    gt = {
        str(c.get("name")): c.get("num_gt")
        for c in scores.get("classes", [])
        if isinstance(c, dict)
    }
    classes = list(
        dict.fromkeys([*base_ap, *(record.data.get("dataset") or {}).get("classes", [])])
    )
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
        stats = (variant["protocols"].get("coco") or {}).get("stats")
        if stats is None:
            continue
        if not isinstance(stats, list) or len(stats) != len(STAT_NAMES):
            raise InputError(
                f"expected {len(STAT_NAMES)} COCO stats, got {stats!r}",
                path=_where(record),
                record=f"variants.{name}.protocols.coco.stats",
            )
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
        model = variant.get("model") or {}
        size = model.get("bytes")
        precision = precision_of(record, name)
        card = None if reference is None or precision is None else reference.files.get(precision)
        same = "n/a"
        if card is not None and model.get("sha256"):
            same = "yes (sha256)" if card.sha256 == model["sha256"] else "no"
        stats = variant.get("model_stats") or {}
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
        latency = variant.get("latency")
        if not latency:
            missing.append(name)
            continue
        where = f"variants.{name}.latency"
        summary = require(latency, "summary", where, _where(record))
        keys = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "images_per_s")
        figures = [_number(summary, k, f"{where}.summary", record) for k in keys]
        settings = latency.get("settings") or {}
        threads = settings.get("intra_op_threads")
        rows.append([name, *figures, len(latency.get("raw_ms") or ()), str(threads or "default")])
    notes = ["Measured on this run's host CPU with onnxruntime, not on an STM32 board."]
    if missing:
        notes.append(f"No latency pass for: {', '.join(missing)} (latency.runs was 0).")
    caption = "Milliseconds per inference (batch 1 unless set); images/s = batch / p50."
    return make_table("host_latency", "Host latency (measured)", caption, columns, rows, notes)


def _onboard(record: RunRecord, name: str) -> OnBoardFigures | None:
    data = record.variants[name].get("onboard")
    return None if data is None else OnBoardFigures.from_dict(data, path=_where(record))


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
        memory = variant.get("memory")
        if memory is None:
            continue
        column = f"{ESTIMATE}: {name} (evalkit, ONNX graph)"
        columns.append((column, ".2f"))
        where = f"variants.{name}.memory"
        largest = _number(memory, "largest_int8_bytes", where, record) / KIB
        peak = _number(memory, "peak_int8_bytes", where, record) / KIB
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


BUILDERS: tuple[Callable[[RunRecord, DatasetReference | None], Table], ...] = (
    accuracy, variant_delta, per_class, coco_stats, model_size, host_latency,
    n6_figures,
)  # fmt: skip


def build_tables(record: RunRecord, reference: DatasetReference | None) -> dict[str, Table]:
    """Every report table by name, in reading order."""
    tables = (build(record, reference) for build in BUILDERS)
    return {t.name: t for t in tables}
