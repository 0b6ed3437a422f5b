"""Several variants in one process run in lockstep (evalkit.pipeline.together): each image
is decoded once for all of them, and every output is the one the one-variant-at-a-time
path gives, under the zoo's batching and the plain one, fresh and resumed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalkit.api import run
from evalkit.cli import main
from evalkit.pipeline import predict as predict_module
from evalkit.pipeline import run as run_module
from evalkit.pipeline import together as together_module
from evalkit.pipeline.config import RunConfig, VariantConfig, load_config
from evalkit.pipeline.result import load_result

from .test_run import LIMIT, _config, _write


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any) -> dict[str, int]:
    count = {"n": 0}
    real = module.decode_rgb

    def decode(path: Path) -> Any:
        count["n"] += 1
        return real(path)

    monkeypatch.setattr(module, "decode_rgb", decode)
    return count


def _run(shared_dir: Path, out: Path, profile: str) -> Path:
    config = _config(shared_dir, out, latency={"runs": 0}, profile=profile)
    # A third variant with the pre-processing of the first: its tensor is shared too.
    config["variants"]["float_again"] = dict(config["variants"]["float"])
    run(load_config(_write(out.parent / f"{out.name}.yaml", config)), log=lambda _: None)
    return out


@pytest.mark.parametrize(("profile", "window"), [("zoo", 64), ("plain", 64), ("plain", 5)])
def test_lockstep_decodes_once_and_equals_one_variant_at_a_time(
    shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: str, window: int
) -> None:
    """window 5: the 12 images in two windows of 8 and 4 (a batch of 4 is never split)."""
    monkeypatch.setattr(together_module, "WINDOW_IMAGES", window)
    decoded = _counting(monkeypatch, predict_module)  # both paths decode through it
    lockstep = _run(shared_dir, tmp_path / "lockstep", profile)
    assert decoded["n"] == LIMIT  # once per image, for all three variants
    monkeypatch.setattr(run_module, "LOCKSTEP", False)
    sequential = _run(shared_dir, tmp_path / "sequential", profile)
    assert decoded["n"] == LIMIT + 3 * LIMIT  # then once per image and variant
    a, b = load_result(lockstep), load_result(sequential)
    for name in ("float", "int8", "float_again"):
        assert a.variants[name].protocols == b.variants[name].protocols
        assert a.variants[name].batching == b.variants[name].batching
        got = json.loads((lockstep / f"detections_{name}.json").read_text())
        assert got == json.loads((sequential / f"detections_{name}.json").read_text())
    assert (lockstep / "detections_float.json").read_text() == (
        lockstep / "detections_float_again.json"
    ).read_text()
    # Stage times: each variant its own inference, a share of the common decoding.
    for name in ("float", "int8", "float_again"):
        t = a.variants[name].timings
        assert t.images == LIMIT and t.cached_images == 0 and t.inference_s > 0


def test_a_variant_already_cached_is_not_run_again(shared_dir: Path, tmp_path: Path) -> None:
    """Resuming with one variant fully cached: only the other infers, each image decoded
    once for it, and the cached one's predictions are kept as they were."""
    out = _run(shared_dir, tmp_path / "out", "zoo")
    before = (out / "detections_int8.json").read_text()
    (out / "cache" / "float.jsonl").unlink()
    again = load_result(_run(shared_dir, tmp_path / "out", "zoo"))
    assert again.variants["int8"].timings.cached_images == LIMIT
    assert again.variants["int8"].timings.images == 0
    assert again.variants["float"].timings.images == LIMIT
    assert (out / "detections_int8.json").read_text() == before


def test_images_that_fail_to_decode_in_lockstep(
    small_set: tuple[Path, RunConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two variants, two JPEGs cut short: the run exits 2 naming both (no traceback), the
    good images stay cached for both variants; with skip_bad both variants leave out the
    same two images and score the four others as one variant at a time does."""
    root, config = small_set
    config = replace(
        config,
        variants={
            "float": config.variants["float"],
            "deployed": VariantConfig(
                model=str(root / "models" / "deployed.onnx"), decoder="decoded"
            ),
        },
    )
    names = [
        im["file_name"] for im in json.loads(Path(config.dataset.annotations).read_text())["images"]
    ]
    for name in names[1:3]:
        path = Path(config.dataset.images) / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    yaml_path = root / "c.yaml"
    yaml_path.write_text(yaml.safe_dump(_as_yaml(config)))
    assert main(["run", str(yaml_path)]) == 2
    err = capsys.readouterr().err
    assert "2 bad image(s)" in err and names[1] in err and names[2] in err
    assert "Traceback" not in err
    for variant in ("float", "deployed"):
        cache = Path(config.output) / "cache" / f"{variant}.jsonl"
        assert len(cache.read_text().splitlines()) == 1 + 4  # header + the four good images
    skipping = replace(config, dataset=replace(config.dataset, skip_bad=True))
    lockstep = run(skipping, log=lambda _: None).record
    alone = run(
        replace(
            skipping, output=str(root / "alone"), variants={"deployed": config.variants["deployed"]}
        ),
        log=lambda _: None,
    ).record
    assert lockstep.dataset.num_images == 4
    assert {s.path.rsplit("/", 1)[-1] for s in lockstep.dataset.skipped} == set(names[1:3])
    assert lockstep.variants["deployed"].protocols == alone.variants["deployed"].protocols


def _as_yaml(config: RunConfig) -> dict[str, Any]:
    """The configuration as the YAML a user writes."""
    return {
        "dataset": {"annotations": config.dataset.annotations, "images": config.dataset.images},
        "variants": {
            name: {"model": v.model, **({"decoder": v.decoder} if v.decoder else {})}
            for name, v in config.variants.items()
        },
        "protocols": list(config.protocols),
        "latency": {"runs": 0},
        "output": config.output,
        "quiet": True,
    }
