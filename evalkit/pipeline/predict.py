"""Run one model over a dataset: decode images, pre-process, infer, decode outputs, NMS.

Image decoding and pre-processing run in worker threads a few batches ahead of inference,
and output decoding + NMS of a batch run while the next batch is inferred: OpenCV,
onnxruntime and numpy's large operations release the GIL, so on a multi-core host the model
rarely waits. Each image's NMS output goes to the prediction cache as soon as it
exists, so a killed run loses at most the batch in flight.

A cached prediction is reused only while its image file holds the same bytes (see
:class:`~evalkit.pipeline.cache.ImageStamp`); the decoded size of every image is kept, for
the ``st`` protocol's scaling (the zoo scales by the image as decoded). An image that fails
to decode does not stop the others: it is reported in ``Predictions.failed``.

``batches`` fixes which images share an inference call (the zoo's batching: int8 kernels
are not batch-invariant, 6b.5). A batch with any image left to predict runs whole, so a
resumed run computes every output in the same company as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from evalkit.datasets.dataset import Dataset
from evalkit.datasets.images import decode_rgb
from evalkit.errors import InputError
from evalkit.pipeline.cache import ImageStamp, PredictionCache
from evalkit.postprocess.decoders import Decoder
from evalkit.postprocess.final import detections
from evalkit.postprocess.nms import NmsSettings
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
    changed_images: int = 0

    @property
    def images_per_s(self) -> float:
        """Throughput of the images processed in this call (cached ones excluded)."""
        return self.images / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s}


@dataclass(frozen=True)
class Predictions:
    """NMS output per predicted image, in the order asked for; ``stamps`` say which bytes
    each came from and their decoded size; ``failed`` the images that would not decode."""

    image_indices: tuple[int, ...]
    per_image: tuple[ImageDetections, ...]
    times: StageTimes
    stamps: tuple[ImageStamp, ...] = ()
    failed: tuple[tuple[int, str], ...] = ()

    def decoded_sizes(self) -> dict[int, tuple[int, int]]:
        """Image index -> (width, height) as decoded."""
        return {
            i: (s.width, s.height) for i, s in zip(self.image_indices, self.stamps, strict=True)
        }


@dataclass(frozen=True)
class _Prepared:
    indices: list[int]
    batch: Any
    stamps: list[ImageStamp]
    failed: list[tuple[int, str]]
    decode_s: float
    preprocess_s: float


@dataclass(frozen=True)
class BatchResult:
    """One inference batch done: NMS output and image stamp per predicted image (in
    ``indices`` order), the images that would not decode, and the seconds of each stage."""

    indices: tuple[int, ...]
    per_image: tuple[ImageDetections, ...]
    stamps: tuple[ImageStamp, ...]
    failed: tuple[tuple[int, str], ...]
    decode_s: float = 0.0
    preprocess_s: float = 0.0
    inference_s: float = 0.0
    postprocess_s: float = 0.0


def decode_images(
    paths: Sequence[Path], indices: Sequence[int]
) -> tuple[list[Any], list[int], list[ImageStamp], list[tuple[int, str]]]:
    """The images that decode (RGB), their indices and stamps, and (index, why) for the
    others."""
    images, kept, stamps, failed = [], [], [], []
    for i, path in zip(indices, paths, strict=True):
        try:
            image = decode_rgb(path)
            stamps.append(ImageStamp.of(path, image.shape[1], image.shape[0]))
        except (InputError, OSError) as exc:
            failed.append((i, getattr(exc, "problem", None) or str(exc)))
            continue
        images.append(image)
        kept.append(i)
    return images, kept, stamps, failed


def _prepare(paths: Sequence[Path], runner: Runner, indices: Sequence[int]) -> _Prepared:
    t0 = time.perf_counter()
    images, kept, stamps, failed = decode_images(paths, indices)
    t1 = time.perf_counter()
    batch = runner.preprocessing.preprocessor.apply_batch(images) if images else None
    t2 = time.perf_counter()
    return _Prepared(kept, batch, stamps, failed, t1 - t0, t2 - t1)


def _finish(
    decoder: Decoder, raw: RawOutputs, nms: NmsSettings
) -> tuple[list[ImageDetections], float]:
    t0 = time.perf_counter()
    per_image = detections(decoder, raw, nms)
    return per_image, time.perf_counter() - t0


def predict_batch(
    paths: Sequence[Path],
    indices: Sequence[int],
    runner: Runner,
    decoder: Decoder,
    nms: NmsSettings,
) -> BatchResult:
    """One batch start to end in the calling thread (what a remote worker runs)."""
    prepared = _prepare(paths, runner, indices)
    if not prepared.indices:
        return BatchResult((), (), (), tuple(prepared.failed), prepared.decode_s)
    t0 = time.perf_counter()
    raw = runner.run(prepared.batch)
    inference_s = time.perf_counter() - t0
    per_image, postprocess_s = _finish(decoder, raw, nms)
    return BatchResult(
        tuple(prepared.indices),
        tuple(per_image),
        tuple(prepared.stamps),
        tuple(prepared.failed),
        prepared.decode_s,
        prepared.preprocess_s,
        inference_s,
        postprocess_s,
    )


class BatchExecutor(Protocol):
    """Runs inference batches and yields each as it is done, in any order."""

    def run_batches(
        self,
        dataset: Dataset,
        batches: Sequence[Sequence[int]],
        runner: Runner,
        decoder: Decoder,
        nms: NmsSettings,
    ) -> Iterator[BatchResult]: ...


@dataclass(frozen=True)
class ThreadExecutor:
    """This process: decode and pre-processing in worker threads a few batches ahead,
    output decoding + NMS of a batch while the next one is inferred."""

    workers: int = 2

    def run_batches(
        self,
        dataset: Dataset,
        batches: Sequence[Sequence[int]],
        runner: Runner,
        decoder: Decoder,
        nms: NmsSettings,
    ) -> Iterator[BatchResult]:
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            pending: deque[Future[_Prepared]] = deque()
            queue = iter(batches)

            def refill() -> None:
                while len(pending) < PREFETCH:
                    chunk = next(queue, None)
                    if chunk is None:
                        return
                    paths = [dataset.image_path(i) for i in chunk]
                    pending.append(pool.submit(_prepare, paths, runner, chunk))

            refill()
            finishing: deque[tuple[_Prepared, float, Future[tuple[list[ImageDetections], float]]]]
            finishing = deque()

            def done(keep: int) -> Iterator[BatchResult]:
                while len(finishing) > keep:
                    prepared, inference_s, future = finishing.popleft()
                    per_image, postprocess_s = future.result()
                    yield BatchResult(
                        tuple(prepared.indices),
                        tuple(per_image),
                        tuple(prepared.stamps),
                        (),
                        0.0,
                        0.0,
                        inference_s,
                        postprocess_s,
                    )

            while pending:
                prepared = pending.popleft().result()
                refill()
                # Stage times and failures are reported as soon as the batch is read.
                yield BatchResult(
                    (), (), (), tuple(prepared.failed), prepared.decode_s, prepared.preprocess_s
                )
                if not prepared.indices:
                    continue
                t0 = time.perf_counter()
                raw = runner.run(prepared.batch)
                inference_s = time.perf_counter() - t0
                # Decode + NMS of this batch overlap with the next batch's inference.
                finishing.append((prepared, inference_s, pool.submit(_finish, decoder, raw, nms)))
                yield from done(keep=PREFETCH)
            yield from done(keep=0)


def resume(
    dataset: Dataset, wanted: Sequence[int], cache: PredictionCache | None
) -> tuple[dict[int, tuple[ImageDetections, ImageStamp]], int]:
    """The cached predictions of ``wanted`` images whose files still hold the same bytes,
    and how many were cached from bytes that have changed since."""
    loaded = cache.load() if cache is not None else {}
    wanted_set = set(wanted)
    done: dict[int, tuple[ImageDetections, ImageStamp]] = {}
    changed = 0
    for i, entry in loaded.items():
        if i not in wanted_set:
            continue
        if entry[1].still_matches(dataset.image_path(i)):
            done[i] = entry
        else:
            changed += 1
    return done, changed


def predict(
    dataset: Dataset,
    runner: Runner,
    decoder: Decoder,
    nms: NmsSettings,
    *,
    batch_size: int = 1,
    indices: Sequence[int] | None = None,
    batches: Sequence[Sequence[int]] | None = None,
    cache: PredictionCache | None = None,
    progress: bool = True,
    description: str = "predict",
    workers: int = 2,
    on_batch: Callable[[int], None] | None = None,
    executor: BatchExecutor | None = None,
) -> Predictions:
    """Predictions for ``indices`` (all images by default; or the images of ``batches``, in
    that order and grouping), resuming from ``cache``. ``executor`` runs the batches (this
    process's threads by default; :mod:`evalkit.pipeline.ray_executor` spreads them over a
    Ray cluster); each result is cached as it arrives, whatever their order."""
    if batches is not None:
        fixed = [list(b) for b in batches]
        wanted = [i for b in fixed for i in b]
    else:
        wanted = list(range(len(dataset))) if indices is None else list(indices)
    done, changed = resume(dataset, wanted, cache)
    if batches is not None:
        run_batches = [b for b in fixed if any(i not in done for i in b)]
        todo = [i for b in run_batches for i in b]
    else:
        todo = [i for i in wanted if i not in done]
        run_batches = [todo[k : k + batch_size] for k in range(0, len(todo), batch_size)]
    failed: list[tuple[int, str]] = []
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
    running = executor or ThreadExecutor(workers)
    try:
        for result in running.run_batches(dataset, run_batches, runner, decoder, nms):
            decode_s += result.decode_s
            preprocess_s += result.preprocess_s
            inference_s += result.inference_s
            postprocess_s += result.postprocess_s
            failed.extend(result.failed)
            for index, dets, stamp in zip(
                result.indices, result.per_image, result.stamps, strict=True
            ):
                done[index] = (dets, stamp)
                if cache is not None:
                    cache.append(index, dets, stamp)
            bar.update(len(result.indices) + len(result.failed))
            if on_batch is not None and result.indices:
                on_batch(len(result.indices))
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
        changed_images=changed,
    )
    bad = {i for i, _ in failed}
    kept = [i for i in wanted if i not in bad]
    return Predictions(
        image_indices=tuple(kept),
        per_image=tuple(done[i][0] for i in kept),
        times=times,
        stamps=tuple(done[i][1] for i in kept),
        failed=tuple(failed),
    )
