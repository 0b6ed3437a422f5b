"""``result.json`` as typed data (evalkit.record): what evalkit writes reads back to the same
JSON, key order included; any record reads to a fixed point; malformed fields are named."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalkit.errors import InputError
from evalkit.record import (
    KIND,
    Latency,
    ProtocolResult,
    RunRecord,
    Timings,
    VariantRecord,
    load_result,
    validate,
    write_result,
)

from .conftest import REPO
from .test_gate import make_result
from .test_reports import make_record

BASELINES = sorted((REPO / "benchmarks" / "baselines").glob("*/result.json"))


def _ordered(data: Any) -> str:
    """JSON text that differs when values or the order of keys differ."""
    return json.dumps(data, indent=1)


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: p.parent.name)
def test_records_evalkit_wrote_read_back_to_the_same_json(path: Path) -> None:
    data = json.loads(path.read_text())
    record = load_result(path)
    assert _ordered(record.to_dict()) == _ordered(data)
    # Typed all the way down where readers look.
    for variant in record.variants.values():
        assert isinstance(variant, VariantRecord) and isinstance(variant.timings, Timings)
        assert all(isinstance(p, ProtocolResult) for p in variant.protocols.values())
        assert variant.latency is None or isinstance(variant.latency, Latency)
    name, variant = next(iter(data["variants"].items()))
    assert record.ap50(name, "st") == variant["protocols"]["st"]["AP50"]
    assert record.variants[name].protocols["coco"].stats == tuple(
        variant["protocols"]["coco"]["stats"]
    )


def test_write_then_load_is_the_same_record(tmp_path: Path) -> None:
    record = load_result(BASELINES[0])
    written = write_result(tmp_path / "result.json", record)
    assert written == record == load_result(tmp_path)
    assert written.path == tmp_path / "result.json"
    assert not (tmp_path / "result.json.tmp").exists()


@pytest.mark.parametrize("make", [make_result, make_record], ids=["gate fixture", "report fixture"])
def test_a_record_with_parts_missing_reads_to_a_fixed_point(make: Any) -> None:
    """Another writer's record (optional parts absent) gains nulls once, then round-trips."""
    record = validate(make())
    again = validate(record.to_dict())
    assert again == record
    assert _ordered(again.to_dict()) == _ordered(record.to_dict())


def test_fields_a_newer_writer_added_are_kept() -> None:
    data = make_result()
    data["extra_top"] = {"a": 1}
    data["variants"]["float"]["board_run"] = [1, 2]
    data["variants"]["float"]["protocols"]["st"]["AP75"] = 0.25
    data["variants"]["float"]["timings"]["gpu_s"] = 0.5
    out = validate(data).to_dict()
    assert out["extra_top"] == {"a": 1}
    assert out["variants"]["float"]["board_run"] == [1, 2]
    assert out["variants"]["float"]["protocols"]["st"]["AP75"] == 0.25
    assert out["variants"]["float"]["timings"]["gpu_s"] == 0.5


def _broken(edit: Any) -> dict[str, Any]:
    data = copy.deepcopy(make_record())
    edit(data)
    return data


def _int8(data: dict[str, Any]) -> dict[str, Any]:
    variant: dict[str, Any] = data["variants"]["int8"]
    return variant


@pytest.mark.parametrize(
    ("edit", "where", "message"),
    [
        (lambda d: _int8(d)["protocols"]["st"].update(AP50="0.5"), "int8.protocols.st.AP50",
         "AP50 must be a fraction in [0, 1], got '0.5'"),
        (lambda d: _int8(d)["protocols"]["st"]["per_class"].update(car="0.4"),
         "int8.protocols.st.per_class.car", "expected a finite number, got '0.4'"),
        (lambda d: _int8(d)["protocols"]["st"]["per_class"].update(car=float("nan")),
         "int8.protocols.st.per_class.car", "expected a finite number, got nan"),
        (lambda d: _int8(d)["protocols"]["coco"].update(stats=[0.1] * 11),
         "int8.protocols.coco.stats", "expected 12 numbers"),
        (lambda d: _int8(d)["protocols"]["coco"].update(tp=True),
         "int8.protocols.coco.tp", "expected a finite number, got True"),
        (lambda d: _int8(d)["protocols"]["st"].update(classes=["car"]),
         "int8.protocols.st.classes[0]", "expected an object"),
        (lambda d: _int8(d)["latency"]["summary"].update(p50_ms=0),
         "int8.latency.summary.p50_ms", "expected a positive time, got 0"),
        (lambda d: _int8(d)["latency"].update(raw_ms="1,2"),
         "int8.latency.raw_ms", "expected a list of numbers"),
        (lambda d: _int8(d)["model"].update(bytes="12"),
         "int8.model.bytes", "expected a finite number, got '12'"),
        (lambda d: _int8(d)["timings"].update(wall_s=[1]),
         "int8.timings.wall_s", "expected a finite number"),
        (lambda d: _int8(d).update(detections=None), "int8.detections",
         "expected the name of the detections file"),
        (lambda d: d["reference"].update(model=3), "reference.model", "expected a string, got 3"),
        (lambda d: d["reference"].update(comparable="yes"), "reference.comparable",
         "expected true or false"),
        (lambda d: d["dataset"].update(classes="car"), "dataset.classes",
         "expected a list of strings"),
    ],
)  # fmt: skip
def test_a_malformed_field_is_named(edit: Any, where: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        validate(_broken(edit), Path("run/result.json"))
    text = str(info.value)
    assert "run/result.json" in text and where in text and message in text


_FRACTION = st.floats(0, 1, allow_nan=False)
_NAME = st.text("abcxyz_ ", min_size=1, max_size=6)


@st.composite
def _protocols(draw: Any) -> dict[str, Any]:
    classes = draw(st.lists(_NAME, min_size=1, max_size=4, unique=True))
    per_class = {c: draw(_FRACTION) for c in classes}
    out: dict[str, Any] = {"AP50": draw(_FRACTION), "per_class": per_class}
    if draw(st.booleans()):
        out["classes"] = [
            {"name": c, "category_id": i + 1, "AP": draw(st.none() | _FRACTION), "num_gt": i}
            for i, c in enumerate(classes)
        ]
    if draw(st.booleans()):
        out["stats"] = draw(st.lists(st.floats(-1, 1), min_size=12, max_size=12))
    if draw(st.booleans()):
        points = draw(st.integers(0, 5))
        curve = st.lists(_FRACTION, min_size=points, max_size=points)
        out["pr_curves"] = {
            "recall": draw(curve),
            "mean": draw(curve),
            "per_class": {c: draw(curve) for c in classes if draw(st.booleans())},
        }
    for key in ("num_gt", "tp", "fp"):
        if draw(st.booleans()):
            out[key] = draw(st.integers(0, 10**6))
    return out


@st.composite
def _records(draw: Any) -> dict[str, Any]:
    variants = {}
    for name in draw(st.lists(_NAME, min_size=1, max_size=3, unique=True)):
        protocols = draw(st.lists(st.sampled_from(["st", "coco", "voc07", "voc12"]), min_size=1,
                                  max_size=4, unique=True))  # fmt: skip
        variant: dict[str, Any] = {
            "detections": f"detections_{name}.json",
            "protocols": {p: draw(_protocols()) for p in protocols},
        }
        if draw(st.booleans()):
            variant["timings"] = {"wall_s": draw(st.floats(0, 100)), "images": draw(st.integers(0))}
        if draw(st.booleans()):
            variant["latency"] = {"summary": {"p50_ms": draw(st.floats(0.01, 1e3))}, "raw_ms": []}
        if draw(st.booleans()):
            variant["model"] = {"path": f"{name}.onnx", "bytes": draw(st.integers(0))}
        variants[name] = variant
    version = draw(st.sampled_from([1, 2]))
    data: dict[str, Any] = {"schema_version": version, "variants": variants}
    if version == 2:
        data["fingerprint"] = {"dataset": {}, "settings": {}}
    return data


@settings(max_examples=150, deadline=None)
@given(_records())
def test_random_records_read_to_a_fixed_point(data: dict[str, Any]) -> None:
    record = RunRecord.from_dict(json.loads(json.dumps(data)))
    written = record.to_dict()
    _assert_kept(data, written)  # absent parts may come back as null, nothing else changes
    assert RunRecord.from_dict(json.loads(json.dumps(written))) == record


def _empty(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_empty(v) for v in value.values())
    return value is None or value == "" or value == []


def _assert_kept(given: Any, got: Any, where: str = "") -> None:
    if isinstance(given, dict):
        assert isinstance(got, dict), where
        for key, value in given.items():
            assert key in got, f"{where}.{key}"
            _assert_kept(value, got[key], f"{where}.{key}")
        added = {k: got[k] for k in got.keys() - given.keys()}
        assert all(_empty(v) or (k, v) == ("kind", KIND) for k, v in added.items()), where
    elif isinstance(given, list):
        assert isinstance(got, list) and len(got) == len(given), where
        for i, (a, b) in enumerate(zip(given, got, strict=True)):
            _assert_kept(a, b, f"{where}[{i}]")
    else:
        assert got == given and type(got) is type(given), where
