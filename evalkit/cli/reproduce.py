"""``evalkit reproduce MODEL --dataset D``: a model card row, end to end, with a verdict."""

from __future__ import annotations

import argparse
import os
from typing import Any

from evalkit.cli.render import table


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "reproduce",
        help="run a model card's published files on its dataset and judge every figure",
        description="Checks (or fetches) the card's dataset and its published float and int8 "
        "files, runs them and evalkit's own int8 of the float file (the zoo's recipe) under "
        "the zoo profile, then sets each AP50 and the int8 cost against the card: reproduces "
        "within 0.01 points, does not, or context only when the set is not the card's. "
        "Exit 0: every figure reproduces (or is context only); 1: one does not; 2: unusable "
        "input or, with --offline, something missing (each named with its sha256 and the "
        "command that fetches it).",
    )
    parser.add_argument("model", help="a reference model (evalkit references)")
    parser.add_argument("--dataset", required=True, choices=("coco", "coco_person", "voc"))
    parser.add_argument("--data-root", required=True, metavar="DIR", help="datasets folder")
    parser.add_argument("--model-root", required=True, metavar="DIR", help="model files folder")
    parser.add_argument("--offline", action="store_true", help="fetch nothing; name what lacks")
    parser.add_argument("--out", help="run folder (default runs/reproduce-MODEL-DATASET)")
    parser.add_argument("--data", metavar="MANIFEST", help="another dataset manifest to use")
    parser.add_argument("--references", metavar="DIR", help="a folder of cards of your own")
    parser.add_argument("--decoder", help="decoder of the card's files (default: st-ssd)")
    parser.add_argument(
        "--class-names",
        choices=("dataset", "model"),
        default="dataset",
        help="class names: the dataset's preset in the zoo's order (default) or the model's",
    )
    parser.add_argument("--model-dir", help="side files of the decoder (default: beside)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evalkit.api import write_report
    from evalkit.references import REFERENCES_ENV
    from evalkit.reproduce import Recipe, fetch_missing, missing_error, plan, reproduce

    if args.references:
        os.environ[REFERENCES_ENV] = args.references  # read by every card lookup of the run
    p = plan(
        args.model,
        args.dataset,
        data_root=args.data_root,
        model_root=args.model_root,
        data=args.data,
    )
    if p.missing:
        if args.offline:
            raise missing_error(p)
        p = fetch_missing(p, progress=not args.quiet)
    recipe = Recipe(args.decoder or "st-ssd", args.class_names, args.model_dir)
    out = args.out or f"runs/reproduce-{args.model}-{args.dataset}"
    done = reproduce(p, recipe, out, quiet=args.quiet, render=write_report)
    rows = [
        [
            v.figure,
            "n/a" if v.measured is None else f"{v.measured:.2f}",
            "n/a" if v.published is None else f"{v.published:.2f}",
            "-" if v.difference is None or v.status == "context only" else f"{v.difference:+.2f}",
            v.status,
        ]
        for v in done.verdicts
    ]
    print()
    print(table(["figure", "measured", "published", "difference", "verdict"], rows))
    if done.verdicts and done.verdicts[0].status == "context only":
        print(f"context only: {done.verdicts[0].why}")
    print(f"run: {done.out_dir}  (report: {done.out_dir / 'report.html'})")
    return 0 if done.reproduces else 1
