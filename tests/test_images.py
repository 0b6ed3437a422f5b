"""Decoding and resizing match cv2.imread + cvtColor and cv2.resize exactly.

Unusual files (palette, 16-bit, alpha, CMYK, EXIF-rotated) are built by hand in this file
so each test says what its bytes are; expected pixels are derived from those bytes, and
also compared with plain OpenCV, which is the reference.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from evalkit.datasets import images
from evalkit.datasets.images import decode_rgb, image_size, resize_bilinear
from evalkit.errors import InputError

U8 = npt.NDArray[np.uint8]


def reference_rgb(path: Path) -> U8:
    """What the zoo does: cv2.imread (IMREAD_COLOR) then BGR -> RGB."""
    bgr = cv2.imread(str(path))
    assert bgr is not None, f"OpenCV could not read {path}"
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def real_images(shared_dir: Path) -> list[Path]:
    coco = sorted((shared_dir / "data/coco128/images").glob("*.jpg"))
    voc = sorted((shared_dir / "data/voc_sample/VOCdevkit/VOC2012/JPEGImages").glob("*.jpg"))
    assert coco, "no COCO128 images under $EVALKIT_DATA/data/coco128/images"
    assert voc, "no VOC images under $EVALKIT_DATA/data/voc_sample/.../JPEGImages"
    return coco + voc


# --- hand-written files -------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(
    rows: list[bytes], width: int, bit_depth: int, color_type: int, extra: bytes = b""
) -> bytes:
    """A PNG from already packed rows (filter type 0); ``extra`` chunks go before IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, len(rows), bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + extra
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def exif_tiff(orientation: int, order: str = "MM", kind: int = 3) -> bytes:
    """A TIFF block whose IFD0 has a Make tag then the Orientation tag (SHORT or LONG)."""
    e = ">" if order == "MM" else "<"
    make = struct.pack(e + "HHI", 0x010F, 2, 4) + b"abc\x00"
    if kind == 3:
        orient = struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0)
    else:
        orient = struct.pack(e + "HHII", 0x0112, 4, 1, orientation)
    ifd = struct.pack(e + "H", 2) + make + orient + struct.pack(e + "I", 0)
    return order.encode() + struct.pack(e + "HI", 42, 8) + ifd


def with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """Insert an APP1 segment right after SOI, as cameras write EXIF."""
    return jpeg[:2] + jpeg_segment(0xE1, payload) + jpeg[2:]


# The standard luminance DC table (JPEG spec K.3); the AC table has one symbol, EOB = "0".
DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)


def cmyk_jpeg(blocks: list[tuple[int, int, int, int]]) -> bytes:
    """An 8-row baseline JPEG with four components and Adobe transform 0 (CMYK), one flat
    8x8 block per entry of ``blocks``, left to right; quantisation 1, so a flat block of
    stored value v has DC = 8 * (v - 128) and decodes back to exactly v."""
    codes: dict[int, tuple[int, int]] = {}
    code, symbol = 0, 0
    for length, count in enumerate(DC_BITS, start=1):
        for _ in range(count):
            codes[symbol] = (code, length)
            code, symbol = code + 1, symbol + 1
        code <<= 1
    bits: list[int] = []
    previous = [0, 0, 0, 0]
    for block in blocks:
        for component, value in enumerate(block):
            dc = 8 * (value - 128)
            diff, previous[component] = dc - previous[component], dc
            category = abs(diff).bit_length()
            huff, length = codes[category]
            bits += [(huff >> i) & 1 for i in reversed(range(length))]
            extra = diff if diff > 0 else diff + (1 << category) - 1
            bits += [(extra >> i) & 1 for i in reversed(range(category))]
            bits.append(0)  # EOB: all AC coefficients zero
    bits += [1] * (-len(bits) % 8)  # pad with 1s, as the spec asks
    scan = bytearray()
    for i in range(0, len(bits), 8):
        byte = int("".join(map(str, bits[i : i + 8])), 2)
        scan += b"\xff\x00" if byte == 0xFF else bytes([byte])  # byte stuffing
    components = b"".join(bytes([i + 1, 0x11, 0]) for i in range(4))
    return (
        b"\xff\xd8"
        + jpeg_segment(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0))
        + jpeg_segment(0xDB, b"\x00" + b"\x01" * 64)
        + jpeg_segment(0xC0, struct.pack(">BHHB", 8, 8, 8 * len(blocks), 4) + components)
        + jpeg_segment(0xC4, b"\x00" + bytes(DC_BITS) + bytes(range(12)))
        + jpeg_segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
        + jpeg_segment(
            0xDA, b"\x04" + b"".join(bytes([i + 1, 0]) for i in range(4)) + b"\x00\x3f\x00"
        )
        + bytes(scan)
        + b"\xff\xd9"
    )


def encode(image: npt.NDArray[Any], ext: str, *params: int) -> bytes:
    ok, buffer = cv2.imencode(ext, image, list(params))
    assert ok
    return buffer.tobytes()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def check_matches_reference(path: Path) -> U8:
    """decode_rgb equals OpenCV and image_size equals the decoded size; returns the image."""
    rgb = decode_rgb(path)
    expected = reference_rgb(path)
    assert rgb.dtype == np.uint8 and rgb.shape == expected.shape
    np.testing.assert_array_equal(rgb, expected)
    assert image_size(path) == (rgb.shape[1], rgb.shape[0])
    return rgb


@pytest.fixture
def gradient_bgr() -> U8:
    """A 24x40 BGR image with distinct rows and columns, so any flip or turn shows."""
    rows, cols = np.mgrid[0:24, 0:40]
    return np.stack([rows * 10, cols * 6, (rows + cols) * 4], axis=-1).astype(np.uint8)


# --- formats ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 13, 3), (64, 48, 3)])
def test_random_png_is_lossless_rgb(tmp_path: Path, shape: tuple[int, int, int]) -> None:
    bgr = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    path = write(tmp_path, "random.png", encode(bgr, ".png"))
    rgb = check_matches_reference(path)
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp"])
def test_grayscale_is_copied_to_three_channels(tmp_path: Path, ext: str) -> None:
    gray = np.random.default_rng(1).integers(0, 256, (9, 17), dtype=np.uint8)
    rgb = check_matches_reference(write(tmp_path, "gray" + ext, encode(gray, ext)))
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 1])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    if ext != ".jpg":  # lossless
        np.testing.assert_array_equal(rgb[..., 0], gray)


@pytest.mark.parametrize("transparency", [False, True])
def test_palette_png_gives_palette_colours_and_drops_transparency(
    tmp_path: Path, transparency: bool
) -> None:
    palette = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30], [200, 200, 0]], np.uint8)
    indices = np.array([[0, 1, 2, 3, 0], [3, 2, 1, 0, 1]], np.uint8)
    extra = png_chunk(b"PLTE", palette.tobytes())
    if transparency:  # per-entry alpha: the reference ignores it, no compositing
        extra += png_chunk(b"tRNS", bytes([0, 64, 128, 255]))
    data = png_bytes([row.tobytes() for row in indices], 5, 8, 3, extra)
    rgb = check_matches_reference(write(tmp_path, "palette.png", data))
    np.testing.assert_array_equal(rgb, palette[indices])


def test_four_bit_palette_png(tmp_path: Path) -> None:
    palette = np.array([[i * 15, 255 - i * 15, i * 7] for i in range(16)], np.uint8)
    indices = np.array([[0, 5, 10, 15, 3], [15, 14, 1, 2, 8]], np.uint8)  # odd width: padding
    rows = [
        bytes(((r[i] << 4) | (r[i + 1] if i + 1 < 5 else 0)) for i in range(0, 5, 2))
        for r in indices
    ]
    data = png_bytes(rows, 5, 4, 3, png_chunk(b"PLTE", palette.tobytes()))
    rgb = check_matches_reference(write(tmp_path, "palette4.png", data))
    np.testing.assert_array_equal(rgb, palette[indices])


@pytest.mark.parametrize("channels", [1, 3])
def test_sixteen_bit_png_keeps_the_high_byte(tmp_path: Path, channels: int) -> None:
    shape = (6, 11) if channels == 1 else (6, 11, 3)
    deep = np.random.default_rng(2).integers(0, 65536, shape, dtype=np.uint16)
    rgb = check_matches_reference(write(tmp_path, "deep.png", encode(deep, ".png")))
    high = (deep >> 8).astype(np.uint8)  # libpng strip_16: truncation, 0x80FF -> 0x80
    expected = np.repeat(high[..., None], 3, axis=-1) if channels == 1 else high[..., ::-1]
    np.testing.assert_array_equal(rgb, expected)


def test_rgba_png_drops_alpha_without_compositing(tmp_path: Path) -> None:
    bgra = np.random.default_rng(3).integers(0, 256, (8, 10, 4), dtype=np.uint8)
    bgra[..., 3] = 0  # fully transparent: compositing would change every pixel
    rgb = check_matches_reference(write(tmp_path, "rgba.png", encode(bgra, ".png")))
    np.testing.assert_array_equal(rgb, bgra[..., 2::-1])


def test_gray_alpha_png_drops_alpha(tmp_path: Path) -> None:
    gray_alpha = np.array([[[0, 255], [100, 0], [255, 30]]], np.uint8)  # color type 4
    data = png_bytes([gray_alpha[0].tobytes()], 3, 8, 4)
    rgb = check_matches_reference(write(tmp_path, "ga.png", data))
    np.testing.assert_array_equal(rgb[0], [[0, 0, 0], [100, 100, 100], [255, 255, 255]])


def test_cmyk_jpeg_uses_opencvs_inverted_cmyk_formula(tmp_path: Path) -> None:
    blocks = [(0, 0, 0, 0), (255, 255, 255, 255), (255, 0, 0, 255), (10, 200, 100, 50)]
    rgb = check_matches_reference(write(tmp_path, "cmyk.jpg", cmyk_jpeg(blocks)))
    assert rgb.shape == (8, 32, 3)
    # OpenCV (grfmt_jpeg.cpp): channel = k - ((255 - c) * k >> 8), C->R, M->G, Y->B.
    expected = [[k - ((255 - v) * k >> 8) for v in (c, m, y)] for c, m, y, k in blocks]
    assert expected[3] == [3, 40, 20]  # worked example: 50 - (245 * 50 >> 8) = 50 - 47
    for index, colour in enumerate(expected):
        block = rgb[:, 8 * index : 8 * index + 8]
        np.testing.assert_array_equal(block, np.broadcast_to(colour, block.shape))


@pytest.mark.parametrize(
    ("options", "marker"),
    [
        ((), b"\xff\xc0"),  # baseline SOF0
        ((cv2.IMWRITE_JPEG_PROGRESSIVE, 1), b"\xff\xc2"),  # progressive SOF2, several scans
        ((cv2.IMWRITE_JPEG_RST_INTERVAL, 1), b"\xff\xd0"),  # restart markers in the scan
    ],
)
def test_jpeg_variants_decode_and_size_from_header(
    tmp_path: Path, gradient_bgr: U8, options: tuple[int, ...], marker: bytes
) -> None:
    data = encode(gradient_bgr, ".jpg", *options)
    assert marker in data
    path = write(tmp_path, "v.jpg", data)
    check_matches_reference(path)
    with path.open("rb") as f:
        assert images._jpeg_header_size(f) == (40, 24)


# --- EXIF orientation ---------------------------------------------------------------------

# What each EXIF orientation does to the stored image (TIFF 6.0 / EXIF 2.3 tag 0x0112).
ORIENTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirror left-right
    3: lambda a: a[::-1, ::-1],  # rotate 180
    4: lambda a: a[::-1],  # mirror top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # transpose
    6: lambda a: np.rot90(a, k=-1),  # rotate 90 clockwise
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # transverse
    8: lambda a: np.rot90(a, k=1),  # rotate 90 counter-clockwise
}


@pytest.mark.parametrize("order", ["MM", "II"])
@pytest.mark.parametrize("orientation", range(10))
def test_exif_orientation_is_applied_like_imread(
    tmp_path: Path, gradient_bgr: U8, orientation: int, order: str
) -> None:
    plain = encode(gradient_bgr, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 100)
    stored = decode_rgb(write(tmp_path, "plain.jpg", plain))
    data = with_app1(plain, b"Exif\x00\x00" + exif_tiff(orientation, order))
    path = write(tmp_path, "exif.jpg", data)
    rgb = check_matches_reference(path)
    # 0 and 9 are not orientations: OpenCV leaves the image as stored.
    np.testing.assert_array_equal(rgb, ORIENTED.get(orientation, ORIENTED[1])(stored))
    with path.open("rb") as f:  # and the size came from the header, not a decode
        assert images._jpeg_header_size(f) == (rgb.shape[1], rgb.shape[0])


@pytest.mark.parametrize("order", ["MM", "II"])
def test_unusual_exif_falls_back_to_decoding(tmp_path: Path, gradient_bgr: U8, order: str) -> None:
    plain = encode(gradient_bgr, ".jpg")
    # Orientation typed LONG: OpenCV reads its first two bytes, which differ by byte order.
    long_typed = with_app1(plain, b"Exif\x00\x00" + exif_tiff(6, order, kind=4))
    # An XMP APP1 in front of the EXIF one: OpenCV 4.x and 5.x pick different segments.
    xmp_first = with_app1(
        with_app1(plain, b"Exif\x00\x00" + exif_tiff(6, order)),
        b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>",
    )
    for name, data in (("long.jpg", long_typed), ("xmp.jpg", xmp_first)):
        path = write(tmp_path, name, data)
        with path.open("rb") as f:
            assert images._jpeg_header_size(f) is None
        check_matches_reference(path)


@pytest.mark.parametrize("where", ["before IDAT", "after IDAT"])
def test_png_exif_orientation(tmp_path: Path, gradient_bgr: U8, where: str) -> None:
    plain = encode(gradient_bgr, ".png")
    exif = png_chunk(b"eXIf", exif_tiff(6))
    cut = 33 if where == "before IDAT" else plain.rindex(b"IEND") - 4  # 33: end of IHDR
    path = write(tmp_path, "exif.png", plain[:cut] + exif + plain[cut:])
    rgb = check_matches_reference(path)
    # Whether OpenCV applies it depends on its version; the header parser must agree.
    assert rgb.shape[:2] in ((24, 40), (40, 24))
    if rgb.shape[:2] == (40, 24):
        np.testing.assert_array_equal(rgb, np.rot90(gradient_bgr[..., ::-1], k=-1))


def test_image_size_reads_only_the_header(
    tmp_path: Path, gradient_bgr: U8, monkeypatch: pytest.MonkeyPatch
) -> None:
    jpeg = write(tmp_path, "a.jpg", encode(gradient_bgr, ".jpg"))
    png = write(tmp_path, "a.png", encode(gradient_bgr, ".png"))
    bmp = write(tmp_path, "a.bmp", encode(gradient_bgr, ".bmp"))
    assert image_size(bmp) == (40, 24)  # other formats: decoded

    def no_decoding(path: object) -> None:
        raise AssertionError("image_size decoded a JPEG or PNG")

    monkeypatch.setattr(images, "decode_rgb", no_decoding)
    assert image_size(jpeg) == (40, 24)
    assert image_size(png) == (40, 24)


# --- refusing bad files -------------------------------------------------------------------


def assert_input_error(path: Path, *words: str) -> None:
    with pytest.raises(InputError) as caught:
        decode_rgb(path)
    message = str(caught.value)
    assert caught.value.path == str(path) and str(path) in message
    for word in ("expected", *words):
        assert word in message, message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert_input_error(tmp_path / "nope.jpg", "not found")
    with pytest.raises(InputError, match="not found"):
        image_size(tmp_path / "nope.jpg")
    assert_input_error(tmp_path, "directory")


def test_empty_and_undecodable_files(tmp_path: Path) -> None:
    assert_input_error(write(tmp_path, "empty.jpg", b""), "empty")
    assert_input_error(
        write(tmp_path, "text.jpg", b"not an image at all"), "cannot decode", "b'not an i"
    )
    with pytest.raises(InputError, match="cannot decode"):
        image_size(tmp_path / "text.jpg")


def test_truncated_jpeg_is_refused(tmp_path: Path, gradient_bgr: U8) -> None:
    data = encode(gradient_bgr, ".jpg")
    scan = data.index(b"\xff\xda")
    for cut in (len(data) - 2, len(data) - 1, (scan + len(data)) // 2, scan + 5, 40):
        path = write(tmp_path, f"cut{cut}.jpg", data[:cut])
        assert_input_error(path, "truncated JPEG", "0xFFD9")
    # The reason for the check: OpenCV alone decodes the half file and only warns.
    half = cv2.imread(str(tmp_path / f"cut{(scan + len(data)) // 2}.jpg"))
    assert half is not None and half.shape == (24, 40, 3)


def test_eoi_inside_an_exif_thumbnail_does_not_count(tmp_path: Path, gradient_bgr: U8) -> None:
    thumbnail = encode(gradient_bgr[:8, :8], ".jpg")  # ends with its own FFD9
    data = with_app1(encode(gradient_bgr, ".jpg"), b"Exif\x00\x00" + exif_tiff(1) + thumbnail)
    assert_input_error(write(tmp_path, "thumb.jpg", data[:-10]), "truncated JPEG")


def test_bytes_after_eoi_are_allowed(tmp_path: Path, gradient_bgr: U8) -> None:
    data = encode(gradient_bgr, ".jpg") + b"\x00trailing junk\xff\xd8"
    check_matches_reference(write(tmp_path, "tail.jpg", data))


def test_truncated_png_is_refused(tmp_path: Path, gradient_bgr: U8) -> None:
    data = encode(gradient_bgr, ".png")
    idat = data.index(b"IDAT")
    for cut in (len(data) - 1, len(data) - 12, idat + 10):
        assert_input_error(write(tmp_path, f"cut{cut}.png", data[:cut]), "truncated PNG")


# --- resize -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((480, 640, 3), (300, 300)),
        ((37, 53, 3), (300, 300)),
        ((300, 300, 3), (300, 300)),
        ((1, 1, 3), (7, 5)),
        ((123, 77), (64, 200)),
        ((50, 60, 4), (33, 44)),
    ],
)
def test_resize_equals_cv2_resize(shape: tuple[int, ...], size: tuple[int, int]) -> None:
    image = np.random.default_rng(len(shape) * size[0]).integers(0, 256, shape, dtype=np.uint8)
    out = resize_bilinear(image, size)
    expected = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    assert out.dtype == np.uint8 and out.shape == expected.shape
    assert out.tobytes() == expected.tobytes()
    assert out.shape[:2] == (size[1], size[0])  # size is (width, height)


def test_resize_accepts_views_and_float(gradient_bgr: U8) -> None:
    view = gradient_bgr[..., ::-1]  # negative stride, as a BGR<->RGB slice gives
    expected = cv2.resize(view.copy(), (300, 300), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(resize_bilinear(view, (300, 300)), expected)
    floats = gradient_bgr.astype(np.float32) / 7
    expected_f = cv2.resize(floats, (30, 50), interpolation=cv2.INTER_LINEAR)
    assert resize_bilinear(floats, (30, 50)).tobytes() == expected_f.tobytes()


def test_resize_rejects_bad_arguments(gradient_bgr: U8) -> None:
    with pytest.raises(ValueError, match=r"expected a positive \(width, height\), got \(0, 300\)"):
        resize_bilinear(gradient_bgr, (0, 300))
    with pytest.raises(ValueError, match=r"got \(0, 4, 3\)"):
        resize_bilinear(np.zeros((0, 4, 3), np.uint8), (300, 300))


# --- real images --------------------------------------------------------------------------


def test_every_real_image_decodes_like_opencv(shared_dir: Path) -> None:
    mismatched = []
    for path in real_images(shared_dir):
        rgb = decode_rgb(path)
        reference = reference_rgb(path)
        if not np.array_equal(rgb, reference) or image_size(path) != (rgb.shape[1], rgb.shape[0]):
            mismatched.append(path.name)
        with path.open("rb") as f:  # real JPEGs are sized from the header
            if images._jpeg_header_size(f) is None:
                mismatched.append(f"{path.name} (header not parsed)")
        expected = cv2.resize(reference, (300, 300), interpolation=cv2.INTER_LINEAR)
        if resize_bilinear(rgb, (300, 300)).tobytes() != expected.tobytes():
            mismatched.append(f"{path.name} (resize)")
    assert mismatched == []
