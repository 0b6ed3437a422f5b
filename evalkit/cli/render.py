"""Plain-text rendering of result objects for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalkit.metrics.confusion import ConfusionMatrix
from evalkit.metrics.operating_points import Curve, OperatingPoint, OperatingPoints
from evalkit.metrics.tide import MAIN_ERRORS, SPECIAL_ERRORS, TideBreakdown
from evalkit.types import EvalResult

_COCO_LINES = (
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A left-aligned first column, right-aligned numbers, a rule under the header."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def render_eval_result(result: EvalResult) -> str:
    rows = [
        [
            c.name,
            str(c.num_gt),
            str(c.num_detections),
            str(c.tp),
            str(c.fp),
            "-" if c.ap is None else f"{100 * c.ap:.2f}",
        ]
        for c in result.per_class
    ]
    parts = [
        f"protocol {result.protocol}: {result.num_images} images, {result.num_gt} ground "
        f"truths, {result.num_detections} detections",
        "",
        table(["class", "GT", "dets", "TP", "FP", result.ap_key], rows),
        "",
        f"{result.ap_key} ({result.protocol}) = {100 * result.ap:.2f}  "
        f"(TP {result.tp}, FP {result.fp})",
    ]
    if result.stats is not None:
        parts.append("")
        lines = result.settings.get("stat_lines", _COCO_LINES)
        parts.extend(
            f" {label} = {value:0.3f}" for label, value in zip(lines, result.stats, strict=True)
        )
    return "\n".join(parts)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _prf(point: OperatingPoint) -> str:
    return "/".join(_number(v) for v in (point.precision, point.recall, point.f1))


def render_operating_points(points: OperatingPoints) -> str:
    """Per class and over all classes: the F1-optimal threshold, and precision / recall /
    F1 at each requested threshold."""

    def row(c: Curve) -> list[str]:
        best = c.best()
        cells = [c.name, str(c.num_gt)]
        cells += ["-", "-"] if best is None else [f"{best.threshold:.3f}", _prf(best)]
        return cells + [_prf(c.at(t)) for t in points.thresholds]

    headers = ["class", "GT", "best F1 at", "P/R/F1"]
    headers += [f"P/R/F1 @{t:g}" for t in points.thresholds]
    rows = [row(c) for c in points.per_class] + [row(points.overall)]
    title = (
        f"operating points ({points.protocol} matching at IoU {points.iou:g}; a detection "
        "is kept when its score >= the threshold)"
    )
    return "\n".join([title, "", table(headers, rows)])


def render_per_image(rows: Sequence[dict[str, Any]], iou: float) -> str:
    """One line per image: ground truths that count, true and false positives, missed."""
    body = [
        [
            str(r["image_id"]),
            str(r["num_gt"]),
            str(r["tp"]),
            str(r["fp"]),
            str(r["num_gt"] - r["tp"]),
        ]
        for r in rows
    ]
    title = f"per image (coco matching at IoU {iou:g}, area all)"
    return "\n".join([title, "", table(["image_id", "GT", "TP", "FP", "missed"], body)])


def render_confusion(cm: ConfusionMatrix) -> str:
    """Per class: found as itself, as another class, missed, and false detections; then the
    largest confusions between classes (the whole matrix is in --json)."""
    k = len(cm.classes)
    m = cm.matrix
    rows = [
        [
            name,
            str(int(m[i, :].sum())),
            str(int(m[i, i])),
            str(int(m[i, :k].sum() - m[i, i])),
            str(int(m[i, k])),
            str(int(m[k, i])),
        ]
        for i, name in enumerate(cm.classes)
    ]
    headers = ["class", "GT", "as itself", "as another", "missed", "false detections"]
    parts = [
        f"confusion (IoU >= {cm.iou_threshold:g}, score >= {cm.score_threshold:g})",
        "",
        table(headers, rows),
    ]
    top = cm.top_confusions()
    if top:
        parts += ["", "largest confusions (true -> predicted):"]
        parts += [f"  {true} -> {predicted}: {count}" for true, predicted, count in top]
    return "\n".join(parts)


def render_tide(t: TideBreakdown) -> str:
    """TIDE's AP, then per kind of error: the AP fixing it gains, and how many there were."""
    p = t.params
    rows = [[k, f"{t.delta_ap[k]:.2f}", str(t.counts[k])] for k in MAIN_ERRORS]
    rows += [[k, f"{t.special[k]:.2f}", ""] for k in SPECIAL_ERRORS]
    return "\n".join(
        [
            f"TIDE error breakdown (IoU {p.pos_threshold:g}, background {p.background_threshold:g},"
            f" {p.max_dets} detections per image): TIDE AP {t.ap:.2f}",
            "",
            table(["error", "dAP (points)", "count"], rows),
        ]
    )
