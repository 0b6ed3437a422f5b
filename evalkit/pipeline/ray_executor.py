"""A run's inference batches on a Ray cluster (``executor: {kind: ray}``).

Each variant gets a pool of actors; each actor opens the variant's runner once (one
onnxruntime session, ``threads_per_actor`` threads) and turns a batch of image paths into
NMS output, doing decode, pre-processing, inference, output decoding and NMS where it runs.
The driver hands batches to idle actors and takes results back as they finish, into the
same resumable prediction cache as the local executor; the metrics are computed once, on
the driver, over all images (never per shard). Batches keep the grouping the run planned
(the zoo's batches of 32 included), so outputs are the local executor's exactly.

Actors are restarted and their batch retried when their process dies (``max_restarts``);
a killed driver resumes from the cache like any run. The images and the output folder must
be reachable at the same paths from every node (shared storage).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.datasets.dataset import Dataset
from evalkit.errors import InputError
from evalkit.pipeline.executors import ExecutorConfig, RunnerSpec
from evalkit.pipeline.predict import BatchExecutor, BatchResult, predict_batch
from evalkit.postprocess.decoders import Decoder
from evalkit.postprocess.nms import NmsSettings
from evalkit.runners.base import Runner, open_runner

# A dead actor is restarted, and its batch retried, this many times before the run fails.
MAX_RESTARTS = 3
LOOPBACK = "127.0.0.1"
INSTALL_HINT = "the ray executor needs Ray: pip install 'evalkit[ray]'"


def require_ray() -> Any:
    """The ray module, or the InputError that says how to install it."""
    if importlib.util.find_spec("ray") is None:
        raise InputError(INSTALL_HINT, record="executor.kind")
    import ray

    return ray


class BatchWorker:
    """What each actor holds: one runner, the decoder and the NMS settings."""

    def __init__(self, spec: RunnerSpec, decoder: Decoder, nms: NmsSettings) -> None:
        self.runner = open_runner(spec.path, **spec.options)
        self.decoder = decoder
        self.nms = nms

    def run(self, indices: Sequence[int], paths: Sequence[str]) -> BatchResult:
        return predict_batch([Path(p) for p in paths], indices, self.runner, self.decoder, self.nms)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class RayVariant:
    """The actors of one variant, and the batches they run."""

    ray: Any
    name: str
    spec: RunnerSpec
    config: ExecutorConfig
    token: str
    actors: int = 0

    def run_batches(
        self,
        dataset: Dataset,
        batches: Sequence[Sequence[int]],
        runner: Runner,
        decoder: Decoder,
        nms: NmsSettings,
    ) -> Iterator[BatchResult]:
        if not batches:
            return
        ray = self.ray
        worker = ray.remote(BatchWorker)
        options = {
            "num_cpus": self.config.cpus_per_actor,
            "resources": dict(self.config.resources) or None,
            "max_restarts": MAX_RESTARTS,
            "max_task_retries": MAX_RESTARTS,
        }
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        wanted = self.config.actors or max(1, int(cpus // self.config.cpus_per_actor))
        self.actors = min(wanted, len(batches))
        pool = [
            worker.options(name=f"evalkit-{self.token}-{self.name}-{k}", **options).remote(
                self.spec, decoder, nms
            )
            for k in range(self.actors)
        ]
        queue = iter(batches)
        running: dict[Any, Any] = {}

        def give(actor: Any) -> None:
            batch = next(queue, None)
            if batch is not None:
                paths = [str(dataset.image_path(i)) for i in batch]
                running[actor.run.remote(list(batch), paths)] = actor

        try:
            for actor in pool:
                give(actor)
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                actor = running.pop(ready[0])
                result: BatchResult = ray.get(ready[0])
                give(actor)
                yield result
        finally:
            for actor in pool:
                ray.kill(actor)


@dataclass
class RayExecutor:
    """Connects to (or starts) a Ray cluster for one run; one actor pool per variant."""

    config: ExecutorConfig
    ray: Any = field(init=False)
    started: bool = field(init=False, default=False)
    token: str = field(init=False, default_factory=lambda: secrets.token_hex(4))
    actors: dict[str, int] = field(init=False, default_factory=dict)
    variants: list[RayVariant] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.ray = require_ray()
        if not self.ray.is_initialized():
            # A cluster evalkit starts reports nothing home unless the user asked for it.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            # A local cluster for this run listens on the loopback address only.
            local = {} if self.config.address else {"_node_ip_address": LOOPBACK}
            self.ray.init(
                address=self.config.address or None,
                include_dashboard=False,
                logging_level=logging.ERROR,
                **local,
            )
            self.started = True
        elif self.config.address:
            raise InputError(
                "Ray is already connected in this process; its cluster is used, not "
                f"{self.config.address!r}",
                record="executor.address",
            )

    def for_variant(self, name: str, spec: RunnerSpec) -> BatchExecutor:
        threads = self.config.threads_per_actor or max(1, round(self.config.cpus_per_actor))
        spec = RunnerSpec(spec.path, {**spec.options, "threads": threads})
        variant = RayVariant(self.ray, name, spec, self.config, self.token)
        self.variants.append(variant)
        return variant

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "ray",
            "address": self.config.address or "local cluster",
            "cluster_cpus": float(self.ray.cluster_resources().get("CPU", 0.0)),
            "cpus_per_actor": self.config.cpus_per_actor,
            "threads_per_actor": self.config.threads_per_actor
            or max(1, round(self.config.cpus_per_actor)),
            "resources": dict(self.config.resources),
            "actors": {v.name: v.actors for v in self.variants},
        }

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
