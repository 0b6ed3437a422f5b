"""What ``diagnose`` reports: per-tensor, per-output and per-detection agreement of an int8
model with its float model, the detection matching behind the last, and the SQNR plot."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from evalkit.quantize.calibration import CalibrationSample
from evalkit.types import ImageDetections

SCHEMA_VERSION = 1
_EPS = float(np.finfo(float).eps)
F64 = npt.NDArray[np.float64]
# Plot ceiling: anything above is quantized losslessly for practical purposes.
PLOT_CAP_DB = 100.0


def sqnr_db(signal: float, noise: float) -> float:
    """onnxruntime's SQNR in dB from squared norms, with its epsilon floor."""
    return 20 * math.log10(max(math.sqrt(signal), _EPS) / max(math.sqrt(noise), _EPS))


def relative_noise(signal: float, noise: float) -> float:
    return math.sqrt(noise) / max(math.sqrt(signal), _EPS)


@dataclass(frozen=True)
class TensorError:
    """One activation: graph position, producer op, float-vs-int8 error and its own QDQ noise."""

    name: str
    position: int
    op_type: str
    sqnr_db: float
    relative_error: float
    qdq_sqnr_db: float
    elements: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OutputError:
    """A decoded output of both models compared over all images."""

    name: str
    sqnr_db: float
    relative_error: float
    max_abs_error: float
    mean_abs_error: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DetectionAgreement:
    """NMS output of the int8 model against the float model's, matched by class and IoU."""

    agreement_iou: float
    float_detections: int
    int8_detections: int
    matched: int
    mean_iou: float | None

    @property
    def precision(self) -> float | None:
        return self.matched / self.int8_detections if self.int8_detections else None

    @property
    def recall(self) -> float | None:
        return self.matched / self.float_detections if self.float_detections else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall}


@dataclass(frozen=True)
class DiagnoseResult:
    """Float-vs-int8 errors of one model pair on a set of images; tensors in graph order."""

    float_model: str
    int8_model: str
    images: CalibrationSample
    tensors: tuple[TensorError, ...]
    unmatched_tensors: tuple[str, ...]
    outputs: tuple[OutputError, ...]
    detections: DetectionAgreement
    settings: dict[str, Any]
    durations_s: dict[str, float]
    environment: dict[str, Any] = field(default_factory=dict)

    def worst(self, count: int | None = None) -> tuple[TensorError, ...]:
        """Tensors by ascending SQNR (worst first), ties in graph order."""
        ranked = sorted(self.tensors, key=lambda t: (t.sqnr_db, t.position))
        return tuple(ranked if count is None else ranked[:count])

    def to_dict(self) -> dict[str, Any]:
        """A self-describing JSON record; tensors worst first."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "diagnose",
            "float_model": self.float_model,
            "int8_model": self.int8_model,
            "images": self.images.to_dict(),
            "settings": dict(self.settings),
            "tensors": [t.to_dict() for t in self.worst()],
            "unmatched_tensors": list(self.unmatched_tensors),
            "outputs": [o.to_dict() for o in self.outputs],
            "detections": self.detections.to_dict(),
            "durations_s": {k: round(v, 3) for k, v in self.durations_s.items()},
            "environment": self.environment,
        }


def _iou_matrix(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> F64:
    """IoU of every corner box in ``a`` with every one in ``b`` (normalised, no +1)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros(inter.shape, np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def match_detections(
    reference: ImageDetections, candidate: ImageDetections, agreement_iou: float = 0.5
) -> list[float]:
    """IoUs of the matched pairs: each candidate, in order, takes the best free reference."""
    if len(reference) == 0 or len(candidate) == 0:
        return []
    ious = _iou_matrix(np.asarray(candidate.boxes_xyxy_norm), np.asarray(reference.boxes_xyxy_norm))
    same = np.asarray(candidate.class_index)[:, None] == np.asarray(reference.class_index)[None, :]
    ious = np.where(same, ious, -1.0)
    taken = np.zeros(len(reference), bool)
    matched: list[float] = []
    for row in ious:
        free = np.where(taken, -1.0, row)
        best = int(np.argmax(free))  # first on ties
        if free[best] >= agreement_iou:
            taken[best] = True
            matched.append(float(free[best]))
    return matched


def plot_sqnr(result: DiagnoseResult, path: str | Path, *, highlight: int = 5) -> Path:
    """PNG of SQNR per activation in graph order; the ``highlight`` worst numbered in red."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = result.tensors
    y = np.array([t.sqnr_db for t in tensors])
    # A lossless tensor (the zoo's (x - 127) / 128 input quantizes exactly) sits at the
    # epsilon floor, ~300 dB, and would flatten everything else: draw it at the cap.
    capped = y > PLOT_CAP_DB
    shown = np.minimum(y, PLOT_CAP_DB)
    worst = result.worst(highlight)
    index = {t.name: i for i, t in enumerate(tensors)}
    legend = "\n".join(
        f"{rank}: {t.name} ({t.op_type}, {t.sqnr_db:.1f} dB)" for rank, t in enumerate(worst, 1)
    )
    label = {"textcoords": "offset points", "ha": "center", "fontsize": 8, "color": "tab:red"}
    fig, ax = plt.subplots(figsize=(max(9.0, len(tensors) * 0.06), 5.0), dpi=120)
    try:
        ax.plot(np.arange(len(y)), shown, "-o", color="tab:blue", markersize=3, linewidth=1)
        if capped.any():
            lossless = f">= {PLOT_CAP_DB:.0f} dB (lossless at float32 precision)"
            ax.plot(np.flatnonzero(capped), shown[capped], "^", color="tab:green", label=lossless)
            ax.legend(loc="lower left", fontsize=8)
        for rank, t in enumerate(worst, 1):
            i = index[t.name]
            ax.plot(i, shown[i], "o", color="tab:red", markersize=7)
            ax.annotate(str(rank), (i, shown[i]), xytext=(0, -14), **label)  # type: ignore[arg-type]
        ax.set_xlabel("activation, in int8 graph order")
        ax.set_ylabel("SQNR float vs int8 (dB)")
        ax.set_title(
            f"{Path(result.int8_model).name} vs {Path(result.float_model).name}: "
            f"SQNR per activation, {len(result.images.files)} images"
        )
        ax.grid(True, alpha=0.3)
        fig.text(0.01, 0.01, legend, fontsize=7, color="tab:red", va="bottom", family="monospace")
        fig.tight_layout(rect=(0, 0.03 + 0.03 * len(worst), 1, 1))
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
