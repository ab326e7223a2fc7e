"""Shared fixtures: paths to the golden vectors and to the shared real recordings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "firmware_specs" / "vectors"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def kardia_vectors() -> dict:
    """The KardiaMobile golden vectors."""
    return json.loads((VECTORS / "kardiamobile.json").read_text())


MISSING_DATA = (
    f"the shared recordings are not at {SHARED_DATA}: public PhysioNet records (MIT-BIH Arrhythmia,"
    " the CinC 2017 KardiaMobile recordings, MIT-BIH Noise Stress Test) that the analysis and replay"
    " tests read; scripts/fetch-data.sh downloads them there (needs internet and wfdb)")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, read-only real recordings. Without them the tests that need them skip, saying
    where they come from; where WG_REQUIRE_SHARED_DATA=1 (CI sets it) their absence is an error."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("WG_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(MISSING_DATA, pytrace=False)
        pytest.skip(MISSING_DATA)
    return SHARED_DATA


def pytest_addoption(parser):
    """Hardware-in-the-loop: real device addresses instead of simulators (tests/test_hil.py)."""
    group = parser.getgroup("hil", "hardware in the loop")
    group.addoption("--hil-kardia", default=os.environ.get("WG_HIL_KARDIA"),
                    help="a real KardiaMobile-protocol device, e.g. serial:///dev/ttyUSB0 (env WG_HIL_KARDIA)")
    group.addoption("--hil-up", default=os.environ.get("WG_HIL_UP"),
                    help="a real UP-class band over BLE, e.g. ble://any?name=UP3-A1B2&adapter=hci0 (env WG_HIL_UP)")
    group.addoption("--hil-seconds", type=float, default=float(os.environ.get("WG_HIL_SECONDS", "40")),
                    help="how long to record from the real device (default 40 s; env WG_HIL_SECONDS)")


@pytest.fixture
def hil_up(request) -> str:
    """The real band's BLE address; the HIL tests skip without one."""
    address = request.config.getoption("--hil-up")
    if not address:
        pytest.skip("no real band: give --hil-up ble://any?name=UP3-XXXX (or WG_HIL_UP) to run against one")
    return address


@pytest.fixture
def hil_kardia(request) -> str:
    """The real KardiaMobile's transport address; the HIL tests skip without one."""
    address = request.config.getoption("--hil-kardia")
    if not address:
        pytest.skip("no real device: give --hil-kardia serial:///dev/ttyUSB0 (or WG_HIL_KARDIA) to run against one")
    return address
