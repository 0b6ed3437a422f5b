"""Datasets: ground truth plus the images it describes, streamed lazily.

``open_coco`` / ``open_voc`` (and the ``coco_person`` view), or any format registered in
:data:`DATASETS`, build a :class:`Dataset`. They check the images before any long run
starts: a missing file, an image whose size disagrees with its annotation or (with
``check="decode"``) one that does not decode is an error naming the file and the record;
``skip_bad=True`` instead drops those images and records exactly which were skipped and why
(``Dataset.skipped``). Nothing is skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from evalkit.datasets.coco import load_coco_ground_truth
from evalkit.datasets.views import person_view, select
from evalkit.datasets.voc import VOC_CLASSES, load_voc_ground_truth
from evalkit.errors import InputError
from evalkit.registry import Registry
from evalkit.types import BoolArray, FloatArray, GroundTruth, ImageId, ImageRecord, IntArray

ImageCheck = Literal["none", "exists", "decode"]
# Annotations may poke out of their image by rounding; more than this is an error.
BOX_TOLERANCE_PX = 1.0


@dataclass(frozen=True)
class SkippedImage:
    """An image left out of a dataset and the reason."""

    image_id: ImageId
    path: str
    reason: str


@dataclass(frozen=True)
class ImageAnnotations:
    """The ground truth of one image."""

    boxes_xywh_px: FloatArray
    category_index: IntArray
    iscrowd: BoolArray
    difficult: BoolArray
    truncated: BoolArray


@dataclass(frozen=True)
class Dataset:
    """Ground truth, the folder of its images, and what was skipped while opening it."""

    name: str
    ground_truth: GroundTruth
    image_dir: Path
    skipped: tuple[SkippedImage, ...] = ()
    # Objects left out because their class is listed as ignored: class -> count.
    ignored_objects: tuple[tuple[str, int], ...] = ()

    @property
    def classes(self) -> tuple[str, ...]:
        return self.ground_truth.class_names

    @property
    def images(self) -> tuple[ImageRecord, ...]:
        return self.ground_truth.images

    def __len__(self) -> int:
        return len(self.ground_truth.images)

    def image_path(self, index: int) -> Path:
        return self.image_dir / self.ground_truth.images[index].file_name

    @cached_property
    def _rows_by_image(self) -> tuple[IntArray, IntArray]:
        """Annotation rows grouped by image (file order kept) and each image's bounds."""
        order = np.argsort(self.ground_truth.image_index, kind="stable")
        bounds = np.searchsorted(
            self.ground_truth.image_index[order], np.arange(len(self) + 1), side="left"
        )
        return order, bounds

    def annotations_of(self, index: int) -> ImageAnnotations:
        """The ground truth of image ``index``, in annotation-file order."""
        gt = self.ground_truth
        order, bounds = self._rows_by_image
        rows = order[bounds[index] : bounds[index + 1]]
        return ImageAnnotations(
            boxes_xywh_px=gt.boxes_xywh_px[rows],
            category_index=gt.category_index[rows],
            iscrowd=gt.iscrowd[rows],
            difficult=gt.difficult[rows],
            truncated=gt.truncated[rows]
            if gt.truncated is not None
            else gt.difficult[rows] & False,
        )


def _check_boxes(gt: GroundTruth, source: Path) -> None:
    """Boxes must lie inside their image (within BOX_TOLERANCE_PX)."""
    if gt.num_annotations == 0:
        return
    widths = np.array([im.width for im in gt.images], np.float64)[gt.image_index]
    heights = np.array([im.height for im in gt.images], np.float64)[gt.image_index]
    b = gt.boxes_xywh_px
    outside = (
        (b[:, 0] < -BOX_TOLERANCE_PX)
        | (b[:, 1] < -BOX_TOLERANCE_PX)
        | (b[:, 0] + b[:, 2] > widths + BOX_TOLERANCE_PX)
        | (b[:, 1] + b[:, 3] > heights + BOX_TOLERANCE_PX)
    )
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        image = gt.images[int(gt.image_index[row])]
        raise InputError(
            f"box [x, y, w, h] = {b[row].tolist()} lies outside its {image.width}x"
            f"{image.height} image {image.image_id!r} ({int(outside.sum())} such boxes)",
            path=source,
            record=f"annotation id {int(gt.annotation_id[row])}",
        )


def _image_problem(
    path: Path, image: ImageRecord, check: ImageCheck, strict_sizes: bool = True
) -> str | None:
    from evalkit.datasets.images import decode_rgb, image_size

    if not path.is_file():
        return "image file not found"
    try:
        if check == "decode":
            height, width = decode_rgb(path).shape[:2]
        else:
            width, height = image_size(path)
    except InputError as exc:
        return exc.problem
    if strict_sizes and (width, height) != (image.width, image.height):
        return f"image is {width}x{height} but its annotation says {image.width}x{image.height}"
    return None


def _check_images(
    dataset: Dataset, check: ImageCheck, skip_bad: bool, source: Path, strict_sizes: bool = True
) -> Dataset:
    if check == "none":
        return dataset
    skipped: list[SkippedImage] = []
    keep = np.ones(len(dataset), bool)
    for index, image in enumerate(dataset.images):
        path = dataset.image_path(index)
        problem = _image_problem(path, image, check, strict_sizes)
        if problem is None:
            continue
        keep[index] = False
        skipped.append(SkippedImage(image.image_id, str(path), problem))
    if not skipped:
        return dataset
    if not skip_bad:
        raise bad_images_error(skipped, source)
    return without_images(dataset, keep, tuple(skipped))


def bad_images_error(bad: Sequence[SkippedImage], source: Path | str) -> InputError:
    """One error naming every bad image found (the first ten in full)."""
    first = bad[0]
    listed = "; ".join(f"{b.path}: {b.reason}" for b in bad[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    return InputError(
        f"{len(bad)} bad image(s): {listed}{more} (set dataset.skip_bad to leave such images "
        "out, recorded)",
        path=first.path,
        record=f"image id {first.image_id!r} in {source}",
    )


def without_images(dataset: Dataset, keep: Any, skipped: tuple[SkippedImage, ...]) -> Dataset:
    """``dataset`` without the images where ``keep`` is False, recorded as ``skipped``."""
    return replace(
        dataset,
        ground_truth=select(dataset.ground_truth, images=keep),
        skipped=dataset.skipped + skipped,
    )


def open_coco(
    annotation_file: str | Path,
    image_dir: str | Path,
    *,
    view: Literal["all", "person"] = "all",
    check: ImageCheck = "exists",
    skip_bad: bool = False,
    strict_sizes: bool = True,
) -> Dataset:
    """A COCO-format set; ``view="person"`` derives COCO-Person from the full annotations.
    ``strict_sizes=False`` accepts images whose size differs from the annotation (a run
    records them and scales ``st`` by the decoded size, as the zoo does)."""
    annotation_file = Path(annotation_file)
    gt = load_coco_ground_truth(annotation_file)
    _check_boxes(gt, annotation_file)
    name = annotation_file.stem
    if view == "person":
        gt = person_view(gt)
        name = f"{name} (person)"
    dataset = Dataset(name=name, ground_truth=gt, image_dir=Path(image_dir))
    return _check_images(dataset, check, skip_bad, annotation_file, strict_sizes)


def open_voc(
    year_dir: str | Path,
    split: str,
    *,
    classes: Sequence[str] = VOC_CLASSES,
    ignore_classes: Sequence[str] = (),
    check: ImageCheck = "exists",
    skip_bad: bool = False,
    strict_sizes: bool = True,
) -> Dataset:
    """A Pascal VOC year directory (``VOCdevkit/VOC2007``) and one of its splits."""
    year_dir = Path(year_dir)
    ignored: dict[str, int] = {}
    gt = load_voc_ground_truth(
        year_dir, split, classes, ignore_classes=ignore_classes, ignored=ignored
    )
    _check_boxes(gt, year_dir / "Annotations")
    dataset = Dataset(
        name=f"{year_dir.name} {split}",
        ground_truth=gt,
        image_dir=year_dir / "JPEGImages",
        ignored_objects=tuple(sorted(ignored.items())),
    )
    return _check_images(
        dataset, check, skip_bad, year_dir / "ImageSets" / "Main" / split, strict_sizes
    )


@dataclass(frozen=True)
class DatasetRequest:
    """What a dataset configuration names; each format reads the fields it needs."""

    annotations: str = ""
    images: str = ""
    root: str = ""
    split: str = "test"
    classes: tuple[str, ...] | None = None
    ignore_classes: tuple[str, ...] = ()
    skip_bad: bool = False
    strict_sizes: bool = True


@dataclass(frozen=True)
class DatasetFormat:
    """A dataset layout: how to open it from a request, and which two request fields a
    ``KIND:FIRST:SECOND`` spec fills (``evalkit quantize --calib-dataset``)."""

    name: str
    open: Callable[[DatasetRequest], Dataset]
    spec: tuple[str, str]

    def __call__(self, first: str | Path, second: str | Path, **options: Any) -> Dataset:
        """Open from the spec's two parts (``coco:ANNOTATIONS:IMAGES``, ``voc:YEAR_DIR:SPLIT``)."""
        fields: dict[str, Any] = {self.spec[0]: str(first), self.spec[1]: str(second)}
        return self.open(DatasetRequest(**fields, **options))


def _coco_request(request: DatasetRequest, view: Literal["all", "person"]) -> Dataset:
    if request.classes or request.ignore_classes:
        raise InputError(
            "dataset.classes and dataset.ignore_classes are for VOC-layout sets; a COCO file "
            "lists its own categories",
            record="dataset.classes",
        )
    if not request.annotations or not request.images:
        raise InputError(
            "dataset.annotations and dataset.images must name a COCO JSON and its images",
            record="dataset",
        )
    return open_coco(
        request.annotations,
        request.images,
        view=view,
        skip_bad=request.skip_bad,
        strict_sizes=request.strict_sizes,
    )


def _voc_request(request: DatasetRequest) -> Dataset:
    if not request.root:
        raise InputError("dataset.root must name a VOC year directory", record="dataset")
    return open_voc(
        request.root,
        request.split,
        classes=request.classes or VOC_CLASSES,
        ignore_classes=request.ignore_classes,
        skip_bad=request.skip_bad,
        strict_sizes=request.strict_sizes,
    )


DATASETS: Registry[DatasetFormat] = Registry("dataset kind")
for _format in (
    DatasetFormat("coco", lambda r: _coco_request(r, "all"), ("annotations", "images")),
    DatasetFormat("coco_person", lambda r: _coco_request(r, "person"), ("annotations", "images")),
    DatasetFormat("voc", _voc_request, ("root", "split")),
):
    DATASETS.add(_format.name, _format)
# The spelling configurations used before the zoo's (and the references') ``coco_person``.
DATASETS.alias("coco-person", "coco_person")
