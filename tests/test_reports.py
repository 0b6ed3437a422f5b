"""Reports rendered from result.json records built here by ``make_record``, to the contract in
``evalkit/pipeline/result.py``: two variants (float, int8), four protocols, four classes
(``<b>&`` checks escaping, ``$dog$`` that a name is never read as math), latency runs, COCO
stats, an on-board record and a memory estimate. Expected table cells are derived from the
record, never typed in by hand.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from evalkit import cli
from evalkit.bench.latency import summarize
from evalkit.bench.memory import ActivationTensor, MemoryEstimate
from evalkit.bench.model_stats import InitializerGroup, ModelStats
from evalkit.bench.stedgeai import OnBoardFigures
from evalkit.errors import InputError
from evalkit.metrics.coco import STAT_NAMES
from evalkit.pipeline.result import load_result, validate
from evalkit.references import reference_for
from evalkit.reports import render_report

CLASSES = ("person", "car", "<b>&", "$dog$")
PROTOCOLS = ("coco", "st", "voc07", "voc12")
# Per-class AP50 under ``st``; the other protocols scale it (four decimals keep every percent
# at two decimals, so no expected cell sits on a rounding boundary).
CLASS_AP = {
    "float": {"person": 0.8123, "car": 0.6542, "<b>&": 0.4410, "$dog$": 0.3021},
    "int8": {"person": 0.8050, "car": 0.6011, "<b>&": 0.4498, "$dog$": 0.2530},
}
FACTOR = {"coco": 0.97, "st": 1.0, "voc07": 0.95, "voc12": 1.01}
REFERENCE = {"model": "ssd_mobilenetv2_pt", "dataset": "coco"}
RECALL = np.linspace(0.0, 1.0, 101)


def _protocol(class_ap: Mapping[str, float], protocol: str, seed: int) -> dict[str, Any]:
    per_class = {c: round(ap * FACTOR[protocol], 4) for c, ap in class_ap.items()}
    curves = {
        c: np.clip(1.0 - 0.9 * RECALL ** (2 * ap), 0, 1).tolist() for c, ap in per_class.items()
    }
    record: dict[str, Any] = {
        "protocol": protocol,
        "AP50": sum(per_class.values()) / len(per_class),
        "per_class": per_class,
        "classes": [
            {"name": c, "AP": ap, "num_gt": 10 + i, "num_detections": 30 + i, "tp": 5, "fp": 25}
            for i, (c, ap) in enumerate(per_class.items())
        ],
        "num_gt": 46,
        "num_detections": 126 + seed,
        "tp": 20 + seed,
        "fp": 106,
        "pr_curves": {
            "recall": RECALL.tolist(),
            "mean": np.mean(list(curves.values()), axis=0).tolist(),
            "per_class": curves,
        },
    }
    if protocol == "coco":
        stats = [0.3 + 0.01 * i + 0.001 * seed for i in range(len(STAT_NAMES))]
        stats[3] = -1.0  # pycocotools: no small objects
        record["stats"] = stats
    return record


def _latency(p50: float, seed: int) -> dict[str, Any]:
    raw = (p50 + np.random.default_rng(seed).gamma(2.0, 0.4, 60)).tolist()
    return {
        "schema": 1,
        "kind": "latency",
        "settings": {"batch": 1, "runs": len(raw), "intra_op_threads": 4},
        "summary": asdict(summarize(raw, 1)),
        "warmup_ms": [p50 * 2],
        "raw_ms": raw,
    }


def _onboard() -> dict[str, Any]:
    return OnBoardFigures(
        kind="network_c_info",
        source_path="st_ai_output/network_c_info.json",
        source_sha256="0" * 64,
        schema_version="2.0",
        tool_version="10.2.0",
        internal_ram_bytes=2_412_544,
        external_ram_bytes=2_097_152,
        weights_flash_bytes=20_600_000,
        activations_bytes=4_400_000,
        inference_time_ms=150.25,
        cycles=None,
        macs=None,
    ).to_dict()


def _memory() -> dict[str, Any]:
    largest = ActivationTensor("conv1", (1, 32, 150, 150), "int8", 720_000, 8)
    return MemoryEstimate(
        path="int8.onnx", bytes_per_element=None, largest=largest, largest_bytes=720_000,
        peak_bytes=1_440_000, peak_node="conv2", node_names=("conv1", "conv2"),
        live_bytes=(720_000, 1_440_000), largest_int8_bytes=720_000,
        largest_float32_bytes=2_880_000, peak_int8_bytes=1_440_000,
        peak_float32_bytes=5_760_000, activations=2, qdq_aliases=0, unknown_shapes=(),
        batch_assumed=False,
    ).to_dict()  # fmt: skip


def _model_stats() -> dict[str, Any]:
    return ModelStats(
        path="int8.onnx", producer="test", opset=17, inputs=(), outputs=(), op_histogram=(),
        params=4_500_000,
        initializers=(InitializerGroup("weight", "int8", 60, 4_500_000, 4_500_000),),
        layers=(), macs=1_600_000_000, unresolved_layers=(), batch_assumed=False,
    ).to_dict()  # fmt: skip


def make_record(variants: tuple[str, ...] = ("float", "int8"), **drop: bool) -> dict[str, Any]:
    """A result.json mapping; ``drop`` removes optional parts (latency, reference, ...)."""
    out: dict[str, Any] = {}
    for i, name in enumerate(variants):
        out[name] = {
            "model": {"path": f"models/{name}.onnx", "bytes": 20_000_000 // (i + 1) + 7,
                      "sha256": f"{i:064x}", "precision": name, "format": "onnx"},
            "runner": {"name": "onnxruntime"}, "decoder": {"name": "st-ssd"},
            "nms": {"iou_threshold": 0.5, "score_threshold": 0.001, "max_total": 100},
            "class_mapping": "identity", "detections": f"detections_{name}.json",
            "timings": {"wall_s": 1.0},
            "latency": None if drop.get("latency") else _latency(40.0 / (i + 1), i),
            "protocols": {p: _protocol(CLASS_AP[name], p, i) for p in PROTOCOLS},
        }  # fmt: skip
        for protocol in out[name]["protocols"].values():
            if drop.get("curves"):
                del protocol["pr_curves"]
            if drop.get("stats"):
                protocol.pop("stats", None)
    if "int8" in out and not drop.get("board"):
        out["int8"].update(onboard=_onboard(), memory=_memory(), model_stats=_model_stats())
    return {
        "schema_version": 1, "kind": "evalkit.run", "name": "fixture <run>",
        "created": "2025-01-02T03:04:05+00:00", "config": {"protocols": list(PROTOCOLS)},
        "environment": {"cpu": "Test CPU", "logical_cores": 8, "python": "CPython 3.11",
                        "uname": {"system": "Linux", "machine": "x86_64"},
                        "packages": {"evalkit": "0.1.0", "onnxruntime": "1.20.0"},
                        "git": {"revision": "abc123", "dirty": True}},
        "reference": None if drop.get("reference") else {
            **REFERENCE, "comparable": True, "why": "same set as the card: COCO val2017"},
        "dataset": {"name": "fixture", "format": "coco", "num_images": 10,
                    "num_annotations": 46, "classes": list(CLASSES), "skipped": []},
        "variants": out,
    }  # fmt: skip


def write_run(directory: Path, data: Mapping[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "result.json").write_text(json.dumps(data))
    return directory


def md_table(markdown: str, title: str) -> list[dict[str, str]]:
    """The Markdown table under ``### title`` as rows of unescaped cells by header."""
    section = markdown.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    cells = [[re.sub(r"\\(.)", r"\1", c) for c in line[2:-2].split(" | ")] for line in lines]
    return [dict(zip(cells[0], row, strict=True)) for row in cells[2:]]


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Any]:
    data = make_record()
    out = tmp_path_factory.mktemp("report")
    files = render_report(validate(data), out)
    return data, out, files


def test_files_written(rendered: tuple[dict[str, Any], Path, Any]) -> None:
    _, out, files = rendered
    names = {p.name for p in files.paths}
    assert {"report.html", "report.md", "accuracy.csv", "per_class.csv", "n6.csv"} <= names
    assert {p.name for p in files.plots} == {
        "protocols.png", "pr_curves.png", "class_delta.png", "latency.png"
    }  # fmt: skip
    assert all(p.is_file() and p.parent == out for p in files.paths)
    for png in files.plots:  # readable at 100%: at least 700 px wide (IHDR width)
        assert struct.unpack(">I", png.read_bytes()[16:20])[0] >= 700


def test_accuracy_table(rendered: tuple[dict[str, Any], Path, Any]) -> None:
    data, out, _ = rendered
    rows = md_table((out / "report.md").read_text(), "AP50: measured vs published")
    card = reference_for(**REFERENCE)
    assert len(rows) == 2 * len(PROTOCOLS)
    for row in rows:
        scores = data["variants"][row["variant"]]["protocols"][row["protocol"]]
        assert row["AP50 measured (%)"] == pct(scores["AP50"])
        published = row["AP50 published (model card) (%)"]
        delta = row["delta measured - published (AP pts)"]
        if row["protocol"] == "st":
            percent = (
                card.ap50_float_percent if row["variant"] == "float" else card.ap50_int8_percent
            )
            assert published == str(percent)  # the card's digits: 31.75 / 31.29
            assert delta == f"{100 * scores['AP50'] - float(str(percent)):+.2f}"
        else:
            assert published == delta == "n/a"
        assert row["detections"] == f"{scores['num_detections']:,d}"


def test_variant_delta_and_per_class(rendered: tuple[dict[str, Any], Path, Any]) -> None:
    data, out, _ = rendered
    markdown = (out / "report.md").read_text()
    f, q = data["variants"]["float"]["protocols"], data["variants"]["int8"]["protocols"]
    rows = md_table(markdown, "AP50 change between variants")
    assert [r["protocol"] for r in rows] == list(PROTOCOLS)
    for row in rows:
        a, b = f[row["protocol"]]["AP50"], q[row["protocol"]]["AP50"]
        assert row["compared"] == "int8 vs float"
        assert row["delta other - base (AP pts)"] == f"{100 * b - 100 * a:+.2f}"
    st = next(r for r in rows if r["protocol"] == "st")
    assert st["delta published (model card) (AP pts)"] == f"{31.29 - 31.75:+.2f}"
    per_class = md_table(markdown, "Per-class AP50: int8 vs float (st)")
    deltas = {c: 100 * q["st"]["per_class"][c] - 100 * f["st"]["per_class"][c] for c in CLASSES}
    assert [r["class"] for r in per_class] == sorted(CLASSES, key=deltas.__getitem__)
    for row in per_class:
        assert row["float AP50 (%)"] == pct(f["st"]["per_class"][row["class"]])
        assert row["delta int8 - float (AP pts)"] == f"{deltas[row['class']]:+.2f}"
    assert r"\<b\>\&" in markdown and r"\$dog\$" in markdown  # Markdown escaping


def test_size_latency_n6_tables(rendered: tuple[dict[str, Any], Path, Any]) -> None:
    data, out, _ = rendered
    markdown = (out / "report.md").read_text()
    latency = {r["variant"]: r for r in md_table(markdown, "Host latency (measured)")}
    for name, row in latency.items():
        summary = data["variants"][name]["latency"]["summary"]
        assert row["p50 (ms)"] == f"{summary['p50_ms']:.2f}"
        assert row["p90 (ms)"] == f"{summary['p90_ms']:.2f}"
        assert row["images/s"] == f"{summary['images_per_s']:.1f}"
    size = {r["variant"]: r for r in md_table(markdown, "Model size")}
    model = data["variants"]["int8"]["model"]
    assert size["int8"]["file bytes (measured)"] == f"{model['bytes']:,d}"
    assert size["int8"]["file MiB"] == f"{model['bytes'] / 2**20:.2f}"
    assert size["int8"]["file bytes published (model card)"] == "20,430,449"
    assert size["int8"]["same file as published"] == "no"
    assert size["int8"]["GMACs"] == "1.600" and size["float"]["GMACs"] == "n/a"
    n6 = {r["figure"]: r for r in md_table(markdown, "STM32N6 memory and latency")}
    board = "measured on board: int8 (STEdgeAI 10.2.0)"
    estimate = "estimate: int8 (evalkit, ONNX graph)"
    assert n6["internal RAM (KiB)"]["published (model card)"] == "2323.25"
    assert n6["internal RAM (KiB)"][board] == f"{2_412_544 / 1024:.2f}"
    assert n6["internal RAM (KiB)"][estimate] == "n/a"  # an estimate is never a board figure
    assert n6["peak live int8 activations (KiB)"][estimate] == f"{1_440_000 / 1024:.2f}"
    assert n6["largest int8 activation (KiB)"][estimate] == f"{720_000 / 1024:.2f}"
    assert n6["peak live / card internal RAM"][estimate] == f"{1_440_000 / 1024 / 2323.25:.2f}"
    assert n6["largest / card external RAM"][estimate] == f"{720_000 / 1024 / 2109.38:.2f}"
    assert n6["peak live int8 activations (KiB)"]["published (model card)"] == "n/a"
    assert n6["latency, STEdgeAI 3.0.0 (ms)"]["published (model card)"] == "158.49"
    assert n6["latency, STEdgeAI 10.2.0 (ms)"][board] == "150.25"
    assert list(n6)[8:] == [  # memory first, then latency and rates by version
        "latency, STEdgeAI 3.0.0 (ms)", "latency, STEdgeAI 4.0.0 (ms)",
        "latency, STEdgeAI 10.2.0 (ms)", "inferences/s, STEdgeAI 3.0.0",
        "inferences/s, STEdgeAI 10.2.0",
    ]  # fmt: skip
    stats = {r["variant"]: r for r in md_table(markdown, "COCO summary statistics")}
    coco = data["variants"]["int8"]["protocols"]["coco"]["stats"]
    assert stats["int8"]["AP"] == pct(coco[0]) and stats["int8"]["APs"] == "n/a"


def test_csv_keeps_numbers(rendered: tuple[dict[str, Any], Path, Any]) -> None:
    data, out, _ = rendered
    frame = pd.read_csv(out / "accuracy.csv")
    st = frame[(frame["variant"] == "int8") & (frame["protocol"] == "st")].iloc[0]
    ap = 100 * data["variants"]["int8"]["protocols"]["st"]["AP50"]
    assert st["AP50 measured (%)"] == pytest.approx(ap, abs=1e-6)
    assert frame["AP50 published (model card) (%)"].isna().sum() == 6  # "n/a" reads as NaN


def test_html_self_contained(rendered: tuple[dict[str, Any], Path, Any]) -> None:
    _, out, files = rendered
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "url(" not in page
    sources = re.findall(r"""src\s*=\s*["']?([^"' >]*)""", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert page.count("<img ") == len(files.plots) == 4
    for title in ("AP50: measured vs published", "AP50 change between variants", "Model size",
                  "Host latency (measured)", "STM32N6 memory and latency",
                  "COCO summary statistics", "Per-class AP50: int8 vs float (st)"):  # fmt: skip
        assert f">{title}</h3>" in page
    assert page.count("<table") == 9  # the verdict box, the run header, seven tables
    # The answer first: the verdict box stands above the run's metadata.
    assert page.index('<section class="verdict">') < page.index('<table class="kv">')
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page
    assert "fixture &lt;run&gt;" in page and "abc123 (with uncommitted changes)" in page
    assert 'class="pub">published (model card)' in page


def test_one_variant(tmp_path: Path) -> None:
    files = render_report(validate(make_record(("float",))), tmp_path)
    assert {p.name for p in files.plots} == {"protocols.png", "pr_curves.png", "latency.png"}
    markdown = files.markdown.read_text()
    assert "Only one variant in this run: nothing to compare." in markdown
    assert "Not drawn: Only one variant: no per-class delta." in markdown
    rows = md_table(markdown, "Per-class AP50 (st)")
    assert [r["class"] for r in rows] == list(CLASSES)


def test_missing_optional_parts(tmp_path: Path) -> None:
    data = make_record(latency=True, reference=True, curves=True, stats=True, board=True)
    files = render_report(validate(data), tmp_path)
    assert [p.name for p in files.plots] == ["protocols.png", "class_delta.png"]
    markdown = files.markdown.read_text()
    for note in ("No reference in this run", "No latency pass for: float, int8",
                 "Not drawn: No latency pass in this run.", "No COCO protocol stats",
                 "No STM32N6 figures", "Not drawn: No precision-recall curves"):  # fmt: skip
        assert note in markdown
    rows = md_table(markdown, "AP50: measured vs published")
    assert {r["AP50 published (model card) (%)"] for r in rows} == {"n/a"}
    assert "No latency pass in this run." in files.html.read_text()


def test_explicit_reference_wins(tmp_path: Path) -> None:
    files = render_report(validate(make_record()), tmp_path, reference=reference_for(
        "ssd_mobilenetv2_pt", "voc"))  # fmt: skip
    rows = md_table(files.markdown.read_text(), "AP50: measured vs published")
    st = next(r for r in rows if r["variant"] == "float" and r["protocol"] == "st")
    assert st["AP50 published (model card) (%)"] == "67.03"


@pytest.fixture
def main_with_report() -> Any:
    return cli.main


def test_cli_report(tmp_path: Path, main_with_report: Any, capsys: Any) -> None:
    run = write_run(tmp_path / "run", make_record())
    assert main_with_report(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.html").is_file()
    assert str(tmp_path / "out" / "report.html") in capsys.readouterr().out
    assert main_with_report(["report", str(run / "result.json")]) == 0  # default: run folder
    assert load_result(run).name == "fixture <run>" and (run / "report.md").is_file()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "malformed JSON at line 1"),
        (json.dumps({**make_record(), "schema_version": 9}), "schema_version 9 is not supported"),
        (
            json.dumps(make_record() | {"variants": {"x": {"detections": "d.json", "protocols": {
                "st": {"AP50": 1.5, "per_class": {}}}}}}),
            "AP50 must be a fraction in [0, 1], got 1.5",
        ),
        (json.dumps({**make_record(), "reference": {"model": "nope", "dataset": "coco"}}), "nope"),
    ],
)  # fmt: skip
def test_cli_bad_record(
    tmp_path: Path, main_with_report: Any, capsys: Any, content: str, message: str
) -> None:
    (tmp_path / "result.json").write_text(content)
    assert main_with_report(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evalkit report: error: ") and message in err


def test_malformed_optional_part_names_the_field(tmp_path: Path) -> None:
    data = make_record()
    del data["variants"]["int8"]["latency"]["summary"]
    with pytest.raises(InputError, match=r"variants\.int8\.latency: missing field 'summary'"):
        render_report(validate(data), tmp_path)
    data = make_record()
    data["variants"]["float"]["protocols"]["st"]["pr_curves"]["mean"] = [0.5]
    with pytest.raises(InputError, match=r"expected 101 precision values .* got 1 values"):
        render_report(validate(data), tmp_path)


def _run_rows(out: Path) -> dict[str, str]:
    frame = pd.read_csv(out / "run.csv", keep_default_na=False)
    return {str(f).strip(): str(v) for f, v in zip(frame["field"], frame["value"], strict=True)}


def test_card_figure_is_context_when_the_run_says_its_set_is_not_the_cards(
    tmp_path: Path,
) -> None:
    # the case: 128 train images set against the card's 5000 val2017 images
    data = make_record()
    why = "this run's split is 'train2017', the card's 'val2017'; 128 images scored, 5000 there"
    data["reference"] = {**REFERENCE, "comparable": False, "why": why}
    markdown = render_report(validate(data), tmp_path).markdown.read_text()
    rows = md_table(markdown, "AP50: measured vs published")
    st = [r for r in rows if r["protocol"] == "st"]
    assert st and all(r["AP50 published (model card) (%)"] != "n/a" for r in st)  # shown...
    assert {r["delta measured - published (AP pts)"] for r in rows} == {"n/a"}  # ...no delta
    assert f"not compared (no delta): {why}." in markdown
    run = _run_rows(tmp_path)
    assert run["compared with the card"] == f"no, context only: {why}"
    # a record that does not say whether it is comparable gets no delta either
    del data["reference"]["comparable"], data["reference"]["why"]
    markdown = render_report(validate(data), tmp_path / "old").markdown.read_text()
    rows = md_table(markdown, "AP50: measured vs published")
    assert {r["delta measured - published (AP pts)"] for r in rows} == {"n/a"}
    assert "does not record whether" in markdown


def test_provenance_rows_calibration_mapping_duplicates(tmp_path: Path) -> None:
    data = make_record()
    data["variants"]["int8"]["calibration"] = {
        "source": "calib/",
        "count": 4,
        "seed": 7,
        "warning": "only 4 calibration image(s)",
    }
    data["variants"]["int8"]["duplicate_detections"] = 3
    data["variants"]["float"]["class_mapping"] = "by name: 2 of 2 dataset classes"
    markdown = render_report(validate(data), tmp_path).markdown.read_text()
    assert "WARNING: only 4 calibration image(s)" in markdown
    run = _run_rows(tmp_path)
    assert run["int8: calibration"] == (
        "4 image(s) from calib/, seed 7 (WARNING: only 4 calibration image(s))"
    )
    assert run["int8: duplicate detections"].startswith("WARNING: 3 detection(s)")
    assert run["float: class mapping"] == "by name: 2 of 2 dataset classes"
    assert "float: calibration" not in run
