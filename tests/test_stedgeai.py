"""STEdgeAI report ingestion: the zoo's pool rules, missing figures, bad files and the CLI.

The reports are fixtures built to the documented schema (tests/fixtures/stedgeai/README.md);
expected figures are derived in the comments from the values make_fixtures.py writes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from evalkit import cli
from evalkit.bench.stedgeai import (
    OnBoardFigures,
    detect_kind,
    import_report,
    parse_address,
)
from evalkit.errors import InputError

from .conftest import FIXTURES

HERE = FIXTURES / "stedgeai"
FULL = HERE / "full_c_info.json"


def _load_maker() -> Any:
    spec = importlib.util.spec_from_file_location("make_fixtures", HERE / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKER = _load_maker()


def _write(tmp_path: Path, data: Any, name: str = "report.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _full() -> dict[str, Any]:
    data: dict[str, Any] = MAKER.full_c_info()
    return data


def _pool_named(data: dict[str, Any], name: str) -> dict[str, Any]:
    pool: dict[str, Any] = next(p for p in data["memory_pools"] if p["name"] == name)
    return pool


def test_fixture_files_match_their_script() -> None:
    for name in [*MAKER.FIXTURES, "malformed.json"]:
        assert (HERE / name).read_text(encoding="utf-8") == MAKER.render(name), name


def test_full_c_info_figures() -> None:
    figures = import_report(FULL)
    assert figures.kind == "network_c_info"
    assert figures.schema_version == "2.0"
    assert figures.tool_version == "3.0.0"
    # Internal pools: npuRAM3..6 (4 * 458752) + cpuRAM2 543744 + edge_below 256 + flexMEM 0
    # = 2379008 bytes; / 1024 = 2323.25 KiB (the card's COCO internal RAM).
    assert figures.internal_ram_bytes == 2379008
    assert figures.internal_ram_kib == 2323.25
    # External pools: hyperRAM 2158976 (address 0x90000000) + edge_at 512 (0x60000000,
    # the limit itself) + EXTERNAL_scratch 512 (by name) = 2160000 bytes = 2109.375 KiB.
    assert figures.external_ram_bytes == 2160000
    assert figures.external_ram_kib == 2109.375
    # memory_footprint.weights 20514499 / 1024 = 20033.6904296875 KiB (card: 20033.69).
    assert figures.weights_flash_bytes == 20514499
    assert figures.weights_flash_kib == 20514499 / 1024
    assert figures.activations_bytes == 4539008
    assert figures.inference_time_ms == 158.49
    assert figures.inferences_per_second == 1000 / 158.49
    assert figures.cycles == 126792000
    # graphs[0].nodes macc: 1000000 + 2500000 + 0.
    assert figures.macs == 3500000
    assert figures.unavailable == ()
    assert len(figures.source_sha256) == 64


def test_every_pool_rule() -> None:
    pools = {p.name: p for p in import_report(FULL).pools}
    placement = {name: p.placement for name, p in pools.items()}
    assert placement == {
        "npuRAM3": "internal",
        "npuRAM4": "internal",
        "npuRAM5": "internal",
        "npuRAM6": "internal",
        "cpuRAM2": "internal",
        "edge_below": "internal",
        "flexMEM": "internal",
        "hyperRAM": "external",
        "edge_at": "external",
        "EXTERNAL_scratch": "external",
        "octoFlash": "excluded",
        "npuRAM_all": "excluded",
        "AXISRAM_group": "excluded",
        "unsized": "excluded",
    }
    assert "ACC_READ" in pools["octoFlash"].reason
    assert "virtual" in pools["npuRAM_all"].reason
    assert "subpools" in pools["AXISRAM_group"].reason
    assert "size_bytes -1" in pools["unsized"].reason
    assert pools["EXTERNAL_scratch"].reason == "name contains EXTERNAL"
    # The three spellings of an address read to the same kind of number.
    assert pools["npuRAM3"].address == 0x34200000
    assert pools["npuRAM5"].address == 0x342E0000
    assert pools["npuRAM6"].address == 0x34350000


@pytest.mark.parametrize(
    ("name", "change", "delta_internal", "delta_external"),
    [
        # Each excluded pool, once let through, moves exactly its used_size_bytes.
        ("octoFlash", {"rights": "ACC_WRITE"}, 0, 20514499),
        ("npuRAM_all", {"virtual": False}, 0, 1000000),
        ("AXISRAM_group", {"subpools": []}, 700000, 0),
        ("unsized", {"size_bytes": 0}, 4096, 0),
        # A name without EXTERNAL at an internal address is internal.
        ("EXTERNAL_scratch", {"name": "scratch"}, 512, -512),
    ],
)
def test_each_rule_is_what_moves_the_total(
    tmp_path: Path, name: str, change: dict[str, Any], delta_internal: int, delta_external: int
) -> None:
    data = _full()
    _pool_named(data, name).update(change)
    figures = import_report(_write(tmp_path, data))
    assert figures.internal_ram_bytes == 2379008 + delta_internal
    assert figures.external_ram_bytes == 2160000 + delta_external


def test_pool_without_address_goes_by_name(tmp_path: Path) -> None:
    data = _full()
    del _pool_named(data, "hyperRAM")["address"]
    del _pool_named(data, "EXTERNAL_scratch")["address"]
    pools = {p.name: p for p in import_report(_write(tmp_path, data)).pools}
    # hyperRAM was external only by its address; EXTERNAL_scratch stays external by name.
    assert (pools["hyperRAM"].placement, pools["hyperRAM"].reason) == ("internal", "no address")
    assert pools["EXTERNAL_scratch"].placement == "external"


def test_report_without_on_target_timing() -> None:
    figures = import_report(HERE / "no_timing_c_info.json")
    assert figures.inference_time_ms is None
    assert figures.inferences_per_second is None
    assert figures.cycles is None
    assert "on-target validation" in (figures.reason_unavailable("inference_time") or "")
    assert {f for f, _ in figures.unavailable} == {"inference_time", "cycles"}
    # Everything else is still read.
    assert figures.internal_ram_kib == 2323.25
    assert figures.macs == 3500000


def test_missing_optional_fields_are_unavailable_not_invented() -> None:
    figures = import_report(HERE / "minimal_c_info.json")
    assert figures.weights_flash_bytes == 2048
    assert figures.activations_bytes == 1024
    for value in (
        figures.tool_version,
        figures.internal_ram_bytes,
        figures.external_ram_bytes,
        figures.inference_time_ms,
        figures.cycles,
        figures.macs,
    ):
        assert value is None
    assert {f for f, _ in figures.unavailable} == {
        "tool_version",
        "internal_ram",
        "external_ram",
        "inference_time",
        "cycles",
        "macs",
    }


@pytest.mark.parametrize(
    ("edit", "figure"),
    [
        (lambda d: d["environment"].update(tools=[]), "tool_version"),
        (lambda d: d["environment"]["tools"][0].pop("version"), "tool_version"),
        (lambda d: d["graphs"][0].update(nodes=[]), "macs"),
        # The zoo's readers default an absent time to -1: not a measurement.
        (lambda d: d["graphs"][0]["exec_time"].update(duration_ms=-1), "inference_time"),
        (lambda d: d["graphs"][0]["exec_time"].pop("cycles"), "cycles"),
    ],
)
def test_partial_optional_fields(tmp_path: Path, edit: Any, figure: str) -> None:
    data = _full()
    edit(data)
    figures = import_report(_write(tmp_path, data))
    assert [f for f, _ in figures.unavailable] == [figure]


@pytest.mark.parametrize(
    ("name", "activations"),
    # ram_size is a list up to X-CUBE-AI 8.1 (its first entry is used), an integer after.
    [("network_report_v8.json", 245760), ("network_report_v9.json", 245760)],
)
def test_old_network_report(name: str, activations: int) -> None:
    figures = import_report(HERE / name)
    assert figures.kind == "network_report"
    assert figures.activations_bytes == activations
    assert figures.activations_kib == 240.0
    assert figures.weights_flash_bytes == 3280545
    assert figures.macs == 3500000
    assert figures.schema_version == "1.1"
    assert figures.internal_ram_bytes is None and figures.external_ram_bytes is None
    assert figures.inference_time_ms is None and figures.tool_version is None
    assert {f for f, _ in figures.unavailable} == {
        "internal_ram",
        "external_ram",
        "inference_time",
        "cycles",
        "tool_version",
    }


def test_kind_is_detected_from_content_not_name(tmp_path: Path) -> None:
    # A c_info saved under the other report's name is still a c_info, and vice versa.
    as_report = _write(tmp_path, _full(), "network_report.json")
    assert import_report(as_report).kind == "network_c_info"
    as_c_info = _write(tmp_path, MAKER.report_v9(), "network_c_info.json")
    assert import_report(as_c_info).kind == "network_report"
    assert detect_kind([1, 2]) is None


def test_foreign_json(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        import_report(HERE / "foreign.json")
    message = str(err.value)
    assert str(HERE / "foreign.json") in message
    assert "'json_schema_version'" in message and "'rom_size'" in message
    assert "top-level keys ['annotations', 'categories', 'images']" in message
    with pytest.raises(InputError, match="found a JSON list"):
        import_report(_write(tmp_path, [{"rom_size": 1}]))


def test_malformed_json() -> None:
    with pytest.raises(InputError, match="malformed JSON") as err:
        import_report(HERE / "malformed.json")
    assert err.value.path == str(HERE / "malformed.json")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        import_report(tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("edit", "record", "words"),
    [
        (lambda d: d["memory_footprint"].pop("weights"), "memory_footprint", "'weights'"),
        (lambda d: d.update(memory_footprint=[1]), "memory_footprint", "JSON object"),
        (lambda d: d.pop("graphs"), "top level", "missing field 'graphs'"),
        (lambda d: d.update(graphs=[]), "top level", "non-empty list"),
        (lambda d: d.update(json_schema_version="1.0"), "top level", "2.x"),
        (lambda d: d.pop("json_schema_version"), "top level", "'json_schema_version'"),
        (lambda d: d["memory_footprint"].update(weights="big"), "memory_footprint", "integer"),
        (lambda d: d["memory_footprint"].update(activations=-5), "memory_footprint", ">= 0"),
        (lambda d: d["graphs"][0]["nodes"][1].pop("macc"), "graphs[0].nodes[1]", "'macc'"),
        (lambda d: d["graphs"][0]["exec_time"].update(duration_ms="x"), "exec_time", "number"),
        (lambda d: d["memory_pools"][0].pop("used_size_bytes"), "memory_pools[0]", "used_size"),
        (lambda d: d["memory_pools"][2].update(address="0xZZ"), "memory_pools[2]", "address"),
        (lambda d: d["memory_pools"][2].update(address="-4"), "memory_pools[2]", "address"),
        (lambda d: d["memory_pools"][3].pop("name"), "memory_pools[3]", "'name'"),
        (lambda d: d["memory_pools"][3].update(virtual="no"), "memory_pools[3]", "virtual"),
        (lambda d: d.update(memory_pools={}), "top level", "memory_pools must be a list"),
        (lambda d: d["environment"].update(tools="3.0.0"), "environment", "tools"),
    ],
)
def test_invalid_fields_are_named(tmp_path: Path, edit: Any, record: str, words: str) -> None:
    data = _full()
    edit(data)
    path = _write(tmp_path, data)
    with pytest.raises(InputError) as err:
        import_report(path)
    assert err.value.path == str(path)
    assert record in (err.value.record or "")
    assert words in err.value.problem


def test_invalid_report_fields_are_named(tmp_path: Path) -> None:
    data = MAKER.report_v9()
    del data["rom_n_macc"]
    with pytest.raises(InputError, match="missing field 'rom_n_macc'"):
        import_report(_write(tmp_path, data))
    with pytest.raises(InputError, match="empty list"):
        import_report(_write(tmp_path, {**MAKER.report_v8(), "ram_size": []}))


@pytest.mark.parametrize(
    ("text", "value"),
    [("0x60000000", 0x60000000), ("0X5fffffff", 0x5FFFFFFF), ("875888640", 0x34350000)],
)
def test_parse_address(text: str, value: int) -> None:
    assert parse_address(text, "pool", "f.json") == value
    assert parse_address(value, "pool", "f.json") == value


@pytest.mark.parametrize("bad", ["", "0x", "34E", True, -1, 1.5, None])
def test_parse_address_rejects(bad: Any) -> None:
    with pytest.raises(InputError, match="address must be"):
        parse_address(bad, "pool", "f.json")


@pytest.mark.parametrize(
    "name", ["full_c_info.json", "no_timing_c_info.json", "minimal_c_info.json",
             "network_report_v8.json"],
)  # fmt: skip
def test_record_round_trip(name: str) -> None:
    figures = import_report(HERE / name)
    through_json = json.loads(json.dumps(figures.to_dict()))
    assert OnBoardFigures.from_dict(through_json) == figures


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d.update(schema="other/1"), "schema must be one of"),
        (lambda d: d.pop("macs"), "missing field 'macs'"),
        (lambda d: d.update(kind="tflite"), "kind must be one of"),
        (lambda d: d.update(unavailable={"speed": "x"}), "unavailable figure"),
        (lambda d: d["pools"][0].update(placement="nowhere"), "placement"),
    ],
)
def test_record_from_bad_dict(edit: Any, words: str) -> None:
    data = import_report(FULL).to_dict()
    edit(data)
    with pytest.raises(InputError, match=words):
        OnBoardFigures.from_dict(data, path="run.json")


@pytest.fixture
def main_with_command() -> Any:
    """``evalkit.cli.main``."""
    return cli.main


def test_cli_text(main_with_command: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_with_command(["stedgeai", "import", str(FULL)]) == 0
    out = capsys.readouterr().out
    # The card's COCO row, to the card's two decimals.
    for text in ("2323.25 KiB", "2109.38 KiB", "20033.69 KiB", "158.49 ms", "6.31", "3.0.0"):
        assert text in out
    assert "network_c_info.json" in out


def test_cli_text_says_why_missing(
    main_with_command: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main_with_command(["stedgeai", "import", str(HERE / "no_timing_c_info.json")]) == 0
    out = capsys.readouterr().out
    assert "unavailable: no graphs[0].exec_time" in out


def test_cli_json(main_with_command: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_with_command(["stedgeai", "import", "--json", str(FULL)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == import_report(FULL).to_dict()
    assert out["derived"]["internal_ram_kib"] == 2323.25


@pytest.mark.parametrize("name", ["foreign.json", "malformed.json", "absent.json"])
def test_cli_bad_input_exit_2(
    main_with_command: Any, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert main_with_command(["stedgeai", "import", str(HERE / name)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "evalkit stedgeai: error:" in captured.err and name in captured.err


def test_cli_needs_an_action(main_with_command: Any) -> None:
    with pytest.raises(SystemExit) as err:
        main_with_command(["stedgeai"])
    assert err.value.code == 2
