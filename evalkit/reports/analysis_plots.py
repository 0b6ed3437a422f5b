"""Figures of the recorded analyses: F1 (with precision and recall) against the score
threshold, the TIDE breakdown as bars per variant, and the confusion heatmap with the change
from the base variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from evalkit.metrics.tide import MAIN_ERRORS
from evalkit.record import RunRecord
from evalkit.references import DatasetReference
from evalkit.reports.analysis_tables import MISSING, analysed
from evalkit.reports.plots import Plot, _colors, _legend, _save
from evalkit.reports.table_base import comparison

# The heatmap shows at most this many classes (those with the most ground truths).
HEATMAP_CLASSES = 20


def _values(values: list[Any]) -> np.ndarray[Any, Any]:
    return np.array([np.nan if v is None else v for v in values], np.float64)


def f1_curves(record: RunRecord, reference: DatasetReference | None, out: Path) -> Plot:
    title = "F1, precision and recall against the score threshold"
    found = analysed(record)
    if not found:
        return Plot("f1_curves", title, "", None, MISSING)
    colors = _colors(record)
    fig = Figure(figsize=(9, 4.6), layout="constrained")
    ax = fig.subplots()
    thresholds: list[float] = []
    for name, a in found.items():
        op = a["operating_points"]
        c = op["overall_curve"]
        x = np.array(c["thresholds"], np.float64)
        color = colors[name]
        best = op["overall"]["best_f1"]
        label = f"{name} F1"
        if best is not None:
            label += f" (best {best['f1']:.3f} at {best['threshold']:.3g})"
            ax.plot([best["threshold"]], [best["f1"]], "o", color=color, markersize=7)
        ax.plot(x, _values(c["f1"]), color=color, linewidth=2.2, label=label)
        ax.plot(x, _values(c["precision"]), color=color, linestyle="--", linewidth=1,
                label=f"{name} precision")  # fmt: skip
        ax.plot(x, _values(c["recall"]), color=color, linestyle=":", linewidth=1.2,
                label=f"{name} recall")  # fmt: skip
        thresholds = [float(t) for t in op["thresholds"]]
    for t in thresholds:
        ax.axvline(t, color="gray", linewidth=0.8, alpha=0.6)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="score threshold (detections kept: score >= it)",
           ylabel="value")  # fmt: skip
    ax.grid(alpha=0.3)
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=13)
    caption = (
        "All classes pooled, pycocotools' matching. Solid: F1; dashed: precision; dotted: "
        "recall. The dot is each variant's F1-optimal threshold; grey lines are the configured "
        "thresholds (analysis.thresholds), whose numbers are in the table above."
    )
    return Plot("f1_curves", title, caption, _save(fig, out / "f1_curves.png"))


def tide_bars(record: RunRecord, reference: DatasetReference | None, out: Path) -> Plot:
    title = "TIDE error breakdown"
    found = analysed(record)
    if not found:
        return Plot("tide_bars", title, "", None, MISSING)
    colors = _colors(record)
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(found)
    positions = np.arange(len(MAIN_ERRORS))
    for k, (name, a) in enumerate(found.items()):
        values = [a["tide"]["delta_ap"][e] for e in MAIN_ERRORS]
        label = f"{name} (TIDE AP {a['tide']['ap']:.1f})"
        offset = (k - (len(found) - 1) / 2) * width
        bars = ax.bar(positions + offset, values, width, color=colors[name], label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    labels = {
        "Cls": "Cls\nwrong class", "Loc": "Loc\nbox off", "Both": "Both",
        "Dupe": "Dupe\nduplicate", "Bkg": "Bkg\nbackground", "Miss": "Miss\nmissed",
    }  # fmt: skip
    ax.set_xticks(positions, [labels[e] for e in MAIN_ERRORS])
    ax.set(ylabel="AP gained by fixing it (points)")
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)
    _legend(ax, loc="upper right")
    ax.set_title(title, fontsize=13)
    caption = (
        "For each kind of error, the AP a variant would gain if only those errors were fixed "
        "(TIDE's definitions, equal to the tidecv package). A taller bar for int8 than for "
        "float is a kind of error quantization added."
    )
    return Plot("tide_bars", title, caption, _save(fig, out / "tide_bars.png"))


def _top_classes(confusion: dict[str, Any]) -> list[int]:
    matrix = np.array(confusion["matrix"])
    k = matrix.shape[0] - 1
    gt = matrix[:k, :].sum(axis=1)
    order = np.argsort(-gt, kind="stable")[:HEATMAP_CLASSES]
    return sorted(order.tolist())


def confusion(record: RunRecord, reference: DatasetReference | None, out: Path) -> Plot:
    title = "Confusion matrix"
    found = analysed(record)
    if not found:
        return Plot("confusion", title, "", None, MISSING)
    base, others = comparison(record)
    base = base if base in found else next(iter(found))
    other = next((o for o in others if o in found and o != base), None)
    c = found[base]["confusion"]
    labels = c["labels"]
    k = len(labels) - 1
    shown = _top_classes(c)
    index = [*shown, k]  # the background row and column last
    names = [labels[i] for i in index]
    panels = 1 if other is None else 2
    size = 2.4 + 0.38 * len(index)
    fig = Figure(figsize=(size * panels + 1.2, size), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    counts = np.array(c["matrix"])[np.ix_(index, index)]
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    image = axes[0].imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=axes[0], shrink=0.8, label="share of the row")
    _cells(axes[0], counts, len(index))
    axes[0].set_title(f"{base}", fontsize=11)
    if other is not None:
        o = found[other]["confusion"]
        if o["labels"] == labels:
            diff = (np.array(o["matrix"]) - np.array(c["matrix"]))[np.ix_(index, index)]
            top = max(1, int(np.abs(diff).max()))
            image = axes[1].imshow(diff, cmap="RdBu_r", vmin=-top, vmax=top)
            fig.colorbar(image, ax=axes[1], shrink=0.8, label=f"count, {other} - {base}")
            _cells(axes[1], diff, len(index), signed=True)
            axes[1].set_title(f"{other} - {base}", fontsize=11)
        else:
            axes[1].set_axis_off()
    for ax in axes:
        ax.set_xticks(range(len(index)), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(index)), names, fontsize=8)
        ax.set(xlabel="predicted class", ylabel="true class")
    fig.suptitle(
        f"{title} (IoU >= {c['iou_threshold']:g}, score >= {c['score_threshold']:g})", fontsize=13
    )
    more = f" the {len(shown)} classes with the most ground truths;" if len(shown) < k else ""
    caption = (
        f"Rows: true class; columns: predicted class;{more} 'background' row: false "
        "detections, column: missed objects. Left: counts, coloured by share of the row"
        + (f"; right: how the counts changed from {base} to {other} (red: more)." if other else ".")
    )
    return Plot("confusion", title, caption, _save(fig, out / "confusion.png"))


def _cells(ax: Any, values: np.ndarray[Any, Any], n: int, signed: bool = False) -> None:
    if n > 12:  # too small to read; the colour says it
        return
    top = float(np.abs(values).max()) if signed else float(values.max())
    for i in range(n):
        for j in range(n):
            v = int(values[i, j])
            if v:
                dark = abs(v) > 0.6 * top if top else False
                ax.text(j, i, f"{v:+d}" if signed else str(v), ha="center", va="center",
                        fontsize=7, color="white" if dark else "black")  # fmt: skip


ANALYSIS_PLOTS = (f1_curves, tide_bars, confusion)
