"""Score one runner on a dataset through evalkit's own path, without a run folder.

Used to evaluate models while they are made (the demo model's training script): st-ssd
decode, the zoo's NMS, dataset class mapping, then the requested protocols.
"""

from __future__ import annotations

from collections.abc import Sequence

from evalkit.datasets.classes import map_classes
from evalkit.datasets.dataset import Dataset
from evalkit.metrics import evaluate
from evalkit.pipeline.predict import predict
from evalkit.postprocess.assemble import to_detections
from evalkit.postprocess.decoders import StSsdDecoder
from evalkit.postprocess.nms import NmsSettings
from evalkit.runners.base import Runner
from evalkit.types import EvalResult

ALL_PROTOCOLS = ("coco", "st", "voc07", "voc12")


def evaluate_runner(
    dataset: Dataset,
    runner: Runner,
    class_names: Sequence[str],
    protocols: Sequence[str] = ALL_PROTOCOLS,
    batch_size: int = 16,
    score_threshold: float = NmsSettings.score_threshold,
) -> dict[str, EvalResult]:
    """AP of one runner on ``dataset`` through evalkit's own path (st-ssd decode, zoo NMS)."""
    decoder = StSsdDecoder(class_names=tuple(class_names))
    nms = NmsSettings(score_threshold=score_threshold)  # the zoo's NMS otherwise
    predictions = predict(dataset, runner, decoder, nms, batch_size=batch_size, progress=False)
    mapping = map_classes(class_names, dataset.classes)
    dets = to_detections(predictions.per_image, predictions.image_indices, dataset.images, mapping)
    return {p: evaluate(dataset.ground_truth, dets, protocol=p) for p in protocols}
