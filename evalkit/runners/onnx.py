"""onnxruntime runner: CPU provider, intra-op threads, batching, inputs read from the model.

onnxruntime and onnx are imported when a runner is built, not when this module is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from evalkit.datasets.preprocess import Preprocessor
from evalkit.errors import InputError
from evalkit.onnx_file import CPU_PROVIDER, cpu_session, load_graph
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

if TYPE_CHECKING:
    import onnx

__all__ = ["OnnxRunner", "detect_precision"]

_ORT_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}
# QDQ format (what quantize_static writes, and tf2onnx for QAT graphs).
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# QOperator format and dynamic quantization: integer kernels instead of Q/DQ pairs.
_INTEGER_OPS = frozenset(
    {
        "QLinearConv",
        "QLinearMatMul",
        "QLinearAdd",
        "QLinearMul",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeLinear",
    }
)


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _nodes(sub)


def detect_precision(model: onnx.ModelProto) -> tuple[Precision, str]:
    """``int8`` when the graph holds quantization nodes, else ``float``; with the evidence."""
    counts: dict[str, int] = {}
    nodes = [*_nodes(model.graph), *(n for f in model.functions for n in f.node)]
    for node in nodes:
        if node.op_type in _QDQ_OPS or node.op_type in _INTEGER_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    if not counts:
        return "float", "no quantization nodes in the graph"
    listed = ", ".join(f"{count} {op}" for op, count in sorted(counts.items()))
    form = "QDQ" if set(counts) <= _QDQ_OPS else "integer operators"
    return "int8", f"{listed} ({form})"


class OnnxRunner:
    """An ONNX model on onnxruntime's CPU provider; see :class:`evalkit.runners.base.Runner`.

    ``batch_size`` images go to the session per call when the model's batch dimension is
    dynamic; a model with a fixed batch ``k`` gets exactly ``k`` per call (the last chunk
    padded by repeating its last image, the padding dropped from the outputs).
    ``threads`` sets onnxruntime's intra-op thread count (None: the runtime's default).
    ``preprocessor`` (a preset name or a :class:`Preprocessor`) overrides the choice made
    from the model's input, and is checked against it.
    """

    name = "onnxruntime"

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
        self._model = str(path)
        proto = load_graph(path)
        precision, precision_reason = detect_precision(proto)
        self._session = cpu_session(path, threads)
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise InputError(
                f"expected a model with one image input, got {len(inputs)}: "
                f"{[i.name for i in inputs]}",
                path=path,
            )
        raw = inputs[0]
        self._input = InputSpec(
            name=str(raw.name), shape=tuple(raw.shape), dtype=_ORT_TYPES.get(raw.type, raw.type)
        )
        try:
            self._choice = choose_preprocessor(self._input, preprocessor)
        except InputError as exc:
            raise InputError(str(exc), path=path) from exc
        self._output_names = [str(o.name) for o in self._session.get_outputs()]
        model_batch = self._input.shape[0]
        self._fixed_batch = model_batch if isinstance(model_batch, int) else None
        self._chunk = self._fixed_batch or batch_size
        notes = [f"pre-processing {self._choice.name}: {self._choice.reason}"]
        if self._fixed_batch is not None and self._fixed_batch != batch_size:
            how = (
                "images are run one by one"
                if self._fixed_batch == 1
                else f"images go {self._fixed_batch} per call, the last call padded"
            )
            notes.append(
                f"the model's batch dimension is fixed at {self._fixed_batch}: {how} "
                f"although batch_size={batch_size} was asked"
            )
        import onnxruntime as ort  # type: ignore[import-untyped, unused-ignore]

        default_opset = next(
            (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None
        )
        self._info = RunnerInfo(
            name=self.name,
            version=str(ort.__version__),
            precision=precision,
            model=self._model,
            settings={
                "provider": CPU_PROVIDER,
                "providers_used": list(self._session.get_providers()),
                "intra_op_num_threads": threads if threads is not None else "runtime default",
                "graph_optimization": "all (onnxruntime default)",
                "batch_size": batch_size,
                "run_batch_size": self._chunk,
                "model_batch": model_batch if self._fixed_batch else f"dynamic ({model_batch})",
                "input": {
                    "name": self._input.name,
                    "shape": list(self._input.shape),
                    "dtype": self._input.dtype,
                },
                "outputs": self._output_names,
                "preprocessor": self._choice.name,
                "preprocessor_settings": self._choice.preprocessor.settings(),
                "precision_evidence": precision_reason,
                "opset": default_opset,
                "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            },
            notes=tuple(notes),
        )

    @property
    def info(self) -> RunnerInfo:
        return self._info

    @property
    def preprocessing(self) -> PreprocessorChoice:
        return self._choice

    @property
    def input_spec(self) -> InputSpec:
        return self._input

    def output_specs(self) -> dict[str, Shape]:
        """Output name -> declared shape, as onnxruntime reports it."""
        return {str(o.name): tuple(o.shape) for o in self._session.get_outputs()}

    def run(self, batch: npt.NDArray[Any]) -> RawOutputs:
        """Run a pre-processed batch in chunks the model accepts; outputs in batch order."""
        batch = check_batch(batch, self._choice.preprocessor, self._model)

        def infer(piece: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
            values = self._session.run(self._output_names, {self._input.name: piece})
            return dict(zip(self._output_names, values, strict=True))

        return run_in_chunks(batch, self._chunk, self._fixed_batch, infer)

    def run_images(self, images: Sequence[npt.NDArray[np.uint8]]) -> RawOutputs:
        """Pre-process RGB uint8 images with the chosen pre-processor, then :meth:`run`."""
        return self.run(preprocess_images(images, self._choice.preprocessor, self._model))
