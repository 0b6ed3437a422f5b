"""``evalkit evaluate``: score a COCO results file under one protocol."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from evalkit.cli.render import render_eval_result
from evalkit.datasets.loading import load_ground_truth
from evalkit.metrics import PROTOCOLS, evaluate
from evalkit.metrics.results_file import (
    ResultsPrefetch,
    exact_duplicates,
    load_coco_results_counted,
)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "evaluate",
        help="score a COCO results file against COCO or VOC ground truth",
        description="Score detections (a COCO results file: image_id, category_id, "
        "bbox [x,y,w,h] in original pixels, score) under one AP protocol.",
    )
    parser.add_argument(
        "--gt", required=True, help="COCO instances JSON, or a VOC year directory (.../VOC2007)"
    )
    parser.add_argument("--split", help="VOC split name (ImageSets/Main/SPLIT.txt)")
    parser.add_argument("--dets", required=True, help="COCO results JSON file")
    parser.add_argument(
        "--protocol", default="coco", choices=PROTOCOLS.names(), help="AP protocol (default: coco)"
    )
    parser.add_argument(
        "--match-iou",
        "--iou",
        dest="match_iou",
        type=float,
        default=0.5,
        help="IoU a detection needs to match a ground-truth box (default 0.5)",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        default=300,
        help="model input size in pixels, used by the st protocol (default 300)",
    )
    parser.add_argument(
        "--ignore-unknown-categories",
        action="store_true",
        help="drop (and count) detections of categories the ground truth lacks, as "
        "pycocotools does, e.g. an 80-class results file on a person-only set (default: "
        "such a detection is an error naming it)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The results file is read and parsed while the ground truth loads.
    prefetched = ResultsPrefetch(args.dets)
    gt = load_ground_truth(args.gt, args.split)
    dets, dropped = load_coco_results_counted(
        args.dets, gt, args.ignore_unknown_categories, prefetched
    )
    if dropped:
        counts = ", ".join(f"{n} of category_id {c}" for c, n in dropped.items())
        print(
            f"evalkit evaluate: note: {args.dets}: dropped {sum(dropped.values())} detection(s) "
            f"of categories the ground truth lacks ({counts})",
            file=sys.stderr,
        )
    result = evaluate(
        gt, dets, protocol=args.protocol, match_iou=args.match_iou, input_size=args.input_size
    )
    # A results file concatenated twice scores lower, as any scorer does; say it happened.
    duplicates = exact_duplicates(dets)
    if duplicates:
        print(
            f"evalkit evaluate: warning: {args.dets}: {duplicates} detection(s) exactly repeat "
            "another one (same image, class, box and score); they are scored as given",
            file=sys.stderr,
        )
    if args.json:
        extra: dict[str, Any] = {"duplicate_detections": duplicates}
        if args.ignore_unknown_categories:
            extra["dropped_unknown_categories"] = dropped
        print(json.dumps({**result.to_dict(), **extra}, indent=2))
    else:
        print(render_eval_result(result))
    return 0
