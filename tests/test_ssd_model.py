"""The PyTorch ssd_mobilenetv2 network: shapes, parameter count, zoo names, checkpoints, and
its ONNX forms against torch eager and a numpy host decode."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from evalkit.errors import InputError
from evalkit.models.export import FORMS, export_onnx
from evalkit.models.priors import ssd_priors
from evalkit.models.ssd_mobilenetv2 import (
    DEMO_EXTRAS,
    SOURCE_BLOCK,
    ChannelRule,
    InvertedResidual,
    SSDMobileNetV2,
    count_parameters,
    load_checkpoint,
    ssd_mobilenetv2,
    ssd_mobilenetv2_demo,
)

TOL = 1e-4


@pytest.fixture(scope="module")
def full81() -> SSDMobileNetV2:
    return ssd_mobilenetv2(81)


@pytest.fixture(scope="module")
def demo5() -> SSDMobileNetV2:
    return ssd_mobilenetv2_demo(5, seed=3)


@pytest.fixture(scope="module")
def demo5_onnx(demo5: SSDMobileNetV2, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo network exported once in each form."""
    out = tmp_path_factory.mktemp("demo5")
    return {f: export_onnx(demo5, out / f"{f}.onnx", f).path for f in FORMS}


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(("num_classes", "batch"), [(2, 1), (5, 3), (21, 2)])
def test_output_shapes_demo(num_classes: int, batch: int) -> None:
    model = ssd_mobilenetv2_demo(num_classes)
    with torch.no_grad():
        logits, offsets = model(torch.randn(batch, 3, 300, 300))
    assert logits.shape == (batch, 3000, num_classes)
    assert offsets.shape == (batch, 3000, 4)


def test_output_shapes_and_sources_full(full81: SSDMobileNetV2) -> None:
    x = torch.randn(2, 3, 300, 300)
    with torch.no_grad():
        logits, offsets = full81(x)
        sources = full81.sources(x)
        # The block-14 split by hand: base_net[0..13], then the expansion conv, BN, ReLU6.
        y = x
        for layer in list(full81.base_net)[:SOURCE_BLOCK]:
            y = layer(y)
        block = full81.base_net[SOURCE_BLOCK]
        assert isinstance(block, InvertedResidual)
        for layer in list(block.conv)[:3]:
            y = layer(y)
        whole = full81.base_net(x)
    assert logits.shape == (2, 3000, 81) and offsets.shape == (2, 3000, 4)
    shapes = [tuple(s.shape[1:]) for s in sources]
    assert shapes == [
        (576, 19, 19),
        (1280, 10, 10),
        (512, 5, 5),
        (256, 3, 3),
        (256, 2, 2),
        (64, 1, 1),
    ]
    assert torch.equal(sources[0], y)
    # The split changes nothing downstream: the second source is base_net's own output.
    assert torch.equal(sources[1], whole)
    # 6 priors per location over the six maps: 6 * (361 + 100 + 25 + 9 + 4 + 1) = 3000.
    assert 6 * sum(s.shape[2] * s.shape[3] for s in sources) == 3000


def test_parameter_count_formula() -> None:
    # C = NC+1 classes including background. Width 1.0:
    #   base_net (MobileNetV2 features, BN affine included)            2,223,872
    #     (= torchvision mobilenet_v2's 3,504,872 minus its 1280*1000+1000 classifier)
    #   extras: 1280*512+512 + 512*512*9+512 + 512*256+256 + 256*256*9+256
    #         + 256*256+256 + 256*256*9+256 + 256*64+64 + 64*64*9+64  = 4,446,336
    #   regression: 24*(9*(576+1280+512+256+256) + 64) + 6*24           =   623,760
    #   classification: 6C*(9*2880 + 64) + 6*6C = 155,940*C
    # total = 7,293,968 + 155,940*C (C=81: 19,925,108; 21: 10,568,708; 2: 7,605,848).
    model = ssd_mobilenetv2(2)
    assert count_parameters(model.base_net) == 3_504_872 - (1280 * 1000 + 1000)
    assert count_parameters(model.extras) == 4_446_336
    assert count_parameters(model.regression_headers) == 24 * (9 * 2880 + 64) + 6 * 24
    assert count_parameters(model) == 7_293_968 + 155_940 * 2
    heads_per_class = count_parameters(ssd_mobilenetv2_demo(3).classification_headers) - (
        count_parameters(ssd_mobilenetv2_demo(2).classification_headers)
    )
    demo = ssd_mobilenetv2_demo(2)
    channels = demo.source_channels
    assert heads_per_class == 6 * (9 * sum(channels[:5]) + channels[5]) + 36


def test_zoo_module_names(full81: SSDMobileNetV2) -> None:
    keys = list(full81.state_dict())
    assert {k.split(".")[0] for k in keys} == {
        "base_net",
        "extras",
        "classification_headers",
        "regression_headers",
    }
    assert len(full81.base_net) == 19
    # 52 conv+BN pairs in base_net: 5 state entries per BN, 1 per bias-free conv.
    assert sum(k.startswith("base_net.") for k in keys) == 52 * 6
    for key in (
        "base_net.0.0.weight",
        "base_net.0.1.running_var",
        "base_net.1.conv.3.weight",  # t=1 block: dw, BN, ReLU6, pw, BN
        "base_net.14.conv.0.weight",  # the expansion that feeds source 1
        "base_net.14.conv.7.num_batches_tracked",
        "base_net.18.0.weight",
        "extras.0.0.weight",
        "extras.3.2.bias",
        "classification_headers.5.weight",
        "regression_headers.0.bias",
    ):
        assert key in keys, key
    assert tuple(full81.state_dict()["base_net.14.conv.0.weight"].shape) == (576, 96, 1, 1)
    assert tuple(full81.state_dict()["classification_headers.0.weight"].shape) == (486, 576, 3, 3)
    assert tuple(full81.state_dict()["regression_headers.5.weight"].shape) == (24, 64, 1, 1)


def test_seeded_weights() -> None:
    a, b = ssd_mobilenetv2_demo(2, seed=1), ssd_mobilenetv2_demo(2, seed=1)
    c = ssd_mobilenetv2_demo(2, seed=2)
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name
    assert not torch.equal(
        a.state_dict()["base_net.0.0.weight"], c.state_dict()["base_net.0.0.weight"]
    )


def _host_decode(logits: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Section 4 in numpy: softmax over NC+1, centre/size decode, corners, clip to [0, 1]."""
    priors = ssd_priors().astype(np.float64)
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    scores = e / e.sum(axis=-1, keepdims=True)
    t = offsets.astype(np.float64)
    cx = t[..., 0] * 0.1 * priors[:, 2] + priors[:, 0]
    cy = t[..., 1] * 0.1 * priors[:, 3] + priors[:, 1]
    w = np.exp(t[..., 2] * 0.2) * priors[:, 2]
    h = np.exp(t[..., 3] * 0.2) * priors[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    return scores, np.clip(boxes, 0.0, 1.0)


def test_onnx_zoo_form_matches_torch(demo5: SSDMobileNetV2, demo5_onnx: dict[str, Path]) -> None:
    session = _session(demo5_onnx["zoo"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert session.get_inputs()[0].shape == ["batch_size", 3, 300, 300]
    gen = torch.Generator().manual_seed(0)
    for batch in (1, 3):  # dynamic batch
        x = torch.randn(batch, 3, 300, 300, generator=gen)
        logits, offsets = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            ref_logits, ref_offsets = demo5(x)
        np.testing.assert_allclose(logits, ref_logits.numpy(), rtol=0, atol=TOL)
        np.testing.assert_allclose(offsets, ref_offsets.numpy(), rtol=0, atol=TOL)


def test_deployed_form_matches_zoo_form_and_host_decode(demo5_onnx: dict[str, Path]) -> None:
    zoo = _session(demo5_onnx["zoo"])
    deployed = _session(demo5_onnx["deployed"])
    assert [o.name for o in deployed.get_outputs()] == ["scores", "boxes"]
    (inp,) = deployed.get_inputs()
    assert inp.name == "input" and inp.shape == [1, 300, 300, 3] and inp.type == "tensor(uint8)"
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 300, 300, 3), dtype=np.uint8)
    scores, boxes = deployed.run(None, {"input": image})
    # The zoo's host pre-processing: (x - 127) / 128, NHWC -> NCHW.
    x = ((image.astype(np.float32) - 127.0) / 128.0).transpose(0, 3, 1, 2)
    logits, offsets = zoo.run(None, {"input": np.ascontiguousarray(x)})
    ref_scores, ref_boxes = _host_decode(logits, offsets)
    assert scores.shape == (1, 3000, 5) and boxes.shape == (1, 3000, 4)
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=TOL)
    np.testing.assert_allclose(boxes, ref_boxes, rtol=0, atol=TOL)
    assert math.isclose(float(scores.sum()), 3000.0, rel_tol=1e-5)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    source = ssd_mobilenetv2_demo(3, seed=11)
    path = tmp_path / "demo.pth"
    # The zoo saves state_dict() of an SSD that registers its priors as a buffer.
    torch.save({**source.state_dict(), "priors": torch.from_numpy(ssd_priors())}, path)
    target = load_checkpoint(ssd_mobilenetv2_demo(3, seed=12), path)
    x = torch.randn(1, 3, 300, 300)
    with torch.no_grad():
        for a, b in zip(source(x), target(x), strict=True):
            assert torch.equal(a, b)
    # A wrapped checkpoint ({"state_dict": ...}) saved from DataParallel ("module." prefix).
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, wrapped)
    again = load_checkpoint(ssd_mobilenetv2_demo(3, seed=13), wrapped)
    key = "classification_headers.0.weight"
    assert torch.equal(again.state_dict()[key], source.state_dict()[key])


def test_bad_checkpoints_say_what_differs(tmp_path: Path) -> None:
    voc = ssd_mobilenetv2_demo(21)
    path = tmp_path / "voc.pth"
    torch.save(voc.state_dict(), path)
    with pytest.raises(InputError) as info:
        load_checkpoint(ssd_mobilenetv2_demo(2), path)
    message = str(info.value)
    assert "shape mismatches" in message and str(path) in message
    assert (
        "classification_headers.0.weight: checkpoint (126, 192, 3, 3), model (12, 192, 3, 3)"
        in message
    )

    state = voc.state_dict()
    del state["extras.0.0.bias"]
    state["extras.9.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(
        InputError, match=r"missing keys: extras\.0\.0\.bias.*unexpected keys: extras\.9\.weight"
    ):
        load_checkpoint(ssd_mobilenetv2_demo(21), path)

    torch.save({**voc.state_dict(), "priors": torch.zeros(3000, 4)}, path)
    with pytest.raises(InputError, match="priors differ"):
        load_checkpoint(ssd_mobilenetv2_demo(21), path)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a loadable PyTorch checkpoint"):
        load_checkpoint(voc, garbage)
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(voc, tmp_path / "absent.pth")
    torch.save([1, 2, 3], path)
    with pytest.raises(InputError, match="expected a state_dict"):
        load_checkpoint(voc, path)


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="background"):
        ssd_mobilenetv2(1)
    with pytest.raises(ValueError, match="4 extra blocks"):
        ssd_mobilenetv2(2, extras=((64, 64),))


@pytest.mark.parametrize(("rule", "expansion"), [("divisible8", 192), ("zoo", 198)])
def test_width_mult_channel_rules(rule: ChannelRule, expansion: int) -> None:
    # Width 0.35: block 14's input is 96 * 0.35 = 33.6 channels, rounded to 32 (torchvision)
    # or truncated to 33 (the zoo's int()), expanded 6x. The zoo's head formula
    # round(576 * 0.35) = 202 would fit neither; the heads read the built layers instead.
    model = ssd_mobilenetv2(3, 0.35, last_channel=64, extras=DEMO_EXTRAS, channel_rule=rule)
    assert model.source_channels[0] == expansion
    with torch.no_grad():
        logits, offsets = model(torch.randn(1, 3, 300, 300))
    assert logits.shape == (1, 3000, 3) and offsets.shape == (1, 3000, 4)


def test_torch_and_onnxruntime_runners_agree_on_real_images(
    demo5: SSDMobileNetV2, demo5_onnx: dict[str, Path], shared_dir: Path
) -> None:
    """The eager network through the torch runner and its zoo-form export through the
    onnxruntime runner, on real coco128 photos with the zoo's pre-processing."""
    from evalkit.datasets.images import decode_rgb
    from evalkit.postprocess.decoders import ST_SSD_OUTPUT_NAMES
    from evalkit.runners.onnx import OnnxRunner
    from evalkit.runners.torch import TorchRunner

    images = sorted((shared_dir / "data" / "coco128" / "images").glob("*.jpg"))[:4]
    rgb = [decode_rgb(p) for p in images]
    ort_runner = OnnxRunner(demo5_onnx["zoo"], batch_size=2)
    torch_runner = TorchRunner(demo5, output_names=ST_SSD_OUTPUT_NAMES, batch_size=2)
    assert ort_runner.preprocessing.name == torch_runner.preprocessing.name == "st-ssd"
    got = ort_runner.run_images(rgb).tensors
    want = torch_runner.run_images(rgb).tensors
    assert ort_runner.info.precision == torch_runner.info.precision == "float"
    for ort_name, torch_name in zip(ort_runner.output_specs(), ST_SSD_OUTPUT_NAMES, strict=True):
        np.testing.assert_allclose(got[ort_name], want[torch_name], rtol=0, atol=TOL)
