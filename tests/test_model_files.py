"""``evalkit models``: the references' published files listed with their sha256, local
copies verified, downloads resumed and checked against a local HTTP server serving a fake
zoo tree (the dataset fetcher's machinery), never a half or wrong file left in place."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.datasets.fetch import FetchError
from evalkit.references import reference_for
from evalkit.references.model_files import (
    PublishedFile,
    fetch_file,
    identify,
    published_files,
    state_of,
)

from .test_fetch import ServerState, server

__all__ = ["server"]  # the fixture, imported for use here

BODY = bytes(range(256)) * 400  # 102,400 bytes standing in for a model file


def _fake(body: bytes = BODY) -> PublishedFile:
    return PublishedFile(
        model="tiny_pt", dataset="coco", precision="float", path="coco/tiny_300.onnx",
        bytes=len(body), sha256=hashlib.sha256(body).hexdigest(),
        repository="STMicroelectronics/stm32ai-modelzoo", folder="object_detection/tiny_pt",
    )  # fmt: skip


def test_the_cards_six_files_are_listed_with_their_sha256(
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = published_files("ssd_mobilenetv2_pt")
    assert len(files) == 6
    assert {(f.dataset, f.precision) for f in files} == {
        (d, p) for d in ("coco", "coco_person", "voc") for p in ("float", "int8")
    }
    card = reference_for("ssd_mobilenetv2_pt", "coco").files["int8"]
    int8 = next(f for f in files if (f.dataset, f.precision) == ("coco", "int8"))
    assert (int8.sha256, int8.bytes, int8.path) == (card.sha256, card.bytes, card.path)
    assert int8.url().startswith(
        "https://media.githubusercontent.com/media/STMicroelectronics/stm32ai-modelzoo/main/"
        "object_detection/ssd_mobilenetv2_pt/Public_pretrainedmodel_public_dataset/coco/"
    )
    assert main(["models", "list", "ssd_mobilenetv2_pt"]) == 0
    out = capsys.readouterr().out
    assert all(f.sha256 in out for f in files)


def test_fetch_resumes_verifies_and_installs_atomically(
    tmp_path: Path, server: tuple[str, ServerState]
) -> None:
    url, state = server
    fake = _fake()
    state.files["tiny_pt/coco/tiny_300.onnx"] = BODY
    state.drop["tiny_pt/coco/tiny_300.onnx"] = 1  # the first body stops half way
    assert state_of(fake, tmp_path) == "missing"
    path = fetch_file(fake, tmp_path, mirror=url)
    assert path == tmp_path / "tiny_pt" / "coco" / "tiny_300.onnx"
    assert path.read_bytes() == BODY and state_of(fake, tmp_path) == "ok"
    assert [r for _, r in state.requests] == [None, f"bytes={len(BODY) // 2}-"]  # resumed
    fetch_file(fake, tmp_path, mirror=url)
    assert len(state.requests) == 2  # verified on disk: nothing downloaded again
    path.write_bytes(BODY[:-1] + b"x")  # damaged in place
    assert state_of(fake, tmp_path) == "mismatch"
    fetch_file(fake, tmp_path, mirror=url)
    assert path.read_bytes() == BODY


def test_a_wrong_file_is_refused_and_removed(
    tmp_path: Path, server: tuple[str, ServerState]
) -> None:
    url, state = server
    state.files["tiny_pt/coco/tiny_300.onnx"] = BODY[::-1]  # same size, other bytes
    with pytest.raises(FetchError, match="tiny_pt/coco/float: sha256 mismatch"):
        fetch_file(_fake(), tmp_path, mirror=url)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_verify_and_fetch_on_the_command_line(
    tmp_path: Path,
    server: tuple[str, ServerState],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, state = server
    state.files["tiny_pt/coco/tiny_300.onnx"] = BODY
    monkeypatch.setattr("evalkit.cli.models.published_files", lambda model=None: [_fake()])
    root = str(tmp_path / "models")
    assert main(["models", "verify", "tiny_pt", "--model-root", root]) == 2
    err = capsys.readouterr().err
    assert "tiny_pt/coco/float missing" in err and _fake().sha256 in err
    assert (
        f"evalkit models fetch tiny_pt --dataset coco --precision float --model-root {root}" in err
    )
    monkeypatch.setenv("EVALKIT_MODEL_MIRROR", url)
    assert main(["models", "fetch", "tiny_pt", "--model-root", root, "--quiet"]) == 0
    assert main(["models", "verify", "tiny_pt", "--model-root", root]) == 0
    assert "tiny_pt/coco/float: ok" in capsys.readouterr().out


def test_a_local_copy_anywhere_is_recognised_by_its_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "renamed.onnx"
    copy.write_bytes(BODY)
    monkeypatch.setattr(
        "evalkit.references.model_files.published_files", lambda model=None: [_fake()]
    )
    found = identify(copy)
    assert found is not None and found.key == "tiny_pt/coco/float"
    copy.write_bytes(BODY[:-1])
    assert identify(copy) is None
