"""Scoring: one variant of a run, from its predictions to its protocol results
(:func:`score_variant`, the metrics phase of ``evalkit run``), and one runner on a dataset
without a run folder (:func:`evaluate_runner`, used while models are made: the demo model's
training script).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from evalkit.datasets.classes import ClassMapping, map_classes
from evalkit.datasets.dataset import Dataset
from evalkit.datasets.preprocess import Preprocessor
from evalkit.metrics import DEFAULT_PROTOCOLS, PROTOCOLS, evaluate, write_coco_results
from evalkit.metrics.analysis import AnalysisSettings, analyse
from evalkit.metrics.interpolation import COCO_RECALL_THRESHOLDS, precision_at_recall_grid
from evalkit.metrics.results_file import exact_duplicates
from evalkit.pipeline.predict import Predictions, predict
from evalkit.postprocess.assemble import to_detections
from evalkit.postprocess.decoders import StSsdDecoder
from evalkit.postprocess.nms import NmsSettings
from evalkit.record import ProtocolResult, Timings, VariantRecord
from evalkit.record.fields import Fields
from evalkit.runners.base import Runner
from evalkit.types import EvalResult, GroundTruth


@dataclass(frozen=True)
class ScoredSet:
    """The images every variant is scored on: the ground truth as annotated and as decoded
    (see :attr:`evalkit.metrics.protocol.Protocol.image_sizes`), which of the dataset's
    images are kept, and each kept image's index in that set."""

    annotated: GroundTruth
    decoded: GroundTruth
    keep: npt.NDArray[np.bool_]
    position: npt.NDArray[np.intp]


def protocol_result(result: EvalResult) -> ProtocolResult:
    """A protocol's result as the run records it: its fields and its precision curves on
    the 101 COCO recall points (per class and their mean)."""
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
    return ProtocolResult.from_fields(Fields(record, f"protocols.{result.protocol}", None))


def score_variant(
    name: str,
    record: VariantRecord,
    predictions: Predictions,
    mapping: ClassMapping,
    scored: ScoredSet,
    protocols: Sequence[str],
    stage: Path,
    log: Callable[[str], None],
    analysis: AnalysisSettings | None = None,
) -> VariantRecord:
    """One variant's detections on the scored set, written beside the record (COCO results
    format), scored under every protocol and (unless ``analysis`` is None) analysed; its
    record completed with the results."""
    kept = [k for k, i in enumerate(predictions.image_indices) if scored.keep[i]]
    gt = scored.annotated
    pre = record.preprocessing or {}
    dets = to_detections(
        [predictions.per_image[k] for k in kept],
        [int(scored.position[predictions.image_indices[k]]) for k in kept],
        gt.images,
        mapping,
        Preprocessor.from_settings(pre) if pre.get("resize") == "letterbox" else None,
    )
    write_coco_results(stage / record.detections, gt, dets)
    t0 = time.perf_counter()
    results = {}
    for p in protocols:
        truth = scored.decoded if PROTOCOLS.get(p).image_sizes == "decoded" else gt
        results[p] = protocol_result(evaluate(truth, dets, protocol=p))
    metrics_s = time.perf_counter() - t0
    analysed = None
    if analysis is not None:
        analysed = analyse(gt, dets, analysis).to_dict()
    timings = replace(
        record.timings or Timings(),
        metrics_s=metrics_s,
        analysis_s=None if analysed is None else time.perf_counter() - t0 - metrics_s,
    )
    duplicates = exact_duplicates(dets)
    if duplicates:
        log(f"[{name}] warning: {duplicates} detection(s) exactly repeat another one")
    summary = ", ".join(f"{p} {100 * r.ap50:.2f}" for p, r in results.items())
    log(f"[{name}] AP50: {summary}")
    return replace(
        record,
        timings=timings,
        duplicate_detections=duplicates,
        protocols=results,
        analysis=analysed,
    )


def evaluate_runner(
    dataset: Dataset,
    runner: Runner,
    class_names: Sequence[str],
    protocols: Sequence[str] = DEFAULT_PROTOCOLS,
    batch_size: int = 16,
    score_threshold: float = NmsSettings.score_threshold,
) -> dict[str, EvalResult]:
    """AP of one runner on ``dataset`` through evalkit's own path (st-ssd decode, zoo NMS)."""
    decoder = StSsdDecoder(class_names=tuple(class_names))
    nms = NmsSettings(score_threshold=score_threshold)  # the zoo's NMS otherwise
    predictions = predict(dataset, runner, decoder, nms, batch_size=batch_size, progress=False)
    mapping = map_classes(class_names, dataset.classes)
    dets = to_detections(
        predictions.per_image,
        predictions.image_indices,
        dataset.images,
        mapping,
        runner.preprocessing.preprocessor,
    )
    return {p: evaluate(dataset.ground_truth, dets, protocol=p) for p in protocols}
