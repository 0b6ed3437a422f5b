"""``result.json``: the self-describing record of one ``evalkit run``, read and written.

The schema is defined by the types of :mod:`evalkit.record.run` and
:mod:`evalkit.record.variant`; in JSON it is the contract below (scripts depend on it;
bump ``SCHEMA_VERSION`` on any incompatible change). Required: ``schema_version``, the
fingerprint (version 2 on), and per variant ``detections`` and its protocols' ``AP50`` and
``per_class``; every other part may be absent in a record another writer made, and reads
as None. POINT is ``{"threshold", "tp", "fp", "num_gt", "precision", "recall", "f1"}``
(None where a number does not exist)::

    {
      "schema_version": 3,                # 1 (no fingerprint) and 2 (no analysis) are read
      "kind": "evalkit.run",
      "name": str, "created": ISO time, "config": {... every setting ...},
      "environment": {cpu, cores, python, packages, git, ...},
      "reference": {"model": str, "dataset": str, "comparable": bool, "why": str} | null,
      "fingerprint": {                    # what check and compare require to match
        "dataset": {"format", "split", "annotation_sha256", "ground_truth_sha256",
                    "image_list_sha256", "num_images", "num_annotations", "classes"},
        "settings": {"profile", "nms": {...}, "variants": {NAME: {"preprocessing",
                     "decoder", "batching"?}}}
      },
      "dataset": {"name", "format", "num_images", "num_annotations", "classes": [...],
                  "skipped": [{"image_id", "path", "reason"}]},
      "variants": {
        NAME: {
          "model": {"path", "bytes", "sha256", "precision", "format"},
          "runner": {...}, "decoder": {...}, "nms": {...}, "class_mapping": str,
          "detections": "detections_NAME.json",          # COCO results format
          "timings": {"decode_s", "preprocess_s", "inference_s", "postprocess_s",
                      "metrics_s", "wall_s", "images", "cached_images", "images_per_s",
                      "analysis_s"?},
          "latency": {... evalkit.bench.latency record ...} | null,
          "protocols": {
            PROTOCOL: {"AP50": float in [0, 1], "per_class": {class: AP}, "classes": [...],
                       "num_gt", "num_detections", "tp", "fp", "stats"?: [12 floats],
                       "pr_curves": {"recall": [101 points], "mean": [101],
                                     "per_class": {class: [101]}}}
          },
          "analysis"?: {                   # version 3; absent with analysis.enabled false
            "iou": float,                  # pycocotools' matching at this IoU, area all
            "operating_points": {"protocol", "iou", "thresholds": [scores],
              "overall": {"name", "num_gt", "best_f1": POINT | null, "at": [POINT, ...]},
              "per_class": [{... as overall, with "category_id"}],
              "overall_curve": {"thresholds": [0, 0.01, ..., 1], "precision": [...],
                                "recall": [...], "f1": [...]}},   # null where undefined
            "confusion": {"iou_threshold", "score_threshold", "labels": [..., "background"],
                          "rows", "columns", "matrix": [[int]]},
            "tide": {"pos_threshold", "background_threshold", "max_dets", "ap",
                     "delta_ap": {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"},
                     "special_delta_ap": {"FalsePos", "FalseNeg"}, "counts": {...}}
          }
        }
      }
    }
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalkit.jsonio import read_json
from evalkit.record.run import RunRecord


def validate(data: Any, path: Path | None = None) -> RunRecord:
    """The typed record of a ``result.json`` mapping; an InputError names the first field
    that breaks the contract above."""
    return RunRecord.from_dict(data, path)


def load_result(path: str | Path) -> RunRecord:
    """Read and validate a ``result.json`` (a directory means its ``result.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "result.json"
    return validate(read_json(path), path)


def write_result(path: str | Path, record: RunRecord) -> RunRecord:
    """Write atomically (a reader never sees half a file); returns the record as read back
    from what was written, so the file is known to honour the contract."""
    path = Path(path)
    data = record.to_dict()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    written = validate(json.loads(tmp.read_text()), path)
    tmp.replace(path)
    return written
