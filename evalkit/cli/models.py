"""``evalkit models list | info | verify | fetch``: the published model files of the
references, checked by sha256 and fetched from the zoo (resumable, verified, atomic)."""

from __future__ import annotations

import argparse
from typing import Any

from evalkit.cli.render import table
from evalkit.errors import InputError
from evalkit.references.model_files import (
    PublishedFile,
    fetch_command,
    fetch_file,
    identify,
    published_files,
    state_of,
)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "models",
        help="list, verify and download the published model files of the references",
        description="The model files each model card publishes (path in the zoo, bytes, "
        "sha256 = the Git LFS oid). A local copy lives under a model root as "
        "ROOT/<model>/<path>; verify checks it, fetch downloads what is missing or damaged "
        "(EVALKIT_MODEL_MIRROR or --mirror: a folder of the same layout instead of the zoo).",
    )
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="the published files, one line each")
    p.add_argument("model", nargs="?", help="one reference model (default: all)")
    p.set_defaults(func=run_list)
    p = sub.add_parser("info", help="where a file is in the zoo, its URL and sha256")
    p.add_argument("model")
    p.set_defaults(func=run_info)
    for name, func, what in (
        ("verify", run_verify, "check the local copies (exit 2 naming what is wrong)"),
        ("fetch", run_fetch, "download what is missing or damaged, then verify"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("model")
        p.add_argument("--model-root", required=True, metavar="DIR", help="local model root")
        p.add_argument("--dataset", help="only this dataset's files (coco, coco_person, voc)")
        p.add_argument("--precision", choices=("float", "int8"), help="only this precision")
        if name == "fetch":
            p.add_argument("--mirror", help="base URL of a mirror with the same layout")
            p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=func)
    p = sub.add_parser("identify", help="which published file a local file is (by sha256)")
    p.add_argument("file")
    p.set_defaults(func=run_identify)


def _chosen(args: argparse.Namespace) -> list[PublishedFile]:
    files = [
        f
        for f in published_files(args.model)
        if (args.dataset is None or f.dataset == args.dataset)
        and (args.precision is None or f.precision == args.precision)
    ]
    if not files:
        raise InputError(f"{args.model} publishes no file for this selection", record="files")
    return files


def run_list(args: argparse.Namespace) -> int:
    rows = [
        [f.model, f.dataset, f.precision, f"{f.bytes:,}", f.sha256, f.path]
        for f in published_files(args.model)
    ]
    print(table(["model", "dataset", "precision", "bytes", "sha256", "path"], rows))
    return 0


def run_info(args: argparse.Namespace) -> int:
    for f in published_files(args.model):
        print(
            f"{f.key}\n  zoo: {f.repository}/{f.folder}/{f.path}\n  url: {f.url()}\n"
            f"  bytes: {f.bytes:,}\n  sha256: {f.sha256}"
        )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    bad = []
    for f in _chosen(args):
        state = state_of(f, args.model_root)
        print(f"{f.key}: {state} ({f.local(args.model_root)})")
        if state != "ok":
            bad.append(
                f"{f.key} {state}: {f.local(args.model_root)} (sha256 {f.sha256}); "
                f"{fetch_command(f, args.model_root)}"
            )
    if bad:
        raise InputError("not the published files:\n  " + "\n  ".join(bad), path=args.model_root)
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    for f in _chosen(args):
        path = fetch_file(f, args.model_root, mirror=args.mirror, progress=not args.quiet)
        print(f"{f.key}: ok ({path})")
    return 0


def run_identify(args: argparse.Namespace) -> int:
    found = identify(args.file)
    if found is None:
        raise InputError(
            "not a published file of any reference (no sha256 matches)", path=args.file
        )
    print(f"{args.file}: {found.key} ({found.path})")
    return 0
