"""How fast is evalkit's combined NMS next to TensorFlow's own kernel, which it must equal?

Three seeded workloads of SSD-shaped outputs (3000 boxes from the zoo's priors, 80 classes,
softmax scores with the background column dropped):

- ``realistic``: most scores below 0.001, several thousand (box, class) candidates per image
  (about 4% of the 240k scores), concentrated on the anchors around 1-8 synthetic objects
  and on a few "popular" classes;
- ``dense``: the same generator with a weak background, so ~70% of all 240k scores are
  candidates, but the boxes are spread out, so every class fills its 100 kept boxes long
  before its candidates run out;
- ``clustered``: every box a jittered copy of one of 6 objects and near-uniform class
  scores, so almost everything is a candidate and is suppressed: a class keeps only 20-30
  boxes, never its 100, and every candidate of every class has to be processed.

evalkit is timed per image (``select_image``, warm-up passes first, median and p90 over all
timed images) and per batch (``select_batch``); the reference is
``tf.image.combined_non_max_suppression`` on the same images, called as the zoo calls it
(boxes tiled to one per class), timed per image after one warm-up call. Whole outputs
(count, order, corners, scores, classes) are compared. The targets (realistic median under
5 ms, and under 1 ms, per image) are reported as met or not met; a benchmark never fails.

    python benchmarks/nms_speed.py                   # records results/nms_speed.md/.json
    python benchmarks/nms_speed.py --images 8 --reference-images 1 --output /tmp/nms_speed
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from _results import machine_info, write_results  # noqa: E402  (shared by benchmarks)

from evalkit.models.priors import ssd_priors  # noqa: E402
from evalkit.postprocess.nms import NmsSettings, select_batch, select_image  # noqa: E402
from evalkit.types import DecodedBoxes  # noqa: E402

SCHEMA_VERSION = 1
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "nms_speed"
N_CLASSES = 80
TARGET_MS = 5.0
WORKLOADS = ("realistic", "dense", "clustered")


# --- workloads ------------------------------------------------------------------------------


def _corners(cxcywh: Any) -> Any:
    cx, cy, w, h = cxcywh.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _iou_matrix(a: Any, b: Any) -> Any:
    """float64 IoU of every row of ``a`` with every row of ``b`` (workload building only)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _softmax_drop_background(logits: Any) -> Any:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True))[:, 1:].astype(np.float32)


def ssd_like_image(rng: np.random.Generator, priors: Any, background: float) -> tuple[Any, Any]:
    """One image's decoded (B, 4) corners and (B, 80) scores, section-4 style.

    Logits: background ``N(background, 1.5)``, classes ``N(0, 1)`` plus a per-image class
    bias ``N(0, 1)``; anchors overlapping one of 1-8 objects (IoU > 0.2) get ``4 + 8 IoU``
    on that object's class and regress most of the way onto it; the rest regress at random
    (``t ~ N(0, 0.7)`` through the zoo's variances 0.1 / 0.2). Corners clipped to [0, 1].
    """
    n = priors.shape[0]
    n_obj = int(rng.integers(1, 9))
    centre = rng.random((n_obj, 2)) * 0.8 + 0.1
    size = np.clip(np.exp(rng.normal(np.log(0.25), 0.6, (n_obj, 2))), 0.03, 0.9)
    objects = np.clip(np.concatenate([centre - size / 2, centre + size / 2], axis=1), 0, 1)
    obj_class = rng.integers(0, N_CLASSES, n_obj)
    logits = rng.normal(0, 1, (n, N_CLASSES + 1)) + np.r_[0, rng.normal(0, 1, N_CLASSES)]
    logits[:, 0] += background + rng.normal(0, 1.5, n)
    overlap = _iou_matrix(_corners(priors), objects)
    best, best_iou = overlap.argmax(axis=1), overlap.max(axis=1)
    matched = best_iou > 0.2
    logits[matched, 1 + obj_class[best[matched]]] += (
        4 + 8 * best_iou[matched] + rng.normal(0, 1, matched.sum())
    )
    t = rng.normal(0, 0.7, (n, 4))
    cx = t[:, 0] * 0.1 * priors[:, 2] + priors[:, 0]
    cy = t[:, 1] * 0.1 * priors[:, 3] + priors[:, 1]
    w = np.exp(t[:, 2] * 0.2) * priors[:, 2]
    h = np.exp(t[:, 3] * 0.2) * priors[:, 3]
    target = objects[best]
    pull = np.where(matched, 0.7, 0.0)
    cx = cx * (1 - pull) + (target[:, 0] + target[:, 2]) / 2 * pull + rng.normal(0, 0.02, n) * pull
    cy = cy * (1 - pull) + (target[:, 1] + target[:, 3]) / 2 * pull
    w = w * (1 - pull) + (target[:, 2] - target[:, 0]) * pull
    h = h * (1 - pull) + (target[:, 3] - target[:, 1]) * pull
    boxes = np.clip(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1), 0, 1)
    return boxes.astype(np.float32), _softmax_drop_background(logits)


def clustered_image(rng: np.random.Generator, n_boxes: int) -> tuple[Any, Any]:
    """Every box a jittered copy of one of 6 objects; near-uniform softmax scores."""
    centre = rng.random((6, 2)) * 0.6 + 0.2
    size = rng.random((6, 2)) * 0.3 + 0.1
    which = rng.integers(0, 6, n_boxes)
    c = centre[which] + rng.normal(0, 0.02, (n_boxes, 2))
    wh = size[which] * np.exp(rng.normal(0, 0.1, (n_boxes, 2)))
    boxes = np.clip(np.concatenate([c - wh / 2, c + wh / 2], axis=1), 0, 1).astype(np.float32)
    return boxes, _softmax_drop_background(rng.normal(0, 1, (n_boxes, N_CLASSES + 1)))


def make_workload(name: str, images: int, seed: int) -> tuple[Any, Any]:
    """(N, 3000, 4) corners and (N, 3000, 80) scores of one named workload."""
    rng = np.random.default_rng([seed, WORKLOADS.index(name)])
    priors = ssd_priors().astype(np.float64)
    made = [
        clustered_image(rng, priors.shape[0])
        if name == "clustered"
        else ssd_like_image(rng, priors, background=11.0 if name == "realistic" else 4.0)
        for _ in range(images)
    ]
    return np.stack([b for b, _ in made]), np.stack([s for _, s in made])


def describe(boxes: Any, scores: Any, settings: NmsSettings) -> dict[str, Any]:
    """Candidate counts: what the NMS has to sort and suppress."""
    candidates = scores > np.float32(settings.score_threshold)
    per_image = candidates.sum(axis=(1, 2))
    per_class = candidates.sum(axis=1)
    return {
        "images": int(boxes.shape[0]),
        "boxes": int(boxes.shape[1]),
        "classes": int(scores.shape[2]),
        "candidates_per_image_mean": float(per_image.mean()),
        "candidates_per_image_min": int(per_image.min()),
        "candidates_per_image_max": int(per_image.max()),
        "candidate_fraction": float(per_image.mean() / (boxes.shape[1] * scores.shape[2])),
        "largest_class_candidates_mean": float(per_class.max(axis=1).mean()),
        "classes_with_candidates_mean": float((per_class > 0).sum(axis=1).mean()),
    }


# --- timing ---------------------------------------------------------------------------------


def time_evalkit(
    boxes: Any, scores: Any, settings: NmsSettings, warmup: int, repeat: int
) -> dict[str, Any]:
    """Per-image wall and CPU times of ``select_image`` and per-image time of ``select_batch``."""
    for _ in range(warmup):
        for i in range(boxes.shape[0]):
            select_image(boxes[i], scores[i], settings)
    wall, cpu, kept = [], [], []
    for _ in range(repeat):
        for i in range(boxes.shape[0]):
            w0, c0 = time.perf_counter(), time.process_time()
            out = select_image(boxes[i], scores[i], settings)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            kept.append(len(out))
    batch = []
    for _ in range(repeat):
        w0 = time.perf_counter()
        select_batch(DecodedBoxes(boxes, scores), settings)
        batch.append((time.perf_counter() - w0) / boxes.shape[0])
    return {
        "median_ms": statistics.median(wall) * 1e3,
        "p90_ms": float(np.percentile(wall, 90)) * 1e3,
        "min_ms": min(wall) * 1e3,
        "cpu_median_ms": statistics.median(cpu) * 1e3,
        "batch_median_ms_per_image": statistics.median(batch) * 1e3,
        "kept_per_image_mean": float(np.mean(kept)),
        "timed_images": len(wall),
    }


def _tf_nms(boxes: Any, scores: Any, settings: NmsSettings) -> tuple[Any, Any, Any]:
    import tensorflow as tf

    n_boxes, n_classes = scores.shape
    tiled = np.broadcast_to(boxes[None, :, None, :], (1, n_boxes, n_classes, 4))
    out = tf.image.combined_non_max_suppression(
        tf.constant(np.ascontiguousarray(tiled)),
        tf.constant(scores[None]),
        settings.max_per_class,
        settings.max_total,
        iou_threshold=settings.iou_threshold,
        score_threshold=settings.score_threshold,
        clip_boxes=settings.clip_boxes,
    )
    n = int(out[3].numpy()[0])
    return out[0].numpy()[0, :n], out[1].numpy()[0, :n], out[2].numpy()[0, :n]


def time_reference(boxes: Any, scores: Any, settings: NmsSettings, images: int) -> dict[str, Any]:
    """Per-image time of TensorFlow's kernel and whether its outputs equal evalkit's."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _tf_nms(boxes[0], scores[0], settings)  # warm-up: op registration, thread pools
    wall, identical = [], True
    for i in range(min(images, boxes.shape[0])):
        w0 = time.perf_counter()
        corners, kept_scores, classes = _tf_nms(boxes[i], scores[i], settings)
        wall.append(time.perf_counter() - w0)
        ours = select_image(boxes[i], scores[i], settings)
        identical &= (
            len(ours) == kept_scores.shape[0]
            and np.array_equal(ours.scores, kept_scores)
            and np.array_equal(ours.class_index.astype(np.float32), classes)
            and np.array_equal(ours.boxes_xyxy_norm, corners)
        )
    return {"median_ms": statistics.median(wall) * 1e3, "images": len(wall), "identical": identical}


def _kwargs(settings: NmsSettings) -> dict[str, Any]:
    record = settings.to_dict()
    return {
        k: record[k]
        for k in ("score_threshold", "iou_threshold", "max_per_class", "max_total", "clip_boxes")
    }


def profile_realistic(boxes: Any, scores: Any, settings: NmsSettings, top: int) -> str:
    """cProfile of ``select_image`` over the realistic images: ms per image spent in each
    evalkit NMS function (cumulative, and in its own body), plus numpy's largest calls."""
    for i in range(boxes.shape[0]):  # warm-up, as for the timings
        select_image(boxes[i], scores[i], settings)
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(boxes.shape[0]):
        select_image(boxes[i], scores[i], settings)
    profiler.disable()
    per_image = 1e3 / boxes.shape[0]
    rows = []
    for (path, line, name), (_, calls, own, cumulative, _) in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        where = f"nms.py:{line} {name}" if path.endswith("nms.py") else name
        if path.endswith("nms.py") or path == "~":
            rows.append((cumulative * per_image, own * per_image, calls / boxes.shape[0], where))
    rows.sort(reverse=True)
    lines = [f"{'cumulative':>10} {'own':>8} {'calls':>7}  function (ms per image)"]
    lines += [f"{c:10.3f} {o:8.3f} {n:7.1f}  {w}" for c, o, n, w in rows[:top]]
    return "\n".join(lines)


# --- record ---------------------------------------------------------------------------------


def render_table(record: dict[str, Any]) -> str:
    """The results table, rendered from the record only."""
    rows = [
        "| workload | candidates/img | kept/img | evalkit ms/img median | p90 | CPU median "
        "| batch ms/img | TensorFlow ms/img | x faster | identical |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for name, run in record["runs"].items():
        w, e, r = record["workloads"][name], run["evalkit"], run["reference"]
        rows.append(
            f"| {name} | {w['candidates_per_image_mean']:.0f} | {e['kept_per_image_mean']:.0f} "
            f"| {e['median_ms']:.2f} | {e['p90_ms']:.2f} | {e['cpu_median_ms']:.2f} "
            f"| {e['batch_median_ms_per_image']:.2f} | {r['median_ms']:.2f} "
            f"| {r['median_ms'] / e['median_ms']:.1f} | {'yes' if r['identical'] else 'NO'} "
            f"({r['images']} img) |"
        )
    lines = [*rows, ""]
    for target in record["targets"]:
        lines.append(
            f"- [{'met' if target['met'] else 'NOT MET'}] {target['target']}: {target['detail']}"
        )
    return "\n".join(lines)


def render_markdown(record: dict[str, Any]) -> str:
    """The recorded results page, rendered only from the JSON record."""
    m, s = record["machine"], record["settings"]
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    lines = [
        "# Combined NMS speed",
        "",
        f"Recorded {record['created']} by `{record['command']}`.",
        "",
        f"- Machine: {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical "
        f"cores, {m['platform']}, Python {m['python']}; thread env {m['thread_env']}",
        f"- Packages: {pkgs}; git {m['git'].get('revision', '?')}"
        f"{' (dirty)' if m['git'].get('dirty') else ''}, evalkit sources sha256 "
        f"{m['git'].get('evalkit_sources_sha256', '?')}",
        f"- Settings: {s['nms']}",
        f"- Timing: seed {s['seed']}, warm-up {s['warmup']} / repeat {s['repeat']} passes over "
        "each workload's images; median and p90 over all timed images (wall), CPU = process "
        "time; batch = one select_batch call / images",
        f"- 1-min load average before/after: {record['load_average_1min'][0]:.2f}/"
        f"{record['load_average_1min'][1]:.2f} on {m['usable_cores']} cores (the machine is "
        "shared; above ~1, other processes competed for the CPUs)",
        "",
        "Workloads (per image: 3000 boxes x 80 classes):",
        "",
    ]
    for name, w in record["workloads"].items():
        lines.append(
            f"- {name}: {w['candidates_per_image_mean']:.0f} candidates "
            f"({w['candidate_fraction']:.1%} of scores, {w['candidates_per_image_min']}-"
            f"{w['candidates_per_image_max']}), largest class "
            f"{w['largest_class_candidates_mean']:.0f}, "
            f"{w['classes_with_candidates_mean']:.0f} classes with candidates; {w['images']} images"
        )
    lines += ["", render_table(record)]
    if record.get("profile"):
        lines += ["", "## Where the time goes (cProfile, realistic workload)", "", "```text"]
        lines += [record["profile"], "```"]
    return "\n".join(lines) + "\n"


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Build the workloads, time both implementations, return the self-describing record."""
    settings = NmsSettings()
    machine = machine_info(
        ("numpy", "pycocotools", "faster-coco-eval"), REPO / "evalkit", "evalkit_sources_sha256"
    )
    load_before = os.getloadavg()[0]
    workloads: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    profile = ""
    for name in WORKLOADS:
        images = args.images if name == "realistic" else max(1, args.images // 4)
        boxes, scores = make_workload(name, images, args.seed)
        workloads[name] = describe(boxes, scores, settings)
        evalkit = time_evalkit(boxes, scores, settings, args.warmup, args.repeat)
        reference = time_reference(boxes, scores, settings, args.reference_images)
        runs[name] = {"evalkit": evalkit, "reference": reference}
        print(
            f"{name}: evalkit {evalkit['median_ms']:.2f} ms/img (p90 {evalkit['p90_ms']:.2f}), "
            f"TensorFlow {reference['median_ms']:.2f} ms/img, identical {reference['identical']}",
            flush=True,
        )
        if name == "realistic" and args.profile:
            profile = profile_realistic(boxes, scores, settings, args.profile_top)
    realistic = runs["realistic"]["evalkit"]
    targets = [
        {
            "target": f"realistic workload under {TARGET_MS:g} ms per image (median, wall)",
            "met": realistic["median_ms"] < TARGET_MS,
            "detail": f"{realistic['median_ms']:.2f} ms median, {realistic['p90_ms']:.2f} ms p90, "
            f"{realistic['cpu_median_ms']:.2f} ms CPU",
        },
        {
            "target": "realistic workload under 1 ms per image (median, wall; issue 17)",
            "met": realistic["median_ms"] < 1.0,
            "detail": f"{realistic['median_ms']:.2f} ms median",
        },
        {
            "target": "outputs identical to TensorFlow's kernel (count, order, boxes, scores)",
            "met": all(r["reference"]["identical"] for r in runs.values()),
            "detail": ", ".join(f"{n}: {r['reference']['images']} images" for n, r in runs.items()),
        },
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "nms_speed",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/nms_speed.py", *sys.argv[1:]]),
        "machine": machine,
        "settings": {
            "seed": args.seed,
            "images_realistic": args.images,
            "images_adversarial": max(1, args.images // 4),
            "warmup": args.warmup,
            "repeat": args.repeat,
            "reference_images": args.reference_images,
            "nms": settings.to_dict(),
        },
        "workloads": workloads,
        "runs": runs,
        "targets": targets,
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "profile": profile,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=32, help="realistic images (adversarial: 1/4)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--warmup", type=int, default=2, help="untimed passes first")
    p.add_argument("--repeat", type=int, default=5, help="timed passes")
    p.add_argument("--reference-images", type=int, default=16, help="images for TensorFlow")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--profile-top", type=int, default=20)
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="writes OUTPUT.md/.json")
    args = p.parse_args(argv)
    if min(args.images, args.repeat, args.reference_images) < 1 or args.warmup < 0:
        p.error("--images, --repeat and --reference-images must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and record the results."""
    args = parse_args(argv)
    record = benchmark(args)
    print()
    print(render_table(record))
    if record["profile"]:
        print("\n" + record["profile"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.output, record, render_markdown(record))
    print(f"recorded {args.output.with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
