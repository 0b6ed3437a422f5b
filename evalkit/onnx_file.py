"""Reading ONNX files with errors that say what is wrong with them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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
