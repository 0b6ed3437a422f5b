"""Shared fixtures. Real data comes from ``$EVALKIT_DATA`` (the team's shared/ folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared/ folder. Unset outside CI: the real-data tests skip and say why;
    in CI (CI=true) a missing folder is a failure, never a silent skip."""
    value = os.environ.get("EVALKIT_DATA")
    if not value:
        if os.environ.get("CI"):
            pytest.fail("EVALKIT_DATA is not set in CI; .ci/run must point it at ../shared")
        pytest.skip("real-data test: set EVALKIT_DATA to the team's shared/ folder to run it")
    path = Path(value)
    if not (path / "data").is_dir():
        pytest.fail(f"EVALKIT_DATA={value} has no data/ folder")
    return path
