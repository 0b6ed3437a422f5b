"""Runners: input reading, pre-processing choice, batching, precision, records, bad input.

Tiny ONNX graphs are built here with onnx.helper (their outputs are simple numpy formulas
of the input); the shared TF-OD SSD models come from ``$EVALKIT_DATA``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from evalkit.datasets.images import decode_rgb
from evalkit.datasets.preprocess import Preprocessor, get_preprocessor
from evalkit.errors import InputError
from evalkit.postprocess.decoders import ST_SSD_OUTPUT_NAMES, TfodSsdDecoder, detect_decoder
from evalkit.runners.base import RUNNERS, InputSpec, choose_preprocessor
from evalkit.runners.onnx import OnnxRunner
from evalkit.runners.torch import TorchRunner

U8 = npt.NDArray[np.uint8]
TFOD = Path("models") / "ssd_mobilenet_v2_coco_tfod"


def tiny_model(
    path: Path, batch: int | str = "batch", size: int = 8, qdq: bool = False, inputs: int = 1
) -> Path:
    """NCHW float input; outputs ``mean`` (N, 3) per-channel means and ``double`` = 2x."""
    shape = [batch, 3, size, size]
    graph_inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)]
    graph_inputs += [
        helper.make_tensor_value_info(f"extra{i}", TensorProto.FLOAT, shape)
        for i in range(1, inputs)
    ]
    init = [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])]
    nodes = []
    source = "input"
    if qdq:
        init += [
            helper.make_tensor("scale", TensorProto.FLOAT, [], [0.05]),
            helper.make_tensor("zero", TensorProto.INT8, [], [0]),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["input", "scale", "zero"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"]),
        ]
        source = "dq"
    nodes += [
        helper.make_node("GlobalAveragePool", [source], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["mean"], axis=1),
        helper.make_node("Mul", [source, "two"], ["double"]),
    ]
    outputs = [
        helper.make_tensor_value_info("mean", TensorProto.FLOAT, [batch, 3]),
        helper.make_tensor_value_info("double", TensorProto.FLOAT, shape),
    ]
    graph = helper.make_graph(nodes, "tiny", graph_inputs, outputs, init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_model(tmp_path / "tiny.onnx")


def images(seed: int, count: int) -> list[U8]:
    rng = np.random.default_rng(seed)
    sizes = [(int(h), int(w)) for h, w in rng.integers(5, 40, (count, 2))]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


# ----------------------------------------------------------------------------- tiny ONNX


def test_nchw_float_input_gets_st_ssd_at_the_model_size(tiny: Path) -> None:
    runner = OnnxRunner(tiny)
    choice = runner.preprocessing
    assert choice.name == "st-ssd@8x8"
    assert choice.preprocessor == Preprocessor((8, 8), "NCHW", "float32", mean=127, scale=128)
    assert "float32 NCHW" in choice.reason and "8x8 from the model input" in choice.reason
    assert runner.info.precision == "float"
    assert runner.info.settings["model_batch"] == "dynamic (batch)"


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_run_images_batches_in_order(tiny: Path, batch_size: int) -> None:
    runner = OnnxRunner(tiny, batch_size=batch_size)
    pictures = images(0, 5)
    out = runner.run_images(pictures).tensors
    expected = runner.preprocessing.preprocessor.apply_batch(pictures)
    assert runner.info.settings["run_batch_size"] == batch_size
    np.testing.assert_array_equal(out["double"], expected * np.float32(2))
    np.testing.assert_allclose(out["mean"], expected.mean(axis=(2, 3)), rtol=1e-6)


@pytest.mark.parametrize(("fixed", "asked"), [(1, 4), (2, 1)])
def test_fixed_batch_model_gets_its_batch(tmp_path: Path, fixed: int, asked: int) -> None:
    # onnxruntime refuses any other batch for a fixed batch dimension, so success on three
    # images proves the runner split (fixed 1) or padded the last call (fixed 2).
    runner = OnnxRunner(tiny_model(tmp_path / "fixed.onnx", batch=fixed), batch_size=asked)
    pictures = images(1, 3)
    out = runner.run_images(pictures).tensors
    expected = runner.preprocessing.preprocessor.apply_batch(pictures)
    np.testing.assert_array_equal(out["double"], expected * np.float32(2))
    assert runner.info.settings["run_batch_size"] == fixed
    assert any(f"fixed at {fixed}" in note for note in runner.info.notes)
    if fixed == 1:
        assert any("run one by one" in note for note in runner.info.notes)


def test_qdq_graph_is_int8(tmp_path: Path) -> None:
    runner = OnnxRunner(tiny_model(tmp_path / "q.onnx", qdq=True))
    assert runner.info.precision == "int8"
    evidence = runner.info.settings["precision_evidence"]
    assert evidence == "1 DequantizeLinear, 1 QuantizeLinear (QDQ)"


def test_threads_recorded(tiny: Path) -> None:
    assert OnnxRunner(tiny, threads=1).info.settings["intra_op_num_threads"] == 1
    assert OnnxRunner(tiny).info.settings["intra_op_num_threads"] == "runtime default"
    record = json.loads(json.dumps(OnnxRunner(tiny, threads=2).info.to_dict()))
    assert (
        record["name"] == "onnxruntime" and record["settings"]["provider"] == "CPUExecutionProvider"
    )


@pytest.mark.parametrize(
    ("spec", "name", "note"),
    [
        (InputSpec("images", ("N", 320, 320, 3), "uint8"), "uint8-nhwc@320x320", "320x320"),
        (InputSpec("images", (1, 300, 300, 3), "uint8"), "uint8-nhwc", "300x300 from"),
        (InputSpec("input", ("N", 3, "h", "w"), "float32"), "st-ssd", "spatial size is dynamic"),
    ],
)
def test_choice_from_the_input(spec: InputSpec, name: str, note: str) -> None:
    choice = choose_preprocessor(spec)
    assert choice.name == name and note in choice.reason


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (InputSpec("x", (1, 300, 300, 3), "float32"), "float32 NHWC input: .* will not guess"),
        (InputSpec("x", (1, 3, 3, 3), "uint8"), "cannot tell the channel axis"),
        (InputSpec("x", (1, 3, 300), "float32"), "expected a rank-4 image batch"),
        (
            InputSpec("x", (1, 3, 30, 30), "tensor(float16)"),
            r"unsupported input type tensor\(float16\)",
        ),
    ],
)
def test_no_guess_without_a_safe_choice(spec: InputSpec, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        choose_preprocessor(spec)


def test_explicit_preprocessor_is_checked(tiny: Path) -> None:
    with pytest.raises(InputError, match=r"preprocessor 'uint8-nhwc' does not fit: dtype uint8"):
        OnnxRunner(tiny, preprocessor="uint8-nhwc")
    # A preset names a normalisation: its size becomes the model's (and the name says so).
    sized = OnnxRunner(tiny, preprocessor="st-ssd").preprocessing
    assert sized.name == "st-ssd@8x8" and sized.preprocessor.size == (8, 8)
    assert (sized.preprocessor.mean, sized.preprocessor.scale) == (127, 128)
    # An explicit object is taken as it is, so a wrong size is refused.
    with pytest.raises(InputError, match=r"height 300 but the model takes 8"):
        OnnxRunner(tiny, preprocessor=Preprocessor((300, 300), "NCHW", "float32"))
    custom = Preprocessor((8, 8), "NCHW", "float32", mean=0, scale=255)
    choice = OnnxRunner(tiny, preprocessor=custom).preprocessing
    assert choice.preprocessor == custom and choice.reason == "given by the caller (custom)"


def test_registry_builds_runners_lazily(tiny: Path) -> None:
    assert {"onnxruntime", "torch"} <= set(RUNNERS.names())
    assert isinstance(RUNNERS.get("onnxruntime")(tiny, batch_size=2), OnnxRunner)
    code = (
        "import sys, evalkit.runners.base, evalkit.runners.onnx, evalkit.runners.torch, "
        "evalkit.postprocess.decoders; "
        "print(sorted(m for m in ('onnxruntime', 'onnx', 'torch') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- bad input


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.onnx: ONNX model file not found"):
        OnnxRunner(tmp_path / "nope.onnx")
    with pytest.raises(InputError, match="expected an ONNX model file, found a directory"):
        OnnxRunner(tmp_path)


@pytest.mark.parametrize("content", [b"", b"this is not a model\n", bytes(range(256)) * 4])
def test_not_an_onnx_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.onnx"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"fake\.onnx: (not an ONNX model|onnxruntime cannot)"):
        OnnxRunner(path)


def test_model_onnxruntime_cannot_load(tmp_path: Path) -> None:
    node = helper.make_node("NoSuchOperator", ["x"], ["y"])
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([node], "unknown-op", [value], [out])
    path = tmp_path / "odd.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    with pytest.raises(InputError, match=r"odd\.onnx: onnxruntime cannot load this model"):
        OnnxRunner(path)


def test_two_input_model_refused(tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match=r"two\.onnx: expected a model with one image input, got 2"
    ):
        OnnxRunner(tiny_model(tmp_path / "two.onnx", inputs=2))


@pytest.mark.parametrize(
    ("batch", "problem"),
    [
        (np.zeros((2, 3, 9, 8), np.float32), r"expected a batch of shape \('N', 3, 8, 8\)"),
        (np.zeros((3, 8, 8), np.float32), r"got \(3, 8, 8\); use run_images"),
        (np.zeros((0, 3, 8, 8), np.float32), "at least one image in the batch, got 0"),
        (np.zeros((1, 3, 8, 8), np.uint8), "expected a float32 batch, got uint8"),
        ([[0.0]], "expected a numpy batch"),
    ],
)
def test_bad_batch(tiny: Path, batch: object, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        OnnxRunner(tiny).run(batch)  # type: ignore[arg-type]


def test_bad_images(tiny: Path) -> None:
    runner = OnnxRunner(tiny)
    with pytest.raises(InputError, match="expected at least one image, got none"):
        runner.run_images([])
    gray = np.zeros((10, 10), np.uint8)
    with pytest.raises(InputError, match=r"image 1: expected an \(H, W, 3\) uint8 RGB image"):
        runner.run_images([images(2, 1)[0], gray])


def test_bad_settings(tiny: Path) -> None:
    with pytest.raises(InputError, match=r"batch_size: expected a positive integer, got 0"):
        OnnxRunner(tiny, batch_size=0)
    with pytest.raises(InputError, match=r"threads: expected a positive integer, got -1"):
        OnnxRunner(tiny, threads=-1)


# ----------------------------------------------------------------------------- torch


class TinySsd(torch.nn.Module):
    """Zoo-shaped outputs: logits (N, 3000, 3) and offsets (N, 3000, 4) from channel means."""

    def __init__(self, as_dict: bool = False) -> None:
        super().__init__()
        self.as_dict = as_dict
        self.head = torch.nn.Linear(3, 3000 * 7)

    def forward(self, x: torch.Tensor) -> object:
        flat = self.head(x.mean(dim=(2, 3))).reshape(-1, 3000, 7)
        logits, offsets = flat[..., :3], flat[..., 3:]
        if self.as_dict:
            return dict(zip(ST_SSD_OUTPUT_NAMES, (logits, offsets), strict=True))
        return logits, offsets


@pytest.fixture
def restore_torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("restore_torch_threads")
@pytest.mark.parametrize("as_dict", [False, True])
def test_torch_runner_names_outputs_like_the_export(as_dict: bool) -> None:
    torch.manual_seed(0)
    module = TinySsd(as_dict)
    runner = TorchRunner(module, output_names=ST_SSD_OUTPUT_NAMES, batch_size=2, threads=1)
    info = runner.info
    assert info.name == "torch" and info.version == torch.__version__
    assert info.precision == "float" and info.settings["threads"] == 1
    assert runner.preprocessing.preprocessor == get_preprocessor("st-ssd")
    pictures = images(3, 3)
    out = runner.run_images(pictures).tensors
    assert tuple(out) == ST_SSD_OUTPUT_NAMES
    with torch.no_grad():
        batch = torch.from_numpy(get_preprocessor("st-ssd").apply_batch(pictures))
        direct = module(batch)
    logits = direct[ST_SSD_OUTPUT_NAMES[0]] if as_dict else direct[0]
    np.testing.assert_allclose(out[ST_SSD_OUTPUT_NAMES[0]], logits.numpy(), rtol=1e-6, atol=1e-6)
    assert detect_decoder(runner.output_specs())[0] == "st-ssd"


def test_torch_runner_refuses_what_it_cannot_name_or_feed() -> None:
    with pytest.raises(InputError, match=r"returned 2 unnamed output\(s\); pass output_names"):
        TorchRunner(TinySsd()).run_images(images(4, 1))
    with pytest.raises(InputError, match="does not fit: dtype uint8 but the model takes float32"):
        TorchRunner(TinySsd(), preprocessor="uint8-nhwc")
    with pytest.raises(InputError, match=r"expected a torch\.nn\.Module"):
        TorchRunner(object())  # type: ignore[arg-type]


# torch warns that its quantized tensor constructors are deprecated; the check still holds.
@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
def test_torch_quantized_module_is_int8() -> None:
    quantized = torch.ao.nn.quantized.Linear(3, 3)  # type: ignore[no-untyped-call]
    assert TorchRunner(torch.nn.Sequential(quantized), output_names=["y"]).info.precision == "int8"


# ----------------------------------------------------------------------------- shared models


@pytest.mark.parametrize(
    ("file", "precision"), [("float.onnx", "float"), ("int8_qat_qdq.onnx", "int8")]
)
def test_shared_models(shared_dir: Path, file: str, precision: str) -> None:
    runner = OnnxRunner(shared_dir / TFOD / file, batch_size=3, threads=2)
    assert runner.info.precision == precision
    assert runner.preprocessing.name == "tfod-ssd"
    assert runner.preprocessing.preprocessor == Preprocessor((300, 300), "NHWC", "uint8")
    assert runner.info.settings["run_batch_size"] == 1
    assert runner.info.settings["intra_op_num_threads"] == 2
    assert detect_decoder(runner.output_specs())[0] == "tfod-ssd"
    pictures = images(5, 3)
    together = runner.run_images(pictures).tensors
    assert together["class_scores"].shape == (3, 1917, 91)
    for i, picture in enumerate(pictures):
        alone = runner.run_images([picture]).tensors
        np.testing.assert_array_equal(alone["box_encodings"][0], together["box_encodings"][i])


def test_tfod_class_names_agree_with_coco(shared_dir: Path) -> None:
    decoder = TfodSsdDecoder.from_model_dir(shared_dir / TFOD)
    assert decoder.class_names is not None and len(decoder.class_names) == 90
    annotations = shared_dir / "data/coco128/annotations/instances_train2017.json"
    for category in json.loads(annotations.read_text())["categories"]:
        assert decoder.class_names[category["id"] - 1] == category["name"]
    assert decoder.class_names[11] == "unused-12"  # COCO id 12 was never used


def iou_xyxy(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return float(inter / union)


@pytest.mark.parametrize("file", ["float.onnx", "int8_qat_qdq.onnx"])
def test_real_images_give_plausible_detections(shared_dir: Path, file: str) -> None:
    """On the first three coco128 images (train images: the model has seen them), the single
    highest class score must name an annotated category, and its box must overlap a ground
    truth of that category at IoU >= 0.5 (COCO's loosest match), which checks the decode."""
    coco = json.loads(
        (shared_dir / "data/coco128/annotations/instances_train2017.json").read_text()
    )
    runner = OnnxRunner(shared_dir / TFOD / file)
    decoder = TfodSsdDecoder.from_model_dir(shared_dir / TFOD)
    for image in coco["images"][:3]:
        rgb = decode_rgb(shared_dir / "data/coco128/images" / image["file_name"])
        decoded = decoder.decode(runner.run_images([rgb]))
        scores = decoded.scores[0]
        box, column = np.unravel_index(int(np.argmax(scores)), scores.shape)
        category = int(column) + 1  # column j of the scores (background dropped) is id j + 1
        truth = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        assert category in {a["category_id"] for a in truth}, image["file_name"]
        scale = np.array([image["width"], image["height"]] * 2, dtype=np.float64)
        found = decoded.boxes_xyxy_norm[0, box].astype(np.float64) * scale
        overlaps = [
            iou_xyxy(found, np.array([x, y, x + w, y + h]))
            for a in truth
            if a["category_id"] == category
            for x, y, w, h in [a["bbox"]]
        ]
        assert max(overlaps) >= 0.5, (image["file_name"], overlaps)
