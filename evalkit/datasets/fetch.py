"""Verified, resumable dataset download: fetch archives, check them, unpack atomically.

Layout under a data root::

    ROOT/.downloads/NAME.part   a download in progress (resumed with an HTTP Range request)
    ROOT/.downloads/NAME        a downloaded archive whose size and digest matched
    ROOT/.DIR.partial-XXXX/     archives being unpacked (never looks like a dataset)
    ROOT/DIR/                   the dataset, renamed into place with its completion marker
"""

from __future__ import annotations

import hashlib
import http.client
import json
import secrets
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from evalkit._version import __version__
from evalkit.datasets.manifest import MARKER_NAME, ArchiveKind, FileSpec, Manifest
from evalkit.errors import InputError

DOWNLOADS = ".downloads"
_CHUNK = 1 << 20


class FetchError(InputError):
    """A download or archive that cannot be used: bad digest, wrong size, corrupt, HTTP error."""


class _TransientError(Exception):
    """A failure worth retrying (dropped connection, timeout, 5xx); the .part file is kept."""


class _CompleteError(Exception):
    """The server says there is nothing after the bytes we already have."""


@dataclass(frozen=True)
class FileOutcome:
    """What fetching one archive took: HTTP requests, and the byte a resumed download began at."""

    name: str
    url: str
    digest_kind: str
    digest: str
    requests: int
    resumed_from: int


@dataclass(frozen=True)
class FetchResult:
    """The dataset folder and whether this call installed it or found it complete."""

    name: str
    path: Path
    status: Literal["fetched", "already-complete"]
    files: tuple[FileOutcome, ...]

    @property
    def requests(self) -> int:
        """HTTP requests this fetch made (0 when it found the dataset complete)."""
        return sum(f.requests for f in self.files)


def resolve_url(spec: FileSpec, mirror: str | None) -> str:
    """The manifest URL, or ``MIRROR/NAME`` when a mirror (a flat folder of archives) is set."""
    return spec.url if not mirror else f"{mirror.rstrip('/')}/{spec.name}"


def file_digest(path: Path, kind: str) -> str:
    """Hex digest (``md5`` or ``sha256``) of a file, read in chunks."""
    h = hashlib.new(kind, usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _check_file(path: Path, spec: FileSpec) -> None:
    """Size and digest against the manifest; a file that fails is deleted."""
    size = path.stat().st_size
    if spec.bytes is not None and size != spec.bytes:
        path.unlink()
        raise FetchError(
            f"size mismatch: expected {spec.bytes} bytes, got {size}; the file was deleted",
            path=path,
        )
    kind, expected = spec.digest
    actual = file_digest(path, kind)
    if actual != expected:
        path.unlink()
        raise FetchError(
            f"{kind} mismatch: expected {expected}, got {actual}; the file was deleted",
            path=path,
        )


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range: bytes A-B/T`` (or ``*/T``) header."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    first = span.partition("-")[0]
    return (
        int(first) if first.isdigit() else None,
        int(total) if total.isdigit() else None,
    )


def _open(url: str, part: Path, have: int, timeout_s: float) -> http.client.HTTPResponse:
    """Ask for the bytes after ``have``; failures are sorted into retry-worthy or final."""
    headers = {"User-Agent": f"evalkit/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response: http.client.HTTPResponse = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout_s
        )
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            _, total = _content_range(exc.headers.get("Content-Range"))
            if total == have:  # the .part already holds the whole file
                raise _CompleteError from None
            part.unlink(missing_ok=True)  # not a prefix of the file: the next try starts over
            raise _TransientError(f"server refused to resume at byte {have}") from None
        if exc.code in (408, 429) or exc.code >= 500:
            raise _TransientError(f"HTTP {exc.code} {exc.reason}") from None
        raise FetchError(f"HTTP {exc.code} {exc.reason}", path=url) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _TransientError(f"cannot connect: {exc}") from None
    return response


def _transfer(url: str, part: Path, spec: FileSpec, progress: bool, timeout_s: float) -> int:
    """One HTTP request appending to (or restarting) ``part``; returns the bytes it held before."""
    have = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, part, have, timeout_s)
    except _CompleteError:
        return have
    with response:
        first, total = _content_range(response.headers.get("Content-Range"))
        if response.status == 206 and first == have:
            mode = "ab"
        elif response.status == 200:
            mode, have = "wb", 0  # no Range sent, or the server ignored it: start over
            total = _int_header(response.headers.get("Content-Length"))
        else:
            part.unlink(missing_ok=True)
            raise _TransientError(f"unexpected reply {response.status} to a resume request")
        if spec.bytes is not None and total is not None and total != spec.bytes:
            part.unlink(missing_ok=True)
            raise FetchError(
                f"server reports {total} bytes, the manifest expects {spec.bytes}", path=url
            )
        length = _int_header(response.headers.get("Content-Length"))
        received = 0
        with (
            part.open(mode) as out,
            tqdm(
                total=total,
                initial=have,
                desc=spec.name,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise _TransientError(
                    f"connection lost after {have + received} bytes: {exc}"
                ) from None
        # http.client returns a short body without complaint when the peer closes early.
        if length is not None and received < length:
            raise _TransientError(
                f"connection closed after {have + received} of {have + length} bytes"
            )
    return have


def _int_header(value: str | None) -> int | None:
    """A numeric header value, or None when absent or not a plain integer."""
    return int(value) if value is not None and value.isdigit() else None


def download(
    spec: FileSpec,
    downloads: Path,
    *,
    mirror: str | None = None,
    progress: bool = False,
    retries: int = 3,
    retry_wait_s: float = 1.0,
    timeout_s: float = 60.0,
) -> tuple[Path, FileOutcome]:
    """Download one archive into ``downloads`` (resuming a ``.part``), then check it."""
    url = resolve_url(spec, mirror)
    kind, digest = spec.digest
    target = downloads / spec.name
    part = downloads / f"{spec.name}.part"
    if retries < 0:
        raise InputError(f"retries must be >= 0, got {retries}")
    requests, resumed_from = 0, 0
    if target.exists():
        try:
            _check_file(target, spec)
            return target, FileOutcome(spec.name, url, kind, digest, 0, 0)
        except FetchError:
            pass  # a damaged earlier download was deleted by the check: fetch it again
    downloads.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        if spec.bytes is not None and have > spec.bytes:
            part.unlink()  # longer than the file can be: not a prefix of it
        if spec.bytes is not None and have == spec.bytes:
            resumed_from = have
            break  # complete on disk already; the digest check below decides
        requests += 1
        try:
            held = _transfer(url, part, spec, progress, timeout_s)
            resumed_from = resumed_from or held
            break
        except _TransientError as exc:
            if attempt == retries:
                raise FetchError(
                    f"download failed after {retries + 1} attempts ({exc}); "
                    f"{part.name} is kept: fetch again to resume",
                    path=url,
                ) from None
            time.sleep(retry_wait_s * 2**attempt)
    _check_file(part, spec)
    part.replace(target)
    return target, FileOutcome(spec.name, url, kind, digest, requests, resumed_from)


def extract(archive: Path, kind: ArchiveKind, dest: Path) -> None:
    """Unpack a zip or tar (any compression) into ``dest``, refusing paths that leave it."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(dest)  # zipfile drops absolute and '..' parts of member names
        else:
            with tarfile.open(archive, "r:*") as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest, filter="data")
                else:  # a Python before PEP 706 (3.10.12, 3.11.4): check members ourselves
                    _refuse_unsafe(tf, archive)
                    tf.extractall(dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        raise FetchError(
            f"cannot unpack {kind} archive (truncated, corrupt or unsafe): {exc}", path=archive
        ) from None


def _refuse_unsafe(tf: tarfile.TarFile, archive: Path) -> None:
    """Refuse members that could write outside the destination (absolute, '..', links)."""
    for member in tf.getmembers():
        name = member.name
        if name.startswith("/") or ".." in Path(name).parts or member.issym() or member.islnk():
            raise FetchError(f"cannot unpack tar archive: unsafe member {name!r}", path=archive)


def _marker(manifest: Manifest) -> dict[str, Any]:
    return {
        "schema": 1,
        "dataset": manifest.directory,
        "files": [{"name": f.name, "digest": list(f.digest)} for f in manifest.files],
        "evalkit_version": __version__,
        "completed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def check_marker(manifest: Manifest, dataset_dir: Path) -> None:
    """Raise unless ``dataset_dir`` holds a complete fetch of exactly the manifest's files."""
    marker = dataset_dir / MARKER_NAME
    if not marker.is_file():
        raise FetchError(
            f"folder exists but has no {MARKER_NAME}: it was not made by evalkit fetch; "
            "remove it to fetch, or use verify to check it as it is",
            path=dataset_dir,
        )
    try:
        data = json.loads(marker.read_text())
        recorded = [(f["name"], list(f["digest"])) for f in data["files"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise FetchError(f"unreadable completion marker: {exc}", path=marker) from None
    wanted = [(f.name, list(f.digest)) for f in manifest.files]
    if recorded != wanted:
        raise FetchError(
            f"fetched from other files than the manifest lists (recorded {recorded}, "
            f"expected {wanted}); remove the folder to fetch again",
            path=marker,
        )
    for path in (manifest.layout.images, manifest.layout.annotations):
        if not (dataset_dir / path).exists():
            raise FetchError(
                f"marked complete but {path} is missing; remove the folder to fetch again",
                path=dataset_dir,
            )


def fetch_dataset(
    manifest: Manifest,
    root: str | Path,
    *,
    mirror: str | None = None,
    progress: bool = False,
    retries: int = 3,
    retry_wait_s: float = 1.0,
    timeout_s: float = 60.0,
    keep_archives: bool = False,
) -> FetchResult:
    """Download, check and unpack a dataset into ``root/<directory>``; a no-op when complete."""
    root = Path(root)
    final = root / manifest.directory
    if manifest.is_local:
        raise FetchError(
            f"{manifest.name} is a local set with nothing to download: put it at {final} "
            "and run verify",
            path=manifest.source,
        )
    if final.exists():
        check_marker(manifest, final)
        return FetchResult(manifest.name, final, "already-complete", ())
    root.mkdir(parents=True, exist_ok=True)
    downloads = root / DOWNLOADS
    fetched = [
        download(
            spec,
            downloads,
            mirror=mirror,
            progress=progress,
            retries=retries,
            retry_wait_s=retry_wait_s,
            timeout_s=timeout_s,
        )
        for spec in manifest.files
    ]
    prefix = f".{manifest.directory}.partial-"
    for stale in root.glob(f"{prefix}*"):
        shutil.rmtree(stale)  # left by a fetch that was killed while unpacking
    # Not mkdtemp: its 0o700 would become the dataset folder's mode; mkdir follows the umask.
    staging = root / f"{prefix}{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        for (archive, _), spec in zip(fetched, manifest.files, strict=True):
            extract(archive, spec.archive, staging / spec.extract_to)
            for path in spec.provides:
                if not (staging / spec.extract_to / path).exists():
                    raise FetchError(f"archive does not contain {path}", path=archive)
        for path in (manifest.layout.images, manifest.layout.annotations):
            if not (staging / path).exists():
                raise FetchError(f"unpacked archives do not contain {path}", path=staging)
        # The marker goes in before the rename, so the folder appears complete or not at all.
        (staging / MARKER_NAME).write_text(json.dumps(_marker(manifest), indent=2) + "\n")
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not keep_archives:
        for archive, _ in fetched:
            archive.unlink()
        if not any(downloads.iterdir()):
            downloads.rmdir()
    return FetchResult(manifest.name, final, "fetched", tuple(o for _, o in fetched))
