"""Hardware in the loop: the real gateway against a real device instead of a simulator.

    scripts/test.sh tests/test_hil.py --hil-kardia serial:///dev/ttyUSB0 [--hil-seconds 60]
    scripts/test.sh tests/test_hil.py --hil-up "ble://any?name=UP3-A1B2&adapter=hci0"

Nothing is known of the signal a real device sends, so these tests check what can be checked
without it: framing (no bad frames), the device's announced rate against the wall clock,
timestamps (recordedAt follows the device counter and lies near the wall clock), gaps, and
upload to the emulator with every sample accounted for. Without --hil-kardia / --hil-up they skip;
the last tests run them against this project's simulators (on a pseudo-terminal, and as a BLE
peripheral on BlueZoo), as a second computer on a USB-serial cable or a second Pi with a
Bluetooth adapter would, so the HIL paths themselves are tested in CI.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime

from gateway.config import load
from gateway.daemon import Gateway
from gateway.drivers.base import bad_frames
from gateway.spool import Spool
from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer
from tests.ble import CENTRAL_ADAPTER, PERIPHERAL_ADAPTER, private_bluez
from tests.chain import API_KEY, create_patient, recordings, start_simulator

RATE_TOLERANCE = 0.02  # a device's crystal against the host clock, over tens of seconds
START_WAIT_S = 30.0  # a device may need a while to be found and to start streaming


async def record(runner, counter: str, seconds: float) -> tuple[float, int]:
    """Wait for the device's first data, then read for `seconds`: (wall seconds, `counter` counted in them)."""
    first = None
    t_end = time.monotonic() + seconds + START_WAIT_S
    while time.monotonic() < t_end:
        await asyncio.sleep(0.2)
        if first is None and runner.driver.counters[counter] > 0:
            first = (time.monotonic(), runner.driver.counters[counter])
            t_end = time.monotonic() + seconds
    assert first is not None, f"nothing ({counter}) from {runner.transport.address} in {seconds + START_WAIT_S:.0f} s"
    return time.monotonic() - first[0], runner.driver.counters[counter] - first[1]


async def test_real_kardiamobile_frames_rate_time_gaps_upload(hil_kardia, request, tmp_path):
    seconds = request.config.getoption("--hil-seconds")
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY]))) as server:
        url = server.url + "/kardia"
        patient = await asyncio.to_thread(create_patient, url)
        cfg = tmp_path / "hil.toml"
        cfg.write_text(f"""
[spool]
path = "{tmp_path / 'spool.db'}"
[status]
enabled = false
[uplinks.kardia]
type = "kardia"
base_url = "{url}"
api_key = "{API_KEY}"
[[devices]]
name = "hil-kardia"
driver = "kardiamobile"
transport = "{hil_kardia}"
uplinks = ["kardia"]
patient_id = "{patient}"
recording_seconds = 10
""")
        gateway = Gateway(load(cfg))
        await gateway.start()
        runner = gateway.devices[0]
        wall, received = await record(runner, "samples", seconds)
        infos = [st.info for st in runner.pipeline.streams.values()]
        await gateway.stop(drain_timeout=30)
        # After the stop: what arrived between the recording's end and the stop was read and uploaded too.
        counters = dict(runner.driver.counters)
        streams = runner.pipeline.status()
        recs = await asyncio.to_thread(recordings, url, patient)
    spool = Spool(tmp_path / "spool.db")
    stats, gaps = spool.stats(), spool.gaps()
    spool.close()

    # Framing: every frame the device sent was well formed.
    bad = {k: v for k, v in counters.items() if k in ("crc_errors", "bad_headers", "truncated_frames",
                                                       "unsupported_version") or k.startswith("bad_frame:")}
    assert not any(bad.values()), bad
    # Rate: the device announced a rate; its samples arrive at that rate by the host's clock.
    fs = infos[0].channels["leadI"].sampling_frequency
    assert abs(received / wall - fs) <= RATE_TOLERANCE * fs, (received, wall, fs)
    # Gaps: none recorded, none lost inside the device's own counters.
    assert not gaps and not counters.get("lost_samples") and not counters.get("lost_frames")
    # Upload: everything read was delivered, in recordings of the configured length.
    assert stats["uplinks"]["kardia"]["pending"] == 0 and stats["dead_letters"] == 0
    n_uploaded = sum(len(r["data"]["raw"]["samples"]["leadI"]) for r in recs)
    assert n_uploaded == sum(s["samples"] for s in streams) == counters["samples"]
    # Time: recordings follow one another exactly by the device counter, and lie near the wall clock.
    starts = [datetime.fromisoformat(r["recordedAt"]).timestamp() for r in recs]
    durations = [len(r["data"]["raw"]["samples"]["leadI"]) / fs for r in recs]
    for a, b, d in zip(starts, starts[1:], durations):
        assert abs((b - a) - d) < 0.005, (a, b, d)
    assert abs(starts[-1] + durations[-1] - time.time()) < 60


def test_hil_mode_against_the_simulator_on_a_pty(tmp_path):
    """The HIL test above, run as a user would run it, with the simulator standing in for the device."""
    sim = start_simulator(duration=60, speed=1.0, seed=41, link=tmp_path / "device", start=True)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WG_HIL_")}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__ + "::"
                               "test_real_kardiamobile_frames_rate_time_gaps_upload",
                               "--hil-kardia", f"serial://{tmp_path / 'device'}", "--hil-seconds", "12"],
                              capture_output=True, text=True, timeout=180, env=env,
                              cwd=os.path.dirname(os.path.dirname(__file__)))
    finally:
        sim.stop.set()
        sim.port.close()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout


async def test_real_band_values_rate_readings_upload(hil_up, request, tmp_path):
    """A real UP-class band (or a second Pi serving `wearable-sim device up --ble`): every value well
    formed, a heart rate a second by the host's clock, and every window and reading delivered once."""
    from tests.test_upband_chain import gateway_config, up_events

    seconds = request.config.getoption("--hil-seconds")
    with BackgroundServer(build_app(tmp_path / "cloud")) as server:
        gateway = Gateway(gateway_config(tmp_path, server.url, transport=hil_up, recording_seconds=10))
        await gateway.start()
        runner = gateway.devices[0]
        wall, received = await record(runner, "heart_rates", seconds)
        counters, pipeline = dict(runner.driver.counters), dict(runner.pipeline.counters)
        devices = {st.info.device for st in runner.pipeline.streams.values()}
        await gateway.stop(drain_timeout=30)
        events = await asyncio.to_thread(up_events, server.url)
    spool = Spool(tmp_path / "spool.db")
    stats = spool.stats()
    spool.close()
    assert bad_frames(counters) == 0 and not counters.get("unknown_characteristic"), counters
    assert devices and "upband-unknown" not in devices  # the band said who it is
    assert abs(received / wall - 1.0) <= 0.1, (received, wall)  # the Heart Rate Service's once a second
    assert stats["dead_letters"] == 0 and all(u["pending"] == 0 for u in stats["uplinks"].values())
    # Every UP package acknowledged is one event there, none twice; readings all reached UP.
    assert len(events) == stats["uplinks"]["up"]["acked"] > 0
    assert len({(e["title"], e["time_created"]) for e in events}) == len(events)
    readings = sum(v for k, v in counters.items() if k.startswith("readings:"))
    assert len([e for e in events if e["title"] != "Heart rate"]) == readings == pipeline.get("readings", 0)


def test_hil_band_mode_against_the_simulator_over_ble(tmp_path):
    """The band HIL test as a user runs it, with the band simulator on BlueZoo standing in for the band."""
    with private_bluez(tmp_path) as bus:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WG_HIL_")}
        env["DBUS_SYSTEM_BUS_ADDRESS"] = bus
        sim = subprocess.Popen([sys.executable, "-m", "simulators.cli", "device", "up", "--ble", "--adapter",
                                PERIPHERAL_ADAPTER, "--start-time", "2026-11-23T07:59:56+01:00", "--bp-at", "08:00",
                                "--event", "08:00=Palpitations", "--duration", "60", "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        try:
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__ + "::"
                                   "test_real_band_values_rate_readings_upload",
                                   "--hil-up", f"ble://any?name=UP3-A1B2&adapter={CENTRAL_ADAPTER}",
                                   "--hil-seconds", "12"],
                                  capture_output=True, text=True, timeout=180, env=env,
                                  cwd=os.path.dirname(os.path.dirname(__file__)))
        finally:
            sim.kill()
            sim.wait()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
