"""Calibration images for static quantization: where they come from, which were drawn, and
an onnxruntime ``CalibrationDataReader`` that streams them through evaluation pre-processing.

reference-pipeline.md section 5: the zoo calibrated on a random 1% of the evaluation image
folder with the evaluation pre-processing. Here the draw is seeded and recorded: the
candidate images are put in a fixed order (file names sorted for a folder, the dataset's own
order for a dataset), ``numpy.random.default_rng(seed).choice(population, k,
replace=False)`` picks ``k`` of them, and they are fed in candidate order. ``k`` is
``floor(population * fraction)`` (at least 1), or an explicit count.

A dataset is named by a SPEC, ``KIND:FIRST:SECOND`` with KIND a registered dataset kind:

* ``coco:ANNOTATIONS.json:IMAGES_DIR`` - every image listed in a COCO annotation file;
* ``coco_person:ANNOTATIONS.json:IMAGES_DIR`` - the COCO-Person view (images with a person);
* ``voc:YEAR_DIR:SPLIT`` - a Pascal VOC split, e.g. ``voc:VOCdevkit/VOC2007:test``.

The zoo drew COCO-Person's calibration images from all of val2017, i.e. ``coco:...``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from tqdm import tqdm

from evalkit.datasets.images import decode_rgb, image_size
from evalkit.datasets.preprocess import Preprocessor
from evalkit.errors import InputError

__all__ = [
    "DEFAULT_FRACTION",
    "IMAGE_SUFFIXES",
    "SELECTION_RULE",
    "CalibrationSample",
    "ImageCalibrationReader",
    "dataset_images",
    "folder_images",
    "sample_images",
]

DEFAULT_FRACTION = 0.01
# What cv2.imread decodes and evaluation folders hold; compared case-insensitively.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SELECTION_RULE = (
    "numpy.random.default_rng(seed).choice(population, k, replace=False), fed in "
    "population order (sorted file names for a folder, dataset order for a dataset); "
    "k = floor(population * fraction), at least 1, unless a count is given"
)


@dataclass(frozen=True)
class CalibrationSample:
    """The calibration images drawn from a source, and how they were drawn."""

    source: str
    population: int
    files: tuple[Path, ...]
    seed: int
    fraction: float | None
    requested_count: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record, the exact file list included."""
        return {
            "source": self.source,
            "population": self.population,
            "count": len(self.files),
            "requested_count": self.requested_count,
            "fraction": self.fraction,
            "seed": self.seed,
            "selection": SELECTION_RULE,
            "files": [str(f) for f in self.files],
        }


def folder_images(directory: str | Path) -> tuple[Path, ...]:
    """The image files directly inside ``directory``, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "is a file" if directory.exists() else "does not exist"
        raise InputError(f"expected a folder of calibration images, but it {what}", path=directory)
    files = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise InputError(
            f"empty calibration set: expected image files ({', '.join(IMAGE_SUFFIXES)}) in "
            "this folder, found none",
            path=directory,
        )
    return tuple(files)


def dataset_images(spec: str) -> tuple[Path, ...]:
    """The image files of a dataset SPEC (``KIND:FIRST:SECOND``), in dataset order."""
    from evalkit.datasets.dataset import DATASETS

    kind, sep, rest = spec.partition(":")
    parts = rest.split(":") if sep else []
    if len(parts) != 2 or not all(parts):
        raise InputError(
            "expected a dataset SPEC KIND:FIRST:SECOND, e.g. coco:ANNOTATIONS.json:IMAGES_DIR "
            f"or voc:YEAR_DIR:SPLIT (kinds: {', '.join(DATASETS.names())}), got {spec!r}"
        )
    dataset = DATASETS.get(kind)(parts[0], parts[1])
    files = tuple(dataset.image_path(i) for i in range(len(dataset)))
    if not files:
        raise InputError("empty calibration set: the dataset lists no images", record=spec)
    return files


def _sample_size(population: int, count: int | None, fraction: float | None, source: str) -> int:
    """How many images to draw; a count beyond the population is an error."""
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InputError(f"expected a calibration count >= 1, got {count!r}", record=source)
        if count > population:
            raise InputError(
                f"asked for {count} calibration images but the calibration set holds only "
                f"{population}",
                path=source,
            )
        return count
    if fraction is None or not 0 < fraction <= 1:
        raise InputError(f"expected a calibration fraction in (0, 1], got {fraction!r}")
    # Exact decimal arithmetic: 0.01 of 4952 must be 49, whatever float rounding says.
    return max(1, int(Fraction(str(fraction)) * population))


def sample_images(
    files: Sequence[Path],
    source: str,
    *,
    count: int | None = None,
    fraction: float | None = DEFAULT_FRACTION,
    seed: int = 0,
    check: bool = True,
) -> CalibrationSample:
    """A seeded random draw from ``files``; ``count`` wins over ``fraction``.

    ``check`` reads each drawn file's header first, so a missing or unreadable image fails
    before any quantization work starts (a truncated one still fails when it is decoded).
    """
    if not files:
        raise InputError("empty calibration set: no image files to draw from", path=source)
    k = _sample_size(len(files), count, fraction, source)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(files), size=k, replace=False))
    drawn = tuple(Path(files[int(i)]) for i in chosen)
    if check:
        for path in drawn:
            image_size(path)
    return CalibrationSample(
        source=source,
        population=len(files),
        files=drawn,
        seed=seed,
        fraction=None if count is not None else fraction,
        requested_count=count,
    )


class ImageCalibrationReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds image files one at a time, decoded and pre-processed as for evaluation.

    Only the current image is held in memory. ``read_s`` accumulates decode and
    pre-processing time; ``fed`` counts the images handed to onnxruntime.
    """

    def __init__(
        self,
        files: Sequence[Path],
        input_name: str,
        preprocessor: Preprocessor,
        *,
        progress: bool = True,
        description: str = "calibrate",
    ) -> None:
        self.files = tuple(files)
        self.input_name = input_name
        self.preprocessor = preprocessor
        self.fed = 0
        self.read_s = 0.0
        self._bar = tqdm(
            total=len(self.files),
            desc=description,
            unit="img",
            disable=not progress,
            dynamic_ncols=True,
        )

    def get_next(self) -> dict[str, Any] | None:
        """The next image as ``{input_name: batch of one}``, or None when all were fed."""
        if self.fed >= len(self.files):
            self._bar.close()
            return None
        path = self.files[self.fed]
        start = time.perf_counter()
        image = decode_rgb(path)  # an unreadable file raises an InputError naming it
        try:
            tensor = self.preprocessor.apply(image)
        except ValueError as exc:
            raise InputError(f"calibration image: {exc}", path=path) from exc
        self.read_s += time.perf_counter() - start
        self.fed += 1
        self._bar.update(1)
        return {self.input_name: tensor}

    def __len__(self) -> int:
        return len(self.files)
