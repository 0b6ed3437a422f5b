"""One variant's part of ``result.json``: its model file, timings and protocol results.

Each type reads itself from the record (``from_fields``) and writes itself back
(``to_dict``) in the writer's key order, so a record evalkit wrote reads back to the same
JSON. Every field is written, null when unknown, except those only some protocols have
(``stats``, ``stat_names``, ``AP_50_95``). Parts that are records of their own (runner,
decoder, latency, memory, ...) stay JSON objects here and are read by their own types where
a reader needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evalkit.errors import InputError
from evalkit.record.fields import Fields, Json, put
from evalkit.types import PRECISIONS, Precision

# pycocotools' 12 summary numbers, in its order (evalkit.metrics.coco writes them).
NUM_COCO_STATS = 12


@dataclass(frozen=True)
class ClassResult:
    """One class under one protocol; ``ap`` is None for a class without ground truth."""

    name: str
    category_id: Any = None
    ap: float | None = None
    num_gt: int | None = None
    num_detections: int | None = None
    tp: int | None = None
    fp: int | None = None
    ap_50_95: float | None = None
    extra: Json = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: Fields) -> ClassResult:
        return cls(
            name=str(f.raw("name")),
            category_id=f.raw("category_id"),
            ap=f.number("AP"),
            num_gt=f.number("num_gt"),
            num_detections=f.number("num_detections"),
            tp=f.number("tp"),
            fp=f.number("fp"),
            ap_50_95=f.number("AP_50_95"),
            extra=f.rest(),
        )

    def to_dict(self) -> Json:
        out: Json = {
            "name": self.name,
            "category_id": self.category_id,
            "AP": self.ap,
            "num_gt": self.num_gt,
            "num_detections": self.num_detections,
            "tp": self.tp,
            "fp": self.fp,
        }
        put(out, "AP_50_95", self.ap_50_95)  # COCO protocol only
        return {**out, **self.extra}


@dataclass(frozen=True)
class PrCurves:
    """Precision on the 101 COCO recall points: the class mean and each class's curve."""

    recall: tuple[float, ...]
    mean: tuple[float, ...]
    per_class: dict[str, tuple[float, ...]]

    @classmethod
    def from_fields(cls, f: Fields) -> PrCurves:
        recall = f.numbers("recall") or ()
        per_class = f.child("per_class")
        curves = {}
        if per_class is not None:
            curves = {str(c): _curve(per_class, str(c), len(recall)) for c in per_class.data}
        return cls(recall, _curve(f, "mean", len(recall)), curves)

    def to_dict(self) -> Json:
        return {
            "recall": list(self.recall),
            "mean": list(self.mean),
            "per_class": {c: list(v) for c, v in self.per_class.items()},
        }


def _curve(f: Fields, key: str, points: int) -> tuple[float, ...]:
    values = f.raw(key)
    if isinstance(values, list) and len(values) != points:
        raise f.error(
            key,
            f"expected {points} precision values (one per recall point), got {len(values)} values",
        )
    return f.numbers(key) or ()


@dataclass(frozen=True)
class ProtocolResult:
    """AP50 and its breakdown for one variant under one protocol (st, coco, voc07, voc12)."""

    ap50: float
    per_class: dict[str, float]
    protocol: str | None = None
    iou: float | None = None
    classes: tuple[ClassResult, ...] | None = None
    num_images: int | None = None
    num_gt: int | None = None
    num_detections: int | None = None
    tp: int | None = None
    fp: int | None = None
    settings: Json | None = None
    stats: tuple[float, ...] | None = None  # pycocotools' 12, -1 where an area has no GT
    stat_names: tuple[str, ...] | None = None
    pr_curves: PrCurves | None = None
    extra: Json = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: Fields) -> ProtocolResult:
        ap = f.raw("AP50")
        if isinstance(ap, bool) or not isinstance(ap, (int, float)) or not 0 <= ap <= 1:
            raise f.error("AP50", f"AP50 must be a fraction in [0, 1], got {ap!r}")
        scores = f.child("per_class")
        if scores is None:
            raise f.error("per_class", "expected class name -> AP")
        per_class = {str(c): scores.number(str(c), required=True) for c in scores.data}
        curves = f.child("pr_curves")
        return cls(
            ap50=ap,
            per_class=per_class,
            protocol=f.text("protocol"),
            iou=f.number("iou"),
            classes=f.objects("classes", ClassResult.from_fields),
            num_images=f.number("num_images"),
            num_gt=f.number("num_gt"),
            num_detections=f.number("num_detections"),
            tp=f.number("tp"),
            fp=f.number("fp"),
            settings=f.json("settings"),
            stats=_stats(f),
            stat_names=f.texts("stat_names"),
            pr_curves=None if curves is None else PrCurves.from_fields(curves),
            extra=f.rest(),
        )

    def to_dict(self) -> Json:
        out: Json = {
            "protocol": self.protocol,
            "iou": self.iou,
            "AP50": self.ap50,
            "per_class": dict(self.per_class),
            "classes": None if self.classes is None else [c.to_dict() for c in self.classes],
            "num_images": self.num_images,
            "num_gt": self.num_gt,
            "num_detections": self.num_detections,
            "tp": self.tp,
            "fp": self.fp,
            "settings": self.settings,
        }
        # COCO protocol only
        put(out, "stats", None if self.stats is None else list(self.stats))
        put(out, "stat_names", None if self.stat_names is None else list(self.stat_names))
        out["pr_curves"] = None if self.pr_curves is None else self.pr_curves.to_dict()
        return {**out, **self.extra}

    def num_gt_by_class(self) -> dict[str, int | None]:
        return {c.name: c.num_gt for c in self.classes or ()}


def _stats(f: Fields) -> tuple[float, ...] | None:
    value = f.raw("stats")
    if value is not None and (not isinstance(value, list) or len(value) != NUM_COCO_STATS):
        raise f.error("stats", f"expected {NUM_COCO_STATS} numbers, got {value!r}")
    return f.numbers("stats")


@dataclass(frozen=True)
class Timings:
    """Seconds per stage of one variant's pass over the dataset, and its throughput."""

    decode_s: float | None = None
    preprocess_s: float | None = None
    inference_s: float | None = None
    postprocess_s: float | None = None
    wall_s: float | None = None
    images: int | None = None
    cached_images: int | None = None
    changed_images: int | None = None
    images_per_s: float | None = None
    metrics_s: float | None = None
    analysis_s: float | None = None
    extra: Json = field(default_factory=dict)

    KEYS = (
        "decode_s", "preprocess_s", "inference_s", "postprocess_s", "wall_s", "images",
        "cached_images", "changed_images", "images_per_s", "metrics_s", "analysis_s",
    )  # fmt: skip

    @classmethod
    def from_fields(cls, f: Fields) -> Timings:
        values = {key: f.number(key) for key in cls.KEYS}
        return cls(**values, extra=f.rest())

    def to_dict(self) -> Json:
        out = {key: getattr(self, key) for key in self.KEYS if key != "analysis_s"}
        put(out, "analysis_s", self.analysis_s)  # schema 3 on, when analysed
        return {**out, **self.extra}


@dataclass(frozen=True)
class ModelFile:
    """The model a variant ran: where the record says it lives, its size and hash."""

    path: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    precision: Precision | None = None
    format: str | None = None
    extra: Json = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: Fields) -> ModelFile:
        return cls(
            path=f.text("path"),
            bytes=f.number("bytes"),
            sha256=f.text("sha256"),
            precision=f.choice("precision", PRECISIONS),
            format=f.text("format"),
            extra=f.rest(),
        )

    def to_dict(self) -> Json:
        keys = ("path", "bytes", "sha256", "precision", "format")
        return {**{key: getattr(self, key) for key in keys}, **self.extra}


@dataclass(frozen=True)
class Latency:
    """The host latency pass of a variant: an ``evalkit.bench.latency`` record, kept whole,
    with the figures readers compare checked when the run record is read."""

    data: Json

    @classmethod
    def from_fields(cls, f: Fields) -> Latency:
        summary = f.child("summary")
        if summary is None:
            raise InputError("missing field 'summary'", path=f.path, record=f.where)
        for key in summary.data:
            value = summary.number(key)
            if key.endswith("_ms") and value is not None and value <= 0:
                raise summary.error(key, f"expected a positive time, got {value!r}")
        f.numbers("raw_ms")
        f.json("settings")
        return cls(f.data)

    def ms(self, statistic: str) -> float | None:
        """``p50``, ``p90``, ``mean``, ... in milliseconds; None if the record lacks it."""
        value: float | None = self.data["summary"].get(f"{statistic}_ms")
        return value

    @property
    def images_per_s(self) -> float | None:
        value: float | None = self.data["summary"].get("images_per_s")
        return value

    @property
    def raw_ms(self) -> tuple[float, ...]:
        return tuple(self.data.get("raw_ms") or ())

    @property
    def threads(self) -> Any:
        return (self.data.get("settings") or {}).get("intra_op_threads")

    def to_dict(self) -> Json:
        return self.data


# What a report reads of an analysis; a record missing one is refused, naming it.
_ANALYSIS_PARTS = {
    "operating_points": ("thresholds", "overall", "overall_curve"),
    "confusion": ("labels", "matrix", "score_threshold"),
    "tide": ("ap", "delta_ap", "counts"),
}


def _analysis(f: Fields) -> Json | None:
    data = f.json("analysis")
    if data is None:
        return None
    for part, keys in _ANALYSIS_PARTS.items():
        value = data.get(part)
        if not isinstance(value, dict):
            raise InputError(
                f"expected an object, got {value!r}", path=f.path, record=f.at(f"analysis.{part}")
            )
        for key in keys:
            if value.get(key) is None:
                raise InputError("missing", path=f.path, record=f.at(f"analysis.{part}.{key}"))
    return data


@dataclass(frozen=True)
class VariantRecord:
    """Everything one variant of a run produced, and how."""

    detections: str  # the COCO results file beside result.json
    protocols: dict[str, ProtocolResult]
    model: ModelFile | None = None
    calibration: Json | None = None  # evalkit.quantize's provenance; None unless quantized
    runner: Json | None = None
    preprocessing: Json | None = None
    decoder: Json | None = None
    nms: Json | None = None
    batching: Json | None = None
    class_mapping: str | None = None
    timings: Timings | None = None
    latency: Latency | None = None
    model_stats: Json | None = None  # evalkit.bench.model_stats, without the layer list
    memory: Json | None = None  # evalkit.bench.memory, without the per-node curve
    onboard: Json | None = None  # evalkit.bench.stedgeai figures; None without a report
    duplicate_detections: int | None = None
    # evalkit.metrics.analysis (operating points, confusion, TIDE); schema 3 on, else None.
    analysis: Json | None = None
    extra: Json = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: Fields) -> VariantRecord:
        protocols = f.each("protocols", ProtocolResult.from_fields)
        if not protocols:
            raise f.error("protocols", "expected a non-empty mapping of protocols")
        detections = f.raw("detections")
        if not isinstance(detections, str):
            raise f.error("detections", "expected the name of the detections file")
        model, timings, latency = f.child("model"), f.child("timings"), f.child("latency")
        return cls(
            detections=detections,
            protocols=protocols,
            model=None if model is None else ModelFile.from_fields(model),
            calibration=f.json("calibration"),
            runner=f.json("runner"),
            preprocessing=f.json("preprocessing"),
            decoder=f.json("decoder"),
            nms=f.json("nms"),
            batching=f.json("batching"),
            class_mapping=f.text("class_mapping"),
            timings=None if timings is None else Timings.from_fields(timings),
            latency=None if latency is None or not latency.data else Latency.from_fields(latency),
            model_stats=f.json("model_stats"),
            memory=f.json("memory"),
            onboard=f.json("onboard"),
            duplicate_detections=f.number("duplicate_detections"),
            analysis=_analysis(f),
            extra=f.rest(),
        )

    def to_dict(self) -> Json:
        out: Json = {
            "model": None if self.model is None else self.model.to_dict(),
            "calibration": self.calibration,
            "runner": self.runner,
            "preprocessing": self.preprocessing,
            "decoder": self.decoder,
            "nms": self.nms,
            "batching": self.batching,
            "class_mapping": self.class_mapping,
            "timings": None if self.timings is None else self.timings.to_dict(),
            "latency": None if self.latency is None else self.latency.to_dict(),
            "model_stats": self.model_stats,
            "memory": self.memory,
            "onboard": self.onboard,
            "detections": self.detections,
            "duplicate_detections": self.duplicate_detections,
            "protocols": {p: r.to_dict() for p, r in self.protocols.items()},
        }
        put(out, "analysis", self.analysis)  # schema 3 on
        return {**out, **self.extra}

    @property
    def decoder_name(self) -> str | None:
        name = (self.decoder or {}).get("name")
        return None if name is None else str(name)

    @property
    def precision(self) -> Precision | None:
        return None if self.model is None else self.model.precision
