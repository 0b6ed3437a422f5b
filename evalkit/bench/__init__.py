"""Benchmarks: latency, model statistics, activation-memory estimates, STEdgeAI reports.

Submodules are imported on their own (``evalkit.bench.latency``, ``evalkit.bench.stedgeai``);
the graph statistics are re-exported here. onnx is imported when a function runs.
"""

from evalkit.bench.memory import ActivationTensor, MemoryEstimate, activation_memory
from evalkit.bench.model_stats import (
    InitializerGroup,
    LayerMacs,
    ModelStats,
    TensorSpec,
    model_stats,
)

__all__ = [
    "ActivationTensor",
    "InitializerGroup",
    "LayerMacs",
    "MemoryEstimate",
    "ModelStats",
    "TensorSpec",
    "activation_memory",
    "model_stats",
]
