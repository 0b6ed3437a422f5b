"""Config values and class mappings that would give a silently wrong number are refused
before anything runs (exit 2 at the CLI: InputError names the field)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalkit.datasets.classes import map_classes
from evalkit.errors import InputError
from evalkit.pipeline.config import RunConfig, load_config
from evalkit.pipeline.inputs import check_mapping as _check_mapping


def _config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("variants:\n  float: {model: m.onnx}\n" + extra)
    return path


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ("dataset: {limit: 0}\n", "dataset.limit", "expected a positive integer, got 0"),
        ("batch_size: -1\n", "batch_size", "expected a positive integer"),
        ("nms: {iou_threshold: 1.5}\n", "nms", r"iou_threshold must be in \[0, 1\], got 1.5"),
        ("nms: {score_threshold: -0.1}\n", "nms.score_threshold", r"expected a score in \[0, 1\]"),
        ("nms: {max_total: 0}\n", "nms", "max_total must be a positive integer, got 0"),
        ("nms: {iou_threshold: '0.5'}\n", "nms.iou_threshold", "expected a number, got '0.5'"),
        ("nms: {max_total: 2.5}\n", "nms.max_total", "expected a whole number, got 2.5"),
        ("threads: true\n", "threads", "expected a number, got True"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, extra: str, field: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        load_config(_config(tmp_path, extra))
    assert field in str(info.value) and "c.yaml" in str(info.value)


def test_a_misspelt_class_is_an_error_with_the_near_match() -> None:
    mapping = map_classes(["persn", "car"], ["person", "car"])
    with pytest.raises(
        InputError, match=r"'person' \(the model's 'persn': did you mean 'person'\?\)"
    ) as info:
        _check_mapping("float", mapping, RunConfig())
    assert "variants.float.class_names" in str(info.value)
    _check_mapping("float", mapping, RunConfig(allow_unmatched_classes=True))  # allowed
    _check_mapping("float", map_classes(["person", "car", "dog"], ["person", "car"]), RunConfig())


def test_profile_flag_overrides_the_config(tmp_path: Path) -> None:
    import argparse

    from evalkit.cli.run import _overrides

    args = argparse.Namespace(
        set=[], out=None, threads=None, batch_size=None, limit=None, protocols=None,
        quiet=False, profile="zoo",
    )  # fmt: skip
    config = load_config(_config(tmp_path, "profile: plain\n"), _overrides(args))
    assert config.profile == "zoo"
    with pytest.raises(InputError, match=r"expected one of \['auto', 'zoo', 'plain'\]"):
        load_config(_config(tmp_path, "profile: fast\n"))
