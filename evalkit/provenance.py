"""Where a result came from: host, software versions and the evalkit revision.

Every result record (latency, runs, benchmarks) embeds :func:`environment` so numbers are
never separated from the machine and code that produced them.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from evalkit._version import __version__

# Versions worth recording when installed; read from package metadata (no import cost).
PACKAGES = (
    "numpy",
    "onnx",
    "onnxruntime",
    "torch",
    "opencv-python-headless",
    "pycocotools",
    "faster-coco-eval",
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of evalkit and the packages that shape its numbers."""
    versions: dict[str, str | None] = {"evalkit": __version__}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """The host and software a measurement ran on: CPU, cores, OS, Python, packages, git."""
    uname = platform.uname()
    cpu, physical = _cpuinfo()
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        # The host name is left out on purpose: results are shared.
        "uname": {k: getattr(uname, k) for k in ("system", "release", "version", "machine")},
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "int8_dot_product": int8_dot_product(),
        "packages": package_versions(),
        "git": git_revision(),
    }


def _cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "flags":
                return set(value.split())
    return set()


def int8_dot_product(flags: set[str] | None = None, machine: str | None = None) -> str:
    """How this CPU sums int8 products in onnxruntime's x86 kernels, which changes an int8
    model's outputs (and so its AP) with the same file and inputs: ``vnni`` (VPDPBUSD, exact
    int32 sums), ``avx2-saturating`` (VPMADDUBSW: pairs of u8 x s8 products summed in int16,
    which saturate), ``x86`` (neither), or the machine name elsewhere. Measured: one int8
    file scored 0.82 st AP50 points apart on two hosts
    (benchmarks/results/real_model_coco128.md)."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return machine or "unknown"
    flags = _cpu_flags() if flags is None else flags
    if flags & {"avx512_vnni", "avx_vnni"}:
        return "vnni"
    if "avx2" in flags:
        return "avx2-saturating"
    return "x86"


def _cpuinfo() -> tuple[str, int | None]:
    """CPU model name, and distinct (package, core) pairs: onnxruntime's default threads."""
    model, package, cores = platform.processor() or platform.machine(), "", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name":
                model = value
            elif key == "physical id":
                package = value
            elif key == "core id":
                cores.add((package, value))
    return model, len(cores) or None


def git_revision() -> dict[str, Any] | None:
    """Revision and dirty flag of the evalkit checkout; None when not run from one."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    out: dict[str, Any] = {}
    # --no-optional-locks: reading the status must not rewrite the index of a live checkout.
    for key, args in (("revision", ["rev-parse", "HEAD"]), ("dirty", ["status", "--porcelain"])):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            text = subprocess.run(
                ["git", "--no-optional-locks", *args],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
            out[key] = text if key == "revision" else bool(text)
    return out
