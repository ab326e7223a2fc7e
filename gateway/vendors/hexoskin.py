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
    # The others the document and the device notes name, and those of Hexoskin's own public file
    # converter (its table of file names, units, rates and datatype ids). The API's `name` is known
    # only for 16, 208, 246 and 247 (the *_CHAR ones); the others' names are this project's.
    Datatype(16, "ECG_CHANNEL_CHAR", 256, "ECG_channel_char", "1 to 3 leads ECG channel(s)."),
    Datatype(208, "RECSTR_ANNOT_CHAR", None, "recorder_start_annotation", "Recorder start annotation."),
    Datatype(64, "PPG", 64, "PPG", "Photoplethysmogram, arbitrary units"),
    Datatype(1006, "ECG_QUALITY", 1, "ECG_quality", "ECG quality flags"),
    Datatype(1000, "HEART_RATE_QUALITY", 1, "heart_rate_quality", "Heart rate quality flags (0x02 disconnected,"
             " 0x04 50/60 Hz interference, 0x08 saturated, 0x10 artefacts, 0x20 unreliable RR)"),
    Datatype(1001, "BREATHING_RATE_QUALITY", 1, "breathing_rate_quality", "Breathing rate quality flags"),
    Datatype(36, "MINUTE_VENTILATION", 1, "minute_ventilation", "Minute ventilation, raw, 13.28 mL/min per count"),
    Datatype(37, "TIDAL_VOLUME", 1, "tidal_volume", "Tidal volume, raw, 13.28 mL per count"),
    Datatype(38, "MINUTE_VENTILATION_ADJUSTED", 1, "minute_ventilation_adjusted",
             "Minute ventilation, adjusted, 10 mL/min per count"),
    Datatype(39, "TIDAL_VOLUME_ADJUSTED", 1, "tidal_volume_adjusted", "Tidal volume, adjusted, mL"),
    Datatype(42, "ENERGY_MIFFLIN_KEYTEL", 1, "energy_mifflin_keytel", "Energy expenditure (Mifflin, Keytel), W"),
    Datatype(54, "ACTIGRAPHY", 1, "actigraphy", "Actigraphy, 1/256 g"),
    Datatype(81, "TEMPERATURE", 1, "temperature_celcius", "Temperature, degrees Celsius"),
    Datatype(338, "RESP_TMPR", 1, "RESP_TMPR", "Respiration temperature, 0.01 degrees Celsius"),
    Datatype(98, "SYSTOLIC_PRESSURE", 1, "systolic_pressure", "Systolic pressure estimate, mmHg"),
    Datatype(99, "SYSTOLIC_PRESSURE_ADJUSTED", 1, "systolic_pressure_adjusted",
             "Systolic pressure estimate, adjusted, mmHg"),
    Datatype(1005, "SYSTOLIC_PRESSURE_QUALITY", 1, "systolic_pressure_quality", "Systolic pressure quality flags"),
    Datatype(66, "SPO2", 1, "SPO2", "Oxygen saturation, %"),
    Datatype(1002, "SPO2_QUALITY", 1, "SPO2_quality", "Oxygen saturation quality flags"),
    Datatype(246, "TEMP_ST_CHANNEL_CHAR", 1, "TEMP_ST_CHANNEL_CHAR", "Device temperature status"),
    Datatype(247, "BATT_ST_CHANNEL_CHAR", 1, "BATT_ST_CHANNEL_CHAR", "Battery status"),
    Datatype(271, "ANN", 1 / 300, "ANN", "Average NN interval over 300 s, 1/4096 s"),
    Datatype(272, "SDNN", 1 / 300, "SDNN", "SDNN over 300 s, 1/4096 s"),
    Datatype(273, "HRV_LF_NORMALIZED", 1 / 300, "HRV_LF_normalized", "HRV LF power, normalised, 1/100"),
    Datatype(274, "NN_OVER_RR", 1 / 300, "NN_over_RR", "NN intervals over RR intervals, 1/100 %"),
    Datatype(275, "HRV_TRIANGULAR", 1 / 300, "HRV_triangular", "HRV triangular index, 1/100"),
    Datatype(276, "HRV_LF", 1 / 300, "HRV_LF", "HRV LF power, 1/10 ms^2"),
    Datatype(277, "HRV_HF", 1 / 300, "HRV_HF", "HRV HF power, 1/10 ms^2"),
    Datatype(278, "RMSSD", 1 / 300, "RMSSD", "RMSSD over 300 s, 1/4096 s"),
    Datatype(34, "INSPIRATION", None, "inspiration", "Inspiration detected"),
    Datatype(35, "EXPIRATION", None, "expiration", "Expiration detected"),
    Datatype(97, "PTT", None, "PTT", "Pulse transit time, 1/256 s"),
    Datatype(269, "DEVICE_POSITION", None, "device_position", "Device position"),
    Datatype(270, "SLEEP_POSITION", None, "sleep_position", "Sleep position"),
    Datatype(280, "SLEEP_PHASE", None, "sleep_phase", "Sleep phase"),
    Datatype(318, "NN_INTERVAL", None, "NN_interval", "NN interval ending at the beat, 1/256 s"),
    Datatype(319, "RR_INTERVAL_REALIGNED", None, "RR_interval_realigned", "RR interval, realigned, 1/256 s"),
    Datatype(1004, "RR_INTERVAL_QUALITY", None, "RR_interval_quality", "RR interval quality flags"),
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
