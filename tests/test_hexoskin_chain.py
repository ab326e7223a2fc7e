"""The shirt simulator's CLI on a pty -> the gateway's Hexoskin driver -> the hub emulator.

The Hexoskin API emulator and uplink are the rest of issue 4; until then the shirt's ECG
reaches the hub as ECG summaries, analysed at 256 Hz, and every channel is counted in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx

from gateway.config import load
from gateway.daemon import Gateway
from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer
from tests.chain import HUB_TOKEN


async def test_shirt_to_gateway_to_hub(tmp_path):
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials(humanapi_tokens=[HUB_TOKEN]))) as server:
        link = tmp_path / "shirt"
        sim = subprocess.Popen([sys.executable, "-m", "simulators.cli", "device", "hexoskin", "--link", str(link),
                                "--duration", "60", "--speed", "15", "--heart-rate", "72", "--breathing-rate", "14",
                                "--activity", "walk", "--seed", "5", "--quiet", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not link.exists():
            assert time.monotonic() < deadline and sim.poll() is None, sim.stderr.read()
            time.sleep(0.05)
        cfg = tmp_path / "g.toml"
        cfg.write_text(f"""
[spool]
path = "{tmp_path / 'spool.db'}"
[status]
enabled = false
[uplinks.hub]
type = "humanapi"
base_url = "{server.url}/humanapi"
token = "{HUB_TOKEN}"
[[devices]]
name = "shirt"
driver = "hexoskin"
transport = "serial://{link}"
uplinks = ["hub"]
recording_seconds = 30
""")
        gateway = Gateway(load(cfg))
        await gateway.start()
        out, err = await __import__("asyncio").to_thread(sim.communicate, timeout=60)
        assert sim.returncode == 0, err
        summary = json.loads(out.splitlines()[-1])
        runner = gateway.devices[0]
        deadline = time.monotonic() + 20
        while runner.transport.counters["bytes"] < summary["bytes"]:
            assert time.monotonic() < deadline
            await __import__("asyncio").sleep(0.05)
        counters = dict(runner.driver.counters)
        await gateway.stop(drain_timeout=20)
        hub = httpx.get(server.url + "/humanapi/v1/human/ecg", headers={"Authorization": f"Bearer {HUB_TOKEN}"}).json()
    assert summary["session_id"] and summary["signal_seconds"] == 60
    assert counters["samples"] == 60 * (256 + 2 * 128 + 3 * 64)  # ECG, both bands, three axes
    assert not counters.get("gaps") and not any(k.startswith("bad_frame") or k == "crc_errors" for k in counters)
    assert sorted((h["duration"], h["sampleRate"]) for h in hub) == [(30.0, 256), (30.0, 256)]
    assert {(h["determination"], h["heartRate"]) for h in hub} == {("normal", 72)}
    assert {h["source"] for h in hub} == {"hexoskin"}
