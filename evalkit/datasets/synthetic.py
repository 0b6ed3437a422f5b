"""Deterministic synthetic detection dataset: filled shapes on cluttered backgrounds.

Shapes of varied colour, size, rotation and position lie over gradient, stripe, blotchy or
flat backgrounds with clutter of no class (lines, dots, open arcs); later shapes may hide part
of earlier ones; some images are empty. The same JPEGs and boxes are written as COCO
(``<root>/coco/images/<split>/``, ``coco/annotations/instances_<split>.json``) and as VOC
(``<root>/VOCdevkit/VOC2012/{JPEGImages,Annotations,ImageSets/Main/<split>.txt}``).

A box is the tight bound of the pixels its shape covered when drawn (before later shapes hid
any), clipped to the image: COCO ``[x, y, w, h]`` on pixel edges (columns 3..7: x=3, w=5),
VOC 1-based inclusive (``xmin = x + 1``, ``xmax = x + w``). COCO ``area`` counts those pixels;
``occlusion`` is the share of them later shapes cover.

Same arguments and OpenCV build: byte-identical files (a numpy generator per image seeded from
(seed, split, index), fixed JPEG quality). ``manifest.json``, written last, holds the
parameters and every file's sha256. A root whose manifest has the same parameters is reused
(files that no longer match are rewritten); a manifest with other parameters, or a non-empty
root without one, is an :class:`InputError`: choose a fresh folder. Nothing is deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from evalkit.datasets.coco import load_coco_ground_truth
from evalkit.datasets.synthetic_render import (
    SHAPES,
    Scene,
    SyntheticObject,
    render_scene,
)
from evalkit.errors import InputError
from evalkit.hashing import file_sha256
from evalkit.jsonio import read_json
from evalkit.types import GroundTruth

Split = Literal["train", "val"]
SPLITS: tuple[Split, ...] = ("train", "val")
DEFAULT_CLASSES = ("circle", "square", "triangle", "star")
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
VOC_YEAR = "VOC2012"


@dataclass(frozen=True)
class SyntheticDataset:
    """Where a generated dataset lives and what it holds; ``reused``: nothing was written."""

    root: Path
    classes: tuple[str, ...]
    num_images: Mapping[str, int]
    num_objects: Mapping[str, int]
    reused: bool

    @property
    def voc_year_dir(self) -> Path:
        """The ``VOCdevkit/VOC2012`` folder (JPEGImages, Annotations, ImageSets/Main)."""
        return self.root / "VOCdevkit" / VOC_YEAR

    def coco_annotation_file(self, split: Split) -> Path:
        """The COCO instances JSON of ``split``."""
        return self.root / "coco" / "annotations" / f"instances_{split}.json"

    def coco_image_dir(self, split: Split) -> Path:
        """The folder the COCO ``file_name`` entries of ``split`` are relative to."""
        return self.root / "coco" / "images" / split

    def ground_truth(self, split: Split) -> GroundTruth:
        """The COCO-layout annotations of ``split`` as a GroundTruth."""
        return load_coco_ground_truth(self.coco_annotation_file(split))


def _plan(params: Mapping[str, Any], split_index: int) -> list[list[int]]:
    """The class index of every shape of every image of one split.

    Classes are dealt from shuffled rounds of all classes, so planned counts per class differ
    by at most one; ``round(empty_fraction * count)`` images get no shape at all.
    """
    count, num_classes = params[f"num_{SPLITS[split_index]}"], len(params["classes"])
    rng = np.random.default_rng([params["seed"], split_index, 0])
    empty = set(rng.choice(count, round(params["empty_fraction"] * count), replace=False))
    most = params["max_objects"]
    sizes = [0 if i in empty else int(rng.integers(1, most + 1)) for i in range(count)]
    rounds = -(-sum(sizes) // num_classes)
    deck = [int(c) for _ in range(rounds) for c in rng.permutation(num_classes)]
    starts = np.cumsum([0, *sizes])
    return [deck[starts[i] : starts[i + 1]] for i in range(count)]


def _children(parent: ET.Element, **texts: object) -> None:
    """Append one text element per keyword argument to ``parent``, in order."""
    for tag, text in texts.items():
        ET.SubElement(parent, tag).text = str(text)


def _voc_xml(name: str, size: tuple[int, int], scene: Scene, classes: Sequence[str]) -> bytes:
    """A VOC annotation; boxes in VOC's 1-based inclusive convention (xmin = x + 1)."""
    root = ET.Element("annotation")
    _children(root, folder=VOC_YEAR, filename=f"{name}.jpg", segmented=0)
    _children(ET.SubElement(root, "size"), width=size[0], height=size[1], depth=3)
    for obj in scene.objects:
        node = ET.SubElement(root, "object")
        _children(node, name=classes[obj.category_index], pose="Unspecified")
        _children(node, truncated=int(obj.truncated), occluded=int(obj.occlusion > 0))
        _children(node, difficult=int(obj.heavily_occluded))
        x, y, w, h = obj.box_xywh_px
        _children(ET.SubElement(node, "bndbox"), xmin=x + 1, ymin=y + 1, xmax=x + w, ymax=y + h)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8") + b"\n"


def _coco_annotation(obj: SyntheticObject, annotation_id: int, image_id: int) -> dict[str, Any]:
    """One COCO ``annotations`` entry; occlusion fields are extras pycocotools ignores."""
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": obj.category_index + 1,
        "bbox": list(obj.box_xywh_px),
        "area": obj.area_px,
        "iscrowd": 0,
        "occlusion": obj.occlusion,
        "heavily_occluded": obj.heavily_occluded,
        "truncated": obj.truncated,
    }


def _write(root: Path, hashes: dict[str, str], relative: str, data: bytes) -> None:
    """Write one file under ``root`` and remember its sha256 for the manifest."""
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    (root / relative).write_bytes(data)
    hashes[relative] = hashlib.sha256(data).hexdigest()


def _write_split(
    root: Path, hashes: dict[str, str], params: Mapping[str, Any], split_index: int
) -> int:
    """Render one split and write it in both layouts; return how many objects it holds."""
    split, seed, classes = SPLITS[split_index], params["seed"], params["classes"]
    (width, height), variety = params["image_size"], params["size_variety"]
    count, voc = params[f"num_{split}"], f"VOCdevkit/{VOC_YEAR}"
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index, class_indices in enumerate(_plan(params, split_index)):
        rng = np.random.default_rng([seed, split_index, index + 1])
        w = round(width * rng.uniform(1 - variety, 1 + variety))
        h = round(height * rng.uniform(1 - variety, 1 + variety))
        scene = render_scene(rng, w, h, class_indices, classes, params["object_size"])
        quality = [cv2.IMWRITE_JPEG_QUALITY, params["jpeg_quality"]]
        ok, jpeg = cv2.imencode(".jpg", scene.image_bgr, quality)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode image {index} of {split} as JPEG")
        name = f"{split}_{index:06d}"
        for relative in (f"coco/images/{split}/{name}.jpg", f"{voc}/JPEGImages/{name}.jpg"):
            _write(root, hashes, relative, jpeg.tobytes())
        _write(
            root, hashes, f"{voc}/Annotations/{name}.xml", _voc_xml(name, (w, h), scene, classes)
        )
        images.append({"id": index + 1, "file_name": f"{name}.jpg", "width": w, "height": h})
        for obj in scene.objects:
            annotations.append(_coco_annotation(obj, len(annotations) + 1, index + 1))
    categories = [{"id": i + 1, "name": c, "supercategory": "shape"} for i, c in enumerate(classes)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    _write(root, hashes, f"coco/annotations/instances_{split}.json", json.dumps(coco).encode())
    names = "".join(f"{split}_{i:06d}\n" for i in range(count))
    _write(root, hashes, f"{voc}/ImageSets/Main/{split}.txt", names.encode())
    return len(annotations)


def _check_arguments(params: Mapping[str, Any]) -> None:
    """Reject arguments the generator cannot honour, saying what was expected."""
    for key in ("num_train", "num_val", "seed", "max_objects", "jpeg_quality"):
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{key} must be a non-negative integer, got {value!r}")
    classes, size, (lo, hi) = params["classes"], params["image_size"], params["object_size"]
    distinct = bool(classes) and set(classes) <= set(SHAPES) and len(set(classes)) == len(classes)
    checks = (
        ("classes", distinct, f"distinct names from {SHAPES}"),
        ("image_size", len(size) == 2 and min(size) >= 64, "(width, height), both >= 64"),
        ("size_variety", 0 <= params["size_variety"] <= 0.5, "in [0, 0.5]"),
        ("empty_fraction", 0 <= params["empty_fraction"] <= 1, "in [0, 1]"),
        ("object_size", 0.02 <= lo <= hi <= 1, "(lo, hi) with 0.02 <= lo <= hi <= 1"),
        ("max_objects", params["max_objects"] >= 1, "at least 1"),
        ("jpeg_quality", 1 <= params["jpeg_quality"] <= 100, "in [1, 100]"),
    )
    for key, ok, expected in checks:
        if not ok:
            raise InputError(f"{key} must be {expected}, got {params[key]!r}")


def _reusable(root: Path, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The manifest of the same dataset already complete in ``root``, or None to write it."""
    if not (root / MANIFEST_NAME).is_file():
        if root.exists() and any(root.iterdir()):
            raise InputError(
                "folder is not empty and holds no synthetic-dataset manifest (another dataset,"
                " or an interrupted run); generate into a new or empty folder",
                path=root,
            )
        return None
    manifest: dict[str, Any] = read_json(root / MANIFEST_NAME)
    existing = manifest.get("parameters", {})
    if existing != params:
        changed = "; ".join(
            f"{key}: {existing.get(key)!r} there, {value!r} asked"
            for key, value in params.items()
            if existing.get(key) != value
        )
        raise InputError(
            f"folder holds a synthetic dataset with other parameters ({changed}); "
            "generate into a new folder",
            path=root,
        )
    for relative, digest in manifest.get("files", {}).items():
        path = root / relative
        if not path.is_file() or file_sha256(path) != digest:
            return None  # same parameters, damaged files: rewrite them
    return manifest


def generate(
    root: str | Path,
    *,
    num_train: int,
    num_val: int,
    seed: int,
    image_size: tuple[int, int] = (320, 240),
    size_variety: float = 0.2,
    classes: Sequence[str] = DEFAULT_CLASSES,
    empty_fraction: float = 0.1,
    max_objects: int = 6,
    object_size: tuple[float, float] = (0.08, 0.7),
    jpeg_quality: int = 90,
) -> SyntheticDataset:
    """Write (or find already written) a synthetic shapes dataset in COCO and VOC layouts.

    ``image_size`` is the nominal (width, height); each side of each image is scaled by its
    own factor from ``[1 - size_variety, 1 + size_variety]``. Non-empty images plan 1 to
    ``max_objects`` shapes, of diameter ``object_size`` (fractions of the shorter side).
    See the module docstring for layouts, box convention and reuse.
    """
    root = Path(root)
    params: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "seed": seed,
        "image_size": [int(v) for v in image_size],
        "size_variety": float(size_variety),
        "classes": list(classes),
        "empty_fraction": float(empty_fraction),
        "max_objects": max_objects,
        "object_size": [float(v) for v in object_size],
        "jpeg_quality": jpeg_quality,
    }
    _check_arguments(params)
    manifest = _reusable(root, params)
    reused = manifest is not None
    if manifest is None:
        hashes: dict[str, str] = {}
        num_objects = {s: _write_split(root, hashes, params, i) for i, s in enumerate(SPLITS)}
        manifest = {
            "generator": __name__,
            "parameters": params,
            # Not compared on reuse, but the bytes depend on them (generator streams, JPEG).
            "versions": {"numpy": np.__version__, "opencv": cv2.__version__},
            "num_images": {split: params[f"num_{split}"] for split in SPLITS},
            "num_objects": num_objects,
            "files": dict(sorted(hashes.items())),
        }
        # Written last and atomically: a manifest means every file it lists is complete.
        (root / f"{MANIFEST_NAME}.tmp").write_text(json.dumps(manifest, indent=1) + "\n")
        os.replace(root / f"{MANIFEST_NAME}.tmp", root / MANIFEST_NAME)
    return SyntheticDataset(
        root=root,
        classes=tuple(classes),
        num_images=dict(manifest["num_images"]),
        num_objects=dict(manifest["num_objects"]),
        reused=reused,
    )
