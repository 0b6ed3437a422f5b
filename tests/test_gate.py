"""``evalkit compare`` and ``evalkit check``: deltas, tolerances, exit codes, CI reports.

Every result.json here is built by ``make_result`` per the contract in
``evalkit/pipeline/result.py``; expected values are derived in each test.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from evalkit import cli
from evalkit.compare import COCO_STATS, compare
from evalkit.errors import InputError
from evalkit.gate import CheckReport, Scoped, Tolerances, check, parse_tolerances
from evalkit.pipeline.result import load_result, validate

CLASSES = ("person", "car")


def _protocol(ap50: float, per_class: dict[str, float], stats: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AP50": ap50,
        "per_class": per_class,
        "classes": [{"name": c, "AP": ap} for c, ap in per_class.items()],
        "num_gt": 100,
        "num_detections": 150,
        "tp": 80,
        "fp": 70,
        "pr_curves": {"recall": [], "mean": [], "per_class": {}},
    }
    if stats:
        # AP = 0.3, AP50 = ap50, then 0.01 steps; APs = -1 (no small objects).
        out["stats"] = [0.3, ap50, 0.25, -1.0, 0.2, 0.35, 0.2, 0.3, 0.35, 0.1, 0.3, 0.4]
    return out


def fingerprint(variants: tuple[str, ...] = ("float", "int8"), **dataset: Any) -> dict[str, Any]:
    """A fingerprint as ``run`` writes it; ``dataset`` fields override the tiny set's."""
    pre = {"size": [300, 300], "mean": [127.5] * 3, "std": [127.5] * 3}
    return {
        "dataset": {
            "format": "coco",
            "split": "val2017",
            "annotation_sha256": "a" * 64,
            "ground_truth_sha256": "b" * 64,
            "image_list_sha256": "c" * 64,
            "num_images": 10,
            "num_annotations": 100,
            "classes": list(CLASSES),
            **dataset,
        },
        "settings": {
            "profile": "evalkit",
            "nms": {"iou_threshold": 0.5, "score_threshold": 0.001, "max_detections": 100},
            "variants": {v: {"preprocessing": pre, "decoder": "ssd"} for v in variants},
        },
    }


def make_result(
    ap50: float = 0.5,
    latency_ms: float | None = 10.0,
    variants: tuple[str, ...] = ("float", "int8"),
) -> dict[str, Any]:
    """A contract-conforming result: each variant has protocols st and coco."""
    data: dict[str, Any] = {
        "schema_version": 2,
        "fingerprint": fingerprint(variants),
        "kind": "evalkit.run",
        "name": "test",
        "created": "2026-01-01T00:00:00Z",
        "config": {},
        "environment": {},
        "reference": None,
        "dataset": {"name": "tiny", "classes": list(CLASSES), "skipped": []},
        "variants": {},
    }
    for name in variants:
        data["variants"][name] = {
            "model": {"path": f"{name}.onnx", "bytes": 1000, "precision": name},
            "detections": f"detections_{name}.json",
            "timings": {"images": 10, "images_per_s": 20.0},
            "latency": None
            if latency_ms is None
            else {"summary": {"p50_ms": latency_ms, "p90_ms": 12.0}},
            "protocols": {
                "st": _protocol(ap50, {"person": 0.6, "car": 0.4}, stats=False),
                "coco": _protocol(ap50, {"person": 0.6, "car": 0.4}, stats=True),
            },
        }
    validate(data)  # the fixtures themselves honour the contract
    return data


def write(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    run_dir = tmp_path / name
    run_dir.mkdir(parents=True, exist_ok=True)  # a later write in the same test replaces it
    path = run_dir / "result.json"
    path.write_text(json.dumps(data))
    return path


def gate(
    result: dict[str, Any], baseline: dict[str, Any], tolerances: Tolerances | None = None
) -> CheckReport:
    return check(validate(result), validate(baseline), tolerances)


def statuses(report: CheckReport, metric: str) -> dict[str, str]:
    return {c.scope: c.status for c in report.checks if c.metric == metric}


# ---------------------------------------------------------------- check, library


def test_identical_runs_pass() -> None:
    report = gate(make_result(), make_result())
    assert report.passed
    assert {c.status for c in report.checks} == {"pass"}
    # 2 variants x 2 protocols x (AP50 + 2 classes) + 2 latency checks
    assert len(report.checks) == 2 * 2 * 3 + 2
    assert all(c.message == "unchanged" for c in report.checks if c.metric != "latency_p50")


def test_ap50_drop_of_six_tenths_of_a_point() -> None:
    # 0.500 -> 0.494 is 0.6 AP points
    result, baseline = make_result(ap50=0.494), make_result(ap50=0.5)
    report = gate(result, baseline)
    assert not report.passed
    assert statuses(report, "ap50") == dict.fromkeys(
        ("float/st", "float/coco", "int8/st", "int8/coco"), "fail"
    )
    failed = next(c for c in report.checks if c.status == "fail")
    assert failed.change == pytest.approx(-0.6)
    assert gate(result, baseline, Tolerances(ap50=Scoped(1.0))).passed


def test_drop_equal_to_tolerance_passes() -> None:
    # 100 * (0.5 - 0.495) is 0.5000000000000004 in floats: still "at most 0.5 points".
    assert gate(make_result(ap50=0.495), make_result(ap50=0.5)).passed


def test_missing_protocol_and_variant_fail() -> None:
    result = make_result(variants=("float",))
    del result["variants"]["float"]["protocols"]["coco"]
    report = gate(result, make_result())
    assert statuses(report, "ap50") == {
        "float/st": "pass",
        "float/coco": "fail",
        "int8/st": "fail",
        "int8/coco": "fail",
    }
    messages = {c.scope: c.message for c in report.checks if c.status == "fail"}
    assert messages["float/coco"].startswith("protocol missing")
    assert messages["int8/st"].startswith("variant missing")


@pytest.mark.parametrize(
    ("after_ms", "status"), [(11.5, "fail"), (10.5, "pass"), (11.0, "pass"), (9.0, "pass")]
)
def test_latency(after_ms: float, status: str) -> None:
    # 10 ms -> 11.5 ms is +15 %, 10.5 ms is +5 %, 11.0 ms is exactly the 10 % allowed
    report = gate(make_result(latency_ms=after_ms), make_result(latency_ms=10.0))
    assert statuses(report, "latency_p50") == {"float": status, "int8": status}
    latency = next(c for c in report.checks if c.metric == "latency_p50")
    assert latency.change == pytest.approx(100 * (after_ms - 10.0) / 10.0)
    assert latency.improved == (after_ms < 10.0)


def test_missing_latency_skips_with_a_note() -> None:
    for result, baseline, note in (
        (make_result(latency_ms=None), make_result(), "the result has no latency record"),
        (make_result(), make_result(latency_ms=None), "the baseline has no latency record"),
    ):
        report = gate(result, baseline)
        assert report.passed
        skips = [c for c in report.checks if c.status == "skip"]
        assert [c.message for c in skips] == [note, note]
    off = Tolerances(latency_p50_percent=Scoped(None))
    assert statuses(gate(make_result(latency_ms=50.0), make_result(), off), "latency_p50") == {
        "float": "skip",
        "int8": "skip",
    }


def test_per_class_drop_warns_unless_tolerance_set() -> None:
    result = make_result()
    result["variants"]["int8"]["protocols"]["st"]["per_class"]["car"] = 0.38  # 2 points down
    report = gate(result, make_result())
    assert report.passed
    assert statuses(report, "per_class_ap")["int8/st/car"] == "warn"
    strict = Tolerances(per_class_ap=Scoped(1.0))
    assert statuses(gate(result, make_result(), strict), "per_class_ap")["int8/st/car"] == "fail"
    loose = Tolerances(per_class_ap=Scoped(1.0, {"*/*/car": 3.0}))
    assert statuses(gate(result, make_result(), loose), "per_class_ap")["int8/st/car"] == "pass"


def test_missing_class_warns_or_fails() -> None:
    result = make_result()
    del result["variants"]["float"]["protocols"]["coco"]["per_class"]["car"]
    check_ = next(c for c in gate(result, make_result()).checks if c.scope == "float/coco/car")
    assert (check_.status, check_.message) == (
        "warn",
        "class missing from the result (the baseline has it)",
    )
    strict = Tolerances(per_class_ap=Scoped(None, {"float/coco": 5.0}))
    assert statuses(gate(result, make_result(), strict), "per_class_ap")["float/coco/car"] == "fail"


def test_improvements_are_reported() -> None:
    report = gate(make_result(ap50=0.52, latency_ms=8.0), make_result())
    assert report.passed
    improved = [c for c in report.checks if c.improved]
    assert {c.metric for c in improved} == {"ap50", "latency_p50"}
    assert len(improved) == 4 + 2
    assert "(6 improved)" in report.headline


def test_scoped_most_specific_key_wins() -> None:
    scoped = Scoped(0.5, {"int8": 0.7, "*/st": 0.8, "int8/st": 1.0, "int8/*": 0.9})
    assert scoped.at("int8", "st") == 1.0
    assert scoped.at("int8", "coco") == 0.9  # two parts beat one
    assert scoped.at("float", "st") == 0.8
    assert scoped.at("float", "coco") == 0.5
    assert Scoped(0.5, {"int8/*": 0.9, "*/st": 0.8}).at("int8", "st") == 0.9  # named first


def test_tolerance_yaml_overrides() -> None:
    tol = parse_tolerances({"ap50": {"default": 0.5, "int8/st": 1.0}, "per_class_ap": 1.0})
    result, baseline = make_result(ap50=0.494), make_result()
    assert statuses(gate(result, baseline, tol), "ap50") == {
        "float/st": "fail",
        "float/coco": "fail",
        "int8/st": "pass",  # 0.6 <= 1.0
        "int8/coco": "fail",
    }
    assert tol.per_class_ap.at("int8", "st", "car") == 1.0
    assert tol.latency_p50_percent.at("int8") == 10.0  # left out: the default stays


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"ap_50": 0.5}, "did you mean 'ap50'"),
        ({"ap50": {"defualt": 1.0}}, "did you mean 'default'"),
        ({"ap50": None}, "expected a number >= 0, got None"),
        ({"ap50": -1}, "expected a number >= 0"),
        ({"ap50": {"a/b/c": 1}}, "a scope is VARIANT or VARIANT/PROTOCOL"),
        ({"latency_p50_percent": "10%"}, "expected a number >= 0 or null"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_tolerances_are_input_errors(data: Any, expected: str) -> None:
    with pytest.raises(InputError, match=expected.replace("(", r"\(")):
        gate(make_result(), make_result(), parse_tolerances(data))


def test_scope_typo_names_the_near_match() -> None:
    tol = parse_tolerances({"ap50": {"int8/sT": 1.0}})
    with pytest.raises(InputError, match=r"'int8/sT' matches nothing.*did you mean 'int8/st'"):
        gate(make_result(), make_result(), tol)


# ---------------------------------------------------------------- reports


def test_junit_xml_counts() -> None:
    result = make_result(ap50=0.494, latency_ms=None)
    result["variants"]["int8"]["protocols"]["st"]["per_class"]["car"] = 0.38
    report = gate(result, make_result())
    root = ET.fromstring(report.to_junit_xml())
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    cases = suite.findall("testcase")
    # 4 AP50 failures; 8 per-class (one warns); 2 latency skips
    assert suite.get("name") == "evalkit.check"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("14", "4", "2")
    assert root.get("skipped") is None  # not an attribute of <testsuites> in junit-10.xsd
    assert suite.get("errors") == "0" and float(suite.get("time", "x")) >= 0
    assert len(cases) == 14
    failures = [c for c in cases if c.find("failure") is not None]
    assert {c.get("name") for c in failures} == {"float/st", "float/coco", "int8/st", "int8/coco"}
    assert all(c.get("classname") == "evalkit.check.ap50" for c in failures)
    message = failures[0].find("failure").get("message")  # type: ignore[union-attr]
    assert message == "dropped 0.60 pt, more than the 0.5 allowed"
    assert len([c for c in cases if c.find("skipped") is not None]) == 2


def test_markdown_summary() -> None:
    result = make_result(ap50=0.494)
    result["variants"]["int8"]["protocols"]["st"]["per_class"]["car"] = 0.38
    markdown = gate(result, make_result()).to_markdown()
    lines = markdown.splitlines()
    assert lines[0] == "## evalkit check: FAIL"
    assert lines[2] == "**FAIL: 4 failed, 1 warned, 9 passed, 0 skipped (0 improved)**"
    table = [line for line in lines if line.startswith("| ")]
    assert table[0] == "| status | check | baseline | result | change | tolerance | note |"
    statuses_in_order = [row.split(" | ")[0][2:] for row in table[2:]]
    # failures first, then the warning, then passes; 7 passing per-class rows are left out
    assert statuses_in_order == ["fail"] * 4 + ["warn"] + ["pass"] * 2
    assert "| fail | ap50 float/st | 50.00 | 49.40 | -0.60 pt | 0.5 pt |" in markdown
    assert "7 passing per-class checks not listed" in markdown


def test_markdown_escapes_names() -> None:
    baseline = make_result()
    baseline["variants"]["int8"]["protocols"]["st"]["per_class"]["a|<b>"] = 0.5
    markdown = gate(make_result(), baseline).to_markdown()
    assert "| warn | per_class_ap int8/st/a\\|&lt;b&gt; | 50.00 | - |" in markdown


# ---------------------------------------------------------------- compare


def test_compare_rows_and_deltas() -> None:
    a, b = make_result(), make_result(ap50=0.47, latency_ms=12.0)
    b["variants"]["int8"]["protocols"]["coco"]["tp"] = 75
    del b["variants"]["float"]["protocols"]["st"]
    rows = {(r.variant, r.protocol, r.metric): r for r in compare(validate(a), validate(b)).rows}
    ap = rows["int8", "st", "AP50"]
    assert (ap.a, ap.b, ap.unit) == (0.5, 0.47, "points")
    assert ap.delta == pytest.approx(100 * (0.47 - 0.5))
    assert rows["int8", "coco", "stats.AP50"].delta == pytest.approx(-3.0)
    assert ("int8", "coco", "stats.APs") not in rows  # -1: no small objects, not a score
    assert rows["int8", "coco", "TP"].delta == 75 - 80
    latency = rows["int8", None, "latency_p50_ms"]
    assert latency.unit == "percent" and latency.delta == pytest.approx(20.0)  # 10 -> 12 ms
    assert rows["int8", None, "model_bytes"].delta == 0
    only_a = rows["float", "st", "AP50"]
    assert (only_a.b, only_a.delta) == (None, None)
    per_variant = {"latency_p50_ms", "latency_p90_ms", "model_bytes", "images_per_s"}
    assert {m for v, p, m in rows if p is None} == per_variant
    assert {f"stats.{s}" for s in COCO_STATS} - {m for _, _, m in rows} == {"stats.APs"}


def test_compare_cli_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = make_result(ap50=0.47)
    del b["variants"]["float"]["protocols"]["st"]
    pa, pb = write(tmp_path, "a", make_result()), write(tmp_path, "b", b)
    assert cli.main(["compare", str(pa.parent), str(pb)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.split()[:3] == ["int8", "st", "AP50"])
    assert line.split()[3:] == ["50.00", "47.00", "-3.00", "pt"]
    assert "only in A (5):\n  float/st: AP50, AP50[person], AP50[car], TP, FP\n" in out
    assert cli.main(["compare", str(pa), str(pb), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    row = next(
        r
        for r in data["rows"]
        if (r["variant"], r["protocol"], r["metric"]) == ("int8", "st", "AP50")
    )
    assert row["delta"] == pytest.approx(-3.0) and row["unit"] == "points"


# ---------------------------------------------------------------- check, command line


def run_check(tmp_path: Path, result: dict[str, Any], baseline: dict[str, Any], *flags: str) -> int:
    r = write(tmp_path, "result", result)
    b = write(tmp_path, "baseline", baseline)
    return cli.main(["check", str(r), "--baseline", str(b), *flags])


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check(tmp_path, make_result(), make_result()) == 0
    drop, slow = make_result(ap50=0.494), make_result(latency_ms=11.5)  # -0.6 pt, +15 %
    assert run_check(tmp_path, drop, make_result()) == 1
    assert run_check(tmp_path, drop, make_result(), "--max-ap50-drop", "1.0") == 0
    assert run_check(tmp_path, slow, make_result()) == 1
    assert run_check(tmp_path, slow, make_result(), "--no-latency") == 0
    assert run_check(tmp_path, slow, make_result(), "--max-latency-increase", "20") == 0
    out = capsys.readouterr().out
    assert "FAIL: 4 failed" in out and "PASS: 0 failed" in out


def test_cli_tolerance_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "tol.yaml"
    good.write_text('ap50: {default: 1.0, "*/coco": 0.2}\nlatency_p50_percent: null\n')
    result = make_result(ap50=0.494, latency_ms=50.0)
    assert run_check(tmp_path, result, make_result(), "--tolerances", str(good)) == 1
    out = capsys.readouterr().out
    assert out.count("\nfail  ") == 2 and "fail    ap50 float/coco" in out
    # the flag replaces the file's default only: */coco stays 0.2
    flags = ("--tolerances", str(good), "--max-ap50-drop", "2")
    assert run_check(tmp_path, result, make_result(), *flags) == 1

    bad = tmp_path / "bad.yaml"
    bad.write_text("ap50: 0.5\nlatency_p50_pct: 10\n")
    assert run_check(tmp_path, make_result(), make_result(), "--tolerances", str(bad)) == 2
    err = capsys.readouterr().err
    assert "unknown key 'latency_p50_pct'" in err and "did you mean 'latency_p50_percent'" in err


def test_cli_unusable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    future = make_result()
    future["schema_version"] = 99
    assert run_check(tmp_path, make_result(), future) == 2
    assert "schema_version 99 is not supported" in capsys.readouterr().err

    truncated = tmp_path / "truncated.json"
    truncated.write_text(json.dumps(make_result())[:200])
    good = tmp_path / "result" / "result.json"
    assert cli.main(["check", str(good), "--baseline", str(truncated)]) == 2
    assert cli.main(["check", str(truncated), "--baseline", str(good)]) == 2
    assert "malformed JSON" in capsys.readouterr().err
    assert cli.main(["check", str(tmp_path / "nowhere"), "--baseline", str(good)]) == 2
    with pytest.raises(SystemExit) as exc:  # argparse: a negative tolerance is a usage error
        cli.main(["check", str(good), "--baseline", str(good), "--max-ap50-drop", "-1"])
    assert exc.value.code == 2


def test_cli_writes_junit_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    flags = ("--junit", str(junit), "--summary", str(summary))
    assert run_check(tmp_path, make_result(ap50=0.494), make_result(), *flags) == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "4"
    text = summary.read_text()
    assert text.startswith("earlier step\n## evalkit check: FAIL\n")  # appended, not replaced
    report = check(load_result(tmp_path / "result"), load_result(tmp_path / "baseline"))
    assert text == "earlier step\n" + report.to_markdown()


# ---------------------------------------------------------------- comparability


def _on(data: dict[str, Any], **dataset: Any) -> dict[str, Any]:
    """``data`` re-fingerprinted as a run on another dataset."""
    return {**data, "fingerprint": fingerprint(tuple(data["variants"]), **dataset)}


def test_check_refuses_another_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the case: a far better AP50 on another set must not read as "improved"
    other = _on(make_result(ap50=0.96), num_images=6, split="train2017")
    assert run_check(tmp_path, other, make_result()) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "result" / "result.json") in err and "fingerprint" in err
    assert "differ in dataset" in err and "--allow-different dataset" in err
    assert "dataset num_images: 6 vs 10" in err and 'dataset split: "train2017" vs "val2017"' in err
    assert "improved" not in err

    assert run_check(tmp_path, other, make_result(), "--allow-different", "dataset") == 0
    out = capsys.readouterr().out
    assert "PASS ACROSS DIFFERENT DATASET" in out
    assert out.count("WARNING: compared across DIFFERENT DATASET (2 difference(s) allowed)") == 2


def test_check_refuses_other_settings_unless_that_kind_is_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = make_result()
    changed["fingerprint"]["settings"]["nms"]["iou_threshold"] = 0.6
    assert run_check(tmp_path, changed, make_result(), "--allow-different", "dataset") == 2
    assert "settings nms.iou_threshold: 0.6 vs 0.5" in capsys.readouterr().err
    both = _on(make_result(), classes=["person"])
    both["fingerprint"]["settings"]["nms"]["iou_threshold"] = 0.6
    flags = ("--allow-different", "dataset", "--allow-different", "settings")
    summary = tmp_path / "summary.md"
    assert run_check(tmp_path, both, make_result(), *flags, "--summary", str(summary)) == 0
    assert "PASS ACROSS DIFFERENT DATASET AND SETTINGS" in capsys.readouterr().out
    assert "> **WARNING: compared across DIFFERENT DATASET AND SETTINGS" in summary.read_text()


def test_preprocessing_of_a_shared_variant_is_a_settings_difference() -> None:
    changed = make_result()
    changed["fingerprint"]["settings"]["variants"]["int8"]["preprocessing"]["size"] = [320, 320]
    with pytest.raises(InputError, match=r"settings variants\.int8\.preprocessing\.size"):
        gate(changed, make_result())


def test_a_variant_only_one_run_has_is_a_missing_metric_not_a_difference() -> None:
    report = gate(make_result(variants=("float",)), make_result())
    assert not report.passed and not report.differences
    assert statuses(report, "ap50")["int8/st"] == "fail"


def test_model_differences_are_measured_never_refused() -> None:
    other_model = make_result()
    for v in other_model["variants"].values():
        v["model"] = {"path": "elsewhere.onnx", "bytes": 5, "precision": "int8", "sha256": "f"}
    assert gate(other_model, make_result()).passed


def test_a_run_without_fingerprint_is_comparable_with_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = make_result()
    old["schema_version"] = 1
    del old["fingerprint"]
    assert run_check(tmp_path, make_result(), old) == 2
    assert "absent (an older result.json)" in capsys.readouterr().err
    flags = ("--allow-different", "dataset", "--allow-different", "settings")
    assert run_check(tmp_path, make_result(), old, *flags) == 0
    # a version-2 record must carry its fingerprint
    broken = make_result()
    del broken["fingerprint"]
    with pytest.raises(InputError, match="fingerprint: expected an object"):
        validate(broken)


def test_compare_refuses_and_allows_like_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write(tmp_path, "a", make_result())
    b = write(tmp_path, "b", _on(make_result(ap50=0.7), format="voc"))
    assert cli.main(["compare", str(a), str(b)]) == 2
    assert 'dataset format: "coco" vs "voc"' in capsys.readouterr().err
    assert cli.main(["compare", str(a), str(b), "--allow-different", "dataset", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["warning"].startswith("WARNING: compared across DIFFERENT DATASET")
    assert shown["allowed_differences"][0]["field"] == "format"
    with pytest.raises(InputError, match="differ in dataset"):
        compare(load_result(a), load_result(b))
