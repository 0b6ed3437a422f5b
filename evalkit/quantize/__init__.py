"""Static int8 quantization the way the model zoo made its int8 files, and float-vs-int8
diagnostics.

onnxruntime is imported when this package is; the CLI imports it only when a quantize or
diagnose command runs.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evalkit.hashing import file_sha256, settings_key
from evalkit.quantize.calibration import (
    DEFAULT_FRACTION,
    CalibrationSample,
    ImageCalibrationReader,
    dataset_images,
    folder_images,
    sample_images,
)
from evalkit.quantize.static import (
    METHODS,
    QUANT_TYPES,
    ZOO_SETTINGS,
    ModelFileInfo,
    QuantizeResult,
    QuantizeSettings,
    quantize_model,
)

if TYPE_CHECKING:
    from evalkit.datasets.dataset import Dataset

__all__ = [
    "DEFAULT_FRACTION",
    "METHODS",
    "QUANT_TYPES",
    "ZOO_SETTINGS",
    "CalibrationSample",
    "ImageCalibrationReader",
    "ModelFileInfo",
    "QuantizeResult",
    "QuantizeSettings",
    "RunQuantization",
    "dataset_images",
    "folder_images",
    "quantize_for_run",
    "quantize_model",
    "sample_images",
]


@dataclass(frozen=True)
class RunQuantization:
    """The int8 model a run made (or reused) and the calibration images it saw."""

    path: Path
    calibration: CalibrationSample


def quantize_for_run(
    float_path: str | Path,
    out_path: str | Path,
    dataset: Dataset,
    *,
    count: int | None = None,
    seed: int = 0,
    progress: bool = True,
    calibration_dir: str | Path | None = None,
) -> RunQuantization:
    """Zoo-settings int8 model calibrated on 1% (or ``count``) of ``dataset``'s images, or
    of the images in ``calibration_dir`` (e.g. a training split) when given.

    The result record (settings, the exact calibration files, digests) is written beside
    the model as ``<name>.quantize.json``; the int8 model's path and the calibration sample
    are returned.
    """
    if calibration_dir is not None:
        files = tuple(folder_images(calibration_dir))
        source = f"folder {calibration_dir}"
    else:
        files = tuple(dataset.image_path(i) for i in range(len(dataset)))
        source = f"dataset {dataset.name} ({dataset.image_dir})"
    sample = sample_images(files, source, count=count, seed=seed)
    out_path = Path(out_path)
    record = out_path.with_suffix(".quantize.json")
    # A resumed run reuses the int8 model when nothing that shapes it has changed
    # (quantization is deterministic, so re-making it would only cost time).
    reuse_key = settings_key(
        {
            "float": file_sha256(float_path),
            "settings": ZOO_SETTINGS.to_dict(),
            # Contents, not only names: an image edited in place calibrates differently.
            "calibration": [[str(f), file_sha256(f)] for f in sample.files],
        }
    )
    if record.is_file() and out_path.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            previous = json.loads(record.read_text())
            if previous["reuse_key"] == reuse_key and previous["int8_model"][
                "sha256"
            ] == file_sha256(out_path):
                return RunQuantization(out_path, sample)
    result = quantize_model(float_path, out_path, sample, ZOO_SETTINGS, progress=progress)
    record.write_text(json.dumps({**result.to_dict(), "reuse_key": reuse_key}, indent=2) + "\n")
    return RunQuantization(result.int8_model.path, sample)
