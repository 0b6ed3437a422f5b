"""Report tables of the recorded analyses (``variants.NAME.analysis``): operating points, the
TIDE breakdown and the confusions, per variant and the change from the base variant (float
-> int8: what quantization did)."""

from __future__ import annotations

from typing import Any

from evalkit.metrics.analysis import analysis_difference
from evalkit.metrics.tide import MAIN_ERRORS
from evalkit.record import RunRecord
from evalkit.references import DatasetReference
from evalkit.reports.table_base import AP, INT, Table, comparison, make_table

RATIO = ".3f"
TOP_CONFUSIONS = 10
MISSING = "Not in this record (written before evalkit recorded analyses, or analysis disabled)."


def analysed(record: RunRecord) -> dict[str, dict[str, Any]]:
    """The variants that carry an analysis, in run order."""
    return {n: v.analysis for n, v in record.variants.items() if v.analysis is not None}


def _point_row(variant: str, where: str, point: dict[str, Any] | None) -> list[Any]:
    if point is None:
        return [variant, where, None, None, None, None, None, None]
    return [
        variant,
        where,
        point["threshold"],
        point["precision"],
        point["recall"],
        point["f1"],
        point["tp"],
        point["fp"],
    ]


def operating_points(record: RunRecord, reference: DatasetReference | None) -> Table:
    """Per variant, over all classes: the F1-optimal score threshold and P/R/F1 there, and
    at each configured threshold."""
    columns = [
        ("variant", ""), ("point", ""), ("score threshold", RATIO), ("precision", RATIO),
        ("recall", RATIO), ("F1", RATIO), ("TP", INT), ("FP", INT),
    ]  # fmt: skip
    rows = []
    iou = None
    for name, a in analysed(record).items():
        op = a["operating_points"]
        iou = op["iou"]
        rows.append(_point_row(name, "best F1", op["overall"]["best_f1"]))
        for t, point in zip(op["thresholds"], op["overall"]["at"], strict=True):
            rows.append(_point_row(name, f"at {t:g}", point))
    base, others = comparison(record)
    found = analysed(record)
    for other in others:
        if base in found and other in found:
            change = analysis_difference(found[base], found[other])["operating_points"]
            label = f"{other} - {base}"
            best = change["best_f1"]
            if best is not None:
                rows.append([label, "best F1", None, *_deltas(best)])
            for t, delta in change["at"].items():
                if delta is not None:
                    rows.append([label, f"at {float(t):g}", None, *_deltas(delta)])
    caption = (
        "All classes pooled, matched as pycocotools does"
        + (f" at IoU {iou:g}" if iou is not None else "")
        + ": the detections a device keeps at a score threshold, how precise and complete "
        "they are. 'best F1' is the threshold that balances the two; the rows 'A - B' are "
        "the change from B (for int8 - float: what quantization did at that threshold)."
    )
    notes = [] if rows else [MISSING]
    return make_table(
        "operating_points", "Operating points (score thresholds)", caption, columns, rows, notes
    )


def _deltas(d: dict[str, Any]) -> list[Any]:
    return [d["precision"], d["recall"], d["f1"], d["tp"], d["fp"]]


def tide(record: RunRecord, reference: DatasetReference | None) -> Table:
    """Per variant: TIDE's AP and the AP each kind of error costs; then the change."""
    columns = [
        ("variant", ""), ("TIDE AP", AP), *((f"{k} dAP", AP) for k in MAIN_ERRORS),
        *((f"{k} count", INT) for k in MAIN_ERRORS),
    ]  # fmt: skip
    rows = []
    found = analysed(record)
    for name, a in found.items():
        t = a["tide"]
        rows.append(
            [
                name,
                t["ap"],
                *(t["delta_ap"][k] for k in MAIN_ERRORS),
                *(t["counts"][k] for k in MAIN_ERRORS),
            ]
        )
    base, others = comparison(record)
    for other in others:
        if base in found and other in found:
            change = analysis_difference(found[base], found[other])["tide"]
            rows.append(
                [
                    f"{other} - {base}",
                    change["ap"],
                    *(change["delta_ap"][k] for k in MAIN_ERRORS),
                    *(change["counts"][k] for k in MAIN_ERRORS),
                ]
            )
    caption = (
        "The AP each kind of error costs (TIDE, Bolya et al. 2020; evalkit/metrics/tide.py): "
        "the AP gained by fixing only that kind, in points. Cls: right box, wrong class; Loc: "
        "right class, box off (IoU 0.1 to the match IoU); Both: both wrong; Dupe: a second "
        "detection of a found object; Bkg: nothing there; Miss: objects never detected. "
        "TIDE's AP uses its own matching and 101-point average (equal to the tidecv package's), "
        "so it can differ slightly from the coco protocol's AP50. A positive change in an "
        "'int8 - float' row is a kind of error quantization added."
    )
    notes = [] if rows else [MISSING]
    return make_table("tide", "TIDE error breakdown", caption, columns, rows, notes)


def confusions(record: RunRecord, reference: DatasetReference | None) -> Table:
    """The largest confusions between classes, per variant, with the other variants'
    counts of the same cells beside them."""
    found = analysed(record)
    names = list(found)
    columns = [("true class", ""), ("predicted as", ""), *((n, INT) for n in names)]
    cells: dict[tuple[str, str], None] = {}
    for a in found.values():
        c = a["confusion"]
        labels, matrix = c["labels"], c["matrix"]
        k = len(labels) - 1
        ranked = sorted(
            ((matrix[i][j], labels[i], labels[j]) for i in range(k) for j in range(k) if i != j),
            key=lambda cell: -cell[0],
        )
        for count, true, predicted in ranked[:TOP_CONFUSIONS]:
            if count > 0:
                cells.setdefault((true, predicted), None)
    rows = []
    for true, predicted in cells:
        counts = []
        for a in found.values():
            labels, matrix = a["confusion"]["labels"], a["confusion"]["matrix"]
            i, j = labels.index(true), labels.index(predicted)
            counts.append(matrix[i][j])
        rows.append([true, predicted, *counts])
    rows.sort(key=lambda r: -max(r[2:]))
    score = next((a["confusion"]["score_threshold"] for a in found.values()), None)
    caption = (
        "Objects of one class detected as another (confusion matrix off-diagonal cells, "
        + (f"detections scoring >= {score:g}, " if score is not None else "")
        + "matched by IoU whatever their class): the largest cells of any variant."
    )
    notes = [] if found else [MISSING]
    if found and not rows:
        notes = ["No object was detected as another class."]
    return make_table(
        "confusions", "Largest confusions between classes", caption, columns, rows, notes
    )


ANALYSIS_TABLES = (operating_points, tide, confusions)
