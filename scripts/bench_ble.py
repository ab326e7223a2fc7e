#!/usr/bin/env python3
"""Throughput of the BLE path with no radio: the simulators' GATT peripheral -> BlueZ's D-Bus API
(BlueZoo on a private bus, as in the tests) -> the gateway's bleak transport.

Writes `--kbytes` of frame bytes into a BlePort as fast as it takes them and times their arrival
at a BleTransport; prints bytes/s and notifications/s: 20-byte notifications (ATT MTU 23) sent as
Value changes, or with `--mtu N` notifications of N - 3 bytes through BlueZ's AcquireNotify socket.
Needs the test extra (bluezoo) and dbus-daemon, which scripts/test.sh installs.

    python scripts/bench_ble.py [--kbytes 200] [--mtu 247]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.protocols import hexoskin as hx  # noqa: E402
from gateway.transports.ble import BleTransport  # noqa: E402
from simulators.devices.ble_front import BlePort  # noqa: E402
from tests.ble import CENTRAL_ADAPTER, PERIPHERAL_ADAPTER, private_bluez  # noqa: E402


async def measure(n_bytes: int, mtu: int | None = None) -> dict:
    """Seconds for n_bytes from the peripheral's writer to the transport's stream."""
    port = await asyncio.to_thread(BlePort, hx.BLE_SERVICE_UUID, hx.BLE_FRAMES_UUID, "WG-BENCH", PERIPHERAL_ADAPTER,
                                   mtu=mtu or 23, acquire_mtu=mtu is not None)
    transport = BleTransport("any", [hx.BLE_FRAMES_UUID], adapter=CENTRAL_ADAPTER, name="WG-BENCH")
    got = 0

    async def read() -> None:
        nonlocal got
        async for item in transport.stream():
            if isinstance(item, bytes):
                got += len(item)

    task = asyncio.create_task(read())
    stop = threading.Event()
    try:
        if not await asyncio.to_thread(port.wait_for_reader, stop, 60.0):
            raise RuntimeError("the transport never subscribed")
        t = time.perf_counter()
        await asyncio.to_thread(port.write, bytes(n_bytes), stop)
        while got < n_bytes:
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - t
    finally:
        await transport.close()  # the stream ends once the link is released
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(port.close)
    return {"bytes": n_bytes, "seconds": seconds, "bytes_per_s": n_bytes / seconds,
            "notifications_per_s": port.counters["notifications"] / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kbytes", type=int, default=200, help="kilobytes to send (default 200)")
    parser.add_argument("--mtu", type=int, help="the peripheral's ATT MTU through AcquireNotify (default: 23, Value changes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, private_bluez(Path(tmp)) as address:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
        r = asyncio.run(measure(args.kbytes * 1000, args.mtu))
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print(f"{r['bytes']} bytes in {r['seconds']:.2f} s: {r['bytes_per_s'] / 1000:.1f} kB/s,"
              f" {r['notifications_per_s']:,.0f} notifications/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
