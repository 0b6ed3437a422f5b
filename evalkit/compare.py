"""``evalkit compare``: every metric two runs share, side by side, with deltas."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from evalkit.comparable import allowed_warning, host_notes, label, require_comparable
from evalkit.fingerprint import Difference, Kind
from evalkit.record import RunRecord, VariantRecord

Unit = Literal["points", "percent", "count"]
_UNIT_ORDER = {"points": 0, "percent": 1, "count": 2}
# Deltas below this are float noise (a re-run's sums in another order), not a change.
_NOISE = 1e-9

# pycocotools' 12 summary statistics, in its order: six precisions, six recalls.
_AP_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
COCO_STATS = (*_AP_STATS, "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _variant_metrics(variant: VariantRecord) -> dict[str, float | None]:
    """The per-variant figures compared (each checked when the record was read)."""
    latency, model, timings = variant.latency, variant.model, variant.timings
    return {
        "latency_p50_ms": None if latency is None else latency.ms("p50"),
        "latency_p90_ms": None if latency is None else latency.ms("p90"),
        "model_bytes": None if model is None else model.bytes,
        "images_per_s": None if timings is None else timings.images_per_s,
    }


# ---------------------------------------------------------------- compare


@dataclass(frozen=True)
class Row:
    """One metric of one variant (and protocol) in runs A and B; a side without it is None.

    ``unit`` is the delta's: AP-like values are fractions and change in AP points; latency,
    model bytes and images/s change in percent of A; TP/FP counts by their difference.
    """

    metric: str
    variant: str
    protocol: str | None
    a: float | None
    b: float | None
    delta: float | None
    unit: Unit


@dataclass(frozen=True)
class Comparison:
    """Every metric of two runs side by side (A's order, then what only B has)."""

    a_label: str
    b_label: str
    rows: tuple[Row, ...]
    # Dataset/settings differences the caller allowed (--allow-different); said loudly.
    differences: tuple[Difference, ...] = ()
    # What the hosts make incomparable (evalkit.comparable.host_notes); said too.
    notes: tuple[str, ...] = ()

    @property
    def warning(self) -> str | None:
        return allowed_warning(self.differences, self.notes)

    def changed(self) -> Comparison:
        """The comparison without the shared metrics that did not move (float noise aside)."""
        moved = tuple(
            r for r in self.rows if r.a is None or r.b is None or abs(r.delta or 0.0) > _NOISE
        )
        return replace(self, rows=moved)

    def by_change(self) -> Comparison:
        """Rows ordered by how much they moved (largest first, AP points before percents);
        rows one run lacks keep their place after them."""
        shared = [r for r in self.rows if r.delta is not None]
        rest = [r for r in self.rows if r.delta is None]
        shared.sort(key=lambda r: (_UNIT_ORDER[r.unit], -abs(r.delta or 0.0)))
        return replace(self, rows=(*shared, *rest))

    def only_in(self, side: Literal["a", "b"]) -> tuple[Row, ...]:
        """The rows whose metric only run A (or only run B) has."""
        return tuple(r for r in self.rows if (r.b if side == "a" else r.a) is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a_label,
            "b": self.b_label,
            "allowed_differences": [asdict(d) for d in self.differences],
            "warning": self.warning,
            "rows": [asdict(r) for r in self.rows],
        }


def _metrics(record: RunRecord) -> dict[tuple[str, str | None, str], tuple[float, Unit]]:
    """Every comparable number of a run, keyed (variant, protocol, metric), in file order."""
    out: dict[tuple[str, str | None, str], tuple[float, Unit]] = {}
    for variant, data in record.variants.items():
        for protocol, scores in data.protocols.items():
            out[variant, protocol, "AP50"] = (scores.ap50, "points")
            for cls, ap in scores.per_class.items():
                out[variant, protocol, f"AP50[{cls}]"] = (ap, "points")
            stats = dict(zip(COCO_STATS, scores.stats, strict=True)) if scores.stats else {}
            for name, value in stats.items():
                # pycocotools writes -1 for an area with no ground truth: not a score.
                if value >= 0:
                    out[variant, protocol, f"stats.{name}"] = (value, "points")
            for key, count in (("TP", scores.tp), ("FP", scores.fp)):
                if count is not None:
                    out[variant, protocol, key] = (count, "count")
        for metric, figure in _variant_metrics(data).items():
            if figure is not None:
                out[variant, None, metric] = (figure, "percent")
    return out


def _delta(a: float, b: float, unit: Unit) -> float | None:
    if unit == "points":
        return 100.0 * (b - a)
    if unit == "count":
        return b - a
    return None if a == 0 else 100.0 * (b - a) / a


def compare(a: RunRecord, b: RunRecord, allow: Collection[Kind] = ()) -> Comparison:
    """Every metric of run A next to run B, with B's change relative to A.

    Runs on different datasets or settings are refused (InputError listing the differences)
    unless their kind is in ``allow``; the comparison then carries them."""
    allowed = require_comparable(a, b, allow)
    ma, mb = _metrics(a), _metrics(b)
    rows = []
    for key in [*ma, *(k for k in mb if k not in ma)]:
        va, vb = ma.get(key), mb.get(key)
        unit = (va or mb[key])[1]
        delta = None if va is None or vb is None else _delta(va[0], vb[0], unit)
        a_value, b_value = (None if v is None else v[0] for v in (va, vb))
        rows.append(Row(key[2], key[0], key[1], a_value, b_value, delta, unit))
    return Comparison(label(a), label(b), tuple(rows), allowed, host_notes(a, b))


# ---------------------------------------------------------------- tolerances
