"""The on-board figures of one STEdgeAI report (:class:`OnBoardFigures`), their JSON record,
and the strict field readers both report parsers use (:mod:`evalkit.bench.stedgeai`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from evalkit.errors import InputError
from evalkit.jsonio import as_number

SCHEMA = "evalkit.onboard_figures/1"
ReportKind = Literal["network_c_info", "network_report"]
Placement = Literal["internal", "external", "excluded"]
Figure = Literal[
    "internal_ram", "external_ram", "weights_flash", "activations", "inference_time", "cycles",
    "macs", "tool_version",
]  # fmt: skip

# Zoo rule: a pool at or above this address is off-chip (xSPI RAM/flash on the N6).
EXTERNAL_ADDRESS_MIN = 0x60000000
# Top-level keys that identify each kind of report (the first of each is the one named when
# a file has none of them).
C_INFO_KEYS = ("json_schema_version", "memory_footprint", "graphs", "memory_pools")
REPORT_KEYS = ("rom_size", "ram_size", "rom_n_macc", "report_version")
C_INFO_MAJOR = "2"
_INT = "an integer"
_Name = TypeVar("_Name", bound=str)
# Lookup tables from the closed sets, so a checked string comes back typed as the Literal.
_KINDS: dict[str, ReportKind] = {k: k for k in get_args(ReportKind)}
_PLACEMENTS: dict[str, Placement] = {p: p for p in get_args(Placement)}
_FIGURES: dict[str, Figure] = {f: f for f in get_args(Figure)}
# Keys from_dict insists on (a figure the report lacks is written as null, never left out).
_RECORD_KEYS = (
    "schema", "kind", "source", "schema_version", "tool_version", "internal_ram_bytes",
    "external_ram_bytes", "weights_flash_bytes", "activations_bytes", "inference_time_ms",
    "cycles", "macs", "pools", "unavailable",
)  # fmt: skip


@dataclass(frozen=True)
class PoolUsage:
    """One ``memory_pools`` entry and where the zoo's rule puts it."""

    name: str
    address: int | None
    size_bytes: int
    used_size_bytes: int | None
    placement: Placement
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; the address as a hex string, as engineers read it."""
        return {
            "name": self.name,
            "address": None if self.address is None else f"0x{self.address:08X}",
            "size_bytes": self.size_bytes,
            "used_size_bytes": self.used_size_bytes,
            "placement": self.placement,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class OnBoardFigures:
    """The model-card figures one STEdgeAI report holds; ``None`` where it holds none."""

    kind: ReportKind
    source_path: str
    source_sha256: str
    schema_version: str | None
    tool_version: str | None
    internal_ram_bytes: int | None
    external_ram_bytes: int | None
    weights_flash_bytes: int | None
    activations_bytes: int | None
    inference_time_ms: float | None
    cycles: int | None
    macs: int | None
    pools: tuple[PoolUsage, ...] = ()
    unavailable: tuple[tuple[Figure, str], ...] = ()

    @property
    def internal_ram_kib(self) -> float | None:
        """Internal RAM in KiB (bytes / 1024, the card's unit)."""
        return _kib(self.internal_ram_bytes)

    @property
    def external_ram_kib(self) -> float | None:
        """External RAM in KiB."""
        return _kib(self.external_ram_bytes)

    @property
    def weights_flash_kib(self) -> float | None:
        """Weights flash in KiB."""
        return _kib(self.weights_flash_bytes)

    @property
    def activations_kib(self) -> float | None:
        """Activations in KiB."""
        return _kib(self.activations_bytes)

    @property
    def inferences_per_second(self) -> float | None:
        """1000 / inference time in ms, as on the model card."""
        if self.inference_time_ms is None:
            return None
        return 1000.0 / self.inference_time_ms

    def reason_unavailable(self, figure: Figure) -> str | None:
        """Why ``figure`` is missing, or None when the report holds it."""
        return dict(self.unavailable).get(figure)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready record; ``derived`` is recomputed, never read back."""
        return {
            "schema": SCHEMA,
            "kind": self.kind,
            "source": {"path": self.source_path, "sha256": self.source_sha256},
            "schema_version": self.schema_version,
            "tool_version": self.tool_version,
            "internal_ram_bytes": self.internal_ram_bytes,
            "external_ram_bytes": self.external_ram_bytes,
            "weights_flash_bytes": self.weights_flash_bytes,
            "activations_bytes": self.activations_bytes,
            "inference_time_ms": self.inference_time_ms,
            "cycles": self.cycles,
            "macs": self.macs,
            "derived": {
                "internal_ram_kib": self.internal_ram_kib,
                "external_ram_kib": self.external_ram_kib,
                "weights_flash_kib": self.weights_flash_kib,
                "activations_kib": self.activations_kib,
                "inferences_per_second": self.inferences_per_second,
            },
            "pools": [p.to_dict() for p in self.pools],
            "unavailable": dict(self.unavailable),
        }

    @classmethod
    def from_dict(cls, data: Any, *, path: str | Path | None = None) -> OnBoardFigures:
        """Read back what ``to_dict`` wrote (e.g. attached to a run record)."""
        where = "onboard figures"
        record = read_object(data, where, path)
        for key in _RECORD_KEYS:
            read_field(record, key, where, path, "a value (null where unavailable)")
        _choice(record["schema"], {SCHEMA: SCHEMA}, "schema", where, path)
        source = read_object(record["source"], "source", path)
        pools = record["pools"]
        if not isinstance(pools, list):
            raise InputError(f"pools must be a list, got {pools!r}", path=path, record=where)
        reasons = read_object(record["unavailable"], "unavailable", path)
        for reason in reasons.values():
            if not isinstance(reason, str):
                raise InputError(f"expected a reason string, got {reason!r}", path=path)
        return cls(
            kind=_choice(record["kind"], _KINDS, "kind", where, path),
            source_path=read_string(source, "path", "source", path),
            source_sha256=read_string(source, "sha256", "source", path),
            schema_version=read_opt_string(record, "schema_version", where, path),
            tool_version=read_opt_string(record, "tool_version", where, path),
            internal_ram_bytes=read_opt_int(record, "internal_ram_bytes", where, path),
            external_ram_bytes=read_opt_int(record, "external_ram_bytes", where, path),
            weights_flash_bytes=read_opt_int(record, "weights_flash_bytes", where, path),
            activations_bytes=read_opt_int(record, "activations_bytes", where, path),
            inference_time_ms=read_opt_float(record, "inference_time_ms", where, path),
            cycles=read_opt_int(record, "cycles", where, path),
            macs=read_opt_int(record, "macs", where, path),
            pools=tuple(_pool_from_dict(p, f"pools[{i}]", path) for i, p in enumerate(pools)),
            unavailable=tuple(
                (_choice(f, _FIGURES, "unavailable figure", where, path), r)
                for f, r in reasons.items()
            ),
        )


def parse_address(value: Any, where: str, path: str | Path | None) -> int:
    """A pool address: a JSON integer, a ``0x`` hex string or a decimal string.

    The reference calls the field a hex string; public ``network_c_info.json`` files write
    it as decimal digits ("875888640" is 0x34350000, the N6's AXISRAM6), so a string of
    digits alone is read as decimal and only a ``0x`` prefix means hex.
    """
    expected = "an address: integer, '0x' hex string or decimal string"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        text = value.strip()
        digits, base = (text[2:], 16) if text[:2].lower() == "0x" else (text, 10)
        allowed = "0123456789abcdefABCDEF" if base == 16 else "0123456789"
        if digits and all(c in allowed for c in digits):
            return int(digits, base)
    raise InputError(f"address must be {expected}, got {value!r}", path=path, record=where)


def _pool_from_dict(data: Any, where: str, path: str | Path | None) -> PoolUsage:
    """A pool as ``PoolUsage.to_dict`` wrote it."""
    record = read_object(data, where, path)
    address = record.get("address")
    return PoolUsage(
        name=read_string(record, "name", where, path),
        address=None if address is None else parse_address(address, where, path),
        size_bytes=read_int(record, "size_bytes", where, path, allow_negative=True),
        used_size_bytes=read_opt_int(record, "used_size_bytes", where, path),
        placement=_choice(record.get("placement"), _PLACEMENTS, "placement", where, path),
        reason=read_string(record, "reason", where, path),
    )


def _choice(value: Any, table: dict[str, _Name], field: str, where: str, path: Any) -> _Name:
    """``value`` as a member of a closed set of names, or an InputError listing them."""
    if not isinstance(value, str) or value not in table:
        raise InputError(
            f"{field} must be one of {sorted(table)}, got {value!r}", path=path, record=where
        )
    return table[value]


def _kib(size: int | None) -> float | None:
    return None if size is None else size / 1024


def read_object(value: Any, where: str, path: str | Path | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(
            f"expected a JSON object, got {type(value).__name__}", path=path, record=where
        )
    return value


def read_field(record: dict[str, Any], key: str, where: str, path: Any, expected: str) -> Any:
    if key not in record:
        raise InputError(f"missing field {key!r} (expected {expected})", path=path, record=where)
    return record[key]


def read_int(
    record: dict[str, Any], key: str, where: str, path: Any, *, allow_negative: bool = False
) -> int:
    value = read_field(record, key, where, path, _INT)
    # Byte counts sometimes arrive as 245760.0; a fraction or a bool is not a count.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{key} must be {_INT}, got {value!r}", path=path, record=where)
    if value < 0 and not allow_negative:
        raise InputError(f"{key} must be >= 0, got {value}", path=path, record=where)
    return value


def read_opt_int(
    record: dict[str, Any], key: str, where: str, path: Any, *, allow_negative: bool = False
) -> int | None:
    if record.get(key) is None:
        return None
    return read_int(record, key, where, path, allow_negative=allow_negative)


def read_opt_float(record: dict[str, Any], key: str, where: str, path: Any) -> float | None:
    value = record.get(key)
    return None if value is None else as_number(value, key, where, path)


def read_string(record: dict[str, Any], key: str, where: str, path: Any) -> str:
    value = read_field(record, key, where, path, "a string")
    if not isinstance(value, str):
        raise InputError(f"{key} must be a string, got {value!r}", path=path, record=where)
    return value


def read_opt_string(record: dict[str, Any], key: str, where: str, path: Any) -> str | None:
    return None if record.get(key) is None else read_string(record, key, where, path)
