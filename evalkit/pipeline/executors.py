"""Where a run's inference batches execute: this process (``local``, the default) or a Ray
cluster (``ray``, :mod:`evalkit.pipeline.ray_executor`). Chosen by name from
:data:`EXECUTORS`; the choice never changes a number (the batches, their grouping and every
setting that shapes an output are the same), only where and how fast the work runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from evalkit.registry import Registry

if TYPE_CHECKING:  # light at import: the configuration reads this module
    from evalkit.pipeline.predict import BatchExecutor


@dataclass(frozen=True)
class ExecutorConfig:
    """The ``executor`` section of a run's configuration."""

    kind: str = field(
        default="local", metadata={"help": "local (this process) or ray (a Ray cluster)"}
    )
    address: str = field(
        default="",
        metadata={"help": "ray: the cluster address (empty: a local cluster for this run)"},
    )
    actors: int | None = field(
        default=None,
        metadata={"help": "ray: actors per variant (default: cluster CPUs / cpus_per_actor)"},
    )
    cpus_per_actor: float = field(default=1.0, metadata={"help": "ray: CPUs each actor reserves"})
    threads_per_actor: int | None = field(
        default=None,
        metadata={"help": "ray: onnxruntime threads in each actor (default: cpus_per_actor)"},
    )
    resources: dict[str, float] = field(
        default_factory=dict,
        metadata={"help": "ray: custom resources each actor needs, e.g. {board: 1}"},
    )


@dataclass(frozen=True)
class RunnerSpec:
    """How a worker elsewhere opens the variant's runner: its model file and the options
    :func:`evalkit.runners.base.open_runner` takes."""

    path: Path
    options: dict[str, Any]


class Executor(Protocol):
    """One run's executor: a batch executor per variant, then closed."""

    def for_variant(self, name: str, spec: RunnerSpec) -> BatchExecutor: ...

    def describe(self) -> dict[str, Any]:
        """What ran the batches, for the record."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class LocalExecutor:
    """Every batch in this process (:class:`~evalkit.pipeline.predict.ThreadExecutor`)."""

    config: ExecutorConfig = field(default_factory=ExecutorConfig)

    def for_variant(self, name: str, spec: RunnerSpec) -> BatchExecutor:
        from evalkit.pipeline.predict import ThreadExecutor

        return ThreadExecutor()

    def describe(self) -> dict[str, Any]:
        return {"kind": "local"}

    def close(self) -> None:
        return None


ExecutorFactory = Any  # a class taking an ExecutorConfig, whose instances are Executors
EXECUTORS: Registry[ExecutorFactory] = Registry("executor")
EXECUTORS.add("local", LocalExecutor)
EXECUTORS.add_lazy("ray", "evalkit.pipeline.ray_executor:RayExecutor")


def open_executor(config: ExecutorConfig) -> Executor:
    """The configured executor, ready for the run's variants."""
    executor: Executor = EXECUTORS.get(config.kind)(config)
    return executor
