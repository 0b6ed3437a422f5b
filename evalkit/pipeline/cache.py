"""Predictions kept on disk as they are made, so a killed run resumes where it stopped.

One JSON-lines file per variant: a header line with a key (hashes of the model file and of
every setting that shapes the predictions), then one line per image. A file whose key
differs is never mixed in: it is moved aside and the run starts over for that variant. A
torn last line (the process died mid-write) is dropped on load. Coordinates and scores are
float32 values written as exact decimal floats, so reloaded predictions are bit-identical.

Each line also carries the :class:`ImageStamp` of the image it was made from (file size,
modification time, sha256 of the bytes, size as decoded): the predictor re-predicts an
image whose bytes changed since, even under the same name and size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from evalkit.hashing import file_sha256, settings_key
from evalkit.types import ImageDetections

__all__ = ["CACHE_FORMAT", "ImageStamp", "PredictionCache", "file_sha256", "settings_key"]

CACHE_FORMAT = 2


@dataclass(frozen=True)
class ImageStamp:
    """The image file a prediction was made from, and its size as decoded."""

    bytes: int
    mtime_ns: int
    sha256: str
    width: int
    height: int

    @classmethod
    def of(cls, path: Path, width: int, height: int) -> ImageStamp:
        stat = path.stat()
        return cls(stat.st_size, stat.st_mtime_ns, file_sha256(path), width, height)

    def still_matches(self, path: Path) -> bool:
        """Whether ``path`` still holds these bytes: size and mtime first, the hash when
        either moved (a touched but unchanged file is still the same image)."""
        try:
            stat = path.stat()
        except OSError:
            return False
        if (stat.st_size, stat.st_mtime_ns) == (self.bytes, self.mtime_ns):
            return True
        return stat.st_size == self.bytes and file_sha256(path) == self.sha256


Entry = tuple[ImageDetections, ImageStamp]


def _encode(index: int, dets: ImageDetections, stamp: ImageStamp) -> str:
    return json.dumps(
        {
            "i": index,
            "img": asdict(stamp),
            "b": np.asarray(dets.boxes_xyxy_norm, np.float32).astype(np.float64).tolist(),
            "s": np.asarray(dets.scores, np.float32).astype(np.float64).tolist(),
            "c": np.asarray(dets.class_index, np.int64).tolist(),
        }
    )


def _decode(record: Mapping[str, Any]) -> tuple[int, Entry]:
    boxes = np.asarray(record["b"], np.float32).reshape(-1, 4)
    dets = ImageDetections(
        boxes_xyxy_norm=boxes,
        scores=np.asarray(record["s"], np.float32),
        class_index=np.asarray(record["c"], np.int64),
    )
    return int(record["i"]), (dets, ImageStamp(**record["img"]))


class PredictionCache:
    """Append-only store of per-image predictions under one key."""

    def __init__(self, path: str | Path, key: str) -> None:
        self.path = Path(path)
        self.key = key
        self.discarded: Path | None = None
        self._handle: IO[str] | None = None

    def load(self) -> dict[int, Entry]:
        """Predictions already made under this key (empty when none or when stale)."""
        if not self.path.is_file():
            return {}
        lines = self.path.read_text().split("\n")
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            header = {}
        if header.get("key") != self.key or header.get("format") != CACHE_FORMAT:
            self._set_aside()
            return {}
        done: dict[int, Entry] = {}
        for line in lines[1:]:
            if not line:
                continue
            try:
                index, dets = _decode(json.loads(line))
            except (json.JSONDecodeError, KeyError, ValueError, TypeError):
                break  # a torn line can only be the last one written
            done[index] = dets
        # Rewrite without the torn tail so appends continue on a clean line.
        self._rewrite(done)
        return done

    def _set_aside(self) -> None:
        stale = self.path.with_suffix(self.path.suffix + ".stale")
        self.path.replace(stale)
        self.discarded = stale

    def _rewrite(self, done: Mapping[int, Entry]) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w") as handle:
            handle.write(json.dumps({"format": CACHE_FORMAT, "key": self.key}) + "\n")
            for index in sorted(done):
                handle.write(_encode(index, *done[index]) + "\n")
        tmp.replace(self.path)

    def append(self, index: int, dets: ImageDetections, stamp: ImageStamp) -> None:
        """Record one image's predictions (flushed, so a kill loses at most this line)."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.is_file()
            self._handle = self.path.open("a")
            if fresh:
                self._handle.write(json.dumps({"format": CACHE_FORMAT, "key": self.key}) + "\n")
        self._handle.write(_encode(index, dets, stamp) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
