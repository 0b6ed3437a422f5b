"""TFLite models on the LiteRT interpreter (``ai-edge-litert``, the runtime TensorFlow Lite
became), CPU, with the same runner protocol and records as the ONNX runner.

Quantized inputs: a uint8 input takes the resized pixels as they are (the model's scale and
zero point are its normalisation: it sees ``(pixel - zero_point) * scale``), unless a float
pre-processor is given; an int8 input (or a uint8 one given a float pre-processor) takes the
pre-processed float tensor quantized with the model's scale and zero point,
``clip(round(x / scale) + zero_point)``. Quantized outputs are dequantized,
``(q - zero_point) * scale``. A model with a fixed batch runs its batch at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from evalkit.datasets.preprocess import PREPROCESSORS, Preprocessor
from evalkit.errors import InputError
from evalkit.runners.base import (
    InputSpec,
    Precision,
    PreprocessorChoice,
    RunnerInfo,
    Shape,
    check_batch,
    check_positive,
    choose_preprocessor,
    preprocess_images,
    run_in_chunks,
)
from evalkit.types import RawOutputs

__all__ = ["LiteRtRunner"]

_QUANTIZED = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def _quantization(detail: dict[str, Any]) -> tuple[float, int] | None:
    """(scale, zero point) of a per-tensor quantized tensor, None for a float one."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zero_point)) if scale else None


def _precision(tensors: Sequence[dict[str, Any]]) -> tuple[Precision, str]:
    quantized = [t for t in tensors if np.dtype(t["dtype"]) in _QUANTIZED and _quantization(t)]
    if quantized:
        return "int8", f"{len(quantized)} of {len(tensors)} tensors are 8-bit quantized"
    return "float", "no 8-bit quantized tensor"


class LiteRtRunner:
    """A ``.tflite`` model on LiteRT's CPU interpreter; see :class:`~evalkit.runners.base.Runner`.

    ``threads`` is the interpreter's thread count (None: LiteRT's default). ``preprocessor``
    overrides the choice read from the model's input (a preset is resized to the model)."""

    name = "litert"

    def __init__(
        self,
        model_path: str | Path,
        *,
        batch_size: int = 1,
        threads: int | None = None,
        preprocessor: str | Preprocessor | None = None,
    ) -> None:
        check_positive(batch_size, "batch_size")
        check_positive(threads, "threads", allow_none=True)
        path = Path(model_path)
        if not path.is_file():
            raise InputError("TFLite model file not found", path=path)
        from ai_edge_litert import interpreter as litert

        try:
            self._interpreter = litert.Interpreter(model_path=str(path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:  # unsupported ops, not a flatbuffer, ...
            raise InputError(f"LiteRT cannot load this model: {exc}", path=path) from None
        self._model = str(path)
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1:
            names = [i["name"] for i in inputs]
            raise InputError(f"expected a model with one image input, got {names}", path=path)
        self._in = inputs[0]
        self._outputs = self._interpreter.get_output_details()
        self._quantize = self._input_quantization(path, preprocessor)
        spec_dtype = "float32" if self._quantize else np.dtype(self._in["dtype"]).name
        self._spec = InputSpec(self._in["name"], tuple(int(d) for d in self._in["shape"]),
                               spec_dtype)  # fmt: skip
        self._choice = self._choose(path, preprocessor)
        self._batch = int(self._in["shape"][0])
        precision, evidence = _precision(self._interpreter.get_tensor_details())
        self._info = RunnerInfo(
            name=self.name,
            version=_version(),
            precision=precision,
            model=self._model,
            settings={
                "threads": threads if threads is not None else "runtime default",
                "batch_size": batch_size,
                "model_batch": self._batch,
                "input": {
                    "name": self._in["name"],
                    "shape": [int(d) for d in self._in["shape"]],
                    "dtype": np.dtype(self._in["dtype"]).name,
                    "quantization": list(_quantization(self._in) or ()),
                    "fed": "quantized from the pre-processed floats" if self._quantize
                    else "as pre-processed",
                },
                "outputs": {o["name"]: list(_quantization(o) or ()) for o in self._outputs},
                "preprocessor": self._choice.name,
                "preprocessor_settings": self._choice.preprocessor.settings(),
                "precision_evidence": evidence,
            },
            notes=(f"pre-processing {self._choice.name}: {self._choice.reason}",),
        )  # fmt: skip

    def _input_quantization(self, path: Path, override: str | Preprocessor | None) -> bool:
        """Whether the input takes a float tensor quantized here (see the module doc)."""
        dtype = np.dtype(self._in["dtype"])
        if dtype not in _QUANTIZED:
            return False
        if _quantization(self._in) is None:
            raise InputError(
                f"input {self._in['name']!r} is {dtype.name} without quantization parameters "
                "(scale 0): evalkit cannot tell what values it expects",
                path=path,
            )
        chosen = PREPROCESSORS.get(override) if isinstance(override, str) else override
        if dtype == np.dtype(np.uint8) and (chosen is None or chosen.dtype == "uint8"):
            return False
        if chosen is None:
            scale, zero = _quantization(self._in) or (0.0, 0)
            raise InputError(
                f"int8 input {self._in['name']!r} (scale {scale:g}, zero point {zero}): set the "
                "family's pre-processing (preprocessor: unit-nhwc for x/255, signed-nhwc for "
                "(x - 127.5) / 127.5); its floats are quantized with the input's parameters",
                path=path,
            )
        return True

    def _choose(self, path: Path, override: str | Preprocessor | None) -> PreprocessorChoice:
        chosen = PREPROCESSORS.get(override) if isinstance(override, str) else override
        height, width = self._spec.shape[1], self._spec.shape[2]
        label = override if isinstance(override, str) else "custom"
        if chosen is not None and chosen.layout == "NHWC" and isinstance(width, int):
            # A preset names a normalisation; the size is the model's.
            sized = replace(chosen, size=(int(width), int(height or 0)))
            if sized != chosen:
                label = f"{label}@{width}x{height}"
            chosen = sized
        try:
            picked = choose_preprocessor(self._spec, chosen)
        except InputError as exc:
            raise InputError(str(exc), path=path) from None
        if chosen is None:
            return picked
        return PreprocessorChoice(label, picked.preprocessor, f"given by the caller ({label})")

    @property
    def info(self) -> RunnerInfo:
        return self._info

    @property
    def preprocessing(self) -> PreprocessorChoice:
        return self._choice

    def output_specs(self) -> dict[str, Shape]:
        """Output name -> shape, in the model's output order."""
        return {o["name"]: tuple(int(d) for d in o["shape"]) for o in self._outputs}

    def _feed(self, piece: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if not self._quantize:
            return piece
        scale, zero = _quantization(self._in) or (1.0, 0)
        low, high = _QUANTIZED[np.dtype(self._in["dtype"])]
        q = np.clip(np.rint(piece.astype(np.float32) / np.float32(scale)) + zero, low, high)
        return q.astype(self._in["dtype"])

    def _read(self, detail: dict[str, Any]) -> npt.NDArray[Any]:
        value = self._interpreter.get_tensor(detail["index"])
        quantization = _quantization(detail)
        if quantization is not None and np.dtype(detail["dtype"]) in _QUANTIZED:
            scale, zero = quantization
            return ((value.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(
                np.float32
            )
        return np.array(value)

    def run(self, batch: npt.NDArray[Any]) -> RawOutputs:
        """A pre-processed batch, the model's batch at a time; outputs in batch order."""
        batch = check_batch(batch, self._choice.preprocessor, self._model)

        def infer(piece: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
            self._interpreter.set_tensor(self._in["index"], self._feed(piece))
            self._interpreter.invoke()
            return {o["name"]: self._read(o) for o in self._outputs}

        return run_in_chunks(batch, self._batch, self._batch, infer)

    def run_images(self, images: Sequence[npt.NDArray[np.uint8]]) -> RawOutputs:
        """Pre-process RGB uint8 images with the chosen pre-processor, then :meth:`run`."""
        return self.run(preprocess_images(images, self._choice.preprocessor, self._model))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return "unknown"
