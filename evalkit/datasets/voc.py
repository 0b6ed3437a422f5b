"""Pascal VOC (``VOCdevkit/VOC20XX`` with ``ImageSets/Main/<split>.txt``) to GroundTruth."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evalkit.errors import InputError
from evalkit.types import Category, GroundTruth, ImageRecord

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def _text(node: ET.Element, tag: str, path: Path, record: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise InputError(f"missing <{tag}>", path=path, record=record)
    return child.text.strip()


def _number(node: ET.Element, tag: str, path: Path, record: str) -> float:
    text = _text(node, tag, path, record)
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"<{tag}> must be a number, got {text!r}", path=path, record=record
        ) from None


def read_split(year_dir: str | Path, split: str) -> list[str]:
    """Image names of ``ImageSets/Main/<split>.txt`` in file order."""
    split_file = Path(year_dir) / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise InputError(
            f"split file not found (expected ImageSets/Main/{split}.txt)", path=split_file
        )
    return [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]


def _flag(obj: ET.Element, tag: str, path: Path, record: str) -> bool:
    """A VOC 0/1 flag read as the zoo reads ``difficult``: ``int(text) != 0``; absent is 0."""
    text = obj.findtext(tag)
    if text is None or not text.strip():
        return False
    try:
        return int(text.strip()) != 0
    except ValueError:
        raise InputError(
            f"<{tag}> must be an integer, got {text.strip()!r}", path=path, record=record
        ) from None


def voc_class_name(name: str) -> str:
    """A class name as the zoo compares VOC names: stripped and lower-cased."""
    return name.strip().lower()


def load_voc_ground_truth(
    year_dir: str | Path,
    split: str,
    classes: Sequence[str] = VOC_CLASSES,
    *,
    ignore_classes: Sequence[str] = (),
    ignored: dict[str, int] | None = None,
) -> GroundTruth:
    """Parse the XML annotations of one split.

    Boxes are stored zero-based (``x = xmin - 1``, ``w = xmax - xmin``; see GroundTruth).
    Category ids are the 1-based indices of ``classes`` (the 20 VOC classes in their
    standard order by default; a VOC-layout set of other classes passes its own list).
    Names are compared stripped and lower-cased (the zoo's rule). An object of a class
    outside ``classes`` is an error naming the file, the object and the class, unless the
    class is in ``ignore_classes``: then it is left out and counted in ``ignored``.
    """
    year_dir = Path(year_dir)
    class_pos = {voc_class_name(name): i for i, name in enumerate(classes)}
    ignore = {voc_class_name(name) for name in ignore_classes}
    images: list[ImageRecord] = []
    image_index: list[int] = []
    category_index: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    difficult: list[bool] = []
    truncated: list[bool] = []
    for name in read_split(year_dir, split):
        xml_path = year_dir / "Annotations" / f"{name}.xml"
        try:
            root = ET.parse(xml_path).getroot()
        except FileNotFoundError:
            raise InputError(f"annotation of image {name!r} not found", path=xml_path) from None
        except ET.ParseError as exc:
            raise InputError(f"malformed XML: {exc}", path=xml_path) from None
        size = root.find("size")
        if size is None:
            raise InputError("missing <size>", path=xml_path, record=name)
        width = int(_number(size, "width", xml_path, "size"))
        height = int(_number(size, "height", xml_path, "size"))
        file_name = root.findtext("filename", default=f"{name}.jpg").strip()
        images.append(ImageRecord(image_id=name, file_name=file_name, width=width, height=height))
        for j, obj in enumerate(root.findall("object")):
            record = f"object {j}"
            cls = voc_class_name(_text(obj, "name", xml_path, record))
            if cls not in class_pos:
                if cls in ignore:
                    if ignored is not None:
                        ignored[cls] = ignored.get(cls, 0) + 1
                    continue
                raise InputError(
                    f"unknown class {cls!r} in image {name!r}; expected one of: "
                    f"{', '.join(classes)} (or list it under dataset.ignore_classes)",
                    path=xml_path,
                    record=record,
                )
            bnd = obj.find("bndbox")
            if bnd is None:
                raise InputError("missing <bndbox>", path=xml_path, record=record)
            xmin, ymin, xmax, ymax = (
                _number(bnd, t, xml_path, f"{record} bndbox")
                for t in ("xmin", "ymin", "xmax", "ymax")
            )
            if xmax < xmin or ymax < ymin:
                raise InputError(
                    f"box has negative size: xmin={xmin} xmax={xmax} ymin={ymin} ymax={ymax}",
                    path=xml_path,
                    record=record,
                )
            image_index.append(len(images) - 1)
            category_index.append(class_pos[cls])
            boxes.append((xmin - 1.0, ymin - 1.0, xmax - xmin, ymax - ymin))
            difficult.append(_flag(obj, "difficult", xml_path, record))
            truncated.append(_flag(obj, "truncated", xml_path, record))
    box_array = np.asarray(boxes, np.float64).reshape(-1, 4)
    return GroundTruth(
        images=tuple(images),
        categories=tuple(Category(id=i + 1, name=n) for i, n in enumerate(classes)),
        image_index=np.asarray(image_index, np.int64),
        category_index=np.asarray(category_index, np.int64),
        boxes_xywh_px=box_array,
        area=box_array[:, 2] * box_array[:, 3],
        iscrowd=np.zeros(len(boxes), bool),
        difficult=np.asarray(difficult, bool),
        truncated=np.asarray(truncated, bool),
        annotation_id=np.arange(1, len(boxes) + 1, dtype=np.int64),
        source="voc",
        name=f"{year_dir.name}/{split}",
    )
