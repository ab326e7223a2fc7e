"""Hexoskin API shapes shared by the uplink and the emulator (../shared/vendor-docs/hexoskin-api.md).

Requests are signed with an API key: `X-HEXOAPISIGNATURE = sha1(private_key + str(unix_seconds)
+ full_url_with_query).hexdigest()`, with the public key in `X-HEXOAPIKEY` and the plain Unix
seconds in `X-HEXOTIMESTAMP` ("alphabetic: Key, Timestamp, Url"). Users authenticate with HTTP
Basic (e-mail and password).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

API_PREFIX = "/api/v1/"
DATA_PATH = API_PREFIX + "data/"
MAX_POINTS = 65535  # per datatype in a JSON or CSV answer; more are subsampled
KEY_HEADER = "X-HEXOAPIKEY"
TIMESTAMP_HEADER = "X-HEXOTIMESTAMP"
SIGNATURE_HEADER = "X-HEXOAPISIGNATURE"
CACHE_HEADER = "X-HexoCache"
TICKS_PER_SECOND = 256  # a HexoTimestamp is Unix time in 1/256 s
MAX_TIMESTAMP = 253_402_300_800 * TICKS_PER_SECOND - 1  # the last tick of year 9999

# Datatype ids the document and the device facts name: raw channels, then derived ones.
ECG_I, ECG_II, ECG_III = 4113, 4114, 4115
RESP_THORACIC, RESP_ABDOMINAL = 4129, 4130
ACCEL_X, ACCEL_Y, ACCEL_Z = 4145, 4146, 4147
RR_INTERVAL, HEART_RATE, BREATHING_RATE = 18, 19, 33
CHANNEL_DATATYPES = {"leadI": ECG_I, "leadII": ECG_II, "leadIII": ECG_III, "respThoracic": RESP_THORACIC,
                     "respAbdominal": RESP_ABDOMINAL, "accelX": ACCEL_X, "accelY": ACCEL_Y, "accelZ": ACCEL_Z}


def signature(private_key: str, timestamp: int, url: str) -> str:
    """The request signature: SHA-1 of private key, Unix seconds and the full URL, in that order."""
    return hashlib.sha1(f"{private_key}{timestamp}{url}".encode()).hexdigest()


def signed_headers(public_key: str, private_key: str, url: str, timestamp: int) -> dict[str, str]:
    """The three headers that sign one request for `url` (scheme, host, path and query)."""
    return {KEY_HEADER: public_key, TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(private_key, timestamp, url)}


@dataclass(frozen=True)
class Datatype:
    """A Hexoskin datatype: id, name, rate (None: events at any time), binary file name, meaning."""

    dataid: int
    name: str
    freq: float | None
    file: str
    info: str

    @property
    def hexo_freq(self) -> int | None:
        """HexoTimestamp ticks between samples (1 for ECG), as the datatype list's `hexo_freq`."""
        return None if self.freq is None else int(round(TICKS_PER_SECOND / self.freq))


# The datatypes this project stores or derives, with the facts of ../shared/notes/vendor-and-device-facts.md.
DATATYPES = {d.dataid: d for d in (
    Datatype(ECG_I, "ECG_I", 256, "ECG_I", "ECG lead I, 0.0064 mV per count"),
    Datatype(ECG_II, "ECG_II", 256, "ECG_II", "ECG lead II, 0.0064 mV per count"),
    Datatype(ECG_III, "ECG_III", 256, "ECG_III", "ECG lead III, 0.0064 mV per count"),
    Datatype(RESP_THORACIC, "RESP_THORACIC", 128, "respiration_thoracic", "Thoracic respiration band, arbitrary units"),
    Datatype(RESP_ABDOMINAL, "RESP_ABDOMINAL", 128, "respiration_abdominal",
             "Abdominal respiration band, arbitrary units"),
    Datatype(ACCEL_X, "ACC_X", 64, "acceleration_X", "Acceleration X, 1/256 g per count"),
    Datatype(ACCEL_Y, "ACC_Y", 64, "acceleration_Y", "Acceleration Y, 1/256 g per count"),
    Datatype(ACCEL_Z, "ACC_Z", 64, "acceleration_Z", "Acceleration Z, 1/256 g per count"),
    Datatype(HEART_RATE, "HEART_RATE", 1, "heart_rate", "Heart rate, bpm"),
    Datatype(BREATHING_RATE, "BREATHING_RATE", 1, "breathing_rate", "Breathing rate, breaths per minute"),
    Datatype(49, "ACTIVITY", 1, "activity", "Activity, 1/256 g"),
    Datatype(53, "CADENCE", 1, "cadence", "Cadence, steps per minute"),
    Datatype(RR_INTERVAL, "RR_INTERVAL", None, "RR_interval", "RR interval ending at the beat, 1/256 s"),
    Datatype(17, "QRS", None, "QRS", "QRS detected"),
    Datatype(52, "STEP", None, "step", "Step detected"),
    # Named by the document's datatype list and the device facts; the names of these are this project's.
    Datatype(16, "ECG_CHANNEL_CHAR", 256, "ECG_channel_char", "1 to 3 leads ECG channel(s)."),
    Datatype(208, "RECSTR_ANNOT_CHAR", None, "recorder_start_annotation", "Recorder start annotation."),
    Datatype(1000, "HR_QUALITY", 1, "heart_rate_quality", "Heart rate quality flags (0x02 disconnected,"
             " 0x04 50/60 Hz interference, 0x08 saturated, 0x10 artefacts, 0x20 unreliable RR)"),
    Datatype(1001, "BR_QUALITY", 1, "breathing_rate_quality", "Breathing rate quality flags"),
    Datatype(1006, "ECG_QUALITY", 1, "ECG_quality", "ECG quality flags"),
    Datatype(36, "MINUTE_VENTILATION", 1, "minute_ventilation", "Minute ventilation"),
    Datatype(37, "TIDAL_VOLUME", 1, "tidal_volume", "Tidal volume, 13.28 mL per count"),
    Datatype(42, "ENERGY", 1, "energy", "Energy expenditure"),
    Datatype(66, "SPO2", 1, "SPO2", "Oxygen saturation, %"),
    Datatype(247, "BATTERY", 1, "battery", "Battery level"),
    Datatype(34, "INSPIRATION", None, "inspiration", "Inspiration detected"),
    Datatype(35, "EXPIRATION", None, "expiration", "Expiration detected"),
    Datatype(1004, "RR_QUALITY", None, "RR_interval_quality", "RR interval quality flags"),
    Datatype(272, "HRV_SDNN", None, "HRV_SDNN", "Heart rate variability, SDNN, every 300 s"),
    Datatype(273, "HRV_LF_NORM", None, "HRV_LF_normalized", "Heart rate variability, LF norm, every 300 s"),
    Datatype(276, "HRV_LF", None, "HRV_LF", "Heart rate variability, LF power, every 300 s"),
    Datatype(277, "HRV_HF", None, "HRV_HF", "Heart rate variability, HF power, every 300 s"),
    Datatype(278, "HRV_RMSSD", None, "HRV_RMSSD", "Heart rate variability, RMSSD, every 300 s"),
)}


def series(timestamps: np.ndarray, values: np.ndarray) -> list[list[int]]:
    """A datatype's `[[hexotimestamp, value], ...]` series (integers, built in C, not per sample)."""
    return np.column_stack((np.asarray(timestamps, dtype=np.int64),
                            np.asarray(values, dtype=np.int64))).tolist()


def data_body(device_id: str, session_start: int, firmware: str, data: dict[int, list[list[int]]]) -> bytes:
    """One upload to POST /api/v1/data/: the record it belongs to and its datatypes' series.

    How a shirt uploads is not public; this is the project's shape. The record is named by
    device and session start (HexoTimestamp), so the receiver finds or creates it.
    """
    body: dict[str, Any] = {"record": {"device": device_id, "start": int(session_start), "firmware_rev": firmware},
                            "data": {str(k): v for k, v in data.items()}}
    return json.dumps(body, separators=(",", ":")).encode()
