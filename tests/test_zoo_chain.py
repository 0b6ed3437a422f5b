"""End to end: evalkit's ``st`` under profile zoo equals an independent re-statement of the
zoo's whole evaluation chain, bit for bit, on the demo model (float and int8), in COCO and
VOC layouts.

The chain below shares no code with evalkit's pipeline: it reads the annotation files
itself, pre-processes with cv2 (RGB, INTER_LINEAR to 300x300, (x - 127) / 128, NCHW), runs
plain onnxruntime on the zoo's batches (32 annotated images at a time, in file order),
applies torch.softmax, builds the priors from section 4's table, decodes, calls
TensorFlow's own combined NMS, and scores with the zoo's metric loops (float32 TP/FP,
first-best ground truth, np.interp / np.trapz / np.mean).
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf
import torch

from evalkit.datasets.synthetic import generate
from evalkit.demo import export_demo_models, load_demo_record
from evalkit.pipeline.config import (
    DatasetConfig,
    LatencyConfig,
    QuantizeConfig,
    RunConfig,
    VariantConfig,
)
from evalkit.pipeline.run import run

SPECS = [(19, 16, 60, 105), (10, 32, 105, 150), (5, 64, 150, 195), (3, 100, 195, 240),
         (2, 150, 240, 285), (1, 300, 285, 330)]  # fmt: skip


def priors() -> Any:
    rows = []
    for fmap, shrink, lo, hi in SPECS:
        scale = 300 / shrink
        for j in range(fmap):
            for i in range(fmap):
                cx, cy = (i + 0.5) / scale, (j + 0.5) / scale
                rows.append((cx, cy, lo / 300, lo / 300))
                big = math.sqrt(lo * hi) / 300
                rows.append((cx, cy, big, big))
                for r in (2, 3):
                    s = math.sqrt(r)
                    rows.append((cx, cy, lo / 300 * s, lo / 300 / s))
                    rows.append((cx, cy, lo / 300 / s, lo / 300 * s))
    return np.clip(np.array(rows, np.float32), 0.0, 1.0)


def preprocess(path: Path) -> tuple[Any, int, int]:
    bgr = cv2.imread(str(path))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    x = cv2.resize(rgb, (300, 300), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return ((x - 127) / 128).transpose(2, 0, 1), w, h


def zoo_detections(model: Path, paths: list[Path]) -> list[tuple[Any, Any, Any]]:
    """Per image: NMS boxes (normalised), scores, classes (0-based, no background)."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    p = priors()
    out: list[tuple[Any, Any, Any]] = []
    for k in range(0, len(paths), 32):
        batch = np.stack([preprocess(q)[0] for q in paths[k : k + 32]])
        logits, offsets = session.run(None, {name: batch})
        if logits.shape[-1] == 4:
            logits, offsets = offsets, logits
        scores = torch.softmax(torch.from_numpy(logits), dim=2).numpy()[..., 1:]
        cxcy = offsets[..., :2] * np.float32(0.1) * p[:, 2:] + p[:, :2]
        wh = np.exp(offsets[..., 2:] * np.float32(0.2)) * p[:, 2:]
        boxes = np.clip(np.concatenate([cxcy - wh / 2, cxcy + wh / 2], -1), 0.0, 1.0)
        yxyx = boxes[..., [1, 0, 3, 2]]
        n_cls = scores.shape[-1]
        tiled = np.tile(yxyx, (1, 1, n_cls)).reshape(*yxyx.shape[:2], n_cls, 4)
        b, s, c, valid = tf.image.combined_non_max_suppression(
            tiled, scores, 100, 100, iou_threshold=0.5, score_threshold=0.001, clip_boxes=True
        )
        for i in range(batch.shape[0]):
            n = int(valid[i])
            xyxy = b.numpy()[i, :n][:, [1, 0, 3, 2]]
            out.append((xyxy, s.numpy()[i, :n], c.numpy()[i, :n]))
    return out


def zoo_metric(gts: list[list[float]], dets: list[list[float]]) -> float:
    """objdet_metrics as the zoo runs it: gts [image, class, x1, y1, x2, y2] (float32
    values), dets [image, class, score, x1, y1, x2, y2]."""

    def iou(a: list[float], b: list[float]) -> float:
        if a[0] > b[2] or a[2] < b[0] or a[1] > b[3] or a[3] < b[1]:
            return 0.0
        ix = min(a[2], b[2]) - max(a[0], b[0]) + 1
        iy = min(a[3], b[3]) - max(a[1], b[1]) + 1
        inter = max(ix, 0.0) * max(iy, 0.0)
        union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
        union -= inter
        return inter / union if union > 0 else 0.0

    aps = []
    for c in sorted({g[1] for g in gts}):
        cg = [g for g in gts if g[1] == c]
        cd = sorted([d for d in dets if d[1] == c], key=lambda d: d[2], reverse=True)
        by_image: dict[int, list[list[float]]] = {}
        for g in cg:
            by_image.setdefault(int(g[0]), []).append(g)
        matched = {k: [0] * len(v) for k, v in by_image.items()}
        tp = np.zeros(len(cd), np.float32)
        fp = np.zeros(len(cd), np.float32)
        for i, d in enumerate(cd):
            best, best_k = -1.0, -1
            for k, g in enumerate(by_image.get(int(d[0]), [])):
                v = iou(d[3:], g[2:])
                if v > best:
                    best, best_k = v, k
            if best >= 0.5 and matched[int(d[0])][best_k] == 0:
                tp[i] = 1
                matched[int(d[0])][best_k] = 1
            else:
                fp[i] = 1
        acc_tp, acc_fp = np.cumsum(tp), np.cumsum(fp)
        rec = acc_tp / len(cg) if len(acc_tp) else [0.0]
        pre = acc_tp / (acc_fp + acc_tp) if len(acc_tp) else [0.0]
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([1.0], pre, [0.0]))
        x = np.linspace(0, 1, 101)
        trapezoid = getattr(np, "trapezoid", None) or np.trapz  # the zoo calls np.trapz
        aps.append(trapezoid(np.interp(x, mrec, mpre), x))
    return float(np.mean(aps))


def scaled_gt(image: int, c: int, corners: list[float], w: int, h: int) -> list[float] | None:
    box = np.array(corners, np.float32)
    box[[0, 2]] *= 300 / w
    box[[1, 3]] *= 300 / h
    if not box.sum() > 0:
        return None
    return [float(image), float(c), *(float(v) for v in box)]


def scored(per_image: list[tuple[Any, Any, Any]]) -> list[list[float]]:
    rows = []
    for image, (boxes, scores, classes) in enumerate(per_image):
        px = tf.round(boxes.astype(np.float32) * np.float32(300)).numpy()
        for box, s, c in zip(px, scores, classes, strict=True):
            if box.sum() > 0:
                rows.append([float(image), float(c), float(s), *(float(v) for v in box)])
    return rows


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("zoo_chain")
    demo = load_demo_record()
    args = {**demo.dataset_arguments, "num_train": 4, "num_val": 70}
    generate(root / "data", **args)
    export_demo_models(demo, root)
    return root, root / "data"


def evalkit_run(root: Path, data: Path, layout: str) -> tuple[float, float, Path]:
    if layout == "coco":
        dataset = DatasetConfig(
            format="coco",
            annotations=str(data / "coco" / "annotations" / "instances_val.json"),
            images=str(data / "coco" / "images" / "val"),
        )
    else:
        dataset = DatasetConfig(
            format="voc",
            root=str(data / "VOCdevkit" / "VOC2012"),
            split="val",
            classes=load_demo_record().class_names,
        )
    out = root / f"run_{layout}"
    config = RunConfig(
        dataset=dataset,
        variants={
            "float": VariantConfig(model=str(root / "models" / "float.onnx"), decoder="st-ssd"),
            "int8": VariantConfig(
                quantize=QuantizeConfig(source="float", calib_count=8), decoder="st-ssd"
            ),
        },
        protocols=["st"],
        profile="zoo",
        latency=LatencyConfig(runs=0),
        output=str(out),
        quiet=True,
    )
    if layout == "voc":  # VOC names are given; COCO uses the zoo's id rule (no names)
        names = load_demo_record().class_names
        variants = {k: replace(v, class_names=names) for k, v in config.variants.items()}
        config = replace(config, variants=variants)
    outcome = run(config, log=lambda _: None)
    rec = outcome.record
    return rec.ap50("float", "st"), rec.ap50("int8", "st"), out


def coco_chain(data: Path, model: Path) -> float:
    ann = json.loads((data / "coco" / "annotations" / "instances_val.json").read_text())
    ids = sorted(c["id"] for c in ann["categories"])
    column = {cid: k for k, cid in enumerate(ids)}  # k-th smallest id
    annotated = {a["image_id"] for a in ann["annotations"]}
    images = [im for im in ann["images"] if im["id"] in annotated]
    paths = [data / "coco" / "images" / "val" / im["file_name"] for im in images]
    gts = []
    for n, im in enumerate(images):
        _, w, h = preprocess(paths[n])  # the size as decoded
        for a in ann["annotations"]:
            x, y, bw, bh = a["bbox"]
            if a["image_id"] == im["id"] and bw > 0 and bh > 0:
                row = scaled_gt(n, column[a["category_id"]], [x, y, x + bw, y + bh], w, h)
                if row is not None:
                    gts.append(row)
    return zoo_metric(gts, scored(zoo_detections(model, paths)))


def voc_chain(data: Path, model: Path) -> float:
    year = data / "VOCdevkit" / "VOC2012"
    names = [n.strip().lower() for n in load_demo_record().class_names]
    split = (year / "ImageSets" / "Main" / "val.txt").read_text().split()
    paths, gts = [], []
    for n, name in enumerate(split):
        root = ET.parse(year / "Annotations" / f"{name}.xml").getroot()
        path = year / "JPEGImages" / f"{name}.jpg"
        paths.append(path)
        _, w, h = preprocess(path)
        for obj in root.findall("object"):
            cls = obj.findtext("name", "").strip().lower()
            if cls not in names or int(obj.findtext("difficult", "0")) != 0:
                continue
            bb = obj.find("bndbox")
            assert bb is not None
            c = [float(bb.findtext(t, "0")) - 1 for t in ("xmin", "ymin", "xmax", "ymax")]
            row = scaled_gt(n, names.index(cls), c, w, h)
            if row is not None:
                gts.append(row)
    return zoo_metric(gts, scored(zoo_detections(model, paths)))


@pytest.mark.parametrize("layout", ["coco", "voc"])
def test_st_equals_the_independent_zoo_chain(demo_set: tuple[Path, Path], layout: str) -> None:
    root, data = demo_set
    float_ap, int8_ap, out = evalkit_run(root, data, layout)
    chain = coco_chain if layout == "coco" else voc_chain
    assert float_ap == chain(data, root / "models" / "float.onnx")
    assert int8_ap == chain(data, out / "models" / "int8.onnx")
    assert float_ap > 0.5  # the model detects: the comparison is not of two zeros
    record = json.loads((out / "result.json").read_text())
    assert record["profile"] == "zoo"
    assert record["variants"]["int8"]["batching"]["batch_size"] == 32
