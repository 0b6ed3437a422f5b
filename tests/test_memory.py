"""Activation-memory estimate: exact figures on hand-built graphs, the N6 external-RAM check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from evalkit.bench import activation_memory
from evalkit.errors import InputError

F = TensorProto.FLOAT
TFOD = Path("models/ssd_mobilenet_v2_coco_tfod")
# The ssd_mobilenetv2_pt card's STM32N6 external RAM, every dataset (reference-pipeline.md 1).
CARD_EXTERNAL_RAM_KIB = 2109.38


def save(
    tmp_path: Path,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write a one-graph opset-13 model and return its path."""
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        outputs,
        [numpy_helper.from_array(a, name) for name, a in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


def mobilenetv2_stem(tmp_path: Path) -> Path:
    """MobileNetV2's first layers at 300x300, NCHW, as in the zoo's ssd_mobilenetv2_pt."""
    nodes = [
        # 3->32, 3x3 stride 2: 300x300 -> 150x150 (TF-style pads 0,0,1,1).
        helper.make_node("Conv", ["x", "w0"], ["stem"], strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("Conv", ["stem", "w1"], ["dw"], group=32, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["dw", "w2"], ["project"]),
        # Block 1's expansion: 1x1 16->96 at 150x150, the largest tensor of the network.
        helper.make_node("Conv", ["project", "w3"], ["expand"]),
    ]
    weights = {
        "w0": np.ones((32, 3, 3, 3), np.float32),
        "w1": np.ones((32, 1, 3, 3), np.float32),
        "w2": np.ones((16, 32, 1, 1), np.float32),
        "w3": np.ones((96, 16, 1, 1), np.float32),
    }
    return save(
        tmp_path,
        nodes,
        [helper.make_tensor_value_info("x", F, [1, 3, 300, 300])],
        [helper.make_tensor_value_info("expand", F, [1, 96, 150, 150])],
        weights,
    )


def test_mobilenetv2_stem_largest_is_the_card_external_ram(tmp_path: Path) -> None:
    estimate = activation_memory(mobilenetv2_stem(tmp_path), bytes_per_element=1)
    assert estimate.largest.name == "expand"
    assert estimate.largest.shape == (1, 96, 150, 150)
    assert estimate.largest_int8_bytes == 150 * 150 * 96 == 2_160_000
    assert estimate.largest_int8_bytes / 1024 == 2109.375
    assert round(estimate.largest_int8_bytes / 1024, 2) == CARD_EXTERNAL_RAM_KIB
    # Live per node (elements = int8 bytes); x 3*300*300 = 270000, stem and dw 32*150*150 =
    # 720000, project 16*150*150 = 360000, expand 2160000; x dies after the first conv.
    assert estimate.live_bytes == (
        270_000 + 720_000,
        720_000 + 720_000,
        720_000 + 360_000,
        360_000 + 2_160_000,
    )
    assert estimate.peak_bytes == estimate.peak_int8_bytes == 2_520_000
    assert estimate.peak_node == "Conv_3"
    assert estimate.peak_float32_bytes == 4 * 2_520_000
    assert estimate.largest_float32_bytes == 4 * 2_160_000
    # Weights are not activations: 5 tensors (x and four conv outputs).
    assert estimate.activations == 5


def test_units(tmp_path: Path) -> None:
    path = mobilenetv2_stem(tmp_path)
    int8 = activation_memory(path, bytes_per_element=1)
    for unit in (2, 4):
        scaled = activation_memory(path, bytes_per_element=unit)
        assert scaled.live_bytes == tuple(unit * v for v in int8.live_bytes)
        assert scaled.largest_bytes == unit * int8.largest_bytes
    # None: each tensor at its own dtype, here float32.
    assert activation_memory(path).live_bytes == tuple(4 * v for v in int8.live_bytes)


def test_own_dtypes_mix(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=F),
        helper.make_node("Relu", ["xf"], ["y"]),
    ]
    path = save(
        tmp_path,
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 10])],
        [helper.make_tensor_value_info("y", F, [1, 10])],
    )
    estimate = activation_memory(path)
    # Cast: x (10 B) + xf (40 B); Relu: xf + y (40 B each).
    assert estimate.live_bytes == (50, 80)
    assert estimate.largest.dtype == "float32" and estimate.largest_bytes == 40
    assert estimate.peak_int8_bytes == 20


def test_live_until_the_last_consumer(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Neg", ["a"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    path = save(
        tmp_path,
        nodes,
        [helper.make_tensor_value_info("x", F, [1, 8])],
        [helper.make_tensor_value_info("y", F, [1, 8])],
    )
    estimate = activation_memory(path, bytes_per_element=1)
    # x dies after the Relu; a stays live until the Add reads it; no in-place reuse.
    assert estimate.live_bytes == (16, 16, 24)
    assert estimate.peak_bytes == 24


def test_unused_output_lives_at_its_producer_only(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Split", ["x"], ["a", "unused"], axis=1),
        helper.make_node("Relu", ["a"], ["y"]),
    ]
    path = save(
        tmp_path,
        nodes,
        [helper.make_tensor_value_info("x", F, [1, 8])],
        [helper.make_tensor_value_info("y", F, [1, 4])],
    )
    assert activation_memory(path, bytes_per_element=1).live_bytes == (8 + 4 + 4, 4 + 4)


def qdq_conv(tmp_path: Path, float_reader: bool = False) -> Path:
    """x -> Q -> DQ -> Conv(DQ(w)) -> Q -> DQ -> y; optionally a float Relu also reads c."""
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "s", "zp_w"], ["w"]),
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "s", "zp"], ["x_dq"]),
        helper.make_node("Conv", ["x_dq", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "s", "zp"], ["c_q"]),
        helper.make_node("DequantizeLinear", ["c_q", "s", "zp"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", F, [1, 4, 8, 8])]
    if float_reader:
        nodes.append(helper.make_node("Relu", ["c"], ["r"]))
        outputs.append(helper.make_tensor_value_info("r", F, [1, 4, 8, 8]))
    return save(
        tmp_path,
        nodes,
        [helper.make_tensor_value_info("x", F, [1, 3, 8, 8])],
        outputs,
        {
            "w_q": np.ones((4, 3, 3, 3), np.int8),
            "s": np.array(0.1, np.float32),
            "zp": np.array(0, np.uint8),
            "zp_w": np.array(0, np.int8),
        },
    )


def test_qdq_pairs_fold_into_the_quantized_tensor(tmp_path: Path) -> None:
    estimate = activation_memory(qdq_conv(tmp_path))
    # Two buffers: {x, x_q, x_dq} of 3*8*8 = 192 and {c, c_q, y} of 4*8*8 = 256, both uint8;
    # the weight's DequantizeLinear output is a weight. Node order: DQ(w), Q(x), DQ(x),
    # Conv, Q(c), DQ(c); x lives from the first node to the Conv, c from the Conv to the end.
    assert estimate.activations == 2 and estimate.qdq_aliases == 4
    assert estimate.live_bytes == (192, 192, 192, 448, 256, 256)
    assert estimate.peak_bytes == estimate.peak_int8_bytes == 448
    assert estimate.peak_float32_bytes == 4 * 448
    assert estimate.largest.name == "c_q" and estimate.largest.dtype == "uint8"
    assert set(estimate.largest.aliases) == {"c", "y"}


def test_qdq_float_tensor_read_by_float_ops_stays_apart(tmp_path: Path) -> None:
    estimate = activation_memory(qdq_conv(tmp_path, float_reader=True))
    # c is also read by a float Relu: it is a float32 buffer of its own (1024 B) beside
    # {c_q, y} (256 B); r (1024 B) is a graph output live to the end.
    assert estimate.qdq_aliases == 3
    assert estimate.largest.name == "c" and estimate.largest_bytes == 4 * 256
    # At the Conv: x group 192 + c 1024; at Q(c): c + c_q group 256 (r not yet written).
    assert estimate.live_bytes[3:5] == (192 + 1024, 1024 + 256)


def test_dynamic_batch_and_unknown_shapes(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Shape", ["y"], ["s"])]
    path = save(
        tmp_path,
        nodes,
        [helper.make_tensor_value_info("x", F, ["N", 8, "W"])],
        [helper.make_tensor_value_info("s", TensorProto.INT64, [3])],
    )
    estimate = activation_memory(path, bytes_per_element=1)
    assert estimate.batch_assumed
    # W stays unknown: x and y are left out and named; only the 3-element shape remains.
    assert estimate.unknown_shapes == ("x", "y")
    assert estimate.largest.name == "s" and estimate.live_bytes == (0, 3)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1"])
def test_bad_unit(tmp_path: Path, bad: object) -> None:
    with pytest.raises(InputError, match="bytes_per_element"):
        activation_memory(mobilenetv2_stem(tmp_path), bytes_per_element=bad)  # type: ignore[arg-type]


def test_nodes_out_of_order(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["a"], ["y"]), helper.make_node("Relu", ["x"], ["a"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", F, [1, 8])],
        [helper.make_tensor_value_info("y", F, [1, 8])],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(InputError, match="topological order"):
        activation_memory(path)


def test_to_dict_is_json(tmp_path: Path) -> None:
    estimate = activation_memory(qdq_conv(tmp_path))
    data = json.loads(json.dumps(estimate.to_dict()))
    assert data["largest"]["shape"] == [1, 4, 8, 8]
    assert len(data["live_bytes"]) == len(data["node_names"]) == 6


@pytest.mark.parametrize("name", ["float.onnx", "int8_qat_qdq.onnx"])
def test_tfod_ssd_mobilenetv2(shared_dir: Path, name: str) -> None:
    estimate = activation_memory(shared_dir / TFOD / name, bytes_per_element=1)
    # Same MobileNetV2 300x300 backbone as ssd_mobilenetv2_pt: block 1's expansion is largest.
    assert estimate.largest.shape == (1, 96, 150, 150)
    assert estimate.largest_int8_bytes == 150 * 150 * 96
    assert round(estimate.largest_int8_bytes / 1024, 2) == CARD_EXTERNAL_RAM_KIB
    assert estimate.peak_int8_bytes >= estimate.largest_int8_bytes
    assert estimate.peak_float32_bytes == 4 * estimate.peak_int8_bytes
    assert estimate.largest_float32_bytes == 4 * estimate.largest_int8_bytes
    assert estimate.peak_bytes == max(estimate.live_bytes) == estimate.peak_int8_bytes
    assert not estimate.unknown_shapes and not estimate.batch_assumed
    own = activation_memory(shared_dir / TFOD / name)
    if name == "float.onnx":
        # Float activations at their own dtype are the float32 figures, except the uint8
        # input image, live only before its Cast.
        assert own.largest_bytes == estimate.largest_float32_bytes
        assert own.peak_bytes == estimate.peak_float32_bytes
        assert estimate.qdq_aliases == 0
    else:
        # The quantized tensors are the buffers: the largest is uint8, named after its Q output.
        assert own.largest.dtype == "uint8"
        assert own.largest.name == "FeatureExtractor/MobilenetV2/expanded_conv_1/expand/Relu6"
        assert own.peak_bytes >= estimate.peak_int8_bytes
        assert estimate.qdq_aliases > 0
