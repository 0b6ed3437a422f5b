"""``evalkit run``: dataset to comparison report, one variant after another.

For each variant: predictions (resumable, see :mod:`evalkit.pipeline.cache`), detections in
COCO results format, every requested protocol, then a separate latency pass. Everything
lands in ``result.json`` (:mod:`evalkit.pipeline.result`) and the report renders from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.datasets.classes import map_classes
from evalkit.datasets.dataset import Dataset, open_coco, open_voc
from evalkit.datasets.views import select
from evalkit.errors import InputError
from evalkit.hashing import file_sha256, settings_key
from evalkit.metrics import evaluate, write_coco_results
from evalkit.metrics.interpolation import COCO_RECALL_THRESHOLDS, precision_at_recall_grid
from evalkit.pipeline.cache import PredictionCache
from evalkit.pipeline.config import RunConfig, VariantConfig
from evalkit.pipeline.predict import predict
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
from evalkit.types import EvalResult

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
        return open_voc(ds.root, ds.split, skip_bad=ds.skip_bad)
    if not ds.annotations or not ds.images:
        raise InputError(
            "dataset.annotations and dataset.images must name a COCO JSON and its images",
            record="dataset",
        )
    if ds.format == "coco-person":
        return open_coco(ds.annotations, ds.images, view="person", skip_bad=ds.skip_bad)
    return open_coco(ds.annotations, ds.images, skip_bad=ds.skip_bad)


def build_decoder(variant: VariantConfig, runner: OnnxRunner, model: Path) -> tuple[Decoder, str]:
    """The configured decoder, or the detected one, and why it was chosen."""
    name, why = variant.decoder, "set in the configuration"
    if name == "auto":
        name, why = detect_decoder(runner.output_specs())
    names = tuple(variant.class_names) if variant.class_names else None
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


def run(config: RunConfig, *, log: Log = print) -> RunOutcome:
    """Evaluate every variant of ``config`` and write result.json, detections and report."""
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    dataset = open_dataset(config)
    for skipped in dataset.skipped:
        log(f"skipped image {skipped.image_id!r} ({skipped.path}): {skipped.reason}")
    limit = config.dataset.limit
    indices = list(range(len(dataset) if limit is None else min(limit, len(dataset))))
    if limit is not None:
        keep = np.zeros(len(dataset), bool)
        keep[indices] = True
        dataset = Dataset(
            dataset.name,
            select(dataset.ground_truth, images=keep),
            dataset.image_dir,
            dataset.skipped,
        )
        indices = list(range(len(dataset)))
    gt = dataset.ground_truth
    nms = NmsSettings(**asdict(config.nms))
    models: dict[str, Path] = {}
    variants: dict[str, Any] = {}
    for name in _variant_order(config.variants):
        variant = config.variants[name]
        model = _model_path(name, variant, config, models, dataset, out, log)
        models[name] = model
        runner = OnnxRunner(
            model,
            batch_size=config.batch_size,
            threads=config.threads,
            preprocessor=variant.preprocessor,
        )
        decoder, why = build_decoder(variant, runner, model)
        class_names = decoder.class_names
        if not class_names:
            raise InputError(
                "the model's class names are unknown: set class_names",
                record=f"variants.{name}.class_names",
            )
        mapping = map_classes(class_names, dataset.classes)
        log(f"[{name}] {model.name}: decoder {decoder.name} ({why}); {mapping.describe()}")
        model_sha = file_sha256(model)
        key = settings_key(
            {
                "model": model_sha,
                "decoder": decoder.settings(),
                "nms": asdict(nms),
                "preprocessing": runner.preprocessing.preprocessor.settings(),
                "dataset": [str(dataset.image_path(i)) for i in indices],
            }
        )
        cache = PredictionCache(out / "cache" / f"{name}.jsonl", key)
        predictions = predict(
            dataset,
            runner,
            decoder,
            nms,
            batch_size=config.batch_size,
            indices=indices,
            cache=cache,
            progress=not config.quiet,
            description=name,
        )
        if cache.discarded is not None:
            log(
                f"[{name}] cached predictions were made with other settings; set aside "
                f"in {cache.discarded}"
            )
        dets = to_detections(
            predictions.per_image, predictions.image_indices, dataset.images, mapping
        )
        det_file = f"detections_{name}.json"
        write_coco_results(out / det_file, gt, dets)
        t0 = time.perf_counter()
        protocols = {p: _protocol_record(evaluate(gt, dets, protocol=p)) for p in config.protocols}
        metrics_s = time.perf_counter() - t0
        latency = None
        if config.latency.runs > 0:
            from evalkit.bench.latency import measure_latency

            latency = measure_latency(
                model,
                threads=config.threads,
                runs=config.latency.runs,
                warmup=config.latency.warmup,
            ).to_dict()
        from evalkit.bench.memory import activation_memory
        from evalkit.bench.model_stats import model_stats

        memory = activation_memory(model).to_dict()
        memory.pop("live_bytes", None)  # per-node curve: large, and not needed in the record
        memory.pop("node_names", None)
        onboard = None
        if variant.stedgeai_report:
            from evalkit.bench.stedgeai import import_report

            onboard = import_report(variant.stedgeai_report).to_dict()
        variants[name] = {
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
            "nms": asdict(nms),
            "class_mapping": mapping.describe(),
            "detections": det_file,
            "timings": {**predictions.times.to_dict(), "metrics_s": metrics_s},
            "latency": latency,
            "model_stats": _compact_stats(model_stats(model).to_dict()),
            "memory": memory,
            "onboard": onboard,
            "protocols": protocols,
        }
        summary = ", ".join(f"{p} {100 * r['AP50']:.2f}" for p, r in protocols.items())
        log(f"[{name}] AP50: {summary}")
    data = {
        "schema_version": SCHEMA_VERSION,
        "kind": "evalkit.run",
        "name": config.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": asdict(config),
        "environment": environment(),
        "reference": asdict(config.reference) if config.reference else None,
        "dataset": {
            "name": dataset.name,
            "format": config.dataset.format,
            "num_images": len(gt.images),
            "num_annotations": gt.num_annotations,
            "classes": list(dataset.classes),
            "skipped": [asdict(s) for s in dataset.skipped],
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
