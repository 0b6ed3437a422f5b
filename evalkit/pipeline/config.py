"""The ``evalkit run`` configuration: a YAML file, ``${ENV}`` expansion, flag overrides.

Every field is declared here once, with its default and help text (``evalkit run --help``
prints them); an unknown field is an error that suggests the nearest known one.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from evalkit.datasets.dataset import DATASETS
from evalkit.errors import InputError
from evalkit.metrics.protocol import DEFAULT_PROTOCOLS
from evalkit.postprocess.decoders import DECODERS
from evalkit.postprocess.nms import NmsSettings

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
        metadata={"help": "model class names, background excluded (mapped to the dataset)"},
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
class ReferenceConfig:
    """The published figures this run is compared with (evalkit references)."""

    model: str = field(default="ssd_mobilenetv2_pt", metadata={"help": "reference model"})
    dataset: Literal["coco", "coco_person", "voc"] = field(
        default="coco", metadata={"help": "coco, coco_person or voc"}
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
    reference: ReferenceConfig | None = field(
        default=None, metadata={"help": "published figures to compare with"}
    )
    allow_unmatched_classes: bool = field(
        default=False,
        metadata={"help": "let dataset classes that no model class predicts score as missed"},
    )
    output: str = field(default="runs/run", metadata={"help": "output folder"})
    quiet: bool = field(default=False, metadata={"help": "no progress bars"})


def expand_env(value: str, where: str, source: str) -> str:
    """Replace ``${NAME}`` with the environment variable; unset ones are errors."""

    def swap(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise InputError(
                f"environment variable ${{{name}}} is not set", path=source, record=where
            )
        return os.environ[name]

    return _ENV.sub(swap, value)


def _unknown(key: str, known: Sequence[str], where: str, source: str) -> InputError:
    # difflib misses abbreviations ('iou' for 'iou_threshold'); a prefix is a good hint too.
    close = difflib.get_close_matches(key, known, n=1) or [k for k in known if k.startswith(key)]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return InputError(
        f"unknown field {key!r}{hint}; known: {', '.join(known)}", path=source, record=where
    )


def _convert(kind: Any, value: Any, where: str, source: str) -> Any:
    origin = get_origin(kind)
    args = get_args(kind)
    if value is None and (kind is type(None) or type(None) in args):
        return None
    if origin is Literal:
        if value not in args:
            raise InputError(
                f"expected one of {list(args)}, got {value!r}", path=source, record=where
            )
        return value
    if args and type(None) in args:  # Optional[X]
        inner = next(a for a in args if a is not type(None))
        return _convert(inner, value, where, source)
    if is_dataclass(kind):
        return _build(kind, value, where, source)
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"expected a mapping, got {value!r}", path=source, record=where)
        return {str(k): _convert(args[1], v, f"{where}.{k}", source) for k, v in value.items()}
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise InputError(f"expected a list, got {value!r}", path=source, record=where)
        return [_convert(args[0], v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise InputError(f"expected true or false, got {value!r}", path=source, record=where)
        return value
    if kind is int or kind is float:
        # No coercion: "0.5" (a string), true (a bool) or 2.5 for a count are mistakes.
        integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"expected a number, got {value!r}", path=source, record=where)
        if kind is int and not integral:
            raise InputError(f"expected a whole number, got {value!r}", path=source, record=where)
        return kind(value)
    if kind is str:
        if not isinstance(value, (str, int, float)):
            raise InputError(f"expected text, got {value!r}", path=source, record=where)
        return expand_env(str(value), where, source)
    raise TypeError(f"unsupported config type {kind!r} at {where}")


def _build(cls: Any, data: Any, where: str, source: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InputError(f"expected a mapping, got {data!r}", path=source, record=where or "top")
    hints = get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise _unknown(str(key), known, where or "top level", source)
        values[key] = _convert(hints[key], value, f"{where}.{key}" if where else key, source)
    try:
        return cls(**values)
    except ValueError as exc:  # a settings type's own check (NmsSettings)
        raise InputError(str(exc), path=source, record=where or "top level") from None


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = yaml.safe_load(value) if isinstance(value, str) else value


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (or none: defaults), apply ``dotted.key -> value`` overrides, check."""
    source = str(path) if path is not None else "<flags>"
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError("config file not found", path=path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise InputError(f"malformed YAML: {exc}", path=path) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise InputError("expected a mapping at the top of the config", path=path)
        data = dict(loaded or {})
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted, value)
    config: RunConfig = _build(RunConfig, data, "", source)
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
    rows: list[tuple[str, str, str]] = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        name = f"{prefix}{f.name}"
        kind = hints[f.name]
        inner = [a for a in get_args(kind) if is_dataclass(a)]
        target = kind if is_dataclass(kind) else (inner[0] if inner else None)
        if get_origin(kind) is dict and is_dataclass(get_args(kind)[1]):
            rows.append((name, "{}", str(f.metadata.get("help", ""))))
            rows.extend(describe_fields(get_args(kind)[1], f"{name}.NAME."))
        elif target is not None:
            rows.extend(describe_fields(target, f"{name}."))
        else:
            if f.default is not MISSING:
                default = f.default
            elif f.default_factory is not MISSING:
                default = f.default_factory()
            else:
                default = None
            rows.append((name, repr(default), str(f.metadata.get("help", ""))))
    return rows
