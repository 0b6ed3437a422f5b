"""The report's figures as PNG files, drawn with matplotlib's Agg canvas from a run record.

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot: no global
state, no GUI backend, safe to call from a library.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from evalkit.record import RunRecord
from evalkit.references import ORIGIN, DatasetReference
from evalkit.reports.tables import (
    class_ap,
    comparison,
    precision_of,
    primary_protocol,
    protocols_of,
    published_ap,
)

WORST_CLASSES = 5
# Matplotlib's default cycle; one colour per variant across every figure.
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
DPI = 100


@dataclass(frozen=True)
class Plot:
    """One figure: the PNG written (None when the run lacks its data, ``note`` says why)."""

    name: str
    title: str
    caption: str
    path: Path | None
    note: str = ""


def _colors(record: RunRecord) -> dict[str, str]:
    return {v: COLORS[i % len(COLORS)] for i, v in enumerate(record.variants)}


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    # No Software/date metadata: the same record renders to the same bytes.
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def _curve(values: tuple[float, ...]) -> np.ndarray[Any, Any]:
    """A precision curve as floats; pycocotools' -1 (undefined) becomes NaN (a gap)."""
    curve = np.asarray(values, dtype=np.float64)
    curve[curve < 0] = np.nan
    return curve


def _legend(ax: Axes, **kwargs: Any) -> None:
    ax.legend(fontsize=9, framealpha=0.9, **kwargs)


def pr_curves(record: RunRecord, reference: DatasetReference | None, out: Path) -> Plot:
    """Mean precision-recall curve per variant, then the classes the compared variant loses most."""
    protocol = primary_protocol(record, reference)
    base, others = comparison(record)
    names = [base, *others]
    title = f"Precision-recall curves ({protocol})"
    caption = (
        f"Precision vs recall under the {protocol!r} protocol at 101 recall points: the mean "
        "over classes, then the classes with the largest AP50 drop; a curve below another "
        "means lower precision at that recall."
    )
    scored = {n: record.protocol(n, protocol) for n in names}
    curves = {n: None if s is None else s.pr_curves for n, s in scored.items()}
    if not any(curves.values()):
        return Plot("pr_curves", title, caption, None, "No precision-recall curves in the record.")
    panels: list[tuple[str, str | None]] = [("mean over classes", None)]
    if others:
        a, b = class_ap(record, base, protocol), class_ap(record, others[0], protocol)
        drops = sorted(((b[c] - a[c], c) for c in a if c in b), key=lambda t: t[0])
        worst = [(d, c) for d, c in drops if d < 0][:WORST_CLASSES]
        panels += [(f"{c} ({d:+.2f} AP pts)", c) for d, c in worst]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.0 * cols, 3.4 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    colors = _colors(record)
    for ax, (label, cls) in zip(axes, panels, strict=False):  # spare axes are hidden
        for name in names:
            pr = curves[name]
            if pr is None or not pr.recall:
                continue
            recall = np.asarray(pr.recall, dtype=np.float64)
            values = pr.mean if cls is None else pr.per_class.get(cls)
            if values is None:
                continue  # a class this variant has no curve for
            # Lengths were checked against the recall points when the record was read.
            precision = _curve(values)
            # steps-post: each sampled precision holds until the next recall point.
            ax.plot(recall, precision, drawstyle="steps-post", color=colors[name], label=name)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall (0-1)", ylabel="precision (0-1)")
        ax.set_title(label, fontsize=11)
        ax.grid(alpha=0.3)
        _legend(ax, loc="lower left")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: {' vs '.join(names)}", fontsize=13)
    return Plot("pr_curves", title, caption, _save(fig, out / "pr_curves.png"))


# Classes with fewer ground truths than this are marked: one object moves their AP a lot.
SMALL_CLASS = 10


def class_impacts(
    record: RunRecord, protocol: str, base: str, other: str
) -> list[tuple[float, str]]:
    """(AP50 delta in points, class) of every class both variants score, the most harmful
    first: ordered by the delta times the class's ground-truth count; stable on ties."""
    a, b = class_ap(record, base, protocol), class_ap(record, other, protocol)
    counts = record.variants[base].protocols[protocol].num_gt_by_class()
    return sorted(
        ((b[c] - a[c], c) for c in a if c in b), key=lambda t: t[0] * (counts.get(t[1]) or 1)
    )


def _class_label(name: str, count: int | None) -> str:
    if count is None:
        return name
    return f"{name} (n={count}, small)" if count < SMALL_CLASS else f"{name} (n={count})"


def class_delta(record: RunRecord, reference: DatasetReference | None, out: Path) -> Plot:
    """Per-class AP50 delta bars, the most harmful (delta x ground truths) on top."""
    protocol = primary_protocol(record, reference)
    base, others = comparison(record)
    title = f"Per-class AP50 delta ({protocol})"
    if not others:
        return Plot("class_delta", title, "", None, "Only one variant: no per-class delta.")
    other = others[0]
    caption = (
        f"AP50 of {other} minus {base} for each class, in AP points: bars left of zero (red) "
        f"are classes {other} detects worse. Ordered by impact, the delta weighted by the "
        f"class's ground-truth count (n): a large drop on a rare class matters less than a "
        f"moderate one on a common class; classes with fewer than {SMALL_CLASS} ground "
        "truths are marked 'small' (their AP moves in large steps)."
    )
    counts = record.variants[base].protocols[protocol].num_gt_by_class()
    deltas = class_impacts(record, protocol, base, other)
    if not deltas:
        return Plot("class_delta", title, caption, None, "No class has an AP in both variants.")
    fig = Figure(figsize=(9, 1.6 + 0.24 * len(deltas)), layout="constrained")
    ax = fig.subplots()
    values = [d for d, _ in deltas]
    colors = ["#d62728" if d < 0 else "#1f77b4" for d in values]
    positions = np.arange(len(deltas))
    bars = ax.barh(positions, values, color=colors)
    ax.bar_label(bars, fmt="%+.2f", fontsize=8, padding=3)
    ax.margins(x=0.12)  # room for the labels
    ax.set_yticks(positions, [_class_label(c, counts.get(c)) for _, c in deltas], fontsize=9)
    ax.set_ylim(len(deltas) - 0.5, -0.5)  # inverted, no padding: the largest drop reads first
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set(xlabel=f"AP50 delta, {other} - {base} (AP points)", ylabel="class")
    ax.grid(axis="x", alpha=0.3)
    handles = [
        Patch(color="#d62728", label=f"{other} below {base}"),
        Patch(color="#1f77b4", label=f"{other} at or above {base}"),
    ]
    _legend(ax, handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{title}: {other} vs {base}", fontsize=13)
    return Plot("class_delta", title, caption, _save(fig, out / "class_delta.png"))


def protocol_bars(record: RunRecord, reference: DatasetReference | None, out: Path) -> Plot:
    """AP50 of each variant under each protocol, grouped by variant, with the card's figure."""
    protocols = protocols_of(record)
    names = list(record.variants)
    title = "AP50 of the same detections under each protocol"
    caption = (
        "Each group is one variant's detections scored by every protocol; bar heights differ "
        "only through the protocols' matching and interpolation rules. Black ticks: the AP50 "
        "published on the model card, under the protocol it was computed with."
    )
    fig = Figure(figsize=(max(7.0, 1.6 + 0.9 * len(protocols) * len(names)), 4.8))
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    width = 0.8 / len(protocols)
    cmap = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")
    marked = False
    for j, protocol in enumerate(protocols):
        xs, heights = [], []
        for i, name in enumerate(names):
            if protocol in record.variants[name].protocols:
                xs.append(i - 0.4 + width * (j + 0.5))
                heights.append(100 * record.ap50(name, protocol))
        bars = ax.bar(xs, heights, width * 0.95, label=protocol, color=cmap[j % len(cmap)])
        ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
        if reference is None or protocol != reference.protocol:
            continue
        scored = [n for n in names if protocol in record.variants[n].protocols]
        for x, name in zip(xs, scored, strict=True):
            card = published_ap(reference, precision_of(record, name))
            if card is not None:
                # Matplotlib leaves labels starting with "_" out of the legend: one entry.
                label = "_card" if marked else f"{ORIGIN}, {protocol}"
                ax.hlines(card, x - width / 2, x + width / 2, color="black", lw=2.5, label=label)
                marked = True
    ax.set_xticks(range(len(names)), names)
    ax.set(xlabel="variant", ylabel="AP50 (%)")
    ax.set_ylim(0, min(110.0, ax.get_ylim()[1] * 1.12))
    ax.grid(axis="y", alpha=0.3)
    _legend(ax, title="protocol", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=13)
    return Plot("protocols", title, caption, _save(fig, out / "protocols.png"))


def latency(record: RunRecord, reference: DatasetReference | None, out: Path) -> Plot:
    """Distribution of every timed host run per variant (violin, runs as dots, median)."""
    title = "Host latency distribution (onnxruntime, CPU)"
    caption = (
        "Every timed run of the latency pass, one row per variant: the shape is the spread, "
        "the vertical bar the median (p50). A long right tail means unstable timings; measured "
        "on the host, not on the board."
    )
    runs: dict[str, np.ndarray[Any, Any]] = {}
    for name, variant in record.variants.items():
        raw = () if variant.latency is None else variant.latency.raw_ms
        if raw:
            runs[name] = np.asarray(raw, dtype=np.float64)
    if not runs:
        return Plot("latency", title, caption, None, "No latency pass in this run.")
    fig = Figure(figsize=(9, 1.8 + 1.1 * len(runs)), layout="constrained")
    ax = fig.subplots()
    colors = _colors(record)
    names = list(runs)
    positions = np.arange(1, len(names) + 1)
    parts = ax.violinplot(
        [runs[n] for n in names], positions, orientation="horizontal", showmedians=True
    )
    bodies: list[PolyCollection] = parts["bodies"]  # type: ignore[assignment]
    for body, name in zip(bodies, names, strict=True):
        body.set(facecolor=colors[name], alpha=0.35)
    for key in ("cbars", "cmins", "cmaxes", "cmedians"):
        parts[key].set(color="#333333", linewidth=1.2)
    jitter = np.random.default_rng(0)  # fixed: the same record draws the same picture
    handles = []
    for y, name in zip(positions, names, strict=True):
        times = runs[name]
        ax.scatter(times, y + jitter.uniform(-0.08, 0.08, times.size), s=9, color=colors[name])
        label = f"{name}: p50 {np.median(times):.2f} ms, {times.size} runs"
        handles.append(Patch(color=colors[name], alpha=0.6, label=label))
    ax.set_yticks(positions, names)
    ax.invert_yaxis()  # first variant on top, as in the tables
    ax.set(xlabel="latency per inference (ms)", ylabel="variant")
    ax.grid(axis="x", alpha=0.3)
    _legend(ax, handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=13)
    return Plot("latency", title, caption, _save(fig, out / "latency.png"))


PLOTTERS: Sequence[Callable[[RunRecord, DatasetReference | None, Path], Plot]] = (
    protocol_bars,
    pr_curves,
    class_delta,
    latency,
)


Plotter = Callable[[RunRecord, DatasetReference | None, Path], Plot]


def render_plots(
    record: RunRecord,
    reference: DatasetReference | None,
    out_dir: Path,
    plotters: Sequence[Plotter] | None = None,
) -> dict[str, Plot]:
    """Every figure by name (``plotters``, default :data:`PLOTTERS`); those the run has no
    data for come back without a file."""
    # Class and variant names are data: a "$" in one must not switch on mathtext.
    with matplotlib.rc_context({"text.parse_math": False}):
        plots = [plot(record, reference, out_dir) for plot in plotters or PLOTTERS]
    return {p.name: p for p in plots}
