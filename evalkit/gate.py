"""Gate a run against a baseline (``evalkit check``): AP50 and per-class AP drops and the
latency p50 rise, each against its tolerance (:mod:`evalkit.tolerances`, whose names this
module also exports)."""

from __future__ import annotations

import html
import time
import xml.etree.ElementTree as ET
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from evalkit.comparable import allowed_warning, host_notes, label, require_comparable
from evalkit.errors import InputError
from evalkit.fingerprint import Difference, Kind
from evalkit.record import RunRecord
from evalkit.tolerances import (
    Scoped,
    Tolerances,
    load_tolerances,
    matches,
    parse_tolerances,
    suggest,
)

__all__ = [
    "HEADERS",
    "Check",
    "CheckReport",
    "Scoped",
    "Tolerances",
    "check",
    "load_tolerances",
    "parse_tolerances",
]

Status = Literal["pass", "fail", "warn", "skip"]
Metric = Literal["ap50", "per_class_ap", "latency_p50"]

# Float noise: 100 * (0.5 - 0.495) is 0.5000000000000004; a drop equal to the tolerance passes.
_EPS = 1e-9


def _check_scopes(tol: Tolerances, baseline: RunRecord) -> None:
    """Every override key must match something in the baseline: a typo must not pass."""
    pairs = [(v, p) for v in baseline.variants for p in baseline.protocols(v)]
    scopes: dict[str, list[tuple[str, ...]]] = {
        "ap50": list(pairs),
        "latency_p50_percent": [(v,) for v in baseline.variants],
        "per_class_ap": [
            (v, p, c) for v, p in pairs for c in baseline.variants[v].protocols[p].per_class
        ],
    }
    for key, known in scopes.items():
        for name in getattr(tol, key).overrides:
            if not any(matches(name, s) for s in known):
                names = sorted({"/".join(s[:n]) for s in known for n in range(1, len(s) + 1)})
                problem = (
                    f"scope {name!r} matches nothing in the baseline {label(baseline)}"
                    f"{suggest(name, ['default', *names])}"
                )
                raise InputError(problem, path=tol.source, record=f"{key}.{name}")


# ---------------------------------------------------------------- check


@dataclass(frozen=True)
class Check:
    """One gate: a metric at a scope ('int8/st', 'int8/st/person', 'int8'), and its verdict.

    ``change`` is result minus baseline in AP points, or the latency change in percent.
    """

    metric: Metric
    scope: str
    status: Status
    baseline: float | None
    result: float | None
    change: float | None
    tolerance: float | None
    message: str

    @property
    def name(self) -> str:
        return f"{self.metric} {self.scope}"

    @property
    def improved(self) -> bool:
        if self.change is None:
            return False
        return self.change < -_EPS if self.metric == "latency_p50" else self.change > _EPS

    def cells(self) -> tuple[str, ...]:
        """Status, name, baseline, result, change, tolerance, note, as display strings."""
        ms = self.metric == "latency_p50"
        unit = "%" if ms else " pt"
        values = (
            "-" if v is None else f"{v:.3f} ms" if ms else f"{100 * v:.2f}"
            for v in (self.baseline, self.result)
        )
        change = "-" if self.change is None else f"{self.change:+.2f}{unit}"
        tolerance = "-" if self.tolerance is None else f"{self.tolerance:g}{unit}"
        return (self.status, self.name, *values, change, tolerance, self.message)


def _drop_check(
    metric: Metric, scope: str, before: float, after: float, allowed: float | None
) -> Check:
    change = 100.0 * (after - before)
    status: Status = "pass"
    if change > _EPS:
        message = f"improved by {change:.2f} pt"
    elif -change <= _EPS:
        message = "unchanged"
    elif allowed is None:
        status, message = "warn", f"dropped {-change:.2f} pt (reported only: no tolerance set)"
    elif -change <= allowed + _EPS:
        message = f"dropped {-change:.2f} pt, within {allowed:g}"
    else:
        status, message = "fail", f"dropped {-change:.2f} pt, more than the {allowed:g} allowed"
    return Check(metric, scope, status, before, after, change, allowed, message)


def _ap_checks(
    result: RunRecord, baseline: RunRecord, variant: str, protocol: str, tol: Tolerances
) -> list[Check]:
    scope = f"{variant}/{protocol}"
    allowed, before = tol.ap50.at(variant, protocol), baseline.ap50(variant, protocol)
    if variant not in result.variants or protocol not in result.protocols(variant):
        what = "protocol" if variant in result.variants else "variant"
        message = f"{what} missing from the result (the baseline has it)"
        return [Check("ap50", scope, "fail", before, None, None, allowed, message)]
    checks = [_drop_check("ap50", scope, before, result.ap50(variant, protocol), allowed)]
    after = result.variants[variant].protocols[protocol].per_class
    for cls, ap in baseline.variants[variant].protocols[protocol].per_class.items():
        allowed = tol.per_class_ap.at(variant, protocol, cls)
        if cls in after:
            checks.append(_drop_check("per_class_ap", f"{scope}/{cls}", ap, after[cls], allowed))
        else:
            status: Status = "warn" if allowed is None else "fail"
            message = "class missing from the result (the baseline has it)"
            checks.append(
                Check("per_class_ap", f"{scope}/{cls}", status, ap, None, None, allowed, message)
            )
    return checks


def _latency_p50(record: RunRecord, variant: str) -> float | None:
    latency = record.variants[variant].latency if variant in record.variants else None
    if latency is None:
        return None
    value = latency.ms("p50")
    if value is None:  # a latency pass without its median cannot be gated
        where = f"variants.{variant}.latency.summary.p50_ms"
        raise InputError("expected a finite number, got None", path=record.path, record=where)
    return value


def _latency_check(result: RunRecord, baseline: RunRecord, variant: str, tol: Tolerances) -> Check:
    allowed = tol.latency_p50_percent.at(variant)
    before, after = _latency_p50(baseline, variant), _latency_p50(result, variant)
    if allowed is None or before is None or after is None:
        why = (
            "disabled (--no-latency or latency_p50_percent: null)"
            if allowed is None
            else "the baseline has no latency record"
            if before is None
            else "variant missing from the result (see its ap50 checks)"
            if variant not in result.variants
            else "the result has no latency record"
        )
        return Check("latency_p50", variant, "skip", before, after, None, allowed, why)
    change = 100.0 * (after - before) / before
    status: Status = "pass"
    if change < -_EPS:
        message = f"p50 {-change:.1f}% faster (improved)"
    elif change <= allowed + _EPS:
        message = f"p50 {change:+.1f}%, within {allowed:g}%"
    else:
        status, message = "fail", f"p50 rose {change:.1f}%, more than the {allowed:g}% allowed"
    return Check("latency_p50", variant, status, before, after, change, allowed, message)


_ORDER = {"fail": 0, "warn": 1, "skip": 2, "pass": 3}
HEADERS = ("status", "check", "baseline", "result", "change", "tolerance", "note")


@dataclass(frozen=True)
class CheckReport:
    """Every check of a result against its baseline; ``passed`` when none failed."""

    result: str
    baseline: str
    checks: tuple[Check, ...]
    elapsed_s: float = 0.0
    # Dataset/settings differences the caller allowed (--allow-different); said loudly.
    differences: tuple[Difference, ...] = ()
    # What the hosts make incomparable (evalkit.comparable.host_notes); said too.
    notes: tuple[str, ...] = ()

    @property
    def warning(self) -> str | None:
        return allowed_warning(self.differences, self.notes)

    @property
    def passed(self) -> bool:
        return self.count("fail") == 0

    def count(self, status: Status) -> int:
        return sum(c.status == status for c in self.checks)

    @property
    def headline(self) -> str:
        """PASS or FAIL, with the count of each status and of improvements."""
        verdict = "PASS" if self.passed else "FAIL"
        if self.differences:
            verdict += " ACROSS DIFFERENT " + " AND ".join(
                sorted({d.kind.upper() for d in self.differences})
            )
        return (
            f"{verdict}: {self.count('fail')} failed, {self.count('warn')} warned, "
            f"{self.count('pass')} passed, {self.count('skip')} skipped "
            f"({sum(c.improved for c in self.checks)} improved)"
        )

    def listed(self) -> tuple[tuple[Check, ...], int]:
        """Checks worth showing, failures first, and how many passing per-class ones are left
        out (there are classes x protocols x variants of them)."""
        shown = [c for c in self.checks if c.metric != "per_class_ap" or c.status != "pass"]
        return tuple(sorted(shown, key=lambda c: _ORDER[c.status])), len(self.checks) - len(shown)

    def to_markdown(self) -> str:
        """A CI job summary (e.g. ``$GITHUB_STEP_SUMMARY``): headline, then a table."""
        shown, hidden = self.listed()
        warning = self.warning.splitlines() if self.warning else []

        def row(cells: Iterable[str]) -> str:
            # Class names and paths are data: GitHub would render '<b>' or break on '|'.
            escaped = (html.escape(c, quote=False).replace("|", "\\|") for c in cells)
            return "| " + " | ".join(escaped) + " |"

        lines = [
            f"## evalkit check: {'PASS' if self.passed else 'FAIL'}",
            "",
            f"**{self.headline}**",
            "",
            f"Result `{self.result}` against baseline `{self.baseline}`.",
            "",
            *(f"> **{html.escape(line, quote=False)}**  " for line in warning),
            *([""] if warning else []),
            row(HEADERS),
            row("---" for _ in HEADERS),
            *(row(c.cells()) for c in shown),
        ]
        if hidden:
            lines += [
                "",
                f"{hidden} passing per-class checks not listed (the JUnit report has all).",
            ]
        return "\n".join(lines) + "\n"

    def to_junit_xml(self) -> str:
        """JUnit XML: one testsuite 'evalkit.check', one testcase per check."""
        counts = {
            "tests": str(len(self.checks)),
            "failures": str(self.count("fail")),
            "errors": "0",
            "skipped": str(self.count("skip")),
            "time": f"{self.elapsed_s:.3f}",
        }
        # The common schema (Jenkins junit-10.xsd) has no 'skipped' on <testsuites>.
        root = ET.Element("testsuites", {"name": "evalkit", **counts})
        del root.attrib["skipped"]
        suite = ET.SubElement(root, "testsuite", {"name": "evalkit.check", **counts})
        props = ET.SubElement(suite, "properties")
        named = [("result", self.result), ("baseline", self.baseline)]
        if self.warning:
            named.append(("warning", self.warning))
        for name, value in named:
            ET.SubElement(props, "property", {"name": name, "value": value})
        for c in self.checks:
            attrs = {"classname": f"evalkit.check.{c.metric}", "name": c.scope, "time": "0"}
            case = ET.SubElement(suite, "testcase", attrs)
            detail = "  ".join(f"{h}: {v}" for h, v in zip(HEADERS[2:], c.cells()[2:], strict=True))
            if c.status == "fail":
                failure = ET.SubElement(case, "failure", {"message": c.message, "type": c.metric})
                failure.text = detail
            elif c.status == "skip":
                ET.SubElement(case, "skipped", {"message": c.message})
            else:  # pass and warn: the figures go to the test's output
                ET.SubElement(case, "system-out").text = f"{c.status}: {detail}"
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def check(
    result: RunRecord,
    baseline: RunRecord,
    tolerances: Tolerances | None = None,
    allow: Collection[Kind] = (),
) -> CheckReport:
    """Gate ``result`` against ``baseline``: AP50 and per-class AP drops, latency p50 rise.

    Runs on different datasets or settings are refused (InputError listing the differences)
    unless their kind is in ``allow``; the report then carries them."""
    start = time.perf_counter()
    allowed = require_comparable(result, baseline, allow)
    tol = tolerances or Tolerances()
    _check_scopes(tol, baseline)
    checks: list[Check] = []
    for variant in baseline.variants:
        for protocol in baseline.protocols(variant):
            checks += _ap_checks(result, baseline, variant, protocol, tol)
    checks += [_latency_check(result, baseline, v, tol) for v in baseline.variants]
    elapsed = time.perf_counter() - start
    return CheckReport(
        label(result),
        label(baseline),
        tuple(checks),
        elapsed,
        allowed,
        host_notes(result, baseline),
    )
