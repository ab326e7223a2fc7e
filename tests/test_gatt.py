"""The standard GATT characteristics (gateway/protocols/gatt.py) against worked byte strings."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from gateway.protocols import gatt


@pytest.mark.parametrize("raw, value, canonical", [
    (0x0078, 120.0, True),     # exponent 0, mantissa 120
    (0x0050, 80.0, True),
    (0xF16C, 36.4, True),      # exponent -1 (0xF), mantissa 0x16C = 364
    (0xF3A5, 93.3, True),      # a mean arterial pressure of 93.3
    (0xFF9C, -10.0, False),    # exponent -1, mantissa 0xF9C = -100 (we send -10 at exponent 0)
    (0x2001, 100.0, False),    # exponent 2, mantissa 1 (we send 100 at exponent 0)
    (0x11F4, 5000.0, True),    # exponent 1, mantissa 500: 5000 does not fit 12 bits at exponent 0
    (0x0000, 0.0, True),
    (0x07FD, 2045.0, True),    # the largest mantissa that is not a special
    (0x0803, -2045.0, True),   # the smallest
])
def test_sfloat_numbers(raw, value, canonical):
    assert gatt.decode_sfloat(raw) == value
    assert gatt.decode_sfloat(gatt.encode_sfloat(value)) == value
    assert (gatt.encode_sfloat(value) == raw) == canonical


def test_sfloat_special_values():
    assert math.isnan(gatt.decode_sfloat(0x07FF)) and gatt.encode_sfloat(math.nan) == 0x07FF
    assert gatt.decode_sfloat(0x0800) == gatt.NRES and gatt.encode_sfloat(gatt.NRES) == 0x0800
    assert gatt.decode_sfloat(0x07FE) == math.inf and gatt.encode_sfloat(math.inf) == 0x07FE
    assert gatt.decode_sfloat(0x0802) == -math.inf and gatt.encode_sfloat(-math.inf) == 0x0802
    with pytest.raises(gatt.GattError, match="reserved"):
        gatt.decode_sfloat(0x0801)
    assert gatt.encode_sfloat(120, exponent=-1) == 0xF4B0  # 1200 x 10^-1, as asked
    with pytest.raises(gatt.GattError, match="does not fit"):
        gatt.encode_sfloat(5000, exponent=0)
    assert gatt.decode_sfloat(gatt.encode_sfloat(math.pi)) == pytest.approx(math.pi, rel=1e-3)  # rounded to fit


@pytest.mark.parametrize("hexstr, rate, contact, energy, rrs, wide", [
    ("0048", 72, None, None, [], False),                  # uint8 rate, no contact detection
    ("0448", 72, False, None, [], False),                 # contact supported, not detected
    ("16485b034103", 72, True, None, [859, 833], False),  # contact; RR 859/1024 s and 833/1024 s
    ("192c01e8030004", 300, None, 1000, [1024], True),    # uint16 rate 300, 1000 kJ, RR exactly 1 s
    ("0148 00".replace(" ", ""), 72, None, None, [], True),  # a uint16 72 (allowed, if wasteful)
])
def test_heart_rate_measurement(hexstr, rate, contact, energy, rrs, wide):
    m = gatt.decode_heart_rate(bytes.fromhex(hexstr))
    assert (m.heart_rate, m.sensor_contact, m.energy_expended_kj, m.rr_intervals, m.uint16) == (
        rate, contact, energy, rrs, wide)
    assert gatt.encode_heart_rate(m).hex() == hexstr
    assert [rr * 1000 / gatt.RR_UNITS_PER_SECOND for rr in m.rr_intervals] == [r * 1000 / 1024 for r in rrs]


@pytest.mark.parametrize("hexstr, reason", [
    ("00", "shorter than"), ("0148", "cut short"), ("0848e8", "energy expended is cut short"),
    ("10485b", "odd length"), ("00480a", "bytes after"),
])
def test_heart_rate_measurement_refusals(hexstr, reason):
    with pytest.raises(gatt.GattError, match=reason):
        gatt.decode_heart_rate(bytes.fromhex(hexstr))


def test_blood_pressure_measurement_worked_example():
    # flags 0x1E: mmHg, time stamp, pulse rate, user id, status; 120/80 mmHg, MAP 93.3,
    # 2026-11-23 10:30:00, pulse 72, user 1, status bit 2 (irregular pulse).
    raw = bytes.fromhex("1e" "7800" "5000" "a5f3" "ea070b170a1e00" "4800" "01" "0400")
    m = gatt.decode_blood_pressure(raw)
    assert (m.systolic, m.diastolic, m.mean_arterial, m.kpa) == (120.0, 80.0, 93.3, False)
    assert (m.time_stamp, m.pulse_rate, m.user_id, m.status) == (datetime(2026, 11, 23, 10, 30), 72.0, 1, 0x0004)
    assert gatt.encode_blood_pressure(m) == raw
    kpa = gatt.decode_blood_pressure(bytes.fromhex("01" "a0f0" "aaf0" "ff07"))  # 16.0/17.0 kPa, MAP NaN
    assert (kpa.systolic, kpa.diastolic, kpa.kpa, kpa.pulse_rate) == (16.0, 17.0, True, None)
    assert math.isnan(kpa.mean_arterial)


@pytest.mark.parametrize("hexstr, reason", [
    ("00780050", "shorter than"), ("02" "7800" "5000" "a5f3" "ea07", "cut short"),
    ("0278005000a5f3ea070d200a1e00", "not a date"), ("00" "7800" "5000" "a5f3" "ff", "bytes after"),
    ("0001085000a5f3", "reserved"),
])
def test_blood_pressure_refusals(hexstr, reason):
    with pytest.raises(gatt.GattError, match=reason):
        gatt.decode_blood_pressure(bytes.fromhex(hexstr))


def test_battery_device_information_and_uuids():
    assert gatt.decode_battery_level(b"\x57") == 87
    for bad in (b"", b"\x65", b"\x01\x02"):
        with pytest.raises(gatt.GattError):
            gatt.decode_battery_level(bad)
    assert gatt.decode_string(b"UP3\x00", "model") == "UP3"
    with pytest.raises(gatt.GattError, match="model: not UTF-8"):
        gatt.decode_string(b"\xff", "model")
    assert gatt.uuid16(gatt.HEART_RATE_MEASUREMENT) == "00002a37-0000-1000-8000-00805f9b34fb"
