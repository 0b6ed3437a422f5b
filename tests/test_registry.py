"""The one registry: duplicates rejected, unknown names answered with the known ones."""

from __future__ import annotations

import pytest

from evalkit.metrics import PROTOCOLS
from evalkit.registry import Registry, UnknownNameError


def test_register_and_get() -> None:
    reg: Registry[int] = Registry("widget")

    @reg.register("one")
    def _one() -> int:
        return 1

    reg.add("two", 2)  # type: ignore[arg-type]
    assert reg.get("two") == 2
    assert reg.names() == ("one", "two")
    assert "one" in reg and len(reg) == 2


def test_duplicate_rejected() -> None:
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", 2)


def test_unknown_name_suggests_near_match() -> None:
    with pytest.raises(UnknownNameError) as info:
        PROTOCOLS.get("voc2007")
    message = str(info.value)
    assert "unknown protocol 'voc2007'" in message
    assert "coco, st, voc07, voc07-pyfrcnn, voc12, voc12-pyfrcnn" in message
    assert "did you mean 'voc07'?" in message


def test_the_protocols_registered() -> None:
    # The four of reference-pipeline.md section 5, and py-faster-rcnn's VOC variants.
    assert set(PROTOCOLS.names()) == {
        *("coco", "st", "voc07", "voc12"),
        *("voc07-pyfrcnn", "voc12-pyfrcnn"),
    }
