"""Model statistics read from an ONNX graph: parameters, weight bytes, inputs/outputs, ops, MACs.

Nothing is executed: shapes come from ``onnx.shape_inference.infer_shapes`` (a dynamic
leading batch dimension of a graph input is fixed to 1 first, and ``batch_assumed`` says so).

Initializer roles, decided by the slots that consume each initializer (followed through
nodes that only compute on constants, such as the ``DequantizeLinear`` of a QDQ weight):
``weight`` (Conv/ConvTranspose/Gemm/MatMul weight slots, also their integer forms),
``bias`` (Conv/ConvTranspose/Gemm/QLinearConv bias slots), ``quantization`` (scales and zero
points of Q/DQ and of integer operators), ``config`` (operands that configure an op rather
than hold learned values: shapes, axes, pads, resize scales/sizes, Clip bounds), ``other``
(any other operand, e.g. BatchNormalization statistics or the constants of an Add) and
``unused``. A tensor used in several ways takes the first role in that order.

Parameter count: elements of ``weight``, ``bias`` and ``other`` initializers. A QDQ weight
counts once (its stored integer tensor; the float tensor it dequantizes to is computed).
Constant nodes are not counted: exporters put weights in initializers.

MAC convention: 1 MAC is one multiply-accumulate, counted for one inference at the model's
batch size; bias adds, activations, pooling and element-wise ops are not counted. Conv
(grouped and depthwise included), ConvTranspose, Gemm, MatMul and their integer forms
(ConvInteger, QLinearConv, MatMulInteger, QLinearMatMul) are counted; in QDQ graphs the
compute node is a plain Conv/MatMul between DequantizeLinear and QuantizeLinear, so it is
counted as the underlying op. Subgraphs (If/Loop/Scan bodies) are not visited.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from evalkit.errors import InputError
from evalkit.onnx_file import load_graph

if TYPE_CHECKING:
    import onnx

__all__ = ["InitializerGroup", "LayerMacs", "ModelStats", "TensorSpec", "model_stats"]

Shape = tuple[int | None, ...]
Dim = int | str | None
Role = Literal["weight", "bias", "other", "quantization", "config", "unused"]
# Priority when one initializer is used in several ways; also the report order.
ROLES: tuple[Role, ...] = ("weight", "bias", "other", "quantization", "config", "unused")
PARAM_ROLES = frozenset({"weight", "bias", "other"})


def _table(*rows: tuple[str, set[int]]) -> Mapping[str, frozenset[int]]:
    """``{op: slots}`` from rows of (space-separated op names, input slots)."""
    return {op: frozenset(slots) for ops, slots in rows for op in ops.split()}


_WEIGHT_SLOTS = _table(
    ("Conv ConvTranspose ConvInteger", {1}),
    ("QLinearConv", {3}),
    ("Gemm MatMul MatMulInteger", {0, 1}),
    ("QLinearMatMul", {0, 3}),
    ("LSTM GRU RNN", {1, 2}),
)
_BIAS_SLOTS = _table(("Conv ConvTranspose Gemm", {2}), ("QLinearConv", {8}), ("LSTM GRU RNN", {3}))
_QUANT_SLOTS = _table(
    ("QuantizeLinear DequantizeLinear", {1, 2}),
    ("QLinearConv QLinearMatMul QLinearAdd QLinearMul", {1, 2, 4, 5, 6, 7}),
    ("ConvInteger MatMulInteger", {2, 3}),
)
_CONFIG_SLOTS = _table(
    ("Reshape Expand Tile Upsample Squeeze Unsqueeze Split TopK", {1}),
    ("ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2", {1}),
    ("Slice", {1, 2, 3, 4}),
    ("Pad Resize", {1, 2, 3}),
    ("ConstantOfShape", {0}),
    ("Range", {0, 1, 2}),
    ("Clip", {1, 2}),
)
_SLOT_TABLES: tuple[tuple[Mapping[str, frozenset[int]], Role], ...] = (
    (_QUANT_SLOTS, "quantization"),
    (_CONFIG_SLOTS, "config"),
    (_WEIGHT_SLOTS, "weight"),
    (_BIAS_SLOTS, "bias"),
)
# Recurrent layers hold weights too, but their MACs depend on the sequence: not counted.
_MAC_OPS = frozenset(_WEIGHT_SLOTS) - {"LSTM", "GRU", "RNN"}
# Nodes whose output differs between runs even on constant inputs: never folded.
_RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}
)
_SUB_BYTE_BITS = {"INT4": 4, "UINT4": 4, "FLOAT4E2M1": 4, "INT2": 2, "UINT2": 2}
_DTYPE_NAMES = {"FLOAT": "float32", "DOUBLE": "float64", "FLOAT16": "float16"}


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output as declared: name, dims (int, symbolic name or None), dtype."""

    name: str
    shape: tuple[Dim, ...] | None
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class InitializerGroup:
    """Initializers of one role and dtype: how many, their elements and stored bytes."""

    role: Role
    dtype: str
    tensors: int
    elements: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class LayerMacs:
    """MACs of one compute node; ``macs`` is None when a shape it needs is unknown."""

    name: str
    op_type: str
    macs: int | None
    output_shape: Shape | None
    weight_shape: Shape | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class ModelStats:
    """What :func:`model_stats` reads from one ONNX file; see the module docstring."""

    path: str
    producer: str
    opset: int | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    op_histogram: tuple[tuple[str, int], ...]
    params: int
    initializers: tuple[InitializerGroup, ...]
    layers: tuple[LayerMacs, ...]
    macs: int
    unresolved_layers: tuple[str, ...]
    batch_assumed: bool

    @property
    def weight_bytes_by_dtype(self) -> dict[str, int]:
        """Stored bytes per dtype of everything but ``config`` and ``unused`` initializers."""
        out: dict[str, int] = {}
        for group in self.initializers:
            if group.role not in ("config", "unused"):
                out[group.dtype] = out.get(group.dtype, 0) + group.bytes
        return out

    @property
    def weight_bytes(self) -> int:
        """Total of :attr:`weight_bytes_by_dtype`."""
        return sum(self.weight_bytes_by_dtype.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["op_histogram"] = dict(self.op_histogram)
        data["weight_bytes"] = self.weight_bytes
        data["weight_bytes_by_dtype"] = self.weight_bytes_by_dtype
        return data


@dataclass(frozen=True)
class GraphTensors:
    """A graph after shape inference: shape and element type of every tensor it could type."""

    graph: onnx.GraphProto
    shapes: Mapping[str, Shape | None]
    elem_types: Mapping[str, int]
    # Initializers, Constant outputs and tensors computed only from those.
    constants: frozenset[str]
    batch_assumed: bool


def model_stats(path: str | Path) -> ModelStats:
    """Parameters, weight bytes, inputs/outputs, op histogram and MACs of an ONNX model."""
    path = Path(path)
    model = load_graph(path)
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    inputs = tuple(_spec(v) for v in graph.input if v.name not in initializer_names)
    outputs = tuple(_spec(v) for v in graph.output)
    tensors = resolve_graph(model, path)
    roles = initializer_roles(tensors.graph, tensors.constants)

    totals: dict[tuple[Role, str], list[int]] = {}
    params = 0
    for init in tensors.graph.initializer:
        role = roles[init.name]
        elements = math.prod(init.dims)
        if role in PARAM_ROLES:
            params += elements
        entry = totals.setdefault((role, dtype_name(init.data_type)), [0, 0, 0])
        entry[0] += 1
        entry[1] += elements
        entry[2] += storage_bytes(elements, init.data_type)
    groups = tuple(
        InitializerGroup(role, dtype, *totals[(role, dtype)])
        for role, dtype in sorted(totals, key=lambda key: (ROLES.index(key[0]), key[1]))
    )

    layers = tuple(
        _layer(node, index, tensors.shapes)
        for index, node in enumerate(tensors.graph.node)
        if node.op_type in _MAC_OPS
    )
    histogram = Counter(node.op_type for node in graph.node)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return ModelStats(
        path=str(path),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        opset=opset,
        inputs=inputs,
        outputs=outputs,
        op_histogram=tuple(sorted(histogram.items(), key=lambda item: (-item[1], item[0]))),
        params=params,
        initializers=groups,
        layers=layers,
        macs=sum(layer.macs for layer in layers if layer.macs is not None),
        unresolved_layers=tuple(layer.name for layer in layers if layer.macs is None),
        batch_assumed=tensors.batch_assumed,
    )


def resolve_graph(model: onnx.ModelProto, path: Path) -> GraphTensors:
    """Run shape inference and collect shapes and constants (fixes ``model``'s dynamic batch)."""
    import onnx

    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    batch_assumed = False
    for value in graph.input:
        if value.name in initializer_names or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            dims[0].Clear()
            dims[0].dim_value = 1
            batch_assumed = True
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises its own InferenceError and ValueErrors
        raise InputError(f"ONNX shape inference failed: {exc}", path=path) from exc
    graph = inferred.graph

    shapes: dict[str, Shape | None] = {}
    elem_types: dict[str, int] = {}
    for value in (*graph.input, *graph.output, *graph.value_info):
        if not value.type.HasField("tensor_type"):
            continue
        tensor_type = value.type.tensor_type
        elem_types[value.name] = tensor_type.elem_type
        shapes[value.name] = (
            tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
            if tensor_type.HasField("shape")
            else None
        )
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
        elem_types[init.name] = init.data_type

    constants = set(initializer_names)
    for node in graph.node:
        inputs = [name for name in node.input if name]
        has_subgraph = any(a.HasField("g") or len(a.graphs) for a in node.attribute)
        foldable = (
            bool(inputs)
            and all(name in constants for name in inputs)
            and not has_subgraph
            and node.op_type not in _RANDOM_OPS
        )
        if node.op_type == "Constant" or foldable:
            constants.update(name for name in node.output if name)
    return GraphTensors(graph, shapes, elem_types, frozenset(constants), batch_assumed)


def initializer_roles(graph: onnx.GraphProto, constants: frozenset[str]) -> dict[str, Role]:
    """The role of every initializer, from the node slots that consume it."""
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if name:
                consumers.setdefault(name, []).append((node, slot))
    graph_outputs = {value.name for value in graph.output}
    memo: dict[str, Role] = {}

    def role_of(name: str) -> Role:
        if name not in memo:
            found: list[Role] = ["other"] if name in graph_outputs else []
            found += [
                _slot_role(node, slot, constants, role_of) for node, slot in consumers.get(name, [])
            ]
            memo[name] = min(found, key=ROLES.index, default="unused")
        return memo[name]

    return {init.name: role_of(init.name) for init in graph.initializer}


def _slot_role(
    node: onnx.NodeProto, slot: int, constants: frozenset[str], role_of: Callable[[str], Role]
) -> Role:
    """What an input slot of ``node`` makes of a constant fed to it."""
    for table, role in _SLOT_TABLES:
        if slot in table.get(node.op_type, ()):
            return role
    outputs = [name for name in node.output if name]
    if outputs and all(name in constants for name in outputs):
        # A node folded at export time (DequantizeLinear of a QDQ weight, a Transpose of a
        # weight): the constant plays whatever role the node's result plays.
        return min((role_of(name) for name in outputs), key=ROLES.index)
    return "other"


def _layer(node: onnx.NodeProto, index: int, shapes: Mapping[str, Shape | None]) -> LayerMacs:
    """MACs of one compute node from inferred shapes."""
    op = node.op_type

    def shape(slot: int) -> Shape | None:
        return shapes.get(node.input[slot]) if slot < len(node.input) else None

    out = shapes.get(node.output[0])
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        weight = shape(3 if op == "QLinearConv" else 1)
        # Each output element sums (C_in / group) * kernel products: the weight's dims 1..
        macs = _mul(_prod(out), _prod(weight[1:] if weight else None))
    elif op == "ConvTranspose":
        weight = shape(1)
        # Each input element is scattered into (C_out / group) * kernel outputs.
        macs = _mul(_prod(shape(0)), _prod(weight[1:] if weight else None))
    elif op == "Gemm":
        weight = shape(1)
        trans_a = any(a.name == "transA" and a.i for a in node.attribute)
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        a, b = shape(0), weight
        k = (a[0] if trans_a else a[1]) if a and len(a) == 2 else None
        if k is None and b and len(b) == 2:
            k = b[1] if trans_b else b[0]
        macs = _mul(_prod(out), k)
    else:  # MatMul, MatMulInteger, QLinearMatMul (numpy matmul semantics)
        a_slot, b_slot = (0, 3) if op == "QLinearMatMul" else (0, 1)
        a, weight = shape(a_slot), shape(b_slot)
        k = a[-1] if a else None
        if k is None and weight:
            k = weight[0] if len(weight) == 1 else weight[-2]
        macs = _mul(_prod(out), k)
    return LayerMacs(node.name or f"{op}_{index}", op, macs, out, weight)


def _prod(shape: Iterable[int | None] | None) -> int | None:
    if shape is None:
        return None
    values = list(shape)
    return None if any(v is None for v in values) else math.prod(v for v in values if v is not None)


def _mul(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a * b


def dtype_name(elem_type: int) -> str:
    """numpy-style name of an ONNX element type: ``float32``, ``uint8``, ``int64``..."""
    import onnx

    name = onnx.TensorProto.DataType.Name(elem_type)
    return str(_DTYPE_NAMES.get(name, name.lower()))


def dtype_bits(elem_type: int) -> int:
    """Bits per element of an ONNX element type (4 for int4, 32 for float32)."""
    import onnx

    name = onnx.TensorProto.DataType.Name(elem_type)
    if name in _SUB_BYTE_BITS:
        return _SUB_BYTE_BITS[name]
    if name in ("UNDEFINED", "STRING"):
        return 0
    return 8 * int(onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize)


def storage_bytes(elements: int, elem_type: int) -> int:
    """Bytes to store ``elements`` values of ``elem_type`` (sub-byte types packed)."""
    return -(-elements * dtype_bits(elem_type) // 8)


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    if not value.type.HasField("tensor_type"):
        return TensorSpec(value.name, None, value.type.WhichOneof("value") or "unknown")
    tensor_type = value.type.tensor_type
    shape: tuple[Dim, ...] | None = None
    if tensor_type.HasField("shape"):
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor_type.shape.dim
        )
    return TensorSpec(value.name, shape, dtype_name(tensor_type.elem_type))
