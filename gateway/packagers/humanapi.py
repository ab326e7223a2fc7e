"""Human API hub shapes: ECG windows -> `ecg` summaries for POST /v1/human/ecg.

A summary per window of lead I (the device's recording_seconds), with duration, rate and the
determination; the waveform itself goes to the device's vendor. `sourceId` is the package's
idempotency key, so a summary names the exact samples it describes.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

import numpy as np

from gateway.core.blocks import DeviceInfo, StreamId
from gateway.packagers.base import Packager, idempotency_key
from gateway.spool import Package
from gateway.vendors import humanapi

ECG_CHANNELS = ("leadI",)


class HubEcgPackager(Packager):
    """ECG summaries for the hub, one per recording window."""

    kind = "humanapi.ecg"

    def __init__(self, uplink: str, recording_seconds: float = 30.0, tz: tzinfo | None = None) -> None:
        super().__init__(uplink)
        self.recording_seconds = recording_seconds
        self.tz = tz

    def channels(self, info: DeviceInfo) -> tuple[str, ...]:
        """The ECG channels the device has."""
        return tuple(c for c in ECG_CHANNELS if c in info.channels)

    def window(self, info: DeviceInfo, channel: str) -> int:
        """recording_seconds of samples."""
        return max(1, round(self.recording_seconds * info.channels[channel].sampling_frequency))

    def package(self, info: DeviceInfo, stream: StreamId, first: int, samples: np.ndarray,
                start_time: float) -> Package:
        """One `ecg` measurement describing these samples."""
        fs = info.channels[stream.channel].sampling_frequency
        end = first + len(samples)
        key = idempotency_key(stream, first, end)
        when = datetime.fromtimestamp(start_time, self.tz).astimezone(self.tz)
        body = humanapi.measurement_body("ecg", when.isoformat(timespec="milliseconds"), info.model, key,
                                         duration=round(len(samples) / fs, 3), sampleRate=fs, leadCount=1,
                                         determination="no_analysis")
        return Package(self.uplink, key, self.kind, stream.key, first, end, start_time, "application/json", body)
