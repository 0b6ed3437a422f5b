"""The host's int8 arithmetic: recorded with every run, and noted by check and compare when
two runs with int8 variants were computed with different kinds (the same int8 model file
scored 0.82 AP50 points apart on coco128 between an AVX2-only and a VNNI CPU)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from evalkit.cli import main
from evalkit.compare import compare
from evalkit.gate import check
from evalkit.provenance import environment, int8_dot_product
from evalkit.record import validate

from .test_gate import make_result, write


@pytest.mark.parametrize(
    ("flags", "machine", "kind"),
    [
        ({"sse2", "avx2", "avx512f", "avx512_vnni"}, "x86_64", "vnni"),
        ({"avx2", "avx_vnni"}, "x86_64", "vnni"),  # Alder Lake's 256-bit VNNI
        ({"avx2", "avx512f", "avx512bw"}, "x86_64", "avx2-saturating"),  # Skylake-X
        ({"avx2", "fma"}, "AMD64", "avx2-saturating"),
        ({"sse4_2"}, "x86_64", "x86"),
        ({"asimddp"}, "aarch64", "aarch64"),
    ],
)
def test_int8_dot_product_kind_from_cpu_flags(flags: set[str], machine: str, kind: str) -> None:
    assert int8_dot_product(flags, machine) == kind


def test_the_environment_records_this_hosts_kind() -> None:
    assert environment()["int8_dot_product"] == int8_dot_product()


def _on(kind: str | None, variants: tuple[str, ...] = ("float", "int8")) -> dict[str, Any]:
    data = copy.deepcopy(make_result(variants=variants))
    data["environment"] = {} if kind is None else {"int8_dot_product": kind}
    return data


def test_check_and_compare_note_other_int8_arithmetic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vnni, avx2 = validate(_on("vnni")), validate(_on("avx2-saturating"))
    report = check(vnni, avx2)
    assert report.passed and report.warning is not None
    assert "different int8 arithmetic (vnni vs avx2-saturating)" in report.warning
    assert "different int8 arithmetic" in report.to_markdown()
    assert "different int8 arithmetic" in (compare(vnni, avx2).warning or "")
    # A record from before the kind was recorded cannot vouch for its int8 figures either.
    assert "(vnni vs not recorded)" in (check(vnni, validate(_on(None))).warning or "")
    # Same kind, or no int8 variant on one side: nothing to say.
    assert check(vnni, validate(_on("vnni"))).warning is None
    floats = validate(_on("avx2-saturating", variants=("float",)))
    assert check(validate(_on("vnni", variants=("float",))), floats).warning is None
    # On the command line the note comes with the verdict, and does not change it.
    a, b = write(tmp_path, "a", _on("vnni")), write(tmp_path, "b", _on("avx2-saturating"))
    assert main(["check", str(a), "--baseline", str(b), "--no-latency"]) == 0
    assert "NOTE: int8 figures come from different int8 arithmetic" in capsys.readouterr().out


def test_compare_changed_only_and_sorted_by_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = make_result(), copy.deepcopy(make_result(latency_ms=11.0))
    b["variants"]["int8"]["protocols"]["st"]["AP50"] = 0.46  # -4 points
    b["variants"]["float"]["protocols"]["coco"]["AP50"] = 0.49  # -1 point
    b["environment"] = a["environment"] = {"int8_dot_product": "vnni"}
    pa, pb = write(tmp_path, "a", a), write(tmp_path, "b", b)
    full = compare(validate(a), validate(b))
    changed = full.changed()
    assert {(r.variant, r.protocol, r.metric) for r in changed.rows} == {
        ("int8", "st", "AP50"), ("float", "coco", "AP50"),
        ("float", None, "latency_p50_ms"), ("int8", None, "latency_p50_ms"),
    }  # fmt: skip
    ordered = changed.by_change().rows
    assert [(r.variant, r.metric) for r in ordered[:2]] == [("int8", "AP50"), ("float", "AP50")]
    assert main(["compare", str(pa), str(pb), "--changed-only", "--sort", "change"]) == 0
    lines = [x.split() for x in capsys.readouterr().out.splitlines()]
    table = [x for x in lines if x and x[0] in ("int8", "float")]
    assert [x[:3] for x in table] == [
        ["int8", "st", "AP50"], ["float", "coco", "AP50"],
        ["float", "-", "latency_p50_ms"], ["int8", "-", "latency_p50_ms"],
    ]  # fmt: skip
