"""``evalkit export``: write the SSD network as ONNX, from a zoo checkpoint or seeded weights."""

from __future__ import annotations

import argparse
import json
from typing import Any

from evalkit.errors import InputError

_FORMS = ("zoo", "deployed")


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="export ssd_mobilenetv2 to ONNX (zoo or deployed form)",
        description="Build the zoo's ssd_mobilenetv2_pt network, load a checkpoint or draw "
        "seeded random weights, and export it to ONNX. The 'zoo' form is what the model zoo "
        "published: float32 NCHW (N,3,300,300) input 'input', raw class logits (N,3000,C) "
        "and box offsets (N,3000,4). The 'deployed' form takes uint8 NHWC (1,300,300,3), "
        "normalises inside and returns softmax 'scores' (1,3000,C) and clipped x1,y1,x2,y2 "
        "'boxes' (1,3000,4).",
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        required=True,
        metavar="C",
        help="number of classes INCLUDING the background class, i.e. the last dimension of "
        "the class output: 81 for COCO (80 objects), 21 for VOC (20), 2 for COCO-Person (1)",
    )
    parser.add_argument(
        "--width-mult", type=float, default=1.0, help="backbone width multiplier (default 1.0)"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="the shrunken demo network (width 0.35, small extras and heads); ignores --width-mult",
    )
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", metavar="PATH", help="zoo .pth state_dict to load")
    weights.add_argument("--seed", type=int, help="draw random weights from this seed")
    parser.add_argument(
        "--form", choices=_FORMS, default="zoo", help="which ONNX interface (default zoo)"
    )
    parser.add_argument("--out", required=True, metavar="FILE.onnx", help="file to write")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # torch is heavy: import it only when this command runs.
    from evalkit.models.export import export_onnx
    from evalkit.models.ssd_mobilenetv2 import (
        load_checkpoint,
        ssd_mobilenetv2,
        ssd_mobilenetv2_demo,
    )

    if args.num_classes < 2:
        raise InputError(
            f"--num-classes counts the background class and must be >= 2, got {args.num_classes}"
        )
    if args.width_mult <= 0:
        raise InputError(f"--width-mult must be positive, got {args.width_mult}")
    seed = 0 if args.seed is None else args.seed
    if args.demo:
        model = ssd_mobilenetv2_demo(args.num_classes, seed=seed)
    else:
        model = ssd_mobilenetv2(args.num_classes, args.width_mult, seed=seed)
    if args.checkpoint is not None:
        load_checkpoint(model, args.checkpoint)
    result = export_onnx(model, args.out, args.form)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        source = args.checkpoint if args.checkpoint is not None else f"seed {seed}"
        print(
            f"{result.path}: {result.size_bytes:,} bytes, sha256 {result.sha256}\n"
            f"  form {result.form}, {result.num_classes} classes incl. background, "
            f"{result.parameters:,} parameters, opset {result.opset}, weights from {source}\n"
            f"  input {result.input_name} {list(result.input_shape)}, "
            f"outputs {', '.join(result.output_names)}"
        )
    return 0
