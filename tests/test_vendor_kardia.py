"""The Kardia vendor module: body building and the validation the emulator applies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gateway.vendors import kardia
from gateway.vendors.kardia import KardiaValidationError, parse_recording, recording_body


def body(**overrides) -> dict:
    obj = json.loads(recording_body("p1", "2026-11-23T10:00:00.000+01:00", 300, 60, 500, np.arange(-5, 295)))
    obj.update(overrides)
    return obj


def test_body_round_trips_through_validation():
    rec = parse_recording(body())
    assert rec.patient_id == "p1" and rec.duration == 1000
    assert (rec.raw.frequency, rec.raw.mains_frequency, rec.raw.amplitude_resolution) == (300, 60, 500)
    assert rec.raw.lead_i.tolist() == list(range(-5, 295))
    assert rec.enhanced is None and rec.heart_rate is None and rec.determination is None


def test_the_examples_spellings_and_flat_data_are_accepted():
    raw = {"frequency": 300, "mains_freq": 50, "amplitudeResolution": 500, "samples": {"lead_I": [1, 2, 3]}}
    rec = parse_recording({"patientID": "p", "recordedAt": "2008-09-15T15:53:00+05:00", "duration": 10, "data": raw})
    assert rec.raw.mains_frequency == 50 and rec.raw.lead_i.tolist() == [1, 2, 3]


@pytest.mark.parametrize("change, message", [
    ({"patientID": ""}, "patientID is required"),
    ({"recordedAt": "2026-11-23T10:00:00"}, "must include a UTC offset"),
    ({"recordedAt": "yesterday"}, "not an ISO 8601 date-time"),
    ({"duration": 999_999}, "duration must be the samples' duration in ms (1000"),
    ({"duration": True}, "duration must be"),
    ({"heartRate": 0}, "heartRate must be an integer between 1 and 399"),
    ({"algorithmDetermination": "sinus"}, "algorithmDetermination must be one of normal"),
    ({"data": []}, "data is required and must be an object"),
    ({"note": 5}, "note must be a string"),
])
def test_bad_fields_are_named(change, message):
    with pytest.raises(KardiaValidationError) as err:
        parse_recording(body(**change))
    assert message in str(err.value)


@pytest.mark.parametrize("raw_change, message", [
    ({"frequency": 0}, "data.raw.frequency must be between 1 and 10000"),
    ({"mainsFrequency": 55}, "data.raw.mainsFrequency must be 50 or 60"),
    ({"amplitudeResolution": "500"}, "data.raw.amplitudeResolution is required and must be an integer"),
    ({"samples": {"leadI": []}}, "must be a non-empty array"),
    ({"samples": {"leadI": [1, 2.5]}}, "must contain only integers"),
    ({"samples": {"leadI": [1, True]}}, "must contain only integers"),
    ({"samples": {"leadI": [2**31]}}, "must fit in 32 bits"),
    ({"samples": [1, 2]}, "data.raw.samples must be an object"),
])
def test_bad_signal_fields_are_named(raw_change, message):
    obj = body()
    obj["data"]["raw"].update(raw_change)
    del obj["duration"]  # optional on input: only the signal field is at fault
    with pytest.raises(KardiaValidationError) as err:
        parse_recording(obj)
    assert message in str(err.value)


def test_enhanced_must_match_raw():
    obj = body()
    obj["data"]["enhanced"] = dict(obj["data"]["raw"], samples={"leadI": [1, 2]})
    with pytest.raises(KardiaValidationError, match="enhanced must have the raw signal's frequency and length"):
        parse_recording(obj)


def test_time_formatting_keeps_milliseconds_and_offset():
    from zoneinfo import ZoneInfo

    assert kardia.format_time(1_700_000_000.1234, ZoneInfo("Asia/Karachi")) == "2023-11-15T03:13:20.123+05:00"
    assert kardia.format_time(0.0) == "1970-01-01T00:00:00.000+00:00"
