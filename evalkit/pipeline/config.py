"""The ``evalkit run`` configuration: a YAML file, ``${ENV}`` expansion, flag overrides.

Every field is declared here once, with its default and help text (``evalkit run --help``
prints them); an unknown field is an error that suggests the nearest known one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from evalkit.datasets.classes import CLASS_PRESETS
from evalkit.datasets.dataset import DATASETS
from evalkit.errors import InputError
from evalkit.metrics.analysis import AnalysisSettings
from evalkit.metrics.protocol import DEFAULT_PROTOCOLS
from evalkit.pipeline import typed_yaml
from evalkit.pipeline.executors import EXECUTORS, ExecutorConfig
from evalkit.pipeline.typed_yaml import build, load_yaml, set_path
from evalkit.postprocess.decoders import DECODERS
from evalkit.postprocess.nms import NmsSettings


@dataclass(frozen=True)
class DatasetConfig:
    """Which images and ground truth to evaluate on."""

    format: str = field(
        default="coco",
        metadata={"help": f"one of {', '.join(DATASETS.names())} (coco_person: a COCO set's view)"},
    )
    annotations: str = field(default="", metadata={"help": "COCO instances JSON (coco formats)"})
    images: str = field(default="", metadata={"help": "image folder (coco formats)"})
    root: str = field(default="", metadata={"help": "VOC year directory, e.g. VOCdevkit/VOC2007"})
    split: str = field(default="test", metadata={"help": "VOC split (ImageSets/Main/SPLIT.txt)"})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N images"})
    skip_bad: bool = field(
        default=False,
        metadata={"help": "leave out missing/broken images (recorded) instead of failing"},
    )
    classes: list[str] | None = field(
        default=None,
        metadata={"help": "voc: the set's own class list (default: the 20 VOC classes)"},
    )
    ignore_classes: list[str] = field(
        default_factory=list,
        metadata={"help": "voc: classes whose objects are left out (counted), not errors"},
    )

    def __post_init__(self) -> None:
        # One spelling per format in records and fingerprints ('coco-person' was an alias).
        object.__setattr__(self, "format", DATASETS.canonical(self.format))


@dataclass(frozen=True)
class QuantizeConfig:
    """Make this variant's model with ``evalkit quantize`` from another variant's model."""

    source: str = field(default="float", metadata={"help": "variant whose model is quantized"})
    calib_count: int | None = field(
        default=None, metadata={"help": "calibration images (default: 1% of the set, at least 1)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the random calibration sample"})
    images: str = field(
        default="",
        metadata={"help": "calibration image folder (default: the evaluated dataset's images)"},
    )


@dataclass(frozen=True)
class VariantConfig:
    """One model to evaluate: an ONNX file (or one made by quantization) and its decoder."""

    model: str = field(default="", metadata={"help": "ONNX model file"})
    quantize: QuantizeConfig | None = field(
        default=None, metadata={"help": "build the model with evalkit quantize (zoo settings)"}
    )
    decoder: str = field(
        default="auto",
        metadata={"help": f"auto (from the outputs) or one of {', '.join(DECODERS.names())}"},
    )
    model_dir: str = field(
        default="",
        metadata={"help": "tfod-ssd: folder with anchors_ycxchw.npy and coco_labels.txt"},
    )
    class_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "model class names, background excluded (mapped to the dataset), or a "
            f"preset in the zoo's order: {', '.join(CLASS_PRESETS)}",
            "presets": CLASS_PRESETS,
        },
    )
    anchors: list[list[float]] | None = field(
        default=None,
        metadata={
            "help": "yolov2/yoloxn: anchors [w, h] in grid cells (postprocessing.yolo_anchors)"
        },
    )
    strides: list[int] | None = field(
        default=None, metadata={"help": "yoloxn: each output's network stride; yolox: levels"}
    )
    preprocessor: str | None = field(
        default=None, metadata={"help": "override the pre-processing chosen from the model"}
    )
    stedgeai_report: str = field(
        default="",
        metadata={"help": "STEdgeAI network_c_info.json of this model: on-board figures"},
    )


@dataclass(frozen=True)
class LatencyConfig:
    """Host latency pass, separate from the accuracy pass."""

    runs: int = field(default=30, metadata={"help": "timed runs per model (0 skips)"})
    warmup: int = field(default=5, metadata={"help": "untimed runs first"})


@dataclass(frozen=True)
class AnalysisConfig:
    """The analyses recorded per variant (pycocotools' matching; evalkit.metrics.analysis)."""

    enabled: bool = field(
        default=True, metadata={"help": "operating points, confusion matrix and TIDE breakdown"}
    )
    iou: float = field(default=0.5, metadata={"help": "matching IoU of the three analyses"})
    thresholds: list[float] = field(
        default_factory=lambda: [0.3, 0.5],
        metadata={"help": "score thresholds the device may use: precision/recall/F1 at each"},
    )
    confusion_score: float = field(
        default=0.5, metadata={"help": "score threshold of the confusion matrix"}
    )
    tide_background: float = field(
        default=0.1, metadata={"help": "TIDE's background IoU (its foreground is iou)"}
    )


@dataclass(frozen=True)
class ReferenceConfig:
    """The published figures this run is compared with (evalkit references)."""

    model: str = field(default="ssd_mobilenetv2_pt", metadata={"help": "reference model"})
    dataset: Literal["coco", "coco_person", "voc", "shapes"] = field(
        default="coco", metadata={"help": "coco, coco_person, voc (shapes: the demo's card)"}
    )
    context_only: bool = field(
        default=False,
        metadata={"help": "the reference is another dataset's: show it, compute no delta"},
    )


@dataclass(frozen=True)
class RunConfig:
    """Everything one ``evalkit run`` does."""

    name: str = field(default="run", metadata={"help": "run name (report titles)"})
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    variants: dict[str, VariantConfig] = field(
        default_factory=dict, metadata={"help": "variant name -> model (e.g. float, int8)"}
    )
    nms: NmsSettings = field(default_factory=NmsSettings)
    protocols: list[str] = field(
        default_factory=lambda: list(DEFAULT_PROTOCOLS),
        metadata={"help": "AP protocols (default all four)"},
    )
    profile: Literal["auto", "zoo", "plain"] = field(
        default="auto",
        metadata={
            "help": "zoo: the model zoo's evaluation chain (batches of 32 in its order); "
            "auto: zoo when a reference is named, else plain"
        },
    )
    threads: int | None = field(default=None, metadata={"help": "onnxruntime intra-op threads"})
    batch_size: int | None = field(
        default=None,
        metadata={"help": "images per inference call (default: 32 under profile zoo, else 1)"},
    )
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    reference: ReferenceConfig | None = field(
        default=None, metadata={"help": "published figures to compare with"}
    )
    allow_unmatched_classes: bool = field(
        default=False,
        metadata={"help": "let dataset classes that no model class predicts score as missed"},
    )
    output: str = field(default="runs/run", metadata={"help": "output folder"})
    quiet: bool = field(default=False, metadata={"help": "no progress bars"})


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (or none: defaults), apply ``dotted.key -> value`` overrides, check."""
    source = str(path) if path is not None else "<flags>"
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError("config file not found", path=path)
        loaded = load_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise InputError("expected a mapping at the top of the config", path=path)
        data = dict(loaded or {})
    for dotted, value in (overrides or {}).items():
        set_path(data, dotted, value)
    config: RunConfig = build(RunConfig, data, "", source)
    check_values(config, source)
    if not config.variants:
        raise InputError(
            "no variants: name at least one model under 'variants'", path=source, record="variants"
        )
    return config


def _positive(value: int | None, where: str, source: str) -> None:
    if value is not None and value < 1:
        raise InputError(f"expected a positive integer, got {value!r}", path=source, record=where)


def check_values(config: RunConfig, source: str) -> None:
    """Values the types admit but the run cannot use, refused before anything runs."""
    _known("dataset format", config.dataset.format, DATASETS.names(), source, "dataset.format")
    _positive(config.dataset.limit, "dataset.limit", source)
    _positive(config.batch_size, "batch_size", source)
    _positive(config.threads, "threads", source)
    nms = config.nms
    # Scores are probabilities here (NmsSettings itself admits TF's wider range).
    if not 0.0 <= nms.score_threshold <= 1.0:
        raise InputError(
            f"expected a score in [0, 1], got {nms.score_threshold!r}",
            path=source,
            record="nms.score_threshold",
        )
    _check_executor(config.executor, source)
    _check_analysis(config.analysis, source)
    if config.latency.runs < 0 or config.latency.warmup < 0:
        raise InputError(
            "expected counts >= 0", path=source, record="latency.runs / latency.warmup"
        )
    for name in config.variants:
        # Variant names become file names (detections_NAME.json, cache/NAME.jsonl).
        if not _SAFE_NAME.fullmatch(name):
            raise InputError(
                f"a variant name is letters, digits, '.', '_' or '-' (it names files), "
                f"got {name!r}",
                path=source,
                record=f"variants.{name}",
            )
    for name, variant in config.variants.items():
        if variant.decoder != "auto":
            decoders = ("auto", *DECODERS.names())
            _known("decoder", variant.decoder, decoders, source, f"variants.{name}.decoder")
    check_quantize_sources(config.variants, source)
    _known_protocols(config.protocols, source)


def analysis_settings(config: AnalysisConfig) -> AnalysisSettings | None:
    """The settings of the recorded analyses; None when they are switched off."""
    if not config.enabled:
        return None
    return AnalysisSettings(
        iou=config.iou,
        thresholds=tuple(config.thresholds),
        confusion_score=config.confusion_score,
        tide_background=config.tide_background,
    )


def _check_analysis(config: AnalysisConfig, source: str) -> None:
    try:
        analysis_settings(config)
    except InputError as e:
        raise InputError(e.problem, path=source, record="analysis") from None


def _check_executor(executor: ExecutorConfig, source: str) -> None:
    _known("executor", executor.kind, EXECUTORS.names(), source, "executor.kind")
    _positive(executor.actors, "executor.actors", source)
    _positive(executor.threads_per_actor, "executor.threads_per_actor", source)
    if not executor.cpus_per_actor > 0:
        raise InputError(
            f"expected a number of CPUs > 0, got {executor.cpus_per_actor!r}",
            path=source,
            record="executor.cpus_per_actor",
        )
    if executor.kind == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            from evalkit.pipeline.ray_executor import INSTALL_HINT

            raise InputError(INSTALL_HINT, path=source, record="executor.kind")


def check_quantize_sources(variants: Mapping[str, VariantConfig], source: str | None) -> None:
    """A quantize section names a variant with a model of its own (int8 is not requantized)."""
    for name, variant in variants.items():
        q = variant.quantize
        if q is None:
            continue
        if q.source not in variants:
            problem = f"variant {name!r} quantizes {q.source!r}, which is not a variant"
        elif variants[q.source].quantize is not None:
            problem = f"variant {name!r} quantizes {q.source!r}, which is itself quantized"
        else:
            continue
        raise InputError(problem, path=source, record=f"variants.{name}.quantize.source")


_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def _known(kind: str, name: str, known: Sequence[str], source: str, where: str) -> None:
    """A registered name, or an error with the near match and the known names."""
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise InputError(
        f"unknown {kind} {name!r}{hint}; known: {', '.join(known)}", path=source, record=where
    )


def _known_protocols(protocols: Sequence[str], source: str) -> None:
    from evalkit.metrics import PROTOCOLS

    known = PROTOCOLS.names()
    if not protocols:
        raise InputError(
            f"name at least one of {', '.join(known)}", path=source, record="protocols"
        )
    for p in protocols:
        _known("protocol", p, known, source, "protocols")
    if len(set(protocols)) != len(protocols):
        raise InputError(
            f"a protocol is listed twice: {list(protocols)}", path=source, record="protocols"
        )


def resolved_profile(config: RunConfig) -> Literal["zoo", "plain"]:
    """``auto`` is the zoo's chain when the run names a published reference."""
    if config.profile == "auto":
        return "zoo" if config.reference is not None else "plain"
    return config.profile


def describe_fields(cls: Any = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, help) of every field, for ``evalkit run --help``."""
    return typed_yaml.describe_fields(cls, prefix)
