"""``result.json`` under its first import path; the record lives in :mod:`evalkit.record`
(the shared core, so that reports, check and compare do not depend on the pipeline)."""

from evalkit.record import (
    KIND,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    RunRecord,
    load_result,
    validate,
    write_result,
)

__all__ = [
    "KIND",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "RunRecord",
    "load_result",
    "validate",
    "write_result",
]
