"""Issue 12's cases, from the command line: each is refused with exit 2 and a message naming
the file and field, or handled correctly; none gives a traceback or a wrong number, and
nothing already computed is lost. (Cases tested where their code lives: check/compare
refusals in test_gate.py, config values and class names in test_run_refusals.py, changed
images and bad JPEGs in test_zoo_inputs.py, the report's card verdict in test_reports.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evalkit.cli import main
from evalkit.datasets.coco import parse_coco_ground_truth
from evalkit.errors import InputError
from evalkit.pipeline.config import QuantizeConfig, RunConfig, VariantConfig
from evalkit.pipeline.lock import LOCK_NAME
from evalkit.pipeline.publish import MANIFEST, STAGING
from evalkit.pipeline.result import load_result
from evalkit.references import reference_for
from evalkit.references.comparability import card_comparison

from .conftest import REPO


def _yaml(config: RunConfig, path: Path, **changes: Any) -> Path:
    data = asdict(replace(config, **changes))
    path.write_text(yaml.safe_dump(data))
    return path


def _lines(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


# ---------------------------------------------------------------- one run per folder

_HOLDER = """
import sys, time
from pathlib import Path
from evalkit.pipeline.lock import FolderLock
folder, go, release = map(Path, sys.argv[1:4])
while not go.exists():
    time.sleep(0.01)
try:
    lock = FolderLock(folder, log=lambda _: None)
    lock.acquire()
except Exception as exc:
    print("refused", exc, flush=True)
    sys.exit(2)
print("held", flush=True)
while not release.exists():
    time.sleep(0.01)
lock.release()
"""


def _holders(folder: Path, n: int, tmp_path: Path) -> tuple[list[subprocess.Popen[str]], Path]:
    go, release = tmp_path / "go", tmp_path / "release"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(folder), str(go), str(release)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(n)
    ]
    go.touch()  # all of them try at once
    return procs, release


def test_of_four_processes_racing_for_a_folder_exactly_one_holds_it(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    procs, release = _holders(folder, 4, tmp_path)
    firsts = [p.stdout.readline().split()[0] for p in procs if p.stdout is not None]
    assert sorted(firsts) == ["held", "refused", "refused", "refused"]
    release.touch()
    assert sorted(p.wait(60) for p in procs) == [0, 2, 2, 2]
    assert not (folder / LOCK_NAME).exists()  # the holder released it


def _with_out_folder(small_set: tuple[Path, RunConfig]) -> tuple[RunConfig, Path]:
    """The config and its output folder, created (so a lock can be put there first)."""
    out = Path(small_set[1].output)
    out.mkdir()
    return small_set[1], out


def test_a_second_run_exits_2_naming_the_holder_then_takes_over_a_dead_one(
    small_set: tuple[Path, RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, out = _with_out_folder(small_set)
    procs, _ = _holders(out, 1, tmp_path)
    holder = procs[0]
    assert holder.stdout is not None and holder.stdout.readline().startswith("held")
    path = _yaml(config, tmp_path / "c.yaml")
    assert main(["run", str(path)]) == 2
    _, err = _lines(capsys)
    assert f"{out / LOCK_NAME}: this output folder is in use by a running evalkit process" in err
    assert f"pid {holder.pid} on host" in err and "Traceback" not in err
    assert not (out / "result.json").exists()
    holder.send_signal(signal.SIGKILL)  # killed: its lock file stays behind
    holder.wait(60)
    assert (out / LOCK_NAME).exists()
    assert main(["run", str(path)]) == 0
    out_text, _ = _lines(capsys)
    assert f"took over the lock of an earlier run that is gone (pid {holder.pid}" in out_text
    assert load_result(out).ap50("float", "coco") > 0.5
    assert not (out / LOCK_NAME).exists()


def test_a_lock_file_evalkit_did_not_write_refuses(
    small_set: tuple[Path, RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, out = _with_out_folder(small_set)
    (out / LOCK_NAME).write_text("not json")
    assert main(["run", str(_yaml(config, tmp_path / "c.yaml"))]) == 2
    assert "a lock file that is not evalkit's" in capsys.readouterr().err


# ---------------------------------------------------------------- published whole


def _pycocotools_ap50(annotations: str, detections: Path) -> float:
    gt = COCO(annotations)
    dets = json.loads(detections.read_text())
    run = COCOeval(gt, gt.loadRes(dets) if dets else COCO(), "bbox")
    run.evaluate()
    run.accumulate()
    run.summarize()
    return float(run.stats[1])


def test_an_interrupted_rerun_leaves_the_old_outputs_whole_and_exits_130(
    small_set: tuple[Path, RunConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, config = small_set
    out = Path(config.output)
    first = _yaml(config, tmp_path / "a.yaml")
    assert main(["run", str(first)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"result.json", "detections_float.json", MANIFEST} <= set(before)

    # The case: a re-run with other settings, interrupted after its first batch.
    from evalkit.pipeline import predict as predict_module

    real = predict_module.predict

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        def on_batch(_: int) -> None:
            raise KeyboardInterrupt

        return real(*args, **{**kwargs, "on_batch": on_batch})

    monkeypatch.setattr("evalkit.pipeline.variant.predict", interrupted)
    changed = replace(config, nms=replace(config.nms, iou_threshold=0.3), batch_size=2)
    second = _yaml(changed, tmp_path / "b.yaml")
    capsys.readouterr()
    assert main(["run", str(second)]) == 130
    _, err = _lines(capsys)
    assert f"interrupted: 2/6 images cached in {out / 'cache'}; run the same command" in err
    assert "Traceback" not in err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # the old run, byte for byte: no new detections beside it
    record = load_result(out)
    ap = _pycocotools_ap50(config.dataset.annotations, out / "detections_float.json")
    assert record.ap50("float", "coco") == pytest.approx(ap, abs=1e-12)
    assert len((out / "cache" / "float.jsonl").read_text().splitlines()) == 1 + 2  # kept

    monkeypatch.setattr("evalkit.pipeline.variant.predict", real)
    assert main(["run", str(second)]) == 0
    record = load_result(out)
    assert (record.variants["float"].nms or {})["iou_threshold"] == 0.3
    assert record.variants["float"].timings.cached_images == 2  # resumed
    ap = _pycocotools_ap50(config.dataset.annotations, out / "detections_float.json")
    assert record.ap50("float", "coco") == pytest.approx(ap, abs=1e-12)
    assert not (out / STAGING).exists()


def test_files_of_a_previous_run_that_this_run_does_not_write_are_removed(
    small_set: tuple[Path, RunConfig], tmp_path: Path
) -> None:
    tmp, config = small_set
    out = Path(config.output)
    two = replace(
        config,
        variants={
            "float": config.variants["float"],
            "deployed": VariantConfig(model=str(tmp / "models" / "deployed.onnx")),
        },
    )
    assert main(["run", str(_yaml(two, tmp_path / "a.yaml"))]) == 0
    assert (out / "detections_deployed.json").is_file()
    assert main(["run", str(_yaml(config, tmp_path / "b.yaml"))]) == 0
    assert not (out / "detections_deployed.json").exists()  # would mix two runs
    assert set(load_result(out).variants) == {"float"}


# ---------------------------------------------------------------- exit codes


def test_debug_shows_the_traceback_and_errors_are_exit_2_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nowhere.yaml")
    assert main(["run", missing]) == 2
    _, err = _lines(capsys)
    assert err.startswith("evalkit run: error: ") and missing in err
    with pytest.raises(InputError):
        main(["--debug", "run", missing])


def test_outputs_under_a_plain_file_are_exit_2_naming_it(
    small_set: tuple[Path, RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unusable output folder for ``run``, an unwritable ``quantize --out``."""
    tmp, config = small_set
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = _yaml(config, tmp_path / "c.yaml", output=str(blocker / "out"))
    assert main(["run", str(path)]) == 2
    _, err = _lines(capsys)
    assert f"{blocker / 'out'}: cannot create the output folder" in err
    model, images = str(tmp / "models" / "float.onnx"), config.dataset.images
    out = str(blocker / "int8.onnx")
    assert main(["quantize", model, "--out", out, "--calib-images", images, "--no-progress"]) == 2
    _, err = _lines(capsys)
    assert f"{blocker}: File exists" in err and "Traceback" not in err


def test_the_cli_reports_an_os_error_as_exit_2_naming_the_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreadable(_: Any) -> Any:
        raise PermissionError(13, "Permission denied", "/data/result.json")

    monkeypatch.setattr("evalkit.cli.compare.load_result", unreadable)
    assert main(["compare", "a", "b"]) == 2
    assert (
        capsys.readouterr().err == "evalkit compare: error: /data/result.json: Permission denied\n"
    )
    with pytest.raises(PermissionError):
        main(["--debug", "compare", "a", "b"])


# ---------------------------------------------------------------- input strictness


def _coco(annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": annotations,
    }


def test_duplicate_annotation_ids_are_an_error_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = {"image_id": 1, "category_id": 1, "area": 100.0, "iscrowd": 0}
    data = _coco(
        [{**box, "id": 7, "bbox": [0, 0, 10, 10]}, {**box, "id": 7, "bbox": [50, 50, 9, 9]}]
    )
    with pytest.raises(InputError, match=r"annotations\[1\]: duplicate annotation id 7 \(also "
                       r"annotations\[0\]\)"):  # fmt: skip
        parse_coco_ground_truth(data, "gt.json")
    gt, dets = tmp_path / "gt.json", tmp_path / "dets.json"
    gt.write_text(json.dumps(data))
    dets.write_text("[]")
    assert main(["evaluate", "--gt", str(gt), "--dets", str(dets)]) == 2
    assert f"{gt}: annotations[1]: duplicate annotation id 7" in capsys.readouterr().err
    data["images"].append({**data["images"][0], "file_name": "b.jpg"})
    with pytest.raises(InputError, match=r"images\[1\]: duplicate id 1 \(also images\[0\]\)"):
        parse_coco_ground_truth(data, "gt.json")


def _one_box_set(tmp_path: Path) -> tuple[Path, Path]:
    """A one-image, one-box ground truth written out, and where the detections go."""
    gt, dets = tmp_path / "gt.json", tmp_path / "dets.json"
    box = {"image_id": 1, "category_id": 1, "area": 100.0, "iscrowd": 0, "bbox": [0, 0, 10, 10]}
    gt.write_text(json.dumps(_coco([{**box, "id": 1}])))
    return gt, dets


def test_numbers_written_as_strings_are_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, dets = _one_box_set(tmp_path)
    for bad, expected in (
        ({"score": "0.9"}, "score must be a number, got '0.9'"),
        ({"score": True}, "score must be a number, got True"),
        ({"bbox": ["0", 0, 10, 10]}, "expected bbox [x, y, w, h] of 4 numbers, got ['0', 0"),
    ):
        record = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9, **bad}
        dets.write_text(json.dumps([record]))
        assert main(["evaluate", "--gt", str(gt), "--dets", str(dets)]) == 2
        err = capsys.readouterr().err
        assert f"{dets}: record 0: {expected}" in err, err


def test_exact_duplicate_detections_are_counted_and_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, dets = _one_box_set(tmp_path)
    once = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [60, 60, 10, 10], "score": 0.8},
    ]
    dets.write_text(json.dumps(once * 3))  # a results file concatenated three times
    assert main(["evaluate", "--gt", str(gt), "--dets", str(dets), "--json"]) == 0
    out, err = _lines(capsys)
    assert json.loads(out)["duplicate_detections"] == 4
    assert f"warning: {dets}: 4 detection(s) exactly repeat another one" in err
    dets.write_text(json.dumps(once))
    assert main(["evaluate", "--gt", str(gt), "--dets", str(dets), "--json"]) == 0
    out, err = _lines(capsys)
    assert json.loads(out)["duplicate_detections"] == 0 and "warning" not in err


# ---------------------------------------------------------------- run records


def test_a_run_records_its_fingerprint_card_verdict_and_calibration(
    small_set: tuple[Path, RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = small_set
    quantized = replace(
        config,
        variants={
            "float": config.variants["float"],
            "int8": VariantConfig(quantize=QuantizeConfig(source="float", calib_count=3, seed=5)),
        },
    )
    assert main(["run", str(_yaml(quantized, tmp_path / "c.yaml"))]) == 0
    out, _ = _lines(capsys)
    assert "[int8] warning: only 3 calibration image(s)" in out
    record = load_result(config.output)
    calibration = record.variants["int8"].calibration
    assert (calibration["count"], calibration["seed"]) == (3, 5)
    assert config.dataset.images in calibration["source"]
    assert "at least 10" in calibration["warning"]
    assert record.variants["float"].calibration is None
    assert record.variants["float"].duplicate_detections == 0
    fingerprint = record.fingerprint
    assert fingerprint is not None
    assert fingerprint["dataset"]["num_images"] == 6 and fingerprint["dataset"]["split"] == "val"
    assert set(fingerprint["settings"]["variants"]) == {"float", "int8"}
    reference = record.reference
    assert reference is None or reference.comparable is False


def test_the_card_is_compared_only_on_its_own_set() -> None:
    card = reference_for("ssd_mobilenetv2_pt", "coco")
    own = {
        "format": "coco",
        "split": card.dataset.split,
        "classes": [f"c{i}" for i in range(card.dataset.classes)],
        "num_images": card.dataset.images,
    }
    verdict = card_comparison(card, own, context_only=False, limited=False, skipped=0)
    assert verdict.comparable and "same set as the card" in verdict.why
    coco128 = {**own, "split": "train2017", "num_images": 128}
    verdict = card_comparison(card, coco128, context_only=False, limited=False, skipped=0)
    assert not verdict.comparable
    assert "split is 'train2017'" in verdict.why and "128 images scored" in verdict.why
    for kwargs, why in (
        ({"limited": True, "skipped": 0}, "dataset.limit"),
        ({"limited": False, "skipped": 2}, "2 image(s) were skipped"),
    ):
        verdict = card_comparison(card, own, context_only=False, **kwargs)  # type: ignore[arg-type]
        assert not verdict.comparable and why in verdict.why


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ({"../up": {"model": "m.onnx"}}, "variants.../up: a variant name"),
        (
            {"a": {"quantize": {"source": "b"}}, "b": {"quantize": {"source": "float"}}},
            "variants.a.quantize.source: variant 'a' quantizes 'b', which is itself quantized",
        ),
    ],
)
def test_unsafe_variant_names_and_quantizing_a_quantized_model_are_refused(
    small_set: tuple[Path, RunConfig],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    variants: Any,
    message: str,
) -> None:
    _, config = small_set
    data = {"dataset": asdict(config.dataset), "output": str(tmp_path / "out")}
    path = tmp_path / "c.yaml"
    float_variant = {"model": config.variants["float"].model}
    path.write_text(yaml.safe_dump({**data, "variants": {"float": float_variant, **variants}}))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "out" / "result.json").exists()


def test_a_misspelt_protocol_is_refused_with_the_near_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("variants:\n  float: {model: m.onnx}\nprotocols: [coco, voc7]\n")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "protocols" in err and "did you mean 'voc07'" in err


def test_ctrl_c_outside_a_run_is_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("evalkit.cli.compare.load_result", interrupted)
    assert main(["compare", "a", "b"]) == 130
    assert capsys.readouterr().err == "evalkit compare: interrupted\n"


def test_a_real_ctrl_c_on_the_command_line_exits_130(
    small_set: tuple[Path, RunConfig], tmp_path: Path
) -> None:
    """SIGINT to a real ``evalkit run`` process: exit 130, the message, no traceback."""
    _, config = small_set
    slow = replace(config, latency=replace(config.latency, runs=100000, warmup=0))
    path = _yaml(slow, tmp_path / "c.yaml")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalkit", "run", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    cache = Path(config.output) / "cache" / "float.jsonl"
    deadline = time.monotonic() + 300
    # Wait until the predictions are cached (the latency pass follows them).
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.is_file() and len(cache.read_text().splitlines()) == 7:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted: 6/6 images cached in" in err and "Traceback" not in err
    assert not (Path(config.output) / "result.json").exists()


def test_a_run_reuses_its_int8_model_only_while_the_calibration_images_are_unchanged(
    small_set: tuple[Path, RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evalkit.quantize as quantize_module
    from evalkit.datasets.dataset import open_coco

    tmp, config = small_set
    dataset = open_coco(config.dataset.annotations, config.dataset.images)
    real, made = quantize_module.quantize_model, []

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(quantize_module, "quantize_model", counting)
    target = tmp_path / "q" / "int8.onnx"
    target.parent.mkdir()
    float_model = tmp / "models" / "float.onnx"

    def quantize() -> Any:
        return quantize_module.quantize_for_run(
            float_model, target, dataset, count=2, seed=0, progress=False
        )

    sample = quantize().calibration
    quantize()
    assert len(made) == 1  # same model, settings and images: reused
    image = sample.files[0]
    image.write_bytes(image.read_bytes() + b"\0")  # same name, other bytes
    quantize()
    assert len(made) == 2  # quantized again from the new bytes, not reused stale
