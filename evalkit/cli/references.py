"""``evalkit references [MODEL] [--dataset D] [--json]``: the zoo's published figures."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from evalkit.cli.render import table
from evalkit.references import (
    DATASET_KEYS,
    ORIGIN,
    PRECISIONS,
    DatasetReference,
    Reference,
    list_references,
    load_reference,
)
from evalkit.registry import Registry

# Shown for a figure the source does not publish.
_NONE = "-"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "references",
        help="the published figures of the STM32 model zoo (model cards)",
        description="Without MODEL: AP50 float / int8 of every model with published figures. "
        "With MODEL: its whole card (AP50, STM32N6 memory and latency per STEdgeAI version, "
        "model files, evaluation settings). Every figure is as published, never measured.",
    )
    parser.add_argument("model", nargs="?", metavar="MODEL", help="e.g. ssd_mobilenetv2_pt")
    parser.add_argument(
        "--dataset", metavar="D", help=f"only this dataset ({', '.join(DATASET_KEYS)})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(func=run)


def _fig(value: Decimal | None) -> str:
    """A published figure with its published digits, or a dash."""
    return _NONE if value is None else str(value)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _versions(rows: Iterable[DatasetReference], attribute: str) -> list[str]:
    """The STEdgeAI versions that have a figure under ``n6.<attribute>`` in any row."""
    found = {v for d in rows if d.n6 is not None for v in getattr(d.n6, attribute)}
    return sorted(found, key=_version_key)


def _protocols(rows: Iterable[DatasetReference]) -> str:
    return ", ".join(sorted({d.protocol for d in rows}))


def render_overview(references: Sequence[Reference], dataset: str | None = None) -> str:
    """All models, AP50 float / int8 per dataset (with --dataset: that one, plus N6 ms)."""
    # The zoo's cards in the table; cards of other origins (evalkit's demo model, one's own
    # under $EVALKIT_REFERENCES) are named below it, each with its own datasets.
    others = [r for r in references if r.origin != ORIGIN]
    references = [r for r in references if r.origin == ORIGIN]
    if dataset is not None:
        references = [r for r in references if dataset in r.datasets]
        rows = [r.dataset(dataset) for r in references]
        versions = _versions(rows, "latency_ms")
        headers = ["model", "AP50 float", "AP50 int8", *(f"N6 ms ({v})" for v in versions)]
        body = [
            [
                d.model,
                _fig(d.ap50_float_percent),
                _fig(d.ap50_int8_percent),
                *(_fig(None if d.n6 is None else d.n6.latency_ms.get(v)) for v in versions),
            ]
            for d in rows
        ]
        title = f"{dataset}: AP50 (%) and STM32N6 latency (ms per STEdgeAI version)"
    else:
        rows = [d for r in references for d in r.datasets.values()]
        keys = [k for k in DATASET_KEYS if any(k in r.datasets for r in references)]
        headers = ["model", "inputs", *(f"{k} {p}" for k in keys for p in PRECISIONS)]
        body = []
        for r in references:
            cells = [r.model, _inputs(r)]
            for k in keys:
                d = r.datasets.get(k)
                cells += (
                    [_NONE, _NONE]
                    if d is None
                    else [_fig(d.ap50_float_percent), _fig(d.ap50_int8_percent)]
                )
            body.append(cells)
        title = (
            "AP50 (%), float / int8 per dataset (a card with several inputs: its first row; "
            "all rows: evalkit references MODEL)"
        )
    also = [
        f"Also: {r.model} ({r.origin}), on {', '.join(r.datasets)}"
        for r in others
        if dataset is None or dataset in r.datasets
    ]
    if not references:
        return "\n".join(also or [f"no card has figures on {dataset}"])
    return "\n".join(
        [
            f"{ORIGIN}: {title}; protocol {_protocols(rows)}",
            "",
            table(headers, body),
            "",
            f"{_NONE} = not published. Details: evalkit references MODEL",
            *also,
        ]
    )


def _inputs(ref: Reference) -> str:
    """The input sides a card publishes, or the card's one input, or a dash."""
    sides = sorted({d.resolution for d in ref.all_rows() if d.resolution is not None})
    if sides:
        return ", ".join(map(str, sides))
    shape = ref.evaluation.input_shape_hwc
    return _NONE if shape is None else str(shape[0])


def _settings(ref: Reference) -> str:
    e = ref.evaluation
    shape = "not published" if e.input_shape_hwc is None else "x".join(map(str, e.input_shape_hwc))
    return (
        f"EVAL_IOU {e.eval_iou}, NMS_THRESH {e.nms_thresh}, SCORE_THRESH {e.score_thresh}, "
        f"MAX_DETECTIONS {e.max_detections}; input (HWC) {shape}"
    )


def render_card(ref: Reference, dataset: str | None = None) -> str:
    """One model's card: settings, AP50 table, N6 table (every STEdgeAI version), files."""
    rows = [ref.dataset(dataset)] if dataset is not None else list(ref.all_rows())
    src = ref.source
    at = f" at {ref.source_commit}" if ref.source_commit else ""
    lines = [
        f"{ref.model}: {ref.origin}",
        f"  source      {src.repository}: {src.card}{at}",
        f"  evaluation  {_settings(ref)}",
        f"  data file   {ref.path}",
        "",
        f"AP50 (%), {ref.origin}",
        table(
            ["dataset", "name", "split", "classes", "images", "protocol", "IoU", "float", "int8"],
            [
                [
                    d.label,
                    d.dataset.name,
                    d.dataset.split,
                    str(d.dataset.classes),
                    _NONE if d.dataset.images is None else str(d.dataset.images),
                    d.protocol,
                    str(d.eval_iou or ref.evaluation.eval_iou),
                    _fig(d.ap50_float_percent),
                    _fig(d.ap50_int8_percent),
                ]
                for d in rows
            ],
        ),
        "",
    ]
    t = ref.n6_target
    target = "target not published" if t is None else f"{t.board}, {t.precision}, {t.configuration}"
    lines.append(f"STM32N6 NPU, {ref.origin}: {target}")
    ms_versions, ips_versions = _versions(rows, "latency_ms"), _versions(rows, "inferences_per_s")
    headers = ["dataset", "internal RAM KiB", "external RAM KiB", "weights flash KiB"]
    headers += ["memory with STEdgeAI"]
    headers += [f"ms (STEdgeAI {v})" for v in ms_versions]
    headers += [f"inf/s (STEdgeAI {v})" for v in ips_versions]
    body = []
    for d in rows:
        n = d.n6
        if n is None:
            body.append([d.label, *[_NONE] * (len(headers) - 1)])
            continue
        memory = any(
            v is not None for v in (n.internal_ram_kib, n.external_ram_kib, n.weights_flash_kib)
        )
        body.append(
            [
                d.label,
                _fig(n.internal_ram_kib),
                _fig(n.external_ram_kib),
                _fig(n.weights_flash_kib),
                n.memory_stedgeai_version or ("not stated" if memory else _NONE),
                *(_fig(n.latency_ms.get(v)) for v in ms_versions),
                *(_fig(n.inferences_per_s.get(v)) for v in ips_versions),
            ]
        )
    lines += [table(headers, body), "", f"Model files, {ref.origin}; paths under {src.path}:"]
    files = [(d.label, p, f) for d in rows for p, f in d.files.items()]
    if not files:
        lines.append("  none published in the source")
    for key, precision, f in files:
        lines.append(f"  {key} {precision}: {f.bytes} bytes, sha256 {f.sha256}")
        lines.append(f"    {f.path}")
    lines += ["", f"{_NONE} = not published."]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``references``: an overview table, or one model's card."""
    if args.model is None:
        references = [load_reference(name) for name in list_references()]
        if args.dataset is not None:
            keys: Registry[str] = Registry("reference dataset")
            for key in DATASET_KEYS:
                keys.add(key, key)
            keys.get(args.dataset)  # an unknown name is an error with the near match
            references = [r for r in references if args.dataset in r.datasets]
        if args.json:
            out: Any = [
                r.to_dict() if args.dataset is None else r.dataset(args.dataset).to_dict()
                for r in references
            ]
            print(json.dumps(out, indent=2))
        else:
            print(render_overview(references, args.dataset))
        return 0
    ref = load_reference(args.model)
    if args.json:
        out = ref.to_dict() if args.dataset is None else ref.dataset(args.dataset).to_dict()
        print(json.dumps(out, indent=2))
    else:
        print(render_card(ref, args.dataset))
    return 0
