"""The zoo's TF/TFLite pre-processing (``preprocess_image``: tf.image.resize with the
configured interpolation, then ``scale * x + offset``) against TensorFlow itself, bit for
bit: the resize filters of evalkit/datasets/resize.py on random sizes (up, down, one pixel,
odd ratios) and the ``zoo-tf-*`` presets on random and real images."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from evalkit.datasets.images import decode_rgb
from evalkit.datasets.preprocess import Preprocessor, get_preprocessor
from evalkit.datasets.resize import RESIZE_FILTERS, tf_bilinear, tf_nearest
from evalkit.registry import UnknownNameError


def _zoo_tf(image: np.ndarray, height: int, width: int, method: str, scale: float,
            offset: float) -> np.ndarray:  # fmt: skip
    """The zoo's ``preprocess_image`` with aspect_ratio "fit", written out in TensorFlow."""
    img = tf.image.resize(image, [height, width], method=method, preserve_aspect_ratio=False)
    return (scale * tf.cast(img, tf.float32) + offset).numpy()


def _random_sizes(seed: int, count: int) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    sizes = [(1, 1, 5, 7), (5, 7, 1, 1), (3, 3, 300, 300), (480, 640, 300, 300),
             (640, 480, 192, 192), (300, 300, 300, 300), (2, 1000, 256, 3)]  # fmt: skip
    sizes += [tuple(int(v) for v in rng.integers(1, 400, 4)) for _ in range(count)]  # type: ignore[misc]
    return sizes


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_resize_filters_equal_tf_image_resize_bit_for_bit(method: str) -> None:
    rng = np.random.default_rng(1)
    ours = tf_bilinear if method == "bilinear" else tf_nearest
    for in_h, in_w, out_h, out_w in _random_sizes(2, 60):
        image = rng.integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
        want = tf.image.resize(image, [out_h, out_w], method=method).numpy()
        got = ours(image, (out_w, out_h))
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes(), (method, in_h, in_w, out_h, out_w)


@pytest.mark.parametrize("range_", ["signed", "unit"])
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_zoo_tf_presets_equal_the_zoo_formula(range_: str, method: str) -> None:
    scale, offset = {"signed": (1 / 127.5, -1.0), "unit": (1 / 255, 0.0)}[range_]
    rng = np.random.default_rng(3)
    for in_h, in_w, out_h, out_w in _random_sizes(4, 20):
        image = rng.integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
        pre = dataclasses.replace(get_preprocessor(f"zoo-tf-{range_}-{method}"),
                                  size=(out_w, out_h))  # fmt: skip
        want = _zoo_tf(image, out_h, out_w, method, scale, offset)
        assert pre.apply(image)[0].tobytes() == want.tobytes()


def test_real_images_equal_the_zoo_tf_formula(shared_dir: Path) -> None:
    paths = sorted((shared_dir / "data/coco128/images").glob("*.jpg"))[::8]
    assert len(paths) >= 10
    pre = dataclasses.replace(get_preprocessor("zoo-tf-signed-bilinear"), size=(224, 224))
    for path in paths:
        image = decode_rgb(path)
        want = _zoo_tf(image, 224, 224, "bilinear", 1 / 127.5, -1.0)
        assert pre.apply(image)[0].tobytes() == want.tobytes(), path.name
        # Not the same numbers as OpenCV's filter and (x - 127.5) / 127.5: why the choice
        # is recorded.
        cv2_signed = dataclasses.replace(get_preprocessor("signed-nhwc"), size=(224, 224))
        assert cv2_signed.apply(image).tobytes() != want.tobytes()


def test_the_choice_is_recorded_and_read_back() -> None:
    pre = dataclasses.replace(get_preprocessor("zoo-tf-signed-nearest"), size=(192, 192))
    record = json.loads(json.dumps(pre.settings()))
    assert record["interpolation"] == "tf-nearest" and record["arithmetic"] == "multiply-add"
    assert record["offset"] == -1.0 and record["scale"] == 1 / 127.5
    assert "tf.image.resize nearest" in record["order"]
    assert "x * scale + offset" in record["order"]
    assert Preprocessor.from_settings(record) == pre
    # Records of the default filter and arithmetic carry no new key (fingerprints kept).
    plain = get_preprocessor("signed-nhwc").settings()
    assert not {"interpolation", "arithmetic", "offset"} & set(plain)
    assert "INTER_LINEAR" in str(plain["order"])


def test_letterbox_takes_the_chosen_filter() -> None:
    image = np.random.default_rng(5).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    pre = Preprocessor(size=(64, 64), layout="NHWC", dtype="float32", resize="letterbox",
                       interpolation="tf-bilinear")  # fmt: skip
    out = pre.apply(image)[0]
    inner = tf.image.resize(image, [36, 64], method="bilinear").numpy()
    assert out[:36].tobytes() == inner.tobytes()
    assert np.all(out[36:] == 114)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"interpolation": "bicubic"}, "unknown interpolation 'bicubic'"),
        ({"arithmetic": "divide"}, "expected arithmetic"),
        ({"arithmetic": "multiply-add", "mean": 1.0}, "takes an offset, not a mean"),
        ({"offset": 1.0}, "takes a mean, not an offset"),
        ({"dtype": "uint8", "interpolation": "tf-bilinear"}, "gives float pixels"),
    ],
)
def test_bad_filter_settings_are_refused(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"size": (8, 8), "layout": "NHWC", "dtype": "float32"}
    with pytest.raises((ValueError, UnknownNameError), match=message):
        Preprocessor(**{**base, **fields})  # type: ignore[arg-type]


def test_every_filter_is_registered() -> None:
    assert set(RESIZE_FILTERS.names()) == {"cv2-linear", "tf-bilinear", "tf-nearest"}
