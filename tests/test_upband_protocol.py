"""The UP-class band's GATT values (firmware_specs/upband.md) against the golden vectors."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from gateway.protocols import gatt, upband
from tests.conftest import ROOT, VECTORS


@pytest.fixture(scope="module")
def vectors() -> dict:
    return json.loads((VECTORS / "upband.json").read_text())


def decode(uuid: str, raw: bytes):
    if uuid == "2a37":
        return gatt.decode_heart_rate(raw)
    if uuid == "2a35":
        return gatt.decode_blood_pressure(raw)
    if uuid == upband.EVENT_UUID:
        return upband.decode_event(raw)
    if uuid == "2a0f":
        return gatt.decode_local_time_information(raw)
    return None


def test_every_value_decodes_to_its_meaning_and_encodes_back(vectors):
    seen = set()
    for v in vectors["values"]:
        raw, want = bytes.fromhex(v["hex"]), v["meaning"]
        got = decode(v["uuid"], raw)
        seen.add(v["uuid"])
        if v["uuid"] == "2a37":
            assert (got.heart_rate, got.sensor_contact, got.rr_intervals) == (
                want["heart_rate"], want["sensor_contact"], want["rr_intervals"]), v["name"]
            assert got.energy_expended_kj == want.get("energy_expended_kj")
            assert gatt.encode_heart_rate(got) == raw
        elif v["uuid"] == "2a35":
            assert (got.systolic, got.diastolic, got.mean_arterial, got.pulse_rate, got.user_id, got.status) == (
                want["systolic"], want["diastolic"], want["mean_arterial"], want["pulse_rate"], want["user_id"],
                want["status"]), v["name"]
            assert got.time_stamp == datetime.fromisoformat(want["time_stamp"]) and not got.kpa
            again = gatt.decode_blood_pressure(gatt.encode_blood_pressure(got))  # SFLOATs have several spellings
            assert again == got
        elif v["uuid"] == upband.EVENT_UUID:
            assert got == upband.CardiacEvent(want["time"], want["tz_minutes"], want["title"], want["note"],
                                              want["heart_rate"])
            assert upband.encode_event(got) == raw
        elif v["uuid"] == "2a0f":
            assert got == want["utc_offset_minutes"], v["name"]
            if got is not None:
                assert gatt.encode_local_time_information(got - (60 if raw[1] == 4 else 0),
                                                          60 if raw[1] == 4 else 0) == raw
        elif v["uuid"] == "2a19":
            assert gatt.decode_battery_level(raw) == want["battery_level"]
        elif v["uuid"] == "2a38":
            assert raw[0] == upband.WRIST
    assert seen >= {"2a37", "2a35", upband.EVENT_UUID, "2a19", "2a38", "2a49", "2a0f"}


def test_every_reject_is_refused_with_its_reason(vectors):
    for v in vectors["rejects"]:
        with pytest.raises(gatt.GattError, match=v["reason"]):
            decode(v["uuid"], bytes.fromhex(v["hex"]))


def test_the_spec_names_the_codes_uuids_and_its_worked_example():
    spec = (ROOT / "firmware_specs" / "upband.md").read_text()
    assert upband.EVENTS_SERVICE_UUID in spec and upband.EVENT_UUID in spec
    raw = upband.encode_event(upband.CardiacEvent(1795426200, 60, "Palpitations", "a flutter after coffee", 97))
    for line in (raw[:4], raw[4:6], raw[6:7], raw[7:8], raw[8:20]):  # the worked example's lines, byte for byte
        assert line.hex(" ") in spec
