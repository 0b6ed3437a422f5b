"""``evalkit run``: dataset to comparison report.

Everything the run needs is checked before the first inference (configuration values,
reference, dataset and its images, every variant's model, decoder and class mapping). The
output folder is locked for the run (:mod:`evalkit.pipeline.lock`); predictions are cached
as they are made (:mod:`evalkit.pipeline.cache`), so a killed or interrupted run resumes;
detections, ``result.json`` and the report are written to a staging folder and published
together (:mod:`evalkit.pipeline.publish`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.datasets.dataset import Dataset, SkippedImage, bad_images_error, without_images
from evalkit.errors import InputError, RunInterrupted
from evalkit.fingerprint import dataset_fingerprint, split_of
from evalkit.hashing import file_sha256
from evalkit.pipeline.config import RunConfig, analysis_settings, resolved_profile
from evalkit.pipeline.executors import open_executor
from evalkit.pipeline.inputs import limited, open_dataset, with_decoded_sizes
from evalkit.pipeline.lock import FolderLock
from evalkit.pipeline.publish import publish, staging_dir
from evalkit.pipeline.score import ScoredSet, score_variant
from evalkit.pipeline.variant import (
    Log,
    PredictedVariant,
    check_variants,
    predict_variant,
    predict_variants_together,
    variant_order,
)
from evalkit.provenance import environment
from evalkit.record import (
    SCHEMA_VERSION,
    DatasetSummary,
    ReferenceVerdict,
    RunRecord,
    VariantRecord,
    write_result,
)
from evalkit.record import SkippedImage as SkippedRecord
from evalkit.references import DatasetReference

__all__ = ["Log", "Render", "RunOutcome", "run"]

# Writes a record's report into a folder and returns its files. The pipeline takes it as an
# argument (evalkit.api passes evalkit.reports') so that it does not depend on the reports.
Render = Callable[[RunRecord, Path], Sequence[Path]]

# Several variants in this process run in lockstep, each image decoded once for all
# (evalkit.pipeline.together); tests turn it off to compare with one variant at a time.
LOCKSTEP = True


@dataclass(frozen=True)
class RunOutcome:
    """What a run produced: the validated record and where its files are."""

    record: RunRecord
    out_dir: Path
    report_files: tuple[Path, ...]


def _reference(config: RunConfig) -> DatasetReference | None:
    if config.reference is None:
        return None
    from evalkit.references import reference_for

    return reference_for(config.reference.model, config.reference.dataset)


class _Progress:
    """What an interrupted run had cached, for the message that says how to resume."""

    def __init__(self, out: Path, config: RunConfig) -> None:
        self.cache = out / "cache"
        self.variants = list(config.variants)
        self.images: int | None = None

    def message(self) -> str:
        if self.images is None:
            return "interrupted before any prediction; nothing was cached"
        done = 0
        for name in self.variants:
            path = self.cache / f"{name}.jsonl"
            if path.is_file():
                with path.open("rb") as handle:
                    done += max(0, sum(1 for _ in handle) - 1)  # the first line is the header
        total = self.images * len(self.variants)
        return (
            f"interrupted: {min(done, total)}/{total} images cached in {self.cache}; "
            "run the same command to resume"
        )


def run(config: RunConfig, *, log: Log = print, render: Render | None = None) -> RunOutcome:
    """Evaluate every variant of ``config``; publish detections, result.json and, when
    ``render`` is given, the report it writes (:func:`evalkit.run` gives evalkit's).

    Two phases: every variant's predictions (resumable), then the metrics on the images all
    of them could read. Images that fail to decode are errors (all of them named at once,
    the predictions made so far kept in the cache) or, with ``dataset.skip_bad``, recorded
    skips left out of every variant's metrics alike. Ctrl-C raises RunInterrupted, whose
    message says how much is cached.
    """
    out = Path(config.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder: {exc.strerror}", path=out) from None
    reference = _reference(config)
    progress = _Progress(out, config)
    with FolderLock(out, log):
        stage = staging_dir(out)
        _clear_staging(stage)
        try:
            stage.mkdir(exist_ok=True)
            made = _evaluate(config, out, stage, reference, progress, log)
            staged = write_result(stage / "result.json", made)
            files = tuple(render(staged, stage)) if render is not None else ()
        except KeyboardInterrupt:
            raise RunInterrupted(progress.message()) from None
        publish(out)
    record = replace(staged, path=out / "result.json")
    return RunOutcome(record, out, tuple(out / p.relative_to(stage) for p in files))


def _clear_staging(stage: Path) -> None:
    """An interrupted run's half-written outputs go; its quantized models stay (reused
    when nothing that shapes them changed)."""
    if not stage.is_dir():
        return
    for path in sorted(stage.rglob("*"), reverse=True):
        if path.is_file() and path.parent != stage / "models":
            path.unlink()
        elif path.is_dir() and path != stage / "models" and not any(path.iterdir()):
            path.rmdir()


def _evaluate(
    config: RunConfig,
    out: Path,
    stage: Path,
    reference: DatasetReference | None,
    progress: _Progress,
    log: Log,
) -> RunRecord:
    """Predict every variant (resumable), then score each on the images all could read."""
    opened = open_dataset(config)
    dataset = limited(opened, config.dataset.limit)
    for skipped in dataset.skipped:
        log(f"skipped image {skipped.image_id!r} ({skipped.path}): {skipped.reason}")
    check_variants(config, dataset)
    indices = list(range(len(dataset)))
    progress.images = len(indices)
    models: dict[str, Path] = {}
    executor = open_executor(config.executor)
    try:
        ran_on = executor.describe()
        if LOCKSTEP and ran_on.get("kind") == "local" and len(config.variants) > 1:
            # In this process: all variants in lockstep, each image decoded once.
            found = predict_variants_together(config, dataset, indices, out, stage, log)
        else:
            found = {
                name: predict_variant(
                    name, config, dataset, indices, models, out, stage, log, executor
                )
                for name in variant_order(config.variants)
            }
            ran_on = executor.describe()
    finally:
        executor.close()
    evaluated, keep, position = _readable(found, dataset, config, log)
    decoded, mismatched = _decoded_sizes(found, keep, position, evaluated, log)
    scored = ScoredSet(evaluated.ground_truth, decoded, keep, position)
    variants = {
        name: score_variant(
            name,
            v.record,
            v.predictions,
            v.mapping,
            scored,
            config.protocols,
            stage,
            log,
            analysis_settings(config.analysis),
        )
        for name, v in found.items()
    }
    record = _run_record(config, reference, evaluated, mismatched, variants, opened, dataset)
    return replace(record, executor=ran_on)


def _run_record(
    config: RunConfig,
    reference: DatasetReference | None,
    evaluated: Dataset,
    mismatched: list[dict[str, Any]],
    variants: dict[str, VariantRecord],
    opened: Dataset,
    dataset: Dataset,
) -> RunRecord:
    """The run's record: its settings, provenance, fingerprint, card verdict and variants."""
    ds, gt = config.dataset, evaluated.ground_truth
    fingerprint = {
        "dataset": dataset_fingerprint(
            gt,
            format=ds.format,
            split=split_of(ds.annotations, ds.root, ds.split, ds.format),
            annotation_sha256=file_sha256(ds.annotations) if ds.annotations else None,
        ),
        "settings": _settings(config, variants),
    }
    return RunRecord(
        schema_version=SCHEMA_VERSION,
        name=config.name,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=asdict(config),
        profile=resolved_profile(config),
        environment=environment(),
        reference=_reference_record(
            config,
            reference,
            fingerprint["dataset"],
            was_limited=len(dataset) < len(opened),
            skipped=len(evaluated.skipped),
        ),
        fingerprint=fingerprint,
        dataset=DatasetSummary(
            name=evaluated.name,
            format=ds.format,
            num_images=len(gt.images),
            num_annotations=gt.num_annotations,
            classes=tuple(evaluated.classes),
            skipped=tuple(SkippedRecord(**asdict(s)) for s in evaluated.skipped),
            ignored_objects=dict(evaluated.ignored_objects),
            size_mismatches=tuple(mismatched),
        ),
        variants=variants,
    )


def _settings(config: RunConfig, variants: dict[str, VariantRecord]) -> dict[str, Any]:
    """The settings that change numbers (fingerprint.settings): profile, NMS, and each
    variant's pre-processing and decoder (and its batches, which the zoo's chain depends
    on)."""
    zoo = resolved_profile(config) == "zoo"
    per_variant = {}
    for name, v in variants.items():
        pre = {k: val for k, val in (v.preprocessing or {}).items() if k != "reason"}
        entry: dict[str, Any] = {"preprocessing": pre, "decoder": v.decoder_name}
        if zoo:
            entry["batching"] = v.batching
        per_variant[name] = entry
    return {"profile": resolved_profile(config), "nms": asdict(config.nms), "variants": per_variant}


def _reference_record(
    config: RunConfig,
    reference: DatasetReference | None,
    dataset: dict[str, Any],
    *,
    was_limited: bool,
    skipped: int,
) -> ReferenceVerdict | None:
    if config.reference is None or reference is None:
        return None
    from evalkit.references.comparability import card_comparison

    verdict = card_comparison(
        reference,
        dataset,
        context_only=config.reference.context_only,
        limited=was_limited,
        skipped=skipped,
    )
    named = config.reference
    return ReferenceVerdict(
        named.model, named.dataset, named.context_only, verdict.comparable, verdict.why
    )


def _readable(
    found: dict[str, PredictedVariant], dataset: Dataset, config: RunConfig, log: Log
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """The dataset without the images some variant could not decode (an error unless
    skip_bad), the mask of kept images and each kept image's new index."""
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
    return evaluated, keep, position


def _decoded_sizes(
    found: dict[str, PredictedVariant],
    keep: np.ndarray,
    position: np.ndarray,
    evaluated: Dataset,
    log: Log,
) -> tuple[Any, list[dict[str, Any]]]:
    """Ground truth at each image's decoded size (what st scales by, 6b.2), and the images
    whose decoded size differs from the annotated one."""
    gt = evaluated.ground_truth
    sizes: dict[int, tuple[int, int]] = {}
    for v in found.values():
        for i, wh in v.predictions.decoded_sizes().items():
            if keep[i]:
                sizes.setdefault(int(position[i]), wh)
    mismatched = [
        {"image_id": im.image_id, "annotated": [im.width, im.height], "decoded": list(sizes[i])}
        for i, im in enumerate(gt.images)
        if i in sizes and sizes[i] != (im.width, im.height)
    ]
    if mismatched:
        log(
            f"{len(mismatched)} image(s) decode to another size than annotated; st scales by "
            "the decoded size (as the zoo does), see result.json dataset.size_mismatches"
        )
    return with_decoded_sizes(gt, sizes), mismatched
