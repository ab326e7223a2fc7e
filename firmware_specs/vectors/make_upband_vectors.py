#!/usr/bin/env python3
"""Golden vectors of the UP-class band's GATT values (firmware_specs/upband.md), written with struct
from the spec alone: nothing here imports the gateway, so the vectors check its codecs."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def sfloat(mantissa: int, exponent: int = 0) -> int:
    """An IEEE-11073 SFLOAT from its parts (4-bit exponent high, 12-bit mantissa low, both two's complement)."""
    return ((exponent & 0xF) << 12) | (mantissa & 0x0FFF)


def hrm(rate: int, rrs: list[int], contact: bool = True, wide: bool = False, energy: int | None = None) -> bytes:
    flags = (0x01 if wide else 0) | 0x04 | (0x02 if contact else 0) | (0x08 if energy is not None else 0) \
        | (0x10 if rrs else 0)
    out = struct.pack("<B", flags) + struct.pack("<H" if wide else "<B", rate)
    if energy is not None:
        out += struct.pack("<H", energy)
    return out + b"".join(struct.pack("<H", r) for r in rrs)


def bpm(sys_: int, dia: int, map_: int, map_exp: int, when: tuple | None, pulse: int | None, user: int | None,
        status: int | None) -> bytes:
    flags = (0x02 if when else 0) | (0x04 if pulse is not None else 0) | (0x08 if user is not None else 0) \
        | (0x10 if status is not None else 0)
    out = struct.pack("<BHHH", flags, sfloat(sys_), sfloat(dia), sfloat(map_, map_exp))
    if when:
        out += struct.pack("<HBBBBB", *when)
    if pulse is not None:
        out += struct.pack("<H", sfloat(pulse))
    if user is not None:
        out += struct.pack("<B", user)
    if status is not None:
        out += struct.pack("<H", status)
    return out


def event(t: int, tz: int, title: str, note: str = "", hr: int = 0) -> bytes:
    return struct.pack("<IhBB", t, tz, hr, len(title.encode())) + title.encode() + note.encode()


def local_time(tz_quarters: int, dst: int) -> bytes:
    return struct.pack("<bB", tz_quarters, dst)


def build() -> dict:
    t0 = 1_795_426_200  # 2026-11-23 09:30:00 UTC
    values = [
        {"name": "hrm_rest", "uuid": "2a37", "hex": hrm(62, [991, 975]).hex(),
         "meaning": {"heart_rate": 62, "sensor_contact": True, "rr_intervals": [991, 975]},
         "note": "uint8 rate, contact supported and detected, two RR intervals (0.968 and 0.952 s)"},
        {"name": "hrm_off_wrist", "uuid": "2a37", "hex": hrm(0, [], contact=False).hex(),
         "meaning": {"heart_rate": 0, "sensor_contact": False, "rr_intervals": []},
         "note": "the band is off the wrist: contact supported, not detected"},
        {"name": "hrm_run", "uuid": "2a37", "hex": hrm(152, [404], energy=210).hex(),
         "meaning": {"heart_rate": 152, "sensor_contact": True, "rr_intervals": [404], "energy_expended_kj": 210},
         "note": "running: energy expended 210 kJ, one RR interval (0.395 s)"},
        {"name": "bpm_morning", "uuid": "2a35",
         "hex": bpm(121, 79, 930, -1, (2026, 11, 23, 8, 0, 0), 64, 1, 0).hex(),
         "meaning": {"systolic": 121.0, "diastolic": 79.0, "mean_arterial": 93.0, "time_stamp": "2026-11-23T08:00:00",
                     "pulse_rate": 64.0, "user_id": 1, "status": 0},
         "note": "mmHg; MAP 930 x 10^-1; time stamp, pulse, user 1, status all clear"},
        {"name": "bpm_irregular_pulse", "uuid": "2a35",
         "hex": bpm(138, 88, 1047, -1, (2026, 11, 23, 20, 0, 0), 91, 1, 0x0004).hex(),
         "meaning": {"systolic": 138.0, "diastolic": 88.0, "mean_arterial": 104.7,
                     "time_stamp": "2026-11-23T20:00:00", "pulse_rate": 91.0, "user_id": 1, "status": 4},
         "note": "status bit 2: irregular pulse detected"},
        {"name": "event_palpitations", "uuid": "3bb00002-e49d-4798-87cd-24b825c1db98",
         "hex": event(t0, 60, "Palpitations", "a flutter after coffee", 97).hex(),
         "meaning": {"time": t0, "tz_minutes": 60, "title": "Palpitations", "note": "a flutter after coffee",
                     "heart_rate": 97}},
        {"name": "event_no_note", "uuid": "3bb00002-e49d-4798-87cd-24b825c1db98",
         "hex": event(t0 + 3600, -300, "Dizzy").hex(),
         "meaning": {"time": t0 + 3600, "tz_minutes": -300, "title": "Dizzy", "note": "", "heart_rate": 0},
         "note": "heart rate 0: the band did not measure it"},
        {"name": "local_time_berlin_winter", "uuid": "2a0f", "hex": local_time(4, 0).hex(),
         "meaning": {"utc_offset_minutes": 60}, "note": "time zone 4 x 15 min, standard time"},
        {"name": "local_time_new_york_summer", "uuid": "2a0f", "hex": local_time(-20, 4).hex(),
         "meaning": {"utc_offset_minutes": -240}, "note": "-5 h standard time plus one hour of DST"},
        {"name": "local_time_india", "uuid": "2a0f", "hex": local_time(22, 0).hex(),
         "meaning": {"utc_offset_minutes": 330}, "note": "+5:30"},
        {"name": "local_time_unknown", "uuid": "2a0f", "hex": local_time(-128, 0).hex(),
         "meaning": {"utc_offset_minutes": None}, "note": "-128: the device does not know its time zone"},
        {"name": "battery", "uuid": "2a19", "hex": "4d", "meaning": {"battery_level": 77}},
        {"name": "body_sensor_location", "uuid": "2a38", "hex": "02", "meaning": {"location": "wrist"}},
        {"name": "bp_feature", "uuid": "2a49", "hex": struct.pack("<H", 0x0004).hex(),
         "meaning": {"irregular_pulse_detection": True}},
    ]
    rejects = [
        {"name": "event_tz_out_of_range", "uuid": "3bb00002-e49d-4798-87cd-24b825c1db98",
         "hex": event(t0, 900, "x").hex(), "reason": "UTC offset"},
        {"name": "event_empty_title", "uuid": "3bb00002-e49d-4798-87cd-24b825c1db98",
         "hex": struct.pack("<IhBB", t0, 0, 70, 0).hex() + "00", "reason": "title length"},
        {"name": "event_title_past_end", "uuid": "3bb00002-e49d-4798-87cd-24b825c1db98",
         "hex": struct.pack("<IhBB", t0, 0, 70, 9).hex() + b"abc".hex(), "reason": "title length"},
        {"name": "event_not_utf8", "uuid": "3bb00002-e49d-4798-87cd-24b825c1db98",
         "hex": struct.pack("<IhBB", t0, 0, 70, 2).hex() + "fffe", "reason": "UTF-8"},
        {"name": "local_time_zone_out_of_range", "uuid": "2a0f", "hex": local_time(57, 0).hex(),
         "reason": "time zone"},
        {"name": "local_time_reserved_dst", "uuid": "2a0f", "hex": local_time(4, 1).hex(), "reason": "DST"},
        {"name": "hrm_odd_rr", "uuid": "2a37", "hex": (hrm(62, [991]) + b"\x01").hex(), "reason": "odd length"},
        {"name": "bpm_cut", "uuid": "2a35", "hex": bpm(121, 79, 930, -1, (2026, 11, 23, 8, 0, 0), None, None,
                                                      None)[:10].hex(), "reason": "cut short"},
    ]
    return {"device": "upband", "spec": "firmware_specs/upband.md", "values": values, "rejects": rejects}


if __name__ == "__main__":
    out = Path(__file__).with_name("upband.json")
    out.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {out}")
