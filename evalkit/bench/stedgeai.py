"""On-board figures read from STEdgeAI reports (``network_c_info.json``, ``network_report.json``);
the figures' type and record are in :mod:`evalkit.bench.onboard`.

The figures are derived the way the STM32 model zoo derives its model-card columns (see
docs/reference-pipeline.md section 9). A figure the report does not hold (no on-target
validation, no tool list, no nodes) is ``None`` and listed in ``unavailable`` with the reason;
nothing is estimated or filled in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalkit.bench.onboard import (
    C_INFO_KEYS,
    C_INFO_MAJOR,
    EXTERNAL_ADDRESS_MIN,
    REPORT_KEYS,
    SCHEMA,
    Figure,
    OnBoardFigures,
    Placement,
    PoolUsage,
    ReportKind,
    parse_address,
    read_field,
    read_int,
    read_object,
    read_opt_float,
    read_opt_int,
    read_opt_string,
    read_string,
)
from evalkit.errors import InputError
from evalkit.hashing import file_sha256
from evalkit.jsonio import read_json

__all__ = [
    "EXTERNAL_ADDRESS_MIN",
    "SCHEMA",
    "Figure",
    "OnBoardFigures",
    "Placement",
    "PoolUsage",
    "ReportKind",
    "detect_kind",
    "import_report",
    "parse_address",
]


def import_report(path: str | Path) -> OnBoardFigures:
    """Read a ``network_c_info.json`` or ``network_report.json`` (told apart by content)."""
    data = read_json(path)
    digest = file_sha256(path)
    kind = detect_kind(data)
    if kind is None:
        found = (
            f"top-level keys {sorted(data)[:8]}"
            if isinstance(data, dict)
            else f"a JSON {type(data).__name__}"
        )
        raise InputError(
            f"not a STEdgeAI report: missing field {C_INFO_KEYS[0]!r} (network_c_info.json) "
            f"or {REPORT_KEYS[0]!r} (network_report.json); found {found}",
            path=path,
        )
    if kind == "network_c_info":
        return _from_c_info(data, str(path), digest)
    return _from_report(data, str(path), digest)


def detect_kind(data: Any) -> ReportKind | None:
    """Which report a parsed JSON document is, from its top-level keys; None if neither."""
    if not isinstance(data, dict):
        return None
    if any(k in data for k in C_INFO_KEYS):
        return "network_c_info"
    if any(k in data for k in REPORT_KEYS):
        return "network_report"
    return None


def _from_c_info(data: dict[str, Any], path: str, digest: str) -> OnBoardFigures:
    """Figures from ``network_c_info.json`` (json_schema_version 2.x)."""
    missing: list[tuple[Figure, str]] = []
    top = "top level"
    version = read_field(data, "json_schema_version", top, path, "a string such as '2.0'")
    if not isinstance(version, str) or version.split(".")[0] != C_INFO_MAJOR:
        raise InputError(
            f"json_schema_version must be a {C_INFO_MAJOR}.x string, got {version!r}",
            path=path,
            record=top,
        )
    raw_footprint = read_field(data, "memory_footprint", top, path, "an object")
    footprint = read_object(raw_footprint, "memory_footprint", path)
    weights = read_int(footprint, "weights", "memory_footprint", path)
    activations = read_int(footprint, "activations", "memory_footprint", path)
    graphs = read_field(data, "graphs", top, path, "a non-empty list")
    if not isinstance(graphs, list) or not graphs:
        raise InputError(f"graphs must be a non-empty list, got {graphs!r}", path=path, record=top)
    graph = read_object(graphs[0], "graphs[0]", path)

    pools: tuple[PoolUsage, ...] = ()
    internal: int | None = None
    external: int | None = None
    if "memory_pools" in data:
        raw = data["memory_pools"]
        if not isinstance(raw, list):
            raise InputError(f"memory_pools must be a list, got {raw!r}", path=path, record=top)
        pools = tuple(_classify_pool(p, f"memory_pools[{i}]", path) for i, p in enumerate(raw))
        internal = sum(p.used_size_bytes or 0 for p in pools if p.placement == "internal")
        external = sum(p.used_size_bytes or 0 for p in pools if p.placement == "external")
    else:
        reason = "no memory_pools in the report"
        missing += [("internal_ram", reason), ("external_ram", reason)]

    duration, cycles = _exec_time(graph, path, missing)
    return OnBoardFigures(
        kind="network_c_info",
        source_path=path,
        source_sha256=digest,
        schema_version=version,
        tool_version=_tool_version(data, path, missing),
        internal_ram_bytes=internal,
        external_ram_bytes=external,
        weights_flash_bytes=weights,
        activations_bytes=activations,
        inference_time_ms=duration,
        cycles=cycles,
        macs=_macs(graph, path, missing),
        pools=pools,
        unavailable=tuple(missing),
    )


def _classify_pool(pool: Any, where: str, path: str | Path) -> PoolUsage:
    """Apply the zoo's keep/exclude and internal/external rule to one memory pool."""
    record = read_object(pool, where, path)
    name = read_string(record, "name", where, path)
    size = read_int(record, "size_bytes", where, path, allow_negative=True)
    address = parse_address(record["address"], where, path) if "address" in record else None
    virtual = record.get("virtual", False)
    if not isinstance(virtual, bool):
        raise InputError(f"virtual must be true or false, got {virtual!r}", path=path, record=where)
    subpools = record.get("subpools", [])
    if not isinstance(subpools, list):
        raise InputError(f"subpools must be a list, got {subpools!r}", path=path, record=where)
    rights = read_opt_string(record, "rights", where, path)

    # Exclusions first, in the reference's order (section 9). ACC_READ pools are read-only
    # memory holding the weights, which the card reports as weights flash, not as RAM.
    excluded = None
    if size < 0:
        excluded = f"size_bytes {size} < 0"
    elif virtual:
        excluded = "virtual pool"
    elif subpools:
        excluded = f"has {len(subpools)} subpools"
    elif rights == "ACC_READ":
        excluded = "rights ACC_READ (read-only: weights flash)"
    if excluded is not None:
        used = read_opt_int(record, "used_size_bytes", where, path, allow_negative=True)
        return PoolUsage(name, address, size, used, "excluded", excluded)

    used = read_int(record, "used_size_bytes", where, path)
    if "EXTERNAL" in name:
        return PoolUsage(name, address, size, used, "external", "name contains EXTERNAL")
    if address is not None and address >= EXTERNAL_ADDRESS_MIN:
        reason = f"address 0x{address:08X} >= 0x{EXTERNAL_ADDRESS_MIN:08X}"
        return PoolUsage(name, address, size, used, "external", reason)
    reason = "no address" if address is None else f"address 0x{address:08X} < 0x60000000"
    return PoolUsage(name, address, size, used, "internal", reason)


def _exec_time(
    graph: dict[str, Any], path: str | Path, missing: list[tuple[Figure, str]]
) -> tuple[float | None, int | None]:
    """``graphs[0].exec_time`` duration and cycles, present only after on-target validation."""
    where = "graphs[0].exec_time"
    if "exec_time" not in graph:
        reason = "no graphs[0].exec_time (the report has no on-target validation)"
        missing += [("inference_time", reason), ("cycles", reason)]
        return None, None
    exec_time = read_object(graph["exec_time"], where, path)
    duration = read_opt_float(exec_time, "duration_ms", where, path)
    cycles = read_opt_int(exec_time, "cycles", where, path, allow_negative=True)
    # The zoo's readers default both to -1; zero or below is "not measured", never a time.
    if duration is None or duration <= 0:
        missing.append(("inference_time", f"{where}.duration_ms is {duration} (not measured)"))
        duration = None
    if cycles is None or cycles < 0:
        missing.append(("cycles", f"{where}.cycles is {cycles} (not measured)"))
        cycles = None
    return duration, cycles


def _tool_version(
    data: dict[str, Any], path: str | Path, missing: list[tuple[Figure, str]]
) -> str | None:
    """``environment.tools[0].version``, or None with the reason."""
    environment = data.get("environment")
    if environment is None:
        missing.append(("tool_version", "no environment in the report"))
        return None
    tools = read_object(environment, "environment", path).get("tools")
    if tools is None or tools == []:
        missing.append(("tool_version", "no environment.tools in the report"))
        return None
    if not isinstance(tools, list):
        raise InputError(f"tools must be a list, got {tools!r}", path=path, record="environment")
    first = read_object(tools[0], "environment.tools[0]", path)
    version = read_opt_string(first, "version", "environment.tools[0]", path)
    if version is None:
        missing.append(("tool_version", "no environment.tools[0].version"))
    return version


def _macs(graph: dict[str, Any], path: str | Path, missing: list[tuple[Figure, str]]) -> int | None:
    """Sum of ``graphs[0].nodes[].macc``; None when the graph lists no nodes."""
    nodes = graph.get("nodes")
    if nodes is None or nodes == []:
        missing.append(("macs", "no graphs[0].nodes in the report"))
        return None
    if not isinstance(nodes, list):
        raise InputError(f"nodes must be a list, got {nodes!r}", path=path, record="graphs[0]")
    return sum(
        read_int(
            read_object(n, f"graphs[0].nodes[{i}]", path), "macc", f"graphs[0].nodes[{i}]", path
        )
        for i, n in enumerate(nodes)
    )


def _from_report(data: dict[str, Any], path: str, digest: str) -> OnBoardFigures:
    """Figures from the older ``network_report.json``: activations, weights, MACs."""
    top = "top level"
    ram = read_field(data, "ram_size", top, path, "an integer or a list of integers")
    # X-CUBE-AI <= 8.1 writes ram_size as a list whose first entry is the activations size
    # (the zoo reads [0]); 9.0 and later write a plain integer.
    if isinstance(ram, list):
        if not ram:
            raise InputError("ram_size is an empty list", path=path, record=top)
        activations = read_int({"ram_size[0]": ram[0]}, "ram_size[0]", top, path)
    else:
        activations = read_int(data, "ram_size", top, path)
    missing: list[tuple[Figure, str]] = [
        ("internal_ram", "network_report.json has no memory pools"),
        ("external_ram", "network_report.json has no memory pools"),
        ("inference_time", "network_report.json has no on-target timing"),
        ("cycles", "network_report.json has no on-target timing"),
        ("tool_version", "not read from network_report.json (only ram_size, rom_size, rom_n_macc)"),
    ]
    report_version = data.get("report_version")
    return OnBoardFigures(
        kind="network_report",
        source_path=path,
        source_sha256=digest,
        schema_version=None if report_version is None else str(report_version),
        tool_version=None,
        internal_ram_bytes=None,
        external_ram_bytes=None,
        weights_flash_bytes=read_int(data, "rom_size", top, path),
        activations_bytes=activations,
        inference_time_ms=None,
        cycles=None,
        macs=read_int(data, "rom_n_macc", top, path),
        unavailable=tuple(missing),
    )
