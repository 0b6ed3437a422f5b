"""Reading ONNX files, and opening them in onnxruntime, with errors that say what is wrong
with them. The one place an onnxruntime session is created (runners and latency alike)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.errors import InputError

if TYPE_CHECKING:
    import onnx


def load_graph(path: Path) -> onnx.ModelProto:
    """The model proto without external weight data (enough to read nodes and shapes)."""
    if path.is_dir():
        raise InputError("expected an ONNX model file, found a directory", path=path)
    if not path.is_file():
        raise InputError("ONNX model file not found", path=path)
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends; all mean "not ONNX"
        raise InputError(
            f"not an ONNX model: the file does not parse as ONNX protobuf ({exc})", path=path
        ) from exc
    # Protobuf parses many byte strings (an empty file, for one) into an empty message.
    if not proto.graph.node or not proto.graph.output:
        raise InputError("not an ONNX model: no graph nodes or outputs in the file", path=path)
    return proto


CPU_PROVIDER = "CPUExecutionProvider"


def cpu_session(
    path: Path, threads: int | None = None, *, sequential: bool = False, spin: bool | None = None
) -> Any:
    """An onnxruntime CPU session of ``path``; its load errors become an InputError naming
    the file. ``threads``: intra-op threads (None: the runtime's default). ``sequential``:
    one node at a time with no inter-op pool, set explicitly so that a record of these
    settings stays true whatever a version's defaults are. ``spin``: whether intra-op threads
    spin-wait between nodes (None: the runtime's default)."""
    import onnxruntime as ort  # type: ignore[import-untyped, unused-ignore]

    options = ort.SessionOptions()
    # tf2onnx exports log harmless "unused initializer" warnings on every load.
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    if sequential:
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
    if spin is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=[CPU_PROVIDER])
    except Exception as exc:  # onnxruntime's pybind errors share no base class but Exception
        raise InputError(f"onnxruntime cannot load this model: {exc}", path=path) from None
