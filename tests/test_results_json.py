"""The compiled results-file reader (evalkit/metrics/_results_json.cpp) against Python's json.

It reads only the plain form and must give exactly the doubles ``json.loads`` gives (then
numpy's float64, as the general path converts them), bit for bit; on anything else it
returns None and the general path decides. Both paths must end in the same detections, or
the same error.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalkit.datasets.coco import parse_coco_ground_truth
from evalkit.errors import InputError
from evalkit.metrics import _results_json
from evalkit.metrics.results_file import exact_duplicates, load_coco_results, parse_coco_results
from evalkit.types import Detections

GT = parse_coco_ground_truth(
    {
        "images": [{"id": i, "width": 640, "height": 480} for i in (3, 7, 11)],
        "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 90)],
        "annotations": [
            {"id": 1, "image_id": 3, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500},
        ],
    }
)

# Spellings where a parser can round differently from a correctly rounding one, or read
# what JSON does not allow.
ADVERSARIAL = (
    "0",
    "-0",
    "0.0",
    "-0.0",
    "0e0",
    "-0e-5",
    "1",
    "1.0",
    "1e0",
    "1E0",
    "1e+0",
    "1e-0",
    "1.5e+300",
    "0.1",
    "0.30000000000000004",
    "0.1000000000000000055511151231257827021181583404541015625",
    "3.14159265358979323846264338327950288419716939937510582097494459",
    "9007199254740993",  # 2**53 + 1: a tie, rounds to even
    "9007199254740995",
    "9007199254740993.0000000000000000000001",
    "123456789012345678901234567890",
    "2.2250738585072011e-308",  # just below the smallest normal
    "2.2250738585072012e-308",
    "4.9406564584124654e-324",  # the smallest subnormal
    "5e-324",
    "2.4703282292062328e-324",  # just above half of it: rounds up
    "1.7976931348623157e308",  # the largest double
    "1.7976931348623158e308",
    "179769313486231570000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0." + "0" * 330 + "1",  # underflows to 0
    "1" + "0" * 400,  # an integer no double holds
    "1e400",
    "-1e400",
    "1.7976931348623159e308",  # rounds past the largest double: inf
    "12.5e-1",
    "100e-2",
    "0.000001e6",
)

NOT_JSON_NUMBERS = ("01", "1.", ".5", "+1", "1e", "1e+", "-", "--1", "0x10", "NaN", "Infinity")


def _record(image_id: Any = 3, category_id: Any = 1, bbox: Any = None, score: Any = 0.5) -> str:
    box = "[10, 20, 30, 40]" if bbox is None else bbox
    return (
        f'{{"image_id": {image_id}, "category_id": {category_id}, "bbox": {box}, "score": {score}}}'
    )


def _bits(values: Any) -> list[int]:
    return [struct.unpack("<Q", struct.pack("<d", v))[0] for v in np.ravel(values).tolist()]


def _general(text: str) -> tuple[np.ndarray, np.ndarray] | None:
    """What the general path makes of the numbers: json, then each one's float() (None when
    a number is beyond a double, which the general path refuses)."""
    records = json.loads(text)
    try:
        boxes = np.array([[float(v) for v in r["bbox"]] for r in records], np.float64)
        scores = np.array([float(r["score"]) for r in records], np.float64)
    except OverflowError:
        return None
    return boxes, scores


@pytest.mark.parametrize("number", ADVERSARIAL)
def test_adversarial_numbers_give_json_doubles(number: str) -> None:
    text = f"[{_record(bbox=f'[{number}, 1, 2, 3]', score=number)}]"
    columns = _results_json.columns(text.encode())
    expected = _general(text)
    if columns is None:  # left to the general path: beyond a double, or an underflow
        assert (
            expected is None
            or not np.isfinite(expected[0]).all()
            or expected[0][0, 0] == 0.0
            or len(number) > 300  # from_chars leaves integers of 300+ digits to the general path
        ), number
        return
    assert expected is not None
    boxes = np.frombuffer(columns[2], np.float64).reshape(-1, 4)
    scores = np.frombuffer(columns[3], np.float64)
    assert _bits(boxes) == _bits(expected[0]), number
    assert _bits(scores) == _bits(expected[1]), number


@pytest.mark.parametrize("number", ADVERSARIAL)
def test_adversarial_numbers_load_as_the_general_path_says(number: str, tmp_path: Path) -> None:
    """End to end: the same detections, or the same refusal, as from records json parsed."""
    text = f"[{_record(bbox=f'[5, 5, {number}, 3]', score=number)}]"
    path = tmp_path / "dets.json"
    path.write_text(text)
    try:
        expected = parse_coco_results(json.loads(text), GT, path)
    except InputError as exc:  # out of double range: refused the same way
        with pytest.raises(InputError) as caught:
            load_coco_results(path, GT)
        assert str(caught.value) == str(exc)
        return
    got = load_coco_results(path, GT)
    assert _bits(got.boxes_xywh_px) == _bits(expected.boxes_xywh_px)
    assert _bits(got.scores) == _bits(expected.scores)


def test_random_doubles_in_many_spellings() -> None:
    rng = np.random.default_rng(17)
    raw = rng.integers(0, 2**63, 4000, dtype=np.uint64) | (
        rng.integers(0, 2, 4000, dtype=np.uint64) << np.uint64(63)
    )
    values = [v for v in raw.view(np.float64).tolist() if np.isfinite(v)]
    values += rng.uniform(-1e4, 1e4, 2000).tolist() + rng.uniform(0, 1, 2000).tolist()
    spellings = (repr, "{:.17g}".format, "{:.25e}".format, "{:.3f}".format, "{:.40g}".format)
    numbers = [spell(v) for i, v in enumerate(values) for spell in spellings[i % 5 : i % 5 + 1]]
    numbers += [str(int(v)) for v in rng.integers(-(10**15), 10**15, 500).tolist()]
    records = [
        _record(bbox=f"[{numbers[i]}, {numbers[i - 1]}, 1, 2]", score=numbers[i - 2])
        for i in range(2, len(numbers))
    ]
    text = "[" + ",".join(records) + "]"
    columns = _results_json.columns(text.encode())
    assert columns is not None
    expected = _general(text)
    assert expected is not None
    assert _bits(np.frombuffer(columns[2], np.float64)) == _bits(expected[0])
    assert _bits(np.frombuffer(columns[3], np.float64)) == _bits(expected[1])


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "{}",
        '"x"',
        f"[{_record()}] x",
        f"[{_record()},]",
        f"[{_record()}",
        '[{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4]}]',  # no score
        '[{"image_id": 3, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1}]',
        '[{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1, "area": 12}]',
        '[{"image\\u005fid": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1}]',
        f"[{_record(image_id='3.0')}]",
        f"[{_record(image_id='1e2')}]",
        f"[{_record(image_id=chr(34) + '3' + chr(34))}]",
        f"[{_record(category_id='true')}]",
        f"[{_record(image_id='12345678901234567890')}]",
        f"[{_record(bbox='[1, 2, 3]')}]",
        f"[{_record(bbox='[1, 2, 3, 4, 5]')}]",
        f"[{_record(bbox='[[1], 2, 3, 4]')}]",
        f"[{_record(score='null')}]",
        f"[{_record(score='[0.5]')}]",
        "\ufeff" + f"[{_record()}]",
        *(f"[{_record(score=n)}]" for n in NOT_JSON_NUMBERS),
    ],
)
def test_anything_but_the_plain_form_goes_to_the_general_path(text: str) -> None:
    assert _results_json.columns(text.encode()) is None


def test_spacing_and_key_order_do_not_matter() -> None:
    plain = '[{"image_id":3,"category_id":1,"bbox":[1.5,2,3,4],"score":0.25}]'
    spaced = (
        '\n [ \t{ "score" : 0.25 ,\r\n "bbox" : [ 1.5 , 2 , 3 , 4 ] , "category_id" : 1 ,'
        ' "image_id" : 3 } ] \n'
    )
    assert _results_json.columns(plain.encode()) == _results_json.columns(spaced.encode())
    assert _results_json.columns(plain.encode()) is not None


def _big_results(n: int, seed: int, indent: int | None) -> str:
    rng = np.random.default_rng(seed)
    records = [
        {
            "image_id": int(rng.choice([3, 7, 11])),
            "category_id": int(rng.choice([1, 2, 90])),
            "bbox": [round(float(v), int(rng.integers(0, 17))) for v in rng.uniform(0, 300, 4)],
            "score": float(rng.uniform()),
        }
        for _ in range(n)
    ]
    return json.dumps(records, indent=indent)


@pytest.mark.parametrize("indent", [None, 1])
def test_large_files_read_in_parts_give_the_same_columns(indent: int | None) -> None:
    text = _big_results(110_000, 3, indent).encode()
    assert len(text) > 2 * (4 << 20)  # big enough to be split in parts
    whole = _results_json.columns(text, 1)
    assert whole is not None
    for threads in (2, 3, 4):
        assert _results_json.columns(text, threads) == whole
    expected = _general(text.decode())
    assert expected is not None
    assert _bits(np.frombuffer(whole[2], np.float64)) == _bits(expected[0])


def test_a_part_that_is_not_plain_sends_the_whole_file_to_the_general_path() -> None:
    records = json.loads(_big_results(110_000, 4, None))
    records[-5]["extra"] = 1  # in the last part
    text = json.dumps(records).encode()
    for threads in (1, 2, 4):
        assert _results_json.columns(text, threads) is None


def test_both_paths_give_identical_detections(tmp_path: Path) -> None:
    text = _big_results(3000, 5, None)
    path = tmp_path / "dets.json"
    path.write_text(text)
    fast = load_coco_results(path, GT)
    general = parse_coco_results(json.loads(text), GT, path)
    for name in ("image_index", "category_index", "boxes_xywh_px", "scores"):
        assert np.array_equal(getattr(fast, name), getattr(general, name)), name


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_record(image_id=4), "image_id 4 is not an image"),
        (_record(category_id=5), "category_id 5 is not a category"),
        (_record(bbox="[1, 2, -3, 4]"), "negative width"),
        (_record(score="1e400"), "score must be finite"),
    ],
)
def test_plain_files_with_a_bad_record_are_named_by_the_general_path(
    record: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "dets.json"
    path.write_text(f"[{_record()}, {record}]")
    with pytest.raises(InputError, match=message) as caught:
        load_coco_results(path, GT)
    assert "record 1" in str(caught.value)


def test_exact_duplicates_count_as_numpy_unique_does() -> None:
    """The hashed count equals rows minus numpy.unique's rows (-0.0 equal to 0.0)."""
    rng = np.random.default_rng(11)
    n = 20_000
    image = rng.integers(0, 3, n)
    category = rng.integers(0, 3, n)
    boxes = rng.choice([0.0, -0.0, 1.5, 2.0], (n, 4))
    scores = rng.choice([0.0, -0.0, 0.5, 0.25, 0.125], n)
    dets = Detections(image, category, boxes, scores)
    rows = np.column_stack([image.astype(float), category.astype(float), boxes, scores])
    expected = n - len(np.unique(rows, axis=0))
    assert 0 < expected < n
    assert exact_duplicates(dets) == expected
    distinct = Detections(np.arange(n), np.zeros(n, np.int64), boxes, scores)
    assert exact_duplicates(distinct) == 0
