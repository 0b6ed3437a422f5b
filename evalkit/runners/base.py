"""The runner protocol, the record a runner leaves in results, and the runner registry.

A runner (style point 7, after mlcommons' ``Backend``) loads one model in one runtime and
turns a batch of pre-processed images into :class:`RawOutputs`. It also says which
pre-processing it uses and why: the choice is read from the model's input (rank, layout,
dtype, size), never assumed. Heavy runtimes are imported only when a runner is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from evalkit.datasets.preprocess import PREPROCESSORS, Preprocessor
from evalkit.errors import InputError
from evalkit.registry import Registry
from evalkit.types import Precision, RawOutputs

__all__ = [
    "MODEL_FILES",
    "RUNNERS",
    "InputSpec",
    "ModelFileKind",
    "Precision",
    "PreprocessorChoice",
    "Runner",
    "RunnerInfo",
    "Shape",
    "check_batch",
    "check_positive",
    "choose_preprocessor",
    "concat_outputs",
    "model_file_kind",
    "open_runner",
    "preprocess_images",
    "run_in_chunks",
]

# One dimension of a tensor as a runtime reports it: a size, a symbolic name, or unknown.
Dim = int | str | None
Shape = tuple[Dim, ...]


@dataclass(frozen=True)
class RunnerInfo:
    """What ran the model: runtime name and version, detected precision and all settings."""

    name: str
    version: str
    precision: Precision
    model: str
    settings: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values for self-describing result records."""
        return {
            "name": self.name,
            "version": self.version,
            "precision": self.precision,
            "model": self.model,
            "settings": dict(self.settings),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class InputSpec:
    """A model input as the runtime declares it; ``dtype`` is a numpy name or the raw type."""

    name: str
    shape: Shape
    dtype: str


@dataclass(frozen=True)
class PreprocessorChoice:
    """The pre-processing a runner feeds its model, its registry name and the reason."""

    name: str
    preprocessor: Preprocessor
    reason: str


class Runner(Protocol):
    """One model in one runtime: batches of model inputs in, raw output tensors out."""

    @property
    def info(self) -> RunnerInfo: ...

    @property
    def preprocessing(self) -> PreprocessorChoice: ...

    def output_specs(self) -> dict[str, Shape]:
        """Output name -> shape as declared (batch dimension first), for decoder detection."""
        ...

    def run(self, batch: npt.NDArray[Any]) -> RawOutputs:
        """One pre-processed batch (batch dimension first) to the model's outputs."""
        ...

    def run_images(self, images: Sequence[npt.NDArray[np.uint8]]) -> RawOutputs:
        """RGB uint8 images (any sizes), pre-processed with :attr:`preprocessing`, then run."""
        ...


def _layout_of(shape: Shape) -> Literal["NCHW", "NHWC"] | None:
    """Channel axis from a rank-4 shape; None when both or neither axis holds 3 channels."""
    nchw, nhwc = shape[1] == 3, shape[3] == 3
    if nchw and not nhwc:
        return "NCHW"
    if nhwc and not nchw:
        return "NHWC"
    return None


def _spatial(shape: Shape, layout: str) -> tuple[Dim, Dim]:
    """(height, width) dimensions of a rank-4 shape in ``layout``."""
    return (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])


def choose_preprocessor(
    spec: InputSpec, override: str | Preprocessor | None = None
) -> PreprocessorChoice:
    """Pick (or check) the pre-processing for a model input, with the reason in words."""
    where = f"model input {spec.name!r} {spec.shape}"
    if len(spec.shape) != 4:
        raise InputError(
            f"expected a rank-4 image batch (N, 3, H, W) or (N, H, W, 3), got rank "
            f"{len(spec.shape)}",
            record=where,
        )
    layout = _layout_of(spec.shape)
    if override is not None:
        name = override if isinstance(override, str) else "custom"
        chosen = PREPROCESSORS.get(override) if isinstance(override, str) else override
        if isinstance(override, str) and chosen.layout == layout:
            # A preset names a normalisation (and resize, channel order); the size is the
            # model's own.
            height, width = _spatial(spec.shape, layout)
            if isinstance(width, int) and isinstance(height, int):
                sized = replace(chosen, size=(width, height))
                if sized != chosen:
                    name, chosen = f"{name}@{width}x{height}", sized
        _check_compatible(spec, layout, chosen, name, where)
        return PreprocessorChoice(name, chosen, f"given by the caller ({name})")
    if layout is None:
        raise InputError(
            "cannot tell the channel axis (expected exactly one of dimension 1 or 3 to be 3); "
            "pass a preprocessor explicitly",
            record=where,
        )
    height, width = _spatial(spec.shape, layout)
    if isinstance(height, int) and isinstance(width, int):
        size, size_note = (width, height), f"{width}x{height} from the model input"
    else:
        # A dynamic spatial size accepts anything; the zoo's models are all trained at 300.
        size, size_note = (300, 300), "300x300 (the model's spatial size is dynamic)"
    if spec.dtype == "uint8":
        base = "tfod-ssd" if spec.name == "normalized_input_image_tensor" else "uint8-nhwc"
        if layout == "NHWC":
            why = "uint8 NHWC input: pixels are passed through and the model normalises inside" + (
                " (input named like TF-OD SSD exports)" if base == "tfod-ssd" else ""
            )
        else:
            base, why = "uint8-nchw", "uint8 NCHW input: pixels passed through, channels first"
        chosen = Preprocessor(size=size, layout=layout, dtype="uint8")
    elif spec.dtype == "float32":
        if layout == "NHWC":
            raise InputError(
                "float32 NHWC input: evalkit has no preset for it and will not guess its "
                "normalisation; pass a preprocessor explicitly",
                record=where,
            )
        base = "st-ssd"
        why = (
            "float32 NCHW input: the zoo's host pre-processing (x - 127) / 128 is assumed; "
            "pass a preprocessor if the model was trained with another normalisation"
        )
        preset = PREPROCESSORS.get(base)
        chosen = Preprocessor(
            size=size, layout="NCHW", dtype="float32", mean=preset.mean, scale=preset.scale
        )
    else:
        raise InputError(
            f"unsupported input type {spec.dtype}; expected float32 (NCHW) or uint8",
            record=where,
        )
    name = base
    if base in PREPROCESSORS and PREPROCESSORS.get(base) != chosen:
        name = f"{base}@{size[0]}x{size[1]}"
    return PreprocessorChoice(name, chosen, f"{why}; size {size_note}")


def _check_compatible(
    spec: InputSpec, layout: str | None, chosen: Preprocessor, name: str, where: str
) -> None:
    """Refuse an explicit pre-processor whose tensor the model cannot take."""
    problems = []
    if chosen.dtype != spec.dtype:
        problems.append(f"dtype {chosen.dtype} but the model takes {spec.dtype}")
    if layout is not None and chosen.layout != layout:
        problems.append(f"layout {chosen.layout} but the model takes {layout}")
    height, width = _spatial(spec.shape, chosen.layout)
    for label, got, want in (("height", chosen.size[1], height), ("width", chosen.size[0], width)):
        if isinstance(want, int) and got != want:
            problems.append(f"{label} {got} but the model takes {want}")
    if problems:
        raise InputError(f"preprocessor {name!r} does not fit: {'; '.join(problems)}", record=where)


def check_batch(batch: object, preprocessor: Preprocessor, model: str) -> npt.NDArray[Any]:
    """Refuse a batch whose type, dtype or shape is not what ``preprocessor`` produces."""
    expected = ("N", *preprocessor.batch_shape[1:])
    if not isinstance(batch, np.ndarray):
        raise InputError(
            f"expected a numpy batch of shape {expected}, got {type(batch).__name__}",
            path=model,
        )
    if batch.ndim != 4 or batch.shape[1:] != preprocessor.batch_shape[1:]:
        raise InputError(
            f"expected a batch of shape {expected} {preprocessor.dtype}, got {batch.shape}"
            + ("; use run_images for single images" if batch.ndim == 3 else ""),
            path=model,
        )
    if batch.shape[0] == 0:
        raise InputError("expected at least one image in the batch, got 0", path=model)
    if batch.dtype != np.dtype(preprocessor.dtype):
        raise InputError(f"expected a {preprocessor.dtype} batch, got {batch.dtype}", path=model)
    return batch


def check_positive(value: object, what: str, *, allow_none: bool = False) -> None:
    """A runner option that counts something (batch size, threads): a positive integer, or
    None where the runtime's default is allowed."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"expected a positive integer, got {value!r}", record=what)


def preprocess_images(
    images: Sequence[npt.NDArray[np.uint8]], preprocessor: Preprocessor, model: str
) -> npt.NDArray[Any]:
    """RGB images to one model batch; a bad image is reported with its position."""
    if len(images) == 0:
        raise InputError("expected at least one image, got none", path=model)
    tensors = []
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray):
            raise InputError(
                f"image {i}: expected a numpy array, got {type(image).__name__}", path=model
            )
        try:
            tensors.append(preprocessor.apply(image))
        except ValueError as exc:
            raise InputError(f"image {i}: {exc}", path=model) from exc
    return np.concatenate(tensors, axis=0)


def run_in_chunks(
    batch: npt.NDArray[Any],
    chunk: int,
    fixed: int | None,
    infer: Callable[[npt.NDArray[Any]], dict[str, npt.NDArray[Any]]],
) -> RawOutputs:
    """``batch`` through ``infer`` ``chunk`` images at a time; a model with a fixed batch
    gets its last chunk padded by repeating its last image, the padding dropped again."""
    parts = []
    for start in range(0, batch.shape[0], chunk):
        piece = np.ascontiguousarray(batch[start : start + chunk])
        real = piece.shape[0]
        if fixed is not None and real < fixed:
            piece = np.concatenate([piece, np.repeat(piece[-1:], fixed - real, axis=0)])
        parts.append({name: np.asarray(v)[:real] for name, v in infer(piece).items()})
    return concat_outputs(parts)


def concat_outputs(parts: Sequence[dict[str, npt.NDArray[Any]]]) -> RawOutputs:
    """Outputs of consecutive chunks, joined along the batch axis in chunk order."""
    if len(parts) == 1:
        return RawOutputs(dict(parts[0]))
    return RawOutputs({k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]})


RunnerFactory = Callable[..., Runner]
RUNNERS: Registry[RunnerFactory] = Registry("runner")


@dataclass(frozen=True)
class ModelFileKind:
    """A model file type: the runner (a :data:`RUNNERS` name) that opens files of that type
    given their path, and the format name results record."""

    runner: str
    format: str
    # Whether evalkit's ONNX analyses apply: onnxruntime latency, graph statistics, the
    # activation-memory estimate.
    onnx_figures: bool = False


# Keyed by file suffix, lower case: a new runtime is one entry here and one in RUNNERS.
MODEL_FILES: Registry[ModelFileKind] = Registry("model file type")
MODEL_FILES.add(".onnx", ModelFileKind(runner="onnxruntime", format="onnx", onnx_figures=True))
MODEL_FILES.add(".tflite", ModelFileKind(runner="litert", format="tflite"))


def model_file_kind(path: Path) -> ModelFileKind:
    """The kind of a model file, from its suffix; unknown suffixes name the known ones."""
    suffix = path.suffix.lower()
    if suffix not in MODEL_FILES:
        known = ", ".join(sorted(MODEL_FILES.names()))
        raise InputError(
            f"no runner opens {suffix or 'files without a suffix'!r} model files; known: {known}",
            path=path,
        )
    return MODEL_FILES.get(suffix)


def open_runner(path: Path, **options: Any) -> Runner:
    """The registered runner for a model file (by its type), built with ``options``
    (batch_size, threads, preprocessor)."""
    return RUNNERS.get(model_file_kind(path).runner)(path, **options)


# Each runner class is its own factory (model, **options); listed lazily so that this module,
# which they import, does not import them, and onnxruntime or torch load only when used.
RUNNERS.add_lazy("onnxruntime", "evalkit.runners.onnx:OnnxRunner")
RUNNERS.add_lazy("torch", "evalkit.runners.torch:TorchRunner")
RUNNERS.add_lazy("litert", "evalkit.runners.litert:LiteRtRunner")
