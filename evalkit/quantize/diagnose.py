"""Where does an int8 model part from its float model? Per tensor, per output, per detection.

Three levels, all on the same images and the same evaluation pre-processing:

1. Tensors: onnxruntime's QDQ debugging support (``onnxruntime.quantization.qdq_loss_debug``)
   makes every float tensor of both graphs an output (``modify_model_output_intermediate_
   tensors``), runs them (``collect_activations``), pairs each int8 activation's pre- and
   post-QDQ values with the float model's tensor of the same name
   (``create_activation_matching``) and measures them (``compute_activation_error``). SQNR is
   ``20 log10(||float|| / ||float - int8||)`` over all images, norms floored at machine
   epsilon as onnxruntime's ``compute_signal_to_quantization_noice_ratio`` does; images are
   run a few at a time and the squared norms summed, so the result equals onnxruntime's
   figure over the whole set without holding every activation of every image. ``qdq_sqnr_db``
   is the tensor's own quantize-dequantize noise (pre- vs post-QDQ in the int8 graph); where
   onnxruntime folded a Relu/Clip into the quantization range it includes that clipping.
   These runs use onnxruntime's debug sessions (graph optimisation off: QDQ simulated in float).
2. Outputs: decoded scores and corners of the two models, run by :class:`OnnxRunner` as in
   evaluation (optimised: the int8 model on integer kernels).
3. Detections: both models' outputs through combined NMS; each int8 detection (in output
   order) takes the unmatched float detection of its class with the highest IoU, a match if
   IoU >= 0.5. Precision = matched / int8 detections, recall = matched / float detections.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from evalkit.errors import InputError
from evalkit.postprocess.decoders import DECODERS, Decoder, detect_decoder
from evalkit.postprocess.nms import NmsSettings, nms_batch
from evalkit.quantize.calibration import CalibrationSample
from evalkit.quantize.diagnosis import (
    SCHEMA_VERSION,
    DetectionAgreement,
    DiagnoseResult,
    OutputError,
    TensorError,
    match_detections,
    plot_sqnr,
    relative_noise,
    sqnr_db,
)
from evalkit.quantize.static import load_onnx, refuse_quantized
from evalkit.runners.onnx import OnnxRunner, detect_precision

__all__ = [
    "SCHEMA_VERSION",
    "DetectionAgreement",
    "DiagnoseResult",
    "OutputError",
    "TensorError",
    "diagnose",
    "match_detections",
    "plot_sqnr",
]

# Images per collect_activations call: bounds memory (about 0.25 GB per image for the full
# SSD, both graphs together) while keeping onnxruntime's per-call session builds few.
CHUNK = 4


class _Accumulator:
    """Sums of squares (and abs errors) of reference and difference, over chunks."""

    def __init__(self) -> None:
        self.signal = self.noise = self.abs_sum = self.abs_max = 0.0
        self.elements = 0

    def add(self, reference: npt.NDArray[Any], other: npt.NDArray[Any]) -> None:
        ref = np.asarray(reference, np.float64)
        diff = ref - np.asarray(other, np.float64)
        self.signal += float(np.vdot(ref, ref))
        self.noise += float(np.vdot(diff, diff))
        self.abs_sum += float(np.abs(diff).sum())
        self.abs_max = max(self.abs_max, float(np.abs(diff).max(initial=0.0)))
        self.elements += ref.size

    def result(self, name: str) -> OutputError:
        return OutputError(
            name,
            sqnr_db(self.signal, self.noise),
            relative_noise(self.signal, self.noise),
            self.abs_max,
            self.abs_sum / max(self.elements, 1),
        )


def _squares(first: Sequence[npt.NDArray[Any]], _second: Sequence[npt.NDArray[Any]]) -> float:
    """||first||^2 over a list of tensors (an err_func for compute_activation_error)."""
    return sum(float(np.vdot(t.astype(np.float64), t.astype(np.float64))) for t in first)


def _diff_squares(first: Sequence[npt.NDArray[Any]], second: Sequence[npt.NDArray[Any]]) -> float:
    """||first - second||^2 over paired tensors (an err_func for compute_activation_error)."""
    total = 0.0
    for a, b in zip(first, second, strict=True):
        d = a.astype(np.float64) - b.astype(np.float64)
        total += float(np.vdot(d, d))
    return total


class _Activations:
    """Both augmented debug graphs, and per-tensor squared norms summed over chunks."""

    def __init__(self, float_path: Path, int8_path: Path, workdir: Path, input_name: str) -> None:
        from onnxruntime.quantization.qdq_loss_debug import (
            modify_model_output_intermediate_tensors,
        )

        self.float_aug, self.int8_aug = workdir / "float_aug.onnx", workdir / "int8_aug.onnx"
        modify_model_output_intermediate_tensors(str(float_path), str(self.float_aug))
        modify_model_output_intermediate_tensors(str(int8_path), str(self.int8_aug))
        self.input_name = input_name
        # [||float||^2, ||float - int8||^2, ||pre||^2, ||pre - post||^2, elements]
        self.sums: dict[str, list[float]] = {}
        self.unmatched: set[str] = set()

    def add(self, batch: npt.NDArray[Any]) -> None:
        from onnxruntime.quantization.qdq_loss_debug import (
            collect_activations,
            compute_activation_error,
            create_activation_matching,
        )

        def feed() -> Any:
            return iter([{self.input_name: batch[i : i + 1]} for i in range(batch.shape[0])])

        float_acts = collect_activations(str(self.float_aug), feed())
        int8_acts = collect_activations(str(self.int8_aug), feed())
        matching = create_activation_matching(int8_acts, float_acts)
        self.unmatched.update(k for k, v in matching.items() if "float" not in v)
        matched = {k: v for k, v in matching.items() if "float" in v}
        signal = compute_activation_error(matched, err_func=_squares)
        noise = compute_activation_error(matched, err_func=_diff_squares)
        for name in matched:
            row = self.sums.setdefault(name, [0.0] * 5)
            row[0] += signal[name]["xmodel_err"]
            row[1] += noise[name]["xmodel_err"]
            row[2] += signal[name]["qdq_err"]
            row[3] += noise[name]["qdq_err"]
            row[4] += sum(t.size for t in matched[name]["float"])

    def errors(self, float_proto: Any, int8_proto: Any) -> tuple[TensorError, ...]:
        """Per-tensor results in int8 graph order (the graph input first)."""
        position = {out: i for i, n in enumerate(int8_proto.graph.node) for out in n.output}
        producer = {out: n.op_type for n in float_proto.graph.node for out in n.output}
        rows = [
            TensorError(
                name=name,
                position=position.get(name, -1),
                op_type=producer.get(name, "graph input"),
                sqnr_db=sqnr_db(s[0], s[1]),
                relative_error=relative_noise(s[0], s[1]),
                qdq_sqnr_db=sqnr_db(s[2], s[3]),
                elements=int(s[4]),
            )
            for name, s in self.sums.items()
        ]
        return tuple(sorted(rows, key=lambda t: (t.position, t.name)))


def _decoder_for(runner: OnnxRunner, path: Path) -> tuple[str, Decoder]:
    name, _why = detect_decoder(runner.output_specs())
    try:
        return name, DECODERS.get(name)(model=str(path))
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"decoder {name} cannot be built from the model alone ({exc}); diagnose supports "
            "st-ssd and decoded outputs",
            path=path,
        ) from exc


def diagnose(
    float_path: str | Path,
    int8_path: str | Path,
    images: CalibrationSample,
    *,
    nms: NmsSettings | None = None,
    agreement_iou: float = 0.5,
    chunk: int = CHUNK,
) -> DiagnoseResult:
    """Compare ``int8_path`` with ``float_path`` on ``images`` at all three levels."""
    from evalkit.datasets.images import decode_rgb

    start = time.perf_counter()
    float_path, int8_path = Path(float_path), Path(int8_path)
    float_proto = load_onnx(float_path, "float model")
    refuse_quantized(float_proto, float_path)
    int8_proto = load_onnx(int8_path, "int8 model")
    precision, evidence = detect_precision(int8_proto)
    if precision != "int8" or "QDQ" not in evidence:
        raise InputError(
            f"expected a QDQ-quantized model (QuantizeLinear/DequantizeLinear pairs), got: "
            f"{evidence}",
            path=int8_path,
        )
    if not images.files:
        raise InputError("expected at least one image to diagnose on, got none", path=images.source)
    nms = nms or NmsSettings()
    float_run, int8_run = OnnxRunner(float_path), OnnxRunner(int8_path)
    pre = float_run.preprocessing
    if int8_run.preprocessing.preprocessor != pre.preprocessor:
        raise InputError(
            f"the two models take different inputs: float {pre.name}, int8 "
            f"{int8_run.preprocessing.name}; is this the int8 model of this float model?",
            path=int8_path,
        )
    decoder_name, decoder = _decoder_for(float_run, float_path)
    outputs = {"scores": _Accumulator(), "boxes_xyxy_norm": _Accumulator()}
    float_count = int8_count = 0
    ious: list[float] = []
    with tempfile.TemporaryDirectory(prefix="evalkit-diagnose-") as tmp:
        acts = _Activations(float_path, int8_path, Path(tmp), float_run.input_spec.name)
        for first in range(0, len(images.files), chunk):
            files = images.files[first : first + chunk]
            batch = pre.preprocessor.apply_batch([decode_rgb(f) for f in files])
            acts.add(batch)
            float_dec = decoder.decode(float_run.run(batch))
            int8_dec = decoder.decode(int8_run.run(batch))
            outputs["scores"].add(float_dec.scores, int8_dec.scores)
            outputs["boxes_xyxy_norm"].add(float_dec.boxes_xyxy_norm, int8_dec.boxes_xyxy_norm)
            for ref, cand in zip(nms_batch(float_dec, nms), nms_batch(int8_dec, nms), strict=True):
                float_count, int8_count = float_count + len(ref), int8_count + len(cand)
                ious += match_detections(ref, cand, agreement_iou)
        tensors = acts.errors(float_proto, int8_proto)
        unmatched = tuple(sorted(acts.unmatched))
    if not tensors:
        raise InputError(
            "no int8 activation has a float tensor of the same name: expected the int8 model "
            "to be quantized from this float model",
            path=int8_path,
        )
    from evalkit.provenance import environment

    return DiagnoseResult(
        float_model=str(float_path),
        int8_model=str(int8_path),
        images=images,
        tensors=tensors,
        unmatched_tensors=unmatched,
        outputs=tuple(acc.result(name) for name, acc in outputs.items()),
        detections=DetectionAgreement(
            agreement_iou=agreement_iou,
            float_detections=float_count,
            int8_detections=int8_count,
            matched=len(ious),
            mean_iou=float(np.mean(ious)) if ious else None,
        ),
        settings={
            "preprocessor": pre.name,
            "decoder": decoder_name,
            "nms": nms.to_dict(),
            "agreement_iou": agreement_iou,
            "chunk": chunk,
        },
        durations_s={"total": time.perf_counter() - start},
        environment=environment(),
    )
