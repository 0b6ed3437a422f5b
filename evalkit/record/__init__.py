"""``result.json`` as typed data: the run (:class:`RunRecord`), its variants, their
protocol results and timings; read with :func:`load_result`, written with
:func:`write_result`. In the shared core, so that the pipeline writes it and reports,
check and compare read it without depending on each other."""

from evalkit.record.files import load_result, validate, write_result
from evalkit.record.run import (
    KIND,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    DatasetSummary,
    ReferenceVerdict,
    RunRecord,
    SkippedImage,
)
from evalkit.record.variant import (
    ClassResult,
    Latency,
    ModelFile,
    PrCurves,
    ProtocolResult,
    Timings,
    VariantRecord,
)

__all__ = [
    "KIND",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "ClassResult",
    "DatasetSummary",
    "Latency",
    "ModelFile",
    "PrCurves",
    "ProtocolResult",
    "ReferenceVerdict",
    "RunRecord",
    "SkippedImage",
    "Timings",
    "VariantRecord",
    "load_result",
    "validate",
    "write_result",
]
