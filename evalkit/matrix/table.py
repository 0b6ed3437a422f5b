"""A matrix folder read back: its cells (``matrix.json``) and every cell's record, and the
combined table that sets each cell's AP50 beside the card's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import InputError
from evalkit.jsonio import read_json
from evalkit.record import RunRecord, load_result
from evalkit.references import reference_for

MATRIX_FILE = "matrix.json"


@dataclass(frozen=True)
class MatrixCell:
    """One cell as the matrix folder records it; ``record`` is None for a failed cell."""

    model: str
    dataset: str
    status: str
    error: str | None
    record: RunRecord | None

    @property
    def key(self) -> str:
        return f"{self.model}/{self.dataset}"


def is_matrix(path: Path) -> bool:
    return (path / MATRIX_FILE).is_file()


def load_matrix_cells(folder: str | Path) -> list[MatrixCell]:
    """The cells of a matrix folder, with the record of each cell that ran."""
    folder = Path(folder)
    path = folder / MATRIX_FILE
    data = read_json(path)
    if not isinstance(data, dict) or data.get("kind") != "evalkit.matrix":
        raise InputError("expected an evalkit matrix record", path=path, record="kind")
    cells = data.get("cells")
    if not isinstance(cells, list):
        raise InputError("expected a list of cells", path=path, record="cells")
    out = []
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or not all(
            isinstance(cell.get(k), str) for k in ("model", "dataset", "folder", "status")
        ):
            raise InputError(
                "expected model, dataset, folder and status", path=path, record=f"cells[{i}]"
            )
        ok = cell["status"] == "ok"
        record = load_result(folder / cell["folder"]) if ok else None
        out.append(MatrixCell(cell["model"], cell["dataset"], cell["status"], cell.get("error"),
                              record))  # fmt: skip
    return out


def _card(record: RunRecord, precision: str | None) -> tuple[str, str]:
    """The card's st AP50 for this variant's precision, and the measured-minus-card delta
    when the run scored the card's own set."""
    named = record.reference
    if named is None or precision not in ("float", "int8"):
        return "-", "-"
    card = reference_for(named.model, named.dataset).ap50(precision)  # type: ignore[arg-type]
    if card is None:
        return "-", "-"
    return f"{100 * card:.2f}", "comparable" if named.comparable else "context only"


def matrix_markdown(name: str, folder: Path) -> str:
    """Every cell x variant: AP50 under each protocol, and the card's figure."""
    cells = load_matrix_cells(folder)
    protocols: list[str] = []
    for cell in cells:
        for variant in cell.record.variants.values() if cell.record else ():
            protocols += [p for p in variant.protocols if p not in protocols]
    header = ["model", "dataset", "variant", *(f"AP50 {p}" for p in protocols), "card st",
              "card is"]  # fmt: skip
    rows: list[list[str]] = []
    for cell in cells:
        if cell.record is None:
            problem = (cell.error or "failed").splitlines()[0]
            rows.append([cell.model, cell.dataset, f"FAILED: {problem}"] + [""] * (len(header) - 3))
            continue
        for variant_name, variant in cell.record.variants.items():
            scores: list[Any] = [
                f"{100 * variant.protocols[p].ap50:.2f}" if p in variant.protocols else "-"
                for p in protocols
            ]
            rows.append([cell.model, cell.dataset, variant_name, *scores,
                         *_card(cell.record, variant.precision)])  # fmt: skip
    lines = [f"# {name}", "", f"{len(cells)} cell(s); AP50 in percent.", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
