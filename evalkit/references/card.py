"""The records of a model card (evalkit/references/__init__.py reads them from YAML)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

from evalkit.registry import Registry

SCHEMA_VERSION = 1
ORIGIN = "published (model card)"

# shapes: the synthetic set of evalkit's bundled demo model (evalkit/demo_model).
# widerface: WIDER FACE, the set of the zoo's face detector (no loader in evalkit: its figures
# are listed, a run on it is not possible).
DatasetKey = Literal["coco", "coco_person", "voc", "widerface", "shapes"]
Precision = Literal["float", "int8"]
DATASET_KEYS: tuple[DatasetKey, ...] = get_args(DatasetKey)
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

# Plain published decimals only: no sign, no exponent, so the text is the figure.
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Source:
    """Where the figures come from: the zoo repository, the model's folder, its card."""

    repository: str
    path: str
    card: str


@dataclass(frozen=True)
class EvaluationSettings:
    """The settings the published AP rows were computed under."""

    eval_iou: Decimal
    nms_thresh: Decimal
    score_thresh: Decimal
    max_detections: int
    input_shape_hwc: tuple[int, int, int] | None


@dataclass(frozen=True)
class N6Target:
    """The board, precision and STEdgeAI configuration behind the N6 figures."""

    board: str
    precision: str
    configuration: str


@dataclass(frozen=True)
class DatasetInfo:
    """The evaluation set a row was computed on; ``images`` is None where not published."""

    name: str
    split: str
    classes: int
    images: int | None
    format: str | None = None  # the run's dataset format when it is not the key (shapes: coco)


@dataclass(frozen=True)
class N6Figures:
    """STM32N6 NPU memory (KiB) and latency per STEdgeAI version; None/absent = unpublished."""

    internal_ram_kib: Decimal | None
    external_ram_kib: Decimal | None
    weights_flash_kib: Decimal | None
    memory_stedgeai_version: str | None
    latency_ms: Mapping[str, Decimal]
    inferences_per_s: Mapping[str, Decimal]


@dataclass(frozen=True)
class ModelFile:
    """A published model file: path under the model's zoo folder, size, sha256."""

    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class DatasetReference:
    """One model's published figures on one dataset."""

    model: str
    key: DatasetKey
    dataset: DatasetInfo
    protocol: str
    ap50_float_percent: Decimal | None
    ap50_int8_percent: Decimal | None
    n6: N6Figures | None
    files: Mapping[Precision, ModelFile]
    # Which row of a multi-resolution card: input side in pixels, size tag, and the IoU the
    # row was measured at when it is not the card's (None: the card's).
    resolution: int | None = None
    variant: str | None = None
    eval_iou: Decimal | None = None

    @property
    def label(self) -> str:
        """``coco_person@192`` (and ``/d033_w025``) for a row of a multi-resolution card."""
        text = self.key if self.resolution is None else f"{self.key}@{self.resolution}"
        return text if self.variant is None else f"{text}/{self.variant}"

    def ap50(self, precision: Precision) -> float | None:
        """Published AP50 as a fraction (31.75 -> 0.3175), to compare with measured AP."""
        percent = self.ap50_float_percent if precision == "float" else self.ap50_int8_percent
        return None if percent is None else float(percent / 100)

    @property
    def ap50_float(self) -> float | None:
        """Published float AP50 as a fraction."""
        return self.ap50("float")

    @property
    def ap50_int8(self) -> float | None:
        """Published int8 AP50 as a fraction."""
        return self.ap50("int8")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: percents and fractions as numbers, files by precision."""
        fractions = {"ap50_float": self.ap50_float, "ap50_int8": self.ap50_int8}
        return {"origin": ORIGIN, **_plain(self), **fractions}


@dataclass(frozen=True)
class Reference:
    """One model's card: source, evaluation settings, N6 target and figures per dataset."""

    model: str
    origin: str
    source: Source
    evaluation: EvaluationSettings
    n6_target: N6Target | None
    datasets: Mapping[DatasetKey, DatasetReference]  # each dataset's headline row
    path: Path
    source_commit: str | None = None  # the zoo revision the figures were read at
    # Every row per dataset (the headline first); one row where a card has one resolution.
    rows: Mapping[DatasetKey, tuple[DatasetReference, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def dataset(self, key: str) -> DatasetReference:
        """The figures on one dataset (its headline row); ``key@RES`` or ``key@RES/TAG``
        picks a row of a multi-resolution card; an unknown key lists the known ones."""
        known: Registry[DatasetReference] = Registry(f"dataset for {self.model}")
        for name, entry in self.datasets.items():
            known.add(name, entry)
        for entries in self.rows.values():
            for entry in entries:
                if entry.resolution is not None and entry.label not in known:
                    known.add(entry.label, entry)
        return known.get(key)

    def all_rows(self) -> tuple[DatasetReference, ...]:
        """Every row of every dataset, in file order."""
        return tuple(r for k in self.datasets for r in self.rows.get(k, (self.datasets[k],)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: decimals as numbers, every dataset with its fractions."""
        datasets = {k: d.to_dict() for k, d in self.datasets.items()}
        return {**_plain(self), "datasets": datasets}


def _plain(value: Any) -> Any:
    """Records, mappings and decimals as JSON-ready values (Decimal -> float)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    return value
