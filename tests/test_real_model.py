"""The shared SSD MobileNetV2 (COCO, TF-OD) end to end on coco128: runner, decoder, NMS,
detections, and every protocol; pycocotools re-scores the same detections."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evalkit.datasets.classes import map_classes
from evalkit.datasets.dataset import Dataset, open_coco
from evalkit.metrics import evaluate, write_coco_results
from evalkit.metrics.results_file import load_coco_results
from evalkit.metrics.tide import tide_breakdown
from evalkit.pipeline.cache import PredictionCache
from evalkit.pipeline.predict import Predictions, predict
from evalkit.postprocess.assemble import to_detections
from evalkit.postprocess.decoders import TfodSsdDecoder
from evalkit.postprocess.nms import NmsSettings
from evalkit.runners.onnx import OnnxRunner
from evalkit.types import Detections

# Recorded by this pipeline (onnxruntime CPU, NMS 0.5 / 0.001 / 100) on coco128; see
# benchmarks/results/real_model_coco128.md. Kept within 0.2 AP points: onnxruntime's CPU
# kernels may differ in the last float bits between processors, which can move a
# borderline detection, but not by more than that on 128 images.
RECORDED_AP50 = {"coco": 0.4774, "st": 0.4726, "voc07": 0.4879, "voc12": 0.4778}
RECORDED_AP = 0.3100
TOLERANCE = 0.002


def _model_dir(shared_dir: Path) -> Path:
    return shared_dir / "models" / "ssd_mobilenet_v2_coco_tfod"


@pytest.fixture(scope="module")
def coco128(shared_dir: Path) -> Dataset:
    root = shared_dir / "data" / "coco128"
    return open_coco(root / "annotations" / "instances_train2017.json", root / "images")


@pytest.fixture(scope="module")
def float_run(shared_dir: Path, coco128: Dataset) -> tuple[Predictions, Detections]:
    decoder = TfodSsdDecoder.from_model_dir(_model_dir(shared_dir))
    runner = OnnxRunner(_model_dir(shared_dir) / "float.onnx", batch_size=4)
    predictions = predict(coco128, runner, decoder, NmsSettings(), progress=False)
    mapping = map_classes(decoder.class_names or (), coco128.classes)
    dets = to_detections(predictions.per_image, predictions.image_indices, coco128.images, mapping)
    return predictions, dets


def test_pycocotools_scores_the_same_detections_identically(
    float_run: tuple[Predictions, Detections], coco128: Dataset, tmp_path: Path
) -> None:
    _, dets = float_run
    results = tmp_path / "detections.json"
    write_coco_results(results, coco128.ground_truth, dets)
    ann = Path(coco128.image_dir).parent / "annotations" / "instances_train2017.json"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        cocoeval = COCOeval(gt, gt.loadRes(str(results)), "bbox")
        cocoeval.evaluate()
        cocoeval.accumulate()
        cocoeval.summarize()
    ours = evaluate(coco128.ground_truth, dets, protocol="coco")
    assert ours.stats is not None
    np.testing.assert_allclose(ours.stats, cocoeval.stats, rtol=0, atol=1e-12)
    assert abs(ours.ap - cocoeval.stats[1]) <= 1e-12


def test_tide_breakdown_equals_tidecv_on_the_real_model(
    float_run: tuple[Predictions, Detections], coco128: Dataset, tmp_path: Path
) -> None:
    """tidecv reads the annotation file and the results file with its own COCO loaders;
    evalkit reads the same two files; the breakdowns are identical."""
    from tidecv import TIDE
    from tidecv import datasets as tide_datasets

    _, dets = float_run
    results = tmp_path / "detections.json"
    write_coco_results(results, coco128.ground_truth, dets)
    ann = Path(coco128.image_dir).parent / "annotations" / "instances_train2017.json"
    tide = TIDE()
    run = tide.evaluate(
        tide_datasets.COCO(str(ann)), tide_datasets.COCOResult(str(results)), mode=TIDE.BOX
    )
    (main,) = tide.get_main_errors().values()
    (special,) = tide.get_special_errors().values()
    ours = tide_breakdown(coco128.ground_truth, load_coco_results(results, coco128.ground_truth))
    assert ours.ap == run.ap
    assert ours.delta_ap == main
    assert ours.special == special
    assert ours.counts == {k.short_name: v for k, v in run.count_errors().items()}
    assert sum(ours.counts.values()) > 1000  # a real breakdown, not an empty one


@pytest.mark.parametrize("protocol", ["coco", "st", "voc07", "voc12"])
def test_recorded_ap50(
    float_run: tuple[Predictions, Detections], coco128: Dataset, protocol: str
) -> None:
    _, dets = float_run
    result = evaluate(coco128.ground_truth, dets, protocol=protocol)
    assert abs(result.ap - RECORDED_AP50[protocol]) <= TOLERANCE, result.ap
    if protocol == "coco":
        assert result.stats is not None
        assert abs(result.stats[0] - RECORDED_AP) <= TOLERANCE


def test_detections_respect_the_nms_settings(float_run: tuple[Predictions, Detections]) -> None:
    predictions, _ = float_run
    for dets in predictions.per_image:
        assert len(dets) <= 100
        assert np.all(dets.scores > 0.001)
        assert np.all(np.diff(dets.scores) <= 0)  # NMS output is sorted by score


def test_resume_gives_identical_predictions(
    shared_dir: Path, coco128: Dataset, float_run: tuple[Predictions, Detections], tmp_path: Path
) -> None:
    """Stop after a few images, start again: the result equals the uninterrupted run."""
    decoder = TfodSsdDecoder.from_model_dir(_model_dir(shared_dir))
    runner = OnnxRunner(_model_dir(shared_dir) / "float.onnx", batch_size=4)
    cache = PredictionCache(tmp_path / "float.jsonl", key="k1")
    first = list(range(12))
    predict(coco128, runner, decoder, NmsSettings(), indices=first, cache=cache, progress=False)
    # A torn last line, as a kill mid-write leaves it, is dropped on resume.
    with (tmp_path / "float.jsonl").open("a") as handle:
        handle.write('{"i": 99, "b": [[0.1, 0.2')
    resumed = predict(
        coco128,
        runner,
        decoder,
        NmsSettings(),
        indices=list(range(20)),
        cache=cache,
        progress=False,
    )
    assert resumed.times.cached_images == 12 and resumed.times.images == 8
    reference, _ = float_run
    for got, want in zip(resumed.per_image, reference.per_image[:20], strict=True):
        np.testing.assert_array_equal(got.boxes_xyxy_norm, want.boxes_xyxy_norm)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.class_index, want.class_index)
    # Another key (another model or setting) never mixes in: the old file is set aside.
    other = PredictionCache(tmp_path / "float.jsonl", key="k2")
    assert other.load() == {}
    assert other.discarded is not None and other.discarded.is_file()
    assert json.loads((other.discarded).read_text().split("\n")[0])["key"] == "k1"
