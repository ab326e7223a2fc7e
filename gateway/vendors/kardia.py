"""Kardia Pro API (vendor-docs/kardia-pro-api.md): field names, shapes, limits and validation.

Used by the gateway's packager and uplink and by the Kardia emulator, so a field name is
written once. Where the vendor document contradicts itself, the object tables win on output
(`mainsFrequency`, `leadI`); the examples' spellings (`mains_freq`, `lead_I`) are accepted on
input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from gateway.core.timefmt import iso_with_offset

# Field names (the document's object tables).
PATIENT_ID = "patientID"
RECORDED_AT = "recordedAt"
DURATION = "duration"
HEART_RATE = "heartRate"
DETERMINATION = "algorithmDetermination"
NOTE = "note"
DATA = "data"
RAW = "raw"
ENHANCED = "enhanced"
FREQUENCY = "frequency"
MAINS_FREQUENCY = "mainsFrequency"
AMPLITUDE_RESOLUTION = "amplitudeResolution"
SAMPLES = "samples"
LEAD_I = "leadI"
# Older spellings from the document's examples, accepted on input.
ALIASES = {MAINS_FREQUENCY: "mains_freq", LEAD_I: "lead_I"}

DETERMINATIONS = ("normal", "afib", "unclassified", "bradycardia", "tachycardia", "too_short", "too_long",
                  "unreadable", "no_analysis")
MAINS_FREQUENCIES = (50, 60)
PATIENTS_LIMIT = (1, 500, 100)  # min, max, default
RECORDINGS_LIMIT = (1, 50, 10)
RECORDINGS_PATH = "/v1/recordings"
MAX_SAMPLES = 1_000 * 600  # ten minutes at 1 kHz: far beyond any KardiaMobile strip
INT32 = (-(2**31), 2**31 - 1)


class KardiaValidationError(ValueError):
    """A recording object that breaks the vendor's rules; the message names the field."""


format_time = iso_with_offset  # recordedAt: ISO 8601 with milliseconds and a UTC offset


def parse_time(text: Any, field: str = RECORDED_AT) -> datetime:
    """Parse an ISO 8601 time that carries a UTC offset."""
    if not isinstance(text, str):
        raise KardiaValidationError(f"{field} must be an ISO 8601 string with a UTC offset")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise KardiaValidationError(f"{field} is not an ISO 8601 date-time: {text[:40]!r}") from None
    if value.tzinfo is None:
        raise KardiaValidationError(f"{field} must include a UTC offset, e.g. 2008-09-15T15:53:00+05:00")
    return value


def duration_ms(n_samples: int, frequency: float) -> int:
    """Recording duration in whole milliseconds."""
    return round(n_samples * 1000 / frequency)


def samples_json(samples: np.ndarray) -> str:
    """A JSON array of ints from a numpy array, without a Python loop per sample in our code."""
    return json.dumps(np.asarray(samples).tolist(), separators=(",", ":"))


def recording_body(patient_id: str, recorded_at: str, frequency: int, mains_frequency: int,
                   amplitude_resolution: int, samples: np.ndarray, *, heart_rate: int | None = None,
                   determination: str | None = None, enhanced: np.ndarray | None = None,
                   note: str | None = None) -> bytes:
    """The JSON body of POST /v1/recordings (this project's ingest extension)."""
    def data_object(marker: str) -> dict:
        return {FREQUENCY: frequency, MAINS_FREQUENCY: mains_frequency, AMPLITUDE_RESOLUTION: amplitude_resolution,
                SAMPLES: {LEAD_I: marker}}

    obj: dict[str, Any] = {PATIENT_ID: patient_id, RECORDED_AT: recorded_at,
                           DURATION: duration_ms(len(samples), frequency),
                           DATA: {RAW: data_object("@RAW@")}}
    if enhanced is not None:
        obj[DATA][ENHANCED] = data_object("@ENH@")
    if heart_rate is not None:
        obj[HEART_RATE] = heart_rate
    if determination is not None:
        obj[DETERMINATION] = determination
    if note is not None:
        obj[NOTE] = note
    text = json.dumps(obj, separators=(",", ":"))
    # Splice the sample arrays in: json.dumps of a dict holding 9,000-element lists is slower.
    text = text.replace('"@RAW@"', samples_json(samples), 1)
    if enhanced is not None:
        text = text.replace('"@ENH@"', samples_json(enhanced), 1)
    return text.encode()


@dataclass
class SignalIn:
    """A validated ECG data object (`raw` or `enhanced`)."""

    frequency: int
    mains_frequency: int
    amplitude_resolution: int
    lead_i: np.ndarray  # int32


@dataclass
class RecordingIn:
    """A validated recording as POSTed to the ingest endpoint."""

    patient_id: str
    recorded_at: str  # as sent, validated
    duration: int
    raw: SignalIn
    enhanced: SignalIn | None
    heart_rate: int | None
    determination: str | None
    note: str | None


def _int(obj: dict, name: str, where: str, *, lo: int, hi: int, alias: str | None = None) -> int:
    value = obj.get(name, obj.get(alias) if alias else None)
    if isinstance(value, bool) or not isinstance(value, int):
        raise KardiaValidationError(f"{where}{name} is required and must be an integer")
    if not lo <= value <= hi:
        raise KardiaValidationError(f"{where}{name} must be between {lo} and {hi}, not {value}")
    return value


def _signal(obj: Any, where: str) -> SignalIn:
    if not isinstance(obj, dict):
        raise KardiaValidationError(f"{where} must be an object")
    freq = _int(obj, FREQUENCY, where + ".", lo=1, hi=10_000)
    mains = _int(obj, MAINS_FREQUENCY, where + ".", lo=50, hi=60, alias=ALIASES[MAINS_FREQUENCY])
    if mains not in MAINS_FREQUENCIES:
        raise KardiaValidationError(f"{where}.{MAINS_FREQUENCY} must be 50 or 60, not {mains}")
    res = _int(obj, AMPLITUDE_RESOLUTION, where + ".", lo=1, hi=10**9)
    samples = obj.get(SAMPLES)
    if not isinstance(samples, dict):
        raise KardiaValidationError(f"{where}.{SAMPLES} must be an object with {LEAD_I}")
    lead = samples.get(LEAD_I, samples.get(ALIASES[LEAD_I]))
    if not isinstance(lead, list) or not lead:
        raise KardiaValidationError(f"{where}.{SAMPLES}.{LEAD_I} must be a non-empty array of integers")
    if len(lead) > MAX_SAMPLES:
        raise KardiaValidationError(f"{where}.{SAMPLES}.{LEAD_I} has more than {MAX_SAMPLES} samples")
    # Reject floats, bools and strings before numpy would coerce them.
    if not all(type(v) is int for v in lead):
        raise KardiaValidationError(f"{where}.{SAMPLES}.{LEAD_I} must contain only integers (ADC units)")
    arr = np.array(lead, dtype=np.int64)
    if arr.min() < INT32[0] or arr.max() > INT32[1]:
        raise KardiaValidationError(f"{where}.{SAMPLES}.{LEAD_I} values must fit in 32 bits")
    return SignalIn(freq, mains, res, arr.astype(np.int32))


def parse_recording(obj: Any) -> RecordingIn:
    """Validate an ingest body; raise KardiaValidationError naming the first bad field."""
    if not isinstance(obj, dict):
        raise KardiaValidationError("the body must be a JSON object")
    patient = obj.get(PATIENT_ID)
    if not isinstance(patient, str) or not patient:
        raise KardiaValidationError(f"{PATIENT_ID} is required and must be a string")
    recorded_at = obj.get(RECORDED_AT)
    parse_time(recorded_at)
    data = obj.get(DATA)
    if not isinstance(data, dict):
        raise KardiaValidationError(f"{DATA} is required and must be an object")
    # `data.raw` is the documented shape; the per-patient example puts the signal in `data` itself.
    raw = _signal(data[RAW], f"{DATA}.{RAW}") if RAW in data else _signal(data, DATA)
    enhanced = _signal(data[ENHANCED], f"{DATA}.{ENHANCED}") if data.get(ENHANCED) is not None else None
    if enhanced is not None and (enhanced.frequency != raw.frequency or len(enhanced.lead_i) != len(raw.lead_i)):
        raise KardiaValidationError(f"{DATA}.{ENHANCED} must have the raw signal's frequency and length")
    expected = duration_ms(len(raw.lead_i), raw.frequency)
    duration = obj.get(DURATION, expected)
    if isinstance(duration, bool) or not isinstance(duration, int) or abs(duration - expected) > 1:
        raise KardiaValidationError(
            f"{DURATION} must be the samples' duration in ms ({expected} for {len(raw.lead_i)} samples "
            f"at {raw.frequency} Hz), not {duration!r}")
    hr = obj.get(HEART_RATE)
    if hr is not None and (isinstance(hr, bool) or not isinstance(hr, int) or not 0 < hr < 400):
        raise KardiaValidationError(f"{HEART_RATE} must be an integer between 1 and 399")
    det = obj.get(DETERMINATION)
    if det is not None and det not in DETERMINATIONS:
        raise KardiaValidationError(f"{DETERMINATION} must be one of {', '.join(DETERMINATIONS)}")
    note = obj.get(NOTE)
    if note is not None and (not isinstance(note, str) or len(note) > 2000):
        raise KardiaValidationError(f"{NOTE} must be a string of at most 2000 characters")
    return RecordingIn(patient, recorded_at, duration, raw, enhanced, hr, det, note)


def signal_object(frequency: int, mains_frequency: int, amplitude_resolution: int, lead_i: list[int]) -> dict:
    """The ECG data object as the API returns it."""
    return {FREQUENCY: frequency, MAINS_FREQUENCY: mains_frequency, AMPLITUDE_RESOLUTION: amplitude_resolution,
            SAMPLES: {LEAD_I: lead_i}}

