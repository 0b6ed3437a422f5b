"""What the Ray executor costs on one machine: images per second of the same prediction
pass (coco128, the shared SSD MobileNetV2 float model, batches of 4, TF-style NMS) in this
process (threads) and over Ray actors, with the cluster's start-up apart. Every pass must
give identical detections; the record says whether they did. Records
``benchmarks/results/ray_overhead.*``.

    python benchmarks/ray_overhead.py --data ../shared
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Any

import ray
from _results import REPO, machine_info, write_results

from evalkit.datasets.dataset import open_coco
from evalkit.pipeline.executors import ExecutorConfig, RunnerSpec
from evalkit.pipeline.predict import Predictions, ThreadExecutor, predict
from evalkit.pipeline.ray_executor import RayExecutor
from evalkit.postprocess.decoders import TfodSsdDecoder
from evalkit.postprocess.nms import NmsSettings
from evalkit.runners.onnx import OnnxRunner

BATCH = 4


def _same(a: Predictions, b: Predictions) -> bool:
    return a.image_indices == b.image_indices and all(
        x.boxes_xyxy_norm.tobytes() == y.boxes_xyxy_norm.tobytes()
        and x.scores.tobytes() == y.scores.tobytes()
        and x.class_index.tobytes() == y.class_index.tobytes()
        for x, y in zip(a.per_image, b.per_image, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared/ folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/ray_overhead")
    args = parser.parse_args()
    model_dir = args.data / "models" / "ssd_mobilenet_v2_coco_tfod"
    coco = args.data / "data" / "coco128"
    dataset = open_coco(coco / "annotations" / "instances_train2017.json", coco / "images")
    model = model_dir / "float.onnx"
    decoder = TfodSsdDecoder.from_model_dir(model_dir)
    nms = NmsSettings()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, logging_level=logging.ERROR, _node_ip_address="127.0.0.1")
    startup_s = time.perf_counter() - t0
    cpus = int(ray.cluster_resources()["CPU"])
    setups: dict[str, tuple[Any, int]] = {
        f"local, onnxruntime {cpus} threads": (ThreadExecutor(), cpus),
        "local, onnxruntime 1 thread": (ThreadExecutor(), 1),
        f"ray, {cpus} actors x 1 thread": (ExecutorConfig(kind="ray", actors=cpus), 1),
        f"ray, 1 actor x {cpus} threads": (
            ExecutorConfig(kind="ray", actors=1, cpus_per_actor=cpus, threads_per_actor=cpus),
            cpus,
        ),
    }
    rows = []
    reference: Predictions | None = None
    for name, (setup, threads) in setups.items():
        runner = OnnxRunner(model, batch_size=BATCH, threads=threads)
        seconds = []
        identical = True
        for _ in range(args.repeat):
            executor = setup
            if isinstance(setup, ExecutorConfig):
                executor = RayExecutor(setup).for_variant(
                    "float", RunnerSpec(model, {"batch_size": BATCH})
                )
            start = time.perf_counter()
            got = predict(dataset, runner, decoder, nms, batch_size=BATCH, progress=False,
                          executor=executor)  # fmt: skip
            seconds.append(time.perf_counter() - start)
            reference = reference or got
            identical = identical and _same(got, reference)
        best = min(seconds)
        rows.append({"setup": name, "seconds": seconds, "images_per_s": len(dataset) / best,
                     "identical_detections": identical})  # fmt: skip
        print(f"{name}: {len(dataset) / best:.1f} img/s (best of {args.repeat}), "
              f"identical: {identical}")  # fmt: skip
    ray.shutdown()
    base = rows[0]["images_per_s"]
    record = {
        "benchmark": "ray_overhead",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(("onnxruntime", "ray"), REPO / "evalkit", "evalkit_sources_sha256"),
        "workload": {"images": len(dataset), "model": str(model), "batch": BATCH},
        "ray_startup_s": startup_s,
        "rows": rows,
    }
    lines = [
        "# Ray executor overhead on one machine",
        "",
        f"Recorded {record['created']} by `python benchmarks/ray_overhead.py --data ../shared` "
        f"({record['machine']['cpu']}, {cpus} CPUs): coco128 ({len(dataset)} images), the "
        f"shared SSD MobileNetV2 float model, batches of {BATCH}, best of {args.repeat}. "
        f"Starting the local Ray cluster took {startup_s:.1f} s (not in the times below); "
        "each Ray pass also starts its actors (one onnxruntime session each).",
        "",
        "| setup | images/s | vs local (all threads) | identical detections |",
        "|---|--:|--:|---|",
    ]
    for row in rows:
        ratio = row["images_per_s"] / base
        lines.append(
            f"| {row['setup']} | {row['images_per_s']:.1f} | {ratio:.2f} | "
            f"{row['identical_detections']} |"
        )
    write_results(args.output, record, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
