"""Issue cases of the zoo profile's inputs: decoded sizes that differ from the annotation,
VOC objects of unknown classes, XML without <difficult>, changed images in the cache."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from evalkit.datasets.voc import load_voc_ground_truth
from evalkit.errors import InputError
from evalkit.pipeline.config import RunConfig
from evalkit.pipeline.inputs import with_decoded_sizes, zoo_batches
from evalkit.pipeline.run import run
from evalkit.types import Category, GroundTruth, ImageRecord


def _voc(tmp_path: Path, objects: str) -> Path:
    year = tmp_path / "VOC2007"
    (year / "Annotations").mkdir(parents=True)
    (year / "ImageSets" / "Main").mkdir(parents=True)
    (year / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    (year / "Annotations" / "000001.xml").write_text(
        f"<annotation><size><width>50</width><height>40</height></size>{objects}</annotation>"
    )
    return year


def _obj(name: str, extra: str = "") -> str:
    return (
        f"<object><name>{name}</name>{extra}<bndbox><xmin>2</xmin><ymin>3</ymin>"
        "<xmax>20</xmax><ymax>30</ymax></bndbox></object>"
    )


def test_voc_names_are_stripped_and_lower_cased(tmp_path: Path) -> None:
    year = _voc(tmp_path, _obj("  Dog "))
    gt = load_voc_ground_truth(year, "test", ("dog", "cat"))
    assert gt.category_index.tolist() == [0]


def test_voc_difficult_is_an_integer_and_absent_means_zero(tmp_path: Path) -> None:
    body = (
        _obj("dog")
        + _obj("dog", "<difficult>2</difficult>")
        + _obj("dog", "<difficult>0</difficult>")
    )
    gt = load_voc_ground_truth(_voc(tmp_path, body), "test", ("dog",))
    assert gt.difficult.tolist() == [False, True, False]
    bad = _voc(tmp_path / "b", _obj("dog", "<difficult>yes</difficult>"))
    with pytest.raises(InputError, match=r"<difficult> must be an integer, got 'yes'") as info:
        load_voc_ground_truth(bad, "test", ("dog",))
    assert "000001.xml" in str(info.value) and "object 0" in str(info.value)


def test_voc_unknown_class_is_an_error_unless_ignored(tmp_path: Path) -> None:
    year = _voc(tmp_path, _obj("dog") + _obj("dragon"))
    with pytest.raises(InputError, match=r"unknown class 'dragon' in image '000001'") as info:
        load_voc_ground_truth(year, "test", ("dog",))
    assert "000001.xml" in str(info.value) and "object 1" in str(info.value)
    ignored: dict[str, int] = {}
    gt = load_voc_ground_truth(year, "test", ("dog",), ignore_classes=("Dragon",), ignored=ignored)
    assert gt.num_annotations == 1 and ignored == {"dragon": 1}


def _gt(sizes: list[tuple[int, int]], annotated: list[int]) -> GroundTruth:
    n = len(annotated)
    return GroundTruth(
        images=tuple(ImageRecord(i + 1, f"{i}.jpg", w, h) for i, (w, h) in enumerate(sizes)),
        categories=(Category(1, "a"),),
        image_index=np.array(annotated),
        category_index=np.zeros(n, np.int64),
        boxes_xywh_px=np.tile([1.0, 1.0, 5.0, 5.0], (n, 1)),
        area=np.full(n, 25.0),
        iscrowd=np.zeros(n, bool),
        difficult=np.zeros(n, bool),
        annotation_id=np.arange(1, n + 1),
    )


def test_decoded_sizes_replace_annotated_ones_for_st() -> None:
    gt = _gt([(100, 80), (60, 40)], [0, 1])
    scaled = with_decoded_sizes(gt, {1: (120, 80)})
    assert [(im.width, im.height) for im in scaled.images] == [(100, 80), (120, 80)]
    assert [(im.width, im.height) for im in gt.images] == [(100, 80), (60, 40)]


def test_zoo_batches_put_annotated_images_first() -> None:
    gt = _gt([(10, 10)] * 7, [0, 2, 2, 3, 6])
    assert zoo_batches(gt, list(range(7)), 2) == [[0, 2], [3, 6], [1, 4], [5]]


def test_size_mismatch_and_changed_image_are_reported(
    small_set: tuple[Path, RunConfig],
) -> None:
    """A run records images whose decoded size differs from the annotation, and an image
    edited in place (same name, same size) is predicted again, not served from the cache."""
    tmp_path, config = small_set
    ann = json.loads(Path(config.dataset.annotations).read_text())
    ann["images"][0]["width"] += 10  # the annotation now says another size
    edited = tmp_path / "instances.json"
    edited.write_text(json.dumps(ann))
    config = replace(config, dataset=replace(config.dataset, annotations=str(edited)))
    logs: list[str] = []
    first = run(config, log=logs.append).record
    mismatches = first.dataset.size_mismatches or ()
    assert len(mismatches) == 1 and mismatches[0]["image_id"] == ann["images"][0]["id"]
    assert mismatches[0]["decoded"][0] == mismatches[0]["annotated"][0] - 10
    assert "zoo's rule" in (first.variants["float"].decoder or {})["why"]  # no names were given
    # Edit one image in place: same name, same size, other pixels.
    image = Path(config.dataset.images) / ann["images"][1]["file_name"]
    cv2.imwrite(str(image), 255 - cv2.imread(str(image)))
    logs.clear()
    second = run(config, log=logs.append).record
    timings = second.variants["float"].timings
    assert timings.changed_images == 1 and timings.images == 1
    assert any("1 image(s) changed" in line for line in logs)


def test_images_that_fail_to_decode_during_the_run(small_set: tuple[Path, RunConfig]) -> None:
    """Two JPEGs cut short (their headers still read, so the open-time check passes): the
    run names both in one error, keeps the other predictions cached; with skip_bad they are
    recorded skips and the metrics cover the four images left."""
    _, config = small_set
    ann = json.loads(Path(config.dataset.annotations).read_text())
    names = [im["file_name"] for im in ann["images"]]
    for name in names[1:3]:
        path = Path(config.dataset.images) / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=r"2 bad image\(s\)") as info:
        run(config, log=lambda _: None)
    assert names[1] in str(info.value) and names[2] in str(info.value)
    cache = Path(config.output) / "cache" / "float.jsonl"
    assert len(cache.read_text().splitlines()) == 1 + 4  # header + the four good images
    skipping = replace(config, dataset=replace(config.dataset, skip_bad=True))
    record = run(skipping, log=lambda _: None).record
    assert record.dataset.num_images == 4
    skipped = {s.path.rsplit("/", 1)[-1] for s in record.dataset.skipped}
    assert skipped == set(names[1:3])
    assert record.variants["float"].timings.cached_images == 4  # nothing recomputed
