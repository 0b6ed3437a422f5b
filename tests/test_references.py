"""The published figures: data files equal the reference tables cell by cell; loader, CLI,
errors."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalkit import cli
from evalkit.errors import InputError
from evalkit.references import (
    ORIGIN,
    DatasetReference,
    list_references,
    load_reference,
    load_references,
    read_reference_file,
    reference_for,
)
from evalkit.registry import UnknownNameError

from .conftest import REPO

DATA_DIR = REPO / "evalkit" / "references"
MAIN = "ssd_mobilenetv2_pt"
SIBLINGS = (
    "ssd_mobilenetv1_pt",
    "ssdlite_mobilenetv1_pt",
    "ssdlite_mobilenetv2_pt",
    "ssdlite_mobilenetv3large_pt",
    "ssdlite_mobilenetv3small_pt",
)
ZOO = "STMicroelectronics/stm32ai-modelzoo"


# --- every figure in the data files against docs/reference-pipeline.md section 1 ----------


def _section_1(doc: Path) -> str:
    text = doc.read_text(encoding="utf-8")
    start = text.index("## 1. Published figures")
    return text[start : text.index("\n## 2.", start)]


def _tables(section: str) -> Iterator[list[dict[str, str]]]:
    """Each markdown table of the section as rows keyed by its header cells."""
    lines = section.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("|"):
            i += 1
            continue
        block = []
        while i < len(lines) and lines[i].startswith("|"):
            block.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
            i += 1
        header, rows = block[0], block[2:]  # block[1] is the |---| rule
        yield [dict(zip(header, row, strict=True)) for row in rows]


def _table(section: str, *columns: str) -> list[dict[str, str]]:
    """The one table whose header is exactly ``columns`` (a new column fails loudly)."""
    found = [t for t in _tables(section) if t and tuple(t[0]) == columns]
    assert len(found) == 1, f"expected one table with columns {columns}, found {len(found)}"
    return found[0]


_N6_COLUMNS = (
    "dataset",
    "internal RAM KiB",
    "external RAM KiB",
    "weights flash KiB",
    "ms (STEdgeAI 3.0.0)",
    "inf/s",
    "ms (STEdgeAI 4.0.0)",
)
_SIBLING_COLUMNS = ("model", "COCO", "COCO-Person", "VOC", "N6 COCO", "N6 ms COCO / Person / VOC")


def _key(label: str) -> str:
    """Row label -> dataset key: 'COCO (val2017)' and 'COCO' -> coco, and so on."""
    return {"COCO": "coco", "COCO-Person": "coco_person", "VOC": "voc"}[label.split(" (")[0]]


def _expected(doc: Path) -> dict[str, dict[str, Any]]:
    """Every data file's content as the section's tables and sentences give it."""
    section = _section_1(doc)
    flat = " ".join(section.split())
    settings = re.search(
        r"EVAL_IOU (\S+), NMS_THRESH (\S+), SCORE_THRESH (\S+), MAX_DETECTIONS (\d+)\. "
        r"Input (\d+)x(\d+)x(\d+)\.",
        flat,
    )
    target = re.search(r"\((STM32N6570-DK), (int8), \"([^\"]+)\"\)", flat)
    coco_images = re.search(r"instances_val2017\.json`: (\d+) images", flat)
    voc_images = re.search(r"VOC2007 test: (\d+) images", flat)
    assert settings and target and coco_images and voc_images, "section 1 changed its wording"
    # COCO-Person is the person view of val2017 (sections 5 and 6); its size is not given.
    assert "also for COCO-Person" in doc.read_text(encoding="utf-8")
    iou, nms, score, max_dets, *shape = settings.groups()
    evaluation = {"eval_iou": iou, "nms_thresh": nms, "score_thresh": score}
    evaluation["max_detections"] = int(max_dets)

    descriptions: dict[str, dict[str, Any]] = {}
    ap_rows = _table(section, "dataset", "classes", "AP50 float", "AP50 int8")
    for row in ap_rows:
        name, _, split = row["dataset"].partition(" (")
        descriptions[_key(row["dataset"])] = {
            "name": name,
            "split": split.rstrip(")") or "val2017",
            "classes": int(row["classes"]),
            "images": None,
        }
    descriptions["coco"]["images"] = int(coco_images.group(1))
    descriptions["voc"]["images"] = int(voc_images.group(1))

    target_fields = dict(zip(("board", "precision", "configuration"), target.groups(), strict=True))

    def card(model: str, input_shape: list[int] | None, has_target: bool) -> dict[str, Any]:
        folder = f"object_detection/{model}"
        return {
            "schema": 1,
            "model": model,
            "source": {"repository": ZOO, "path": folder, "card": f"{folder}/README.md"},
            "evaluation": {**evaluation, "input_shape_hwc": input_shape},
            "n6_target": target_fields if has_target else None,
            "datasets": {},
        }

    def entry(key: str, ap: tuple[str, str], memory: list[Any], ms: Any, ips: Any) -> Any:
        names = ("internal_ram_kib", "external_ram_kib", "weights_flash_kib")
        return {
            "dataset": descriptions[key],
            "ap50": {"protocol": "st", "float": ap[0], "int8": ap[1]},
            "n6": {
                **dict(zip((*names, "memory_stedgeai_version"), memory, strict=True)),
                **{"latency_ms": ms, "inferences_per_s": ips},
            },
        }

    main = card(MAIN, [int(v) for v in shape], has_target=True)
    n6_rows = {_key(r["dataset"]): r for r in _table(section, *_N6_COLUMNS)}
    files: dict[str, dict[str, Any]] = {}
    for row in _table(section, "file", "bytes", "sha256"):
        if row["file"].endswith(".onnx"):
            precision = "int8" if row["file"].endswith("_qdq_int8.onnx") else "float"
            file = {"path": row["file"], "bytes": int(row["bytes"]), "sha256": row["sha256"]}
            files.setdefault(row["file"].split("/")[1], {})[precision] = file
    for row in ap_rows:
        key, n6 = _key(row["dataset"]), n6_rows[_key(row["dataset"])]
        memory = [n6["internal RAM KiB"], n6["external RAM KiB"], n6["weights flash KiB"], None]
        ms = {"3.0.0": n6["ms (STEdgeAI 3.0.0)"], "4.0.0": n6["ms (STEdgeAI 4.0.0)"]}
        # The inf/s column is 1000 / the 3.0.0 latency (6.31 = 1000 / 158.49).
        ap = (row["AP50 float"], row["AP50 int8"])
        main["datasets"][key] = entry(key, ap, memory, ms, {"3.0.0": n6["inf/s"]})
        main["datasets"][key]["files"] = files[key]
    out = {MAIN: main}
    assert "with STEdgeAI 3.0.0 on COCO" in flat
    for row in _table(section, *_SIBLING_COLUMNS):
        out[row["model"]] = sibling = card(row["model"], None, has_target=False)
        coco_memory = [*row["N6 COCO"].split(" / "), "3.0.0"]
        latencies = row["N6 ms COCO / Person / VOC"].split(" / ")
        for label, ms_cell in zip(("COCO", "COCO-Person", "VOC"), latencies, strict=True):
            key = _key(label)
            memory = coco_memory if key == "coco" else [None] * 4
            fp, int8 = row[label].split(" / ")
            sibling["datasets"][key] = entry(key, (fp, int8), memory, {"3.0.0": ms_cell}, None)
            sibling["datasets"][key]["files"] = None
    return out


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves by dotted path; numbers and strings as their text, so "2237.0" != "2237.00"."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        return {f"{prefix}[{i}]": _leaf(v) for i, v in enumerate(value)}
    return {prefix: _leaf(value)}


def _leaf(value: Any) -> Any:
    # Keep the YAML type visible: an unquoted 31.75 (float) must not pass as "31.75".
    return value if value is None or isinstance(value, str) else f"{type(value).__name__}:{value}"


def test_data_files_equal_reference_tables(shared_dir: Path) -> None:
    expected = _expected(shared_dir / "docs" / "reference-pipeline.md")
    assert sorted(expected) == sorted([MAIN, *SIBLINGS])
    # The other families' cards are checked against their own table (zoo_family_cards.tsv).
    shipped = {p.stem for p in DATA_DIR.glob("*.yaml")} - set(FAMILIES)
    assert sorted(shipped) == sorted(expected)
    for model, card in expected.items():
        want = _flat(card)
        got = _flat(yaml.safe_load((DATA_DIR / f"{model}.yaml").read_text(encoding="utf-8")))
        wrong = [
            f"{model}: {k}: file {got.get(k, '<absent>')!r}, table {want.get(k, '<absent>')!r}"
            for k in sorted(set(want) | set(got))
            if got.get(k, "<absent>") != want.get(k, "<absent>")
        ]
        assert not wrong, "\n".join(wrong)


def test_api_values_equal_reference_tables(shared_dir: Path) -> None:
    """The loaded records carry the same figures (as Decimal and as fractions)."""
    expected = _expected(shared_dir / "docs" / "reference-pipeline.md")
    for model, card in expected.items():
        ref = load_reference(model)
        for key, entry in card["datasets"].items():
            d = ref.dataset(key)
            for precision in ("float", "int8"):
                published = Decimal(entry["ap50"][precision])
                assert getattr(d, f"ap50_{precision}_percent") == published
                assert d.ap50(precision) == float(published / 100)
            assert d.n6 is not None
            assert {v: str(x) for v, x in d.n6.latency_ms.items()} == entry["n6"]["latency_ms"]


# --- loader and API (no shared folder needed) ----------------------------------------------


# evalkit's own demo model has a card too (evalkit demo is reproduce on it), kept beside it.
DEMO = "ssd_mobilenetv2_demo"


FAMILY_TABLE = REPO / "tests" / "fixtures" / "zoo_family_cards.tsv"


def _family_rows() -> list[dict[str, str]]:
    lines = [
        line.split("\t")
        for line in FAMILY_TABLE.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    return [dict(zip(lines[0], row, strict=True)) for row in lines[1:]]


FAMILIES = tuple(dict.fromkeys(row["model"] for row in _family_rows()))


def _cell(value: Decimal | None) -> str:
    return "-" if value is None else str(value)


@pytest.mark.parametrize("row", _family_rows(), ids=lambda r: f"{r['model']}-{r['dataset']}")
def test_family_cards_equal_the_transcribed_readme_tables(row: dict[str, str]) -> None:
    """Every figure of the families' cards, cell by cell, against the table transcribed
    once from the zoo's READMEs (tests/fixtures/zoo_family_cards.tsv)."""
    ref = load_reference(row["model"])
    assert ref.source_commit == row["commit"]
    assert ref.source.card == f"object_detection/{row['readme']}/README.md"
    label = f"{row['dataset']}@{row['resolution']}"
    label += "" if row["variant"] == "-" else f"/{row['variant']}"
    entry = ref.dataset(label)
    assert (entry.key, entry.resolution) == (row["dataset"], int(row["resolution"]))
    assert entry.variant == (None if row["variant"] == "-" else row["variant"])
    assert _cell(entry.ap50_float_percent) == row["float"]
    assert _cell(entry.ap50_int8_percent) == row["int8"]
    n6 = entry.n6
    if row["internal_kib"] == "-" and row["ms"] == "-":
        assert n6 is None
        return
    assert n6 is not None
    assert _cell(n6.internal_ram_kib) == row["internal_kib"]
    assert _cell(n6.external_ram_kib) == row["external_kib"]
    assert _cell(n6.weights_flash_kib) == row["weights_kib"]
    assert (n6.memory_stedgeai_version or "-") == row["memory_version"]
    assert {k: str(v) for k, v in n6.latency_ms.items()} == {row["latency_version"]: row["ms"]}
    assert {k: str(v) for k, v in n6.inferences_per_s.items()} == {
        row["latency_version"]: row["inf_per_s"]
    }


def test_family_cards_hold_no_row_the_table_lacks() -> None:
    table = {(r["model"], r["dataset"], r["resolution"], r["variant"]) for r in _family_rows()}
    for model in FAMILIES:
        for entry in load_reference(model).all_rows():
            key = (model, entry.key, str(entry.resolution), entry.variant or "-")
            assert key in table, key


def test_every_family_of_the_zoo_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert len({MAIN, *SIBLINGS, *FAMILIES}) == 15  # the SSDs and the nine other families
    assert cli.main(["references"]) == 0
    overview = capsys.readouterr().out
    for model in (MAIN, *SIBLINGS, *FAMILIES):
        assert f"\n{model} " in overview
    assert cli.main(["references", "st_yoloxn"]) == 0
    card = capsys.readouterr().out
    assert "coco_person@256/d050_w040" in card and "51.07" in card and "2414.64" in card


def test_a_row_is_picked_by_resolution_and_an_unknown_one_is_named() -> None:
    ref = load_reference("st_yolodv2tiny_pt")
    assert ref.dataset("coco_person").resolution == 192  # the headline row
    assert str(ref.dataset("coco_person@288").ap50_int8_percent) == "70.72"
    with pytest.raises(UnknownNameError, match="coco_person@288"):
        ref.dataset("coco_person@289")


def test_rows_and_single_figures_are_not_mixed(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "evalkit/references/yolo26n.yaml").read_text())
    data["datasets"]["coco_person"]["ap50"] = {"protocol": "st", "float": "1", "int8": "1"}
    path = tmp_path / "yolo26n.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="either rows or ap50"):
        read_reference_file(path)


def test_list_references() -> None:
    assert list_references() == tuple(sorted([MAIN, *SIBLINGS, *FAMILIES, DEMO]))
    assert tuple(load_references().names()) == list_references()
    assert load_reference(DEMO).origin != ORIGIN  # not the zoo's
    assert all(load_reference(m).origin == ORIGIN for m in (MAIN, *SIBLINGS, *FAMILIES))


def test_package_data_ships_the_demo_card() -> None:
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "*.yaml" in config["tool"]["setuptools"]["package-data"]["evalkit.demo_model"]


def test_main_model_records() -> None:
    ref = load_reference(MAIN)
    assert ref.model == MAIN and ref.path == DATA_DIR / f"{MAIN}.yaml"
    assert ref.source.card == f"object_detection/{MAIN}/README.md"
    assert ref.evaluation.score_thresh == Decimal("0.001")
    assert ref.evaluation.max_detections == 100
    assert ref.evaluation.input_shape_hwc == (300, 300, 3)
    assert ref.n6_target is not None and ref.n6_target.board == "STM32N6570-DK"
    coco = ref.dataset("coco")
    assert coco.protocol == "st"
    assert coco.ap50_float_percent == Decimal("31.75")
    # 31.75 / 100 is exactly 0.3175 in Decimal; its float is the double nearest 0.3175.
    assert coco.ap50_float == 0.3175 and coco.ap50_int8 == 0.3129
    assert coco.n6 is not None and dict(coco.n6.latency_ms) == {
        "3.0.0": Decimal("158.49"),
        "4.0.0": Decimal("157.17"),
    }
    assert coco.files["float"].bytes == 79684743
    voc = ref.dataset("voc")
    assert voc.n6 is not None and str(voc.n6.internal_ram_kib) == "2237.00"  # digits kept
    assert voc.dataset.images == 4952
    assert ref.dataset("coco_person").dataset.images is None


def test_sibling_unknowns_are_null() -> None:
    ref = load_reference("ssdlite_mobilenetv3small_pt")
    assert ref.n6_target is None and ref.evaluation.input_shape_hwc is None
    person = ref.dataset("coco_person")
    assert person.n6 is not None and person.n6.internal_ram_kib is None
    assert dict(person.n6.inferences_per_s) == {} and dict(person.files) == {}
    coco = ref.dataset("coco")
    assert coco.n6 is not None and coco.n6.external_ram_kib == Decimal("0")
    assert coco.n6.memory_stedgeai_version == "3.0.0"


def test_reference_for_and_to_dict() -> None:
    d = reference_for(MAIN, "coco_person")
    assert isinstance(d, DatasetReference) and d.key == "coco_person"
    out = json.loads(json.dumps(d.to_dict()))
    assert out["origin"] == ORIGIN
    assert out["ap50_float_percent"] == 41.91 and out["ap50_float"] == 0.4191
    assert out["n6"]["latency_ms"] == {"3.0.0": 126.19, "4.0.0": 125.87}
    assert out["files"]["int8"]["sha256"].startswith("01e4bc38")
    full = json.loads(json.dumps(load_reference(MAIN).to_dict()))
    assert full["evaluation"]["input_shape_hwc"] == [300, 300, 3]
    assert full["datasets"]["voc"]["ap50_int8"] == 0.6691
    assert full["path"].endswith(f"{MAIN}.yaml")


def test_unknown_model_and_dataset_name_near_match() -> None:
    with pytest.raises(UnknownNameError) as exc:
        load_reference("ssd_mobilenetv2")
    assert "did you mean 'ssd_mobilenetv2_pt'" in str(exc.value)
    assert all(name in str(exc.value) for name in (MAIN, *SIBLINGS))
    with pytest.raises(UnknownNameError) as exc:
        reference_for(MAIN, "coco-person")
    assert "known: coco, coco_person, voc" in str(exc.value)
    assert "did you mean 'coco_person'" in str(exc.value)


# --- malformed data files -------------------------------------------------------------------

MAIN_TEXT = (DATA_DIR / f"{MAIN}.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("old", "new", "field", "problem"),
    [
        ('float: "31.75"', "float: 31.75", "datasets.coco.ap50.float", "quoted"),
        ('kib: "2237.00"', 'kib: "2,237.00"', "datasets.voc.n6.internal_ram_kib", "decimal"),
        ('"158.49"', '"1.5849e2"', "datasets.coco.n6.latency_ms.3.0.0", "decimal"),
        ('{"3.0.0": "6.31"}', '{"3.0": "6.31"}', "inferences_per_s", "version"),
        ("bytes: 79684743", "bytes: -1", "datasets.coco.files.float.bytes", "positive"),
        ("bytes: 79684743", "bytes: true", "datasets.coco.files.float.bytes", "integer"),
        ('"11a48c', '"11A48C', "datasets.coco.files.float.sha256", "hex"),
        ("protocol: st,", "protocol: stt,", "datasets.coco.ap50.protocol", "known: "),
        ("  voc:\n", "  vocc:\n", "datasets.vocc", "expected only: coco"),
        ("classes: 80, ", "", "datasets.coco.dataset.classes", "missing field"),
        ("eval_iou:", "eval_iuo:", "evaluation.eval_iuo", "unknown field"),
        ("model: ssd_mobilenetv2_pt", "model: other", "model", "file name"),
        ("schema: 1", "schema: 2", "schema", "expected 1"),
        ("[300, 300, 3]", "[300, 300]", "evaluation.input_shape_hwc", "[H, W, C]"),
        ('int8: "31.29"}', 'float: "31.29"}', "line ", "duplicate key 'float'"),
        ("  coco:\n", "  coco: [\n", None, "malformed YAML"),
    ],
)
def test_malformed_file_names_file_and_field(
    tmp_path: Path, old: str, new: str, field: str | None, problem: str
) -> None:
    assert old in MAIN_TEXT
    path = tmp_path / f"{MAIN}.yaml"
    path.write_text(MAIN_TEXT.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(InputError) as exc:
        read_reference_file(path)
    assert exc.value.path == str(path)
    if field is not None:
        assert field in str(exc.value.record)
    assert problem in exc.value.problem


def test_malformed_file_in_a_folder_fails_the_load(tmp_path: Path) -> None:
    shutil.copy(DATA_DIR / f"{MAIN}.yaml", tmp_path)
    assert load_references(tmp_path).names() == (MAIN,)
    (tmp_path / "broken.yaml").write_text("schema: 1\nmodel: broken\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"broken\.yaml: source: expected a mapping"):
        load_references(tmp_path)
    with pytest.raises(InputError, match="file not found"):
        read_reference_file(tmp_path / "absent.yaml")


def test_package_data_ships_the_yaml_files() -> None:
    """A wheel without the data files would load no references at all."""
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = config["tool"]["setuptools"]["package-data"]
    assert "*.yaml" in package_data.get("evalkit.references", [])


# --- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def run_cli() -> Callable[[list[str]], int]:
    """``evalkit.cli.main`` running ``evalkit references``."""
    return lambda argv: cli.main(["references", *argv])


def test_cli_overview(
    run_cli: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli([]) == 0
    out = capsys.readouterr().out
    assert out.startswith(ORIGIN)
    assert "coco_person float" in out and "protocol st" in out
    line = next(row for row in out.splitlines() if row.startswith(f"{MAIN} "))
    assert line.split()[1:8] == ["300", "31.75", "31.29", "41.91", "41.74", "67.03", "66.91"]
    assert len([row for row in out.splitlines() if row.startswith("ssd")]) == 6
    # The demo model's card is named below the zoo's table, not mixed into it.
    assert out.rstrip().splitlines()[-1].startswith(f"Also: {DEMO} (recorded with evalkit")


def test_cli_overview_of_a_dataset_only_the_demo_has(
    run_cli: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["--dataset", "shapes"]) == 0
    assert capsys.readouterr().out.startswith(f"Also: {DEMO} ")
    assert run_cli(["--dataset", "shapes", "--json"]) == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)] == [DEMO]
    assert run_cli(["--dataset", "vocc"]) == 2
    assert "did you mean 'voc'" in capsys.readouterr().err


def test_cli_overview_one_dataset(
    run_cli: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["--dataset", "voc"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith(f"{MAIN} "))
    assert line.split()[1:] == ["67.03", "66.91", "135.06", "134.64"]
    sibling = next(row for row in out.splitlines() if row.startswith("ssdlite_mobilenetv2_pt "))
    assert sibling.split()[1:] == ["70.17", "70.07", "118.10", "-"]


def test_cli_card(run_cli: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli([MAIN]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{MAIN}: {ORIGIN}")
    assert "ms (STEdgeAI 3.0.0)" in out and "ms (STEdgeAI 4.0.0)" in out
    assert "STM32N6570-DK, int8, default STEdgeAI Core configuration" in out
    voc = next(row for row in out.splitlines() if row.startswith("voc ") and "2237.00" in row)
    cells = ["2237.00", "2109.38", "10898.69", "not", "stated", "135.06", "134.64", "7.40"]
    assert voc.split()[1:] == cells
    assert "d4a378521258099feab59ed6fbab5f27ab78203e2487cb52ad5153c2d908a812" in out
    assert "EVAL_IOU 0.5, NMS_THRESH 0.5, SCORE_THRESH 0.001, MAX_DETECTIONS 100" in out


def test_cli_json(run_cli: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli([MAIN, "--dataset", "coco", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == reference_for(MAIN, "coco").to_dict()
    assert run_cli(["--json"]) == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)] == list(list_references())


@pytest.mark.parametrize(
    ("argv", "hint"),
    [(["ssd_mobilenet_v2_pt"], "'ssd_mobilenetv2_pt'"), ([MAIN, "--dataset", "vocc"], "'voc'")],
)
def test_cli_unknown_name_exit_2(
    run_cli: Callable[[list[str]], int],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    hint: str,
) -> None:
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert f"did you mean {hint}?" in err and "known:" in err
