"""``evalkit reproduce MODEL --dataset D``: a model card row, end to end, with a verdict."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from evalkit.cli.render import table
from evalkit.errors import InputError
from evalkit.references import DATASET_KEYS

if TYPE_CHECKING:
    from evalkit.reproduce import Reproduction

# Where the bundled demo model's card is reproduced (evalkit demo): nothing to fetch.
_NOT_FOR_THE_DEMO = ("model_root", "data", "references", "decoder", "model_dir")


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
        "command that fetches it). The bundled demo model's card (ssd_mobilenetv2_demo "
        "--dataset shapes) needs nothing: it is what evalkit demo runs.",
    )
    parser.add_argument("model", help="a reference model (evalkit references)")
    parser.add_argument("--dataset", required=True, choices=DATASET_KEYS)
    parser.add_argument(
        "--data-root", metavar="DIR", help="datasets folder (required for zoo cards)"
    )
    parser.add_argument("--model-root", metavar="DIR", help="model files folder (zoo cards)")
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


def render_verdicts(done: Reproduction) -> str:
    """The verdict per figure, as ``reproduce`` and ``demo`` end."""
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
    lines = [table(["figure", "measured", "published", "difference", "verdict"], rows)]
    if done.verdicts and done.verdicts[0].status == "context only":
        lines.append(f"context only: {done.verdicts[0].why}")
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> Reproduction:
    """The bundled demo model's card: what ``evalkit demo`` runs (nothing to fetch)."""
    from evalkit.demo import DEMO_DATASET, run_demo

    given = [f"--{k.replace('_', '-')}" for k in _NOT_FOR_THE_DEMO if getattr(args, k)]
    given += ["--class-names model"] if args.class_names != "dataset" else []
    if args.dataset != DEMO_DATASET:
        raise InputError(f"the bundled demo model's card is on --dataset {DEMO_DATASET} only")
    if given:
        raise InputError(
            f"the bundled demo model's card needs no {', '.join(given)}: it is what evalkit "
            "demo runs (the model and its data are bundled)"
        )
    out = args.out or f"runs/reproduce-{args.model}-{args.dataset}"
    return run_demo(out, data=args.data_root, quiet=args.quiet, log=print)


def run(args: argparse.Namespace) -> int:
    from evalkit.api import write_report
    from evalkit.demo import DEMO_REFERENCE
    from evalkit.references import REFERENCES_ENV
    from evalkit.reproduce import Recipe, fetch_missing, missing_error, plan, reproduce

    if args.model == DEMO_REFERENCE:
        done = _demo(args)
        print()
        print(render_verdicts(done))
        print(f"run: {done.out_dir}  (report: {done.out_dir / 'report.html'})")
        return 0 if done.reproduces else 1
    for flag in ("data_root", "model_root"):
        if getattr(args, flag) is None:
            raise InputError(f"--{flag.replace('_', '-')} DIR is required for a zoo card")
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
    print()
    print(render_verdicts(done))
    print(f"run: {done.out_dir}  (report: {done.out_dir / 'report.html'})")
    return 0 if done.reproduces else 1
