"""``evalkit datasets list | info | fetch | verify``: dataset manifests on the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from evalkit.datasets.fetch import FetchResult, fetch_dataset
from evalkit.datasets.manifest import MARKER_NAME, Manifest, load_manifests
from evalkit.datasets.verify import VerifyResult, verify_dataset

MIRROR_ENV = "EVALKIT_MIRROR"
# Long lists of bad files are cut here in the text output (--json has them all).
_SHOWN = 10


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "datasets",
        help="list, describe, download and verify the public datasets",
        description="Datasets described by the manifests in the repository's datasets/ folder.",
    )
    # Defined on each subcommand (not on 'datasets'): a subparser default would overwrite
    # a value given before the subcommand name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--manifests", metavar="DIR", help="folder of manifests to use instead")
    sub = parser.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")

    p = sub.add_parser("list", parents=[common], help="one line per dataset")
    p.set_defaults(func=run_list)

    p = sub.add_parser("info", parents=[common], help="everything a manifest says")
    p.add_argument("name")
    p.set_defaults(func=run_info)

    p = sub.add_parser(
        "fetch",
        parents=[common],
        help="download, check and unpack a dataset into ROOT/<name>",
        description="Resumes a partial download, checks size and digest, unpacks into a "
        "temporary folder and renames it into place; does nothing when already complete.",
    )
    p.add_argument("name")
    p.add_argument("--root", required=True, help="data folder that holds the datasets")
    p.add_argument(
        "--mirror",
        default=os.environ.get(MIRROR_ENV) or None,
        metavar="BASE_URL",
        help=f"fetch BASE_URL/<file name> instead of the manifest URLs (env {MIRROR_ENV})",
    )
    p.add_argument("--retries", type=int, default=3, help="retries per file (default 3)")
    p.add_argument("--keep-archives", action="store_true", help="keep archives after unpacking")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_fetch)

    p = sub.add_parser(
        "verify",
        parents=[common],
        help="check counts and image files against the manifest (exit 1 on failure)",
    )
    p.add_argument("name")
    p.add_argument("--root", required=True, help="data folder that holds the datasets")
    p.add_argument(
        "--no-decode", action="store_true", help="check that images exist, do not decode them"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_verify)


def _size(size: int | None) -> str:
    """Bytes in binary units ("777.8 MiB"); "unknown" for None."""
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _count(value: int | None) -> str:
    return "unknown" if value is None else str(value)


def _columns(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _download(m: Manifest) -> str:
    if m.view_of:
        return f"view of {m.view_of}"
    if m.is_local:
        return "local"
    sizes = [f.bytes for f in m.files]
    return _size(None if None in sizes else sum(s or 0 for s in sizes))


def render_list(manifests: Sequence[Manifest]) -> str:
    """One line per dataset: name, format, expected counts, download, title."""
    rows = [["dataset", "format", "images", "annotations", "download", "title"]]
    rows += [
        [
            m.name,
            m.format if m.view is None else f"{m.format}/{m.view}",
            _count(m.expected.images),
            _count(m.expected.annotations),
            _download(m),
            m.title,
        ]
        for m in manifests
    ]
    return _columns(rows) if manifests else "no dataset manifests found"


def render_info(m: Manifest) -> str:
    """Everything a manifest says, for people."""
    e, layout = m.expected, m.layout
    rows = [["format", m.format], ["manifest", str(m.source)]]
    if m.view_of:
        rows.append(["view", f"{m.view} annotations of {m.view_of} (same files and folder)"])
    rows += [[k, v] for k, v in (("homepage", m.homepage), ("license", m.license)) if v]
    rows += [
        ["folder", f"ROOT/{m.directory}"],
        ["images", layout.images],
        ["annotations", layout.annotations + (f" (split {layout.split})" if layout.split else "")],
        [
            "expected",
            f"{_count(e.images)} images, {_count(e.annotations)} annotations, "
            f"{_count(e.categories)} categories",
        ],
    ]
    lines = [f"{m.name}: {m.title}", _indent(_columns(rows))]
    if m.is_local:
        lines.append(f"  files        none (a local set: put it at ROOT/{m.directory} by hand)")
    for f in m.files:
        size = "size unknown" if f.bytes is None else f"{f.bytes} bytes ({_size(f.bytes)})"
        lines.append(f"  file {f.name}: {size}")
        detail = [["url", f.url], ["md5", f.md5 or "unknown"], ["sha256", f.sha256 or "unknown"]]
        detail.append(["unpacks", f"{f.archive} into {f.extract_to}"])
        if f.provides:
            detail.append(["provides", ", ".join(f.provides)])
        lines.append(_indent(_columns(detail), "    "))
    if m.notes:
        lines.append(f"  notes: {m.notes}")
    return "\n".join(lines)


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def render_fetch(result: FetchResult) -> str:
    """What fetch did, one line per archive."""
    if result.status == "already-complete":
        return f"{result.name}: already complete at {result.path} ({MARKER_NAME} matches)"
    lines = [f"{result.name}: fetched into {result.path}"]
    for f in result.files:
        how = f"{f.requests} request(s)" if f.requests else "already downloaded"
        if f.requests and f.resumed_from:
            how += f", resumed at byte {f.resumed_from}"
        lines.append(f"  {f.name}: {f.digest_kind} ok ({how})")
    return "\n".join(lines)


def _names(label: str, names: Sequence[str]) -> list[str]:
    """One line per name, cut after the first few."""
    shown = [f"  {label}: {n}" for n in names[:_SHOWN]]
    if len(names) > _SHOWN:
        shown.append(f"  ... and {len(names) - _SHOWN} more {label} (--json lists all)")
    return shown


def render_verify(result: VerifyResult) -> str:
    """PASS or FAIL, the counts against the manifest, and the bad image files."""
    lines = [f"{result.name} at {result.path}: {'PASS' if result.ok else 'FAIL'}"]
    lines += [f"  problem: {p}" for p in result.problems]
    # Counts that could not be taken (no folder, unusable annotations) are already a problem.
    for c in result.counts if any(c.actual is not None for c in result.counts) else ():
        if c.expected is None:
            verdict = "not checked (expected count unknown)"
        else:
            verdict = f"expected {c.expected}: " + ("ok" if c.ok else "MISMATCH")
        lines.append(f"  {c.what:<12} {_count(c.actual):>8}  {verdict}")
    bad = {"missing": result.missing, "empty": result.empty, "unreadable": result.unreadable}
    lines.append(
        f"  image files  {result.images_checked} checked: "
        + ", ".join(f"{len(v)} {k}" for k, v in bad.items())
    )
    for label, names in bad.items():
        lines += _names(label, names)
    if result.has_marker is False:
        lines.append(f"  note: no {MARKER_NAME} (not made by evalkit fetch)")
    return "\n".join(lines)


def run_list(args: argparse.Namespace) -> int:
    """``datasets list``."""
    registry = load_manifests(args.manifests)
    print(render_list([registry.get(n) for n in sorted(registry.names())]))
    return 0


def run_info(args: argparse.Namespace) -> int:
    """``datasets info NAME``."""
    print(render_info(load_manifests(args.manifests).get(args.name)))
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """``datasets fetch NAME --root DIR``; errors raise FetchError (exit 2)."""
    manifest = load_manifests(args.manifests).get(args.name)
    result = fetch_dataset(
        manifest,
        args.root,
        mirror=args.mirror,
        progress=not args.quiet and sys.stderr.isatty(),
        retries=args.retries,
        keep_archives=args.keep_archives,
    )
    print(render_fetch(result))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """``datasets verify NAME --root DIR``: exit 0 when it passes, 1 when it fails."""
    manifest = load_manifests(args.manifests).get(args.name)
    result = verify_dataset(manifest, args.root, decode=not args.no_decode)
    print(json.dumps(result.to_dict(), indent=2) if args.json else render_verify(result))
    return 0 if result.ok else 1
