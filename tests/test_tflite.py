"""TFLite through the LiteRT runner: quantized inputs and outputs handled with the model's
own parameters (checked against a plain interpreter loop), final detections taken as they
are, clear refusals; and the real int8 TFLite SSD on coco128, its AP50 equal to pycocotools'
re-score of its detections. Tiny models are made here with TensorFlow's converter (a test
dependency)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evalkit.cli import main
from evalkit.errors import InputError
from evalkit.pipeline.config import load_config
from evalkit.pipeline.run import run
from evalkit.postprocess.final import FinalDetectionsDecoder, detections
from evalkit.postprocess.nms import NmsSettings
from evalkit.postprocess.outputs import detect_decoder
from evalkit.runners.base import open_runner
from evalkit.runners.litert import LiteRtRunner
from evalkit.types import RawOutputs

from .conftest import REPO, host_int8_tolerances

CONFIG = REPO / "benchmarks" / "configs" / "tflite_coco128.yaml"
BASELINE = REPO / "benchmarks" / "baselines" / "tflite_coco128" / "result.json"
TFLITE = "ssd_mobilenet_v2_coco_tflite/mobilenet_ssd_v2_coco_quant_postprocess.tflite"


def _convert(model: Any, path: Path, *, int8: bool = False, custom: bool = False) -> Path:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def representative() -> Any:
            for _ in range(8):
                yield [rng.random((1, 8, 8, 3), dtype=np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    converter.allow_custom_ops = custom
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An int8 conv net: int8 input (8, 8, 3) and int8 output, both quantized."""
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((8, 8, 3), batch_size=1)
    outputs = tf.keras.layers.Conv2D(4, 3, padding="same")(inputs)
    model = tf.keras.Model(inputs, outputs)
    return _convert(model, tmp_path_factory.mktemp("tflite") / "tiny.tflite", int8=True)


def test_quantized_input_and_output_follow_the_models_parameters(tiny: Path) -> None:
    runner = open_runner(tiny, preprocessor="unit-nhwc")
    assert isinstance(runner, LiteRtRunner) and runner.info.precision == "int8"
    assert runner.preprocessing.name == "unit-nhwc@8x8"
    images = [np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8)
              for i in range(3)]  # fmt: skip
    got = runner.run_images(images)
    # The same by hand: x / 255, quantized with the input's scale and zero point, then the
    # output dequantized with its own.
    plain = Interpreter(model_path=str(tiny))
    plain.allocate_tensors()
    (inp,), (out,) = plain.get_input_details(), plain.get_output_details()
    (s_in, z_in), (s_out, z_out) = inp["quantization"], out["quantization"]
    assert s_in > 0 and s_out > 0
    for k, image in enumerate(images):
        x = image.astype(np.float32) / np.float32(255)
        q = np.clip(np.rint(x / np.float32(s_in)) + z_in, -128, 127).astype(np.int8)[None]
        plain.set_tensor(inp["index"], q)
        plain.invoke()
        raw = plain.get_tensor(out["index"]).astype(np.float32)
        want = (raw - np.float32(z_out)) * np.float32(s_out)
        assert np.array_equal(next(iter(got.tensors.values()))[k : k + 1], want)
    settings = runner.info.settings
    assert settings["input"]["quantization"] == [pytest.approx(s_in), z_in]
    assert settings["input"]["fed"] == "quantized from the pre-processed floats"


def test_refusals_name_the_file_and_what_was_expected(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InputError, match="set the family's pre-processing"):
        LiteRtRunner(tiny)  # an int8 input, and no normalisation given
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer" * 8)
    with pytest.raises(InputError, match="LiteRT cannot load this model"):
        LiteRtRunner(junk)
    inputs = tf.keras.Input((4,), batch_size=1)

    class Unsupported(tf.keras.layers.Layer):
        def call(self, x: Any) -> Any:
            return tf.math.bessel_i0e(x)  # no TFLite kernel: kept as a custom op

    custom = _convert(tf.keras.Model(inputs, Unsupported()(inputs)), tmp_path / "custom.tflite",
                      custom=True)  # fmt: skip
    with pytest.raises(InputError, match="unresolved custom op: BesselI0e"):
        LiteRtRunner(custom)
    real = Interpreter.get_input_details

    def no_parameters(self: Any) -> Any:
        return [{**d, "quantization": (0.0, 0)} for d in real(self)]

    monkeypatch.setattr(Interpreter, "get_input_details", no_parameters)
    with pytest.raises(InputError, match="without quantization parameters"):
        LiteRtRunner(tiny, preprocessor="unit-nhwc")


def test_a_tflite_model_whose_outputs_fit_no_decoder_is_exit_2(
    tiny: Path, small_set: tuple[Path, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = small_set
    path = small_set[0] / "c.yaml"
    path.write_text(
        f"dataset: {{annotations: {config.dataset.annotations}, images: {config.dataset.images}}}\n"
        f"variants: {{t: {{model: {tiny}, preprocessor: unit-nhwc}}}}\n"
        f"output: {small_set[0] / 'out'}\n"
    )
    assert main(["run", str(path), "--quiet"]) == 2
    assert "no decoder fits" in capsys.readouterr().err


def _final(boxes: Any, classes: Any, scores: Any, count: Any) -> RawOutputs:
    names = (
        "TFLite_Detection_PostProcess",
        *(f"TFLite_Detection_PostProcess:{k}" for k in (1, 2, 3)),
    )
    values = (boxes, classes, scores, count)
    return RawOutputs({n: np.asarray(v, np.float32) for n, v in zip(names, values, strict=True)})


def test_final_detections_are_used_as_they_are() -> None:
    boxes = [[[0.1, 0.2, 0.5, 0.6], [-0.1, 0.5, 0.4, 1.2], [0.0, 0.0, 1.0, 1.0]]]
    raw = _final(boxes, [[2, 0, 1]], [[0.9, 0.7, 0.1]], [2])
    specs = {k: tuple(v.shape) for k, v in raw.tensors.items()}
    assert detect_decoder(specs)[0] == "final-detections"
    decoder = FinalDetectionsDecoder(class_names=("a", "b", "c"))
    # An NMS that would change them is not applied: IoU 0 would keep only one per class.
    (one,) = detections(decoder, raw, NmsSettings(iou_threshold=0.0, max_total=1))
    # (ymin, xmin, ymax, xmax) -> (x1, y1, x2, y2), clipped to [0, 1]; only `count` kept.
    want = [[0.2, 0.1, 0.6, 0.5], [0.5, 0.0, 1.0, 0.4]]
    assert np.array_equal(one.boxes_xyxy_norm, np.array(want, np.float32))
    assert one.class_index.tolist() == [2, 0]
    assert np.array_equal(one.scores, np.array([0.9, 0.7], np.float32))
    with pytest.raises(InputError, match=r"count 4 outside 0\.\.3"):
        decoder.final_detections(_final(boxes, [[2, 0, 1]], [[0.9, 0.7, 0.1]], [4]))
    with pytest.raises(InputError, match="not indices"):
        decoder.final_detections(_final(boxes, [[2.5, 0, 1]], [[0.9, 0.7, 0.1]], [2]))
    with pytest.raises(InputError, match="class label 5 but 3 class names"):
        decoder.final_detections(_final(boxes, [[5, 0, 1]], [[0.9, 0.7, 0.1]], [2]))


def test_the_real_tflite_ssd_on_coco128_equals_pycocotools(
    shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALKIT_DATA", str(shared_dir))
    config = load_config(CONFIG, {"output": str(tmp_path / "run"), "quiet": True})
    record = run(config, log=lambda _: None).record
    tflite = record.variants["tflite"]
    assert tflite.decoder_name == "final-detections" and tflite.model is not None
    assert tflite.model.format == "tflite" and tflite.precision == "int8"
    assert (tflite.nms or {})["applied"] is False
    assert (tflite.runner or {})["name"] == "litert"
    coco = COCO(str(config.dataset.annotations))
    cocoeval = COCOeval(coco, coco.loadRes(str(tmp_path / "run" / tflite.detections)), "bbox")
    cocoeval.evaluate()
    cocoeval.accumulate()
    cocoeval.summarize()
    assert record.ap50("tflite", "coco") == pytest.approx(cocoeval.stats[1], abs=1e-12)
    assert list(tflite.protocols["coco"].stats or ()) == pytest.approx(
        list(cocoeval.stats), abs=1e-12
    )
    # At most 20 detections an image: the model's own limit, not evalkit's 100.
    per_image: dict[int, int] = {}
    for det in json.loads((tmp_path / "run" / tflite.detections).read_text()):
        per_image[det["image_id"]] = per_image.get(det["image_id"], 0) + 1
    assert max(per_image.values()) <= 20
    assert main(["check", str(tmp_path / "run"), "--baseline", str(BASELINE), "--no-latency",
                 *host_int8_tolerances(BASELINE, tmp_path)]) == 0  # fmt: skip


def test_the_runner_equals_a_plain_interpreter_loop(shared_dir: Path) -> None:
    path = shared_dir / "models" / TFLITE
    runner = LiteRtRunner(path)
    assert runner.preprocessing.name == "tfod-ssd"  # uint8 pixels, normalised by the model
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 300, 300, 3), dtype=np.uint8)
    got = runner.run(images)
    plain = Interpreter(model_path=str(path))
    plain.allocate_tensors()
    for k in range(3):
        plain.set_tensor(plain.get_input_details()[0]["index"], images[k : k + 1])
        plain.invoke()
        for detail in plain.get_output_details():
            want = plain.get_tensor(detail["index"])
            assert np.array_equal(got.tensors[detail["name"]][k : k + 1], want)
