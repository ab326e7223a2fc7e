"""Human API hub shapes: ECG windows -> `ecg` summaries for POST /v1/human/ecg.

A summary per window of lead I (the device's recording_seconds), with duration, rate, heart
rate and the determination (gateway.analysis); the waveform itself goes to the device's vendor. `sourceId` is the package's
idempotency key, so a summary names the exact samples it describes.
"""

from __future__ import annotations

from datetime import tzinfo

import numpy as np

from gateway.analysis.ecg import analyse_ecg
from gateway.core.blocks import DeviceInfo, StreamId
from gateway.core.timefmt import iso_with_offset
from gateway.packagers.base import TimedPackager, idempotency_key
from gateway.spool import Package
from gateway.vendors import humanapi

ECG_CHANNELS = ("leadI",)


class HubEcgPackager(TimedPackager):
    """ECG summaries for the hub, one per recording window."""

    kind = "humanapi.ecg"

    def __init__(self, uplink: str, recording_seconds: float = 30.0, tz: tzinfo | None = None) -> None:
        super().__init__(uplink, recording_seconds, tz)

    def channels(self, info: DeviceInfo) -> tuple[str, ...]:
        """The ECG channels the device has."""
        return tuple(c for c in ECG_CHANNELS if c in info.channels)

    def package(self, info: DeviceInfo, stream: StreamId, first: int, samples: np.ndarray,
                start_time: float) -> Package:
        """One `ecg` measurement describing these samples."""
        fs = info.channels[stream.channel].sampling_frequency
        analysis = analyse_ecg(samples, fs, info.extra.get("mains_frequency"), with_enhanced=False)
        body = humanapi.measurement_body("ecg", iso_with_offset(start_time, self.tz), info.model,
                                         idempotency_key(stream, first, first + len(samples)),
                                         duration=round(len(samples) / fs, 3), sampleRate=fs, leadCount=1,
                                         heartRate=analysis.heart_rate,
                                         determination=analysis.determination)
        return self._package(stream, first, len(samples), start_time, body)
