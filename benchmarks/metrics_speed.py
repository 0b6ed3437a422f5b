"""How fast is evalkit's metrics engine next to pycocotools, faster-coco-eval and hotcoco?

Builds a seeded, COCO-val2017-sized bbox workload (5000 images, ~36.7k ground truths, 500k
detections) as JSON files in a temp dir, then runs every contender in its own subprocess
(peak memory is that process's ru_maxrss; no contender warms another's caches). Each worker
times loading and evaluation apart, does warm-up passes before the timed ones and reports
the median. The agreement of the stats is checked, the targets are marked met or not met
(a benchmark, never a test), and the record goes to ``benchmarks/results/metrics_speed.*``.

    python benchmarks/metrics_speed.py                      # full size, records results
    python benchmarks/metrics_speed.py --images 500 --skip-pycocotools --output /tmp/ms
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import gc
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _results import machine_info, write_results

SCHEMA_VERSION = 1
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "metrics_speed"
COCO_VAL_IMAGES, COCO_VAL_ANNOTATIONS = 5000, 36781
DETS_PER_IMAGE = 100
# The 80 COCO category ids: 1..90 with gaps, as in instances_val2017.json.
COCO_CATEGORY_IDS = (
    *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
    *range(72, 83), *range(84, 91),
)  # fmt: skip
# name -> (library, what it evaluates); "full" = 10 IoU thresholds, "ap50" = IoU 0.5 only.
CONTENDERS: dict[str, tuple[str, str]] = {
    "pycocotools full": ("pycocotools", "full"),
    "pycocotools AP50": ("pycocotools", "ap50"),
    "faster-coco-eval full": ("faster-coco-eval", "full"),
    "hotcoco full": ("hotcoco", "full"),
    "evalkit coco": ("evalkit", "full"),
    "evalkit st": ("evalkit", "ap50"),
    "evalkit voc07": ("evalkit", "ap50"),
    "evalkit voc12": ("evalkit", "ap50"),
}
SPEEDUP_TARGET_VS_FCE, AP50_TARGET_S = 3.0, 1.0
SHORT_SIDE_P = np.array([35, 25, 10, 8, 7, 5, 5, 5]) / 100


# --- workload -------------------------------------------------------------------------------


def _box_sizes(rng: np.random.Generator, n: int, scale: float = 1.0) -> tuple[Any, Any]:
    """Widths and heights with COCO-like spread (~40% small, ~35% medium, ~25% large)."""
    side = np.exp(rng.normal(np.log(45.0), 1.0, n)) * scale
    aspect = np.exp(rng.normal(0.0, 0.5, n))
    return side * np.sqrt(aspect), side / np.sqrt(aspect)


def _place(rng: np.random.Generator, w: Any, h: Any, img_w: Any, img_h: Any) -> Any:
    """Random xywh boxes of the given sizes, clipped to lie inside their images."""
    w, h = np.clip(w, 1.0, img_w), np.clip(h, 1.0, img_h)
    x, y = rng.random(w.shape) * (img_w - w), rng.random(h.shape) * (img_h - h)
    return np.stack([x, y, w, h], axis=1)


def _clip_xywh(boxes: Any, img_w: Any, img_h: Any) -> Any:
    """Keep jittered xywh boxes inside their images, at least one pixel wide and high."""
    w, h = np.clip(boxes[:, 2], 1.0, img_w), np.clip(boxes[:, 3], 1.0, img_h)
    x, y = np.clip(boxes[:, 0], 0.0, img_w - w), np.clip(boxes[:, 1], 0.0, img_h - h)
    return np.stack([x, y, w, h], axis=1)


def make_workload(num_images: int, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO instances document and a results list shaped like val2017 and a real detector."""
    rng = np.random.default_rng(seed)
    n, k = num_images, len(COCO_CATEGORY_IDS)
    landscape = rng.random(n) < 0.75
    short = rng.choice([480, 427, 426, 425, 424, 360, 383, 512], n, p=SHORT_SIDE_P)
    long = np.where(rng.random(n) < 0.95, 640, rng.integers(500, 640, n))
    img_w, img_h = np.where(landscape, long, short), np.where(landscape, short, long)
    # Skewed GT counts (negative binomial), ~1% images without any, total scaled to val2017's.
    target = round(COCO_VAL_ANNOTATIONS * n / COCO_VAL_IMAGES)
    counts = 1 + rng.negative_binomial(1.3, 1.3 / (1.3 + target / n - 1), n)
    counts[rng.random(n) < 0.01] = 0
    diff = target - int(counts.sum())
    if diff > 0:
        np.add.at(counts, rng.choice(np.flatnonzero(counts), diff), 1)
    elif diff < 0:
        units = np.repeat(np.arange(n), np.maximum(counts - 1, 0))
        np.subtract.at(counts, rng.choice(units, min(-diff, units.size), replace=False), 1)
    # Zipf-like class frequencies (the first class, "person", takes about a quarter).
    weights = 1.0 / np.arange(1, k + 1) ** 1.1
    weights = weights[np.r_[0, 1 + rng.permutation(k - 1)]] / weights.sum()
    ann_img = np.repeat(np.arange(n), counts)
    ann_cat = np.empty(ann_img.size, np.int64)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    for i in np.flatnonzero(counts):  # each image shows a few classes, some many times
        present = rng.choice(k, min(int(counts[i]), 1 + rng.poisson(1.5)), replace=False, p=weights)
        p = weights[present] / weights[present].sum()
        ann_cat[starts[i] : starts[i] + counts[i]] = rng.choice(present, int(counts[i]), p=p)
    num_ann = ann_img.size
    crowd = rng.random(num_ann) < 0.01
    gw, gh = _box_sizes(rng, num_ann, 1.0)
    gw, gh = np.where(crowd, gw * 3, gw), np.where(crowd, gh * 3, gh)
    gt_boxes = _place(rng, gw, gh, img_w[ann_img], img_h[ann_img]).round(2)
    area = (gt_boxes[:, 2] * gt_boxes[:, 3] * rng.uniform(0.45, 0.85, num_ann)).round(2)

    # Detections: 70% jittered copies of the image's GT (15% with another class of the
    # image), the rest random boxes; scores follow localisation quality.
    det_img = np.repeat(np.arange(n), DETS_PER_IMAGE)
    m = det_img.size
    has_gt = counts[det_img] > 0
    near = has_gt & (np.tile(np.arange(DETS_PER_IMAGE), n) < 0.7 * DETS_PER_IMAGE)
    src = starts[det_img] + np.floor(rng.random(m) * counts[det_img]).astype(np.int64)
    other = starts[det_img] + np.floor(rng.random(m) * counts[det_img]).astype(np.int64)
    src, other = np.minimum(src, num_ann - 1), np.minimum(other, num_ann - 1)
    quality = rng.random(m)
    sigma = (0.03 + 0.25 * quality)[:, None]
    base = gt_boxes[src]
    jitter = base + rng.normal(0.0, 1.0, (m, 4)) * sigma * base[:, [2, 3, 2, 3]]
    rw, rh = _box_sizes(rng, m)
    random_boxes = _place(rng, rw, rh, img_w[det_img], img_h[det_img])
    boxes = np.where(near[:, None], jitter, random_boxes)
    boxes = _clip_xywh(boxes, img_w[det_img], img_h[det_img]).round(2)
    wrong = rng.random(m) < 0.15
    cat = np.where(near & ~wrong, ann_cat[src], ann_cat[other])
    global_cat = rng.choice(k, m, p=weights)
    cat = np.where(~near & ((rng.random(m) < 0.5) | ~has_gt), global_cat, cat)
    score = np.where(near, rng.beta(2 + 6 * (1 - quality), 2 + 6 * quality), rng.beta(1, 6, m))
    score = np.clip(np.where(near & wrong, score * 0.5, score), 1e-6, 1 - 1e-6).round(6)
    order = np.lexsort((-score, det_img))  # a detector writes each image's boxes by score

    image_ids = rng.choice(600_000, n, replace=False) + 1
    ann_ids = np.sort(rng.choice(2_000_000, num_ann, replace=False) + 1)
    cat_ids = np.asarray(COCO_CATEGORY_IDS)
    gt: dict[str, Any] = {
        "info": {"description": f"evalkit synthetic val2017-like workload, seed {seed}"},
        "images": [
            {"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h}
            for i, w, h in zip(image_ids.tolist(), img_w.tolist(), img_h.tolist(), strict=True)
        ],
        "annotations": [
            {"id": a, "image_id": i, "category_id": c, "bbox": b, "area": ar, "iscrowd": cr}
            for a, i, c, b, ar, cr in zip(
                ann_ids.tolist(),
                image_ids[ann_img].tolist(),
                cat_ids[ann_cat].tolist(),
                gt_boxes.tolist(),
                area.tolist(),
                crowd.astype(int).tolist(),
                strict=True,
            )
        ],
        "categories": [
            {"id": c, "name": f"class_{c}", "supercategory": "x"} for c in COCO_CATEGORY_IDS
        ],
    }
    gt["annotations"] = [gt["annotations"][j] for j in rng.permutation(num_ann)]
    dets = [
        {"image_id": i, "category_id": c, "bbox": b, "score": s}
        for i, c, b, s in zip(
            image_ids[det_img[order]].tolist(),
            cat_ids[cat[order]].tolist(),
            boxes[order].tolist(),
            score[order].tolist(),
            strict=True,
        )
    ]
    return gt, dets


# --- workers (one contender per process) ----------------------------------------------------


def _peak_rss_mib() -> float:
    """This process's peak resident set size in MiB. On Linux its own VmHWM: ru_maxrss
    would carry the high-water mark of the forked copy of the parent (which built the
    workload) across exec. Elsewhere ru_maxrss (KiB on Linux, bytes on macOS)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024**2 if sys.platform == "darwin" else 1024)


def _pycocotools(gt_path: str, dets_path: str, ap50: bool, library: str) -> tuple[Any, Any]:
    """Load and evaluate callables for pycocotools (or the drop-in API of faster-coco-eval
    or hotcoco)."""
    if library == "faster-coco-eval":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    elif library == "hotcoco":
        from hotcoco import COCO, COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

    def load() -> tuple[Any, Any]:
        with contextlib.redirect_stdout(io.StringIO()):
            cocogt = COCO(gt_path)
            return cocogt, cocogt.loadRes(dets_path)

    def evaluate(state: tuple[Any, Any]) -> dict[str, Any]:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval = COCOeval(state[0], state[1], "bbox")
            if ap50:
                coco_eval.params.iouThrs = np.array([0.5])
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        stats = [float(s) for s in coco_eval.stats]
        return {"stats": stats, "ap50": stats[0] if ap50 else stats[1]}

    return load, evaluate


def _evalkit(gt_path: str, dets_path: str, protocol: str) -> tuple[Any, Any]:
    """Load and evaluate callables for one evalkit protocol (AP reported at IoU 0.5)."""
    from evalkit.datasets.coco import load_coco_ground_truth
    from evalkit.metrics import evaluate as evalkit_evaluate
    from evalkit.metrics import load_coco_results

    def load() -> tuple[Any, Any]:
        gt = load_coco_ground_truth(gt_path)
        return gt, load_coco_results(dets_path, gt)

    def evaluate(state: tuple[Any, Any]) -> dict[str, Any]:
        result = evalkit_evaluate(state[0], state[1], protocol=protocol, match_iou=0.5)
        stats = None if result.stats is None else [float(s) for s in result.stats]
        return {"stats": stats, "ap50": float(result.ap)}

    return load, evaluate


def run_worker(name: str, gt_path: str, dets_path: str, warmup: int, repeat: int) -> dict[str, Any]:
    """Inside a worker process: load once, warm up, time ``repeat`` evaluations."""
    library, kind = CONTENDERS[name]
    if library == "evalkit":
        load, evaluate = _evalkit(gt_path, dets_path, name.split()[-1])
    else:
        load, evaluate = _pycocotools(gt_path, dets_path, kind == "ap50", library)
    start = time.perf_counter()
    state = load()
    load_s = time.perf_counter() - start
    peak_after_load = _peak_rss_mib()
    accuracy: dict[str, Any] | None = None
    for _ in range(warmup):  # the first warm-up pass doubles as the accuracy pass
        gc.collect()
        out = evaluate(state)
        accuracy = accuracy or out
    times, cpu_times = [], []
    for _ in range(repeat):
        gc.collect()
        start, cpu_start = time.perf_counter(), time.process_time()
        out = evaluate(state)
        times.append(time.perf_counter() - start)
        # CPU time of all this process's threads: above wall time means it ran threads;
        # far below means other processes took the cores.
        cpu_times.append(time.process_time() - cpu_start)
        accuracy = accuracy or out
    return {
        "name": name,
        "library": library,
        "kind": kind,
        "load_s": load_s,
        "eval_s": statistics.median(times),
        "eval_p90_s": float(np.percentile(times, 90)),
        "eval_samples_s": times,
        "eval_cpu_samples_s": cpu_times,
        "threads_after": threading.active_count(),
        "warmup": warmup,
        "repeat": repeat,
        "peak_rss_after_load_mib": peak_after_load,
        "peak_rss_mib": _peak_rss_mib(),
        **(accuracy or {}),
    }


def profile_worker(gt_path: str, dets_path: str, top: int) -> str:
    """Inside a worker process: cProfile one warmed-up evalkit coco evaluation."""
    load, evaluate = _evalkit(gt_path, dets_path, "coco")
    state = load()
    evaluate(state)
    profiler = cProfile.Profile()
    profiler.runcall(evaluate, state)
    text = io.StringIO()
    for order in ("cumulative", "tottime"):
        text.write(f"--- top {top} by {order} ---\n")
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(top)
    # Paths relative to the repository and site-packages, so evalkit/metrics/coco.py and a
    # peer's coco.py stay apart.
    site = str(Path(np.__file__).resolve().parents[1])
    return text.getvalue().replace(f"{REPO}/", "").replace(f"{site}/", "")


def _spawn(args: list[str]) -> Any:
    """Run this script as a worker with ``args`` and return the JSON it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), *args, "--worker-out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"worker {args[:2]} exited with {proc.returncode}; expected 0. "
                f"stderr:\n{proc.stderr[-4000:]}"
            )
        return json.loads(out.read_text())


# --- end to end: a fresh process per evaluation, as a user runs it --------------------------

# Peak memory of a fresh process: its own VmHWM, printed at exit. (ru_maxrss from wait4 is
# no use here: Linux carries the high-water mark of the forked copy of this benchmark, which
# holds the workload, across exec.)
_PEAK_AT_EXIT = (
    "import atexit, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('evalkit-bench-peak-kib ' + line.split()[1] + '\\n')\n"
    "atexit.register(_peak)\n"
)

# evalkit's command line exactly as `python -m evalkit` runs it.
_EVALKIT_SCRIPT = (
    _PEAK_AT_EXIT + "import runpy\nsys.argv = ['evalkit', *sys.argv[1:]]\n"
    "runpy.run_module('evalkit', run_name='__main__', alter_sys=True)\n"
)

# hotcoco's whole job in a fresh process: import, load both files, evaluate, summarize.
_HOTCOCO_SCRIPT = (
    _PEAK_AT_EXIT
    + """
import contextlib, io, json, sys
from hotcoco import COCO, COCOeval
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1])
    e = COCOeval(gt, gt.loadRes(sys.argv[2]), "bbox")
    e.evaluate(); e.accumulate(); e.summarize()
print(json.dumps({"stats": [float(v) for v in e.stats]}))
"""
)


def _timed_process(cmd: list[str]) -> tuple[float, float, float, str]:
    """Wall s, CPU s (user + system) and peak memory MiB (VmHWM) of one child process, and
    its stdout. Output goes to files and the child is reaped with wait4 (its own CPU use)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        errors = err.read()
        if proc.returncode != 0:
            raise RuntimeError(
                f"{cmd[:5]} exited with {proc.returncode}; expected 0:\n{errors[-2000:]}"
            )
        peak = [
            line.split()[1]
            for line in errors.splitlines()
            if line.startswith("evalkit-bench-peak-kib ")
        ]
        if not peak:
            raise RuntimeError(f"{cmd[:5]} did not report its peak memory:\n{errors[-2000:]}")
        return wall, usage.ru_utime + usage.ru_stime, int(peak[-1]) / 1024, out.read()


def end_to_end(gt_path: Path, dets_path: Path, rounds: int) -> dict[str, Any]:
    """``evalkit evaluate --protocol coco --json`` against hotcoco's load + evaluate +
    summarize, each in a fresh process, in alternating order ``rounds`` times (paired)."""
    commands = {
        "evalkit evaluate": [
            *(sys.executable, "-c", _EVALKIT_SCRIPT, "evaluate", "--gt", str(gt_path)),
            *("--dets", str(dets_path), "--protocol", "coco", "--json"),
        ],
        "hotcoco": [sys.executable, "-c", _HOTCOCO_SCRIPT, str(gt_path), str(dets_path)],
    }
    samples: dict[str, list[tuple[float, float, float]]] = {k: [] for k in commands}
    stats: dict[str, list[float]] = {}
    for r in range(rounds):
        for name in commands if r % 2 == 0 else reversed(commands):
            wall, cpu, rss, printed = _timed_process(commands[name])
            samples[name].append((wall, cpu, rss))
            stats[name] = json.loads(printed)["stats"]
    out: dict[str, Any] = {"rounds": rounds, "sides": {}}
    for name, rows in samples.items():
        out["sides"][name] = {
            "wall_s": statistics.median(w for w, _, _ in rows),
            "cpu_s": statistics.median(c for _, c, _ in rows),
            "peak_rss_mib": max(m for _, _, m in rows),
            "wall_samples_s": [w for w, _, _ in rows],
        }
    out["stats_max_abs_diff"] = _max_abs_diff(stats["evalkit evaluate"], stats["hotcoco"])
    return out


# --- report ---------------------------------------------------------------------------------


def _max_abs_diff(a: list[float] | None, b: list[float] | None) -> float | None:
    """Largest elementwise |a - b|, or None when either side is missing."""
    if a is None or b is None:
        return None
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def agreement(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Compare the contenders that compute the same numbers; st/voc are other protocols."""
    pairs = [
        ("evalkit coco", "pycocotools full", "stats"),
        ("faster-coco-eval full", "pycocotools full", "stats"),
        ("evalkit coco", "faster-coco-eval full", "stats"),
        ("hotcoco full", "pycocotools full", "stats"),
        ("evalkit coco", "hotcoco full", "stats"),
        ("pycocotools AP50", "pycocotools full", "ap50"),
        ("evalkit coco", "pycocotools AP50", "ap50"),
    ]
    rows = []
    for a, b, field in pairs:
        if a in runs and b in runs:
            va, vb = runs[a][field], runs[b][field]
            diff = _max_abs_diff(va if field == "stats" else [va], vb if field == "stats" else [vb])
            rows.append({"a": a, "b": b, "field": field, "max_abs_diff": diff})
    return rows


def _speedup(runs: dict[str, dict[str, Any]], name: str, reference: str) -> float | None:
    """How many times faster ``name`` evaluates than ``reference`` (None if not run)."""
    if name not in runs or reference not in runs:
        return None
    return float(runs[reference]["eval_s"] / runs[name]["eval_s"])


def _same_kind_pycocotools(name: str) -> str:
    return "pycocotools full" if CONTENDERS[name][1] == "full" else "pycocotools AP50"


def _cpu(runs: dict[str, dict[str, Any]], name: str) -> float:
    """Median CPU seconds of one evaluation: less sensitive than wall time to other load."""
    return float(statistics.median(runs[name]["eval_cpu_samples_s"]))


def targets(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The three targets, each met (True), not met (False) or not measurable (None)."""
    speedup = _speedup(runs, "evalkit coco", "faster-coco-eval full")
    detail = "not run"
    if speedup is not None:
        cpu_ratio = _cpu(runs, "faster-coco-eval full") / _cpu(runs, "evalkit coco")
        detail = f"{speedup:.2f}x (CPU time: {cpu_ratio:.2f}x)"
    rows: list[dict[str, Any]] = [
        {
            "target": f"evalkit coco full >= {SPEEDUP_TARGET_VS_FCE:g}x faster than "
            "faster-coco-eval full",
            "met": None if speedup is None else speedup >= SPEEDUP_TARGET_VS_FCE,
            "detail": detail,
        }
    ]
    # The coco protocol always computes all 10 thresholds: its AP50 run is the full run.
    ek = [n for n in runs if CONTENDERS[n][0] == "evalkit"]
    slow = {n: runs[n]["eval_s"] for n in ek}
    rows.append(
        {
            "target": f"every evalkit protocol at AP50 < {AP50_TARGET_S:g} s",
            "met": all(s < AP50_TARGET_S for s in slow.values()) if slow else None,
            "detail": ", ".join(
                f"{n.split()[-1]} {s:.3f} s (CPU {_cpu(runs, n):.3f} s)" for n, s in slow.items()
            ),
        }
    )
    mem = []
    for n in ek:
        ref = _same_kind_pycocotools(n)
        if ref in runs:
            mem.append((n, runs[n]["peak_rss_mib"], ref, runs[ref]["peak_rss_mib"]))
    rows.append(
        {
            "target": "evalkit peak RSS below pycocotools' (same IoU set)",
            "met": all(a < b for _, a, _, b in mem) if mem else None,
            "detail": "; ".join(f"{n.split()[-1]} {a:.0f} vs {b:.0f} MiB" for n, a, _, b in mem)
            or "pycocotools skipped",
        }
    )
    return rows


def end_to_end_target(e2e: dict[str, Any] | None) -> dict[str, Any]:
    """Issue 17: ``evalkit evaluate`` end to end, fresh process, faster than hotcoco."""
    target = (
        "evalkit evaluate --protocol coco --json faster than hotcoco, end to end (fresh process)"
    )
    if e2e is None:
        return {"target": target, "met": None, "detail": "not run"}
    ek, hc = e2e["sides"]["evalkit evaluate"], e2e["sides"]["hotcoco"]
    detail = (
        f"evalkit {ek['wall_s']:.2f} s wall ({ek['cpu_s']:.2f} s CPU, {ek['peak_rss_mib']:.0f} "
        f"MiB), hotcoco {hc['wall_s']:.2f} s ({hc['cpu_s']:.2f} s CPU, "
        f"{hc['peak_rss_mib']:.0f} MiB): {hc['wall_s'] / ek['wall_s']:.2f}x; stats max "
        f"|difference| {_fmt(e2e['stats_max_abs_diff'], '.3g')}"
    )
    return {"target": target, "met": ek["wall_s"] < hc["wall_s"], "detail": detail}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(runs: dict[str, dict[str, Any]]) -> str:
    """The results table as GitHub markdown (also readable as plain text)."""
    head = (
        "| contender | IoU set | load s | eval s (median) | eval s (p90) | eval CPU s (median) "
        "| peak RSS MiB | x faster than faster-coco-eval full "
        "| x faster than pycocotools (same IoU set) |"
    )
    lines = [head, "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for name, run in runs.items():
        vs_fce = _speedup(runs, name, "faster-coco-eval full")
        vs_pc = _speedup(runs, name, _same_kind_pycocotools(name))
        iou_set = "0.50:0.95" if run["kind"] == "full" else "0.50"
        lines.append(
            f"| {name} | {iou_set} | {run['load_s']:.2f} | {run['eval_s']:.3f} "
            f"| {run['eval_p90_s']:.3f} | {_cpu(runs, name):.3f} "
            f"| {run['peak_rss_mib']:.0f} | {_fmt(vs_fce, '.2f')} | {_fmt(vs_pc, '.2f')} |"
        )
    return "\n".join(lines)


def render_text(record: dict[str, Any]) -> str:
    """Table, agreement and targets as printed and as recorded in the markdown file."""
    out = [render_table(record["runs"]), "", "Agreement (max |difference|):"]
    for row in record["agreement"]:
        diff = _fmt(row["max_abs_diff"], ".3g")
        out.append(f"- {row['a']} vs {row['b']} ({row['field']}): {diff}")
    for name in ("evalkit st", "evalkit voc07", "evalkit voc12"):
        if name in record["runs"]:
            out.append(f"- {name} AP50 = {record['runs'][name]['ap50']:.4f} (own protocol)")
    out += ["", "Targets:"]
    for row in record["targets"]:
        verdict = {True: "MET", False: "NOT MET", None: "n/a"}[row["met"]]
        out.append(f"- [{verdict}] {row['target']}: {row['detail']}")
    return "\n".join(out)


def render_markdown(record: dict[str, Any]) -> str:
    """The recorded results page, rendered only from the JSON record."""
    m, s, w = record["machine"], record["settings"], record["workload"]
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        "# Metrics engine speed",
        "",
        f"Recorded {record['created']} by `{record['command']}`.",
        "",
        f"- Machine: {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical "
        f"cores, {m['platform']}, Python {m['python']}; thread env {m['thread_env']}",
        f"- Packages: {pkgs}; git {m['git'].get('revision', '?')}"
        f"{' (dirty)' if m['git'].get('dirty') else ''}, evalkit sources sha256 "
        f"{m['git'].get('evalkit_sources_sha256', '?')}",
        f"- Workload (seed {s['seed']}): {w['images']} images ({w['images_without_gt']} without "
        f"GT), {w['annotations']} GT ({w['crowd']} crowd), {w['categories']} categories, "
        f"{w['detections']} detections; GT {w['gt_mb']:.1f} MB, results {w['dets_mb']:.1f} MB",
        f"- Timing: warm-up {s['warmup']} / repeat {s['repeat']} (pycocotools "
        f"{s['pycocotools_warmup']} / {s['pycocotools_repeat']}), eval s = median; "
        "each contender in its own process, peak RSS = its own VmHWM",
        "- 1-min load average before/after each contender: "
        + ", ".join(
            f"{n} {r['load_average_1min'][0]:.1f}/{r['load_average_1min'][1]:.1f}"
            for n, r in record["runs"].items()
        )
        + f" (on {m['usable_cores']} cores; above that, other processes shared the CPUs)",
        "",
        render_text(record),
    ]
    if record.get("profile"):
        lines += ["", "## cProfile of one evalkit coco evaluation", "", "```text"]
        lines += [record["profile"].strip(), "```"]
    return "\n".join(lines) + "\n"


# --- driver ---------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Build the workload, run every contender in its own process, return the record."""
    # Before the runs: the source digest names what is measured.
    machine = machine_info(
        ("numpy", "orjson", "pycocotools", "faster-coco-eval", "hotcoco"),
        REPO / "evalkit",
        "evalkit_sources_sha256",
    )
    with tempfile.TemporaryDirectory(prefix="evalkit-metrics-speed-") as tmp:
        start = time.perf_counter()
        gt, dets = make_workload(args.images, args.seed)
        gt_path, dets_path = Path(tmp) / "gt.json", Path(tmp) / "dets.json"
        gt_path.write_text(json.dumps(gt))
        dets_path.write_text(json.dumps(dets))
        workload = {
            "images": len(gt["images"]),
            "images_without_gt": len(gt["images"])
            - len({a["image_id"] for a in gt["annotations"]}),
            "annotations": len(gt["annotations"]),
            "crowd": sum(a["iscrowd"] for a in gt["annotations"]),
            "categories": len(gt["categories"]),
            "detections": len(dets),
            "gt_mb": gt_path.stat().st_size / 1e6,
            "dets_mb": dets_path.stat().st_size / 1e6,
        }
        del gt, dets
        print(f"workload built in {time.perf_counter() - start:.1f} s: {workload}", flush=True)
        runs: dict[str, dict[str, Any]] = {}
        for name, (library, _) in CONTENDERS.items():
            if library == "pycocotools" and args.skip_pycocotools:
                continue
            is_pc = library == "pycocotools"
            warmup = args.pycocotools_warmup if is_pc else args.warmup
            repeat = args.pycocotools_repeat if is_pc else args.repeat
            argv = ["--worker", name, "--gt", str(gt_path), "--dets", str(dets_path)]
            busy = os.getloadavg()[0]  # other processes on the machine skew wall times
            runs[name] = r = _spawn([*argv, "--warmup", str(warmup), "--repeat", str(repeat)])
            r["load_average_1min"] = [busy, os.getloadavg()[0]]
            print(
                f"{name}: load {r['load_s']:.2f} s, eval {r['eval_s']:.3f} s "
                f"(samples {', '.join(f'{t:.3f}' for t in r['eval_samples_s'])}; CPU "
                f"{', '.join(f'{t:.3f}' for t in r['eval_cpu_samples_s'])}), "
                f"peak {r['peak_rss_mib']:.0f} MiB, load average {busy:.2f}",
                flush=True,
            )
        e2e = None
        if args.end_to_end_rounds:
            e2e = end_to_end(gt_path, dets_path, args.end_to_end_rounds)
            for name, side in e2e["sides"].items():
                print(f"end to end, {name}: {side['wall_s']:.2f} s wall", flush=True)
        profile = None
        if args.profile:
            argv = ["--worker", "profile", "--gt", str(gt_path), "--dets", str(dets_path)]
            argv += ["--profile-top", str(args.profile_top)]
            profile = _spawn(argv)["profile"]
    return {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "metrics_speed",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "settings": {
            k: getattr(args, k)
            for k in (
                *("images", "seed", "warmup", "repeat", "pycocotools_warmup"),
                *("pycocotools_repeat", "skip_pycocotools", "profile", "end_to_end_rounds"),
            )
        },
        "workload": workload,
        "machine": machine,
        "runs": runs,
        "agreement": agreement(runs),
        "end_to_end": e2e,
        "targets": [*targets(runs), end_to_end_target(e2e)],
        "profile": profile,
    }


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the ``--worker*`` ones are internal (one contender's process)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=_positive, default=COCO_VAL_IMAGES, help="default 5000")
    p.add_argument("--seed", type=int, default=2017)
    p.add_argument("--repeat", type=_positive, default=3, help="timed passes (evalkit, fce)")
    p.add_argument(
        "--warmup", type=_non_negative, default=1, help="untimed passes first (evalkit, fce)"
    )
    p.add_argument("--pycocotools-repeat", type=_positive, default=1)
    p.add_argument(
        "--pycocotools-warmup", type=_non_negative, default=0, help="a pass takes ~1 min"
    )
    p.add_argument("--skip-pycocotools", action="store_true")
    p.add_argument(
        "--end-to-end-rounds",
        type=_non_negative,
        default=7,
        help="fresh-process pairs of evalkit evaluate and hotcoco (0 skips)",
    )
    p.add_argument("--profile", action="store_true", help="also cProfile evalkit coco")
    p.add_argument("--profile-top", type=_positive, default=25)
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="writes OUTPUT.md/.json")
    p.add_argument("--worker", choices=[*CONTENDERS, "profile"], help=argparse.SUPPRESS)
    p.add_argument("--gt", help=argparse.SUPPRESS)
    p.add_argument("--dets", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--worker``, one contender) and record the results."""
    args = parse_args(argv)
    if args.worker:
        if args.worker == "profile":
            out: dict[str, Any] = {"profile": profile_worker(args.gt, args.dets, args.profile_top)}
        else:
            out = run_worker(args.worker, args.gt, args.dets, args.warmup, args.repeat)
        args.worker_out.write_text(json.dumps(out))
        return 0
    record = benchmark(args)
    print()
    print(render_text(record))
    if record["profile"]:
        print("\ncProfile of one evalkit coco evaluation:\n" + record["profile"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.output, record, render_markdown(record))
    print(f"recorded {args.output.with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
