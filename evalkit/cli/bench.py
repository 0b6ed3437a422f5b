"""``evalkit bench``: host (CPU) latency of one ONNX model, or of two side by side."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from evalkit.bench.latency import (
    LatencyComparison,
    LatencyResult,
    compare_latency,
    measure_latency,
)
from evalkit.cli.render import table


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="measure host latency of an ONNX model (or a float and an int8 model)",
        description="Time onnxruntime CPU inference on a fixed random input shaped like the "
        "model's. Warm-up runs are kept apart; p50/p90/p99 come from the timed runs. With two "
        "models the runs are interleaved and the ratio MODEL2 / MODEL is shown.",
    )
    parser.add_argument("model", metavar="MODEL.onnx", help="ONNX model (the float one)")
    parser.add_argument(
        "model2", metavar="MODEL2.onnx", nargs="?", help="a second model, e.g. the int8 build"
    )
    parser.add_argument(
        "--threads", type=int, help="intra-op threads (default: onnxruntime's, one per core)"
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up runs (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    models = 1 if args.model2 is None else 2
    # The bar goes to stderr, so --json output on stdout stays parseable.
    with tqdm(
        total=models * (max(args.runs, 0) + max(args.warmup, 0)),
        desc="bench",
        unit="run",
        disable=args.quiet or not sys.stderr.isatty(),
        leave=False,
    ) as bar:
        kwargs = {"threads": args.threads, "batch": args.batch, "seed": args.seed}
        result: LatencyResult | LatencyComparison
        if args.model2 is None:
            result = measure_latency(
                args.model, runs=args.runs, warmup=args.warmup, progress=bar.update, **kwargs
            )
        else:
            result = compare_latency(
                args.model,
                args.model2,
                runs=args.runs,
                warmup=args.warmup,
                progress=bar.update,
                **kwargs,
            )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(render_latency(result))
    return 0


def render_latency(result: LatencyResult | LatencyComparison) -> str:
    """The latency table, the ratio row for two models, and the settings they ran under."""
    pair, results = (
        (result, [result.float_result, result.int8_result])
        if isinstance(result, LatencyComparison)
        else (None, [result])
    )
    rows = [_row(r) for r in results]
    if pair is not None:
        names = [Path(r.model.path).name for r in results]
        rows.append(
            [f"ratio {names[1]} / {names[0]}"]
            + [f"{pair.ratio[k]:.3f}" for k in ("p50", "p90", "p99", "mean")]
            + ["", ""]
        )
    headers = ["model", "p50 ms", "p90 ms", "p99 ms", "mean ms", "img/s", "session ms"]
    first = results[0]
    s, env = first.settings, first.environment
    threads = "onnxruntime default" if s.threads is None else str(s.intra_op_threads)
    inputs = sorted({f"{i.name} {i.dtype} {i.shape}" for r in results for i in r.inputs})
    lines = [
        table(headers, rows),
        "",
        f"batch {s.batch}, {s.runs} timed runs after {s.warmup} warm-up runs; img/s = batch / p50",
        f"intra-op threads {threads}, inter-op {s.inter_op_threads} ({s.execution_mode}), "
        f"spinning {'on' if s.allow_spinning else 'off'}, {s.provider}, "
        f"onnxruntime {env['packages']['onnxruntime']}",
        f"input {'; '.join(inputs)}",
        f"host {env['cpu']}, {env['usable_cores']} usable of {env['logical_cores']} logical "
        f"cores, Python {env['python']}",
    ]
    if pair is not None:
        lines.append(f"schedule: {pair.schedule}")
    return "\n".join(lines)


def _row(result: LatencyResult) -> list[str]:
    summary = result.summary
    return [
        Path(result.model.path).name,
        f"{summary.p50_ms:.2f}",
        f"{summary.p90_ms:.2f}",
        f"{summary.p99_ms:.2f}",
        f"{summary.mean_ms:.2f}",
        f"{summary.images_per_s:.1f}",
        f"{result.session_create_ms:.1f}",
    ]
