"""The UP band end to end: the band simulator as a BLE peripheral on BlueZoo -> the gateway's BLE
transport (real bleak) -> upband driver -> UP cardiac events API and Human API hub emulators over
loopback; every heart-rate window, blood pressure and tagged event read back once, exact."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from datetime import datetime

import httpx
import numpy as np
import pytest

from gateway.config import load
from gateway.daemon import Gateway
from simulators.cloud.app import build_app
from simulators.cloud.humanapi.app import DEFAULT_TOKEN as HUB_TOKEN
from simulators.cloud.server import BackgroundServer
from simulators.cloud.up.app import DEFAULT_TOKEN as UP_TOKEN
from tests.ble import CENTRAL_ADAPTER, PERIPHERAL_ADAPTER, private_bluez
from tests.chain import until, until_count

START = "2026-11-23T07:58:00+01:00"


@pytest.fixture
def bluez(tmp_path, monkeypatch):
    with private_bluez(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield address


def band(truth, duration: int, *extra: str) -> subprocess.Popen:
    """The band simulator's CLI on the peripheral adapter."""
    return subprocess.Popen([sys.executable, "-m", "simulators.cli", "device", "up", "--ble", "--adapter",
                             PERIPHERAL_ADAPTER, "--start-time", START, "--duration", str(duration), "--speed", "30",
                             "--seed", "4", "--json", "--truth", str(truth), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def gateway_config(tmp_path, url: str, silent_s: float = 10, transport: str | None = None,
                   recording_seconds: float = 60) -> object:
    """The gateway with one band, uploading to the UP and hub emulators at `url`."""
    transport = transport or f"ble://any?name=UP3-A1B2&adapter={CENTRAL_ADAPTER}&silent_s={silent_s}"
    cfg = tmp_path / "g.toml"
    cfg.write_text(f"""
[gateway]
timezone = "Europe/Berlin"
[spool]
path = "{tmp_path / 'spool.db'}"
[status]
enabled = false
[uplinks.up]
type = "up"
base_url = "{url}/up"
token = "{UP_TOKEN}"
[uplinks.hub]
type = "humanapi"
base_url = "{url}/humanapi"
token = "{HUB_TOKEN}"
[[devices]]
name = "band"
driver = "upband"
transport = "{transport}"
uplinks = ["up", "hub"]
recording_seconds = {recording_seconds}
""")
    return load(cfg)


def up_events(url: str) -> list[dict]:
    """Every cardiac event of the token's user, following the `next` links."""
    items, path = [], "/nudge/api/v.1.1/users/@me/cardiac_events?updated_after=0&limit=4"
    with httpx.Client(base_url=url + "/up", headers={"Authorization": f"Bearer {UP_TOKEN}"}) as c:
        while path:
            data = c.get(path).raise_for_status().json()["data"]
            items += data["items"]
            link = data["links"].get("next")  # a path on the host, carrying the /up prefix
            path = str(httpx.URL(url).join(link)) if link else None
    return sorted(items, key=lambda e: (e["time_created"], e["title"]))


def hub(url: str, kind: str) -> list[dict]:
    with httpx.Client(base_url=url + "/humanapi", headers={"Authorization": f"Bearer {HUB_TOKEN}"}) as c:
        return sorted(c.get(f"/v1/human/{kind}", params={"limit": 500}).raise_for_status().json(),
                      key=lambda m: m["timestamp"])


async def test_a_band_over_ble_reaches_up_and_the_hub_every_event_once_exact(tmp_path, bluez):
    truth = tmp_path / "band.json"
    sim = band(truth, 300, "--bp-at", "08:00,08:02", "--event", "08:01=Palpitations:a flutter after coffee",
               "--event", "07:59=Dizzy")
    with BackgroundServer(build_app(tmp_path / "cloud")) as server:
        gateway = Gateway(gateway_config(tmp_path, server.url))
        await gateway.start()
        try:
            out, err = await asyncio.to_thread(sim.communicate, timeout=120)
            assert sim.returncode == 0, err
            sent = json.loads(truth.read_text())
            runner = gateway.devices[0]
            await until_count(runner.driver.counters, "heart_rates", len(sent["heart_rate"]))
            await until_count(runner.pipeline.counters, "readings",
                                   len(sent["blood_pressure"]) + len(sent["cardiac_event"]))
            driver, transport = dict(runner.driver.counters), dict(runner.transport.counters)
            assert await gateway.drain(30)
        finally:
            await gateway.stop(drain_timeout=30)
        events = await asyncio.to_thread(up_events, server.url)
        rates = await asyncio.to_thread(hub, server.url, "heart_rate")
        pressures = await asyncio.to_thread(hub, server.url, "blood_pressure")
    summary = json.loads(out.splitlines()[-1])
    hr = np.array([v for v, _ in sent["heart_rate"]])
    assert summary["heart_rate_sent"] == len(hr) == 300 and driver["heart_rates"] == 300
    assert (summary["blood_pressure_sent"], summary["events_sent"]) == (2, 2)
    assert transport["connects"] == 1 and not driver.get("repeated_readings") and not driver.get("no_contact")
    windows = [int(round(w.mean())) for w in hr.reshape(5, 60)]

    # UP: five heart-rate windows, two pressures, two tagged events; each once, every field exact.
    assert [e["title"] for e in events if e["title"] == "Heart rate"] == ["Heart rate"] * 5
    assert [e["heart_rate"] for e in events if e["title"] == "Heart rate"] == windows
    bp = [e for e in events if e["title"] == "Blood pressure"]
    assert [(e["systolic_pressure"], e["diastolic_pressure"], e["heart_rate"], e["time_created"]) for e in bp] == \
        [(round(m["systolic"]), round(m["diastolic"]), round(m["pulse_rate"]), int(m["time"]))
         for m in sent["blood_pressure"]]
    tagged = [e for e in events if e["title"] not in ("Heart rate", "Blood pressure")]
    assert [(e["title"], e["note"], e["heart_rate"], e["time_created"]) for e in tagged] == \
        [(t["title"], t["note"] or None, t["heart_rate"], t["time"]) for t in sent["cardiac_event"]]
    assert len(events) == 9 and {e["details"]["tz"] for e in events} == {"Europe/Berlin"}  # +01:00 in November

    # The hub: the same windows and the tagged events' rates as heart_rate, the pressures with their pulse.
    assert sorted(m["value"] for m in rates) == sorted(
        [round(float(w.mean()), 1) for w in hr.reshape(5, 60)] + [t["heart_rate"] for t in sent["cardiac_event"]])
    assert [(m["systolic"], m["diastolic"], m["heartRate"]) for m in pressures] == \
        [(m["systolic"], m["diastolic"], round(m["pulse_rate"])) for m in sent["blood_pressure"]]
    assert [m["timestamp"][11:19] for m in pressures] == ["07:00:00", "07:02:00"]  # UTC of 08:00 and 08:02 +01:00


async def test_link_loss_and_lost_confirmations_lose_only_live_heart_rate_and_repeat_nothing(tmp_path, bluez):
    """The band's radio goes quiet just before its 08:00 measurement: the gateway's watchdog drops the
    link, reconnects and re-subscribes, and the measurement the band held arrives after. Then the
    confirmation of the 08:01 event is lost, so the band sends it again: the gateway keeps it once.
    Heart rate measured while nobody heard it is gone (the Heart Rate Service keeps none); each
    connection's heart rate is its own session, windowed exactly."""
    from gateway.protocols import gatt
    from simulators.devices.ble_front import BlePort
    from simulators.devices.upband import ScheduledEvent, UpBandModel, band_services, run_band

    u = gatt.uuid16
    model = UpBandModel(datetime.fromisoformat(START).timestamp(), 60, bp_at=(8.0,),
                        events=(ScheduledEvent(8 + 1 / 60, "Palpitations", "after the stairs"),), seed=6)
    port = await asyncio.to_thread(BlePort, u(gatt.HEART_RATE_SERVICE), None, "UP3-A1B2", PERIPHERAL_ADAPTER,
                                   extra_services=band_services(model))
    stop = threading.Event()

    def on_second(second) -> None:
        k = round(second.t - model.start)
        if k == 119:  # just before the 08:00 measurement
            port.stalled.set()
        if k == 145:  # the 08:01 event will arrive, its confirmation will not
            port.lose_confirmations(True)

    def serve():
        port.wait_for_subscriber(u(gatt.HEART_RATE_MEASUREMENT), stop, timeout=30)
        return run_band(model, port, 300, 10, stop, on_second, record=True)

    with BackgroundServer(build_app(tmp_path / "cloud")) as server:
        # The watchdog's silence: long enough that a band thread starved on a busy machine is not
        # taken for a dead link (at 2 s it was, once, and the value in flight was lost).
        gateway = Gateway(gateway_config(tmp_path, server.url, silent_s=4))
        await gateway.start()
        runner = gateway.devices[0]
        try:
            served = asyncio.ensure_future(asyncio.to_thread(serve))
            await until_count(runner.transport.counters, "silent_timeouts", 1, timeout=60)
            # The radio comes back once the dropped link is gone on the band's side too: a value sent
            # while BlueZ still holds the old subscription would count as heard and reach no one (on a
            # busy machine the gateway's disconnect takes a while to arrive).
            hrm = u(gatt.HEART_RATE_MEASUREMENT)
            await until(lambda: not port.is_subscribed(hrm) or port.subscriptions(hrm) >= 2,
                        lambda: "the band still sees the dropped link's subscription", timeout=60)
            port.stalled.clear()
            await until_count(runner.driver.counters, "repeated_readings", 1, timeout=60)
            port.lose_confirmations(False)
            stats = await served
            sent = stats.sent
            await until_count(runner.driver.counters, "heart_rates", len(sent["heart_rate"]))
            await until_count(runner.pipeline.counters, "readings", 2)
            driver, transport = dict(runner.driver.counters), dict(runner.transport.counters)
        finally:
            stop.set()
            await gateway.stop(drain_timeout=30)
            await asyncio.to_thread(port.close)
        events = await asyncio.to_thread(up_events, server.url)
        pressures = await asyncio.to_thread(hub, server.url, "blood_pressure")
    assert transport["connects"] >= 2 and port.counters["indications_held"] >= 1
    assert stats.heart_rate_unheard > 0 and driver["heart_rates"] == len(sent["heart_rate"]) == stats.heart_rate_sent
    assert driver["repeated_readings"] >= 1 and (stats.blood_pressure_sent, stats.events_sent) == (1, 1)
    # Windows of 60 per connection, the last one of each shorter: exactly the means of what was heard.
    sessions: dict[int, list[int]] = {}
    for value, epoch in sent["heart_rate"]:
        sessions.setdefault(epoch, []).append(value)
    windows = [int(round(np.mean(v[i:i + 60]))) for v in sessions.values() for i in range(0, len(v), 60)]
    assert len(sessions) >= 2
    assert sorted(e["heart_rate"] for e in events if e["title"] == "Heart rate") == sorted(windows)
    (bp,) = [e for e in events if e["title"] == "Blood pressure"]
    (m,) = sent["blood_pressure"]
    assert (bp["systolic_pressure"], bp["diastolic_pressure"], bp["time_created"]) == \
        (round(m["systolic"]), round(m["diastolic"]), int(m["time"]))
    (tagged,) = [e for e in events if e["title"] == "Palpitations"]
    (t,) = sent["cardiac_event"]
    assert (tagged["note"], tagged["heart_rate"], tagged["time_created"]) == (t["note"], t["heart_rate"], t["time"])
    assert len(pressures) == 1
