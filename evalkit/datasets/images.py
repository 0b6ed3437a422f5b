"""Image decoding and resizing exactly as the reference pipeline does them.

The reference (the model zoo's evaluator, reference-pipeline.md section 3) reads an image
with ``cv2.imread(path)`` (``IMREAD_COLOR``), converts BGR to RGB, then resizes with
``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``. Both steps here call OpenCV itself, so
the pixels are the reference's pixels by construction; what this module adds is refusing
inputs the reference would silently get wrong (missing, undecodable or truncated files) and
a header-only :func:`image_size`.

What ``IMREAD_COLOR`` does to unusual inputs, and therefore what :func:`decode_rgb` returns:

* grayscale: the gray value is copied to R, G and B;
* palette PNG: the palette colours, expanded to RGB;
* 16-bit PNG: the high byte of each sample (``value >> 8``, truncation, not rounding);
* alpha (RGBA PNG, palette with transparency): the alpha channel is dropped, not composited
  over any background. The reference does the same, so we keep it;
* CMYK JPEG: OpenCV treats the stored samples as Adobe (inverted) CMYK and computes
  ``channel = k - ((255 - c) * k >> 8)`` per channel;
* EXIF orientation: applied (rotated/flipped to display orientation), because plain
  ``cv2.imread`` applies it by default and matching the reference is the policy. Boxes
  drawn on the stored, unrotated pixels would then not line up; none of the COCO128 or VOC
  sample images carries an EXIF block, so there the question does not arise.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import numpy.typing as npt

from evalkit.errors import InputError

__all__ = ["check_complete", "decode_rgb", "image_size", "resize_bilinear"]

_JPEG_SOI = b"\xff\xd8"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0..RST7, SOI, EOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})
_JPEG_EOI, _JPEG_SOS, _JPEG_APP1 = 0xD9, 0xDA, 0xE1
# The next marker: one or more 0xFF then a code that is neither a stuffed zero nor a fill
# byte. Entropy-coded data only ever contains FF00 (stuffing) and FFD0..FFD7 (restarts),
# so this skips scan data without decoding it.
_JPEG_NEXT_MARKER = re.compile(rb"\xff+([^\x00\xff])")
_EXIF_PREFIX = b"Exif\x00\x00"
_EXIF_ORIENTATION_TAG = 0x0112
# Orientations 5..8 transpose the image, so width and height swap after decoding.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})

Size = tuple[int, int]


def decode_rgb(path: str | Path) -> npt.NDArray[np.uint8]:
    """Read an image file as (H, W, 3) uint8 RGB, pixel for pixel what the reference gets.

    Raises :class:`InputError` naming the file for a missing path, a directory, an empty or
    undecodable file, and a JPEG or PNG whose data ends early (the reference would decode a
    partly grey image with only a warning on stderr).
    """
    path = Path(path)
    check_complete(path)
    # cv2.imread returns None instead of raising, so the result is checked below.
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise InputError(
            f"OpenCV cannot decode this file as an image ({_describe_start(path)}); "
            "expected a JPEG, PNG or another format cv2.imread reads",
            path=path,
        )
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        # IMREAD_COLOR promises 8-bit, 3 channels; anything else is an OpenCV change we
        # would rather hear about than pass on.
        raise InputError(
            f"cv2.imread(IMREAD_COLOR) returned dtype {bgr.dtype} shape {bgr.shape}; "
            "expected uint8 (H, W, 3)",
            path=path,
        )
    # cvtColor is typed as returning any OpenCV matrix; the array is uint8 already (no copy).
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def image_size(path: str | Path) -> Size:
    """The (width, height) that :func:`decode_rgb` would return, from the header if cheap.

    JPEG (SOF frame header plus the EXIF orientation, which can swap the two) and PNG
    (IHDR plus any eXIf chunk) are read without decoding pixels; any other format, and
    any header this parser is not sure about, falls back to decoding. This does not check
    that the rest of the file is intact: :func:`decode_rgb` does.
    """
    path = Path(path)
    _check_is_file(path)
    with path.open("rb") as f:
        start = f.read(8)
        f.seek(0)
        size: Size | None = None
        if start.startswith(_JPEG_SOI):
            size = _jpeg_header_size(f)
        elif start == _PNG_SIGNATURE:
            size = _png_header_size(f)
    if size is not None:
        return size
    height, width = decode_rgb(path).shape[:2]
    return width, height


def resize_bilinear(image: npt.NDArray[np.generic], size: Size) -> npt.NDArray[np.generic]:
    """Resize to (width, height) exactly as ``cv2.resize(..., INTER_LINEAR)`` does.

    This calls OpenCV rather than reimplementing it: on uint8, OpenCV's bilinear filter
    uses fixed-point weights (11 fractional bits), its own rounding and SIMD paths, so a
    numpy version would only match on the cases we happened to test. Aspect ratio is not
    kept, as in the reference.
    """
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"expected a positive (width, height), got {size!r}")
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty (H, W) or (H, W, C) image, got {image.shape}")
    # cv2.resize rejects some non-contiguous views (negative strides from [..., ::-1]).
    resized: npt.NDArray[np.generic] = cv2.resize(
        np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_LINEAR
    )
    return resized


def _check_is_file(path: Path) -> None:
    if not path.exists():
        raise InputError("image file not found (expected a JPEG or PNG file)", path=path)
    if not path.is_file():
        raise InputError("expected an image file, found a directory or special file", path=path)


def check_complete(path: Path) -> None:
    """Refuse missing, empty and truncated JPEG/PNG files before OpenCV sees them."""
    _check_is_file(path)
    data = path.read_bytes()
    if not data:
        raise InputError("empty file (0 bytes); expected an image", path=path)
    if data.startswith(_JPEG_SOI) and not _jpeg_has_eoi(data):
        # libjpeg decodes what it has, fills the rest with grey and only warns.
        raise InputError(
            f"truncated JPEG ({len(data)} bytes): no end-of-image marker (0xFFD9) after "
            "the last scan; expected a complete JPEG file",
            path=path,
        )
    if data.startswith(_PNG_SIGNATURE) and not _png_has_iend(data):
        raise InputError(
            f"truncated PNG ({len(data)} bytes): the chunks end before IEND; "
            "expected a complete PNG file",
            path=path,
        )


def _jpeg_has_eoi(data: bytes) -> bool:
    """Whether the marker structure reaches EOI; segments are skipped by their length so an
    EOI inside an EXIF thumbnail does not count, and bytes after EOI are allowed."""
    pos = 2
    while True:
        match = _JPEG_NEXT_MARKER.search(data, pos)
        if match is None:
            return False
        marker = match.group(1)[0]
        pos = match.end()
        if marker == _JPEG_EOI:
            return True
        if marker in _JPEG_STANDALONE:
            continue
        if pos + 2 > len(data):
            return False
        (length,) = struct.unpack_from(">H", data, pos)
        pos += length
        if pos > len(data):
            return False


def _png_has_iend(data: bytes) -> bool:
    """Whether the chunk list is whole up to and including IEND."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        pos += 12 + length  # length, type, data, CRC
        if pos > len(data):
            return False
        if kind == b"IEND":
            return True
    return False


def _jpeg_header_size(f: BinaryIO) -> Size | None:
    """(width, height) from SOF and the EXIF orientation, or None when unsure.

    Reads marker segments up to the first scan (SOS), which is where libjpeg's header
    reading stops too; only SOF and the EXIF APP1 are read, the rest is skipped.
    """
    f.seek(2)
    frame: Size | None = None
    orientation: int | None = 1
    exif_seen = other_app1_seen = False
    while True:
        marker = _read_jpeg_marker(f)
        if marker is None or marker == _JPEG_EOI:
            return None
        if marker in _JPEG_STANDALONE:
            continue
        if marker == _JPEG_SOS:
            break
        header = f.read(2)
        if len(header) < 2:
            return None
        (length,) = struct.unpack(">H", header)
        if length < 2:
            return None
        if marker in _JPEG_SOF and frame is None:
            payload = f.read(length - 2)
            if len(payload) < 5:
                return None
            height, width = struct.unpack_from(">HH", payload, 1)
            frame = (width, height)
        elif marker == _JPEG_APP1 and not exif_seen:
            payload = f.read(length - 2)
            if payload.startswith(_EXIF_PREFIX):
                exif_seen = True
                # Older OpenCV read the first APP1 whatever it held (torchvision's copy of
                # that code still does); 5.0 looks for "Exif". With another APP1 in front
                # they disagree, so let the installed decoder decide.
                if other_app1_seen:
                    return None
                orientation = _exif_orientation(payload[len(_EXIF_PREFIX) :])
            else:
                other_app1_seen = True
        else:
            f.seek(length - 2, 1)
    if frame is None or orientation is None or 0 in frame:
        # Height 0 in SOF means it is given later by a DNL marker: let the decoder say.
        return None
    return _oriented(frame, orientation)


def _read_jpeg_marker(f: BinaryIO) -> int | None:
    """The next marker code, skipping fill bytes (and, as libjpeg does, stray bytes)."""
    byte = f.read(1)
    while byte and byte != b"\xff":
        byte = f.read(1)
    while byte == b"\xff":
        byte = f.read(1)
    return byte[0] if byte else None


def _png_header_size(f: BinaryIO) -> Size | None:
    """(width, height) from IHDR and any eXIf chunk, or None when unsure.

    OpenCV applies an eXIf orientation wherever the chunk sits (after IDAT too), so every
    chunk header is read; chunk bodies other than IHDR and eXIf are skipped with seek.
    """
    f.seek(len(_PNG_SIGNATURE))
    frame: Size | None = None
    orientation: int | None = 1
    while True:
        header = f.read(8)
        if len(header) < 8:
            return None
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IHDR":
            body = f.read(length)
            if len(body) < 8:
                return None
            frame = struct.unpack_from(">II", body)
            f.seek(4, 1)
        elif kind == b"eXIf":
            orientation = _exif_orientation(f.read(length))
            f.seek(4, 1)
        elif kind == b"IEND":
            break
        else:
            f.seek(length + 4, 1)
    if frame is None or orientation is None or 0 in frame:
        return None
    return _oriented(frame, orientation)


def _exif_orientation(tiff: bytes) -> int | None:
    """The Orientation tag of IFD0 in a TIFF-structured EXIF block; 1 when absent.

    Returns None (caller falls back to decoding) for anything not plainly well formed,
    such as an Orientation stored as LONG, where OpenCV versions read different bytes.
    """
    if len(tiff) < 8:
        return None
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return None
    magic, ifd = struct.unpack_from(order + "HI", tiff, 2)
    if magic != 42 or ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    if ifd + 2 + 12 * count > len(tiff):
        return None
    for index in range(count):
        entry = ifd + 2 + 12 * index
        tag, kind, n = struct.unpack_from(order + "HHI", tiff, entry)
        if tag == _EXIF_ORIENTATION_TAG:
            if kind != 3 or n != 1:  # 3 = SHORT
                return None
            value: int = struct.unpack_from(order + "H", tiff, entry + 8)[0]
            return value
    return 1


def _oriented(frame: Size, orientation: int) -> Size:
    """The decoded size after OpenCV applies an EXIF orientation (others are ignored)."""
    width, height = frame
    if orientation in _TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def _describe_start(path: Path) -> str:
    """Size and first bytes of a file, to show what arrived in an error message."""
    with path.open("rb") as f:
        head = f.read(8)
    return f"{path.stat().st_size} bytes starting {head!r}"
