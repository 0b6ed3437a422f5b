"""``result.json``: the self-describing record of one ``evalkit run`` (schema below).

Contract (scripts depend on it; bump ``SCHEMA_VERSION`` on any incompatible change)::

    {
      "schema_version": 2,                # 1 (no fingerprint) is still read
      "kind": "evalkit.run",
      "name": str, "created": ISO time, "config": {... every setting ...},
      "environment": {cpu, cores, python, packages, git, ...},
      "reference": {"model": str, "dataset": str, "comparable": bool, "why": str} | null,
      "fingerprint": {                    # what check and compare require to match
        "dataset": {"format", "split", "annotation_sha256", "ground_truth_sha256",
                    "image_list_sha256", "num_images", "num_annotations", "classes"},
        "settings": {"profile", "nms": {...}, "variants": {NAME: {"preprocessing",
                     "decoder", "batching"?}}}
      },
      "dataset": {"name", "format", "num_images", "num_annotations", "classes": [...],
                  "skipped": [{"image_id", "path", "reason"}]},
      "variants": {
        NAME: {
          "model": {"path", "bytes", "sha256", "precision", "format"},
          "runner": {...}, "decoder": {...}, "nms": {...}, "class_mapping": str,
          "detections": "detections_NAME.json",          # COCO results format
          "timings": {"decode_s", "preprocess_s", "inference_s", "postprocess_s",
                      "metrics_s", "wall_s", "images", "cached_images", "images_per_s"},
          "latency": {... evalkit.bench.latency record ...} | null,
          "protocols": {
            PROTOCOL: {"AP50": float in [0, 1], "per_class": {class: AP}, "classes": [...],
                       "num_gt", "num_detections", "tp", "fp", "stats"?: [12 floats],
                       "pr_curves": {"recall": [101 points], "mean": [101],
                                     "per_class": {class: [101]}}}
          }
        }
      }
    }
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import InputError
from evalkit.jsonio import read_json

SCHEMA_VERSION = 2
# Version 1 differs only in having no fingerprint: such a run is read, and check/compare
# treat it as comparable with nothing (see evalkit.comparable).
READABLE_VERSIONS = (1, 2)
KIND = "evalkit.run"


@dataclass(frozen=True)
class RunRecord:
    """A parsed, validated ``result.json`` (the raw mapping stays available as ``data``)."""

    data: Mapping[str, Any]
    path: Path | None = None

    @property
    def name(self) -> str:
        return str(self.data.get("name", ""))

    @property
    def variants(self) -> Mapping[str, Mapping[str, Any]]:
        variants: Mapping[str, Mapping[str, Any]] = self.data["variants"]
        return variants

    def ap50(self, variant: str, protocol: str) -> float:
        """AP50 of one variant under one protocol, as a fraction."""
        return float(self.variants[variant]["protocols"][protocol]["AP50"])

    @property
    def fingerprint(self) -> Mapping[str, Any] | None:
        """The dataset and settings fingerprint; None for a version-1 record."""
        found: Mapping[str, Any] | None = self.data.get("fingerprint")
        return found

    def protocols(self, variant: str) -> tuple[str, ...]:
        return tuple(self.variants[variant]["protocols"])

    def latency_p50_ms(self, variant: str) -> float | None:
        latency = self.variants[variant].get("latency")
        if not latency:
            return None
        return float(latency["summary"]["p50_ms"])


def _fail(problem: str, path: Path | None, record: str) -> InputError:
    return InputError(problem, path=path, record=record)


def _check_fingerprint(fingerprint: Any, path: Path | None) -> None:
    if not isinstance(fingerprint, dict):
        raise _fail("expected an object with dataset and settings", path, "fingerprint")
    for kind in ("dataset", "settings"):
        if not isinstance(fingerprint.get(kind), dict):
            raise _fail("expected an object", path, f"fingerprint.{kind}")


def validate(data: Any, path: Path | None = None) -> RunRecord:
    """Check the contract above; an InputError names the first field that breaks it."""
    if not isinstance(data, dict):
        raise _fail("expected a JSON object (an evalkit result.json)", path, "top level")
    version = data.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        readable = " or ".join(map(str, READABLE_VERSIONS))
        raise _fail(
            f"schema_version {version!r} is not supported (expected {readable}); "
            "re-run with this evalkit version or use the evalkit that wrote it",
            path,
            "schema_version",
        )
    if version >= 2:
        _check_fingerprint(data.get("fingerprint"), path)
    variants = data.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise _fail("expected a non-empty mapping of variants", path, "variants")
    for name, variant in variants.items():
        where = f"variants.{name}"
        if not isinstance(variant, dict):
            raise _fail("expected an object", path, where)
        protocols = variant.get("protocols")
        if not isinstance(protocols, dict) or not protocols:
            raise _fail("expected a non-empty mapping of protocols", path, f"{where}.protocols")
        if not isinstance(variant.get("detections"), str):
            raise _fail("expected the name of the detections file", path, f"{where}.detections")
        for protocol, scores in protocols.items():
            at = f"{where}.protocols.{protocol}"
            ap = scores.get("AP50") if isinstance(scores, dict) else None
            if not isinstance(ap, (int, float)) or not math.isfinite(ap) or not 0 <= ap <= 1:
                raise _fail(f"AP50 must be a fraction in [0, 1], got {ap!r}", path, f"{at}.AP50")
            if not isinstance(scores.get("per_class"), dict):
                raise _fail("expected class name -> AP", path, f"{at}.per_class")
    return RunRecord(data, path)


def load_result(path: str | Path) -> RunRecord:
    """Read and validate a ``result.json`` (a directory means its ``result.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "result.json"
    return validate(read_json(path), path)


def write_result(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Validate and write atomically (a reader never sees half a file)."""
    path = Path(path)
    validate(dict(data), path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


# Readers of a record (check, compare, reports) take numbers through these, so a malformed
# field is an InputError naming it rather than a KeyError or a wrong comparison.


def finite_number(value: Any, where: str, record: RunRecord) -> float:
    """A finite number from a result file (ints stay ints), or an InputError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"expected a finite number, got {value!r}", path=record.path, record=where)
    return value


def dig(data: Any, keys: Iterable[str]) -> Any:
    """``data[k1][k2]...``, or None where a level is missing or not an object."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def per_class_ap(record: RunRecord, variant: str, protocol: str) -> dict[str, float]:
    """Class name -> AP50 of one variant under one protocol, each checked."""
    at = f"variants.{variant}.protocols.{protocol}.per_class"
    scores = record.variants[variant]["protocols"][protocol]["per_class"]
    return {str(c): finite_number(ap, f"{at}.{c}", record) for c, ap in scores.items()}
