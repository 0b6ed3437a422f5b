"""Torch runner: an eager ``torch.nn.Module`` on CPU, float NCHW in, named outputs out.

The module returns a tensor, a tuple/list of tensors or a dict of tensors. Tuple outputs
are named with ``output_names``; pass the names the model's ONNX export uses (for the
zoo's SSD, ``evalkit.postprocess.decoders.ST_SSD_OUTPUT_NAMES``), so that the same decoder
reads the outputs of both runners.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from evalkit.datasets.preprocess import Preprocessor
from evalkit.errors import InputError
from evalkit.runners.base import (
    InputSpec,
    Precision,
    PreprocessorChoice,
    RunnerInfo,
    Shape,
    check_batch,
    check_positive,
    choose_preprocessor,
    concat_outputs,
    preprocess_images,
)
from evalkit.types import RawOutputs

if TYPE_CHECKING:
    import torch

__all__ = ["TorchRunner", "module_precision"]


def module_precision(module: torch.nn.Module) -> tuple[Precision, str]:
    """``int8`` for quantized modules or quantized tensors in the state, else ``float``."""
    quantized = sorted(
        {
            type(m).__name__
            for m in module.modules()
            if type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized"))
        }
    )
    if quantized:
        return "int8", f"quantized modules: {', '.join(quantized)}"
    state = module.state_dict()
    tensors = [k for k, v in state.items() if getattr(v, "is_quantized", False)]
    if tensors:
        return "int8", f"{len(tensors)} quantized tensors in the state dict"
    dtypes = sorted({str(v.dtype) for v in state.values() if hasattr(v, "dtype")})
    return "float", f"state dtypes: {', '.join(dtypes) or 'none'}"


class TorchRunner:
    """An eager module run under ``torch.inference_mode`` in eval mode, on CPU.

    ``preprocessor`` must give float32 NCHW (default ``st-ssd``, the zoo's host input).
    ``threads`` calls ``torch.set_num_threads``, which is process-wide in torch.
    """

    name = "torch"

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        output_names: Sequence[str] | None = None,
        preprocessor: str | Preprocessor = "st-ssd",
        batch_size: int = 1,
        threads: int | None = None,
        model_name: str | None = None,
    ) -> None:
        import torch

        if not isinstance(module, torch.nn.Module):
            raise InputError(f"expected a torch.nn.Module, got {type(module).__name__}")
        check_positive(batch_size, "batch_size")
        check_positive(threads, "threads", allow_none=True)
        if threads is not None:
            torch.set_num_threads(threads)
        self._module = module.eval()
        self._model = model_name or type(module).__name__
        self._names = tuple(output_names) if output_names is not None else None
        self._batch_size = batch_size
        # The module takes float NCHW; checking the pre-processor against that spec refuses
        # uint8 or NHWC presets before any image is run.
        spec = InputSpec("input", ("N", 3, None, None), "float32")
        choice = choose_preprocessor(spec, preprocessor)
        origin = "the default" if preprocessor == "st-ssd" else "given by the caller"
        self._choice = PreprocessorChoice(
            choice.name,
            choice.preprocessor,
            f"{origin}; the module takes float32 NCHW, which this pre-processor produces",
        )
        self._specs: dict[str, Shape] | None = None
        precision, evidence = module_precision(module)
        self._info = RunnerInfo(
            name=self.name,
            version=str(torch.__version__),
            precision=precision,
            model=self._model,
            settings={
                "device": "cpu",
                "threads": torch.get_num_threads(),
                "threads_requested": threads if threads is not None else "runtime default",
                "batch_size": batch_size,
                "grad_mode": "inference_mode",
                "module_mode": "eval",
                "output_names": list(self._names) if self._names else "from the module",
                "preprocessor": self._choice.name,
                "preprocessor_settings": self._choice.preprocessor.settings(),
                "precision_evidence": evidence,
            },
            notes=(f"pre-processing {self._choice.name}: {self._choice.reason}",),
        )

    @property
    def info(self) -> RunnerInfo:
        return self._info

    @property
    def preprocessing(self) -> PreprocessorChoice:
        return self._choice

    def output_specs(self) -> dict[str, Shape]:
        """Output name -> shape, found by running one blank image once (batch dim ``N``)."""
        if self._specs is None:
            blank = np.zeros(self._choice.preprocessor.batch_shape, dtype=np.float32)
            outputs = self.run(blank).tensors
            self._specs = {k: ("N", *(int(d) for d in v.shape[1:])) for k, v in outputs.items()}
        return dict(self._specs)

    def run(self, batch: npt.NDArray[Any]) -> RawOutputs:
        """Run a float32 NCHW batch in chunks of ``batch_size``; outputs in batch order."""
        import torch

        batch = check_batch(batch, self._choice.preprocessor, self._model)
        parts = []
        with torch.inference_mode():
            for start in range(0, batch.shape[0], self._batch_size):
                piece = torch.from_numpy(
                    np.ascontiguousarray(batch[start : start + self._batch_size])
                )
                parts.append(self._named(self._module(piece)))
        return concat_outputs(parts)

    def run_images(self, images: Sequence[npt.NDArray[np.uint8]]) -> RawOutputs:
        """Pre-process RGB uint8 images with the chosen pre-processor, then :meth:`run`."""
        return self.run(preprocess_images(images, self._choice.preprocessor, self._model))

    def _named(self, result: object) -> dict[str, npt.NDArray[Any]]:
        """The module's return value as name -> numpy array."""
        import torch

        if isinstance(result, dict):
            items = list(result.items())
            if self._names is not None and tuple(result) != self._names:
                raise InputError(
                    f"module returned outputs {list(result)}, expected {list(self._names)}",
                    path=self._model,
                )
        else:
            values = [result] if isinstance(result, torch.Tensor) else result
            if not isinstance(values, (tuple, list)):
                raise InputError(
                    f"expected the module to return tensors, got {type(result).__name__}",
                    path=self._model,
                )
            if self._names is None or len(self._names) != len(values):
                raise InputError(
                    f"module returned {len(values)} unnamed output(s); pass output_names with "
                    f"{len(values)} name(s) (got {list(self._names or [])})",
                    path=self._model,
                )
            items = list(zip(self._names, values, strict=True))
        named: dict[str, npt.NDArray[Any]] = {}
        for key, value in items:
            if not isinstance(value, torch.Tensor):
                raise InputError(
                    f"output {key!r}: expected a tensor, got {type(value).__name__}",
                    path=self._model,
                )
            named[str(key)] = value.detach().cpu().numpy()
        return named
