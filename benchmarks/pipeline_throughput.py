"""End-to-end pipeline throughput against bare ``session.run`` on pre-decoded tensors.

Both sides use the same model, the same onnxruntime threads and the same images, in one
process, alternating repetitions (warm-up apart):

* bare: every image decoded and pre-processed first (not timed), then only
  ``session.run`` over the ready tensors;
* pipeline: :func:`evalkit.pipeline.predict.predict` from JPEG files to NMS output, with
  decoding and post-processing overlapped with inference.

The ratio pipeline / bare is the share of the model's own speed the pipeline keeps
(target: at least 0.9). Recorded in ``benchmarks/results/pipeline_throughput.{md,json}``.

    python benchmarks/pipeline_throughput.py --data ../shared --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _results import write_results

from evalkit.datasets.dataset import open_coco
from evalkit.datasets.images import decode_rgb
from evalkit.pipeline.predict import predict
from evalkit.postprocess.decoders import TfodSsdDecoder
from evalkit.postprocess.nms import NmsSettings
from evalkit.provenance import environment
from evalkit.runners.onnx import OnnxRunner

RESULTS = Path(__file__).resolve().parent / "results"


def bare_throughput(runner: OnnxRunner, tensors: list[Any], repeat: int) -> list[float]:
    """Images per second of session.run alone, per repetition."""
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for tensor in tensors:
            runner.run(tensor)
        rates.append(len(tensors) / (time.perf_counter() - t0))
    return rates


def pipeline_throughput(
    runner: OnnxRunner, dataset: Any, decoder: TfodSsdDecoder, repeat: int, workers: int
) -> list[float]:
    """Images per second of the whole predict() loop, per repetition."""
    rates = []
    for _ in range(repeat):
        result = predict(dataset, runner, decoder, NmsSettings(), progress=False, workers=workers)
        rates.append(result.times.images / result.times.wall_s)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("EVALKIT_DATA", "../shared"))
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--workers", type=int, default=2, help="pipeline worker threads")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default="float.onnx")
    parser.add_argument("--output", default=str(RESULTS / "pipeline_throughput"))
    args = parser.parse_args()

    data = Path(args.data)
    model_dir = data / "models" / "ssd_mobilenet_v2_coco_tfod"
    root = data / "data" / "coco128"
    dataset = open_coco(root / "annotations" / "instances_train2017.json", root / "images")
    runner = OnnxRunner(model_dir / args.model, threads=args.threads)
    decoder = TfodSsdDecoder.from_model_dir(model_dir)
    preprocessor = runner.preprocessing.preprocessor
    tensors = [preprocessor.apply(decode_rgb(dataset.image_path(i))) for i in range(len(dataset))]

    bare_throughput(runner, tensors[:8], 1)  # warm-up, not recorded
    # Alternate the two sides so that load from other processes hits both alike.
    bare: list[float] = []
    piped: list[float] = []
    for _ in range(args.repeat):
        bare += bare_throughput(runner, tensors, 1)
        piped += pipeline_throughput(runner, dataset, decoder, 1, args.workers)
    ratio = statistics.median(piped) / statistics.median(bare)
    record = {
        "benchmark": "pipeline_throughput",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "model": args.model,
            "threads": args.threads,
            "workers": args.workers,
            "repeat": args.repeat,
            "images": len(dataset),
            "dataset": "coco128",
        },
        "bare_images_per_s": bare,
        "pipeline_images_per_s": piped,
        "ratio_of_medians": ratio,
        "target": 0.9,
        "met": ratio >= 0.9,
        "environment": environment(),
    }
    lines = [
        "# Pipeline throughput vs bare session.run",
        "",
        f"Recorded {record['created']} by `python benchmarks/pipeline_throughput.py "
        f"--threads {args.threads} --workers {args.workers}` on "
        f"{record['environment']['cpu']} ({record['environment']['logical_cores']} cores).",
        "",
        f"Model `{args.model}` (shared SSD MobileNetV2, TF-OD), coco128 ({len(dataset)} "
        f"images), NMS 0.5 / 0.001 / 100, onnxruntime threads {args.threads}.",
        "",
        "| side | images/s (median) | runs |",
        "|---|--:|---|",
        f"| bare session.run on ready tensors | {statistics.median(bare):.2f} | "
        f"{', '.join(f'{r:.2f}' for r in bare)} |",
        f"| evalkit pipeline (JPEG to NMS output) | {statistics.median(piped):.2f} | "
        f"{', '.join(f'{r:.2f}' for r in piped)} |",
        "",
        f"Ratio pipeline / bare: **{ratio:.3f}** (target >= 0.9: "
        f"{'met' if ratio >= 0.9 else 'NOT met'}).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, record, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
