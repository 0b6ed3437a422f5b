"""Dataset manifests: the repository's files, schema errors, list/info, and verify."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import evalkit.cli as cli
from evalkit.datasets.manifest import MARKER_NAME, load_manifests
from evalkit.datasets.verify import verify_dataset
from evalkit.errors import InputError

CliRunner = Callable[[Sequence[str]], int]


@pytest.fixture
def run_cli() -> CliRunner:
    """``evalkit.cli.main``."""
    return cli.main


def make_tiny_coco(folder: Path, *, extra_images: Sequence[str] = ()) -> dict[str, Any]:
    """A COCO-layout set: images/ with real JPEGs, annotations/instances.json.

    Two annotated images (3 annotations: 2 person, 1 dog; 2 categories) plus ``extra_images``
    listed in the JSON with no annotation and no file written.
    """
    (folder / "images").mkdir(parents=True)
    (folder / "annotations").mkdir()
    pixels = np.zeros((8, 8, 3), np.uint8)
    for name in ("a.jpg", "b.jpg"):
        ok, encoded = cv2.imencode(".jpg", pixels)
        assert ok
        (folder / "images" / name).write_bytes(encoded.tobytes())
    names = ["a.jpg", "b.jpg", *extra_images]
    doc = {
        "images": [
            {"id": i + 1, "file_name": n, "width": 8, "height": 8} for i, n in enumerate(names)
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]},
            {"id": 2, "image_id": 1, "category_id": 18, "bbox": [1, 1, 4, 4]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [2, 2, 4, 4]},
        ],
    }
    (folder / "annotations" / "instances.json").write_text(json.dumps(doc))
    return doc


def manifest_doc(name: str, **changes: Any) -> dict[str, Any]:
    """A valid local COCO manifest for ``make_tiny_coco`` (2 images, 3 annotations)."""
    doc: dict[str, Any] = {
        "schema": 1,
        "name": name,
        "title": "tiny test set",
        "format": "coco",
        "files": [],
        "layout": {"images": "images", "annotations": "annotations/instances.json"},
        "expected": {"images": 2, "annotations": 3, "categories": 2},
    }
    doc.update(changes)
    return doc


def write_manifests(folder: Path, *docs: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        (folder / f"{doc['name']}.json").write_text(json.dumps(doc))
    return folder


# --- the repository's manifests -------------------------------------------------------------


def test_repository_manifests_hold_the_reference_figures() -> None:
    manifests = load_manifests()
    assert sorted(manifests.names()) == [
        "coco-person-val2017",
        "coco-val2017",
        "coco128",
        "voc2007-test",
    ]
    coco = manifests.get("coco-val2017")
    images, annotations = coco.files
    assert (images.url, images.bytes, images.md5, images.sha256) == (
        "http://images.cocodataset.org/zips/val2017.zip",
        815585330,
        "442b8da7639aecaf257c1dceb8ba8c80",
        "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05",
    )
    assert (annotations.url, annotations.bytes, annotations.md5, annotations.sha256) == (
        "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
        252907541,
        "f4bbac642086de4f52a3fdda2de5fa2c",
        "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268",
    )
    assert (coco.expected.images, coco.expected.annotations, coco.expected.categories) == (
        5000,
        36781,
        80,
    )
    assert images.digest == ("sha256", images.sha256)

    person = manifests.get("coco-person-val2017")
    assert (person.view, person.view_of, person.directory) == (
        "person",
        "coco-val2017",
        "coco-val2017",
    )
    assert person.files == coco.files and person.layout == coco.layout
    assert (person.expected.images, person.expected.annotations) == (None, None)

    voc = manifests.get("voc2007-test")
    (tar,) = voc.files
    assert (tar.md5, tar.sha256, tar.bytes, tar.archive) == (
        "b6e924de25625d8de591ea690078ad9f",
        None,
        None,
        "tar",
    )
    assert tar.digest == ("md5", "b6e924de25625d8de591ea690078ad9f")
    assert (voc.layout.split, voc.expected.images) == ("test", 4952)

    local = manifests.get("coco128")
    assert local.is_local
    assert (local.expected.images, local.expected.annotations) == (128, 939)


def test_list_and_info_render(run_cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert "coco-val2017" in out and "36781" in out and "view of coco-val2017" in out
    assert run_cli(["datasets", "info", "coco-val2017"]) == 0
    out = capsys.readouterr().out
    assert "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05" in out
    assert "815585330 bytes (777.8 MiB)" in out


def test_unknown_dataset_exit_2(run_cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["datasets", "info", "coco-val"]) == 2
    assert "unknown dataset 'coco-val'" in capsys.readouterr().err


def test_manifests_override(
    tmp_path: Path, run_cli: CliRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_manifests(tmp_path / "m", manifest_doc("mine"))
    assert run_cli(["datasets", "list", "--manifests", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "mine" in out and "coco-val2017" not in out


# --- schema errors --------------------------------------------------------------------------

_FILE = {
    "name": "x.zip",
    "url": "http://127.0.0.1:9/x.zip",
    "bytes": 10,
    "md5": "0" * 32,
    "archive": "zip",
}


def _with_file(**changes: Any) -> dict[str, Any]:
    spec = {**_FILE, **changes}
    return manifest_doc("bad", files=[{k: v for k, v in spec.items() if v is not None}])


def _without(key: str) -> dict[str, Any]:
    doc = manifest_doc("bad")
    del doc[key]
    return doc


def _expected(**changes: Any) -> dict[str, Any]:
    doc = manifest_doc("bad")
    doc["expected"] = {**doc["expected"], **changes}
    return doc


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ({**manifest_doc("bad"), "schema": 2}, "schema", "expected 1, got 2"),
        (manifest_doc("other"), "name", "expected 'bad' (the file name), got 'other'"),
        ({**manifest_doc("bad"), "titel": "x"}, "top level", "unknown field 'titel'"),
        (_without("title"), "title", "missing field"),
        (_without("expected"), "expected", "missing field (expected a JSON object)"),
        (_expected(images=-1), "expected.images", "expected an integer >= 0 or null, got -1"),
        (_expected(images="5000"), "expected.images", "got '5000'"),
        (
            {**manifest_doc("bad"), "expected": {"images": 1, "annotations": 1}},
            "expected.categories",
            "missing field (expected an integer >= 0, or null if unknown)",
        ),
        ({**manifest_doc("bad"), "format": "yolo"}, "format", "expected one of coco, voc"),
        (
            manifest_doc("bad", layout={"images": "/abs", "annotations": "a.json"}),
            "layout.images",
            "expected a path inside the dataset folder, got '/abs'",
        ),
        (
            manifest_doc("bad", format="voc"),
            "layout.split",
            "a VOC set needs its split name",
        ),
        (_with_file(md5="abc"), "files[0].md5", "expected 32 lowercase hex digits, got 'abc'"),
        (_with_file(sha256="A" * 64), "files[0].sha256", "expected 64 lowercase hex digits"),
        (_with_file(md5=None), "files[0]", "expected an md5 or a sha256"),
        (_with_file(sha265="0" * 64), "files[0]", "unknown field 'sha265'"),
        (_with_file(archive="rar"), "files[0].archive", "expected one of zip, tar, got 'rar'"),
        (_with_file(url="ftp://x/x.zip"), "files[0].url", "expected an http:// or https:// URL"),
        (_with_file(name="a/x.zip"), "files[0].name", "expected a plain file name"),
        (_with_file(extract_to="../up"), "files[0].extract_to", "inside the dataset folder"),
        (_with_file(bytes=1.5), "files[0].bytes", "expected an integer >= 0 or null, got 1.5"),
    ],
)
def test_schema_errors_name_file_field_and_expectation(
    tmp_path: Path, doc: dict[str, Any], field: str, message: str
) -> None:
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(InputError) as info:
        load_manifests(tmp_path)
    assert info.value.path == str(tmp_path / "bad.json")
    assert info.value.record == field
    assert message in info.value.problem


def test_view_errors(tmp_path: Path) -> None:
    base = manifest_doc("base")
    view = {k: v for k, v in manifest_doc("v").items() if k not in ("format", "files", "layout")}
    cases = [
        ({**view, "view": "person"}, "view", "'view' and 'view_of' go together"),
        ({**view, "view": "person", "view_of": "nope"}, "view_of", "got 'nope'"),
        ({**view, "view": "cat", "view_of": "base"}, "view", "expected one of person"),
        (
            {**view, "view": "person", "view_of": "base", "files": []},
            "files",
            "a view takes this from its base dataset",
        ),
    ]
    for doc, field, message in cases:
        folder = write_manifests(tmp_path / field / message[:8].replace(" ", "_"), base, doc)
        with pytest.raises(InputError) as info:
            load_manifests(folder)
        assert (info.value.record, info.value.path) == (field, str(folder / "v.json"))
        assert message in info.value.problem


def test_malformed_json_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match=r"bad\.json: malformed JSON at line 1"):
        load_manifests(tmp_path)
    with pytest.raises(InputError, match="manifest folder not found"):
        load_manifests(tmp_path / "absent")


# --- verify ---------------------------------------------------------------------------------


def test_verify_coco128(
    shared_dir: Path, run_cli: CliRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    result = verify_dataset(load_manifests().get("coco128"), shared_dir / "data")
    assert result.ok, result.to_dict()
    assert [(c.what, c.actual) for c in result.counts] == [
        ("images", 128),
        ("annotations", 939),
        ("categories", 80),
    ]
    assert result.images_checked == 128 and result.has_marker is None
    assert run_cli(["datasets", "verify", "coco128", "--root", str(shared_dir / "data")]) == 0
    assert "PASS" in capsys.readouterr().out


def test_verify_voc_sample(shared_dir: Path, tmp_path: Path) -> None:
    # The shared VOC2012 sample (100 images, 273 objects) checks the VOC path on real files.
    doc = manifest_doc(
        "voc_sample",
        format="voc",
        layout={
            "images": "VOCdevkit/VOC2012/JPEGImages",
            "annotations": "VOCdevkit/VOC2012",
            "split": "sample",
        },
        expected={"images": 100, "annotations": 273, "categories": 20},
    )
    manifest = load_manifests(write_manifests(tmp_path, doc)).get("voc_sample")
    result = verify_dataset(manifest, shared_dir / "data")
    assert result.ok, result.to_dict()


def test_verify_reports_missing_empty_and_unreadable(
    tmp_path: Path, run_cli: CliRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    make_tiny_coco(tmp_path / "data" / "tiny", extra_images=["gone.jpg", "zero.jpg", "junk.jpg"])
    (tmp_path / "data" / "tiny" / "images" / "zero.jpg").write_bytes(b"")
    (tmp_path / "data" / "tiny" / "images" / "junk.jpg").write_bytes(b"not a JPEG")
    folder = write_manifests(
        tmp_path / "m",
        manifest_doc("tiny", expected={"images": 5, "annotations": 3, "categories": 2}),
    )
    result = verify_dataset(load_manifests(folder).get("tiny"), tmp_path / "data")
    assert (result.missing, result.empty, result.unreadable) == (
        ("gone.jpg",),
        ("zero.jpg",),
        ("junk.jpg",),
    )
    assert all(c.ok for c in result.counts) and not result.ok
    # Without decoding, junk.jpg passes: it exists and is not empty.
    fast = verify_dataset(load_manifests(folder).get("tiny"), tmp_path / "data", decode=False)
    assert fast.unreadable == () and fast.missing == ("gone.jpg",)

    argv = ["datasets", "verify", "tiny", "--root", str(tmp_path / "data"), "--manifests"]
    assert run_cli([*argv, str(folder)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "missing: gone.jpg" in out and "unreadable: junk.jpg" in out
    assert run_cli([*argv, str(folder), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["empty"] == ["zero.jpg"]


def test_verify_count_mismatch_and_view(tmp_path: Path) -> None:
    make_tiny_coco(tmp_path / "data" / "tiny")
    wrong = manifest_doc("tiny", expected={"images": 2, "annotations": 4, "categories": None})
    view = {
        "schema": 1,
        "name": "tiny-person",
        "title": "person view",
        "view_of": "tiny",
        "view": "person",
        # Derived by hand from make_tiny_coco: person on images 1 and 2, 2 annotations.
        "expected": {"images": 2, "annotations": 2, "categories": 1},
    }
    manifests = load_manifests(write_manifests(tmp_path / "m", wrong, view))
    result = verify_dataset(manifests.get("tiny"), tmp_path / "data")
    assert not result.ok
    assert [(c.what, c.expected, c.actual, c.ok) for c in result.counts] == [
        ("images", 2, 2, True),
        ("annotations", 4, 3, False),
        ("categories", None, 2, True),
    ]
    person = verify_dataset(manifests.get("tiny-person"), tmp_path / "data")
    assert person.ok, person.to_dict()
    assert person.path == tmp_path / "data" / "tiny"


def test_verify_missing_folder_or_annotations(tmp_path: Path) -> None:
    manifests = load_manifests(write_manifests(tmp_path / "m", manifest_doc("tiny")))
    result = verify_dataset(manifests.get("tiny"), tmp_path / "data")
    assert not result.ok
    assert result.problems == (f"dataset folder not found: {tmp_path / 'data' / 'tiny'}",)
    (tmp_path / "data" / "tiny").mkdir(parents=True)
    result = verify_dataset(manifests.get("tiny"), tmp_path / "data")
    (problem,) = result.problems
    assert problem.startswith("annotations unusable:") and "file not found" in problem


def test_verify_notes_marker(tmp_path: Path) -> None:
    make_tiny_coco(tmp_path / "data" / "tiny")
    doc = manifest_doc("tiny", files=[copy.deepcopy(_FILE)])
    manifests = load_manifests(write_manifests(tmp_path / "m", doc))
    assert verify_dataset(manifests.get("tiny"), tmp_path / "data").has_marker is False
    (tmp_path / "data" / "tiny" / MARKER_NAME).write_text("{}")
    assert verify_dataset(manifests.get("tiny"), tmp_path / "data").has_marker is True
