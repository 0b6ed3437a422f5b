"""Plain-text rendering of result objects for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

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
