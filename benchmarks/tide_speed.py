"""How fast is evalkit's TIDE breakdown next to tidecv, the TIDE authors' package, whose
numbers it must equal?

The workload is metrics_speed's COCO-val-shaped generator (80 categories, crowds, images
without ground truth) (5000 images by default, about 100 detections each). Both read the
same two files: evalkit with its own loaders, tidecv with its ``datasets.COCO`` and
``datasets.COCOResult``. Times are the breakdown alone (loading apart), one pass each after
loading; every figure (AP, the six error deltas, the two special ones, the counts) is
compared, and the largest difference printed (0 means identical).

    python benchmarks/tide_speed.py                  # records results/tide_speed.md/.json
    python benchmarks/tide_speed.py --images 50 --output /tmp/tide_speed
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from _results import machine_info, write_results  # noqa: E402  (shared by benchmarks)
from metrics_speed import make_workload  # noqa: E402

from evalkit.datasets.coco import load_coco_ground_truth  # noqa: E402
from evalkit.metrics.results_file import load_coco_results  # noqa: E402
from evalkit.metrics.tide import MAIN_ERRORS, SPECIAL_ERRORS, tide_breakdown  # noqa: E402

SCHEMA_VERSION = 1
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "tide_speed"


def _evalkit(gt_path: Path, dets_path: Path) -> tuple[dict[str, Any], float, float]:
    t0 = time.perf_counter()
    gt = load_coco_ground_truth(gt_path)
    dets = load_coco_results(dets_path, gt)
    t1 = time.perf_counter()
    result = tide_breakdown(gt, dets)
    t2 = time.perf_counter()
    figures = {
        "ap": result.ap,
        **{f"dAP {k}": result.delta_ap[k] for k in MAIN_ERRORS},
        **{f"dAP {k}": result.special[k] for k in SPECIAL_ERRORS},
        **{f"count {k}": float(result.counts[k]) for k in MAIN_ERRORS},
    }
    return figures, t1 - t0, t2 - t1


def _tidecv(gt_path: Path, dets_path: Path) -> tuple[dict[str, Any], float, float]:
    from tidecv import TIDE
    from tidecv import datasets as tide_datasets

    t0 = time.perf_counter()
    gt = tide_datasets.COCO(str(gt_path))
    dets = tide_datasets.COCOResult(str(dets_path))
    t1 = time.perf_counter()
    tide = TIDE()
    run = tide.evaluate(gt, dets, mode=TIDE.BOX, name="run")
    main = tide.get_main_errors()["run"]
    special = tide.get_special_errors()["run"]
    t2 = time.perf_counter()
    counts = {k.short_name: v for k, v in run.count_errors().items()}
    figures = {
        "ap": run.ap,
        **{f"dAP {k}": main[k] for k in MAIN_ERRORS},
        **{f"dAP {k}": special[k] for k in SPECIAL_ERRORS},
        **{f"count {k}": float(counts[k]) for k in MAIN_ERRORS},
    }
    return figures, t1 - t0, t2 - t1


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    gt, results = make_workload(args.images, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        gt_path, dets_path = Path(folder) / "gt.json", Path(folder) / "dets.json"
        # tidecv's COCO loader makes an RLE of every segmentation: give each box one.
        for ann in gt["annotations"]:
            x, y, w, h = ann["bbox"]
            ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        gt_path.write_text(json.dumps(gt))
        dets_path.write_text(json.dumps(results))
        ours, our_load, our_s = _evalkit(gt_path, dets_path)
        theirs, their_load, their_s = _tidecv(gt_path, dets_path)
    difference = max(abs(ours[k] - theirs[k]) for k in ours)
    return {
        "schema": SCHEMA_VERSION,
        "benchmark": "tide_speed",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(["tidecv", "numpy"], REPO / "evalkit", "evalkit_sources_sha256"),
        "workload": {
            "images": len(gt["images"]),
            "annotations": len(gt["annotations"]),
            "detections": len(results),
            "seed": args.seed,
        },
        "evalkit": {"load_s": our_load, "breakdown_s": our_s, "figures": ours},
        "tidecv": {"load_s": their_load, "breakdown_s": their_s, "figures": theirs},
        "speedup": their_s / our_s,
        "max_abs_difference": difference,
    }


def render_markdown(record: dict[str, Any]) -> str:
    m, w = record["machine"], record["workload"]
    ours, theirs = record["evalkit"], record["tidecv"]
    rows = [
        f"| {k} | {ours['figures'][k]:.12g} | {theirs['figures'][k]:.12g} |"
        for k in ours["figures"]
    ]
    return "\n".join(
        [
            "# TIDE breakdown: evalkit vs tidecv",
            "",
            f"Recorded {record['created']} by `python benchmarks/tide_speed.py`.",
            "",
            f"- Machine: {m['cpu']}, {m['usable_cores']} usable cores, Python {m['python']}",
            f"- Packages: {m['packages']}; git {m['git'].get('revision')}"
            f"{' (uncommitted edits)' if m['git'].get('dirty') else ''}, evalkit sources "
            f"sha256 {m['git'].get('evalkit_sources_sha256')}",
            f"- Workload (seed {w['seed']}): {w['images']} images, {w['annotations']} "
            f"annotations, {w['detections']} detections",
            "",
            "| | evalkit | tidecv |",
            "|---|--:|--:|",
            f"| load s | {ours['load_s']:.2f} | {theirs['load_s']:.2f} |",
            f"| breakdown s | {ours['breakdown_s']:.2f} | {theirs['breakdown_s']:.2f} |",
            "",
            f"evalkit is {record['speedup']:.1f}x faster; largest difference of any figure: "
            f"{record['max_abs_difference']:g}.",
            "",
            "| figure | evalkit | tidecv |",
            "|---|--:|--:|",
            *rows,
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=5000, help="default 5000 (COCO val)")
    p.add_argument("--seed", type=int, default=2017)
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    record = benchmark(args)
    markdown = render_markdown(record)
    print(markdown)
    write_results(args.output, record, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
