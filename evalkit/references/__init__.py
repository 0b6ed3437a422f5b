"""The STM32 model zoo's published figures (model cards) as data files, and their loader.

One YAML file per model, ``evalkit/references/<model>.yaml``, shipped as package data::

    schema: 1
    model: ssd_mobilenetv2_pt            # the file name without .yaml
    origin: ...                          # optional: who states the figures (default: the card)
    source: {repository, path, card}     # the zoo repository, the model's folder, its card
    evaluation: {eval_iou, nms_thresh, score_thresh, max_detections, input_shape_hwc}
    n6_target: {board, precision, configuration}   # what the N6 figures ran on, or null
    datasets:                            # keys: coco, coco_person, voc, widerface, shapes
      coco:
        dataset: {name, split, classes, images}    # images null where not published
                                         # (+ format: the run's dataset format, default the key)
        ap50: {protocol: st, float: "31.75", int8: "31.29"}   # percent, as published
        n6:                              # or null
          internal_ram_kib, external_ram_kib, weights_flash_kib, memory_stedgeai_version
          latency_ms: {"3.0.0": "158.49", "4.0.0": "157.17"}   # per STEdgeAI version
          inferences_per_s: {"3.0.0": "6.31"}                   # per version, or null
        files: {float: {path, bytes, sha256}, int8: ...}       # paths under source.path

A card that publishes several input resolutions (or model sizes) per dataset lists them as
``rows`` instead of one ``ap50`` / ``n6`` / ``files``::

      coco_person:
        dataset: {...}
        rows:                            # the first is the dataset's headline row
          - resolution: 192              # model input side in pixels
            variant: d033_w025           # the card's size tag, or null
            eval_iou: "0.5"              # where it is not the card's evaluation.eval_iou
            ap50: {...}
            n6: {...}
            files: {...}

Decimals are quoted and parsed to ``Decimal``, so a figure keeps its published digits
("2237.00" displays as 2237.00); a YAML float is refused, it would have lost them. A figure
the source does not give is null, never estimated. AP50 is also offered as a fraction
(``DatasetReference.ap50_float == 0.3175``) to compare with measured results.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from evalkit.errors import InputError
from evalkit.metrics import PROTOCOLS
from evalkit.references.card import (  # re-exported: the records live in card.py
    _SHA256 as _SHA256,
)
from evalkit.references.card import (
    DATASET_KEYS as DATASET_KEYS,
)
from evalkit.references.card import (
    ORIGIN as ORIGIN,
)
from evalkit.references.card import (
    PRECISIONS as PRECISIONS,
)
from evalkit.references.card import (
    SCHEMA_VERSION as SCHEMA_VERSION,
)
from evalkit.references.card import (
    DatasetInfo as DatasetInfo,
)
from evalkit.references.card import (
    DatasetKey as DatasetKey,
)
from evalkit.references.card import (
    DatasetReference as DatasetReference,
)
from evalkit.references.card import (
    EvaluationSettings as EvaluationSettings,
)
from evalkit.references.card import (
    ModelFile as ModelFile,
)
from evalkit.references.card import (
    N6Figures as N6Figures,
)
from evalkit.references.card import (
    N6Target as N6Target,
)
from evalkit.references.card import (
    Precision as Precision,
)
from evalkit.references.card import (
    Reference as Reference,
)
from evalkit.references.card import (
    Source as Source,
)
from evalkit.references.card import (
    _plain as _plain,
)
from evalkit.references.reading import Reader, read_yaml
from evalkit.registry import Registry


def read_reference_file(path: str | Path) -> Reference:
    """Parse and validate one data file; errors name the file and the field."""
    path = Path(path)
    r = Reader(path)
    top_keys = (
        "schema", "model", "origin", "source", "source_commit", "evaluation", "n6_target",
        "datasets",
    )  # fmt: skip
    top = r.obj(read_yaml(path), "", top_keys)
    if top.get("schema") != SCHEMA_VERSION:
        raise r.fail("schema", f"expected {SCHEMA_VERSION}, got {top.get('schema')!r}")
    model = r.get(top, "model", "text")
    if model != path.stem:
        raise r.fail("model", f"expected the file name {path.stem!r}, got {model!r}")
    origin = ORIGIN if top.get("origin") is None else r.get(top, "origin", "text")
    s = r.obj(top.get("source"), "source", ("repository", "path", "card"))
    source = Source(*(r.get(s, f"source.{k}", "text") for k in ("repository", "path", "card")))
    e = r.obj(
        top.get("evaluation"), "evaluation", tuple(f.name for f in fields(EvaluationSettings))
    )
    shape = e.get("input_shape_hwc")
    if shape is not None and (
        not isinstance(shape, list)
        or len(shape) != 3
        or any(type(v) is not int or v <= 0 for v in shape)
    ):
        raise r.fail("evaluation.input_shape_hwc", f"expected [H, W, C] or null, got {shape!r}")
    evaluation = EvaluationSettings(
        **{
            k: r.get(e, f"evaluation.{k}", "decimal")
            for k in ("eval_iou", "nms_thresh", "score_thresh")
        },
        max_detections=r.get(e, "evaluation.max_detections", "int"),
        input_shape_hwc=None if shape is None else (shape[0], shape[1], shape[2]),
    )
    n6_target = None
    if top.get("n6_target") is not None:
        names = tuple(f.name for f in fields(N6Target))
        t = r.obj(top["n6_target"], "n6_target", names)
        n6_target = N6Target(*(r.get(t, f"n6_target.{k}", "text") for k in names))
    datasets = r.obj(top.get("datasets"), "datasets", DATASET_KEYS)
    if not datasets:
        raise r.fail("datasets", "expected at least one dataset")
    rows = {k: _dataset_rows(r, model, k, datasets[k]) for k in DATASET_KEYS if k in datasets}
    commit = top.get("source_commit")
    if commit is not None and not (
        isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{40}", commit)
    ):
        raise r.fail("source_commit", f"expected a 40-digit git revision, got {commit!r}")
    return Reference(
        model,
        origin,
        source,
        evaluation,
        n6_target,
        MappingProxyType({k: v[0] for k, v in rows.items()}),
        path,
        source_commit=commit,
        rows=MappingProxyType(rows),
    )


def _dataset_rows(
    r: Reader, model: str, key: DatasetKey, value: Any
) -> tuple[DatasetReference, ...]:
    """One entry under ``datasets``: a single row, or its ``rows``."""
    w = f"datasets.{key}"
    d = r.obj(value, w, ("dataset", "ap50", "n6", "files", "rows"))
    if d.get("rows") is None:
        return (_dataset(r, model, key, {k: v for k, v in d.items() if k != "rows"}, w),)
    if any(d.get(k) is not None for k in ("ap50", "n6", "files")):
        raise r.fail(w, "give either rows or ap50 / n6 / files, not both")
    rows = d["rows"]
    if not isinstance(rows, list) or not rows:
        raise r.fail(f"{w}.rows", "expected a non-empty list of rows")
    out = []
    for i, row in enumerate(rows):
        where = f"{w}.rows[{i}]"
        entry = r.obj(row, where, ("resolution", "variant", "eval_iou", "ap50", "n6", "files"))
        parsed = _dataset(r, model, key, {"dataset": d.get("dataset"), **entry}, where, w)
        resolution = r.get(entry, f"{where}.resolution", "int")
        if resolution <= 0:
            raise r.fail(f"{where}.resolution", f"expected a positive size, got {resolution}")
        out.append(
            replace(
                parsed,
                resolution=resolution,
                variant=r.get(entry, f"{where}.variant", "text", optional=True),
                eval_iou=r.get(entry, f"{where}.eval_iou", "decimal", optional=True),
            )
        )
    labels = [o.label for o in out]
    if len(set(labels)) != len(labels):
        raise r.fail(f"{w}.rows", f"two rows for the same resolution and variant: {labels}")
    return tuple(out)


def _dataset(
    r: Reader, model: str, key: DatasetKey, value: Any, w: str, dw: str | None = None
) -> DatasetReference:
    """One row: the dataset (at ``dw``, default ``w``) and the figures at ``w``."""
    d = {k: v for k, v in value.items() if k in ("dataset", "ap50", "n6", "files")}
    dw = dw or w
    info = r.obj(d.get("dataset"), f"{dw}.dataset", tuple(f.name for f in fields(DatasetInfo)))
    dataset = DatasetInfo(
        r.get(info, f"{dw}.dataset.name", "text"),
        r.get(info, f"{dw}.dataset.split", "text"),
        r.get(info, f"{dw}.dataset.classes", "int"),
        r.get(info, f"{dw}.dataset.images", "int", optional=True),
        r.get(info, f"{dw}.dataset.format", "text", optional=True),
    )
    ap = r.obj(d.get("ap50"), f"{w}.ap50", ("protocol", *PRECISIONS))
    protocol = r.get(ap, f"{w}.ap50.protocol", "text")
    if protocol not in PROTOCOLS:
        known = ", ".join(sorted(PROTOCOLS.names()))
        raise r.fail(f"{w}.ap50.protocol", f"unknown protocol {protocol!r}; known: {known}")
    n6 = None
    if d.get("n6") is not None:
        n = r.obj(d["n6"], f"{w}.n6", tuple(f.name for f in fields(N6Figures)))
        memory = ("internal_ram_kib", "external_ram_kib", "weights_flash_kib")
        n6 = N6Figures(
            **{k: r.get(n, f"{w}.n6.{k}", "decimal", optional=True) for k in memory},
            memory_stedgeai_version=r.get(
                n, f"{w}.n6.memory_stedgeai_version", "version", optional=True
            ),
            latency_ms=r.versions(n, f"{w}.n6.latency_ms"),
            inferences_per_s=r.versions(n, f"{w}.n6.inferences_per_s"),
        )
    files: dict[Precision, ModelFile] = {}
    f = {} if d.get("files") is None else r.obj(d["files"], f"{w}.files", PRECISIONS)
    for precision in (p for p in PRECISIONS if f.get(p) is not None):
        where = f"{w}.files.{precision}"
        entry = r.obj(f[precision], where, ("path", "bytes", "sha256"))
        sha256 = r.get(entry, f"{where}.sha256", "text")
        if not _SHA256.match(sha256):
            raise r.fail(f"{where}.sha256", f"expected 64 lowercase hex digits, got {sha256!r}")
        size = r.get(entry, f"{where}.bytes", "int")
        files[precision] = ModelFile(r.get(entry, f"{where}.path", "text"), size, sha256)
    return DatasetReference(
        model=model,
        key=key,
        dataset=dataset,
        protocol=protocol,
        ap50_float_percent=r.get(ap, f"{w}.ap50.float", "decimal", optional=True),
        ap50_int8_percent=r.get(ap, f"{w}.ap50.int8", "decimal", optional=True),
        n6=n6,
        files=MappingProxyType(files),
    )


# A folder of cards of one's own models, read beside the shipped ones.
REFERENCES_ENV = "EVALKIT_REFERENCES"


def load_references(directory: str | Path | None = None) -> Registry[Reference]:
    """Every ``*.yaml`` in ``directory``; by default the files shipped in this package, and
    those of the folder ``$EVALKIT_REFERENCES`` names (a model in both is an error)."""
    if directory is not None:
        return _load_directory(Path(directory))
    extra = os.environ.get(REFERENCES_ENV)
    if not extra:
        return _shipped()
    merged: Registry[Reference] = Registry("reference model")
    for registry in (_shipped(), _load_directory(Path(extra))):
        for name in registry.names():
            if name in merged:
                raise InputError(f"reference {name!r} is shipped with evalkit already", path=extra)
            merged.add(name, registry.get(name))
    return merged


@functools.lru_cache(maxsize=1)
def _shipped() -> Registry[Reference]:
    """The zoo's cards, and the card of evalkit's bundled demo model (kept beside it)."""
    package = Path(__file__).resolve().parent.parent
    paths = [*(package / "references").glob("*.yaml"), *(package / "demo_model").glob("*.yaml")]
    registry: Registry[Reference] = Registry("reference model")
    for path in sorted(paths, key=lambda p: p.name):
        reference = read_reference_file(path)
        registry.add(reference.model, reference)
    return registry


def _load_directory(directory: Path) -> Registry[Reference]:
    if not directory.is_dir():
        raise InputError("expected a folder of reference YAML files", path=directory)
    registry: Registry[Reference] = Registry("reference model")
    for path in sorted(directory.glob("*.yaml")):
        reference = read_reference_file(path)
        registry.add(reference.model, reference)
    return registry


def list_references(directory: str | Path | None = None) -> tuple[str, ...]:
    """The model names that have published figures, sorted."""
    return tuple(sorted(load_references(directory).names()))


def load_reference(model: str, directory: str | Path | None = None) -> Reference:
    """One model's published figures; an unknown model lists the known ones."""
    return load_references(directory).get(model)


def reference_for(
    model: str, dataset: str, directory: str | Path | None = None
) -> DatasetReference:
    """One model's published figures on one dataset (``coco``, ``coco_person``, ``voc``)."""
    return load_reference(model, directory).dataset(dataset)
