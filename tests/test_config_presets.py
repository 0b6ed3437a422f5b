"""Configuration ergonomics: class-name presets in the zoo's order, ``${VAR}`` in flow-style
mappings and sequences, and the README's own example configuration loading as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evalkit.datasets.classes import CLASS_PRESETS, COCO_CLASSES
from evalkit.datasets.voc import VOC_CLASSES
from evalkit.errors import InputError
from evalkit.pipeline.config import load_config

from .conftest import REPO


def test_the_readme_example_loads_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```yaml\n(\s*# coco\.yaml\n.*?)```", readme, re.S)
    assert block is not None, "the README's coco.yaml example is gone"
    text = "\n".join(line[3:] for line in block.group(1).splitlines())
    path = tmp_path / "coco.yaml"
    path.write_text(text)
    monkeypatch.setenv("DATA", "/data")
    monkeypatch.setenv("MODELS", "/models")
    config = load_config(path)
    assert config.dataset.annotations == "/data/coco-val2017/annotations/instances_val2017.json"
    assert config.variants["int8"].model == "/models/int8.onnx"
    for variant in config.variants.values():
        assert variant.class_names == list(COCO_CLASSES) and len(COCO_CLASSES) == 80


def test_env_references_expand_in_flow_style_and_unset_ones_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("M", "/m")
    path = tmp_path / "c.yaml"
    path.write_text(
        "variants: {a: {model: ${M}/a.onnx, class_names: [${M}x, b]}, b: {model: '${M}/b'}}\n"
        "protocols: [st, coco]\n"
    )
    config = load_config(path)
    assert config.variants["a"].model == "/m/a.onnx" and config.variants["b"].model == "/m/b"
    assert config.variants["a"].class_names == ["/mx", "b"]
    path.write_text("variants: {a: {model: ${NOT_SET_HERE}/a.onnx}}\n")
    with pytest.raises(InputError, match=r"variants\.a\.model: environment variable "
                       r"\$\{NOT_SET_HERE\} is not set"):  # fmt: skip
        load_config(path)


def test_class_name_presets(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("variants: {a: {model: a.onnx, class_names: voc}, "
                    "b: {model: b.onnx, class_names: coco_person}, "
                    "c: {model: c.onnx, class_names: [voc]}}\n")  # fmt: skip
    config = load_config(path)
    assert config.variants["a"].class_names == list(VOC_CLASSES)
    assert config.variants["b"].class_names == ["person"]
    assert config.variants["c"].class_names == ["voc"]  # a list is names, never a preset
    assert set(CLASS_PRESETS) == {"coco", "coco_person", "voc"}


def test_the_coco_preset_is_the_annotation_files_category_order(shared_dir: Path) -> None:
    data = json.loads(
        (shared_dir / "data" / "coco_val2014_100" / "instances_val2014_100.json").read_text()
    )
    names = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
    assert tuple(names) == COCO_CLASSES


def test_class_names_coco_in_a_run(shared_dir: Path, tmp_path: Path) -> None:
    """An 81-output zoo-form network (background + 80) with ``class_names: coco``: every
    model column maps onto coco128's categories by name, nothing refused."""
    from evalkit.models.export import export_onnx
    from evalkit.models.ssd_mobilenetv2 import ssd_mobilenetv2_demo
    from evalkit.pipeline.run import run

    model = export_onnx(ssd_mobilenetv2_demo(num_classes=81), tmp_path / "m.onnx", form="zoo")
    data = shared_dir / "data" / "coco128"
    path = tmp_path / "c.yaml"
    path.write_text(
        f"dataset: {{annotations: {data}/annotations/instances_train2017.json, "
        f"images: {data}/images, limit: 4}}\n"
        f"variants: {{v: {{model: {model.path}, decoder: st-ssd, class_names: coco}}}}\n"
        f"protocols: [coco]\nlatency: {{runs: 0}}\nquiet: true\noutput: {tmp_path / 'out'}\n"
    )
    record = run(load_config(path), log=lambda _: None).record
    variant = record.variants["v"]
    assert (variant.decoder or {})["class_names"] == list(COCO_CLASSES)
    assert variant.class_mapping is not None and "80 model classes mapped" in variant.class_mapping
    assert 0.0 <= record.ap50("v", "coco") <= 1.0
