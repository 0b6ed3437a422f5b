"""Derived views of a ground truth: subsets of images, annotations and categories.

COCO-Person is one such view: it is derived on the fly from the full COCO annotations, so
users need no extra annotation file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evalkit.errors import InputError
from evalkit.types import BoolArray, GroundTruth


def select(
    gt: GroundTruth,
    *,
    images: BoolArray | None = None,
    annotations: BoolArray | None = None,
    categories: Sequence[int] | None = None,
    name: str | None = None,
) -> GroundTruth:
    """Keep the masked images and annotations and the listed category positions.

    Orders are preserved (images, annotations and categories keep their relative order), so
    a view evaluates exactly as a file holding only those records would.
    """
    keep_images = np.ones(len(gt.images), bool) if images is None else np.asarray(images, bool)
    keep_ann = (
        np.ones(gt.num_annotations, bool) if annotations is None else np.asarray(annotations, bool)
    )
    cat_positions = list(range(len(gt.categories))) if categories is None else list(categories)
    cat_remap = np.full(len(gt.categories), -1, np.int64)
    cat_remap[cat_positions] = np.arange(len(cat_positions))
    img_remap = np.full(len(gt.images), -1, np.int64)
    img_remap[keep_images] = np.arange(int(keep_images.sum()))
    keep_ann = keep_ann & keep_images[gt.image_index] & (cat_remap[gt.category_index] >= 0)
    return GroundTruth(
        images=tuple(im for im, keep in zip(gt.images, keep_images, strict=True) if keep),
        categories=tuple(gt.categories[i] for i in cat_positions),
        image_index=img_remap[gt.image_index[keep_ann]],
        category_index=cat_remap[gt.category_index[keep_ann]],
        boxes_xywh_px=gt.boxes_xywh_px[keep_ann],
        area=gt.area[keep_ann],
        iscrowd=gt.iscrowd[keep_ann],
        difficult=gt.difficult[keep_ann],
        truncated=gt.truncated[keep_ann],
        annotation_id=gt.annotation_id[keep_ann],
        source=gt.source,
        name=gt.name if name is None else name,
    )


def category_view(gt: GroundTruth, class_name: str, *, view_name: str) -> GroundTruth:
    """Only ``class_name`` annotations, only images with at least one of them."""
    positions = [i for i, c in enumerate(gt.categories) if c.name == class_name]
    if not positions:
        known = ", ".join(gt.class_names)
        raise InputError(f"no category named {class_name!r} (categories: {known})", path=gt.name)
    on_class = gt.category_index == positions[0]
    images = np.zeros(len(gt.images), bool)
    images[gt.image_index[on_class]] = True
    return select(gt, images=images, annotations=on_class, categories=positions, name=view_name)


def person_view(gt: GroundTruth) -> GroundTruth:
    """COCO-Person: the person annotations (crowds included) and the images that have one."""
    return category_view(gt, "person", view_name=f"{gt.name} (person)")
