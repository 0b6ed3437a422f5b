"""One variant of a run: its model (given, or quantized by the run), runner, decoder and
class mapping, its predictions (resumable), and its part of ``result.json``."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evalkit.datasets.classes import ClassMapping, map_classes
from evalkit.datasets.dataset import Dataset
from evalkit.errors import InputError
from evalkit.hashing import file_sha256, settings_key
from evalkit.pipeline.cache import PredictionCache
from evalkit.pipeline.config import (
    RunConfig,
    VariantConfig,
    check_quantize_sources,
    resolved_profile,
)
from evalkit.pipeline.executors import Executor, RunnerSpec
from evalkit.pipeline.inputs import build_decoder, check_mapping, zoo_batches
from evalkit.pipeline.predict import Predictions, predict
from evalkit.postprocess.decoders import Decoder
from evalkit.postprocess.final import nms_record
from evalkit.record import Latency, Timings, VariantRecord
from evalkit.record import ModelFile as RecordedModel
from evalkit.runners.base import Runner, model_file_kind, open_runner

# The zoo's data loader batch (6b.5).
ZOO_BATCH_SIZE = 32
# Fewer calibration images than this make activation ranges a matter of luck.
FEW_CALIBRATION_IMAGES = 10

Log = Callable[[str], None]


@dataclass
class PredictedVariant:
    """What the prediction phase learnt about one variant, for the metrics phase: its
    record without protocol results yet, its predictions and class mapping."""

    record: VariantRecord
    predictions: Predictions
    mapping: ClassMapping


@dataclass(frozen=True)
class ModelFile:
    """The model a variant runs: where it is now, where the record says it lives, and the
    calibration that made it (None when it was not made by this run)."""

    path: Path
    recorded: Path
    calibration: dict[str, Any] | None = None


def variant_order(variants: Mapping[str, VariantConfig]) -> list[str]:
    """Variants that are quantized from another run after their source."""
    check_quantize_sources(variants, None)  # load_config checked a file's; this, a caller's
    ordered = [n for n, v in variants.items() if v.quantize is None]
    return ordered + [n for n, v in variants.items() if v.quantize is not None]


def given_model(name: str, variant: VariantConfig) -> Path:
    """The model file a variant names, checked."""
    if not variant.model:
        raise InputError(
            "a variant needs a model file or a quantize section", record=f"variants.{name}.model"
        )
    path = Path(variant.model)
    if not path.is_file():
        raise InputError("model file not found", path=path, record=f"variants.{name}.model")
    return path


def _quantized_model(
    name: str,
    variant: VariantConfig,
    config: RunConfig,
    source: Path,
    dataset: Dataset,
    out: Path,
    stage: Path,
    log: Log,
) -> ModelFile:
    from evalkit.quantize import quantize_for_run

    assert variant.quantize is not None
    target = stage / "models" / f"{name}.onnx"
    published = out / "models" / f"{name}.onnx"
    # The previous run's model seeds the staging copy: quantize_for_run reuses it when
    # nothing that shapes it changed, and it is only published with this run's results.
    if not target.is_file() and published.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        for path in (published, published.with_suffix(".quantize.json")):
            if path.is_file():
                shutil.copy2(path, target.with_name(path.name))
    log(f"[{name}] quantizing {source} (zoo settings)")
    made = quantize_for_run(
        source,
        target,
        dataset,
        count=variant.quantize.calib_count,
        seed=variant.quantize.seed,
        progress=not config.quiet,
        calibration_dir=variant.quantize.images or None,
    )
    calibration = made.calibration.to_dict()
    calibration["warning"] = None
    if len(made.calibration.files) < FEW_CALIBRATION_IMAGES:
        calibration["warning"] = (
            f"only {len(made.calibration.files)} calibration image(s): activation ranges from "
            f"so few are unreliable (use at least {FEW_CALIBRATION_IMAGES})"
        )
        log(f"[{name}] warning: {calibration['warning']}")
    return ModelFile(made.path, published, calibration)


@dataclass(frozen=True)
class Prepared:
    """A variant's runner, decoder and class mapping, all checked."""

    runner: Runner
    decoder: Decoder
    why: str
    mapping: ClassMapping


def batch_size_of(config: RunConfig) -> int:
    zoo = resolved_profile(config) == "zoo"
    return config.batch_size or (ZOO_BATCH_SIZE if zoo else 1)


def runner_options(name: str, config: RunConfig) -> dict[str, Any]:
    """What a variant's runner is opened with (here, or by a remote executor's workers)."""
    return {
        "batch_size": batch_size_of(config),
        "threads": config.threads,
        "preprocessor": config.variants[name].preprocessor,
    }


def prepare(name: str, model: Path, config: RunConfig, dataset: Dataset) -> Prepared:
    """Runner, decoder (and its files) and class mapping of a variant, or the InputError
    that says which of them cannot be used."""
    variant = config.variants[name]
    runner = open_runner(model, **runner_options(name, config))
    decoder, why = build_decoder(variant, runner, model, dataset)
    if not decoder.class_names:
        raise InputError(
            "the model's class names are unknown: set class_names",
            record=f"variants.{name}.class_names",
        )
    mapping = map_classes(decoder.class_names, dataset.classes)
    check_mapping(name, mapping, config)
    return Prepared(runner, decoder, why, mapping)


def check_variants(config: RunConfig, dataset: Dataset) -> None:
    """Every variant's model, decoder and class mapping, before the first inference. A
    variant the run quantizes is checked against its source model (same outputs)."""
    for name in variant_order(config.variants):
        variant = config.variants[name]
        source = name if variant.quantize is None else variant.quantize.source
        prepare(name, given_model(source, config.variants[source]), config, dataset)
        if variant.stedgeai_report:
            from evalkit.bench.stedgeai import import_report

            import_report(variant.stedgeai_report)


@dataclass(frozen=True)
class VariantSetup:
    """A variant ready to predict: its model (quantized by now when the run makes it),
    runner, decoder, mapping, batches and cache."""

    name: str
    model: ModelFile
    model_sha: str
    ready: Prepared
    batch_size: int
    batches: list[list[int]] | None  # None: runs of batch_size over the images left
    batching: dict[str, Any]
    cache: PredictionCache


def setup_variant(
    name: str,
    config: RunConfig,
    dataset: Dataset,
    indices: list[int],
    models: dict[str, Path],
    out: Path,
    stage: Path,
    log: Log,
) -> VariantSetup:
    """Everything a variant needs before its first inference (its model quantized here
    when the run makes it: ``models`` holds the sources, and gets this variant's file)."""
    variant = config.variants[name]
    zoo = resolved_profile(config) == "zoo"
    if variant.quantize is None:
        path = given_model(name, variant)
        model = ModelFile(path, path)
    else:
        source = models[variant.quantize.source]
        model = _quantized_model(name, variant, config, source, dataset, out, stage, log)
    models[name] = model.path
    ready = prepare(name, model.path, config, dataset)
    log(
        f"[{name}] {model.path.name}: decoder {ready.decoder.name} ({ready.why}); "
        f"{ready.mapping.describe()}"
    )
    batch_size = batch_size_of(config)
    batches = zoo_batches(dataset.ground_truth, indices, batch_size) if zoo else None
    batching = {
        "order": "zoo (annotated images first, dataset order)" if zoo else "dataset order",
        "batch_size": batch_size,
    }
    model_sha = file_sha256(model.path)
    key = settings_key(
        {
            "model": model_sha,
            "decoder": ready.decoder.settings(),
            "nms": asdict(config.nms),
            "preprocessing": ready.runner.preprocessing.preprocessor.settings(),
            "batching": batching,
            "dataset": [str(dataset.image_path(i)) for i in indices],
        }
    )
    cache = PredictionCache(out / "cache" / f"{name}.jsonl", key)
    return VariantSetup(name, model, model_sha, ready, batch_size, batches, batching, cache)


def predict_variant(
    name: str,
    config: RunConfig,
    dataset: Dataset,
    indices: list[int],
    models: dict[str, Path],
    out: Path,
    stage: Path,
    log: Log,
    executor: Executor | None = None,
) -> PredictedVariant:
    """Predictions of one variant on ``indices`` (cached; its batches run by ``executor``,
    this process by default) and its record so far."""
    setup = setup_variant(name, config, dataset, indices, models, out, stage, log)
    spec = RunnerSpec(setup.model.path, runner_options(name, config))
    predictions = predict(
        dataset,
        setup.ready.runner,
        setup.ready.decoder,
        config.nms,
        batch_size=setup.batch_size,
        indices=indices,
        batches=setup.batches,
        cache=setup.cache,
        progress=not config.quiet,
        description=name,
        executor=None if executor is None else executor.for_variant(name, spec),
    )
    return finish_variant(setup, predictions, config, log)


def predict_variants_together(
    config: RunConfig,
    dataset: Dataset,
    indices: list[int],
    out: Path,
    stage: Path,
    log: Log,
) -> dict[str, PredictedVariant]:
    """Every variant in this process, in lockstep: each image decoded once for all of them
    (:mod:`evalkit.pipeline.together`); the same outputs as one variant at a time."""
    from evalkit.pipeline.together import Job, predict_together

    models: dict[str, Path] = {}
    setups = [
        setup_variant(name, config, dataset, indices, models, out, stage, log)
        for name in variant_order(config.variants)
    ]
    size = setups[0].batch_size
    batches = setups[0].batches or [indices[k : k + size] for k in range(0, len(indices), size)]
    jobs = [Job(s.name, s.ready.runner, s.ready.decoder, s.cache) for s in setups]
    found = predict_together(dataset, jobs, config.nms, batches, progress=not config.quiet)
    return {s.name: finish_variant(s, found[s.name], config, log) for s in setups}


def finish_variant(
    setup: VariantSetup, predictions: Predictions, config: RunConfig, log: Log
) -> PredictedVariant:
    """A variant's record so far, from its setup and predictions."""
    name, model, ready = setup.name, setup.model, setup.ready
    runner, decoder, variant = ready.runner, ready.decoder, config.variants[setup.name]
    if setup.cache.discarded is not None:
        log(
            f"[{name}] cached predictions were made with other settings; "
            f"set aside in {setup.cache.discarded}"
        )
    if predictions.times.changed_images:
        log(
            f"[{name}] {predictions.times.changed_images} image(s) changed since they were "
            "cached: predicted again"
        )
    record = VariantRecord(
        detections=f"detections_{name}.json",
        protocols={},  # the metrics phase fills them in
        model=RecordedModel(
            path=str(model.recorded),
            bytes=model.path.stat().st_size,
            sha256=setup.model_sha,
            precision=runner.info.precision,
            format=model_file_kind(model.path).format,
        ),
        calibration=model.calibration,
        runner=runner.info.to_dict(),
        preprocessing={
            "name": runner.preprocessing.name,
            "reason": runner.preprocessing.reason,
            **runner.preprocessing.preprocessor.settings(),
        },
        decoder={"name": decoder.name, "why": ready.why, **decoder.settings()},
        nms=nms_record(decoder, config.nms),
        batching=setup.batching,
        class_mapping=ready.mapping.describe(),
        timings=Timings(**predictions.times.to_dict()),
        **model_figures(model.path, variant, config, name, log),
    )
    return PredictedVariant(record=record, predictions=predictions, mapping=ready.mapping)


def model_figures(
    model: Path, variant: VariantConfig, config: RunConfig, name: str, log: Log
) -> dict[str, Any]:
    """Latency (its own pass), model statistics, the memory estimate, on-board figures."""
    from evalkit.bench.memory import activation_memory
    from evalkit.bench.model_stats import model_stats

    onboard = None
    if variant.stedgeai_report:
        from evalkit.bench.stedgeai import import_report

        onboard = import_report(variant.stedgeai_report).to_dict()
    kind = model_file_kind(model)
    if not kind.onnx_figures:
        log(
            f"[{name}] latency, model statistics and the memory estimate are measured on ONNX "
            f"models only: none recorded for this {kind.format} file"
        )
        return {"latency": None, "model_stats": None, "memory": None, "onboard": onboard}
    latency = None
    if config.latency.runs > 0:
        from evalkit.bench.latency import measure_latency

        latency = measure_latency(
            model, threads=config.threads, runs=config.latency.runs, warmup=config.latency.warmup
        ).to_dict()
    memory = activation_memory(model).to_dict()
    memory.pop("live_bytes", None)  # per-node curve: large, and not needed in the record
    memory.pop("node_names", None)
    stats = model_stats(model).to_dict()
    return {
        "latency": None if latency is None else Latency(latency),
        # Without the per-layer list (hundreds of rows for a real model).
        "model_stats": {k: v for k, v in stats.items() if k != "layers"},
        "memory": memory,
        "onboard": onboard,
    }
