"""The activation estimate on the exported zoo-form network, quantized with the zoo's
settings: its largest int8 activation is the card's external RAM."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from evalkit.bench.memory import activation_memory
from evalkit.models.export import export_onnx
from evalkit.models.ssd_mobilenetv2 import ssd_mobilenetv2
from evalkit.quantize import ZOO_SETTINGS, quantize_model, sample_images
from evalkit.references import reference_for


def test_largest_int8_activation_is_the_cards_external_ram(tmp_path: Path) -> None:
    # COCO-Person (2 classes with background): the smallest export; the first blocks, where
    # the largest activation lives, are the same for every class count.
    float_path = export_onnx(ssd_mobilenetv2(2), tmp_path / "person.onnx").path
    rng = np.random.default_rng(0)
    images = []
    for i in range(2):  # activation sizes do not depend on the calibration values
        images.append(tmp_path / f"calib_{i}.png")
        cv2.imwrite(str(images[-1]), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    sample = sample_images(images, "noise", count=2)
    int8 = quantize_model(float_path, tmp_path / "int8.onnx", sample, ZOO_SETTINGS, progress=False)
    memory = activation_memory(int8.int8_model.path)
    # Block 1's expansion: 96 channels at 150x150, one byte each = 2,160,000 B.
    assert memory.largest.shape == (1, 96, 150, 150)
    assert memory.largest_int8_bytes == 150 * 150 * 96
    card = reference_for("ssd_mobilenetv2_pt", "coco_person").n6
    assert card is not None and card.external_ram_kib is not None
    assert round(memory.largest_int8_bytes / 1024, 2) == float(card.external_ram_kib)
    assert memory.peak_int8_bytes >= memory.largest_int8_bytes
