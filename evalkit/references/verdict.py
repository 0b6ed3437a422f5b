"""Does a run reproduce the card? One verdict per published figure the run measured: each
variant's AP50 under the card's protocol against the card's figure for its precision, and
the int8 cost (float minus int8) against the card's. A figure reproduces when the measured
value is within the card's rounding, 0.01 AP points (0.02 for the cost, a difference of two
rounded figures); a run on another set than the card's
(``reference.comparable`` false) is never said to reproduce or not, only set beside it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from evalkit.record import RunRecord
from evalkit.references import DatasetReference

# The cards print AP50 to two decimals in percent: 0.01 points is their rounding.
REPRODUCE_POINTS = 0.01
# Float noise of the subtraction; a difference equal to the rounding reproduces.
_EPS = 1e-9

Status = Literal["reproduces", "does not reproduce", "context only", "not published"]


@dataclass(frozen=True)
class FigureVerdict:
    """One published figure set against the run: values in AP points (percent)."""

    figure: str
    measured: float | None
    published: float | None
    status: Status
    why: str

    @property
    def difference(self) -> float | None:
        if self.measured is None or self.published is None:
            return None
        return self.measured - self.published


def _status(
    measured: float, published: float | None, comparable: bool | None, roundings: int = 1
) -> Status:
    if published is None:
        return "not published"
    if not comparable:
        return "context only"
    if abs(measured - published) <= roundings * REPRODUCE_POINTS + _EPS:
        return "reproduces"
    return "does not reproduce"


def card_verdicts(record: RunRecord, card: DatasetReference | None) -> list[FigureVerdict]:
    """Every published figure the run can be set against, in variant order."""
    if card is None or record.reference is None:
        return []
    comparable = record.reference.comparable
    why = record.reference.why or ""
    protocol = card.protocol
    out: list[FigureVerdict] = []
    measured_by_precision: dict[str, list[tuple[str, float]]] = {}
    for name, variant in record.variants.items():
        precision = variant.precision
        result = variant.protocols.get(protocol)
        if precision is None or result is None:
            continue
        measured = 100 * result.ap50
        measured_by_precision.setdefault(precision, []).append((name, measured))
        fraction = card.ap50(precision)
        published = None if fraction is None else 100 * fraction
        out.append(
            FigureVerdict(
                f"{name} ({precision}) AP50 {protocol}",
                measured,
                published,
                _status(measured, published, comparable),
                why,
            )
        )
    card_float, card_int8 = card.ap50("float"), card.ap50("int8")
    card_cost = None if card_float is None or card_int8 is None else 100 * (card_float - card_int8)
    for float_name, float_ap in measured_by_precision.get("float", [])[:1]:
        for int8_name, int8_ap in measured_by_precision.get("int8", []):
            cost = float_ap - int8_ap
            out.append(
                FigureVerdict(
                    f"int8 cost, {float_name} - {int8_name} ({protocol})",
                    cost,
                    card_cost,
                    _status(cost, card_cost, comparable, roundings=2),
                    why,
                )
            )
    return out
