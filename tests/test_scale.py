"""One gateway process, many ports: 1,100 pseudo-terminals read to the last byte, descriptors past 1024 included."""

from __future__ import annotations

import asyncio
import json
import resource
import threading

import numpy as np
import pytest

from gateway.config import load
from gateway.daemon import Gateway
from gateway.spool import Spool
from simulators.devices.fleet import Fleet, gateway_config
from tests.chain import until

N = 1100
SECONDS = 4.0


@pytest.fixture
def descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 3 * N + 256  # the fleet's master and slave, the gateway's port, per device
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.fail(f"this test needs {need} file descriptors; the hard limit here is {hard} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.slow
async def test_eleven_hundred_ports_in_one_gateway_read_every_byte_and_spool_every_sample(tmp_path, descriptors):
    fleet = await asyncio.to_thread(Fleet, N, seed=11, speed=1.0)
    cfg = tmp_path / "gateway.toml"
    # Nothing listens at the uplink: what the gateway made stays in its spool, to be checked there.
    cfg.write_text(gateway_config(fleet, kardia_url="http://127.0.0.1:9/kardia", api_key="k", patients=["p"],
                                  spool=str(tmp_path / "spool.db"), status_listen="127.0.0.1:0",
                                  recording_seconds=30).replace('listen = "127.0.0.1:0"', "enabled = false"))
    gateway = Gateway(load(cfg))
    await gateway.start()
    stats_box = {}
    try:
        ports = [r.transport for r in gateway.devices]
        await until(lambda: all(t.connected for t in ports), lambda: f"{sum(t.connected for t in ports)} open", 60)
        assert max(t._fd for t in ports) > 1024  # beyond select()'s reach: epoll through the event loop
        thread = threading.Thread(target=lambda: stats_box.update(s=fleet.run(duration=SECONDS)))
        thread.start()
        await asyncio.to_thread(thread.join, 120)
        assert stats_box["s"].streaming == N
        sent = fleet.stats.bytes // N  # every device sends the same number of bytes
        await until(lambda: all(t.counters["bytes"] == sent for t in ports) and not any(t.inbox.items for t in ports),
                    lambda: f"{sum(t.counters['bytes'] == sent for t in ports)} of {N} ports read to the end", 120)
        assert await asyncio.to_thread(fleet.drain, 10) == 0
        counters = [dict(r.driver.counters) for r in gateway.devices]
    finally:
        await gateway.stop(drain_timeout=0)  # cuts every partial window into the spool
        await asyncio.to_thread(fleet.close)
    per_device = int(SECONDS * 300)
    assert all(c["samples"] == per_device and not c.get("gaps") and not c.get("crc_errors") for c in counters)
    spool = Spool(tmp_path / "spool.db", readonly=True)
    try:
        packages = spool.due("kardia", now=1e12, limit=10 * N)
        assert spool.recover() == []
    finally:
        spool.close()
    by_serial = {}
    for p in packages:
        by_serial.setdefault(p.stream.split("/")[0], []).append((p.first, json.loads(p.body)))
    assert len(by_serial) == N
    for i, serial in enumerate(fleet.serials):
        got = sorted(by_serial[serial], key=lambda x: x[0])
        assert got[0][0] == 0
        raw = np.concatenate([b["data"]["raw"]["samples"]["leadI"] for _, b in got])
        np.testing.assert_array_equal(raw, fleet.signal.expected(i, 0, per_device))
