"""Adding a decoder is one class and one registration: no edit to the pipeline or config.

The decoder here is a trivial one (the deployed form under another name, its boxes and
scores taken as they are); a real run picks it from the configuration by name and scores
exactly as the built-in ``decoded`` decoder does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import pytest

from evalkit.api import run
from evalkit.errors import InputError
from evalkit.pipeline.config import RunConfig, VariantConfig, check_values
from evalkit.postprocess.decoders import DECODERS, DecodedDecoder
from evalkit.registry import UnknownNameError


# ---- the whole plug-in: these five lines and the registration in the fixture
@dataclass(frozen=True)
class PassThroughDecoder(DecodedDecoder):
    """Scores and corners computed in the model, under a name of its own."""

    name: ClassVar[str] = "pass-through"


@pytest.fixture
def registered() -> Iterator[None]:
    DECODERS.add(PassThroughDecoder.name, PassThroughDecoder)
    try:
        yield
    finally:
        DECODERS.remove(PassThroughDecoder.name)


def test_a_registered_decoder_runs_end_to_end(
    registered: None, small_set: tuple[Path, RunConfig]
) -> None:
    tmp, config = small_set
    deployed = str(tmp / "models" / "deployed.onnx")
    config = replace(
        config,
        variants={
            "builtin": VariantConfig(model=deployed, decoder="decoded"),
            "plugin": VariantConfig(model=deployed, decoder="pass-through"),
        },
    )
    check_values(config, "c.yaml")  # the configuration knows it by name
    record = run(config, log=lambda _: None).record
    assert record.variants["plugin"].decoder_name == "pass-through"
    for protocol in config.protocols:
        assert record.ap50("plugin", protocol) == record.ap50("builtin", protocol)
        assert record.ap50("plugin", protocol) > 0.5


def test_an_unregistered_decoder_is_refused_at_load_with_the_near_match(registered: None) -> None:
    config = RunConfig(variants={"v": VariantConfig(model="m.onnx", decoder="pass-thru")})
    with pytest.raises(InputError, match=r"variants\.v\.decoder: unknown decoder 'pass-thru' "
                       r"\(did you mean 'pass-through'\?\)"):  # fmt: skip
        check_values(config, "c.yaml")


def test_registry_remove_and_lazy_entries() -> None:
    with pytest.raises(UnknownNameError, match="unknown decoder 'pass-through'"):
        DECODERS.remove("pass-through")  # not registered outside the fixture
    DECODERS.add_lazy("lazy-decoded", "evalkit.postprocess.decoders:DecodedDecoder")
    try:
        assert "lazy-decoded" in DECODERS and "lazy-decoded" in DECODERS.names()
        assert DECODERS.get("lazy-decoded") is DecodedDecoder
        with pytest.raises(ValueError, match="already registered"):
            DECODERS.add_lazy("lazy-decoded", "x:y")
    finally:
        DECODERS.remove("lazy-decoded")
    with pytest.raises(ValueError, match="'module:attribute'"):
        DECODERS.add_lazy("bad", "no-colon")
