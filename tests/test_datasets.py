"""Loaders on real data (coco128, its person view, the VOC sample) and their bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from evalkit.datasets.classes import canonical_class_name, map_classes
from evalkit.datasets.coco import parse_coco_ground_truth
from evalkit.datasets.dataset import DATASETS, open_coco, open_voc
from evalkit.datasets.views import person_view
from evalkit.datasets.voc import VOC_CLASSES, load_voc_ground_truth
from evalkit.errors import InputError


def _coco128(shared_dir: Path) -> tuple[Path, Path]:
    root = shared_dir / "data" / "coco128"
    return root / "annotations" / "instances_train2017.json", root / "images"


def test_coco128_counts(shared_dir: Path) -> None:
    ann, images = _coco128(shared_dir)
    ds = open_coco(ann, images)
    gt = ds.ground_truth
    assert len(ds) == 128
    assert gt.num_annotations == 939
    assert int(gt.iscrowd.sum()) == 10
    assert len(set(gt.category_index.tolist())) == 71
    assert len(ds.classes) == 80
    assert ds.skipped == ()


def test_coco128_person_view(shared_dir: Path) -> None:
    ann, images = _coco128(shared_dir)
    full = open_coco(ann, images).ground_truth
    ds = open_coco(ann, images, view="person")
    gt = ds.ground_truth
    # Counted independently from the raw JSON: person annotations and their images.
    raw = json.loads(ann.read_text())
    person_id = next(c["id"] for c in raw["categories"] if c["name"] == "person")
    person_anns = [a for a in raw["annotations"] if a["category_id"] == person_id]
    person_images = {a["image_id"] for a in person_anns}
    assert (len(person_anns), len(person_images)) == (259, 61)
    assert gt.num_annotations == len(person_anns)
    assert len(gt.images) == len(person_images)
    assert {im.image_id for im in gt.images} == person_images
    assert ds.classes == ("person",)
    # Image order is the file's order, restricted to person images.
    expected_order = [im.image_id for im in full.images if im.image_id in person_images]
    assert [im.image_id for im in gt.images] == expected_order
    assert gt.annotation_id.tolist() == [a["id"] for a in person_anns]
    via_registry = DATASETS.get("coco-person")(ann, images).ground_truth
    assert via_registry.annotation_id.tolist() == gt.annotation_id.tolist()
    assert via_registry.images == gt.images


def test_every_real_image_decodes_at_its_annotated_size(shared_dir: Path) -> None:
    ann, images = _coco128(shared_dir)
    assert open_coco(ann, images, check="decode").skipped == ()
    year = shared_dir / "data" / "voc_sample" / "VOCdevkit" / "VOC2012"
    assert open_voc(year, "sample", check="decode").skipped == ()


def test_voc_sample_counts(shared_dir: Path) -> None:
    year = shared_dir / "data" / "voc_sample" / "VOCdevkit" / "VOC2012"
    ds = open_voc(year, "sample")
    gt = ds.ground_truth
    assert len(ds) == 100
    assert gt.num_annotations == 273
    assert int(gt.difficult.sum()) == 38
    assert ds.classes == VOC_CLASSES
    assert set(gt.category_index.tolist()) == set(range(20))
    # Counted independently from the XML files of the split.
    import xml.etree.ElementTree as ET

    names = (year / "ImageSets" / "Main" / "sample.txt").read_text().split()
    flags = [
        obj.findtext("truncated", "0").strip() == "1"
        for name in names
        for obj in ET.parse(year / "Annotations" / f"{name}.xml").getroot().iter("object")
    ]
    assert gt.truncated.tolist() == flags
    assert sum(flags) > 0


def test_annotations_of_keeps_file_order() -> None:
    data = {
        "images": [{"id": 5, "width": 10, "height": 10}, {"id": 2, "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]},
            {"id": 2, "image_id": 5, "category_id": 1, "bbox": [1, 1, 2, 2]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [2, 2, 3, 3]},
        ],
    }
    from evalkit.datasets.dataset import Dataset

    ds = Dataset("t", parse_coco_ground_truth(data), Path("."))
    np.testing.assert_array_equal(ds.annotations_of(1).boxes_xywh_px, [[0, 0, 1, 1], [2, 2, 3, 3]])
    np.testing.assert_array_equal(ds.annotations_of(0).boxes_xywh_px, [[1, 1, 2, 2]])


def _small_coco(tmp_path: Path, shared_dir: Path, n: int = 3) -> tuple[Path, Path, dict]:
    ann, images = _coco128(shared_dir)
    raw = json.loads(ann.read_text())
    keep = raw["images"][:n]
    ids = {im["id"] for im in keep}
    data = {
        "images": keep,
        "categories": raw["categories"],
        "annotations": [a for a in raw["annotations"] if a["image_id"] in ids],
    }
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    for im in keep:
        shutil.copy(images / im["file_name"], img_dir / im["file_name"])
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, img_dir, data


def test_missing_image_is_an_error_or_recorded_skip(tmp_path: Path, shared_dir: Path) -> None:
    path, img_dir, data = _small_coco(tmp_path, shared_dir)
    victim = data["images"][1]
    (img_dir / victim["file_name"]).unlink()
    with pytest.raises(InputError, match="image file not found") as info:
        open_coco(path, img_dir)
    assert victim["file_name"] in str(info.value)
    assert f"image id {victim['id']}" in str(info.value)
    ds = open_coco(path, img_dir, skip_bad=True)
    assert len(ds) == 2
    assert [(s.image_id, s.reason) for s in ds.skipped] == [(victim["id"], "image file not found")]
    assert victim["id"] not in {im.image_id for im in ds.images}


def test_truncated_jpeg_is_reported(tmp_path: Path, shared_dir: Path) -> None:
    path, img_dir, data = _small_coco(tmp_path, shared_dir)
    victim = img_dir / data["images"][0]["file_name"]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(InputError) as info:
        open_coco(path, img_dir, check="decode")
    assert victim.name in str(info.value)
    ds = open_coco(path, img_dir, check="decode", skip_bad=True)
    assert [s.image_id for s in ds.skipped] == [data["images"][0]["id"]]


def test_size_mismatch_is_reported(tmp_path: Path, shared_dir: Path) -> None:
    path, img_dir, data = _small_coco(tmp_path, shared_dir)
    data["images"][2]["width"] += 1
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="but its annotation says"):
        open_coco(path, img_dir)


def test_box_outside_image_is_an_error(tmp_path: Path, shared_dir: Path) -> None:
    path, img_dir, data = _small_coco(tmp_path, shared_dir)
    ann = data["annotations"][0]
    width = next(im["width"] for im in data["images"] if im["id"] == ann["image_id"])
    ann["bbox"] = [width - 5.0, 0.0, 20.0, 10.0]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=f"annotation id {ann['id']}: box .* lies outside"):
        open_coco(path, img_dir, check="none")


def _voc_tree(tmp_path: Path, xml_body: str) -> Path:
    year = tmp_path / "VOC2007"
    (year / "Annotations").mkdir(parents=True)
    (year / "ImageSets" / "Main").mkdir(parents=True)
    (year / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    (year / "Annotations" / "000001.xml").write_text(xml_body)
    return year


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "<annotation><size><width>10</width><height>10</height></size><object><name>dog</name>"
            "</object></annotation>",
            "object 0: missing <bndbox>",
        ),
        ("<annotation><size><width>10</width></size></annotation>", "size: missing <height>"),
        (
            "<annotation><size><width>10</width><height>10</height></size><object><name>dragon"
            "</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox>"
            "</object></annotation>",
            "object 0: unknown class 'dragon'",
        ),
        (
            "<annotation><size><width>10</width><height>10</height></size><object><name>dog</name>"
            "<bndbox><xmin>5</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>"
            "</annotation>",
            "object 0: box has negative size",
        ),
        ("<annotation><size>", "malformed XML"),
    ],
)
def test_voc_xml_errors(tmp_path: Path, body: str, message: str) -> None:
    year = _voc_tree(tmp_path, body)
    with pytest.raises(InputError, match=message) as info:
        load_voc_ground_truth(year, "test")
    assert "000001.xml" in str(info.value)


def test_voc_missing_split(tmp_path: Path) -> None:
    year = _voc_tree(tmp_path, "<annotation/>")
    with pytest.raises(InputError, match=r"ImageSets/Main/val\.txt"):
        load_voc_ground_truth(year, "val")


def test_person_view_needs_a_person_category() -> None:
    gt = parse_coco_ground_truth(
        {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}
    )
    with pytest.raises(InputError, match="no category named 'person'"):
        person_view(gt)


def test_class_mapping_coco_to_voc(shared_dir: Path) -> None:
    raw = json.loads(_coco128(shared_dir)[0].read_text())
    coco_names = [c["name"] for c in raw["categories"]]
    mapping = map_classes(coco_names, VOC_CLASSES)
    # Every VOC class has a COCO counterpart (six of them through the aliases).
    assert sorted(mapping.model_to_dataset.values()) == list(range(20))
    assert mapping.unmatched_dataset_classes == ()
    assert len(mapping.dropped_model_classes) == 60
    assert "giraffe" in mapping.dropped_model_classes
    assert mapping.model_to_dataset[coco_names.index("couch")] == VOC_CLASSES.index("sofa")
    assert mapping.model_to_dataset[coco_names.index("tv")] == VOC_CLASSES.index("tvmonitor")
    assert "60 model classes" not in mapping.describe()
    assert mapping.describe().startswith("20 model classes mapped; dropped (not in the dataset)")


def test_canonical_names() -> None:
    assert canonical_class_name(" Dining  Table ") == "diningtable"
    assert canonical_class_name("airplane") == canonical_class_name("aeroplane")
    assert map_classes(["person", "car"], ["person"]).dropped_model_classes == ("car",)
