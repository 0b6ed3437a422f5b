"""``fetch`` against a local HTTP server: resume, checksums, corrupt archives, idempotency.

The server (127.0.0.1, port 0) serves archives built here and implements just enough of
HTTP Range (``bytes=N-``) to exercise resuming; switches make it drop the connection
mid-body, ignore Range, or answer with an error status.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from evalkit.datasets.fetch import DOWNLOADS, FetchError, fetch_dataset
from evalkit.datasets.manifest import MARKER_NAME, Manifest, load_manifests
from evalkit.datasets.verify import verify_dataset

from .test_manifest import CliRunner, make_tiny_coco, manifest_doc, run_cli, write_manifests

__all__ = ["run_cli"]  # the fixture, imported for use here


@dataclass
class ServerState:
    """What the server serves and how it misbehaves; ``requests`` logs (path, Range)."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop: dict[str, int] = field(default_factory=dict)  # name -> bodies to cut short
    statuses: list[int] = field(default_factory=list)  # error replies to give first
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        name = self.path.lstrip("/")
        wanted = self.headers.get("Range")
        state.requests.append((name, wanted))
        body = state.files.get(name)
        if state.statuses:
            self.send_error(state.statuses.pop(0))
            return
        if body is None:
            self.send_error(404)
            return
        start = 0
        if wanted and not state.ignore_range:
            start = int(wanted.removeprefix("bytes=").removesuffix("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if state.drop.get(name, 0) > 0:
            state.drop[name] -= 1
            payload = payload[: len(payload) // 2]  # then the handler returns: connection closed
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ServerState]]:
    """Base URL of a local server and its state."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # a proxy from the environment must not intercept
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    state = ServerState()
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def tiny_zip(tmp_path: Path) -> bytes:
    """A zip of the tiny COCO layout (2 images, 3 annotations); stored, so it is not tiny."""
    make_tiny_coco(tmp_path / "src")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted((tmp_path / "src").rglob("*")):
            zf.write(path, path.relative_to(tmp_path / "src").as_posix())
    return buffer.getvalue()


def tiny_tar(tmp_path: Path) -> bytes:
    make_tiny_coco(tmp_path / "tsrc")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        tf.add(tmp_path / "tsrc" / "images", "images")
        tf.add(tmp_path / "tsrc" / "annotations", "annotations")
    return buffer.getvalue()


def _last_member_data(archive_bytes: bytes, kind: str) -> int:
    """Offset of the first data byte of the archive's last member."""
    if kind == "tar":
        with tarfile.open(fileobj=io.BytesIO(archive_bytes)) as tf:
            return tf.getmembers()[-1].offset_data
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as zf:
        last = zf.infolist()[-1]
    # A local file header is 30 bytes plus the name and the extra field.
    return last.header_offset + 30 + len(last.filename.encode()) + len(last.extra)


def manifest_for(
    tmp_path: Path, url: str, body: bytes, *, archive: str = "zip", **file_changes: Any
) -> Manifest:
    """A one-archive manifest for ``body`` served at ``url`` (size and sha256 of ``body``)."""
    spec: dict[str, Any] = {
        "name": url.rsplit("/", 1)[1],
        "url": url,
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "archive": archive,
        "provides": ["images"],
    }
    spec.update(file_changes)
    spec = {k: v for k, v in spec.items() if v is not None}
    folder = write_manifests(tmp_path / "manifests", manifest_doc("tiny", files=[spec]))
    return load_manifests(folder).get("tiny")


def no_leftovers(root: Path) -> bool:
    """No staging folder and no partial download remain under ``root``."""
    return not list(root.glob(".tiny.partial-*")) and not list(root.rglob("*.part"))


def test_fetch_installs_verified_dataset(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    body = state.files["tiny.zip"] = tiny_zip(tmp_path)
    manifest = manifest_for(tmp_path, f"{base}/tiny.zip", body)
    result = fetch_dataset(manifest, tmp_path / "root")
    assert result.status == "fetched" and result.path == tmp_path / "root" / "tiny"
    assert state.requests == [("tiny.zip", None)]
    marker = json.loads((result.path / MARKER_NAME).read_text())
    assert marker["files"] == [{"name": "tiny.zip", "digest": ["sha256", manifest.files[0].sha256]}]
    assert not (tmp_path / "root" / DOWNLOADS).exists()  # archives removed after unpacking
    assert no_leftovers(tmp_path / "root")
    assert verify_dataset(manifest, tmp_path / "root").ok
    (tmp_path / "root" / "plain").mkdir()  # the folder gets the mode a plain mkdir would
    assert result.path.stat().st_mode == (tmp_path / "root" / "plain").stat().st_mode


def test_interrupted_transfer_resumes_with_range(
    tmp_path: Path, server: tuple[str, ServerState]
) -> None:
    base, state = server
    body = state.files["tiny.zip"] = tiny_zip(tmp_path)
    state.drop["tiny.zip"] = 1
    manifest = manifest_for(tmp_path, f"{base}/tiny.zip", body)
    result = fetch_dataset(manifest, tmp_path / "root", retry_wait_s=0)
    half = len(body) // 2
    assert state.requests == [("tiny.zip", None), ("tiny.zip", f"bytes={half}-")]
    (outcome,) = result.files
    assert (outcome.requests, outcome.resumed_from) == (2, half)
    assert verify_dataset(manifest, tmp_path / "root").ok


def test_partial_file_from_an_earlier_run_is_resumed(
    tmp_path: Path, server: tuple[str, ServerState]
) -> None:
    base, state = server
    body = state.files["tiny.zip"] = tiny_zip(tmp_path)
    (tmp_path / "root" / DOWNLOADS).mkdir(parents=True)
    (tmp_path / "root" / DOWNLOADS / "tiny.zip.part").write_bytes(body[:100])
    fetch_dataset(manifest_for(tmp_path, f"{base}/tiny.zip", body), tmp_path / "root")
    assert state.requests == [("tiny.zip", "bytes=100-")]


def test_complete_part_of_unknown_size_is_not_downloaded_again(
    tmp_path: Path, server: tuple[str, ServerState]
) -> None:
    base, state = server
    body = state.files["tiny.zip"] = tiny_zip(tmp_path)
    (tmp_path / "root" / DOWNLOADS).mkdir(parents=True)
    (tmp_path / "root" / DOWNLOADS / "tiny.zip.part").write_bytes(body)
    manifest = manifest_for(tmp_path, f"{base}/tiny.zip", body, bytes=None)
    fetch_dataset(manifest, tmp_path / "root")
    # The server answers 416 with the total size, which equals what is on disk.
    assert state.requests == [("tiny.zip", f"bytes={len(body)}-")]
    assert verify_dataset(manifest, tmp_path / "root").ok


def test_server_ignoring_range_restarts_cleanly(
    tmp_path: Path, server: tuple[str, ServerState]
) -> None:
    base, state = server
    body = state.files["tiny.zip"] = tiny_zip(tmp_path)
    state.ignore_range = True
    state.drop["tiny.zip"] = 1
    manifest = manifest_for(tmp_path, f"{base}/tiny.zip", body)
    fetch_dataset(manifest, tmp_path / "root", retry_wait_s=0)
    # The second reply is a 200 with the whole body: appending it would break the digest.
    assert state.requests == [("tiny.zip", None), ("tiny.zip", f"bytes={len(body) // 2}-")]
    assert verify_dataset(manifest, tmp_path / "root").ok


def test_wrong_checksum_deletes_file_and_exits_2(
    tmp_path: Path,
    server: tuple[str, ServerState],
    run_cli: CliRunner,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, state = server
    body = state.files["tiny.zip"] = tiny_zip(tmp_path)
    wrong = "0" * 64
    manifest = manifest_for(tmp_path, f"{base}/tiny.zip", body, sha256=wrong)
    root = tmp_path / "root"
    with pytest.raises(FetchError) as info:
        fetch_dataset(manifest, root)
    actual = hashlib.sha256(body).hexdigest()
    assert info.value.path == str(root / DOWNLOADS / "tiny.zip.part")
    assert f"sha256 mismatch: expected {wrong}, got {actual}" in str(info.value)
    assert not list((root / DOWNLOADS).iterdir()) and not (root / "tiny").exists()

    argv = ["datasets", "fetch", "tiny", "--root", str(root), "--quiet", "--manifests"]
    assert run_cli([*argv, str(tmp_path / "manifests")]) == 2
    err = capsys.readouterr().err
    assert "tiny.zip.part" in err and wrong in err and actual in err


def test_md5_checked_when_no_sha256(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    body = state.files["tiny.zip"] = tiny_zip(tmp_path)
    manifest = manifest_for(
        tmp_path, f"{base}/tiny.zip", body, sha256=None, bytes=None, md5="f" * 32
    )
    with pytest.raises(FetchError, match=f"md5 mismatch: expected {'f' * 32}, got "):
        fetch_dataset(manifest, tmp_path / "root")


def test_short_body_from_server_is_refused(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    body = tiny_zip(tmp_path)
    state.files["tiny.zip"] = body[:-10]  # the server's copy is truncated
    manifest = manifest_for(tmp_path, f"{base}/tiny.zip", body)
    with pytest.raises(FetchError, match=f"server reports {len(body) - 10} bytes, the manifest"):
        fetch_dataset(manifest, tmp_path / "root")
    assert no_leftovers(tmp_path / "root") and not (tmp_path / "root" / "tiny").exists()


@pytest.mark.parametrize("archive", ["zip", "tar"])
def test_truncated_archive_fails_and_installs_nothing(
    tmp_path: Path, server: tuple[str, ServerState], archive: str
) -> None:
    base, state = server
    whole = tiny_zip(tmp_path) if archive == "zip" else tiny_tar(tmp_path)
    # Cut inside the last member's data (a tar ends in zero padding that can go unnoticed),
    # with digests that match the cut bytes: the download passes, unpacking must not.
    body = state.files[f"tiny.{archive}"] = whole[: _last_member_data(whole, archive) + 10]
    manifest = manifest_for(tmp_path, f"{base}/tiny.{archive}", body, archive=archive)
    with pytest.raises(FetchError, match=f"cannot unpack {archive} archive"):
        fetch_dataset(manifest, tmp_path / "root")
    assert not (tmp_path / "root" / "tiny").exists() and no_leftovers(tmp_path / "root")


@pytest.mark.parametrize("pep706", [True, False], ids=["data-filter", "own-check"])
def test_archive_escaping_its_folder_is_refused(
    tmp_path: Path, server: tuple[str, ServerState], pep706: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, state = server
    if not pep706:  # as on a Python without tarfile's extraction filters
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    body = state.files["evil.tar"] = buffer.getvalue()
    manifest = manifest_for(tmp_path, f"{base}/evil.tar", body, archive="tar")
    with pytest.raises(FetchError, match="cannot unpack tar archive"):
        fetch_dataset(manifest, tmp_path / "root")
    assert not (tmp_path / "root" / "escaped.txt").exists()


def test_second_fetch_makes_no_request(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    body = state.files["tiny.zip"] = tiny_zip(tmp_path)
    manifest = manifest_for(tmp_path, f"{base}/tiny.zip", body)
    fetch_dataset(manifest, tmp_path / "root")
    again = fetch_dataset(manifest, tmp_path / "root")
    assert again.status == "already-complete" and again.requests == 0
    assert len(state.requests) == 1


def test_folder_without_marker_is_not_taken_for_complete(
    tmp_path: Path, server: tuple[str, ServerState]
) -> None:
    base, state = server
    body = state.files["tiny.zip"] = tiny_zip(tmp_path)
    make_tiny_coco(tmp_path / "root" / "tiny")
    with pytest.raises(FetchError, match=f"has no {MARKER_NAME}"):
        fetch_dataset(manifest_for(tmp_path, f"{base}/tiny.zip", body), tmp_path / "root")
    assert state.requests == []


def test_retries_are_bounded_and_keep_the_part(
    tmp_path: Path, server: tuple[str, ServerState]
) -> None:
    base, state = server
    body = state.files["tiny.zip"] = tiny_zip(tmp_path)
    state.drop["tiny.zip"] = 100
    manifest = manifest_for(tmp_path, f"{base}/tiny.zip", body)
    with pytest.raises(FetchError, match="download failed after 3 attempts"):
        fetch_dataset(manifest, tmp_path / "root", retries=2, retry_wait_s=0)
    assert len(state.requests) == 3
    assert (tmp_path / "root" / DOWNLOADS / "tiny.zip.part").stat().st_size > 0


def test_server_errors_retried_client_errors_not(
    tmp_path: Path, server: tuple[str, ServerState]
) -> None:
    base, state = server
    body = state.files["tiny.zip"] = tiny_zip(tmp_path)
    state.statuses = [503]
    fetch_dataset(manifest_for(tmp_path, f"{base}/tiny.zip", body), tmp_path / "a", retry_wait_s=0)
    assert len(state.requests) == 2
    state.requests.clear()
    state.statuses = [404]
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_dataset(manifest_for(tmp_path, f"{base}/tiny.zip", body), tmp_path / "b")
    assert len(state.requests) == 1


def test_mirror_replaces_manifest_url(
    tmp_path: Path,
    server: tuple[str, ServerState],
    run_cli: CliRunner,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, state = server
    body = state.files["tiny.zip"] = tiny_zip(tmp_path)
    # Port 9 on 127.0.0.1 refuses connections: reaching the manifest URL would fail.
    manifest_for(tmp_path, "http://127.0.0.1:9/elsewhere/tiny.zip", body)
    argv = ["datasets", "fetch", "tiny", "--quiet", "--manifests", str(tmp_path / "manifests")]
    assert run_cli([*argv, "--root", str(tmp_path / "a"), "--mirror", base]) == 0
    assert "tiny: fetched into" in capsys.readouterr().out
    monkeypatch.setenv("EVALKIT_MIRROR", base)
    assert run_cli([*argv, "--root", str(tmp_path / "b")]) == 0
    assert state.requests == [("tiny.zip", None)] * 2


def test_local_set_has_nothing_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="coco128 is a local set with nothing to download"):
        fetch_dataset(load_manifests().get("coco128"), tmp_path)
