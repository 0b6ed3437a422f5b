"""End-to-end pipeline throughput against bare ``session.run`` on pre-decoded tensors, for
one variant and for three (float, QAT int8, float again) in one run.

All sides use the same models, onnxruntime threads and images, in one process, alternating
repetitions (warm-up apart), at 1 and 2 onnxruntime threads:

* bare: every image decoded and pre-processed first (not timed), then only
  ``session.run`` over the ready tensors (for three variants: each tensor through the three
  sessions);
* pipeline, 1 variant: :func:`evalkit.pipeline.predict.predict` from JPEG files to NMS
  output, decoding and post-processing overlapped with inference;
* pipeline, 3 variants one at a time: ``predict`` three times (each image decoded three
  times: what a run did before lockstep);
* pipeline, 3 variants in lockstep: :func:`evalkit.pipeline.together.predict_together`
  (each image decoded once, what ``evalkit run`` does now).

Images/s count images, each through every variant; the ratio to bare (same variant count)
is the share of the models' own speed the pipeline keeps (target: at least 0.9 at 1
thread). Recorded in ``benchmarks/results/pipeline_throughput.{md,json}``.

    python benchmarks/pipeline_throughput.py --data ../shared
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _results import write_results

from evalkit.datasets.dataset import open_coco
from evalkit.datasets.images import decode_rgb
from evalkit.pipeline.cache import PredictionCache
from evalkit.pipeline.predict import predict
from evalkit.pipeline.together import Job, predict_together
from evalkit.postprocess.decoders import TfodSsdDecoder
from evalkit.postprocess.nms import NmsSettings
from evalkit.provenance import environment
from evalkit.runners.onnx import OnnxRunner

RESULTS = Path(__file__).resolve().parent / "results"


def bare_throughput(runners: list[OnnxRunner], tensors: list[Any]) -> float:
    """Images per second of session.run alone (each image through every runner)."""
    t0 = time.perf_counter()
    for tensor in tensors:
        for runner in runners:
            runner.run(tensor)
    return len(tensors) / (time.perf_counter() - t0)


def one_at_a_time(runners: list[OnnxRunner], dataset: Any, decoder: Any, workers: int) -> float:
    """Images per second of predict() once per variant (each image decoded per variant)."""
    t0 = time.perf_counter()
    for runner in runners:
        predict(dataset, runner, decoder, NmsSettings(), progress=False, workers=workers)
    return len(dataset) / (time.perf_counter() - t0)


def lockstep(runners: list[OnnxRunner], dataset: Any, decoder: Any, workers: int) -> float:
    """Images per second of predict_together() (each image decoded once for all)."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [
            Job(f"v{k}", r, decoder, PredictionCache(Path(tmp) / f"v{k}.jsonl", "bench"))
            for k, r in enumerate(runners)
        ]
        batches = [[i] for i in range(len(dataset))]
        t0 = time.perf_counter()
        predict_together(dataset, jobs, NmsSettings(), batches, progress=False, workers=workers)
        return len(dataset) / (time.perf_counter() - t0)


def measure(args: argparse.Namespace, threads: int, dataset: Any, decoder: Any) -> dict[str, Any]:
    """Every side at one onnxruntime thread count; medians of alternating repetitions."""
    model_dir = Path(args.data) / "models" / "ssd_mobilenet_v2_coco_tfod"
    files = ("float.onnx", "int8_qat_qdq.onnx", "float.onnx")
    runners = [OnnxRunner(model_dir / f, threads=threads) for f in files]
    preprocessor = runners[0].preprocessing.preprocessor
    tensors = [preprocessor.apply(decode_rgb(dataset.image_path(i))) for i in range(len(dataset))]
    bare_throughput(runners, tensors[:4])  # warm-up, not recorded
    sides: dict[str, list[float]] = {k: [] for k in SIDES}
    for _ in range(args.repeat):
        sides["bare, 1 variant"].append(bare_throughput(runners[:1], tensors))
        sides["pipeline, 1 variant"].append(
            one_at_a_time(runners[:1], dataset, decoder, args.workers)
        )
        sides["bare, 3 variants"].append(bare_throughput(runners, tensors))
        sides["pipeline, 3 variants one at a time"].append(
            one_at_a_time(runners, dataset, decoder, args.workers)
        )
        sides["pipeline, 3 variants in lockstep"].append(
            lockstep(runners, dataset, decoder, args.workers)
        )
    medians = {k: statistics.median(v) for k, v in sides.items()}
    return {
        "threads": threads,
        "samples": sides,
        "median_images_per_s": medians,
        "ratio_1_variant": medians["pipeline, 1 variant"] / medians["bare, 1 variant"],
        "ratio_3_one_at_a_time": medians["pipeline, 3 variants one at a time"]
        / medians["bare, 3 variants"],
        "ratio_3_lockstep": medians["pipeline, 3 variants in lockstep"]
        / medians["bare, 3 variants"],
    }


SIDES = (
    "bare, 1 variant",
    "pipeline, 1 variant",
    "bare, 3 variants",
    "pipeline, 3 variants one at a time",
    "pipeline, 3 variants in lockstep",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("EVALKIT_DATA", "../shared"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="ort threads")
    parser.add_argument("--workers", type=int, default=2, help="pipeline worker threads")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", default=str(RESULTS / "pipeline_throughput"))
    args = parser.parse_args()

    data = Path(args.data)
    root = data / "data" / "coco128"
    dataset = open_coco(root / "annotations" / "instances_train2017.json", root / "images")
    decoder = TfodSsdDecoder.from_model_dir(data / "models" / "ssd_mobilenet_v2_coco_tfod")
    results = [measure(args, t, dataset, decoder) for t in args.threads]
    target = results[0]["ratio_1_variant"] >= 0.9 if results[0]["threads"] == 1 else None
    record: dict[str, Any] = {
        "benchmark": "pipeline_throughput",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "models": ["float.onnx", "int8_qat_qdq.onnx", "float.onnx"],
            "threads": args.threads,
            "workers": args.workers,
            "repeat": args.repeat,
            "images": len(dataset),
            "dataset": "coco128",
        },
        "results": results,
        "target": "pipeline / bare >= 0.9 with 1 variant at 1 thread",
        "met": target,
        "environment": environment(),
    }
    env: dict[str, Any] = record["environment"]
    lines = [
        "# Pipeline throughput vs bare session.run, 1 and 3 variants",
        "",
        f"Recorded {record['created']} by `python benchmarks/pipeline_throughput.py "
        f"--threads {' '.join(map(str, args.threads))} --workers {args.workers}` on "
        f"{env['cpu']} ({env['logical_cores']} cores).",
        "",
        f"Models: shared SSD MobileNetV2 (TF-OD) float, QAT int8 and float again; coco128 "
        f"({len(dataset)} images), NMS 0.5 / 0.001 / 100. Images/s count images, each through "
        "every variant; ratios are to bare session.run with the same variants.",
        "",
        "| ort threads | side | images/s (median) | runs | ratio to bare |",
        "|--:|---|--:|---|--:|",
    ]
    for r in results:
        m = r["median_images_per_s"]
        ratios = {
            "pipeline, 1 variant": r["ratio_1_variant"],
            "pipeline, 3 variants one at a time": r["ratio_3_one_at_a_time"],
            "pipeline, 3 variants in lockstep": r["ratio_3_lockstep"],
        }
        for side in SIDES:
            runs = ", ".join(f"{v:.2f}" for v in r["samples"][side])
            ratio = f"{ratios[side]:.3f}" if side in ratios else "-"
            lines.append(f"| {r['threads']} | {side} | {m[side]:.2f} | {runs} | {ratio} |")
    lines += [
        "",
        f"Target (pipeline / bare >= 0.9, 1 variant, 1 thread): "
        f"{ {True: 'met', False: 'NOT met', None: 'not measured'}[target] }.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, record, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
