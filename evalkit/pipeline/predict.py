"""Run one model over a dataset: decode images, pre-process, infer, decode outputs, NMS.

Image decoding and pre-processing run in worker threads a few batches ahead of inference:
OpenCV and onnxruntime both release the GIL, so on a multi-core host the model rarely
waits for its input. Each image's NMS output goes to the prediction cache as soon as it
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
from evalkit.types import ImageDetections

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
    done = {i: d for i, d in done.items() if i in set(wanted)}
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
            while pending:
                prepared = pending.popleft().result()
                refill()
                decode_s += prepared.decode_s
                preprocess_s += prepared.preprocess_s
                t0 = time.perf_counter()
                raw = runner.run(prepared.batch)
                t1 = time.perf_counter()
                per_image = nms_batch(decoder.decode(raw), nms)
                t2 = time.perf_counter()
                inference_s += t1 - t0
                postprocess_s += t2 - t1
                for index, dets in zip(prepared.indices, per_image, strict=True):
                    done[index] = dets
                    if cache is not None:
                        cache.append(index, dets)
                bar.update(len(prepared.indices))
                if on_batch is not None:
                    on_batch(len(prepared.indices))
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
