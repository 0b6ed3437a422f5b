"""Host (CPU) latency of ONNX models on onnxruntime: one model, or two compared side by side.

Timing discipline (style point 9): session creation is timed on its own, warm-up runs are
kept and reported apart from the timed runs, every timed run is kept (``raw_ms``) so that
percentiles can be recomputed or plotted, and the thread settings, runtime and machine
travel with the numbers (style point 10). The latency pass feeds a fixed random tensor and
never looks at the outputs: accuracy is measured in a separate pass.

onnxruntime is imported when a session is built, not when this module is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from evalkit.errors import InputError
from evalkit.hashing import file_sha256
from evalkit.onnx_file import cpu_session
from evalkit.provenance import environment

__all__ = [
    "SCHEMA_VERSION",
    "InputInfo",
    "LatencyComparison",
    "LatencyResult",
    "LatencySettings",
    "LatencySummary",
    "ModelFile",
    "compare_latency",
    "measure_latency",
    "summarize",
]

SCHEMA_VERSION = 1
# The interleaving schedule compare_latency uses, recorded in its result.
COMPARE_SCHEDULE = (
    "runs interleaved one by one in ABBA order (A B, B A, A B, ...); "
    "intra-op spinning off in both sessions"
)
# onnxruntime element types this module can fill with random data, as numpy names.
_DTYPES = ("float32", "float16", "float64", "uint8", "int8", "int32", "int64")

Progress = Callable[[int], None]


@dataclass(frozen=True)
class InputInfo:
    """One model input as fed: name, concrete shape, numpy dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class LatencySummary:
    """Statistics of the timed runs, in milliseconds; images per second is batch / p50."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    images_per_s: float


def summarize(raw_ms: Sequence[float], batch: int) -> LatencySummary:
    """Percentiles (numpy's default linear interpolation), mean, extremes, population std."""
    times = np.asarray(raw_ms, dtype=np.float64)
    p50, p90, p99 = (float(v) for v in np.percentile(times, [50, 90, 99]))
    mean, low, high, std = (float(f(times)) for f in (np.mean, np.min, np.max, np.std))
    # The median, not the mean: one preempted run must not move the throughput figure.
    return LatencySummary(p50, p90, p99, mean, low, high, std, batch * 1000.0 / p50)


@dataclass(frozen=True)
class ModelFile:
    """The model file measured: path, size in bytes, sha256 of its contents."""

    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class LatencySettings:
    """How the runs were made; thread counts are as the session reports them (0: default)."""

    batch: int
    runs: int
    warmup: int
    seed: int
    threads: int | None  # as asked; None leaves onnxruntime's default (one per physical core)
    intra_op_threads: int
    inter_op_threads: int
    execution_mode: str
    allow_spinning: bool
    graph_optimization: str
    provider: str


# How the numbers are made, written into every record so that a reader need not guess.
_METHOD = {
    "timer": "time.perf_counter_ns around session.run",
    "percentiles": "numpy.percentile, linear interpolation",
    "std": "population (ddof=0)",
    "images_per_s": "batch / p50",
}


@dataclass(frozen=True)
class LatencyResult:
    """One model's latency record: the model, its inputs, every setting, every run, the host."""

    model: ModelFile
    inputs: tuple[InputInfo, ...]
    settings: LatencySettings
    session_create_ms: float
    warmup_ms: tuple[float, ...]
    raw_ms: tuple[float, ...]
    environment: Mapping[str, Any] = field(hash=False)
    created: str = ""

    @property
    def summary(self) -> LatencySummary:
        """Statistics recomputed from ``raw_ms``, so they never disagree with the runs."""
        return summarize(self.raw_ms, self.settings.batch)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record: schema, model, inputs, settings, summary, raw runs, host."""
        return {
            "schema": SCHEMA_VERSION,
            "kind": "latency",
            "created": self.created,
            "model": {"name": Path(self.model.path).name, **asdict(self.model)},
            "inputs": [{**asdict(i), "shape": list(i.shape)} for i in self.inputs],
            "settings": {**asdict(self.settings), "method": dict(_METHOD)},
            "session_create_ms": self.session_create_ms,
            "summary": asdict(self.summary),
            "warmup_ms": list(self.warmup_ms),
            "raw_ms": list(self.raw_ms),
            "environment": dict(self.environment),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyResult:
        """Rebuild a result written by :meth:`to_dict`; the summary is recomputed from raw_ms."""
        _check_schema(data, "latency")
        try:
            inputs = tuple(
                InputInfo(str(i["name"]), tuple(int(d) for d in i["shape"]), str(i["dtype"]))
                for i in data["inputs"]
            )
            return cls(
                model=ModelFile(*(data["model"][f.name] for f in fields(ModelFile))),
                inputs=inputs,
                settings=LatencySettings(
                    *(data["settings"][f.name] for f in fields(LatencySettings))
                ),
                session_create_ms=float(data["session_create_ms"]),
                warmup_ms=tuple(float(v) for v in data["warmup_ms"]),
                raw_ms=tuple(float(v) for v in data["raw_ms"]),
                environment=dict(data["environment"]),
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed latency record: {exc!r}", record="latency") from None


@dataclass(frozen=True)
class LatencyComparison:
    """A float and an int8 model measured in one interleaved pass; ratios are int8 / float."""

    float_result: LatencyResult
    int8_result: LatencyResult
    schedule: str = COMPARE_SCHEDULE

    @property
    def ratio(self) -> dict[str, float]:
        """int8 / float for p50, p90, p99 and mean (below 1: int8 is faster)."""
        f, q = asdict(self.float_result.summary), asdict(self.int8_result.summary)
        return {k: q[f"{k}_ms"] / f[f"{k}_ms"] for k in ("p50", "p90", "p99", "mean")}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record holding both results, the schedule and the ratios."""
        return {
            "schema": SCHEMA_VERSION,
            "kind": "latency_comparison",
            "schedule": self.schedule,
            "ratio_int8_over_float": self.ratio,
            "float": self.float_result.to_dict(),
            "int8": self.int8_result.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyComparison:
        """Rebuild a comparison written by :meth:`to_dict`."""
        _check_schema(data, "latency_comparison")
        try:
            parts = data["float"], data["int8"], str(data["schedule"])
        except KeyError as exc:
            raise InputError(f"malformed latency record: {exc!r}", record="latency") from None
        return cls(LatencyResult.from_dict(parts[0]), LatencyResult.from_dict(parts[1]), parts[2])


def _check_schema(data: Mapping[str, Any], kind: str) -> None:
    if not isinstance(data, Mapping):
        raise InputError(f"expected a JSON object, got {type(data).__name__}", record="latency")
    if data.get("schema") != SCHEMA_VERSION or data.get("kind") != kind:
        raise InputError(
            f"expected schema {SCHEMA_VERSION} kind {kind!r}, "
            f"got schema {data.get('schema')!r} kind {data.get('kind')!r}",
            record="latency",
        )


class _Bench:
    """A loaded session with its fixed input, and the runs made on it so far."""

    def __init__(
        self, path: str | Path, threads: int | None, batch: int, seed: int, spin: bool
    ) -> None:
        self.path, self.threads, self.spin = Path(path), threads, spin
        self.batch, self.seed = batch, seed
        self.model = _model_file(self.path)
        self.session, self.session_create_ms = _create_session(self.path, threads, spin)
        self.inputs = tuple(_input_info(self.path, i, batch) for i in self.session.get_inputs())
        rng = np.random.default_rng(seed)
        self.feeds = {i.name: _random_input(rng, i) for i in self.inputs}
        self.warmup_ms: list[float] = []
        self.raw_ms: list[float] = []

    def run_once(self) -> float:
        """One ``session.run`` in milliseconds; only the call itself is inside the timer."""
        start = time.perf_counter_ns()
        self.session.run(None, self.feeds)
        return (time.perf_counter_ns() - start) / 1e6

    def result(self, env: Mapping[str, Any], created: str) -> LatencyResult:
        """Freeze what was measured; thread settings are read back from the session."""
        options = self.session.get_session_options()
        settings = LatencySettings(
            batch=self.batch,
            runs=len(self.raw_ms),
            warmup=len(self.warmup_ms),
            seed=self.seed,
            threads=self.threads,
            intra_op_threads=int(options.intra_op_num_threads),
            inter_op_threads=int(options.inter_op_num_threads),
            execution_mode=str(options.execution_mode).rsplit(".", 1)[-1],
            allow_spinning=self.spin,
            graph_optimization=str(options.graph_optimization_level).rsplit(".", 1)[-1],
            provider=self.session.get_providers()[0],
        )
        return LatencyResult(
            self.model,
            self.inputs,
            settings,
            self.session_create_ms,
            tuple(self.warmup_ms),
            tuple(self.raw_ms),
            env,
            created,
        )


def measure_latency(
    model_path: str | Path,
    *,
    threads: int | None = None,
    batch: int = 1,
    runs: int = 50,
    warmup: int = 5,
    seed: int = 0,
    allow_spinning: bool = True,
    progress: Progress | None = None,
) -> LatencyResult:
    """Time ``runs`` inferences of one model, after ``warmup`` runs that are kept apart.

    ``threads`` sets onnxruntime's intra-op pool (None: its default, one per physical core);
    ``progress`` is called with 1 after every run, warm-ups included, outside the timer.
    """
    _check_counts(threads, batch, runs, warmup)
    bench = _Bench(model_path, threads, batch, seed, allow_spinning)
    for times, count in ((bench.warmup_ms, warmup), (bench.raw_ms, runs)):
        for _ in range(count):
            times.append(bench.run_once())
            _tick(progress)
    return bench.result(environment(), _now())


def compare_latency(
    float_path: str | Path,
    int8_path: str | Path,
    *,
    threads: int | None = None,
    batch: int = 1,
    runs: int = 50,
    warmup: int = 5,
    seed: int = 0,
    progress: Progress | None = None,
) -> LatencyComparison:
    """Time a float and an int8 model in one pass, runs interleaved (see COMPARE_SCHEDULE).

    Interleaving run by run puts a slow stretch of the machine (a neighbour's job, a clock
    change) on both models alike, where back-to-back blocks would charge it all to one; ABBA
    order keeps either model from always running right after the other. Spinning is off
    because an idle session's pool otherwise spins on the cores the other one is using: on
    a 2-core host at 2 threads that doubled both medians, while with spinning off the
    interleaved medians matched back-to-back ones.
    """
    _check_counts(threads, batch, runs, warmup)
    pair = (
        _Bench(float_path, threads, batch, seed, spin=False),
        _Bench(int8_path, threads, batch, seed, spin=False),
    )
    # Each model warms up on its own: warm-ups are kept apart, not compared.
    for bench in pair:
        for _ in range(warmup):
            bench.warmup_ms.append(bench.run_once())
            _tick(progress)
    for index in range(runs):
        for bench in pair if index % 2 == 0 else pair[::-1]:
            bench.raw_ms.append(bench.run_once())
            _tick(progress)
    env, created = environment(), _now()
    return LatencyComparison(pair[0].result(env, created), pair[1].result(env, created))


def _tick(progress: Progress | None) -> None:
    if progress is not None:
        progress(1)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_counts(threads: int | None, batch: int, runs: int, warmup: int) -> None:
    """Reject settings that cannot be measured, saying what arrived."""
    for name, value, least in (("batch", batch, 1), ("runs", runs, 1), ("warmup", warmup, 0)):
        if value < least:
            raise InputError(f"{name} must be at least {least}, got {value}")
    if threads is not None and threads < 1:
        raise InputError(f"threads must be at least 1 (or unset for the default), got {threads}")


def _model_file(path: Path) -> ModelFile:
    """Size and sha256 of the model file, so that a result names exactly what ran."""
    if not path.is_file():
        problem = "expected an ONNX model file, found a directory" if path.exists() else None
        raise InputError(problem or "file not found", path=path)
    return ModelFile(str(path), path.stat().st_size, file_sha256(path))


def _create_session(path: Path, threads: int | None, spin: bool) -> tuple[Any, float]:
    """A sequential CPU session and the milliseconds its creation took."""
    start = time.perf_counter_ns()
    session = cpu_session(path, threads, sequential=True, spin=spin)
    return session, (time.perf_counter_ns() - start) / 1e6


def _input_info(path: Path, node: Any, batch: int) -> InputInfo:
    """The concrete shape to feed: a dynamic first axis takes ``batch``, other dynamic axes 1."""
    name = node.type.removeprefix("tensor(").removesuffix(")")
    dtype = {"float": "float32", "double": "float64"}.get(name, name)
    if dtype not in _DTYPES:
        raise InputError(
            f"input {node.name!r} has type {node.type}; latency runs feed {', '.join(_DTYPES)}",
            path=path,
        )
    shape: list[int] = []
    for axis, dim in enumerate(node.shape):
        fixed = isinstance(dim, int) and dim > 0
        if axis == 0 and fixed and dim != batch:
            raise InputError(
                f"input {node.name!r} has a fixed batch of {dim} (shape {node.shape}); "
                f"asked for batch {batch}",
                path=path,
            )
        shape.append(dim if fixed else (batch if axis == 0 else 1))
    return InputInfo(node.name, tuple(shape), dtype)


def _random_input(rng: np.random.Generator, info: InputInfo) -> npt.NDArray[Any]:
    """A fixed random tensor: image bytes for uint8, [-1, 1) for floats, int8 range else."""
    dtype = np.dtype(info.dtype)
    if dtype.kind == "f":
        return rng.uniform(-1.0, 1.0, size=info.shape).astype(dtype)
    low = 0 if dtype.kind == "u" else -128
    return rng.integers(low, low + 256, size=info.shape, dtype=dtype)
