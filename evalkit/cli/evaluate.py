"""``evalkit evaluate``: score a COCO results file under one protocol."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from evalkit.cli.render import (
    render_confusion,
    render_eval_result,
    render_operating_points,
    render_per_image,
    render_tide,
)
from evalkit.datasets.loading import load_ground_truth
from evalkit.errors import InputError
from evalkit.metrics import PROTOCOLS, AreaRange, CocoParams, evaluate
from evalkit.metrics.coco import DEFAULT_PARAMS
from evalkit.metrics.coco_matches import coco_operating_points, coco_per_image
from evalkit.metrics.confusion import confusion_matrix
from evalkit.metrics.operating_points import protocol_operating_points
from evalkit.metrics.results_file import (
    ResultsPrefetch,
    exact_duplicates,
    load_coco_results_counted,
)
from evalkit.metrics.tide import TideParams, tide_breakdown
from evalkit.metrics.voc_files import read_comp4, write_comp4

T = TypeVar("T")


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
    parser.add_argument(
        "--classes",
        type=_words,
        metavar="NAME,NAME,...",
        help="a VOC-layout set's own class list, in category-id order (default: VOC's 20)",
    )
    parser.add_argument(
        "--dets",
        required=True,
        help="COCO results JSON file, or a directory of VOC devkit comp4_det_<split>_<class>.txt "
        "files",
    )
    parser.add_argument(
        "--write-comp4",
        metavar="DIR",
        help="also write the detections as VOC devkit files comp4_det_<split>_<class>.txt "
        "(1-based corners) into DIR",
    )
    parser.add_argument(
        "--protocol", default="coco", choices=PROTOCOLS.names(), help="AP protocol (default: coco)"
    )
    parser.add_argument(
        "--match-iou",
        "--iou",
        dest="match_iou",
        type=float,
        help="IoU a detection needs to match a ground-truth box (default 0.5; with "
        "--iou-thresholds, 0.5 if listed, else the first)",
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
    coco = parser.add_argument_group(
        "COCOeval parameters (coco protocol; pycocotools' Params, any value)"
    )
    coco.add_argument(
        "--iou-thresholds", type=_floats, metavar="T,T,...", help="iouThrs (default .50:.05:.95)"
    )
    coco.add_argument(
        "--recall-thresholds", type=_floats, metavar="R,R,...", help="recThrs (default 0:.01:1)"
    )
    coco.add_argument(
        "--max-dets", type=_ints, metavar="N,N,...", help="maxDets (default 1,10,100)"
    )
    coco.add_argument(
        "--area-ranges",
        type=_area_ranges,
        metavar="LABEL=LOW:HIGH,...",
        help="areaRng and areaRngLbl, e.g. all=0:1e10,tiny=0:256 (default all, small, medium, "
        "large)",
    )
    coco.add_argument(
        "--class-agnostic", action="store_true", help="useCats=0: match across categories"
    )
    coco.add_argument(
        "--torchmetrics-thresholds",
        action="store_true",
        help="the float32 IoU and recall thresholds torchmetrics' MeanAveragePrecision hands "
        "COCOeval, to reproduce its numbers (needs torch)",
    )
    coco.add_argument(
        "--image-ids", type=_words, metavar="ID,ID,...", help="imgIds: evaluate these images only"
    )
    coco.add_argument(
        "--categories", type=_words, metavar="ID|NAME,...", help="catIds: these categories only"
    )
    points = parser.add_argument_group("operating points and analyses")
    points.add_argument(
        "--operating-points",
        action="store_true",
        help="precision, recall and F1 against the score threshold, under the protocol's "
        "own matching: the F1-optimal threshold per class and over all classes",
    )
    points.add_argument(
        "--thresholds",
        type=_floats,
        metavar="S,S,...",
        help="also precision, recall and F1 at these score thresholds (implies "
        "--operating-points), e.g. the one the device will use",
    )
    points.add_argument(
        "--confusion",
        type=float,
        metavar="SCORE",
        help="confusion matrix of the detections scoring >= SCORE, matched at --iou whatever "
        "their class (rules: evalkit/metrics/confusion.py)",
    )
    points.add_argument(
        "--tide",
        action="store_true",
        help="TIDE error breakdown (the AP each kind of error costs; equal to the tidecv "
        "package) at --iou, any protocol (rules: evalkit/metrics/tide.py)",
    )
    points.add_argument(
        "--tide-background",
        type=float,
        default=0.1,
        metavar="IOU",
        help="TIDE's background IoU (default 0.1)",
    )
    points.add_argument(
        "--per-image",
        action="store_true",
        help="per image: ground truths that count, true and false positives (coco matching)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def _list(text: str, convert: Callable[[str], T], what: str) -> tuple[T, ...]:
    try:
        return tuple(convert(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _floats(text: str) -> tuple[float, ...]:
    return _list(text, float, "comma-separated numbers")


def _ints(text: str) -> tuple[int, ...]:
    return _list(text, int, "comma-separated integers")


def _words(text: str) -> tuple[str, ...]:
    return _list(text, str.strip, "comma-separated ids")


def _area_ranges(text: str) -> tuple[AreaRange, ...]:
    def one(item: str) -> AreaRange:
        label, _, bounds = item.partition("=")
        low, _, high = bounds.partition(":")
        return AreaRange(label.strip(), float(low), float(high))

    return _list(text, one, "LABEL=LOW:HIGH,... e.g. all=0:1e10,small=0:1024")


_COCO_FLAGS = (
    "iou_thresholds",
    "recall_thresholds",
    "max_dets",
    "area_ranges",
    "image_ids",
    "categories",
)


def coco_params(args: argparse.Namespace) -> CocoParams | None:
    """The COCOeval parameters the command line sets, or None for pycocotools' defaults."""
    given = {name: getattr(args, name) for name in _COCO_FLAGS if getattr(args, name)}
    switches = [n for n in ("class_agnostic", "torchmetrics_thresholds") if getattr(args, n)]
    if not given and not switches:
        return None
    if args.protocol != "coco":
        flags = [f"--{n.replace('_', '-')}" for n in [*given, *switches]]
        raise InputError(f"{', '.join(flags)}: COCOeval parameters apply to --protocol coco only")
    if args.torchmetrics_thresholds and {"iou_thresholds", "recall_thresholds"} & set(given):
        raise InputError("--torchmetrics-thresholds sets the thresholds; give one or the other")
    defaults = CocoParams.torchmetrics() if args.torchmetrics_thresholds else CocoParams()
    try:
        return CocoParams(
            iou_thresholds=given.get("iou_thresholds", defaults.iou_thresholds),
            recall_thresholds=given.get("recall_thresholds", defaults.recall_thresholds),
            max_dets=given.get("max_dets", defaults.max_dets),
            area_ranges=given.get("area_ranges", defaults.area_ranges),
            use_cats=not args.class_agnostic,
            image_ids=given.get("image_ids"),
            category_ids=given.get("categories"),
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None


def match_iou(args: argparse.Namespace, params: CocoParams | None) -> float:
    """--iou, else 0.5, else (with thresholds that lack 0.5) the first threshold."""
    if args.match_iou is not None:
        return float(args.match_iou)
    if params is None or 0.5 in params.iou_thresholds:
        return 0.5
    return params.iou_thresholds[0]


def run(args: argparse.Namespace) -> int:
    params = coco_params(args)  # a bad flag is reported before any file is read
    tide_params = TideParams(match_iou(args, params), args.tide_background) if args.tide else None
    want_points = args.operating_points or args.thresholds is not None
    if args.per_image and args.protocol != "coco":
        raise InputError("--per-image: available with --protocol coco only")
    if args.thresholds is not None and not all(0.0 <= t <= 1.0 for t in args.thresholds):
        raise InputError(f"score thresholds in [0, 1] expected, got {list(args.thresholds)}")
    dropped: dict[str, int] = {}
    if Path(args.dets).is_dir():  # VOC devkit results files
        gt = load_ground_truth(args.gt, args.split, args.classes)
        dets = read_comp4(args.dets, gt)
    else:  # the results file is read and parsed while the ground truth loads
        prefetched = ResultsPrefetch(args.dets)
        gt = load_ground_truth(args.gt, args.split, args.classes)
        dets, dropped = load_coco_results_counted(
            args.dets, gt, args.ignore_unknown_categories, prefetched
        )
    if args.write_comp4:
        write_comp4(args.write_comp4, gt, dets, args.split or "test")
    if dropped:
        counts = ", ".join(f"{n} of category_id {c}" for c, n in dropped.items())
        print(
            f"evalkit evaluate: note: {args.dets}: dropped {sum(dropped.values())} detection(s) "
            f"of categories the ground truth lacks ({counts})",
            file=sys.stderr,
        )
    result = evaluate(
        gt,
        dets,
        protocol=args.protocol,
        match_iou=match_iou(args, params),
        input_size=args.input_size,
        coco=params,
    )
    # A results file concatenated twice scores lower, as any scorer does; say it happened.
    duplicates = exact_duplicates(dets)
    if duplicates:
        print(
            f"evalkit evaluate: warning: {args.dets}: {duplicates} detection(s) exactly repeat "
            "another one (same image, class, box and score); they are scored as given",
            file=sys.stderr,
        )
    points = None
    if want_points and args.protocol == "coco":
        points = coco_operating_points(
            gt, dets, args.thresholds or (), result.iou, params or DEFAULT_PARAMS
        )
    elif want_points:  # the protocol's own matching, from its result
        points = protocol_operating_points(result, args.thresholds or ())
    confusion = None
    if args.confusion is not None:
        if not 0.0 <= args.confusion <= 1.0:
            raise InputError(f"--confusion: a score threshold in [0, 1], got {args.confusion}")
        confusion = confusion_matrix(gt, dets, result.iou, args.confusion)
    tide = None if tide_params is None else tide_breakdown(gt, dets, tide_params)
    per_image = None
    if args.per_image:
        per_image = coco_per_image(gt, dets, result.iou, params or DEFAULT_PARAMS)
    if args.json:
        extra: dict[str, Any] = {"duplicate_detections": duplicates}
        if points is not None:
            extra["operating_points"] = points.to_dict()
        if per_image is not None:
            extra["per_image"] = per_image
        if confusion is not None:
            extra["confusion"] = confusion.to_dict()
        if tide is not None:
            extra["tide"] = tide.to_dict()
        if args.ignore_unknown_categories:
            extra["dropped_unknown_categories"] = dropped
        print(json.dumps({**result.to_dict(), **extra}, indent=2))
    else:
        print(render_eval_result(result))
        if points is not None:
            print()
            print(render_operating_points(points))
        if per_image is not None:
            print()
            print(render_per_image(per_image, result.iou))
        if confusion is not None:
            print()
            print(render_confusion(confusion))
        if tide is not None:
            print()
            print(render_tide(tide))
    return 0
