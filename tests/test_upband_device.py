"""The UP band simulator as a BLE peripheral, read through real bleak against BlueZoo: its standard
services, a morning's heart rate, a blood-pressure measurement and a tagged cardiac event."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime

import pytest

from gateway.protocols import gatt, upband
from tests.ble import CENTRAL_ADAPTER, find_peripheral, private_bluez


@pytest.fixture
def bluez(tmp_path, monkeypatch):
    with private_bluez(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield address


async def test_a_morning_of_the_band_over_ble(bluez, tmp_path):
    from bleak import BleakClient

    truth_file = tmp_path / "truth.json"
    sim = subprocess.Popen([sys.executable, "-m", "simulators.cli", "device", "up", "--ble", "--start-time",
                            "2026-11-23T07:58:30+01:00", "--duration", "180", "--speed", "30", "--bp-at", "08:00",
                            "--event", "08:01=Palpitations:a flutter after coffee", "--seed", "2", "--json",
                            "--truth", str(truth_file)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    u = gatt.uuid16
    heart, pressure, events = [], [], []
    try:
        device = await find_peripheral()
        assert device.name == "UP3-A1B2"
        async with BleakClient(device, bluez={"adapter": CENTRAL_ADAPTER}) as client:
            model = gatt.decode_string(bytes(await client.read_gatt_char(u(0x2A24))), "model")
            battery = gatt.decode_battery_level(bytes(await client.read_gatt_char(u(gatt.BATTERY_LEVEL))))
            location = bytes(await client.read_gatt_char(u(gatt.BODY_SENSOR_LOCATION)))
            feature = bytes(await client.read_gatt_char(u(gatt.BLOOD_PRESSURE_FEATURE)))
            offset = gatt.decode_local_time_information(
                bytes(await client.read_gatt_char(u(gatt.LOCAL_TIME_INFORMATION))))
            await client.start_notify(u(gatt.BLOOD_PRESSURE_MEASUREMENT),
                                      lambda _, d: pressure.append(gatt.decode_blood_pressure(bytes(d))))
            await client.start_notify(upband.EVENT_UUID, lambda _, d: events.append(upband.decode_event(bytes(d))))
            await client.start_notify(u(gatt.HEART_RATE_MEASUREMENT),
                                      lambda _, d: heart.append(gatt.decode_heart_rate(bytes(d))))
            out, err = await asyncio.to_thread(sim.communicate, timeout=60)
    finally:
        if sim.poll() is None:
            sim.kill()
    assert sim.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert (model, battery, location, feature, offset) == ("UP-class band", 77, b"\x02", b"\x04\x00", 60)
    assert summary["heart_rate_sent"] == len(heart) == 180 and summary["heart_rate_unheard"] == 0
    # At rest (66 bpm) until 08:00, then a walk (102 bpm) approached with a 60 s time constant.
    assert all(abs(m.heart_rate - 66) <= 1 for m in heart[:80])
    assert 86 <= heart[-1].heart_rate <= 94  # 66 + 36 (1 - e^-1.5) = 94 at the latest
    beats = sum(len(m.rr_intervals) for m in heart)
    assert abs(beats - sum(m.heart_rate for m in heart) / 60) <= 3
    # --truth holds what went out, RR intervals included: the receiver's decoding is checked against it.
    truth = json.loads(truth_file.read_text())
    assert [v for v, _ in truth["heart_rate"]] == [m.heart_rate for m in heart]
    assert truth["rr_intervals"] == [list(m.rr_intervals) for m in heart]
    (bp,) = pressure
    assert bp.time_stamp == datetime(2026, 11, 23, 8, 0, 0) and bp.user_id == 1 and not bp.kpa
    assert 105 <= bp.systolic <= 140 and 65 <= bp.diastolic <= 95 and abs(bp.pulse_rate - 66) <= 2
    (event,) = events  # tagged 150 s into the day, a minute into the walk: the rate then
    tagged = int(datetime.fromisoformat("2026-11-23T08:01:00+01:00").timestamp())
    assert event == upband.CardiacEvent(tagged, 60, "Palpitations", "a flutter after coffee", event.heart_rate)
    assert event.heart_rate == heart[149].heart_rate
    assert summary["blood_pressure_sent"] == summary["events_sent"] == 1
