"""Pre-processors as data: resize, cast, normalise and lay out an RGB image for a model.

One :class:`Preprocessor` describes the whole transform in fields that go into result
records, and the presets below are the forms the reference pipeline uses (section 3 of
reference-pipeline.md). The arithmetic order is fixed and matches the zoo's
``(img.astype(np.float32) - 127) / 128`` bit for bit:

1. resize the uint8 RGB image with cv2 INTER_LINEAR (aspect ratio not kept);
2. float32 only: cast to float32, subtract ``mean``, then divide by ``scale``, each step
   in float32 (a division, not a multiplication by ``1 / scale``: for a scale that is not
   a power of two the two round differently);
3. transpose to the layout and add the batch dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from evalkit.datasets.images import decode_rgb, resize_bilinear
from evalkit.registry import Registry

__all__ = ["PREPROCESSORS", "Layout", "Preprocessor", "TensorDType", "get_preprocessor"]

Layout = Literal["NCHW", "NHWC"]
TensorDType = Literal["float32", "uint8"]
# Either one value for every channel or one per RGB channel, in R, G, B order.
ChannelValues = float | tuple[float, float, float]


@dataclass(frozen=True)
class Preprocessor:
    """How an RGB uint8 image becomes one model input tensor.

    ``size`` is (width, height) of the model input. For ``dtype="float32"`` the output is
    ``(float32(x) - mean) / scale``; ``dtype="uint8"`` passes the resized pixels through,
    so it requires ``mean=0`` and ``scale=1`` (the model normalises inside).
    """

    size: tuple[int, int]
    layout: Layout
    dtype: TensorDType
    mean: ChannelValues = 0.0
    scale: ChannelValues = 1.0

    def __post_init__(self) -> None:
        width, height = self.size
        if width <= 0 or height <= 0:
            raise ValueError(f"expected a positive size (width, height), got {self.size!r}")
        if self.layout not in get_args(Layout):
            raise ValueError(f"expected layout 'NCHW' or 'NHWC', got {self.layout!r}")
        if self.dtype not in get_args(TensorDType):
            raise ValueError(f"expected dtype 'float32' or 'uint8', got {self.dtype!r}")
        for name in ("mean", "scale"):
            values = np.asarray(getattr(self, name), dtype=np.float64)
            if values.shape not in ((), (3,)) or not np.all(np.isfinite(values)):
                raise ValueError(
                    f"expected {name} to be one finite number or three (R, G, B), "
                    f"got {getattr(self, name)!r}"
                )
        if np.any(np.asarray(self.scale) == 0):
            raise ValueError(f"expected a non-zero scale, got {self.scale!r}")
        if self.dtype == "uint8" and (
            np.any(np.asarray(self.mean) != 0) or np.any(np.asarray(self.scale) != 1)
        ):
            raise ValueError(
                "a uint8 input cannot hold normalised values: expected mean=0 and scale=1, "
                f"got mean={self.mean!r} scale={self.scale!r}"
            )

    @property
    def batch_shape(self) -> tuple[int, int, int, int]:
        """Shape of :meth:`apply`'s output, batch dimension 1 included."""
        width, height = self.size
        if self.layout == "NCHW":
            return (1, 3, height, width)
        return (1, height, width, 3)

    def apply(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.generic]:
        """One (H, W, 3) uint8 RGB image to a model input with a batch dimension of 1."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"expected an (H, W, 3) uint8 RGB image, got dtype {image.dtype} "
                f"shape {image.shape}"
            )
        resized = resize_bilinear(image, self.size)
        tensor: npt.NDArray[np.generic]
        if self.dtype == "float32":
            # Same operations, same order, same float32 operands as the reference formula;
            # a float32 per-channel vector broadcasts over the last (channel) axis.
            mean = np.asarray(self.mean, dtype=np.float32)
            scale = np.asarray(self.scale, dtype=np.float32)
            tensor = (resized.astype(np.float32) - mean) / scale
        else:
            tensor = resized
        if self.layout == "NCHW":
            tensor = tensor.transpose(2, 0, 1)
        # Runtimes want C-contiguous buffers; the transpose above is only a view.
        return np.ascontiguousarray(tensor[np.newaxis])

    def apply_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.generic]:
        """Several RGB images (any sizes) to one batch, in the order given."""
        if len(images) == 0:
            raise ValueError("expected at least one image in the batch, got none")
        return np.concatenate([self.apply(image) for image in images], axis=0)

    def apply_file(self, path: str | Path) -> npt.NDArray[np.generic]:
        """Decode an image file as the reference does, then :meth:`apply`."""
        return self.apply(decode_rgb(path))

    def settings(self) -> dict[str, object]:
        """The fields as plain JSON values, for self-describing result records."""
        return {
            "size": list(self.size),
            "layout": self.layout,
            "dtype": self.dtype,
            "mean": _plain(self.mean),
            "scale": _plain(self.scale),
            "order": "resize(INTER_LINEAR) -> float32 -> (x - mean) / scale -> layout",
        }


def _plain(values: ChannelValues) -> float | list[float]:
    return float(values) if isinstance(values, (int, float)) else [float(v) for v in values]


PREPROCESSORS: Registry[Preprocessor] = Registry("preprocessor")

# The zoo's host evaluation and calibration input (reference-pipeline.md section 3).
PREPROCESSORS.add(
    "st-ssd", Preprocessor(size=(300, 300), layout="NCHW", dtype="float32", mean=127, scale=128)
)
# The deployed N6 model: the normalisation is folded into its quantized input.
PREPROCESSORS.add("uint8-nhwc", Preprocessor(size=(300, 300), layout="NHWC", dtype="uint8"))
# TensorFlow Object Detection API SSD exports: uint8 NHWC, normalised inside the graph.
PREPROCESSORS.add("tfod-ssd", Preprocessor(size=(300, 300), layout="NHWC", dtype="uint8"))


# Float NHWC inputs of other families (sized to the model by the runner that uses them):
# x / 255 (ultralytics YOLO) and (x - 127.5) / 127.5 (the zoo's TF models' rescaling).
PREPROCESSORS.add(
    "unit-nhwc", Preprocessor(size=(300, 300), layout="NHWC", dtype="float32", scale=255)
)
PREPROCESSORS.add(
    "signed-nhwc",
    Preprocessor(size=(300, 300), layout="NHWC", dtype="float32", mean=127.5, scale=127.5),
)


def get_preprocessor(name: str) -> Preprocessor:
    """A named preset; unknown names are answered with the known ones."""
    return PREPROCESSORS.get(name)
