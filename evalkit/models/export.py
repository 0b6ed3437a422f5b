"""ONNX export of the SSD network, in the zoo's form and in the deployed form.

``zoo`` reproduces the published float files (reference-pipeline.md section 2): the zoo's
``torch_model_export_static`` wraps the network in ``SSDExportWrapper`` (attribute ``m``,
which prefixes every node name with ``/m/``), and calls the TorchScript-based exporter with
opset 20, constant folding (BatchNorm folds into the convolutions), input ``input``
(float32 NCHW, dynamic batch ``batch_size``) and a single output name, ``output``: the
class logits (N, 3000, NC+1) are ``output`` and the box offsets (N, 3000, 4) keep the
number the exporter gives them. Consumers must take the outputs by position.

``deployed`` mirrors the N6 model's interface (section 3): uint8 NHWC (1, 300, 300, 3) in,
the ``(x - 127) / 128`` normalisation inside, softmax ``scores`` including background
(1, 3000, NC+1) and decoded, clipped ``boxes`` x1, y1, x2, y2 (1, 3000, 4) out.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from evalkit.models.ssd_mobilenetv2 import (
    INPUT_SIZE,
    SSDMobileNetV2,
    count_parameters,
    decode,
    priors_tensor,
)

Form = Literal["zoo", "deployed"]
Exporter = Literal["torchscript", "dynamo"]
FORMS: tuple[Form, ...] = ("zoo", "deployed")
OPSET = 20
INPUT_NAME = "input"
BATCH_AXIS = "batch_size"
ZOO_OUTPUT_NAMES = ("output",)
DEPLOYED_OUTPUT_NAMES = ("scores", "boxes")
# The zoo's pre-processing: (x - 127) / 128 (MOBILENET_CONFIG image_mean / image_std).
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0


class ZooExportWrapper(nn.Module):
    """The zoo's SSDExportWrapper: raw (logits, offsets); the attribute name ``m`` matters."""

    def __init__(self, model: SSDMobileNetV2) -> None:
        super().__init__()
        self.m = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, offsets = self.m(x)
        return logits, offsets


class DeployedWrapper(nn.Module):
    """uint8 NHWC image in; softmax scores and clipped xyxy boxes out."""

    priors: torch.Tensor

    def __init__(self, model: SSDMobileNetV2) -> None:
        super().__init__()
        self.m = model
        self.register_buffer("priors", priors_tensor())

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (image.float() - PIXEL_MEAN) / PIXEL_STD
        logits, offsets = self.m(x.permute(0, 3, 1, 2))
        return decode(logits, offsets, self.priors)


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote: the file, its digest, and the model it came from."""

    path: Path
    size_bytes: int
    sha256: str
    form: Form
    num_classes: int
    width_mult: float
    parameters: int
    opset: int
    exporter: Exporter
    input_name: str
    input_shape: tuple[int | str, ...]
    output_names: tuple[str, ...]
    torch_version: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record."""
        out = asdict(self)
        out["path"] = str(self.path)
        out["input_shape"] = list(self.input_shape)
        out["output_names"] = list(self.output_names)
        return out


def export_onnx(
    model: SSDMobileNetV2,
    path: str | Path,
    form: Form = "zoo",
    *,
    opset: int = OPSET,
    dynamic_batch: bool | None = None,
    exporter: Exporter = "torchscript",
) -> ExportResult:
    """Write ``model`` as ONNX in ``form``; same weights give a byte-identical file.

    ``dynamic_batch`` defaults to True for ``zoo`` (as published) and False for ``deployed``
    (the N6 model takes one image). ``exporter`` "torchscript" is the one whose files match
    the published sizes; "dynamo" is there to compare against.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    dynamic = form == "zoo" if dynamic_batch is None else dynamic_batch
    model.eval()
    wrapper: nn.Module
    if form == "zoo":
        wrapper = ZooExportWrapper(model)
        example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
        output_names: tuple[str, ...] = ZOO_OUTPUT_NAMES
    else:
        wrapper = DeployedWrapper(model)
        example = torch.zeros(1, INPUT_SIZE, INPUT_SIZE, 3, dtype=torch.uint8)
        output_names = DEPLOYED_OUTPUT_NAMES
    wrapper.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: a failed export leaves no truncated file.
    partial = path.with_name(path.name + ".partial")
    try:
        _export_file(wrapper, example, partial, output_names, opset, dynamic, exporter)
        data = partial.read_bytes()
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    names = _output_names(data)
    shape: tuple[int | str, ...] = (BATCH_AXIS if dynamic else 1, *example.shape[1:])
    return ExportResult(
        path=path,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        form=form,
        num_classes=model.num_classes,
        width_mult=model.width_mult,
        parameters=count_parameters(model),
        opset=opset,
        exporter=exporter,
        input_name=INPUT_NAME,
        input_shape=shape,
        output_names=names,
        torch_version=torch.__version__,
    )


def _export_file(
    wrapper: nn.Module,
    example: torch.Tensor,
    target: Path,
    output_names: tuple[str, ...],
    opset: int,
    dynamic: bool,
    exporter: Exporter,
) -> None:
    """Write the ModelProto from the chosen torch exporter to ``target``, one file."""
    with torch.no_grad(), warnings.catch_warnings():
        # torch deprecates the TorchScript exporter, but it is what the zoo used.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if exporter == "torchscript":
            axes = {INPUT_NAME: {0: BATCH_AXIS}, **{n: {0: BATCH_AXIS} for n in output_names}}
            torch.onnx.export(
                wrapper,
                (example,),
                target,
                dynamo=False,
                export_params=True,
                opset_version=opset,
                do_constant_folding=True,
                input_names=[INPUT_NAME],
                output_names=list(output_names),
                dynamic_axes=axes if dynamic else None,
            )
        else:
            # Named after forward's argument: the dynamo exporter keys shapes by it.
            shapes = {"x" if isinstance(wrapper, ZooExportWrapper) else "image": {0: BATCH_AXIS}}
            program = torch.onnx.export(
                wrapper,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(output_names),
                dynamic_shapes=shapes if dynamic else None,
                optimize=True,
                verbose=False,
            )
            if program is None:
                raise RuntimeError("the dynamo exporter returned no program")
            program.save(target, external_data=False)


def _output_names(data: bytes) -> tuple[str, ...]:
    """Graph output names as written (the zoo form's second one is the exporter's choice)."""
    import onnx  # heavy; only needed once the file exists

    proto = onnx.load_model_from_string(data)
    return tuple(o.name for o in proto.graph.output)
