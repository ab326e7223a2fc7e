"""BLE for real bleak code: the shirt simulator as a GATT peripheral on BlueZoo -> the gateway's BLE
transport (bleak) -> driver -> Hexoskin emulator, every sample back exact (the shirt at a negotiated
MTU of 247 through AcquireNotify, the KardiaMobile at the default 20-byte notifications)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gateway.config import load
from gateway.daemon import Gateway
from simulators.cloud.app import build_app
from simulators.cloud.server import BackgroundServer
from tests.ble import CENTRAL_ADAPTER, PERIPHERAL_ADAPTER, PERIPHERAL_ADDRESS, find_peripheral, private_bluez
from tests.chain import read_all, until, until_count
from tests.test_hexoskin_chain import api, hexoskin_uplink


@pytest.fixture
def bluez(tmp_path, monkeypatch):
    with private_bluez(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield address


async def test_shirt_over_ble_reaches_the_cloud_sample_exact(tmp_path, bluez):
    truth = tmp_path / "truth.npz"
    sim = subprocess.Popen([sys.executable, "-m", "simulators.cli", "device", "hexoskin", "--ble",
                            "--adapter", PERIPHERAL_ADAPTER, "--duration", "30", "--speed", "10", "--seed", "3",
                            "--heart-rate", "70", "--quiet", "--json", "--truth", str(truth), "--mtu", "247"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    with BackgroundServer(build_app(tmp_path / "cloud")) as server:
        cfg = tmp_path / "g.toml"
        cfg.write_text(f"""
[spool]
path = "{tmp_path / 'spool.db'}"
[status]
enabled = false
{hexoskin_uplink(server.url)}
[[devices]]
name = "shirt"
driver = "hexoskin"
transport = "ble://{PERIPHERAL_ADDRESS}?adapter={CENTRAL_ADAPTER}"
uplinks = ["hexoskin"]
recording_seconds = 10
""")
        gateway = Gateway(load(cfg))
        await gateway.start()
        try:
            out, err = await asyncio.to_thread(sim.communicate, timeout=120)
            assert sim.returncode == 0, err
            summary = json.loads(out.splitlines()[-1])
            runner = gateway.devices[0]
            await read_all(runner.transport, summary["bytes"])
            transport, counters = dict(runner.transport.counters), dict(runner.driver.counters)
        finally:
            await gateway.stop(drain_timeout=30)
        with api(server) as c:
            rid = c.get("/record/").json()["objects"][0]["id"]
            data = c.get(f"/data/?datatype__in=4113,4129,4145&record={rid}").json()[0]["data"]
    with np.load(truth) as z:
        ecg, ecg_ts = z["leadI"], z["leadI_ts"]
        resp_ts = z["respThoracic_ts"]
    assert counters["samples"] == 30 * (256 + 2 * 128 + 3 * 64)
    assert not counters.get("gaps") and not counters.get("crc_errors")
    assert transport["connects"] == 1 and transport["bytes"] == summary["bytes"]
    # The link's MTU is 247 (AcquireNotify): notifications of up to 244 bytes, frames spanning them.
    assert summary["bytes"] / 244 <= transport["notifications"] < summary["bytes"] / 20
    got = np.array(data["4113"])
    np.testing.assert_array_equal(got[:, 0], ecg_ts)
    np.testing.assert_array_equal(got[:, 1], ecg)
    assert [p[0] for p in data["4129"]] == resp_ts.tolist() and len(data["4145"]) == 30 * 64


async def kardia_over_ble(tmp_path, seed: int, speed: float | None, transport: str, during=None,
                          duration: float | None = 60):
    """A KardiaMobile simulator on BLE -> the gateway -> the Kardia emulator; `during(runner, port, sim)`
    runs while it streams. Returns (simulator, port, transport counters, driver counters, recordings)."""
    from gateway.protocols import kardiamobile as km
    from simulators.cloud.app import Credentials
    from simulators.devices.ble_front import BlePort
    from tests.chain import API_KEY, config_toml, create_patient, recordings, start_simulator

    port = await asyncio.to_thread(BlePort, km.BLE_SERVICE_UUID, km.BLE_FRAMES_UUID, "KM1-TEST0001",
                                   PERIPHERAL_ADAPTER)
    sim = start_simulator(duration=duration, speed=speed, seed=seed, port=port, start=False)
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY]))) as server:
        url = server.url + "/kardia"
        patient = await asyncio.to_thread(create_patient, url)
        cfg = tmp_path / "g.toml"
        cfg.write_text(config_toml(tmp_path / "spool.db", url, patient, "-", 30, transport=transport)
                       .replace('listen = "127.0.0.1:0"', 'enabled = false'))
        gateway = Gateway(load(cfg, env={"CHAIN_KARDIA_KEY": API_KEY}))
        await gateway.start()
        runner = gateway.devices[0]
        try:
            sim.thread.start()
            if during:
                await during(runner, port, sim)
            stats = await asyncio.to_thread(sim.join)
            await read_all(runner.transport, stats.bytes - port.counters["dropped_bytes"])
            transport_counters, counters = dict(runner.transport.counters), dict(runner.driver.counters)
        finally:
            await gateway.stop(drain_timeout=30)
            await asyncio.to_thread(port.close)
        recs = await asyncio.to_thread(recordings, url, patient)
    return sim, port, transport_counters, counters, recs


async def test_kardiamobile_over_ble_every_sample_once(tmp_path, bluez):
    from simulators.reconcile import reconcile

    sim, _, _, counters, recs = await kardia_over_ble(
        tmp_path, 21, None, f"ble://any?name=KM1-TEST0001&adapter={CENTRAL_ADAPTER}")
    check = reconcile(sim.sent, [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recs])
    assert check.exact, check.as_dict()
    assert len(sim.sent) == 60 * 300 and check.positions == [0, 9000]
    assert counters["samples"] == 60 * 300 and not counters.get("gaps")


async def test_an_outage_that_loses_data_is_recorded_as_exactly_that_gap(tmp_path, bluez):
    """The device's radio goes quiet and what it measures meanwhile is lost: the gateway's watchdog
    drops the link, reconnects and re-subscribes; the recordings hold everything else, once, and the
    gap the driver records is exactly what never arrived."""
    from simulators.reconcile import reconcile

    link: dict[str, int] = {}

    async def outage(runner, port, sim) -> None:
        await asyncio.sleep(2.0)
        subscribed = port.counters["subscriptions"]
        port.dropping.set()
        await until_count(runner.transport.counters, "silent_timeouts", 1, timeout=20)
        # The radio comes back once the dropped link is gone on the device's side too: what it sent
        # while BlueZ still held the old subscription would count as sent and reach no one.
        await until(lambda: port.dropped_link_gone(subscribed), lambda: "the old subscription", timeout=60)
        port.dropping.clear()
        # The device streams until frames after the outage showed it as a gap, however long the outage
        # took on a busy machine; the link is read before the device stops (a silent device is dropped).
        resumed = runner.driver.counters["samples"]
        await until(lambda: runner.driver.counters["gaps"] and runner.driver.counters["samples"] > resumed + 1500,
                    lambda: f"a gap and samples after the outage: {dict(runner.driver.counters)}", timeout=60)
        link.update(runner.transport.counters)
        sim.stop.set()

    sim, port, _, counters, recs = await kardia_over_ble(
        tmp_path, 22, 10, f"ble://{PERIPHERAL_ADDRESS}?adapter={CENTRAL_ADAPTER}&silent_s=1", outage,
        duration=None)
    check = reconcile(sim.sent, [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recs])
    assert port.counters["dropped_bytes"] > 1000 and link["connects"] == 2 and link["silent_timeouts"] == 1
    assert not check.duplicates and not check.unmatched and check.in_order
    # One missing stretch, recorded as one gap, or two adjacent ones when the outage cut a frame whose
    # header had arrived (its samples are a gap at once, the rest when the stream resumes); a frame cut
    # inside its header names no samples, so the resumed stream's one gap covers it.
    split = 1 if counters.get("truncated_frame_samples") else 0
    assert counters["gaps"] - split == 1 and len(check.missing_ranges) == 1
    assert counters["lost_samples"] == check.missing > 0  # the gaps are exactly what never arrived
    assert check.delivered + check.missing == len(sim.sent) > 5000


async def test_the_shirt_also_offers_the_standard_heart_rate_device_information_and_battery(tmp_path, bluez):
    """Read through real bleak: Device Information strings, Battery Level, Body Sensor Location; and the
    Heart Rate Measurements through a generic heart-rate client from PyPI (bleakheart), which subscribes to
    nothing else: the shirt runs for it, and what it decodes is exactly what --truth says was sent."""
    from bleak import BleakClient
    from bleakheart import HeartRate

    from gateway.protocols import gatt

    truth_file = tmp_path / "truth.npz"
    sim = subprocess.Popen([sys.executable, "-m", "simulators.cli", "device", "hexoskin", "--ble", "--adapter",
                            PERIPHERAL_ADAPTER, "--duration", "20", "--heart-rate", "75", "--seed", "4", "--quiet",
                            "--device-id", "HXSKIN12000777", "--truth", str(truth_file)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    u = gatt.uuid16
    frames: asyncio.Queue = asyncio.Queue()
    measurements = []
    try:
        device = await find_peripheral()
        async with BleakClient(device, bluez={"adapter": CENTRAL_ADAPTER}) as client:
            info = {k: gatt.decode_string(bytes(await client.read_gatt_char(u(k))), v)
                    for k, v in gatt.DEVICE_INFO_STRINGS.items() if k in (0x2A29, 0x2A24, 0x2A25, 0x2A26)}
            battery = gatt.decode_battery_level(bytes(await client.read_gatt_char(u(gatt.BATTERY_LEVEL))))
            location = bytes(await client.read_gatt_char(u(gatt.BODY_SENSOR_LOCATION)))
            heart = HeartRate(client, queue=frames, unpack=False)
            await heart.start_notify()
            while len(measurements) < 8:
                measurements.append(await asyncio.wait_for(frames.get(), timeout=60))
            await heart.stop_notify()
    finally:
        sim.terminate()
        sim.communicate(timeout=90)  # past the simulator's own 30 s wait for its reader to take the rest
    assert info == {0x2A29: "wearable-gateway simulator", 0x2A24: "Hexoskin-class shirt", 0x2A25: "HXSKIN12000777",
                    0x2A26: "3.1.4"}
    assert battery == 87 and location == b"\x01"  # chest
    truth = np.load(truth_file)
    sent_rate, counts = truth["hrs_heart_rate"], truth["hrs_rr_count"]
    assert len(sent_rate) >= len(measurements) == 8
    got_rate = [m[2][0] for m in measurements]  # ('HR', time, (rate, [rr in ms]), energy)
    assert got_rate == sent_rate[:8].tolist() and all(abs(r - 75) <= 6 for r in got_rate[2:])
    sent_rr = np.split(truth["hrs_rr"], np.cumsum(counts))[:8]
    for (_, _, (_, rr_ms), _), rr in zip(measurements, sent_rr):  # bleakheart gives ms; the wire 1/1024 s
        np.testing.assert_allclose(rr_ms, rr * 1000 / 1024, atol=1)
    rr = np.concatenate(sent_rr[2:]) / 1024
    assert len(rr) >= 3 and abs(60 / rr.mean() - 75) <= 4


def hx_frames() -> str:
    from gateway.protocols import hexoskin as hx

    return hx.BLE_FRAMES_UUID


async def test_two_devices_at_once_and_one_outage_stalls_nobody_else(tmp_path, bluez):
    """A KardiaMobile and a shirt over BLE into one gateway; the shirt's radio goes quiet and loses data
    for a while: the KardiaMobile's link never drops and its samples all arrive, once."""
    from gateway.protocols import hexoskin as hx
    from gateway.protocols import kardiamobile as km
    from simulators.cloud.app import Credentials
    from simulators.devices.ble_front import BlePort
    from simulators.reconcile import reconcile
    from tests.ble import SECOND_PERIPHERAL_ADAPTER
    from tests.chain import API_KEY, create_patient, recordings, start_simulator

    kardia_port = await asyncio.to_thread(BlePort, km.BLE_SERVICE_UUID, km.BLE_FRAMES_UUID, "KM1-TEST0001",
                                          PERIPHERAL_ADAPTER)
    shirt_port = await asyncio.to_thread(BlePort, hx.BLE_SERVICE_UUID, hx.BLE_FRAMES_UUID, "HXSKIN12000001",
                                         SECOND_PERIPHERAL_ADAPTER)
    # Both stream until told to stop (no end of their own: on a loaded machine the waits below outlasted
    # 600 s of the shirt's signal at 8x once, and the KardiaMobile's 60 s, after which its silence made
    # the gateway reconnect it every 10 s beside the shirt's reconnect), so the KardiaMobile streams
    # throughout and the shirt's frames follow its outage and show it as a gap.
    kardia = start_simulator(duration=None, speed=8, seed=23, port=kardia_port, start=False)
    shirt = start_shirt(shirt_port, seconds=None, speed=8)
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY]))) as server:
        url = server.url + "/kardia"
        patient = await asyncio.to_thread(create_patient, url)
        cfg = tmp_path / "g.toml"
        cfg.write_text(f"""
[spool]
path = "{tmp_path / 'spool.db'}"
[status]
enabled = false
[uplinks.kardia]
type = "kardia"
base_url = "{url}"
api_key = "{API_KEY}"
{hexoskin_uplink(server.url)}
[[devices]]
name = "kardia"
driver = "kardiamobile"
transport = "ble://any?name=KM1-TEST0001&adapter={CENTRAL_ADAPTER}"
uplinks = ["kardia"]
patient_id = "{patient}"
recording_seconds = 20
[[devices]]
name = "shirt"
driver = "hexoskin"
transport = "ble://any?service={hx.BLE_SERVICE_UUID}&adapter={CENTRAL_ADAPTER}&silent_s=1"
uplinks = ["hexoskin"]
recording_seconds = 10
""")
        gateway = Gateway(load(cfg))
        await gateway.start()
        k_runner, s_runner = gateway.devices
        try:
            kardia.thread.start()
            shirt.start()
            await asyncio.sleep(1.5)
            before = k_runner.transport.counters["bytes"]
            subscribed = shirt_port.counters["subscriptions"]
            shirt_port.dropping.set()  # the shirt's outage: what it measures meanwhile is lost
            await until_count(s_runner.transport.counters, "silent_timeouts", 1, timeout=20)
            await until(lambda: shirt_port.counters["dropped_bytes"] > 0 and shirt_port.dropped_link_gone(subscribed),
                        lambda: "bytes dropped by the outage, and the old subscription gone", timeout=60)
            during = k_runner.transport.counters["bytes"] - before
            shirt_port.dropping.clear()
            await until_count(s_runner.driver.counters, "gaps", 1, timeout=120)
            # Read before the shirt stops: a stopped shirt is silent, and the gateway reconnects to it.
            s_transport, s_counters = dict(s_runner.transport.counters), dict(s_runner.driver.counters)
            shirt.stop.set()
            kardia.stop.set()
            stats = await asyncio.to_thread(kardia.join)
            await asyncio.to_thread(shirt.join, 120)
            await read_all(k_runner.transport, stats.bytes)
            k_transport = dict(k_runner.transport.counters)
        finally:
            await gateway.stop(drain_timeout=30)
            await asyncio.to_thread(kardia_port.close)
            await asyncio.to_thread(shirt_port.close)
        recs = await asyncio.to_thread(recordings, url, patient)
    assert during > 1000  # the KardiaMobile kept streaming through the shirt's outage
    assert k_transport["connects"] == 1 and not k_transport.get("link_losses")
    assert reconcile(kardia.sent, [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recs]).exact
    assert s_transport["connects"] == 2 and s_transport["silent_timeouts"] == 1
    assert s_counters.get("gaps", 0) >= 1 and shirt_port.counters["dropped_bytes"] > 0


def start_shirt(port, seconds: float | None, speed: float):
    """A shirt model writing into a port from a thread (started by the caller; `.stop` ends it early)."""
    import threading

    from simulators.devices.hexoskin import HexoskinModel
    from simulators.devices.serial_front import run_frames
    from simulators.physiology.ecg import EcgParams, EcgSynth
    from simulators.physiology.respiration import MotionSynth, RespirationSynth

    ecg = EcgSynth(256, EcgParams(seed=9))
    model = HexoskinModel(ecg, RespirationSynth(128, ecg.breathing_phase), MotionSynth(64, "rest", seed=9))
    stop = threading.Event()

    def target() -> None:
        if port.wait_for_reader(stop, timeout=60):
            run_frames(model.frames(), port, duration=seconds, speed=speed, stop=stop)

    thread = threading.Thread(target=target, name="shirt", daemon=True)
    thread.stop = stop
    return thread
