"""``evalkit demo``: the main job on the embedded default, nothing to download."""

from __future__ import annotations

import argparse
from typing import Any

from evalkit.cli.render import table
from evalkit.cli.reproduce import render_verdicts


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run the whole job on the bundled small model and synthetic data",
        description="Generate (or reuse) a synthetic shapes dataset, export the bundled small "
        "ssd_mobilenetv2 to ONNX (zoo and deployed forms), quantize it with the model zoo's "
        "settings, evaluate float, int8 and deployed under all four protocols, measure host "
        "latency, write result.json and report.html, and set every figure against the demo "
        "model's card as evalkit reproduce does (evalkit reproduce ssd_mobilenetv2_demo "
        "--dataset shapes is the same run, with reproduce's exit codes; the demo exits 0 "
        "whatever the verdicts say, and prints them).",
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--data", help="where the synthetic dataset lives (default OUT/data)")
    parser.add_argument(
        "--latency-runs",
        type=int,
        default=20,
        help="timed latency runs per model (0 skips; default 20)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evalkit.demo import run_demo  # the whole pipeline: the run extra

    done = run_demo(args.out, data=args.data, quiet=args.quiet, latency_runs=args.latency_runs)
    record = done.record
    protocols = record.protocols(next(iter(record.variants)))  # the demo scores all four
    rows = []
    for name, variant in record.variants.items():
        latency = record.latency_p50_ms(name)
        size = None if variant.model is None else variant.model.bytes
        rows.append(
            [
                name,
                *(f"{100 * record.ap50(name, p):.2f}" for p in protocols),
                "-" if size is None else f"{size / 2**20:.2f}",
                "-" if latency is None else f"{latency:.2f}",
            ]
        )
    print()
    print("measured on the synthetic validation split (AP50, %):")
    print(table(["variant", *protocols, "MiB", "p50 ms"], rows))
    print()
    print("against the demo model's card (evalkit references ssd_mobilenetv2_demo):")
    print(render_verdicts(done))
    print()
    print(f"result: {done.out_dir / 'result.json'}")
    report = done.out_dir / "report.html"
    if report.is_file():
        print(f"report: {report}  (open it in a browser)")
    return 0
