"""Human API hub shapes for POST /v1/human/<type>: ECG summaries, heart rate and blood pressure.

- `ecg`: a summary per window of lead I (the device's recording_seconds), with duration, rate,
  heart rate and the determination (gateway.analysis); the waveform goes to the device's vendor.
- `heart_rate`: the mean of each window of a heart-rate stream, and the rate a tagged cardiac
  event carries.
- `blood_pressure`: each measurement, with its pulse.
`sourceId` is the package's idempotency key, so a measurement names exactly what it describes.
"""

from __future__ import annotations

from datetime import timedelta, timezone, tzinfo

import numpy as np

from gateway.core.blocks import HEART_RATE_CHANNEL, DeviceInfo, Reading, StreamId
from gateway.core.timefmt import iso_with_offset
from gateway.packagers.base import TimedPackager, idempotency_key
from gateway.spool import Package
from gateway.vendors import humanapi

ECG_CHANNELS = ("leadI",)


class HubEcgPackager(TimedPackager):
    """ECG summaries for the hub, one per recording window."""

    kind = "humanapi.ecg"
    offload = True  # its heart rate and determination come from the analysis

    def __init__(self, uplink: str, recording_seconds: float = 30.0, tz: tzinfo | None = None) -> None:
        super().__init__(uplink, recording_seconds, tz)

    def channels(self, info: DeviceInfo) -> tuple[str, ...]:
        """The ECG channels the device has."""
        return tuple(c for c in ECG_CHANNELS if c in info.channels)

    def package(self, info: DeviceInfo, stream: StreamId, first: int, samples: np.ndarray,
                start_time: float, analyse: bool = True) -> Package:
        """One `ecg` measurement describing these samples (without analysis: no rate or determination)."""
        fs = info.channels[stream.channel].sampling_frequency
        hr = determination = None
        if analyse:
            from gateway.analysis.ecg import analyse_window  # scipy: only where windows are analysed

            analysis = analyse_window(samples, fs, info.extra.get("mains_frequency"), with_enhanced=False)
            hr, determination = analysis.heart_rate, analysis.determination
        body = humanapi.measurement_body("ecg", iso_with_offset(start_time, self.tz), info.model,
                                         idempotency_key(stream, first, first + len(samples)),
                                         duration=round(len(samples) / fs, 3), sampleRate=fs, leadCount=1,
                                         heartRate=hr, determination=determination)
        package = self._package(stream, first, len(samples), start_time, body)
        if analyse:
            package.summary = {"heart_rate": hr, "determination": determination}
        return package


class HubVitalsPackager(TimedPackager):
    """Heart rate (per window of the stream, and at tagged events) and blood pressure for the hub."""

    kind = "humanapi.heart_rate"

    def __init__(self, uplink: str, recording_seconds: float = 60.0, tz: tzinfo | None = None) -> None:
        super().__init__(uplink, recording_seconds, tz)

    def channels(self, info: DeviceInfo) -> tuple[str, ...]:
        """The heart-rate stream, if the device has one."""
        return (HEART_RATE_CHANNEL,) if HEART_RATE_CHANNEL in info.channels else ()

    def _zone(self, tz_minutes: int | None) -> tzinfo | None:
        return self.tz if tz_minutes is None else timezone(timedelta(minutes=tz_minutes))

    def package(self, info: DeviceInfo, stream: StreamId, first: int, samples: np.ndarray,
                start_time: float, analyse: bool = True) -> Package | None:
        """A `heart_rate` measurement: the mean of the window's readings (0 is 'no reading')."""
        rates = samples[samples > 0]
        if not len(rates):
            return None
        when = iso_with_offset(start_time, self._zone(info.extra.get("tz_minutes")))
        key = idempotency_key(stream, first, first + len(samples))
        body = humanapi.measurement_body("heart_rate", when, info.model, key, value=round(float(rates.mean()), 1))
        return self._package(stream, first, len(samples), start_time, body)

    def reading(self, reading: Reading) -> Package | None:
        """A blood pressure, or the heart rate of a tagged event."""
        f = reading.fields
        when = iso_with_offset(reading.time, self._zone(reading.tz_minutes))
        if reading.kind == "blood_pressure":
            body = humanapi.measurement_body("blood_pressure", when, reading.model, reading.key, systolic=f["systolic"],
                                             diastolic=f["diastolic"], heartRate=f["pulse_rate"])
            return self._reading_package(reading, "humanapi.blood_pressure", body)
        if reading.kind == "cardiac_event" and f.get("heart_rate"):
            body = humanapi.measurement_body("heart_rate", when, reading.model, reading.key, value=f["heart_rate"])
            return self._reading_package(reading, "humanapi.heart_rate", body)
        return None
