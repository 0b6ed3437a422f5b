"""A matrix: models x datasets, each cell one ``evalkit run`` of a model's variants (its
precisions: float, int8, ...) on one dataset. YAML::

    name: nightly
    output: runs/matrix            # cell MODEL on DATASET writes output/MODEL/DATASET/
    executor: {kind: ray}          # cells as Ray tasks (default: local, one after another)
    run: {protocols: [st, coco], latency: {runs: 0}}   # any run field, for every cell
    datasets:
      coco128: {format: coco, annotations: ..., images: ...}
      voc: {format: voc, root: .../VOC2007, split: test}
    models:
      ssd_mobilenetv2_pt:
        variants: {float: {model: float.onnx}, int8: {quantize: {source: float}}}
        reference: {model: ssd_mobilenetv2_pt}   # the card's figures, per dataset
        resources: {board: 1}      # Ray resources the cell's task holds (a board: one at
                                   # a time)

Every cell's configuration is built and checked when the matrix is loaded, before any cell
runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast, get_args

from evalkit.errors import InputError
from evalkit.pipeline.config import (
    DatasetConfig,
    ReferenceConfig,
    RunConfig,
    VariantConfig,
    check_values,
)
from evalkit.pipeline.executors import EXECUTORS, ExecutorConfig
from evalkit.pipeline.typed_yaml import build, load_yaml, set_path

# Fields of ``run:`` that the matrix itself sets for each cell.
CELL_FIELDS = ("name", "dataset", "variants", "reference", "output", "executor", "quiet")
CardDataset = Literal["coco", "coco_person", "voc"]
CARD_DATASETS = get_args(CardDataset)
_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ModelEntry:
    """One model of the matrix: its variants (precisions) and what its cells need."""

    variants: dict[str, VariantConfig] = field(
        default_factory=dict, metadata={"help": "variant name -> model (float, int8, ...)"}
    )
    reference: ReferenceConfig | None = field(
        default=None,
        metadata={"help": "the card: model and context_only (dataset: the cell's, by name)"},
    )
    resources: dict[str, float] = field(
        default_factory=dict, metadata={"help": "ray: custom resources a cell of it holds"}
    )


@dataclass(frozen=True)
class MatrixConfig:
    """Everything one ``evalkit matrix`` does."""

    name: str = field(default="matrix", metadata={"help": "matrix name (report titles)"})
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    models: dict[str, ModelEntry] = field(default_factory=dict)
    run: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "run fields applied to every cell"}
    )
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    output: str = field(default="runs/matrix", metadata={"help": "output folder"})
    quiet: bool = field(default=False, metadata={"help": "no progress bars"})


@dataclass(frozen=True)
class Cell:
    """One model on one dataset, and the run that scores it."""

    model: str
    dataset: str
    config: RunConfig
    resources: dict[str, float]

    @property
    def key(self) -> str:
        return f"{self.model}/{self.dataset}"


def load_matrix(path: str | Path, overrides: dict[str, Any] | None = None) -> MatrixConfig:
    """Read and check a matrix YAML (every cell's run configuration included); ``overrides``
    are ``dotted.key -> value``."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise InputError("matrix file not found", path=path)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise InputError("expected a mapping at the top of the matrix file", path=path)
    for dotted, value in (overrides or {}).items():
        set_path(data, dotted, value)
    matrix: MatrixConfig = build(MatrixConfig, data, "", source)
    cells(matrix, source)  # builds and checks every cell now
    return matrix


def _name(kind: str, name: str, source: str) -> None:
    if not _SAFE.fullmatch(name):
        raise InputError(
            f"a {kind} name is letters, digits, '.', '_' or '-' (it names folders), got {name!r}",
            path=source,
            record=f"{kind}s.{name}",
        )


def cells(matrix: MatrixConfig, source: str = "<matrix>") -> list[Cell]:
    """Every (model, dataset) cell with its checked run configuration, models first."""
    if not matrix.models or not matrix.datasets:
        raise InputError("a matrix names at least one model and one dataset", path=source)
    if matrix.executor.kind not in EXECUTORS:
        raise InputError(f"unknown executor {matrix.executor.kind!r}", path=source)
    shared = {k: v for k, v in matrix.run.items() if k in CELL_FIELDS}
    if shared:
        raise InputError(
            f"the matrix sets {', '.join(shared)} for each cell; remove it from run:",
            path=source,
            record="run",
        )
    base: RunConfig = build(RunConfig, matrix.run, "run", source)
    out: list[Cell] = []
    for model, entry in matrix.models.items():
        _name("model", model, source)
        if not entry.variants:
            raise InputError("no variants", path=source, record=f"models.{model}.variants")
        for dataset, ds in matrix.datasets.items():
            _name("dataset", dataset, source)
            reference = None
            if entry.reference is not None:
                # The card's dataset keys are the run's dataset formats (coco, voc, ...).
                if ds.format not in CARD_DATASETS:
                    raise InputError(
                        f"a model card has no figures for {ds.format!r} sets",
                        path=source,
                        record=f"models.{model}.reference",
                    )
                reference = replace(entry.reference, dataset=cast(CardDataset, ds.format))
            config = replace(
                base,
                name=f"{model} on {dataset}",
                dataset=ds,
                variants=dict(entry.variants),
                reference=reference,
                output=str(Path(matrix.output) / model / dataset),
                quiet=matrix.quiet,
            )
            check_values(config, f"{source}: cell {model}/{dataset}")
            out.append(Cell(model, dataset, config, dict(entry.resources)))
    return out
