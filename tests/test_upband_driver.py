"""The UP band's driver, packagers and pipeline path: GATT values in, heart-rate windows and readings
out, exact values, repeats kept once, bad values counted and dropped; on a real spool."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from gateway.core.blocks import HEART_RATE_CHANNEL, DeviceInfo, Reading, SampleBlock
from gateway.drivers.base import bad_frames
from gateway.drivers.upband import BPM, EVENT, FIRMWARE, HRM, LOCAL_TIME, MODEL_NUMBER, SERIAL, UpBandDriver
from gateway.packagers.humanapi import HubVitalsPackager
from gateway.packagers.up import UpCardiacEventPackager
from gateway.pipeline import DevicePipeline
from gateway.protocols import gatt, upband
from gateway.spool import AsyncSpool, Spool
from gateway.transports import Notification
from gateway.vendors import humanapi, up

T0 = 1_795_426_200.0  # 2026-11-23 09:30:00 UTC
BERLIN = ZoneInfo("Europe/Berlin")


def n(char: str, value: bytes) -> Notification:
    return Notification(value, char)


def connect(driver: UpBandDriver, tz_minutes: int | None = 60, serial: str = "UP3-0000A1B2") -> None:
    for char, value in ((SERIAL, serial.encode()), (MODEL_NUMBER, b"UP-class band"), (FIRMWARE, b"4.2.0"),
                        (LOCAL_TIME, gatt.encode_local_time_information(tz_minutes))):
        assert driver.feed(n(char, value), T0) == []


def hrm(rate: int, contact: bool | None = True) -> Notification:
    return n(HRM, gatt.encode_heart_rate(gatt.HeartRateMeasurement(rate, contact, rr_intervals=[900])))


def bp(systolic: float, diastolic: float, stamp: datetime | None, pulse: float | str | None = 70.0,
       kpa: bool = False) -> Notification:
    return n(BPM, gatt.encode_blood_pressure(gatt.BloodPressureMeasurement(
        systolic, diastolic, round(diastolic + (systolic - diastolic) / 3, 1), kpa=kpa, time_stamp=stamp,
        pulse_rate=pulse, user_id=1, status=0)))


def event(t: int, title: str, note: str = "", hr: int = 88, tz: int = 60) -> Notification:
    return n(EVENT, upband.encode_event(upband.CardiacEvent(t, tz, title, note, hr)))


def test_heart_rate_becomes_a_1_hz_stream_per_connection_with_no_contact_as_zero():
    d = UpBandDriver()
    connect(d)
    out = [ev for i, r in enumerate([64, 65, 0, 66]) for ev in d.feed(hrm(r, contact=r != 0), T0 + i)]
    info, *blocks = out
    assert isinstance(info, DeviceInfo) and (info.device, info.model, info.firmware) == \
        ("UP3-0000A1B2", "UP-class band", "4.2.0")
    assert info.extra["tz_minutes"] == 60 and info.channels[HEART_RATE_CHANNEL].sampling_frequency == 1
    assert [(b.first, b.samples.tolist(), b.arrival) for b in blocks] == \
        [(0, [64], T0), (1, [65], T0 + 1), (2, [0], T0 + 2), (3, [66], T0 + 3)]
    assert d.counters["no_contact"] == 1
    assert d.feed(hrm(400, contact=None), T0 + 4)[0].samples.tolist() == [0]  # out of 20-300: no reading
    assert d.counters["implausible_heart_rate"] == 1
    d.link_lost()  # a new connection is a new session, counted from 0
    connect(d)
    again = d.feed(hrm(70), T0 + 100)
    assert isinstance(again[0], DeviceInfo) and again[0].session != info.session and again[1].first == 0


def test_blood_pressure_is_placed_by_the_bands_offset_and_kept_once():
    d = UpBandDriver()
    connect(d, tz_minutes=60)
    first = d.feed(bp(121, 79, datetime(2026, 11, 23, 8, 0, 0)), T0)
    reading = first[-1]
    assert isinstance(reading, Reading) and reading.kind == "blood_pressure"
    assert reading.time == datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc).timestamp() and reading.tz_minutes == 60
    assert reading.fields == {"systolic": 121.0, "diastolic": 79.0, "mean_arterial": 93.0, "pulse_rate": 70}
    assert reading.key == f"UP3-0000A1B2/blood_pressure/{int(reading.time)}"
    d.link_lost()
    connect(d, tz_minutes=60)
    repeat = d.feed(bp(121, 79, datetime(2026, 11, 23, 8, 0, 0)), T0 + 5)  # unconfirmed, sent again
    assert [type(e) for e in repeat] == [DeviceInfo] and d.counters["repeated_readings"] == 1
    kpa = d.feed(bp(16.0, 10.5, datetime(2026, 11, 23, 9, 0, 0), pulse="NRes", kpa=True), T0 + 6)[-1]
    assert (kpa.fields["systolic"], kpa.fields["diastolic"], kpa.fields["pulse_rate"]) == (120.0, 78.8, None)


def test_without_the_bands_offset_the_gateways_time_zone_places_a_measurement():
    d = UpBandDriver()
    d.local_zone = BERLIN
    connect(d, tz_minutes=None)
    summer = d.feed(bp(118, 76, datetime(2026, 7, 1, 8, 0, 0)), T0)[-1]
    assert summer.time == datetime(2026, 7, 1, 6, 0, tzinfo=timezone.utc).timestamp() and summer.tz_minutes == 120
    no_stamp = d.feed(bp(119, 77, None), T0 + 1)[-1]
    assert no_stamp.time == T0 + 1  # no time stamp: when it arrived


def test_a_tagged_event_is_a_reading_with_the_rate_at_the_tag():
    d = UpBandDriver()
    connect(d)
    e = d.feed(event(int(T0), "Palpitations", "a flutter after coffee", hr=97), T0)[-1]
    assert (e.kind, e.time, e.tz_minutes) == ("cardiac_event", T0, 60)
    assert e.fields == {"title": "Palpitations", "note": "a flutter after coffee", "heart_rate": 97}
    other = d.feed(event(int(T0), "Dizzy", hr=0), T0)[-1]  # same second, another title: another event
    assert other.key != e.key and other.fields == {"title": "Dizzy", "note": None, "heart_rate": None}


def test_bad_values_are_counted_and_dropped_and_never_raise():
    d = UpBandDriver()
    connect(d)
    assert d.feed(b"\x00\x40", T0) == [] and d.counters["untagged_bytes"] == 2  # a band is BLE only
    assert d.feed(bp(80, 120, datetime(2026, 11, 23, 8, 0)), T0)[1:] == []  # systolic below diastolic
    assert d.feed(bp(float("nan"), 80, datetime(2026, 11, 23, 8, 0)), T0) == []
    assert d.feed(n(EVENT, b"\x00\x01"), T0) == [] and d.feed(n(HRM, b"\x10\x40\x01"), T0) == []
    assert d.feed(n(LOCAL_TIME, b"\x39\x00"), T0) == []
    assert (d.counters["bad_frame:blood_pressure"], d.counters["bad_frame:cardiac_event"],
            d.counters["bad_frame:heart_rate"], d.counters["bad_frame:read"]) == (2, 1, 1, 1)
    assert bad_frames(d.counters) == 5
    rng = random.Random(5)
    for _ in range(3000):  # random values on every characteristic: decoded or counted, never raised
        d.feed(n(rng.choice([HRM, BPM, EVENT, LOCAL_TIME, SERIAL, "0000ffff-0000-1000-8000-00805f9b34fb"]),
                 rng.randbytes(rng.randrange(0, 40))), T0)
    assert d.counters["unknown_characteristic"] > 0 and bad_frames(d.counters) > 100


def test_olson_names_for_the_up_api():
    assert up.olson_name(60, T0, BERLIN) == "Europe/Berlin"  # the gateway's zone has that offset then
    assert up.olson_name(120, T0, BERLIN) == "Etc/GMT-2"  # POSIX sign: UTC+2
    assert up.olson_name(-300, T0) == "Etc/GMT+5" and up.olson_name(None, T0, BERLIN) == "Europe/Berlin"
    assert up.olson_name(330, T0) == "UTC" and up.olson_name(None, T0) == "UTC"


def test_packagers_shape_windows_and_readings_for_up_and_the_hub():
    d = UpBandDriver()
    connect(d)
    info = d.feed(hrm(60), T0)[0]
    sid = info.stream(HEART_RATE_CHANNEL)
    upp, hub = UpCardiacEventPackager("up", 60, BERLIN), HubVitalsPackager("hub", 60, BERLIN)
    window = np.array([0] * 10 + [60] * 25 + [70] * 25, "<u2")
    form = {k: v[0] for k, v in parse_qs(upp.package(info, sid, 0, window, T0).body.decode()).items()}
    assert form == {"title": "Heart rate", "heart_rate": "65", "note": "mean of 50 readings over 60 s",
                    "time_created": str(int(T0)), "tz": "Europe/Berlin"}
    assert up.parse_event(form, now=T0)["heart_rate"] == 65  # the emulator's own validation takes it
    body = json.loads(hub.package(info, sid, 0, window, T0).body)
    assert body == {"timestamp": "2026-11-23T10:30:00.000+01:00", "source": "UP-class band",
                    "sourceId": f"{sid.key}/0-60", "value": 65.0}
    humanapi.parse_measurement("heart_rate", body)
    assert upp.package(info, sid, 60, np.zeros(60, "<u2"), T0) is None  # off the wrist all minute

    pressure = d.feed(bp(121, 79, datetime(2026, 11, 23, 10, 30, 0)), T0)[-1]
    p = upp.reading(pressure)
    assert (p.key, p.content_type, p.evictable) == (pressure.key, up.FORM, False)
    assert parse_qs(p.body.decode()) == {"title": ["Blood pressure"], "systolic_pressure": ["121"],
                                         "diastolic_pressure": ["79"], "heart_rate": ["70"],
                                         "time_created": [str(int(T0))], "tz": ["Europe/Berlin"]}
    h = hub.reading(pressure)
    assert h.kind == "humanapi.blood_pressure" and json.loads(h.body) == {
        "timestamp": "2026-11-23T10:30:00.000+01:00", "source": "UP-class band", "sourceId": pressure.key,
        "systolic": 121.0, "diastolic": 79.0, "heartRate": 70}
    tagged = d.feed(event(int(T0), "Palpitations", "after coffee", hr=97, tz=-300), T0)[-1]
    assert parse_qs(upp.reading(tagged).body.decode()) == {
        "title": ["Palpitations"], "note": ["after coffee"], "heart_rate": ["97"], "time_created": [str(int(T0))],
        "tz": ["Etc/GMT+5"]}
    assert json.loads(hub.reading(tagged).body)["timestamp"] == "2026-11-23T04:30:00.000-05:00"
    unrated = d.feed(event(int(T0) + 1, "Dizzy", hr=0), T0)[-1]
    assert "heart_rate" not in parse_qs(upp.reading(unrated).body.decode()) and hub.reading(unrated) is None


@pytest.fixture
async def spool(tmp_path):
    sp = AsyncSpool(tmp_path / "spool.db")
    yield sp
    await sp.close()


async def test_on_a_real_spool_readings_commit_at_once_and_a_repeat_is_spooled_once(spool, tmp_path):
    d = UpBandDriver()
    connect(d)
    pipe = DevicePipeline("band", [UpCardiacEventPackager("up", 60), HubVitalsPackager("hub", 60)], spool=spool)
    events = [ev for i in range(150) for ev in d.feed(hrm(60 + i % 3), T0 + i)]
    pressure = bp(121, 79, datetime(2026, 11, 23, 10, 30, 0))
    events += d.feed(pressure, T0 + 150)
    await pipe.handle(events)
    d2 = UpBandDriver()  # a restarted gateway has forgotten what it saw; the spool still dedups
    connect(d2)
    await pipe.handle([e for e in d2.feed(pressure, T0 + 151) if isinstance(e, Reading)])
    await spool.close()
    s = Spool(tmp_path / "spool.db")
    try:
        ups = s.due("up", now=1e12, limit=100)
        hubs = s.due("hub", now=1e12, limit=100)
    finally:
        s.close()
    # A reading is staged when it arrives, a window when it is packaged: order is kept per stream only.
    ups.sort(key=lambda p: (p.stream, p.first))
    hubs.sort(key=lambda p: (p.stream, p.first))
    assert [(p.kind, p.first, p.end) for p in ups] == [("up.cardiac_event", 0, 60), ("up.cardiac_event", 60, 120),
                                                        ("up.cardiac_event", 0, 0)]
    assert [parse_qs(p.body.decode())["heart_rate"] for p in ups] == [["61"], ["61"], ["70"]]
    assert [p.kind for p in hubs] == ["humanapi.heart_rate", "humanapi.heart_rate", "humanapi.blood_pressure"]
    assert pipe.counters["readings"] == 2 and pipe.counters["packages"] == 6
    assert pipe.counters["duplicate_packages"] == 2
    assert all(isinstance(b, SampleBlock) for b in events[1:151])
