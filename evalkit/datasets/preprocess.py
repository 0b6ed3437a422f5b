"""Pre-processors as data: resize, cast, normalise and lay out an RGB image for a model.

One :class:`Preprocessor` describes the whole transform in fields that go into result
records, and the presets below are the forms the reference pipeline uses (section 3 of
reference-pipeline.md). The arithmetic order is fixed and matches the zoo's
``(img.astype(np.float32) - 127) / 128`` bit for bit:

1. resize the uint8 RGB image with the ``interpolation`` filter (cv2 INTER_LINEAR by
   default; TensorFlow's bilinear or nearest for the zoo's TF pipelines, see
   :mod:`evalkit.datasets.resize`): ``stretch`` (aspect ratio not kept), or ``letterbox``
   as the zoo's YOLOD evaluation (``preproc`` in its
   ``data/yolod/augmentations/data_augment.py``): scaled by ``r = min(H / h, W / w)`` to
   ``(int(w r), int(h r))``, placed at the top left of a ``W x H`` canvas of ``pad_value``;
2. ``channel_order`` BGR reverses the channels (the zoo's YOLOD reads images with
   ``cv2.imread`` and never converts them);
3. float32 only: cast to float32, subtract ``mean``, then divide by ``scale``, each step
   in float32 (a division, not a multiplication by ``1 / scale``: for a scale that is not
   a power of two the two round differently); or, ``arithmetic="multiply-add"``, as the
   zoo's TF ``preprocess_image`` does it: ``x * scale + offset`` (float32 scale and
   offset, two roundings);
4. transpose to the layout and add the batch dimension.

A letterboxed input's boxes come back to the image with :meth:`Preprocessor.box_scale`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from evalkit.datasets.images import decode_rgb
from evalkit.datasets.resize import FLOAT_OUTPUT, RESIZE_FILTERS
from evalkit.registry import Registry

__all__ = ["PREPROCESSORS", "Layout", "Preprocessor", "TensorDType", "get_preprocessor"]

Layout = Literal["NCHW", "NHWC"]
TensorDType = Literal["float32", "uint8"]
ResizeMode = Literal["stretch", "letterbox"]
ChannelOrder = Literal["RGB", "BGR"]
Arithmetic = Literal["subtract-divide", "multiply-add"]
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
    resize: ResizeMode = "stretch"
    pad_value: int = 114  # letterbox only: the canvas value
    channel_order: ChannelOrder = "RGB"
    interpolation: str = "cv2-linear"  # a name in evalkit.datasets.resize.RESIZE_FILTERS
    arithmetic: Arithmetic = "subtract-divide"
    offset: ChannelValues = 0.0  # multiply-add only

    def __post_init__(self) -> None:
        width, height = self.size
        if width <= 0 or height <= 0:
            raise ValueError(f"expected a positive size (width, height), got {self.size!r}")
        if self.resize not in get_args(ResizeMode):
            raise ValueError(f"expected resize 'stretch' or 'letterbox', got {self.resize!r}")
        if self.channel_order not in get_args(ChannelOrder):
            raise ValueError(f"expected channel_order 'RGB' or 'BGR', got {self.channel_order!r}")
        if not 0 <= self.pad_value <= 255:
            raise ValueError(f"expected a pad value in [0, 255], got {self.pad_value!r}")
        RESIZE_FILTERS.get(self.interpolation)  # an unknown name lists the known ones
        if self.arithmetic not in get_args(Arithmetic):
            raise ValueError(
                f"expected arithmetic 'subtract-divide' or 'multiply-add', got {self.arithmetic!r}"
            )
        if self.arithmetic == "multiply-add" and np.any(np.asarray(self.mean) != 0):
            raise ValueError(f"multiply-add takes an offset, not a mean: got mean={self.mean!r}")
        if self.arithmetic == "subtract-divide" and np.any(np.asarray(self.offset) != 0):
            raise ValueError(f"subtract-divide takes a mean, not an offset: got {self.offset!r}")
        if self.dtype == "uint8" and self.interpolation in FLOAT_OUTPUT:
            raise ValueError(
                f"{self.interpolation} gives float pixels: a uint8 input needs cv2-linear or "
                "tf-nearest"
            )
        if self.layout not in get_args(Layout):
            raise ValueError(f"expected layout 'NCHW' or 'NHWC', got {self.layout!r}")
        if self.dtype not in get_args(TensorDType):
            raise ValueError(f"expected dtype 'float32' or 'uint8', got {self.dtype!r}")
        for name in ("mean", "scale", "offset"):
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
        if self.channel_order == "BGR":
            image = image[..., ::-1]
        resized = self._resized(image)
        tensor: npt.NDArray[np.generic]
        if self.dtype == "float32":
            # Same operations, same order, same float32 operands as the reference formula;
            # a float32 per-channel vector broadcasts over the last (channel) axis.
            mean = np.asarray(self.mean, dtype=np.float32)
            scale = np.asarray(self.scale, dtype=np.float32)
            if self.arithmetic == "multiply-add":
                offset = np.asarray(self.offset, dtype=np.float32)
                tensor = resized.astype(np.float32) * scale + offset
            else:
                tensor = (resized.astype(np.float32) - mean) / scale
        else:
            tensor = resized
        if self.layout == "NCHW":
            tensor = tensor.transpose(2, 0, 1)
        # Runtimes want C-contiguous buffers; the transpose above is only a view.
        return np.ascontiguousarray(tensor[np.newaxis])

    def _ratio(self, image_width: int, image_height: int) -> float:
        width, height = self.size
        return min(height / image_height, width / image_width)

    def _resized(self, image: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        resize = RESIZE_FILTERS.get(self.interpolation)
        if self.resize == "stretch":
            return resize(image, self.size)
        width, height = self.size
        r = self._ratio(image.shape[1], image.shape[0])
        inner = resize(image, (int(image.shape[1] * r), int(image.shape[0] * r)))
        canvas = np.full((height, width, image.shape[2]), self.pad_value, inner.dtype)
        canvas[: inner.shape[0], : inner.shape[1]] = inner
        return canvas

    def box_scale(self, image_width: int, image_height: int) -> tuple[float, float]:
        """Image pixels per unit of the model's normalised x and y: the image size when
        stretched; the input size over the letterbox ratio (the padding is right and
        below, so there is no offset)."""
        if self.resize == "stretch":
            return float(image_width), float(image_height)
        r = self._ratio(image_width, image_height)
        return self.size[0] / r, self.size[1] / r

    def apply_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.generic]:
        """Several RGB images (any sizes) to one batch, in the order given."""
        if len(images) == 0:
            raise ValueError("expected at least one image in the batch, got none")
        return np.concatenate([self.apply(image) for image in images], axis=0)

    def apply_file(self, path: str | Path) -> npt.NDArray[np.generic]:
        """Decode an image file as the reference does, then :meth:`apply`."""
        return self.apply(decode_rgb(path))

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Preprocessor:
        """The pre-processor a record's :meth:`settings` describe."""

        def values(v: Any) -> ChannelValues:
            return (
                float(v) if isinstance(v, (int, float)) else (float(v[0]), float(v[1]), float(v[2]))
            )

        width, height = settings["size"]
        return cls(
            size=(int(width), int(height)),
            layout=settings["layout"],
            dtype=settings["dtype"],
            mean=values(settings.get("mean", 0.0)),
            scale=values(settings.get("scale", 1.0)),
            resize=settings.get("resize", "stretch"),
            pad_value=int(settings.get("pad_value", 114)),
            channel_order=settings.get("channel_order", "RGB"),
            interpolation=settings.get("interpolation", "cv2-linear"),
            arithmetic=settings.get("arithmetic", "subtract-divide"),
            offset=values(settings.get("offset", 0.0)),
        )

    def settings(self) -> dict[str, object]:
        """The fields as plain JSON values, for self-describing result records. The
        letterbox, BGR, interpolation and multiply-add fields appear only when used, so the
        records (and fingerprints) of plain stretched RGB inputs are what they always were."""
        out: dict[str, object] = {
            "size": list(self.size),
            "layout": self.layout,
            "dtype": self.dtype,
            "mean": _plain(self.mean),
            "scale": _plain(self.scale),
        }
        filter_name = _FILTER_WORDS.get(self.interpolation, self.interpolation)
        if self.interpolation != "cv2-linear":
            out["interpolation"] = self.interpolation
        steps = f"resize({filter_name})"
        if self.resize == "letterbox":
            out["resize"] = "letterbox"
            out["pad_value"] = self.pad_value
            steps = f"letterbox({filter_name}, top left, pad {self.pad_value})"
        if self.channel_order == "BGR":
            out["channel_order"] = "BGR"
            steps = f"RGB -> BGR -> {steps}"
        arithmetic = "(x - mean) / scale"
        if self.arithmetic == "multiply-add":
            out["arithmetic"] = "multiply-add"
            out["offset"] = _plain(self.offset)
            arithmetic = "x * scale + offset"
        out["order"] = f"{steps} -> float32 -> {arithmetic} -> layout"
        return out


# How the record's ``order`` names each filter (the first as records always named it).
_FILTER_WORDS = {"cv2-linear": "INTER_LINEAR", "tf-bilinear": "tf.image.resize bilinear",
                 "tf-nearest": "tf.image.resize nearest"}  # fmt: skip


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
# The zoo's PyTorch YOLOD (st_yolodv2*) evaluation: BGR as cv2.imread gives it, letterboxed
# at the top left on grey 114, channels first, raw 0-255 floats (its ValTransform, legacy
# off, does not normalise).
PREPROCESSORS.add(
    "yolod",
    Preprocessor(
        size=(320, 320), layout="NCHW", dtype="float32", resize="letterbox", channel_order="BGR"
    ),
)


# The zoo's TF/TFLite evaluation (its ``preprocess_image``): resized by tf.image.resize with
# the configuration's interpolation, aspect ratio not kept, then ``x * scale + offset`` in
# float32 with the configuration's rescaling: 1/127.5 and -1 (the zoo's TF models) or 1/255
# and 0 (ultralytics YOLO).
for _method in ("bilinear", "nearest"):
    for _range, (_scale, _offset) in {"signed": (1 / 127.5, -1.0), "unit": (1 / 255, 0.0)}.items():
        PREPROCESSORS.add(
            f"zoo-tf-{_range}-{_method}",
            Preprocessor(
                size=(300, 300),
                layout="NHWC",
                dtype="float32",
                scale=_scale,
                offset=_offset,
                arithmetic="multiply-add",
                interpolation=f"tf-{_method}",
            ),
        )


def get_preprocessor(name: str) -> Preprocessor:
    """A named preset; unknown names are answered with the known ones."""
    return PREPROCESSORS.get(name)
