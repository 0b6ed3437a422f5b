"""Train the demo ssd_mobilenetv2 on the synthetic shapes dataset and record how well it does.

Generates the dataset (or reuses it), trains on CPU, saves the checkpoint into
``evalkit/demo_model/``, then scores the saved weights the way evalkit scores any model:
zoo-form ONNX export -> onnxruntime -> st-ssd decode -> NMS 0.5/0.001/100 -> AP, in float and
as the zoo-settings int8 model calibrated on training images. The record
(``ssd_mobilenetv2_demo.json``) holds everything needed to make the checkpoint again.

    python scripts/train_demo.py            # about 20 minutes on 2 CPU cores
    python scripts/train_demo.py --evaluate-only   # re-score the saved checkpoint
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from evalkit.datasets.dataset import Dataset, open_coco
from evalkit.datasets.synthetic import SyntheticDataset, generate
from evalkit.hashing import file_sha256
from evalkit.metrics import DEFAULT_PROTOCOLS as PROTOCOLS
from evalkit.models.export import export_onnx
from evalkit.models.ssd_mobilenetv2 import (
    DEMO_EXTRAS,
    DEMO_LAST_CHANNEL,
    DEMO_WIDTH_MULT,
    SSDMobileNetV2,
    count_parameters,
    load_checkpoint,
    ssd_mobilenetv2_demo,
)
from evalkit.models.train import (
    MIN_NEGATIVES,
    MONITOR_SCORE_THRESHOLD,
    NEG_POS_RATIO,
    TrainSettings,
    load_train_data,
    save_state,
    train,
)
from evalkit.pipeline.score import evaluate_runner
from evalkit.postprocess.decoders import ST_SSD_OUTPUT_NAMES
from evalkit.provenance import environment
from evalkit.runners.torch import TorchRunner
from evalkit.types import EvalResult

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "evalkit" / "demo_model"
CHECKPOINT_NAME = "ssd_mobilenetv2_demo.pt"
RECORD_NAME = "ssd_mobilenetv2_demo.json"
MAX_CHECKPOINT_BYTES = 5_000_000
# The zoo's smallest prior is 60 px of 300: objects much smaller than that never reach IoU
# 0.5 with any prior, so the demo data keeps shapes at 0.2-0.7 of the shorter image side.
DATASET = {
    "num_train": 1500,
    "num_val": 100,
    "image_size": (320, 240),
    "size_variety": 0.2,
    "empty_fraction": 0.1,
    "max_objects": 4,
    "object_size": (0.2, 0.7),
    "jpeg_quality": 90,
}
CALIBRATION_COUNT = 32


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse; True when applied (Linux glibc only)."""
    # A training step frees and re-allocates hundreds of MB of activations. glibc hands big
    # blocks back to the kernel (mmap/munmap, heap trim), so every step faults them in again:
    # ~200k page faults per step measured here, about a third of the step time on 2 cores.
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**30))


def torch_ap50(
    dataset: Dataset, class_names: Sequence[str], score_threshold: float = MONITOR_SCORE_THRESHOLD
) -> Callable[[SSDMobileNetV2], float]:
    """A ``validate`` callback: coco AP50 of the eager model on ``dataset`` (a monitor)."""

    def run(model: SSDMobileNetV2) -> float:
        runner = TorchRunner(model, output_names=ST_SSD_OUTPUT_NAMES, batch_size=16)
        results = evaluate_runner(
            dataset, runner, class_names, ("coco",), score_threshold=score_threshold
        )
        return results["coco"].ap

    return run


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options; defaults are the settings the committed checkpoint was made with."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=REPO / "runs" / "demo_data")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/evalkit_demo_train"))
    parser.add_argument("--out-dir", type=Path, default=DEMO_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--batch-size", type=int, default=TrainSettings.batch_size)
    parser.add_argument("--lr", type=float, default=TrainSettings.lr)
    parser.add_argument("--threads", type=int, default=TrainSettings.threads)
    parser.add_argument("--eval-every", type=int, default=TrainSettings.eval_every)
    parser.add_argument("--target-ap50", type=float, default=None)
    parser.add_argument("--time-limit-s", type=float, default=None)
    parser.add_argument("--calibration-count", type=int, default=CALIBRATION_COUNT)
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="skip training: score the checkpoint in --out-dir using --work-dir's training log",
    )
    return parser.parse_args(argv)


def make_dataset(root: Path, seed: int) -> tuple[SyntheticDataset, Dataset, Dataset]:
    """The synthetic dataset (generated once, reused after) and its two COCO splits."""
    synthetic = generate(root, seed=seed, **DATASET)  # type: ignore[arg-type]
    train_set = open_coco(
        synthetic.coco_annotation_file("train"), synthetic.coco_image_dir("train")
    )
    val_set = open_coco(synthetic.coco_annotation_file("val"), synthetic.coco_image_dir("val"))
    return synthetic, train_set, val_set


def run_training(
    args: argparse.Namespace, train_set: Dataset, val_set: Dataset, extra: dict[str, Any]
) -> dict[str, Any]:
    """Train from the seeded initial weights; return the training part of the record."""
    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        eval_every=args.eval_every,
        target_ap50=args.target_ap50,
        time_limit_s=args.time_limit_s,
    )
    torch.set_num_threads(settings.threads)
    t0 = time.perf_counter()
    data = load_train_data(train_set)
    load_s = time.perf_counter() - t0
    print(f"loaded {len(data)} training images in {load_s:.1f}s", flush=True)
    model = ssd_mobilenetv2_demo(len(data.class_names) + 1, seed=args.seed)
    result = train(
        model,
        data,
        settings,
        validate=torch_ap50(val_set, data.class_names),
        checkpoint=args.work_dir / "last.pt",
        log=lambda line: print(line, flush=True),
    )
    save_state(model, args.work_dir / "final.pt")
    record = {
        "settings": settings.to_dict(),
        "loss": {
            "classification": f"cross-entropy, hard negatives {NEG_POS_RATIO}:1 "
            f"(at least {MIN_NEGATIVES} per image)",
            "regression": "smooth L1 (beta 1) on positives",
            "normaliser": "number of positive priors",
            "matching": "best prior per ground truth forced, then IoU >= 0.5",
        },
        "data_loading_s": round(load_s, 1),
        "training_s": round(result.seconds, 1),
        "validation_s": round(result.validation_seconds, 1),
        "steps": result.steps,
        "epochs_run": len(result.history),
        "stopped": result.stopped,
        "history": [asdict(h) for h in result.history],
        **extra,
    }
    (args.work_dir / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def summary(results: dict[str, EvalResult]) -> dict[str, Any]:
    """AP50 per protocol, plus the twelve COCO statistics."""
    out: dict[str, Any] = {p: {"ap50": round(r.ap, 6)} for p, r in results.items()}
    coco = results.get("coco")
    if coco is not None and coco.stats is not None and coco.stat_names is not None:
        out["coco"]["stats"] = {
            n: round(v, 6) for n, v in zip(coco.stat_names, coco.stats, strict=True)
        }
    for protocol, result in results.items():
        out[protocol]["per_class_ap50"] = {k: round(v, 6) for k, v in result.per_class_ap().items()}
    return out


def evaluate_checkpoint(
    args: argparse.Namespace, checkpoint: Path, train_set: Dataset, val_set: Dataset
) -> dict[str, Any]:
    """Float and int8 AP of the saved checkpoint through the ONNX path."""
    from evalkit.quantize import ZOO_SETTINGS, quantize_for_run
    from evalkit.runners.onnx import OnnxRunner

    names = train_set.classes
    model = load_checkpoint(ssd_mobilenetv2_demo(len(names) + 1), checkpoint)
    float_path = args.work_dir / "ssd_mobilenetv2_demo.onnx"
    exported = export_onnx(model, float_path, form="zoo")
    int8_path = quantize_for_run(
        float_path,
        args.work_dir / "ssd_mobilenetv2_demo_qdq_int8.onnx",
        train_set,
        count=args.calibration_count,
        seed=args.seed,
        progress=False,
    ).path
    scores: dict[str, Any] = {}
    for label, path in (("float", float_path), ("int8", int8_path)):
        runner = OnnxRunner(path, batch_size=16, threads=args.threads)
        scores[label] = summary(evaluate_runner(val_set, runner, names, PROTOCOLS))
        scores[label]["onnx_bytes"] = path.stat().st_size
        print(f"{label}: " + ", ".join(f"{p} {scores[label][p]['ap50']:.4f}" for p in PROTOCOLS))
    drop = {p: round(scores["float"][p]["ap50"] - scores["int8"][p]["ap50"], 6) for p in PROTOCOLS}
    return {
        "split": "val",
        "path": "export_onnx(form='zoo') -> OnnxRunner -> StSsdDecoder -> NMS -> to_detections "
        "-> evaluate",
        "nms": {
            "iou_threshold": 0.5,
            "score_threshold": 0.001,
            "max_per_class": 100,
            "max_total": 100,
        },
        "onnx_export": {"opset": exported.opset, "exporter": exported.exporter},
        "quantization": {
            "settings": ZOO_SETTINGS.to_dict(),
            "calibration": {"split": "train", "count": args.calibration_count, "seed": args.seed},
        },
        "float": scores["float"],
        "int8": scores["int8"],
        "float_minus_int8_ap50": drop,
    }


def main(argv: list[str] | None = None) -> int:
    """Generate, train, save, evaluate, record."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    malloc_tuned = keep_freed_memory()
    command = "python scripts/train_demo.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    args.work_dir.mkdir(parents=True, exist_ok=True)
    synthetic, train_set, val_set = make_dataset(args.data_root, args.seed)
    checkpoint = args.out_dir / CHECKPOINT_NAME
    if args.evaluate_only:
        training = json.loads((args.work_dir / "training.json").read_text())
    else:
        extra = {"command": command.strip(), "malloc_keeps_freed_memory": malloc_tuned}
        training = run_training(args, train_set, val_set, extra)
        model = ssd_mobilenetv2_demo(len(train_set.classes) + 1)
        load_checkpoint(model, args.work_dir / "final.pt")
        save_state(model, checkpoint)
        if checkpoint.stat().st_size > MAX_CHECKPOINT_BYTES:
            save_state(model, checkpoint, dtype=torch.float16)
    dtype = {v.dtype for v in torch.load(checkpoint, weights_only=True).values()}
    stored = "float16" if torch.float16 in dtype else "float32"
    evaluation = evaluate_checkpoint(args, checkpoint, train_set, val_set)
    model = ssd_mobilenetv2_demo(len(train_set.classes) + 1)
    record = {
        "schema_version": 1,
        "model": {
            "builder": "evalkit.models.ssd_mobilenetv2.ssd_mobilenetv2_demo",
            "arguments": {
                "num_classes": model.num_classes,
                "width_mult": DEMO_WIDTH_MULT,
                "last_channel": DEMO_LAST_CHANNEL,
                "extras": [list(e) for e in DEMO_EXTRAS],
                "channel_rule": "divisible8",
            },
            "parameters": count_parameters(model),
            "class_names": list(train_set.classes),
            "background_index": 0,
            "input": "st-ssd: RGB, cv2 INTER_LINEAR to 300x300, (x - 127) / 128, NCHW float32",
            "priors": "the zoo's 3000 priors (evalkit.models.priors.ZOO_PRIOR_SPECS)",
            "decoder": "st-ssd (variances 0.1 / 0.2, softmax, background column 0)",
        },
        "checkpoint": {
            "file": CHECKPOINT_NAME,
            "bytes": checkpoint.stat().st_size,
            "sha256": file_sha256(checkpoint),
            "format": "torch.save(state_dict); load with "
            "evalkit.models.ssd_mobilenetv2.load_checkpoint",
            "dtype": stored,
            "conversion": None if stored == "float32" else "float32 weights cast to float16",
        },
        "dataset": {
            "generator": "evalkit.datasets.synthetic.generate",
            "parameters": {**synthetic_parameters(args.seed)},
            "classes": list(synthetic.classes),
            "num_images": dict(synthetic.num_images),
            "num_objects": dict(synthetic.num_objects),
            "annotations_sha256": {
                split: file_sha256(synthetic.coco_annotation_file(split))
                for split in ("train", "val")
            },
            "why": "object_size (0.2, 0.7): the zoo's smallest prior is 60 px of 300, so smaller "
            "shapes cannot be matched to a prior at IoU 0.5",
        },
        "training": training,
        "evaluation": evaluation,
        "torch_version": torch.__version__,
        "environment": environment(),
        # The command that trained it; an --evaluate-only run only re-scores.
        "command": training["command"],
        "evaluated_by": command.strip(),
    }
    (args.out_dir / RECORD_NAME).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {checkpoint} ({checkpoint.stat().st_size} bytes) and {RECORD_NAME}")
    return 0


def synthetic_parameters(seed: int) -> dict[str, Any]:
    """The generate() keyword arguments, as JSON values."""
    params: dict[str, Any] = {"seed": seed, **DATASET}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


if __name__ == "__main__":
    raise SystemExit(main())
