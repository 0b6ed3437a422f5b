"""The published model files of the references (``files`` of each card's datasets), where
they live in the zoo, and where a local copy is: listed, verified by sha256, fetched from
the zoo's Git LFS media URLs with the dataset fetcher's resumable, checked, atomic download.

A local copy sits under a model root as ``ROOT/<model>/<path in the zoo folder>``, the
zoo's own layout; ``EVALKIT_MODEL_MIRROR`` (or ``--mirror``) replaces the zoo's media host
with a folder of the same layout (an HTTP server, or a company mirror).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from evalkit.datasets.fetch import FetchError, download, file_digest
from evalkit.datasets.manifest import FileSpec
from evalkit.errors import InputError
from evalkit.references import Reference, list_references, load_reference

# Git LFS objects of a public GitHub repository are served from this host by path.
MEDIA_URL = "https://media.githubusercontent.com/media/{repository}/main/{path}"
MIRROR_ENV = "EVALKIT_MODEL_MIRROR"

State = Literal["ok", "missing", "mismatch"]


@dataclass(frozen=True)
class PublishedFile:
    """One published model file: which card, dataset and precision it is, its zoo path
    (relative to the model's zoo folder), size and sha256 (its LFS oid)."""

    model: str
    dataset: str
    precision: str
    path: str
    bytes: int
    sha256: str
    repository: str
    folder: str  # the model's folder in the zoo repository

    @property
    def key(self) -> str:
        return f"{self.model}/{self.dataset}/{self.precision}"

    def url(self, mirror: str | None = None) -> str:
        """Where it downloads from: the zoo's LFS media, or ``MIRROR/<model>/<path>``."""
        if mirror:
            return f"{mirror.rstrip('/')}/{self.model}/{self.path}"
        return MEDIA_URL.format(repository=self.repository, path=f"{self.folder}/{self.path}")

    def local(self, root: str | Path) -> Path:
        return Path(root) / self.model / self.path


def published_files(model: str | None = None) -> list[PublishedFile]:
    """Every published file of one reference (or of all), in card order."""
    names = [model] if model is not None else list(list_references())
    return [f for name in names for f in _files(load_reference(name))]


def card_files(model: str, dataset: str) -> dict[str, PublishedFile]:
    """The published files of one card row, by precision."""
    return {f.precision: f for f in published_files(model) if f.dataset == dataset}


def _files(reference: Reference) -> list[PublishedFile]:
    out = []
    for key, dataset in reference.datasets.items():
        for precision, file in (dataset.files or {}).items():
            out.append(
                PublishedFile(
                    reference.model,
                    key,
                    precision,
                    file.path,
                    file.bytes,
                    file.sha256,
                    reference.source.repository,
                    reference.source.path,
                )
            )
    return out


def state_of(file: PublishedFile, root: str | Path) -> State:
    """Whether the local copy under ``root`` is there and is the published file."""
    path = file.local(root)
    if not path.is_file():
        return "missing"
    if path.stat().st_size != file.bytes or file_digest(path, "sha256") != file.sha256:
        return "mismatch"
    return "ok"


def identify(path: str | Path) -> PublishedFile | None:
    """The published file a local file is (by sha256), wherever it lies; None if none."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    size = path.stat().st_size
    candidates = [f for f in published_files() if f.bytes == size]
    if not candidates:
        return None
    digest = file_digest(path, "sha256")
    return next((f for f in candidates if f.sha256 == digest), None)


def fetch_file(
    file: PublishedFile, root: str | Path, *, mirror: str | None = None, progress: bool = False
) -> Path:
    """The verified local copy of ``file`` under ``root``, downloaded (resuming a ``.part``)
    when it is missing or damaged; a damaged copy is replaced, never kept."""
    target = file.local(root)
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    spec = FileSpec(
        name=target.name,
        url=file.url(mirror),
        bytes=file.bytes,
        md5=None,
        sha256=file.sha256,
        archive="zip",  # the archive kind is unused for a single file
    )
    try:
        path, _ = download(spec, target.parent, progress=progress)
    except FetchError as exc:
        raise FetchError(f"{file.key}: {exc.problem}", path=exc.path) from None
    return path


def fetch_command(file: PublishedFile, root: str | Path) -> str:
    return (
        f"evalkit models fetch {file.model} --dataset {file.dataset} --precision "
        f"{file.precision} --model-root {root}"
    )
