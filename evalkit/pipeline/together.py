"""Several variants over one dataset in lockstep: each image decoded once per run.

A run that compares float, int8 and QAT files of one model would otherwise read and decode
every JPEG once per variant. Here the batches (the same for every variant: the run's batch
size and, under the zoo profile, the zoo's batching) are walked once, in windows of about
64 images: a window's images are decoded once in worker threads while the previous window
is inferred, pre-processed once per distinct pre-processing (variants with the same
settings share the tensor); then each variant that still lacks a prediction in a batch of
the window infers it, one variant through the whole window before the next (its session
stays hot), its output decoding + NMS overlapping with the next inference. Memory stays
bounded: two windows in flight, never the dataset.

Every variant keeps its own resumable cache and its own batches: a batch with any image
left to predict for a variant runs whole for that variant (as :func:`predict` does), so
the outputs are those of the one-variant-at-a-time path, and a test holds it to that.

Stage times: a variant's inference and output decoding + NMS are its own; the shared
decoding and pre-processing of a batch are divided among the variants that used it, and
each variant's ``wall_s`` is its share of the loop's wall time, so the seconds of all
variants add up to the run's.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from evalkit.datasets.dataset import Dataset
from evalkit.pipeline.cache import ImageStamp, PredictionCache
from evalkit.pipeline.predict import (
    PREFETCH,
    Predictions,
    StageTimes,
    decode_images,
    resume,
)
from evalkit.postprocess.decoders import Decoder
from evalkit.postprocess.final import detections
from evalkit.postprocess.nms import NmsSettings
from evalkit.runners.base import Runner
from evalkit.types import ImageDetections, RawOutputs

# Images decoded ahead and run by one variant before the next takes them: bounded memory
# (two windows of decoded batches in flight), few switches between sessions.
WINDOW_IMAGES = 64
WINDOWS_AHEAD = 1


@dataclass(eq=False)  # compared by identity: a job is one variant of one walk
class Job:
    """One variant of the lockstep walk: its runner, decoder, cache and what it has."""

    name: str
    runner: Runner
    decoder: Decoder
    cache: PredictionCache
    done: dict[int, tuple[ImageDetections, ImageStamp]] = field(default_factory=dict)
    changed: int = 0
    times: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("decode", "preprocess", "inference", "post"), 0.0)
    )
    wall_s: float = 0.0
    images: int = 0
    # Which tensor it takes: jobs with equal pre-processing settings share one per batch.
    key: bytes = b""

    def __post_init__(self) -> None:
        settings = self.runner.preprocessing.preprocessor.settings()
        self.key = orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)

    def lacks(self, batch: Sequence[int]) -> bool:
        return any(i not in self.done for i in batch)


@dataclass(frozen=True)
class _Decoded:
    """A batch's images decoded once, and the tensors of each distinct pre-processing."""

    indices: list[int]
    stamps: list[ImageStamp]
    failed: list[tuple[int, str]]
    tensors: dict[bytes, Any]
    decode_s: float
    preprocess_s: dict[bytes, float]


def _decode_batch(paths: Sequence[Path], indices: Sequence[int], jobs: Sequence[Job]) -> _Decoded:
    t0 = time.perf_counter()
    images, kept, stamps, failed = decode_images(paths, indices)
    decode_s = time.perf_counter() - t0
    tensors: dict[bytes, Any] = {}
    preprocess_s: dict[bytes, float] = {}
    for job in jobs:
        if job.key in tensors or not images:
            continue
        t1 = time.perf_counter()
        tensors[job.key] = job.runner.preprocessing.preprocessor.apply_batch(images)
        preprocess_s[job.key] = time.perf_counter() - t1
    return _Decoded(kept, stamps, failed, tensors, decode_s, preprocess_s)


def _paths(dataset: Dataset, batch: Sequence[int]) -> list[Path]:
    return [dataset.image_path(i) for i in batch]


def _windows(
    todo: Sequence[tuple[list[int], list[Job]]],
) -> list[list[tuple[list[int], list[Job]]]]:
    """Consecutive batches grouped until a group holds WINDOW_IMAGES images (or more: a
    batch is never split)."""
    windows: list[list[tuple[list[int], list[Job]]]] = []
    current: list[tuple[list[int], list[Job]]] = []
    size = 0
    for item in todo:
        current.append(item)
        size += len(item[0])
        if size >= WINDOW_IMAGES:
            windows.append(current)
            current, size = [], 0
    if current:
        windows.append(current)
    return windows


def _share_decoding(users: Sequence[Job], decoded: _Decoded) -> None:
    """A batch's decoding (and each pre-processing) divided among the variants using it."""
    for job in users:
        job.images += len(decoded.indices) + len(decoded.failed)
        job.times["decode"] += decoded.decode_s / len(users)
        sharing = sum(u.key == job.key for u in users)
        job.times["preprocess"] += decoded.preprocess_s.get(job.key, 0.0) / sharing


def _finish(decoder: Decoder, raw: RawOutputs, nms: NmsSettings) -> tuple[list[Any], float]:
    t0 = time.perf_counter()
    per_image = detections(decoder, raw, nms)
    return per_image, time.perf_counter() - t0


def predict_together(
    dataset: Dataset,
    jobs: Sequence[Job],
    nms: NmsSettings,
    batches: Sequence[Sequence[int]],
    *,
    progress: bool = True,
    workers: int = 2,
) -> dict[str, Predictions]:
    """Every job's predictions on the images of ``batches`` (in that order and grouping),
    each resumed from its cache, each image decoded once."""
    wanted = [i for b in batches for i in b]
    for job in jobs:
        job.done, job.changed = resume(dataset, wanted, job.cache)
    todo = [(list(b), [j for j in jobs if j.lacks(b)]) for b in batches]
    todo = [(b, users) for b, users in todo if users]
    remaining = sum(len(b) * len(users) for b, users in todo)
    bar = tqdm(
        total=len(wanted) * len(jobs),
        initial=len(wanted) * len(jobs) - remaining,
        desc=" + ".join(j.name for j in jobs),
        unit="img",
        disable=not progress,
        dynamic_ncols=True,
    )
    failed: dict[int, str] = {}
    try:
        # Decoding and output decoding + NMS in pools of their own: an output waiting behind
        # a window of JPEGs in one queue would stall the inference loop.
        with (
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
            ThreadPoolExecutor(max_workers=1) as post,
        ):
            queue = iter(_windows(todo))
            pending: deque[list[tuple[list[Job], Future[_Decoded]]]] = deque()
            finishing: deque[tuple[Job, _Decoded, Future[tuple[list[Any], float]]]]
            finishing = deque()

            def refill() -> None:
                while len(pending) < WINDOWS_AHEAD + 1:
                    window = next(queue, None)
                    if window is None:
                        return
                    pending.append(
                        [
                            (users, pool.submit(_decode_batch, _paths(dataset, b), b, users))
                            for b, users in window
                        ]
                    )

            def drain(keep: int) -> None:
                while len(finishing) > keep:
                    job, decoded, future = finishing.popleft()
                    per_image, post_s = future.result()
                    job.times["post"] += post_s
                    for index, dets, stamp in zip(
                        decoded.indices, per_image, decoded.stamps, strict=True
                    ):
                        job.done[index] = (dets, stamp)
                        job.cache.append(index, dets, stamp)
                    bar.update(len(decoded.indices) + len(decoded.failed))

            refill()
            while pending:
                t_window = time.perf_counter()
                window = [(users, future.result()) for users, future in pending.popleft()]
                refill()
                for users, decoded in window:
                    failed.update(decoded.failed)
                    _share_decoding(users, decoded)
                    if not decoded.indices:
                        bar.update(len(decoded.failed) * len(users))
                # One variant through the whole window, then the next: switching sessions
                # every batch would evict each model's weights from the caches and, with
                # several onnxruntime threads, leave idle sessions' threads spinning.
                in_window = [j for j in jobs if any(j in users for users, _ in window)]
                for job in in_window:
                    for users, decoded in window:
                        if job not in users or not decoded.indices:
                            continue
                        t0 = time.perf_counter()
                        raw = job.runner.run(decoded.tensors[job.key])
                        job.times["inference"] += time.perf_counter() - t0
                        # Decode + NMS of this output overlap with the next inference.
                        done = post.submit(_finish, job.decoder, raw, nms)
                        finishing.append((job, decoded, done))
                        drain(keep=PREFETCH)
                for job in in_window:  # the window's wall time, shared by those who used it
                    job.wall_s += (time.perf_counter() - t_window) / len(in_window)
            t_end = time.perf_counter()
            drain(keep=0)
            for job in jobs:
                job.wall_s += (time.perf_counter() - t_end) / len(jobs)
    finally:
        bar.close()
        for job in jobs:
            job.cache.close()
    return {job.name: _predictions(job, wanted, failed) for job in jobs}


def _predictions(job: Job, wanted: list[int], failed: dict[int, str]) -> Predictions:
    kept = [i for i in wanted if i not in failed]
    times = StageTimes(
        decode_s=job.times["decode"],
        preprocess_s=job.times["preprocess"],
        inference_s=job.times["inference"],
        postprocess_s=job.times["post"],
        wall_s=job.wall_s,
        images=job.images,
        cached_images=len(wanted) - job.images,
        changed_images=job.changed,
    )
    return Predictions(
        image_indices=tuple(kept),
        per_image=tuple(job.done[i][0] for i in kept),
        times=times,
        stamps=tuple(job.done[i][1] for i in kept),
        failed=tuple(sorted(failed.items())),
    )
