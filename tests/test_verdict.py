"""Whether a run reproduces the card, figure by figure (hand-made records whose verdict is
derived here), and the report that opens with that answer."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from evalkit.record import validate
from evalkit.references import reference_for
from evalkit.references.verdict import card_verdicts
from evalkit.reports import render_report

from .test_reports import make_record

CARD = reference_for("ssd_mobilenetv2_pt", "coco")  # st AP50: float 31.75, int8 31.29


def _record(float_st: float, int8_st: float, comparable: bool = True) -> Any:
    data = copy.deepcopy(make_record())
    data["variants"]["float"]["protocols"]["st"]["AP50"] = float_st
    data["variants"]["int8"]["protocols"]["st"]["AP50"] = int8_st
    data["reference"].update(comparable=comparable, why="stated by the test")
    return validate(data)


def test_figures_within_the_cards_rounding_reproduce() -> None:
    verdicts = card_verdicts(_record(0.3175, 0.3130), CARD)
    by_figure = {v.figure: v for v in verdicts}
    assert by_figure["float (float) AP50 st"].status == "reproduces"
    int8 = by_figure["int8 (int8) AP50 st"]
    assert int8.status == "reproduces" and int8.difference == pytest.approx(0.01)  # the edge
    cost = by_figure["int8 cost, float - int8 (st)"]  # 0.45 measured, 0.46 published
    assert cost.status == "reproduces" and cost.published == pytest.approx(0.46)


def test_a_figure_off_by_more_than_the_rounding_does_not() -> None:
    verdicts = {v.figure: v for v in card_verdicts(_record(0.3177, 0.3129), CARD)}
    off = verdicts["float (float) AP50 st"]
    assert off.status == "does not reproduce" and off.difference == pytest.approx(0.02)
    assert verdicts["int8 (int8) AP50 st"].status == "reproduces"
    assert verdicts["int8 cost, float - int8 (st)"].status == "reproduces"  # 0.48 vs 0.46
    assert {v.status for v in card_verdicts(_record(0.3175, 0.3100), CARD)} == {
        "reproduces", "does not reproduce"
    }  # fmt: skip


def test_a_run_on_another_set_is_context_only_never_a_verdict() -> None:
    verdicts = card_verdicts(_record(0.3175, 0.3129, comparable=False), CARD)
    assert {v.status for v in verdicts} == {"context only"}
    assert all(v.why == "stated by the test" for v in verdicts)


def test_a_context_only_box_shows_no_delta(tmp_path: Path) -> None:
    files = render_report(_record(0.3177, 0.3129, comparable=False), tmp_path, reference=CARD)
    page = files.html.read_text()
    box = page[page.index('<section class="verdict">') : page.index("</section>")]
    assert "CONTEXT ONLY: 31.77 measured, 31.75 published" in box and " pt)" not in box


def test_the_report_opens_with_the_answer(tmp_path: Path) -> None:
    files = render_report(_record(0.3177, 0.3129), tmp_path, reference=CARD)
    page = files.html.read_text()
    box = page[page.index('<section class="verdict">') : page.index("</section>")]
    assert "DOES NOT REPRODUCE: 31.77 measured, 31.75 published (+0.02 pt)" in box
    assert "REPRODUCES: 31.29 measured, 31.29 published (+0.00 pt)" in box
    assert "STM32N6, published" in box and "158.49 ms (STEdgeAI 3.0.0)" in box
    assert page.index("At a glance") < page.index("Accuracy")
    markdown = files.markdown.read_text()
    assert markdown.index("## At a glance") < markdown.index("## Accuracy")


def test_per_class_deltas_are_ordered_by_ground_truth_weighted_impact() -> None:
    from evalkit.reports.plots import _class_label, class_impacts

    record = validate(make_record())
    # st deltas (int8 - float, points): person -0.73, car -5.31, <b>& +0.88, $dog$ -4.91; the
    # fixture's ground-truth counts are 10, 11, 12, 13, so $dog$ (-63.8) outweighs car (-58.4)
    # although car dropped more.
    order = [c for _, c in class_impacts(record, "st", "float", "int8")]
    assert order == ["$dog$", "car", "person", "<b>&"]
    assert _class_label("person", 9) == "person (n=9, small)"
    assert _class_label("person", 10) == "person (n=10)"
