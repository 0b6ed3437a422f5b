"""The synthetic shapes dataset: determinism, reuse, both layouts and their agreement.

Provenance: every dataset here is written by ``evalkit.datasets.synthetic.generate`` into a
pytest temporary folder; nothing is committed.
"""

from __future__ import annotations

import hashlib
import json
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from evalkit.datasets.coco import load_coco_ground_truth
from evalkit.datasets.synthetic import (
    DEFAULT_CLASSES,
    MANIFEST_NAME,
    SPLITS,
    Split,
    SyntheticDataset,
    generate,
)
from evalkit.datasets.synthetic_render import HEAVY_OCCLUSION, SHAPES, render_scene
from evalkit.datasets.voc import load_voc_ground_truth
from evalkit.errors import InputError

SMALL: dict[str, Any] = {"num_train": 24, "num_val": 8, "seed": 7}


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticDataset, float]:
    """The demo-sized dataset (300 train + 100 val at 320x240), and the CPU seconds it took.

    CPU time of this process (all its threads), not wall time: other jobs sharing the
    machine then cannot make the speed test flaky.
    """
    root = tmp_path_factory.mktemp("synthetic") / "shapes"
    start = time.process_time()
    dataset = generate(root, num_train=300, num_val=100, seed=0)
    return dataset, time.process_time() - start


def _coco(dataset: SyntheticDataset, split: Split) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(dataset.coco_annotation_file(split).read_text())
    return parsed


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _mtimes(root: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    generate(tmp_path / "a", **SMALL)
    generate(tmp_path / "b", **SMALL)
    first, second = _file_hashes(tmp_path / "a"), _file_hashes(tmp_path / "b")
    assert first == second
    manifest = json.loads((tmp_path / "a" / MANIFEST_NAME).read_text())
    assert manifest["files"] == {k: v for k, v in first.items() if k != MANIFEST_NAME}

    generate(tmp_path / "c", **{**SMALL, "seed": 8})
    other = _file_hashes(tmp_path / "c")
    images = [name for name in first if name.endswith(".jpg")]
    assert all(first[name] != other[name] for name in images)


def test_counts_agree_across_layouts(full: tuple[SyntheticDataset, float]) -> None:
    dataset, _ = full
    assert dataset.num_images == {"train": 300, "val": 100}
    voc = dataset.voc_year_dir
    assert len(list((voc / "JPEGImages").glob("*.jpg"))) == 400
    assert len(list((voc / "Annotations").glob("*.xml"))) == 400
    for split in SPLITS:
        coco = _coco(dataset, split)
        assert len(coco["images"]) == dataset.num_images[split]
        assert len(coco["annotations"]) == dataset.num_objects[split]
        assert len(list(dataset.coco_image_dir(split).glob("*.jpg"))) == dataset.num_images[split]
        names = (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        assert names == [Path(im["file_name"]).stem for im in coco["images"]]


def test_coco_json_loads_with_the_coco_loader(full: tuple[SyntheticDataset, float]) -> None:
    dataset, _ = full
    for split in SPLITS:
        gt = load_coco_ground_truth(dataset.coco_annotation_file(split))
        assert len(gt.images) == dataset.num_images[split]
        assert gt.num_annotations == dataset.num_objects[split]
        assert gt.class_names == DEFAULT_CLASSES
        assert [c.id for c in gt.categories] == [1, 2, 3, 4]
        assert not gt.iscrowd.any()
        assert dataset.ground_truth(split).num_annotations == gt.num_annotations


def test_boxes_are_integral_and_inside_their_images(full: tuple[SyntheticDataset, float]) -> None:
    dataset, _ = full
    for split in SPLITS:
        coco = _coco(dataset, split)
        sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            width, height = sizes[ann["image_id"]]
            assert all(isinstance(v, int) for v in ann["bbox"]), ann
            assert x >= 0 and y >= 0 and w >= 1 and h >= 1, ann
            assert x + w <= width and y + h <= height, (ann, width, height)
            assert 1 <= ann["area"] <= w * h and ann["iscrowd"] == 0, ann


def test_the_planned_empty_images_are_empty(full: tuple[SyntheticDataset, float]) -> None:
    # empty_fraction 0.1 plans round(0.1 * n) empty images; every other image's first shape
    # always finds a place (nothing to occlude yet), so exactly that many come out empty.
    dataset, _ = full
    for split in SPLITS:
        coco = _coco(dataset, split)
        annotated = {ann["image_id"] for ann in coco["annotations"]}
        empty = [im for im in coco["images"] if im["id"] not in annotated]
        assert len(empty) == round(0.1 * dataset.num_images[split])


def test_classes_are_balanced(full: tuple[SyntheticDataset, float]) -> None:
    # Classes are dealt in shuffled rounds, so planned counts differ by at most one; only
    # shapes that found no place in a crowded image (rare) can widen the gap.
    dataset, _ = full
    for split in SPLITS:
        counts = Counter(ann["category_id"] for ann in _coco(dataset, split)["annotations"])
        assert sorted(counts) == [1, 2, 3, 4]
        mean = dataset.num_objects[split] / 4
        assert max(counts.values()) - min(counts.values()) <= 0.05 * mean, counts


def test_voc_xml_matches_coco_boxes(full: tuple[SyntheticDataset, float]) -> None:
    dataset, _ = full
    for split in SPLITS:
        coco = _coco(dataset, split)
        by_image: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in coco["images"]}
        for ann in coco["annotations"]:
            by_image[ann["image_id"]].append(ann)
        for im in coco["images"]:
            stem = Path(im["file_name"]).stem
            root = ET.parse(dataset.voc_year_dir / "Annotations" / f"{stem}.xml").getroot()
            assert root.findtext("filename") == im["file_name"]
            assert int(root.findtext("size/width", "")) == im["width"]
            assert int(root.findtext("size/height", "")) == im["height"]
            objects = root.findall("object")
            assert len(objects) == len(by_image[im["id"]])
            for obj, ann in zip(objects, by_image[im["id"]], strict=True):
                x, y, w, h = ann["bbox"]
                box = [
                    int(obj.findtext(f"bndbox/{t}", "")) for t in ("xmin", "ymin", "xmax", "ymax")
                ]
                # VOC 1-based inclusive: the first covered column is x + 1, the last x + w.
                assert box == [x + 1, y + 1, x + w, y + h], (stem, ann)
                assert obj.findtext("name") == DEFAULT_CLASSES[ann["category_id"] - 1]
                assert obj.findtext("difficult") == str(int(ann["heavily_occluded"]))
                assert obj.findtext("truncated") == str(int(ann["truncated"]))


def test_voc_loader_reads_the_coco_boxes(full: tuple[SyntheticDataset, float]) -> None:
    # The loader keeps x = xmin - 1 (the COCO x) and w = xmax - xmin: one less than the COCO
    # width, the VOC devkit's "+1" convention that GroundTruth documents.
    dataset, _ = full
    for split in SPLITS:
        voc = load_voc_ground_truth(dataset.voc_year_dir, split, classes=DEFAULT_CLASSES)
        coco = dataset.ground_truth(split)
        assert [im.file_name for im in voc.images] == [im.file_name for im in coco.images]
        assert np.array_equal(voc.image_index, coco.image_index)
        assert np.array_equal(voc.category_index, coco.category_index)
        assert np.array_equal(voc.boxes_xywh_px[:, :2], coco.boxes_xywh_px[:, :2])
        assert np.array_equal(voc.boxes_xywh_px[:, 2:] + 1, coco.boxes_xywh_px[:, 2:])
        heavy = [a["heavily_occluded"] for a in _coco(dataset, split)["annotations"]]
        assert voc.difficult.tolist() == heavy


def test_every_image_decodes_to_its_recorded_size(full: tuple[SyntheticDataset, float]) -> None:
    dataset, _ = full
    widths = set()
    for split in SPLITS:
        for im in _coco(dataset, split)["images"]:
            coco_path = dataset.coco_image_dir(split) / im["file_name"]
            voc_path = dataset.voc_year_dir / "JPEGImages" / im["file_name"]
            image = cv2.imread(str(coco_path))
            assert image is not None and image.shape == (im["height"], im["width"], 3)
            assert voc_path.read_bytes() == coco_path.read_bytes()
            widths.add(im["width"])
    assert min(widths) >= 256 and max(widths) <= 384 and len(widths) > 10  # size_variety 0.2


def test_occlusion_and_truncation_flags(full: tuple[SyntheticDataset, float]) -> None:
    dataset, _ = full
    coco = _coco(dataset, "train")
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    anns = coco["annotations"]
    for ann in anns:
        assert ann["heavily_occluded"] == (ann["occlusion"] >= HEAVY_OCCLUSION)
        assert 0 <= ann["occlusion"] <= 0.8  # placements hiding more are retried
        if ann["truncated"]:  # a shape cut by the border has a box touching it
            x, y, w, h = ann["bbox"]
            width, height = sizes[ann["image_id"]]
            assert x == 0 or y == 0 or x + w == width or y + h == height, ann
    assert any(a["heavily_occluded"] for a in anns)
    assert any(0 < a["occlusion"] < HEAVY_OCCLUSION for a in anns)
    assert any(a["truncated"] for a in anns)
    sides = [min(a["bbox"][2:]) / min(sizes[a["image_id"]]) for a in anns]
    assert min(sides) < 0.1 and max(sides) > 0.5  # small to large objects


def test_boxes_are_the_tight_bounds_of_the_drawn_pixels() -> None:
    for seed in range(40):
        rng = np.random.default_rng(seed)
        scene = render_scene(rng, 200, 150, [0, 1, 2, 3, 4] * 2, SHAPES)
        assert scene.image_bgr.shape == (150, 200, 3)
        for k, obj in enumerate(scene.objects):
            ys, xs = np.nonzero(scene.owner == k + 1)
            x, y, w, h = obj.box_xywh_px
            # What stays visible lies inside the box; an unhidden shape spans it exactly.
            assert x <= xs.min() and xs.max() <= x + w - 1, (seed, k)
            assert y <= ys.min() and ys.max() <= y + h - 1, (seed, k)
            if obj.occlusion == 0:
                assert (xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1) == obj.box_xywh_px
            assert abs(len(xs) / obj.area_px - (1 - obj.occlusion)) <= 5e-5


def test_same_parameters_reuse_the_folder(tmp_path: Path) -> None:
    first = generate(tmp_path / "d", **SMALL)
    before = _mtimes(tmp_path / "d")
    again = generate(tmp_path / "d", **SMALL)
    assert again.reused and not first.reused
    assert _mtimes(tmp_path / "d") == before
    assert again.num_objects == first.num_objects


def test_a_damaged_file_is_rewritten(tmp_path: Path) -> None:
    generate(tmp_path / "d", **SMALL)
    hashes = _file_hashes(tmp_path / "d")
    (tmp_path / "d" / "coco" / "images" / "val" / "val_000003.jpg").unlink()
    assert not generate(tmp_path / "d", **SMALL).reused
    assert _file_hashes(tmp_path / "d") == hashes


def test_other_parameters_are_refused(tmp_path: Path) -> None:
    generate(tmp_path / "d", **SMALL)
    hashes = _file_hashes(tmp_path / "d")
    with pytest.raises(InputError, match=r"seed: 7 there, 8 asked"):
        generate(tmp_path / "d", **{**SMALL, "seed": 8})
    assert _file_hashes(tmp_path / "d") == hashes


def test_a_foreign_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(InputError, match="no synthetic-dataset manifest"):
        generate(tmp_path, **SMALL)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": ("circle", "hexagon")}, "classes must be distinct names from"),
        ({"classes": ("circle", "circle")}, "classes must be distinct names from"),
        ({"num_train": -1}, "num_train must be a non-negative integer, got -1"),
        ({"image_size": (32, 240)}, r"image_size must be \(width, height\), both >= 64"),
        ({"object_size": (0.5, 0.2)}, "object_size must be"),
    ],
)
def test_bad_arguments_say_what_was_expected(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        generate(tmp_path, **{**SMALL, **change})
    assert not any(tmp_path.iterdir())


def test_chosen_classes_set_the_categories(tmp_path: Path) -> None:
    dataset = generate(tmp_path, **SMALL, classes=("cross", "circle"), image_size=(96, 64))
    gt = dataset.ground_truth("train")
    assert gt.class_names == ("cross", "circle")
    assert set(gt.category_index.tolist()) == {0, 1}
