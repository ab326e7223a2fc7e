"""Shared fixtures: paths to the golden vectors and to the shared real recordings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "firmware_specs" / "vectors"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def kardia_vectors() -> dict:
    """The KardiaMobile golden vectors."""
    return json.loads((VECTORS / "kardiamobile.json").read_text())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, read-only real recordings; its absence is an error, not a skip."""
    assert SHARED_DATA.is_dir(), f"expected the shared recordings at {SHARED_DATA}"
    return SHARED_DATA
