"""Pre-processors reproduce the reference formula bit for bit.

The zoo computes ``(img.astype(np.float32) - 127) / 128`` after
``cv2.resize(img, (300, 300), interpolation=cv2.INTER_LINEAR)``, then NCHW. Equality is
checked on the raw bytes, so even a -0.0 for 0.0 would fail.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalkit.datasets.preprocess import (
    PREPROCESSORS,
    Preprocessor,
    get_preprocessor,
)
from evalkit.registry import UnknownNameError

U8 = npt.NDArray[np.uint8]


def zoo_input(rgb: U8) -> npt.NDArray[np.float32]:
    """The reference pre-processing, written as the zoo writes it."""
    img = cv2.resize(rgb, (300, 300), interpolation=cv2.INTER_LINEAR)
    img = (img.astype(np.float32) - 127) / 128
    return np.asarray(img.transpose(2, 0, 1)[None], dtype=np.float32)


def deployed_input(rgb: U8) -> U8:
    """The deployed model's input: the resized uint8 pixels, NHWC."""
    return np.asarray(cv2.resize(rgb, (300, 300), interpolation=cv2.INTER_LINEAR)[None])


def random_rgb(seed: int, height: int, width: int) -> U8:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def assert_bit_equal(actual: npt.NDArray[np.generic], expected: npt.NDArray[np.generic]) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.flags.c_contiguous
    assert actual.tobytes() == expected.tobytes()


SHAPES = [(480, 640), (300, 300), (1, 1), (77, 501), (1000, 23)]


@pytest.mark.parametrize(("height", "width"), SHAPES)
def test_st_ssd_equals_the_zoo_formula(height: int, width: int) -> None:
    rgb = random_rgb(height + width, height, width)
    out = get_preprocessor("st-ssd").apply(rgb)
    assert out.shape == (1, 3, 300, 300)
    assert_bit_equal(out, zoo_input(rgb))


@pytest.mark.parametrize("name", ["uint8-nhwc", "tfod-ssd"])
@pytest.mark.parametrize(("height", "width"), SHAPES)
def test_uint8_presets_are_the_resized_pixels(name: str, height: int, width: int) -> None:
    rgb = random_rgb(height * width, height, width)
    out = get_preprocessor(name).apply(rgb)
    assert out.shape == (1, 300, 300, 3)
    assert_bit_equal(out, deployed_input(rgb))


def test_st_ssd_values_worked_by_hand() -> None:
    # A flat image stays flat through the resize, so each value is the formula alone:
    # 0 -> -127/128, 127 -> 0, 128 -> 1/128, 255 -> 128/128 (all exact in float32).
    pre = get_preprocessor("st-ssd")
    for value, expected in ((0, -0.9921875), (127, 0.0), (128, 0.0078125), (255, 1.0)):
        out = pre.apply(np.full((10, 20, 3), value, np.uint8))
        assert out.dtype == np.float32
        assert np.all(out == np.float32(expected)), value
    assert not np.signbit(pre.apply(np.full((2, 2, 3), 127, np.uint8))).any()  # +0.0


def test_channels_stay_in_rgb_order_in_each_layout() -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    nchw = Preprocessor(size=(6, 4), layout="NCHW", dtype="uint8").apply(rgb)
    nhwc = Preprocessor(size=(6, 4), layout="NHWC", dtype="uint8").apply(rgb)
    assert nchw.shape == (1, 3, 4, 6) and nhwc.shape == (1, 4, 6, 3)
    assert [int(nchw[0, c, 0, 0]) for c in range(3)] == [10, 20, 30]
    assert nhwc[0, 0, 0].tolist() == [10, 20, 30]


def test_per_channel_mean_and_scale_divide_in_float32() -> None:
    mean, scale = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    pre = Preprocessor(size=(32, 24), layout="NHWC", dtype="float32", mean=mean, scale=scale)
    rgb = random_rgb(7, 50, 40)
    resized = cv2.resize(rgb, (32, 24), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    divided = (resized - np.array(mean, np.float32)) / np.array(scale, np.float32)
    assert_bit_equal(pre.apply(rgb), divided[None])
    # Why division and not * (1 / scale): the two differ in the last bit for some pixels.
    multiplied = (resized - np.array(mean, np.float32)) * (1 / np.array(scale, np.float32))
    assert not np.array_equal(divided, multiplied)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 64),
    width=st.integers(1, 64),
    mean=st.floats(-300, 300, width=32),
    scale=st.floats(0.0625, 300, width=32),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_scalar_normalisation_matches_the_formula(
    height: int, width: int, mean: float, scale: float, seed: int
) -> None:
    rgb = random_rgb(seed, height, width)
    pre = Preprocessor(size=(16, 8), layout="NCHW", dtype="float32", mean=mean, scale=scale)
    resized = cv2.resize(rgb, (16, 8), interpolation=cv2.INTER_LINEAR)
    expected = ((resized.astype(np.float32) - np.float32(mean)) / np.float32(scale)).transpose(
        2, 0, 1
    )[None]
    assert_bit_equal(pre.apply(rgb), np.ascontiguousarray(expected))


def test_apply_batch_stacks_in_order() -> None:
    pre = get_preprocessor("st-ssd")
    batch_images = [random_rgb(i, 40 + i, 60 - i) for i in range(3)]
    batch = pre.apply_batch(batch_images)
    assert batch.shape == (3, 3, 300, 300)
    for index, rgb in enumerate(batch_images):
        assert_bit_equal(batch[index : index + 1], zoo_input(rgb))
    with pytest.raises(ValueError, match="at least one image"):
        pre.apply_batch([])


def test_bad_images_are_refused() -> None:
    pre = get_preprocessor("st-ssd")
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 RGB image, got dtype"):
        pre.apply(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"shape \(4, 4\)"):
        pre.apply(np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dtype": "uint8", "mean": 127.0}, "cannot hold normalised values"),
        ({"dtype": "uint8", "scale": 128.0}, "cannot hold normalised values"),
        ({"layout": "CHW"}, "expected layout 'NCHW' or 'NHWC', got 'CHW'"),
        ({"dtype": "float16"}, "expected dtype 'float32' or 'uint8', got 'float16'"),
        ({"scale": 0.0}, "non-zero scale"),
        ({"scale": (1.0, 0.0, 1.0)}, "non-zero scale"),
        ({"mean": (1.0, 2.0)}, "one finite number or three"),
        ({"mean": float("nan")}, "one finite number or three"),
        ({"size": (0, 300)}, "positive size"),
    ],
)
def test_invalid_settings_are_refused(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"size": (300, 300), "layout": "NCHW", "dtype": "float32"}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Preprocessor(**{**base, **fields})  # type: ignore[arg-type]


def test_presets_are_registered_frozen_and_self_describing() -> None:
    zoo_tf = {f"zoo-tf-{r}-{m}" for r in ("signed", "unit") for m in ("bilinear", "nearest")}
    assert set(PREPROCESSORS.names()) == {
        "st-ssd", "uint8-nhwc", "tfod-ssd", "unit-nhwc", "signed-nhwc", "yolod", *zoo_tf
    }  # fmt: skip
    pixels = np.array([[[0, 127, 255]]], np.uint8)  # one RGB pixel, resized to itself below
    unit = dataclasses.replace(get_preprocessor("unit-nhwc"), size=(1, 1)).apply(pixels)
    assert unit.ravel().tolist() == [0.0, np.float32(127) / np.float32(255), 1.0]  # x / 255
    signed = dataclasses.replace(get_preprocessor("signed-nhwc"), size=(1, 1)).apply(pixels)
    assert signed.ravel().tolist() == [-1.0, np.float32(-0.5) / np.float32(127.5), 1.0]
    st_ssd = get_preprocessor("st-ssd")
    assert (st_ssd.size, st_ssd.layout, st_ssd.dtype) == ((300, 300), "NCHW", "float32")
    assert (st_ssd.mean, st_ssd.scale) == (127, 128)
    assert get_preprocessor("uint8-nhwc").batch_shape == (1, 300, 300, 3)
    assert st_ssd.batch_shape == (1, 3, 300, 300)
    with pytest.raises(dataclasses.FrozenInstanceError):
        st_ssd.mean = 0.0  # type: ignore[misc]
    with pytest.raises(UnknownNameError, match="did you mean 'st-ssd'"):
        get_preprocessor("st_ssd")
    record = json.loads(json.dumps(st_ssd.settings()))
    assert record["size"] == [300, 300] and record["mean"] == 127.0 and record["scale"] == 128.0


def test_real_images_match_the_zoo(shared_dir: Path) -> None:
    coco = sorted((shared_dir / "data/coco128/images").glob("*.jpg"))
    voc = sorted((shared_dir / "data/voc_sample/VOCdevkit/VOC2012/JPEGImages").glob("*.jpg"))
    paths = coco[::4] + voc[::4]  # a quarter: test_images decodes every one already
    assert len(paths) > 40
    st_ssd, deployed = get_preprocessor("st-ssd"), get_preprocessor("uint8-nhwc")
    mismatched = []
    for path in paths:
        bgr = cv2.imread(str(path))
        assert bgr is not None, path
        rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)
        if st_ssd.apply_file(path).tobytes() != zoo_input(rgb).tobytes():
            mismatched.append(f"{path.name} (st-ssd)")
        if deployed.apply(rgb).tobytes() != deployed_input(rgb).tobytes():
            mismatched.append(f"{path.name} (uint8-nhwc)")
    assert mismatched == []


def _zoo_letterbox(image_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """The zoo's YOLOD ``preproc``, as its code reads: r = min(H / h, W / w), resize to
    (int(w r), int(h r)) with INTER_LINEAR, top left on a 114 canvas, CHW float32."""
    r = min(height / image_bgr.shape[0], width / image_bgr.shape[1])
    canvas = np.ones((height, width, 3), np.uint8) * 114
    inner = cv2.resize(
        image_bgr,
        (int(image_bgr.shape[1] * r), int(image_bgr.shape[0] * r)),
        interpolation=cv2.INTER_LINEAR,
    ).astype(np.uint8)
    canvas[: inner.shape[0], : inner.shape[1]] = inner
    return np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32)


@pytest.mark.parametrize("shape", [(240, 320), (320, 240), (100, 100), (97, 333), (501, 64)])
def test_yolod_letterbox_equals_the_zoo_preproc(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    pre = dataclasses.replace(get_preprocessor("yolod"), size=(192, 160))
    ours = pre.apply(rgb)[0]
    expected = _zoo_letterbox(np.ascontiguousarray(rgb[..., ::-1]), 192, 160)
    assert ours.dtype == np.float32 and np.array_equal(ours, expected)


def test_letterbox_boxes_come_back_to_the_image() -> None:
    pre = dataclasses.replace(get_preprocessor("yolod"), size=(200, 100))
    # A 400x100 image: r = min(100 / 100, 200 / 400) = 0.5, content 200x50 at the top left.
    sx, sy = pre.box_scale(400, 100)
    assert (sx, sy) == (400.0, 200.0)
    # The content's bottom-right corner (x 1.0, y 0.5 of the input) is the image's.
    assert (1.0 * sx, 0.5 * sy) == (400.0, 100.0)
    stretch = get_preprocessor("st-ssd")
    assert stretch.box_scale(640, 480) == (640.0, 480.0)


def test_settings_describe_the_letterbox_and_read_back() -> None:
    pre = get_preprocessor("yolod")
    settings = json.loads(json.dumps(pre.settings()))
    assert settings["resize"] == "letterbox" and settings["channel_order"] == "BGR"
    assert settings["pad_value"] == 114 and "letterbox" in settings["order"]
    assert Preprocessor.from_settings(settings) == pre
    plain = get_preprocessor("st-ssd").settings()
    assert "resize" not in plain and "channel_order" not in plain  # records unchanged
    assert Preprocessor.from_settings(json.loads(json.dumps(plain))) == get_preprocessor("st-ssd")
