"""evalkit: reproduce, compare and regression-check edge object detectors.

``evalkit.run(config)`` evaluates a run configuration and writes its folder (result.json,
detections, report); ``evalkit.evaluate(gt, dets, protocol=...)`` scores detections. Both
load on first use, so ``import evalkit`` stays light.
"""

from __future__ import annotations

from typing import Any

from evalkit._version import __version__

__all__ = ["__version__", "evaluate", "run"]

_LAZY = {"run": "evalkit.api", "evaluate": "evalkit.metrics"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'evalkit' has no attribute {name!r}")
