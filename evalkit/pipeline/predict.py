"""Run one model over a dataset: decode images, pre-process, infer, decode outputs, NMS.

Image decoding and pre-processing run in worker threads a few batches ahead of inference,
and output decoding + NMS of a batch run while the next batch is inferred: OpenCV,
onnxruntime and numpy's large operations release the GIL, so on a multi-core host the model
rarely waits. Each image's NMS output goes to the prediction cache as soon as it
exists, so a killed run loses at most the batch in flight.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from tqdm import tqdm

from evalkit.datasets.dataset import Dataset
from evalkit.datasets.images import decode_rgb
from evalkit.pipeline.cache import PredictionCache
from evalkit.postprocess.decoders import Decoder
from evalkit.postprocess.nms import NmsSettings, nms_batch
from evalkit.runners.base import Runner
from evalkit.types import ImageDetections, RawOutputs

# Batches prepared ahead of the one being inferred.
PREFETCH = 4


@dataclass(frozen=True)
class StageTimes:
    """Seconds per stage. Decode and pre-process run in worker threads and overlap with
    inference, so the stages add up to more than ``wall_s``."""

    decode_s: float
    preprocess_s: float
    inference_s: float
    postprocess_s: float
    wall_s: float
    images: int
    cached_images: int

    @property
    def images_per_s(self) -> float:
        """Throughput of the images processed in this call (cached ones excluded)."""
        return self.images / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s}


@dataclass(frozen=True)
class Predictions:
    """NMS output per evaluated image, in dataset order."""

    image_indices: tuple[int, ...]
    per_image: tuple[ImageDetections, ...]
    times: StageTimes


@dataclass(frozen=True)
class _Prepared:
    indices: list[int]
    batch: Any
    decode_s: float
    preprocess_s: float


def _prepare(dataset: Dataset, runner: Runner, indices: list[int]) -> _Prepared:
    t0 = time.perf_counter()
    images = [decode_rgb(dataset.image_path(i)) for i in indices]
    t1 = time.perf_counter()
    batch = runner.preprocessing.preprocessor.apply_batch(images)
    t2 = time.perf_counter()
    return _Prepared(indices, batch, t1 - t0, t2 - t1)


def _finish(
    decoder: Decoder, raw: RawOutputs, nms: NmsSettings
) -> tuple[list[ImageDetections], float]:
    t0 = time.perf_counter()
    per_image = nms_batch(decoder.decode(raw), nms)
    return per_image, time.perf_counter() - t0


def predict(
    dataset: Dataset,
    runner: Runner,
    decoder: Decoder,
    nms: NmsSettings,
    *,
    batch_size: int = 1,
    indices: Sequence[int] | None = None,
    cache: PredictionCache | None = None,
    progress: bool = True,
    description: str = "predict",
    workers: int = 2,
    on_batch: Callable[[int], None] | None = None,
) -> Predictions:
    """Predictions for ``indices`` (all images by default), resuming from ``cache``."""
    wanted = list(range(len(dataset))) if indices is None else list(indices)
    done = cache.load() if cache is not None else {}
    wanted_set = set(wanted)
    done = {i: d for i, d in done.items() if i in wanted_set}
    todo = [i for i in wanted if i not in done]
    batches = [todo[k : k + batch_size] for k in range(0, len(todo), batch_size)]
    decode_s = preprocess_s = inference_s = postprocess_s = 0.0
    start = time.perf_counter()
    bar = tqdm(
        total=len(wanted),
        initial=len(wanted) - len(todo),
        desc=description,
        unit="img",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending: deque[Future[_Prepared]] = deque()
            queue = iter(batches)

            def refill() -> None:
                while len(pending) < PREFETCH:
                    chunk = next(queue, None)
                    if chunk is None:
                        return
                    pending.append(pool.submit(_prepare, dataset, runner, chunk))

            refill()
            finishing: deque[tuple[list[int], Future[tuple[list[ImageDetections], float]]]]
            finishing = deque()

            def drain(keep: int) -> None:
                nonlocal postprocess_s
                while len(finishing) > keep:
                    batch_indices, future = finishing.popleft()
                    per_image, seconds = future.result()
                    postprocess_s += seconds
                    for index, dets in zip(batch_indices, per_image, strict=True):
                        done[index] = dets
                        if cache is not None:
                            cache.append(index, dets)
                    bar.update(len(batch_indices))
                    if on_batch is not None:
                        on_batch(len(batch_indices))

            while pending:
                prepared = pending.popleft().result()
                refill()
                decode_s += prepared.decode_s
                preprocess_s += prepared.preprocess_s
                t0 = time.perf_counter()
                raw = runner.run(prepared.batch)
                inference_s += time.perf_counter() - t0
                # Decode + NMS of this batch overlap with the next batch's inference.
                finishing.append((prepared.indices, pool.submit(_finish, decoder, raw, nms)))
                drain(keep=PREFETCH)
            drain(keep=0)
    finally:
        bar.close()
        if cache is not None:
            cache.close()
    times = StageTimes(
        decode_s=decode_s,
        preprocess_s=preprocess_s,
        inference_s=inference_s,
        postprocess_s=postprocess_s,
        wall_s=time.perf_counter() - start,
        images=len(todo),
        cached_images=len(wanted) - len(todo),
    )
    return Predictions(
        image_indices=tuple(wanted),
        per_image=tuple(done[i] for i in wanted),
        times=times,
    )
