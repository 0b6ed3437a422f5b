"""Run the evalkit command as ``pip install evalkit`` (no extras) would have it: the run
extra's packages cannot be imported. ``python tests/light_install.py ARGS...``."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence

# The run extra (pyproject.toml), by import name.
EXTRA = {"cv2", "onnx", "onnxruntime", "torch", "pandas", "matplotlib", "ai_edge_litert"}


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name.split(".")[0] in EXTRA:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, _NotInstalled())
    from evalkit.cli import main

    code = main(sys.argv[1:])
    loaded = sorted({m.split(".")[0] for m in sys.modules} & EXTRA)
    assert not loaded, f"imported without the extra: {loaded}"
    sys.exit(code)
