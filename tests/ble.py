"""A private BlueZ for BLE tests: dbus-daemon on a private bus and BlueZoo serving BlueZ's D-Bus API.

Three virtual adapters that see each other: hci0 and hci2 (simulated peripherals', one
advertisement each) and hci1 (the gateway's). bleak and the simulator's BLE front find the bus through DBUS_SYSTEM_BUS_ADDRESS,
exactly as they find the real BlueZ on a Raspberry Pi.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PERIPHERAL_ADAPTER, CENTRAL_ADAPTER, SECOND_PERIPHERAL_ADAPTER = "hci0", "hci1", "hci2"
PERIPHERAL_ADDRESS, CENTRAL_ADDRESS, SECOND_PERIPHERAL_ADDRESS = "00:11:22:33:44:55", "00:AA:BB:CC:DD:EE", \
    "00:22:33:44:55:66"


def bluezoo_command() -> list[str]:
    """BlueZoo (from the test extra) with the link-loss behaviour of BlueZ added (bluezoo_shim.py)."""
    return [sys.executable, str(Path(__file__).with_name("bluezoo_shim.py"))]


@contextmanager
def private_bluez(tmp_path: Path) -> Iterator[str]:
    """Start the bus and BlueZoo; yield the bus address; stop both whatever happens."""
    if shutil.which("dbus-daemon") is None:
        raise RuntimeError("dbus-daemon is missing: scripts/test.sh installs it (apt package dbus)")
    daemon = subprocess.run(["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1"],
                            capture_output=True, text=True, check=True)
    address, pid = daemon.stdout.split()[:2]
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address}
    log = open(tmp_path / "bluezoo.log", "w")
    zoo = subprocess.Popen([*bluezoo_command(), "--auto-enable", "--scan-interval", "1",
                            "-a", PERIPHERAL_ADDRESS, "-a", CENTRAL_ADDRESS, "-a", SECOND_PERIPHERAL_ADDRESS],
                           env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while "adapter[2]" not in (tmp_path / "bluezoo.log").read_text():
            if zoo.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("BlueZoo did not start: " + (tmp_path / "bluezoo.log").read_text()[-2000:])
            time.sleep(0.05)
        yield address
    finally:
        zoo.terminate()
        try:
            zoo.wait(timeout=5)
        except subprocess.TimeoutExpired:
            zoo.kill()
        log.close()
        os.kill(int(pid), signal.SIGTERM)


async def find_peripheral(address: str = PERIPHERAL_ADDRESS, tries: int = 20):
    """The simulated peripheral as the gateway's adapter sees it (scanning until it advertises)."""
    from bleak import BleakScanner

    for _ in range(tries):
        device = await BleakScanner.find_device_by_address(address, timeout=2, bluez={"adapter": CENTRAL_ADAPTER})
        if device:
            return device
    raise AssertionError(f"{address} was not seen on {CENTRAL_ADAPTER}")
