"""``evalkit quantize`` and ``evalkit diagnose``: static int8 quantization as the model zoo
did it, and where an int8 model departs from its float model.

One module registers both subcommands (they share the image-sampling options); the heavy
imports (onnxruntime, matplotlib) happen only when one of them runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.errors import InputError
from evalkit.postprocess.nms import NmsSettings  # light: numpy and the C++ kernel only

if TYPE_CHECKING:
    from evalkit.quantize.diagnose import DiagnoseResult
    from evalkit.quantize.static import QuantizeResult

# Kept literal here so that building the parser does not import onnxruntime.
_METHODS = ("MinMax", "Entropy", "Percentile")
_TYPES = ("QInt8", "QUInt8")


def add_parser(subparsers: Any) -> None:
    """Register ``quantize`` and ``diagnose``."""
    _add_quantize(subparsers)
    _add_diagnose(subparsers)


def _add_quantize(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "quantize",
        help="quantize a float ONNX model to int8 (QDQ) with the model zoo's settings",
        description="Static int8 quantization with onnxruntime. Defaults are the zoo's recipe: "
        "quant_pre_process (optimisation on, symbolic shape inference skipped), then "
        "quantize_static in QDQ format, per-channel, QInt8 activations and weights, MinMax "
        "calibration, WeightSymmetric=True, ActivationSymmetric=False, QuantizeBias=True, no "
        "node excluded. Calibration images go through the evaluation pre-processing chosen "
        "from the model input; by default a seeded random 1%% of the set (at least 1).",
    )
    parser.add_argument("model", metavar="FLOAT.onnx", help="the float model")
    parser.add_argument("--out", required=True, metavar="INT8.onnx", help="file to write")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--calib-images", metavar="DIR", help="folder of calibration images")
    source.add_argument(
        "--calib-dataset",
        metavar="SPEC",
        help="a dataset's images: coco:ANNOTATIONS.json:IMAGES_DIR, "
        "coco_person:ANNOTATIONS.json:IMAGES_DIR or voc:YEAR_DIR:SPLIT",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--calib-count", type=int, metavar="N", help="draw exactly N images")
    size.add_argument(
        "--calib-fraction",
        type=float,
        default=0.01,
        metavar="F",
        help="draw floor(F * images), at least 1 (default 0.01, the zoo's 1%%)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--method", choices=_METHODS, default="MinMax", help="calibration")
    parser.add_argument(
        "--per-tensor", action="store_true", help="one weight scale per tensor, not per channel"
    )
    parser.add_argument("--activation-type", choices=_TYPES, default="QInt8")
    parser.add_argument("--weight-type", choices=_TYPES, default="QInt8")
    parser.add_argument(
        "--exclude-nodes", nargs="+", default=[], metavar="NAME", help="nodes left in float"
    )
    parser.add_argument(
        "--exclude-op-types", nargs="+", default=[], metavar="OP", help="op types left in float"
    )
    parser.add_argument("--record", metavar="FILE.json", help="also write the result record")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_quantize)


def _add_diagnose(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "diagnose",
        help="per-tensor, output and detection error of an int8 model against its float model",
        description="Run both models on the same images (evaluation pre-processing). Reports "
        "per-activation SQNR and relative error from onnxruntime's QDQ debugging support "
        "(worst first), the error of the decoded scores and boxes, and detection agreement "
        "after NMS (int8 detections matched to float ones of the same class at IoU >= 0.5: "
        "precision, recall, mean IoU). --out receives diagnose.json and diagnose_sqnr.png.",
    )
    parser.add_argument("float_model", metavar="FLOAT.onnx")
    parser.add_argument("int8_model", metavar="INT8.onnx")
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of images")
    parser.add_argument(
        "--count", type=int, default=10, metavar="N", help="images drawn (default 10)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--out", metavar="DIR", help="write diagnose.json and the SQNR plot")
    parser.add_argument("--top", type=int, default=15, help="worst tensors shown (default 15)")
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=NmsSettings.score_threshold,
        help="NMS score threshold for the detection comparison "
        f"(default {NmsSettings.score_threshold}, as evaluated)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_diagnose)


def run_quantize(args: argparse.Namespace) -> int:
    """Parse-call-render for ``evalkit quantize``."""
    from evalkit.quantize import (
        QuantizeSettings,
        dataset_images,
        folder_images,
        quantize_model,
        sample_images,
    )

    if args.calib_images is not None:
        files, source = folder_images(args.calib_images), str(args.calib_images)
    else:
        files, source = dataset_images(args.calib_dataset), str(args.calib_dataset)
    sample = sample_images(
        files, source, count=args.calib_count, fraction=args.calib_fraction, seed=args.seed
    )
    settings = QuantizeSettings(
        method=args.method,
        per_channel=not args.per_tensor,
        activation_type=args.activation_type,
        weight_type=args.weight_type,
        exclude_nodes=tuple(args.exclude_nodes),
        exclude_op_types=tuple(args.exclude_op_types),
    )
    result = quantize_model(
        args.model, args.out, sample, settings, progress=not (args.no_progress or args.json)
    )
    record = result.to_dict()
    if args.record:
        path = Path(args.record)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2) if args.json else render_quantize(result))
    return 0


def render_quantize(result: QuantizeResult) -> str:
    """A few lines saying what was written and how."""
    s, c = result.settings, result.calibration
    ratio = result.int8_model.bytes / result.float_model.bytes
    drawn = f"fraction {c.fraction}" if c.requested_count is None else "count given"
    sym = {True: "symmetric", False: "asymmetric"}
    excluded = len(s.exclude_nodes) + len(s.exclude_op_types)
    return "\n".join(
        [
            f"{result.int8_model.path}: {result.int8_model.bytes:,} bytes "
            f"({ratio:.1%} of the float file's {result.float_model.bytes:,}), "
            f"sha256 {result.int8_model.sha256}",
            f"  QDQ, {'per-channel' if s.per_channel else 'per-tensor'}, {s.method}; "
            f"activations {s.activation_type} ({sym[s.activation_symmetric]}), weights "
            f"{s.weight_type} ({sym[s.weight_symmetric]}), bias "
            f"{'int32' if s.quantize_bias else 'float'}; "
            + ("the zoo's settings" if s.to_dict()["zoo_settings"] else "NOT the zoo's settings")
            + (f"; {excluded} exclusion(s)" if excluded else ""),
            f"  calibration: {len(c.files)} of {c.population} images from {c.source} "
            f"(seed {c.seed}, {drawn}); pre-processing {result.preprocessor['name']}",
            f"  onnxruntime {result.onnxruntime_version}, "
            f"{result.durations_s.get('total', 0.0):.1f} s",
        ]
    )


def run_diagnose(args: argparse.Namespace) -> int:
    """Parse-call-render for ``evalkit diagnose``."""
    from evalkit.quantize import folder_images, sample_images
    from evalkit.quantize.diagnose import diagnose, plot_sqnr

    if args.top < 1:
        raise InputError(f"--top must be >= 1, got {args.top}")
    try:
        nms = NmsSettings(score_threshold=args.score_threshold)
    except ValueError as exc:
        raise InputError(f"--score-threshold: {exc}") from exc
    images = sample_images(
        folder_images(args.images), str(args.images), count=args.count, seed=args.seed
    )
    result = diagnose(args.float_model, args.int8_model, images, nms=nms)
    record = result.to_dict()
    written: list[Path] = []
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "diagnose.json").write_text(json.dumps(record, indent=2) + "\n")
        written = [out / "diagnose.json", plot_sqnr(result, out / "diagnose_sqnr.png")]
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(render_diagnose(result, args.top))
        for path in written:
            print(f"wrote {path}")
    return 0


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def render_diagnose(result: DiagnoseResult, top: int = 15) -> str:
    """The worst tensors, the output errors and the detection agreement, as text."""
    worst = result.worst(top)
    lines = [
        f"{result.int8_model} vs {result.float_model} on {len(result.images.files)} images "
        f"from {result.images.source} (seed {result.images.seed})",
        "",
        f"Activations, worst {len(worst)} of {len(result.tensors)} (SQNR float vs int8, higher "
        "is better; QDQ dB = the tensor's own quantize-dequantize noise):",
        f"{'rank':>4}  {'SQNR dB':>8}  {'rel err':>8}  {'QDQ dB':>7}  {'op':<12} tensor",
    ]
    for rank, t in enumerate(worst, 1):
        lines.append(
            f"{rank:>4}  {t.sqnr_db:>8.2f}  {t.relative_error:>8.4f}  {t.qdq_sqnr_db:>7.1f}  "
            f"{t.op_type:<12} {t.name}"
        )
    if result.unmatched_tensors:
        lines.append(
            f"  ({len(result.unmatched_tensors)} int8 activations have no float tensor of the "
            "same name and are not compared)"
        )
    lines += ["", "Outputs (decoded; boxes are normalised corners):"]
    for o in result.outputs:
        lines.append(
            f"  {o.name:<16} SQNR {o.sqnr_db:7.2f} dB  rel err {o.relative_error:.4f}  "
            f"max |err| {o.max_abs_error:.4g}  mean |err| {o.mean_abs_error:.4g}"
        )
    d = result.detections
    lines += [
        "",
        f"Detections after NMS (same class, IoU >= {d.agreement_iou:g}): float "
        f"{d.float_detections}, int8 {d.int8_detections}, matched {d.matched}; precision "
        f"{_fmt(d.precision, '.3f')}, recall {_fmt(d.recall, '.3f')}, mean IoU "
        f"{_fmt(d.mean_iou, '.3f')}",
    ]
    return "\n".join(lines)
