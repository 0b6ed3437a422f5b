"""Static int8 quantization with onnxruntime, as the model zoo made its published int8 files.

reference-pipeline.md section 5: ``quant_pre_process`` (ORT basic graph optimisation on,
symbolic shape inference skipped, ONNX shape inference on), then ``quantize_static`` in QDQ
format, per-channel, QInt8 activations and weights, MinMax calibration, extra options
``WeightSymmetric=True, ActivationSymmetric=False, QuantizeBias=True``, no node excluded,
float input and output. :data:`ZOO_SETTINGS` holds exactly that.

Determinism: the same float file, calibration files and settings give a byte-identical int8
file. Checked (tests/test_quantize.py) across processes, ``PYTHONHASHSEED`` values, one or
two CPU threads, and different model and output paths. onnxruntime's temporary names (the
``uuid4`` initializers of its calibration graph, the ``ort.quant.*`` / ``pre.quant.*``
folders) live only in intermediate graphs and never reach the saved model, so no
normalisation is needed; the calibration draw is seeded (see :mod:`.calibration`).
"""

from __future__ import annotations

import difflib
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from evalkit.errors import InputError
from evalkit.hashing import file_sha256
from evalkit.quantize.calibration import CalibrationSample, ImageCalibrationReader
from evalkit.runners.base import InputSpec, choose_preprocessor
from evalkit.runners.onnx import detect_precision

if TYPE_CHECKING:
    import onnx

__all__ = [
    "METHODS",
    "QUANT_TYPES",
    "SCHEMA_VERSION",
    "ZOO_SETTINGS",
    "CalibrationMethodName",
    "ModelFileInfo",
    "QuantTypeName",
    "QuantizeResult",
    "QuantizeSettings",
    "load_onnx",
    "model_input_spec",
    "quantize_model",
    "refuse_quantized",
]

SCHEMA_VERSION = 1
CalibrationMethodName = Literal["MinMax", "Entropy", "Percentile"]
QuantTypeName = Literal["QInt8", "QUInt8"]
METHODS: tuple[CalibrationMethodName, ...] = get_args(CalibrationMethodName)
QUANT_TYPES: tuple[QuantTypeName, ...] = get_args(QuantTypeName)
# The zoo's quant_pre_process call; fixed, and recorded with every result.
PRE_PROCESS = {"skip_optimization": False, "skip_onnx_shape": False, "skip_symbolic_shape": True}
# quant_pre_process logs an optimiser failure here and carries on with the unoptimised
# graph; we turn that into an error instead of a silently different int8 file.
_PRE_PROCESS_LOGGER = "onnxruntime.quantization.shape_inference"


@dataclass(frozen=True)
class QuantizeSettings:
    """What ``quantize_static`` is asked to do; the defaults are the zoo's settings."""

    method: CalibrationMethodName = "MinMax"
    per_channel: bool = True
    activation_type: QuantTypeName = "QInt8"
    weight_type: QuantTypeName = "QInt8"
    weight_symmetric: bool = True
    activation_symmetric: bool = False
    quantize_bias: bool = True
    exclude_nodes: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"expected a calibration method in {METHODS}, got {self.method!r}")
        for name in ("activation_type", "weight_type"):
            if getattr(self, name) not in QUANT_TYPES:
                raise InputError(f"expected {name} in {QUANT_TYPES}, got {getattr(self, name)!r}")
        object.__setattr__(self, "exclude_nodes", tuple(self.exclude_nodes))
        object.__setattr__(self, "exclude_op_types", tuple(self.exclude_op_types))

    def extra_options(self) -> dict[str, Any]:
        """The ``extra_options`` passed to ``quantize_static``."""
        return {
            "WeightSymmetric": self.weight_symmetric,
            "ActivationSymmetric": self.activation_symmetric,
            "QuantizeBias": self.quantize_bias,
        }

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values, with the fixed parts of the recipe."""
        return {
            "pre_process": dict(PRE_PROCESS),
            "quant_format": "QDQ",
            "method": self.method,
            "per_channel": self.per_channel,
            "activation_type": self.activation_type,
            "weight_type": self.weight_type,
            "extra_options": self.extra_options(),
            "exclude_nodes": list(self.exclude_nodes),
            "exclude_op_types": list(self.exclude_op_types),
            "zoo_settings": self == ZOO_SETTINGS,
        }


ZOO_SETTINGS = QuantizeSettings()


@dataclass(frozen=True)
class ModelFileInfo:
    """A model file as written: path, size in bytes and sha256."""

    path: Path
    bytes: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> ModelFileInfo:
        """Size and digest of ``path``, read in chunks."""
        return cls(path=path, bytes=path.stat().st_size, sha256=file_sha256(path))

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True)
class QuantizeResult:
    """One quantization: both files, the settings, the calibration images, versions, times."""

    float_model: ModelFileInfo
    int8_model: ModelFileInfo
    settings: QuantizeSettings
    calibration: CalibrationSample
    preprocessor: dict[str, Any]
    node_counts: dict[str, int]
    onnxruntime_version: str
    durations_s: dict[str, float]
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.calibration.seed

    def to_dict(self) -> dict[str, Any]:
        """A self-describing JSON record."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "quantize",
            "float_model": self.float_model.to_dict(),
            "int8_model": self.int8_model.to_dict(),
            "settings": self.settings.to_dict(),
            "seed": self.seed,
            "calibration": self.calibration.to_dict(),
            "preprocessor": dict(self.preprocessor),
            "counts": {
                "calibration_images": len(self.calibration.files),
                "calibration_population": self.calibration.population,
                "int8_nodes": dict(sorted(self.node_counts.items())),
            },
            "sizes_bytes": {"float": self.float_model.bytes, "int8": self.int8_model.bytes},
            "onnxruntime_version": self.onnxruntime_version,
            "durations_s": {k: round(v, 3) for k, v in self.durations_s.items()},
            "environment": self.environment,
        }


def load_onnx(path: Path, role: str, *, external_data: bool = False) -> onnx.ModelProto:
    """Parse an ONNX file, or an InputError saying which model (``role``) is unusable."""
    if path.is_dir():
        raise InputError(f"expected the {role} ONNX file, found a directory", path=path)
    if not path.is_file():
        raise InputError(f"{role} ONNX file not found", path=path)
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:  # protobuf's DecodeError and friends all mean "not ONNX"
        raise InputError(
            f"expected an ONNX {role}, the file does not parse ({exc})", path=path
        ) from exc
    if not proto.graph.node or not proto.graph.output:
        raise InputError(f"expected an ONNX {role}, found no graph nodes or outputs", path=path)
    return proto


def refuse_quantized(proto: onnx.ModelProto, path: Path) -> None:
    """A float model is expected: refuse one holding QDQ or integer-operator nodes."""
    precision, evidence = detect_precision(proto)
    if precision != "float":
        raise InputError(
            f"expected a float model to quantize, but it is already quantized: {evidence}",
            path=path,
        )


def model_input_spec(proto: onnx.ModelProto, path: Path) -> InputSpec:
    """The single image input as onnxruntime reports it (dims: size, name or None)."""
    import onnx

    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise InputError(
            f"expected a model with one image input, got {len(inputs)}: {[i.name for i in inputs]}",
            path=path,
        )
    tensor = inputs[0].type.tensor_type
    dims = tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim
    )
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
    return InputSpec(name=inputs[0].name, shape=dims, dtype=dtype)


@contextmanager
def _logged_errors(name: str) -> Iterator[list[str]]:
    """Collect ERROR records of logger ``name`` while the block runs."""
    messages: list[str] = []

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = _Handler(logging.ERROR)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _pre_process(source: Path, target: Path) -> None:
    """The zoo's ``quant_pre_process`` call; an optimiser failure is an error here."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _logged_errors(_PRE_PROCESS_LOGGER) as errors:
        quant_pre_process(str(source), str(target), **PRE_PROCESS)
    if errors:
        raise InputError(
            f"onnxruntime's pre-processing failed: {errors[0]}; the int8 file would not be "
            "the zoo's recipe",
            path=source,
        )


def _nodes_to_exclude(proto: onnx.ModelProto, settings: QuantizeSettings, path: Path) -> list[str]:
    """Excluded node names, checked against the pre-processed graph; op types expanded."""
    names = [n.name for n in proto.graph.node]
    known = set(names)
    unknown = [n for n in settings.exclude_nodes if n not in known]
    if unknown:
        hints = {n: difflib.get_close_matches(n, names, n=1) for n in unknown}
        listed = ", ".join(
            f"{n!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for n, h in hints.items()
        )
        raise InputError(
            f"expected node names of the (pre-processed) graph to exclude, unknown: {listed}",
            path=path,
        )
    present = Counter(n.op_type for n in proto.graph.node)
    missing = [t for t in settings.exclude_op_types if t not in present]
    if missing:
        raise InputError(
            f"no node of op type {missing} to exclude; the graph has {sorted(present)}", path=path
        )
    excluded = list(dict.fromkeys(settings.exclude_nodes))
    for node in proto.graph.node:
        if node.op_type in settings.exclude_op_types:
            if not node.name:
                raise InputError(
                    f"a {node.op_type} node has no name, so onnxruntime cannot exclude it",
                    path=path,
                )
            if node.name not in excluded:
                excluded.append(node.name)
    return excluded


def quantize_model(
    float_path: str | Path,
    out_path: str | Path,
    calibration: CalibrationSample,
    settings: QuantizeSettings = ZOO_SETTINGS,
    *,
    progress: bool = True,
) -> QuantizeResult:
    """Quantize ``float_path`` to ``out_path`` (QDQ int8) calibrating on ``calibration``."""
    start = time.perf_counter()
    float_path, out_path = Path(float_path), Path(out_path)
    proto = load_onnx(float_path, "float model")
    refuse_quantized(proto, float_path)
    spec = model_input_spec(proto, float_path)
    del proto  # the weights are not needed: onnxruntime reads the file itself
    try:
        choice = choose_preprocessor(spec)
    except InputError as exc:
        raise InputError(str(exc), path=float_path) from exc
    if out_path.exists() and out_path.resolve() == float_path.resolve():
        raise InputError("expected an output path other than the float model's", path=out_path)
    if out_path.is_dir():
        raise InputError("expected an output file name, found a directory", path=out_path)
    if not calibration.files:
        raise InputError("empty calibration set: no images drawn", path=calibration.source)

    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # onnxruntime's own sessions inside quantization warn about unused initializers of the
    # TF-exported graphs; those are not the user's concern (errors still show).
    onnxruntime.set_default_logger_severity(3)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: a failed run leaves no half-written model.
    partial = out_path.with_name(out_path.name + ".partial")
    times: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="evalkit-quantize-") as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            t0 = time.perf_counter()
            _pre_process(float_path, prepared)
            times["pre_process"] = time.perf_counter() - t0
            excluded = _nodes_to_exclude(
                onnx.load(str(prepared), load_external_data=False), settings, float_path
            )
            reader = ImageCalibrationReader(
                calibration.files, spec.name, choice.preprocessor, progress=progress
            )
            t0 = time.perf_counter()
            quantize_static(
                str(prepared),
                str(partial),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=settings.per_channel,
                activation_type=QuantType[settings.activation_type],
                weight_type=QuantType[settings.weight_type],
                nodes_to_exclude=excluded,
                calibrate_method=CalibrationMethod[settings.method],
                extra_options=settings.extra_options(),
            )
            times["calibrate_and_quantize"] = time.perf_counter() - t0
            times["read_calibration_images"] = reader.read_s
        if reader.fed != len(calibration.files):
            raise RuntimeError(
                f"onnxruntime read {reader.fed} of {len(calibration.files)} calibration images"
            )
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)
    written = onnx.load(str(out_path), load_external_data=False)
    node_counts = dict(Counter(n.op_type for n in written.graph.node))
    times["total"] = time.perf_counter() - start
    from evalkit.provenance import environment

    return QuantizeResult(
        float_model=ModelFileInfo.of(float_path),
        int8_model=ModelFileInfo.of(out_path),
        settings=settings,
        calibration=calibration,
        preprocessor={
            "name": choice.name,
            "settings": choice.preprocessor.settings(),
            "reason": choice.reason,
        },
        node_counts=node_counts,
        onnxruntime_version=str(onnxruntime.__version__),
        durations_s=times,
        environment=environment(),
    )
