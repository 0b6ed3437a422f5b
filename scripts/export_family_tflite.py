"""Convert the trained tiny family networks to int8 TFLite, the form in which the zoo ships
those families (yolov8n/yolo11n, st_yoloxn, yolov2t/st_yololcv1, BlazeFace front), and
record how ``evalkit run`` scores each through the LiteRT runner.

Path: the saved weights -> ONNX with an NCHW input (the net's NHWC input permuted inside,
so that onnx2tf's own NCHW -> NHWC conversion gives back the family's NHWC input) ->
onnx2tf, full-integer quantization calibrated on training images already pre-processed
the family's way -> ``evalkit/family_models/<family>_int8.tflite``, and a ``tflite`` entry
in ``evalkit/family_models/families.json``.

onnx2tf is not a dependency of evalkit: it pins its own numpy, TensorFlow and onnxruntime.
Installed beside the project's environment, without its pins, it works with the TensorFlow
of the ``test`` extra:

    pip install --target /tmp/onnx2tf --no-deps onnx2tf==1.29.24 onnx-graphsurgeon \\
        sng4onnx "tf-keras~=2.21.0" psutil
    PYTHONPATH=/tmp/onnx2tf python scripts/export_family_tflite.py [--family yolov2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from train_families import OUT, RECORD, dataset_for, load_net, score  # noqa: E402

from evalkit.datasets.dataset import open_coco  # noqa: E402
from evalkit.hashing import file_sha256  # noqa: E402
from evalkit.models.families import INPUT_SIZE, FamilyNet, output_names  # noqa: E402
from evalkit.models.family_train import load_family_data  # noqa: E402

# The families the zoo ships as TFLite, with the input and output types of the file: the
# ultralytics exports take uint8 pixels and give float outputs (the zoo's "quant_pc_uf"),
# the others int8 both ways, so both of the runner's paths are exercised.
TYPES = {
    "ultralytics": ("uint8", "float32"),
    "yoloxn": ("int8", "int8"),
    "yolov2": ("int8", "int8"),
    "blazeface": ("int8", "int8"),
}
# onnx2tf's strict mode (an accuracy correction pass) stops on the ultralytics graph's
# constant operands; without it the conversion goes through and the AP below checks it.
EXTRA_FLAGS = {"ultralytics": ["-dsm"]}
CALIBRATION_IMAGES = 200
# onnx2tf checks its conversion on 20 images of 128 x 128 it would otherwise download
# (this machine has no internet): it reads this file from the working folder first.
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


class NchwInput(torch.nn.Module):
    """The net behind an NCHW input: the permute it adds and the net's own cancel out."""

    def __init__(self, net: FamilyNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x.permute(0, 2, 3, 1))


def export_nchw_onnx(net: FamilyNet, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation
        torch.onnx.export(
            NchwInput(net).eval(),
            (torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            output_names=output_names(net),
        )


def convert(family: str, net: FamilyNet, calibration: np.ndarray, work: Path) -> Path:
    onnx_path = work / f"{family}.onnx"
    export_nchw_onnx(net, onnx_path)
    np.save(work / "calibration.npy", calibration)
    np.save(work / ONNX2TF_SAMPLE, calibration[:20])
    input_type, output_type = TYPES[family]
    # Already normalised the family's way: mean 0, std 1 for onnx2tf.
    command = [sys.executable, "-m", "onnx2tf", "-i", onnx_path.name, "-o", "out", "-nuo",
               "-oiqt", "-qt", "per-channel", "-iqd", input_type, "-oqd", output_type,
               "-cind", "images", "calibration.npy", "[[[[0,0,0]]]]", "[[[[1,1,1]]]]",
               *EXTRA_FLAGS.get(family, [])]  # fmt: skip
    done = subprocess.run(command, cwd=work, capture_output=True, text=True)
    produced = work / "out" / f"{family}_full_integer_quant.tflite"
    if done.returncode != 0 or not produced.is_file():
        log = done.stdout[-3000:] + done.stderr[-3000:]
        raise SystemExit(f"onnx2tf failed for {family}:\n{log}")
    return produced


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=sorted(TYPES), action="append")
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "family_data")
    args = parser.parse_args(argv)
    record: dict[str, Any] = json.loads(RECORD.read_text())
    for family in args.family or sorted(TYPES):
        data = dataset_for(family, args.data)
        net = load_net(family, OUT / f"{family}.pt", data)
        train = open_coco(data.coco_annotation_file("train"), data.coco_image_dir("train"))
        images = load_family_data(train, net).images[:CALIBRATION_IMAGES].numpy()
        target = OUT / f"{family}_int8.tflite"
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(convert(family, net, images, Path(tmp)), target)
            ap50 = score(net, target, data, Path(tmp))
        entry = record["families"][family]
        entry["tflite"] = {
            "file": target.name,
            "bytes": target.stat().st_size,
            "sha256": file_sha256(target),
            "converter": f"onnx2tf {version('onnx2tf')}, full integer, per channel",
            "calibration_images": CALIBRATION_IMAGES,
            "input_type": TYPES[family][0],
            "output_type": TYPES[family][1],
            "checkpoint_sha256": entry["checkpoint"]["sha256"],
            "ap50_val": ap50,
        }
        print(f"[{family}] int8 TFLite AP50 on val: {ap50} (float ONNX: {entry['ap50_val']})")
        RECORD.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
