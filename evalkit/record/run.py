"""The run-level types of ``result.json``: the run, its dataset summary and its reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from evalkit.errors import InputError
from evalkit.record.fields import Fields, Json, listed, put
from evalkit.record.variant import ProtocolResult, VariantRecord

# The evaluation chain a run followed (evalkit.pipeline.config: ``auto`` resolves to one).
Profile = Literal["zoo", "plain"]
PROFILES: tuple[Profile, ...] = ("zoo", "plain")

SCHEMA_VERSION = 3
# Version 1 differs only in having no fingerprint: such a run is read, and check/compare
# treat it as comparable with nothing (see evalkit.comparable). Version 2 has no per-variant
# ``analysis`` (operating points, confusion, TIDE) nor ``timings.analysis_s``: read, and the
# report says the analyses are missing.
READABLE_VERSIONS = (1, 2, 3)
KIND = "evalkit.run"


@dataclass(frozen=True)
class SkippedImage:
    """An image left out of every variant's metrics, and why."""

    image_id: Any
    path: str
    reason: str

    @classmethod
    def from_fields(cls, f: Fields) -> SkippedImage:
        return cls(f.raw("image_id"), str(f.raw("path")), str(f.raw("reason")))

    def to_dict(self) -> Json:
        return {"image_id": self.image_id, "path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class DatasetSummary:
    """The set the run scored (after skips and limits)."""

    name: str | None = None
    format: str | None = None
    num_images: int | None = None
    num_annotations: int | None = None
    classes: tuple[str, ...] = ()
    skipped: tuple[SkippedImage, ...] = ()
    ignored_objects: Json | None = None  # VOC objects left out by rule, by reason
    size_mismatches: tuple[Json, ...] | None = None  # images decoded at another size
    extra: Json = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: Fields) -> DatasetSummary:
        mismatches = f.raw("size_mismatches")
        return cls(
            name=f.text("name"),
            format=f.text("format"),
            num_images=f.number("num_images"),
            num_annotations=f.number("num_annotations"),
            classes=f.texts("classes") or (),
            skipped=f.objects("skipped", SkippedImage.from_fields) or (),
            ignored_objects=f.json("ignored_objects"),
            size_mismatches=None if mismatches is None else tuple(mismatches),
            extra=f.rest(),
        )

    def to_dict(self) -> Json:
        out: Json = {
            "name": self.name,
            "format": self.format,
            "num_images": self.num_images,
            "num_annotations": self.num_annotations,
            "classes": list(self.classes),
            "skipped": [s.to_dict() for s in self.skipped],
            "ignored_objects": self.ignored_objects,
            "size_mismatches": listed(self.size_mismatches),
        }
        return {**out, **self.extra}


@dataclass(frozen=True)
class ReferenceVerdict:
    """The model card the run is set against, and whether the run scored the card's set."""

    model: str
    dataset: str
    context_only: bool | None = None
    comparable: bool | None = None  # None: a record from before verdicts were stored
    why: str | None = None
    extra: Json = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: Fields) -> ReferenceVerdict:
        return cls(
            model=f.text("model", required=True) or "",
            dataset=f.text("dataset", required=True) or "",
            context_only=f.flag("context_only"),
            comparable=f.flag("comparable"),
            why=f.text("why"),
            extra=f.rest(),
        )

    def to_dict(self) -> Json:
        out: Json = {
            "model": self.model,
            "dataset": self.dataset,
            "context_only": self.context_only,
            "comparable": self.comparable,
            "why": self.why,
        }
        return {**out, **self.extra}


@dataclass(frozen=True)
class RunRecord:
    """A parsed, validated ``result.json``; ``path`` is where it was read from, if anywhere."""

    schema_version: int
    variants: dict[str, VariantRecord]
    fingerprint: Json | None = None  # None only in a version-1 record
    kind: str = KIND
    name: str = ""
    created: str | None = None
    config: Json | None = None  # every setting of the run, as evalkit.pipeline.config wrote it
    profile: Profile | None = None
    environment: Json | None = None  # evalkit.provenance.environment()
    executor: Json | None = None  # where the batches ran (evalkit.pipeline.executors)
    reference: ReferenceVerdict | None = None
    dataset: DatasetSummary = field(default_factory=DatasetSummary)
    extra: Json = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, data: Any, path: Path | None = None) -> RunRecord:
        """Read and check a record; an InputError names the first field that breaks it."""
        if not isinstance(data, dict):
            raise InputError(
                "expected a JSON object (an evalkit result.json)", path=path, record="top level"
            )
        f = Fields(data, "", path)
        version = f.raw("schema_version")
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            readable = " or ".join(map(str, READABLE_VERSIONS))
            raise f.error(
                "schema_version",
                f"schema_version {version!r} is not supported (expected {readable}); "
                "re-run with this evalkit version or use the evalkit that wrote it",
            )
        fingerprint = f.raw("fingerprint")
        if version >= 2:
            _check_fingerprint(fingerprint, f)
        variants = f.each("variants", VariantRecord.from_fields)
        if not variants:
            raise f.error("variants", "expected a non-empty mapping of variants")
        reference, dataset = f.child("reference"), f.child("dataset")
        return cls(
            schema_version=version,
            variants=variants,
            fingerprint=fingerprint,
            kind=f.text("kind") or KIND,
            name=f.text("name") or "",
            created=f.text("created"),
            config=f.json("config"),
            profile=f.choice("profile", PROFILES),
            environment=f.json("environment"),
            executor=f.json("executor"),
            reference=None if reference is None else ReferenceVerdict.from_fields(reference),
            dataset=DatasetSummary() if dataset is None else DatasetSummary.from_fields(dataset),
            extra=f.rest(),
            path=path,
        )

    def to_dict(self) -> Json:
        """The JSON of ``result.json``, in the writer's key order."""
        out: Json = {
            "schema_version": self.schema_version,
            "kind": self.kind,
            "name": self.name,
            "created": self.created,
            "config": self.config,
            "profile": self.profile,
            "environment": self.environment,
        }
        put(out, "executor", self.executor)  # recorded since the ray executor
        out["reference"] = None if self.reference is None else self.reference.to_dict()
        if self.schema_version >= 2:
            out["fingerprint"] = self.fingerprint
        out["dataset"] = self.dataset.to_dict()
        out["variants"] = {n: v.to_dict() for n, v in self.variants.items()}
        return {**out, **self.extra}

    # Readers' shortcuts.

    def protocol(self, variant: str, protocol: str) -> ProtocolResult | None:
        return self.variants[variant].protocols.get(protocol)

    def ap50(self, variant: str, protocol: str) -> float:
        """AP50 of one variant under one protocol, as a fraction."""
        return self.variants[variant].protocols[protocol].ap50

    def protocols(self, variant: str) -> tuple[str, ...]:
        return tuple(self.variants[variant].protocols)

    def latency_p50_ms(self, variant: str) -> float | None:
        latency = self.variants[variant].latency
        return None if latency is None else latency.ms("p50")


def _check_fingerprint(fingerprint: Any, f: Fields) -> None:
    if not isinstance(fingerprint, dict):
        raise f.error("fingerprint", "expected an object with dataset and settings")
    for kind in ("dataset", "settings"):
        if not isinstance(fingerprint.get(kind), dict):
            raise f.error(f"fingerprint.{kind}", "expected an object")
