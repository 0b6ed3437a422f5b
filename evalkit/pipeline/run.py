"""``evalkit run``: dataset to comparison report, one variant after another.

For each variant: predictions (resumable, see :mod:`evalkit.pipeline.cache`), detections in
COCO results format, every requested protocol, then a separate latency pass. Everything
lands in ``result.json`` (:mod:`evalkit.pipeline.result`) and the report renders from it.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.datasets.classes import ClassMapping, map_classes
from evalkit.datasets.dataset import (
    Dataset,
    SkippedImage,
    bad_images_error,
    open_coco,
    open_voc,
    without_images,
)
from evalkit.datasets.views import select
from evalkit.datasets.voc import VOC_CLASSES
from evalkit.errors import InputError
from evalkit.hashing import file_sha256, settings_key
from evalkit.metrics import evaluate, write_coco_results
from evalkit.metrics.interpolation import COCO_RECALL_THRESHOLDS, precision_at_recall_grid
from evalkit.pipeline.cache import PredictionCache
from evalkit.pipeline.config import RunConfig, VariantConfig, resolved_profile
from evalkit.pipeline.predict import Predictions, predict
from evalkit.pipeline.result import SCHEMA_VERSION, RunRecord, validate, write_result
from evalkit.postprocess.assemble import to_detections
from evalkit.postprocess.decoders import (
    DecodedDecoder,
    Decoder,
    StSsdDecoder,
    TfodSsdDecoder,
    detect_decoder,
)
from evalkit.postprocess.nms import NmsSettings
from evalkit.provenance import environment
from evalkit.runners.onnx import OnnxRunner
from evalkit.types import EvalResult, GroundTruth

# The zoo's data loader batch (6b.5).
ZOO_BATCH_SIZE = 32

Log = Callable[[str], None]


@dataclass(frozen=True)
class RunOutcome:
    """What a run produced: the validated record and where its files are."""

    record: RunRecord
    out_dir: Path
    report_files: tuple[Path, ...]


def open_dataset(config: RunConfig) -> Dataset:
    """The dataset a config names, with its images checked before anything runs."""
    ds = config.dataset
    if ds.format == "voc":
        if not ds.root:
            raise InputError("dataset.root must name a VOC year directory", record="dataset")
        classes = tuple(ds.classes) if ds.classes else VOC_CLASSES
        return open_voc(
            ds.root,
            ds.split,
            classes=classes,
            ignore_classes=tuple(ds.ignore_classes),
            skip_bad=ds.skip_bad,
            strict_sizes=False,
        )
    if ds.classes or ds.ignore_classes:
        raise InputError(
            "dataset.classes and dataset.ignore_classes are for VOC-layout sets; a COCO file "
            "lists its own categories",
            record="dataset.classes",
        )
    if not ds.annotations or not ds.images:
        raise InputError(
            "dataset.annotations and dataset.images must name a COCO JSON and its images",
            record="dataset",
        )
    if ds.format == "coco-person":
        return open_coco(
            ds.annotations, ds.images, view="person", skip_bad=ds.skip_bad, strict_sizes=False
        )
    return open_coco(ds.annotations, ds.images, skip_bad=ds.skip_bad, strict_sizes=False)


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
    variant: VariantConfig, runner: OnnxRunner, model: Path, dataset: Dataset
) -> tuple[Decoder, str]:
    """The configured decoder, or the detected one, and why it was chosen."""
    name, why = variant.decoder, "set in the configuration"
    if name == "auto":
        name, why = detect_decoder(runner.output_specs())
    names = tuple(variant.class_names) if variant.class_names else None
    if names is None and name != "tfod-ssd" and dataset.ground_truth.source == "coco":
        names = zoo_class_names(dataset, runner.output_specs())
        if names is not None:
            why += "; class names by the zoo's rule (column k = k-th smallest category id)"
    if name == "tfod-ssd":
        model_dir = Path(variant.model_dir) if variant.model_dir else model.parent
        decoder: Decoder = TfodSsdDecoder.from_model_dir(model_dir, model=str(model))
        if names:
            decoder = TfodSsdDecoder(
                anchors_ycxchw=decoder.anchors_ycxchw,  # type: ignore[attr-defined]
                class_names=names,
                model=str(model),
            )
    elif name == "st-ssd":
        decoder = StSsdDecoder(class_names=names, model=str(model))
    elif name == "decoded":
        decoder = DecodedDecoder(class_names=names, model=str(model))
    else:
        raise InputError(f"unknown decoder {name!r}; known: auto, st-ssd, tfod-ssd, decoded")
    return decoder, why


def _protocol_record(result: EvalResult) -> dict[str, Any]:
    record = result.to_dict()
    record["AP50"] = result.ap
    curves = {
        c.name: precision_at_recall_grid(c.recall, c.precision).tolist()
        if result.protocol != "coco"
        else c.precision.tolist()
        for c in result.per_class
        if c.ap is not None
    }
    mean = [
        sum(values[i] for values in curves.values()) / len(curves) if curves else 0.0
        for i in range(COCO_RECALL_THRESHOLDS.shape[0])
    ]
    record["pr_curves"] = {
        "recall": COCO_RECALL_THRESHOLDS.tolist(),
        "mean": mean,
        "per_class": curves,
    }
    return record


def _compact_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Model statistics without the per-layer list (hundreds of rows for a real model)."""
    return {k: v for k, v in stats.items() if k != "layers"}


def _variant_order(variants: Mapping[str, VariantConfig]) -> list[str]:
    """Variants that are quantized from another run after their source."""
    ordered = [n for n, v in variants.items() if v.quantize is None]
    ordered += [n for n, v in variants.items() if v.quantize is not None]
    for name in ordered:
        source = variants[name].quantize
        if source is not None and source.source not in variants:
            raise InputError(
                f"variant {name!r} quantizes {source.source!r}, which is not a variant",
                record=f"variants.{name}.quantize.source",
            )
    return ordered


def _model_path(
    name: str,
    variant: VariantConfig,
    config: RunConfig,
    models: Mapping[str, Path],
    dataset: Dataset,
    out: Path,
    log: Log,
) -> Path:
    if variant.quantize is None:
        if not variant.model:
            raise InputError(
                "a variant needs a model file or a quantize section",
                record=f"variants.{name}.model",
            )
        path = Path(variant.model)
        if not path.is_file():
            raise InputError("model file not found", path=path, record=f"variants.{name}.model")
        return path
    from evalkit.quantize import quantize_for_run

    target = out / "models" / f"{name}.onnx"
    log(f"[{name}] quantizing {models[variant.quantize.source]} (zoo settings)")
    return quantize_for_run(
        models[variant.quantize.source],
        target,
        dataset,
        count=variant.quantize.calib_count,
        seed=variant.quantize.seed,
        progress=not config.quiet,
        calibration_dir=variant.quantize.images or None,
    )


@dataclass
class _Variant:
    """What the prediction phase learnt about one variant, for the metrics phase."""

    record: dict[str, Any]
    predictions: Predictions
    mapping: ClassMapping


def _check_mapping(name: str, mapping: ClassMapping, config: RunConfig) -> None:
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


def _predict_variant(
    name: str,
    config: RunConfig,
    dataset: Dataset,
    indices: list[int],
    models: dict[str, Path],
    out: Path,
    log: Log,
) -> _Variant:
    variant = config.variants[name]
    zoo = resolved_profile(config) == "zoo"
    nms = NmsSettings(**asdict(config.nms))
    model = _model_path(name, variant, config, models, dataset, out, log)
    models[name] = model
    batch_size = config.batch_size or (ZOO_BATCH_SIZE if zoo else 1)
    runner = OnnxRunner(
        model, batch_size=batch_size, threads=config.threads, preprocessor=variant.preprocessor
    )
    decoder, why = build_decoder(variant, runner, model, dataset)
    if not decoder.class_names:
        raise InputError(
            "the model's class names are unknown: set class_names",
            record=f"variants.{name}.class_names",
        )
    mapping = map_classes(decoder.class_names, dataset.classes)
    _check_mapping(name, mapping, config)
    log(f"[{name}] {model.name}: decoder {decoder.name} ({why}); {mapping.describe()}")
    batches = zoo_batches(dataset.ground_truth, indices, batch_size) if zoo else None
    batching = {
        "order": "zoo (annotated images first, dataset order)" if zoo else "dataset order",
        "batch_size": batch_size,
    }
    model_sha = file_sha256(model)
    key = settings_key(
        {
            "model": model_sha,
            "decoder": decoder.settings(),
            "nms": asdict(nms),
            "preprocessing": runner.preprocessing.preprocessor.settings(),
            "batching": batching,
            "dataset": [str(dataset.image_path(i)) for i in indices],
        }
    )
    cache = PredictionCache(out / "cache" / f"{name}.jsonl", key)
    predictions = predict(
        dataset,
        runner,
        decoder,
        nms,
        batch_size=batch_size,
        indices=indices,
        batches=batches,
        cache=cache,
        progress=not config.quiet,
        description=name,
    )
    if cache.discarded is not None:
        log(
            f"[{name}] cached predictions were made with other settings; "
            f"set aside in {cache.discarded}"
        )
    if predictions.times.changed_images:
        log(
            f"[{name}] {predictions.times.changed_images} image(s) changed since they were "
            "cached: predicted again"
        )
    record: dict[str, Any] = {
        "model": {
            "path": str(model),
            "bytes": model.stat().st_size,
            "sha256": model_sha,
            "precision": runner.info.precision,
            "format": "onnx",
        },
        "runner": runner.info.to_dict(),
        "preprocessing": {
            "name": runner.preprocessing.name,
            "reason": runner.preprocessing.reason,
            **runner.preprocessing.preprocessor.settings(),
        },
        "decoder": {"name": decoder.name, "why": why, **decoder.settings()},
        "nms": nms.to_dict(),
        "batching": batching,
        "class_mapping": mapping.describe(),
        "timings": predictions.times.to_dict(),
        **_model_figures(model, variant, config),
    }
    return _Variant(record=record, predictions=predictions, mapping=mapping)


def _model_figures(model: Path, variant: VariantConfig, config: RunConfig) -> dict[str, Any]:
    """Latency (its own pass), model statistics, the memory estimate, on-board figures."""
    from evalkit.bench.memory import activation_memory
    from evalkit.bench.model_stats import model_stats

    latency = None
    if config.latency.runs > 0:
        from evalkit.bench.latency import measure_latency

        latency = measure_latency(
            model, threads=config.threads, runs=config.latency.runs, warmup=config.latency.warmup
        ).to_dict()
    memory = activation_memory(model).to_dict()
    memory.pop("live_bytes", None)  # per-node curve: large, and not needed in the record
    memory.pop("node_names", None)
    onboard = None
    if variant.stedgeai_report:
        from evalkit.bench.stedgeai import import_report

        onboard = import_report(variant.stedgeai_report).to_dict()
    return {
        "latency": latency,
        "model_stats": _compact_stats(model_stats(model).to_dict()),
        "memory": memory,
        "onboard": onboard,
    }


def _limited(dataset: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(dataset):
        return dataset
    keep = np.zeros(len(dataset), bool)
    keep[:limit] = True
    return replace(dataset, ground_truth=select(dataset.ground_truth, images=keep))


def run(config: RunConfig, *, log: Log = print) -> RunOutcome:
    """Evaluate every variant of ``config`` and write result.json, detections and report.

    Two phases: every variant's predictions (resumable), then the metrics on the images all
    of them could read. Images that fail to decode are errors (all of them named at once,
    the predictions made so far kept in the cache) or, with ``dataset.skip_bad``, recorded
    skips left out of every variant's metrics alike.
    """
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    dataset = _limited(open_dataset(config), config.dataset.limit)
    for skipped in dataset.skipped:
        log(f"skipped image {skipped.image_id!r} ({skipped.path}): {skipped.reason}")
    indices = list(range(len(dataset)))
    models: dict[str, Path] = {}
    found: dict[str, _Variant] = {}
    for name in _variant_order(config.variants):
        found[name] = _predict_variant(name, config, dataset, indices, models, out, log)

    failed = {i: why for v in found.values() for i, why in v.predictions.failed}
    bad: list[SkippedImage] = []
    if failed:
        bad = [
            SkippedImage(dataset.images[i].image_id, str(dataset.image_path(i)), f"decode: {why}")
            for i, why in sorted(failed.items())
        ]
        if not config.dataset.skip_bad:
            raise bad_images_error(bad, config.dataset.images or config.dataset.root)
        for b in bad:
            log(f"skipped image {b.image_id!r} ({b.path}): {b.reason}")
    keep = np.ones(len(dataset), bool)
    keep[list(failed)] = False
    position = np.cumsum(keep) - 1  # old image index -> index in the kept set
    evaluated = without_images(dataset, keep, tuple(bad)) if failed else dataset
    gt = evaluated.ground_truth

    sizes: dict[int, tuple[int, int]] = {}
    for v in found.values():
        for i, wh in v.predictions.decoded_sizes().items():
            if keep[i]:
                sizes.setdefault(int(position[i]), wh)
    st_gt = with_decoded_sizes(gt, sizes)
    mismatched = [
        {
            "image_id": im.image_id,
            "annotated": [im.width, im.height],
            "decoded": list(sizes[i]),
        }
        for i, im in enumerate(gt.images)
        if i in sizes and sizes[i] != (im.width, im.height)
    ]
    if mismatched:
        log(
            f"{len(mismatched)} image(s) decode to another size than annotated; st scales by "
            "the decoded size (as the zoo does), see result.json dataset.size_mismatches"
        )

    variants: dict[str, Any] = {}
    for name, v in found.items():
        pred = v.predictions
        kept = [k for k, i in enumerate(pred.image_indices) if keep[i]]
        dets = to_detections(
            [pred.per_image[k] for k in kept],
            [int(position[pred.image_indices[k]]) for k in kept],
            gt.images,
            v.mapping,
        )
        det_file = f"detections_{name}.json"
        write_coco_results(out / det_file, gt, dets)
        t0 = time.perf_counter()
        protocols = {
            p: _protocol_record(evaluate(st_gt if p == "st" else gt, dets, protocol=p))
            for p in config.protocols
        }
        v.record["timings"]["metrics_s"] = time.perf_counter() - t0
        variants[name] = {**v.record, "detections": det_file, "protocols": protocols}
        summary = ", ".join(f"{p} {100 * r['AP50']:.2f}" for p, r in protocols.items())
        log(f"[{name}] AP50: {summary}")
    data = {
        "schema_version": SCHEMA_VERSION,
        "kind": "evalkit.run",
        "name": config.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": asdict(config),
        "profile": resolved_profile(config),
        "environment": environment(),
        "reference": asdict(config.reference) if config.reference else None,
        "dataset": {
            "name": evaluated.name,
            "format": config.dataset.format,
            "num_images": len(gt.images),
            "num_annotations": gt.num_annotations,
            "classes": list(evaluated.classes),
            "skipped": [asdict(s) for s in evaluated.skipped],
            "ignored_objects": dict(evaluated.ignored_objects),
            "size_mismatches": mismatched,
        },
        "variants": variants,
    }
    path = write_result(out / "result.json", data)
    record = validate(data, path)
    return RunOutcome(record=record, out_dir=out, report_files=_render(record, config, out, log))


def _render(record: RunRecord, config: RunConfig, out: Path, log: Log) -> tuple[Path, ...]:
    from evalkit.reports import render_report

    reference = None
    if config.reference is not None:
        from evalkit.references import reference_for

        reference = reference_for(config.reference.model, config.reference.dataset)
    files = render_report(record, out, reference=reference)
    return tuple(files.paths)
