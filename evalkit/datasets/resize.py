"""Image resize filters, by name: OpenCV's bilinear (the zoo's PyTorch pipelines) and
TensorFlow's ``tf.image.resize`` bilinear and nearest (its TF/TFLite pipelines:
``preprocess_image`` resizes with ``method=interpolation`` from the configuration's
``resizing.interpolation``, aspect ratio not kept).

TensorFlow's kernels, as these reproduce them (half-pixel centres, no antialiasing, every
operation in float32; equal bit for bit, tested against ``tf.image.resize``):

- scale = in_size / out_size;
- bilinear: source = (i + 0.5) * scale - 0.5; lower = max(floor(source), 0), upper =
  min(ceil(source), in_size - 1), weight = source - floor(source); rows first
  ``top = tl + (tr - tl) * wx``, ``bottom = bl + (br - bl) * wx``, then
  ``top + (bottom - top) * wy``; the result is float32 (not rounded back to pixels);
- nearest: source = min(floor((i + 0.5) * scale), in_size - 1); the pixels are kept.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from evalkit.datasets.images import Size, resize_bilinear
from evalkit.registry import Registry

__all__ = ["RESIZE_FILTERS", "ResizeFilter", "tf_bilinear", "tf_nearest"]

ResizeFilter = Callable[[npt.NDArray[np.generic], Size], npt.NDArray[np.generic]]


def _sources(out_size: int, in_size: int) -> npt.NDArray[np.float32]:
    scale = np.float32(in_size) / np.float32(out_size)
    return (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale


def _bilinear_axis(
    out_size: int, in_size: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    source = _sources(out_size, in_size) - np.float32(0.5)
    floor = np.floor(source)
    lower = np.maximum(floor.astype(np.intp), 0)
    upper = np.minimum(np.ceil(source).astype(np.intp), in_size - 1)
    return lower, upper, source - floor


def _check(image: npt.NDArray[np.generic], size: Size) -> None:
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"expected a positive (width, height), got {size!r}")
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty (H, W, C) image, got {image.shape}")


def tf_bilinear(image: npt.NDArray[np.generic], size: Size) -> npt.NDArray[np.float32]:
    """``tf.image.resize(image, (h, w), "bilinear")``: float32 out."""
    _check(image, size)
    top_row, bottom_row, wy = _bilinear_axis(size[1], image.shape[0])
    left, right, wx = _bilinear_axis(size[0], image.shape[1])
    pixels = image.astype(np.float32)
    top, bottom = pixels[top_row], pixels[bottom_row]
    wx3 = wx[None, :, None]
    upper = top[:, left] + (top[:, right] - top[:, left]) * wx3
    lower = bottom[:, left] + (bottom[:, right] - bottom[:, left]) * wx3
    out: npt.NDArray[np.float32] = upper + (lower - upper) * wy[:, None, None]
    return out


def tf_nearest(image: npt.NDArray[np.generic], size: Size) -> npt.NDArray[np.generic]:
    """``tf.image.resize(image, (h, w), "nearest")``: the image's own dtype out."""
    _check(image, size)
    rows = np.minimum(np.floor(_sources(size[1], image.shape[0])).astype(np.intp),
                      image.shape[0] - 1)  # fmt: skip
    cols = np.minimum(np.floor(_sources(size[0], image.shape[1])).astype(np.intp),
                      image.shape[1] - 1)  # fmt: skip
    return np.ascontiguousarray(image[rows][:, cols])


RESIZE_FILTERS: Registry[ResizeFilter] = Registry("interpolation")
RESIZE_FILTERS.add("cv2-linear", resize_bilinear)
RESIZE_FILTERS.add("tf-bilinear", tf_bilinear)
RESIZE_FILTERS.add("tf-nearest", tf_nearest)
# Filters whose output is float32 rather than pixels (no uint8 model input from them).
FLOAT_OUTPUT = frozenset({"tf-bilinear"})
