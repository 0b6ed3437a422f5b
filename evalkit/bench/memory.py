"""Activation-memory estimate from an ONNX graph: the largest tensor and the peak of live ones.

A first-order figure to set beside a deployment tool's report (the STM32N6 card's external
RAM of ssd_mobilenetv2_pt, 2109.38 KiB, is its largest int8 activation, 150x150x96 bytes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evalkit.bench.model_stats import Shape, dtype_bits, dtype_name, resolve_graph
from evalkit.errors import InputError
from evalkit.onnx_file import load_graph

__all__ = ["ActivationTensor", "MemoryEstimate", "activation_memory"]


@dataclass(frozen=True)
class ActivationTensor:
    """One activation buffer: tensor name, shape, element type, element count, bits each.

    ``aliases`` lists the other graph tensors folded into it (the float sides of Q/DQ).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    elements: int
    bits: int
    aliases: tuple[str, ...] = ()

    def nbytes(self, bytes_per_element: int | None) -> int:
        """Bytes at ``bytes_per_element`` per element, or at its own dtype when None."""
        if bytes_per_element is None:
            return -(-self.elements * self.bits // 8)  # sub-byte types packed
        return self.elements * bytes_per_element

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class MemoryEstimate:
    """What :func:`activation_memory` reads from one ONNX file (bytes, not KiB).

    ``largest``, ``largest_bytes``, ``peak_bytes`` and ``live_bytes`` (one value per node of
    ``node_names``, for a plot) are in the unit asked for (``bytes_per_element``; None: each
    tensor at its own dtype). The ``*_int8_bytes`` / ``*_float32_bytes`` fields count every
    activation at 1 and 4 bytes per element, whatever the unit asked for.
    """

    path: str
    bytes_per_element: int | None
    largest: ActivationTensor
    largest_bytes: int
    peak_bytes: int
    peak_node: str
    node_names: tuple[str, ...]
    live_bytes: tuple[int, ...]
    largest_int8_bytes: int
    largest_float32_bytes: int
    peak_int8_bytes: int
    peak_float32_bytes: int
    activations: int
    qdq_aliases: int
    unknown_shapes: tuple[str, ...]
    batch_assumed: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def activation_memory(path: str | Path, *, bytes_per_element: int | None = None) -> MemoryEstimate:
    """Largest activation and peak live activation bytes of an ONNX model's node order.

    Method. Activations are the graph inputs (not initializers) and node outputs that do
    not derive only from constants; initializers, Constant outputs and what is computed
    from them alone (a QDQ weight's DequantizeLinear) are weights. The schedule is the
    graph's node order. A tensor is live from the node that produces it (graph inputs:
    from the first node) to its last consumer (graph outputs: to the last node; an unused
    output: its producer only). Live bytes at a node are the sum over the tensors live
    there, its inputs and outputs both; the peak is the maximum over nodes.

    QDQ graphs. On an integer target a Q/DQ pair is not a computation: the op before a
    QuantizeLinear writes the quantized tensor directly and the op after a DequantizeLinear
    reads it. So a DequantizeLinear output is folded into its quantized input, and a
    QuantizeLinear input into its quantized output when the QuantizeLinear is its only
    consumer (a float tensor that float ops also read stays separate). The folded tensor
    is one buffer named after its quantized member, live over the union of its members'
    spans, counted once at the quantized dtype when ``bytes_per_element`` is None.

    Limits: no in-place reuse (an Add or a Reshape holds input and output at once), no
    operator fusion (Conv then Clip hold two buffers), no tiling, no NPU or memory-pool
    scheduling, no alignment or padding, no scratch buffers; other schedules than the node
    order are not searched; subgraphs are not visited. Tensors whose shape inference left
    a dimension unknown are listed in ``unknown_shapes`` and left out.
    """
    if bytes_per_element is not None and (
        not isinstance(bytes_per_element, int)
        or isinstance(bytes_per_element, bool)
        or bytes_per_element < 1
    ):
        raise InputError(
            f"expected a positive integer or None, got {bytes_per_element!r}",
            record="bytes_per_element",
        )
    path = Path(path)
    tensors = resolve_graph(load_graph(path), path)
    graph = tensors.graph
    nodes = list(graph.node)
    n = len(nodes)
    node_names = tuple(node.name or f"{node.op_type}_{i}" for i, node in enumerate(nodes))

    initializer_names = {init.name for init in graph.initializer}
    activations = [v.name for v in graph.input if v.name not in initializer_names]
    producer: dict[str, int] = dict.fromkeys(activations, 0)
    last_use: dict[str, int] = {}
    consumers: dict[str, set[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            if name and name not in tensors.constants:
                if name not in producer:
                    raise InputError(
                        f"node {node_names[index]!r} reads {name!r} before any node writes it; "
                        "expected nodes in topological order",
                        path=path,
                    )
                last_use[name] = index
                consumers.setdefault(name, set()).add(index)
        for name in node.output:
            if name and name not in tensors.constants:
                producer[name] = index
                activations.append(name)
    for value in graph.output:
        if value.name in producer:
            last_use[value.name] = n - 1
    graph_outputs = {value.name for value in graph.output}

    # Q/DQ folding (see the docstring): union-find over tensor names.
    parent = {name: name for name in activations}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    qdq_aliases = 0
    for index, node in enumerate(nodes):
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or not node.output:
            continue
        source, result = node.input[0], node.output[0]
        if source not in parent or result not in parent:
            continue
        if node.op_type == "QuantizeLinear" and (
            consumers.get(source) != {index} or source in graph_outputs
        ):
            continue
        parent[find(result)] = find(source)
        qdq_aliases += 1

    members: dict[str, list[str]] = {}
    for name in activations:
        members.setdefault(find(name), []).append(name)
    buffers: list[tuple[ActivationTensor, int, int]] = []
    unknown: list[str] = []
    for names in members.values():
        buffer = _buffer(names, tensors.shapes, tensors.elem_types)
        if buffer is None:
            unknown.extend(names)
            continue
        start = min(producer[name] for name in names)
        end = max(max(last_use.get(name, producer[name]), producer[name]) for name in names)
        buffers.append((buffer, start, end))
    if not buffers:
        raise InputError("no activation tensor with a known shape in the graph", path=path)

    live = _live_curve(((b.nbytes(bytes_per_element), s, e) for b, s, e in buffers), n)
    live_elements = _live_curve(((b.elements, s, e) for b, s, e in buffers), n)
    largest = max(buffers, key=lambda item: item[0].nbytes(bytes_per_element))[0]
    largest_elements = max(b.elements for b, _, _ in buffers)
    peak_index = max(range(n), key=live.__getitem__)
    return MemoryEstimate(
        path=str(path),
        bytes_per_element=bytes_per_element,
        largest=largest,
        largest_bytes=largest.nbytes(bytes_per_element),
        peak_bytes=live[peak_index],
        peak_node=node_names[peak_index],
        node_names=node_names,
        live_bytes=tuple(live),
        largest_int8_bytes=largest_elements,
        largest_float32_bytes=4 * largest_elements,
        peak_int8_bytes=max(live_elements),
        peak_float32_bytes=4 * max(live_elements),
        activations=len(buffers),
        qdq_aliases=qdq_aliases,
        unknown_shapes=tuple(unknown),
        batch_assumed=tensors.batch_assumed,
    )


def _buffer(
    names: list[str], shapes: Mapping[str, Shape | None], elem_types: Mapping[str, int]
) -> ActivationTensor | None:
    """One buffer from folded tensors: named after the quantized member, else the first."""
    known = {name: shape for name in names if (shape := _known(shapes.get(name))) is not None}
    if not known:
        return None
    dtypes = {name: dtype_name(elem_types.get(name, 0)) for name in names}
    name = next((m for m in names if dtypes[m].startswith(("int", "uint"))), names[0])
    shape = known[name] if name in known else next(iter(known.values()))
    return ActivationTensor(
        name=name,
        shape=shape,
        dtype=dtypes[name],
        elements=math.prod(shape),
        bits=dtype_bits(elem_types.get(name, 0)),
        aliases=tuple(m for m in names if m != name),
    )


def _known(shape: Shape | None) -> tuple[int, ...] | None:
    """The shape when every dimension is known, else None."""
    if shape is None or any(dim is None for dim in shape):
        return None
    return tuple(dim for dim in shape if dim is not None)


def _live_curve(spans: Iterable[tuple[int, int, int]], n: int) -> list[int]:
    """Sum of sizes live at each step; a span ``(size, start, end)`` covers start..end."""
    delta = [0] * (n + 1)
    for size, start, end in spans:
        delta[start] += size
        delta[end + 1] -= size
    curve, running = [], 0
    for step in range(n):
        running += delta[step]
        curve.append(running)
    return curve
