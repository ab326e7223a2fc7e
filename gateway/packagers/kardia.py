"""Kardia recordings: lead-I windows (30 s by default) -> POST /v1/recordings bodies."""

from __future__ import annotations

from datetime import tzinfo

import numpy as np

from gateway.core.blocks import DeviceInfo, StreamId
from gateway.packagers.base import Packager, idempotency_key
from gateway.spool import Package
from gateway.vendors import kardia

DEFAULT_RECORDING_SECONDS = 30.0


class KardiaRecordingPackager(Packager):
    """One Kardia recording per window of lead I; never across a gap (the core cuts there)."""

    kind = "kardia.recording"

    def __init__(self, uplink: str, patient_id: str, recording_seconds: float = DEFAULT_RECORDING_SECONDS,
                 tz: tzinfo | None = None) -> None:
        super().__init__(uplink)
        if recording_seconds <= 0:
            raise ValueError("recording_seconds must be positive")
        self.patient_id = patient_id
        self.recording_seconds = recording_seconds
        self.tz = tz

    def channels(self, info: DeviceInfo) -> tuple[str, ...]:
        """Lead I, if the device has it."""
        return (kardia.LEAD_I,) if kardia.LEAD_I in info.channels else ()

    def window(self, info: DeviceInfo, channel: str) -> int:
        """recording_seconds of samples at the channel's rate."""
        return max(1, round(self.recording_seconds * info.channels[channel].sampling_frequency))

    def package(self, info: DeviceInfo, stream: StreamId, first: int, samples: np.ndarray,
                start_time: float) -> Package:
        """A Kardia recording object with the exact samples in ADC units."""
        body = kardia.recording_body(
            self.patient_id, kardia.format_time(start_time, self.tz),
            frequency=info.channels[stream.channel].sampling_frequency,
            mains_frequency=info.extra["mains_frequency"],
            amplitude_resolution=info.extra["amplitude_resolution"], samples=samples)
        end = first + len(samples)
        return Package(self.uplink, idempotency_key(stream, first, end), self.kind, stream.key, first, end,
                       start_time, "application/json", body)
