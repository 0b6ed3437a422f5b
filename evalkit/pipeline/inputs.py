"""What a run resolves from its configuration before any inference: the dataset (limited,
checked), the decoder and class names of each model, the zoo's batches, and the class
mapping (refused when a dataset class would score 0 silently)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.datasets.classes import ClassMapping
from evalkit.datasets.dataset import DATASETS, Dataset, DatasetRequest
from evalkit.datasets.views import select
from evalkit.errors import InputError
from evalkit.pipeline.config import RunConfig, VariantConfig
from evalkit.postprocess.decoders import DECODERS, Decoder, DecoderRequest, detect_decoder
from evalkit.runners.base import Runner
from evalkit.types import GroundTruth


def open_dataset(config: RunConfig) -> Dataset:
    """The dataset a config names, through its format's registered opener, with its images
    checked before anything runs."""
    ds = config.dataset
    request = DatasetRequest(
        annotations=ds.annotations,
        images=ds.images,
        root=ds.root,
        split=ds.split,
        classes=tuple(ds.classes) if ds.classes else None,
        ignore_classes=tuple(ds.ignore_classes),
        skip_bad=ds.skip_bad,
        # A run records images decoded at another size, and st scales by it (6b.2).
        strict_sizes=False,
    )
    return DATASETS.get(ds.format).open(request)


def zoo_class_names(dataset: Dataset, specs: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The zoo's rule for a model given no names (6b.6): column k (1-based, 0 background)
    is the k-th smallest category id of the annotation file. None when the model's class
    count (read from its one non-box output) does not equal the file's."""
    columns = [
        shape[-1]
        for shape in specs.values()
        if shape and isinstance(shape[-1], int) and shape[-1] != 4
    ]
    by_id = sorted(dataset.ground_truth.categories, key=lambda c: c.id)
    if len(columns) != 1 or columns[0] - 1 != len(by_id):
        return None
    return tuple(c.name for c in by_id)


def zoo_batches(gt: GroundTruth, indices: Sequence[int], size: int) -> list[list[int]]:
    """The zoo's inference batches: images with an annotation first (for COCO the zoo's
    loader drops the others), in dataset order, ``size`` at a time; then the rest (only
    ``coco`` needs them), in batches of their own."""
    annotated = np.zeros(len(gt.images), bool)
    annotated[gt.image_index] = True
    if gt.source != "coco":
        annotated[:] = True
    first = [i for i in indices if annotated[i]]
    rest = [i for i in indices if not annotated[i]]
    return [g[k : k + size] for g in (first, rest) for k in range(0, len(g), size)]


def build_decoder(
    variant: VariantConfig, runner: Runner, model: Path, dataset: Dataset
) -> tuple[Decoder, str]:
    """The configured decoder, or the detected one, and why it was chosen."""
    name, why = variant.decoder, "set in the configuration"
    if name == "auto":
        name, why = detect_decoder(runner.output_specs(), runner.preprocessing.preprocessor.size)
    names = tuple(variant.class_names) if variant.class_names else None
    factory = DECODERS.get(name)
    if names is None and not factory.names_from_model and dataset.ground_truth.source == "coco":
        names = zoo_class_names(dataset, runner.output_specs())
        if names is not None:
            why += "; class names by the zoo's rule (column k = k-th smallest category id)"
    model_dir = Path(variant.model_dir) if variant.model_dir else None
    request = DecoderRequest(
        model,
        names,
        model_dir,
        input_size=runner.preprocessing.preprocessor.size,
        anchors=tuple((float(w), float(h)) for w, h in variant.anchors or ()),
        strides=tuple(variant.strides or ()),
    )
    decoder = factory.for_request(request)
    return decoder, why


def check_mapping(name: str, mapping: ClassMapping, config: RunConfig) -> None:
    """A dataset class that no model class predicts scores 0 silently: an error (with the
    near match among the model's unmapped names) unless the config allows it."""
    if not mapping.unmatched_dataset_classes or config.allow_unmatched_classes:
        return
    hints = []
    for missing in mapping.unmatched_dataset_classes:
        close = difflib.get_close_matches(missing, mapping.dropped_model_classes, n=1)
        hint = f" (the model's {close[0]!r}: did you mean {missing!r}?)" if close else ""
        hints.append(f"{missing!r}{hint}")
    raise InputError(
        f"dataset classes no model class predicts: {', '.join(hints)}; fix class_names, or "
        "set allow_unmatched_classes: true to score them as missed",
        record=f"variants.{name}.class_names",
    )


def with_decoded_sizes(gt: GroundTruth, sizes: Mapping[int, tuple[int, int]]) -> GroundTruth:
    """``gt`` with each image's size replaced by its size as decoded (the zoo's ``st``
    scales ground truth by the image it read, 6b.2)."""
    images = tuple(
        replace(im, width=sizes[i][0], height=sizes[i][1]) if i in sizes else im
        for i, im in enumerate(gt.images)
    )
    return replace(gt, images=images)


def limited(dataset: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(dataset):
        return dataset
    keep = np.zeros(len(dataset), bool)
    keep[:limit] = True
    return replace(dataset, ground_truth=select(dataset.ground_truth, images=keep))
