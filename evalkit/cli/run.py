"""``evalkit run CONFIG.yaml``: the main job, from dataset to comparison report."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from evalkit.cli.render import table
from evalkit.pipeline.config import describe_fields, load_config


def _epilog() -> str:
    lines = ["configuration fields (YAML; ${ENV} expands; --set FIELD=VALUE overrides):", ""]
    for name, default, help_text in describe_fields():
        lines.append(f"  {name}  [default {default}]")
        lines.extend(
            textwrap.wrap(help_text, 76, initial_indent="      ", subsequent_indent="      ")
        )
    return "\n".join(lines)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="evaluate model variants on a dataset and write result.json and a report",
        description="Run the configured variants (float, int8, ...) over a dataset: "
        "predictions (resumable), detections files, AP50 under every protocol, host latency, "
        "result.json and report.html in the output folder.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="YAML configuration file")
    parser.add_argument("--out", help="output folder (overrides 'output')")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
    parser.add_argument("--batch-size", type=int, help="images per inference call")
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument(
        "--profile",
        choices=["auto", "zoo", "plain"],
        help="zoo: the model zoo's evaluation chain (overrides 'profile')",
    )
    parser.add_argument("--protocols", help="comma-separated protocols, e.g. coco,st")
    parser.add_argument(
        "--executor",
        help="where inference runs: local (default) or ray (overrides 'executor.kind')",
    )
    parser.add_argument(
        "--address",
        help="ray: the cluster address, e.g. ray://head:10001 (default: a local cluster)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars (CI)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any field, e.g. --set nms.iou_threshold=0.6",
    )
    parser.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"evalkit run: error: --set expects FIELD=VALUE, got {item!r}")
        overrides[key.strip()] = value
    flags = {
        "output": args.out,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "dataset.limit": args.limit,
        "profile": args.profile,
        "protocols": args.protocols,
        # getattr: callers that build the namespace themselves predate these flags.
        "executor.kind": getattr(args, "executor", None),
        "executor.address": getattr(args, "address", None),
    }
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if args.quiet:
        overrides["quiet"] = True
    return overrides


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, _overrides(args))
    from evalkit.api import run as run_pipeline  # the whole pipeline: the run extra

    outcome = run_pipeline(config, log=print)
    record = outcome.record
    protocols = list(config.protocols)
    rows = [
        [name, *(f"{100 * record.ap50(name, p):.2f}" for p in protocols)]
        for name in record.variants
    ]
    print()
    print(table(["variant", *(f"AP50 {p}" for p in protocols)], rows))
    print()
    print(f"result: {outcome.out_dir / 'result.json'}")
    for path in outcome.report_files:
        if path.suffix == ".html":
            print(f"report: {path}")
    return 0
