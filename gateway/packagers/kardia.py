"""Kardia recordings: lead-I windows (30 s by default) -> POST /v1/recordings bodies."""

from __future__ import annotations

from datetime import tzinfo

import numpy as np

from gateway.core.blocks import DeviceInfo, StreamId
from gateway.packagers.base import TimedPackager
from gateway.spool import Package
from gateway.vendors import kardia

DEFAULT_RECORDING_SECONDS = 30.0


class KardiaRecordingPackager(TimedPackager):
    """One Kardia recording per window of lead I; never across a gap (the core cuts there)."""

    kind = "kardia.recording"
    evictable = True  # a waveform: gives way at the spool's size cap
    offload = True  # analysis and a 9,000-sample JSON body: in the packaging worker

    def __init__(self, uplink: str, patient_id: str, recording_seconds: float = DEFAULT_RECORDING_SECONDS,
                 tz: tzinfo | None = None) -> None:
        super().__init__(uplink, recording_seconds, tz)
        self.patient_id = patient_id

    def channels(self, info: DeviceInfo) -> tuple[str, ...]:
        """Lead I, if the device has it."""
        return (kardia.LEAD_I,) if kardia.LEAD_I in info.channels else ()

    def package(self, info: DeviceInfo, stream: StreamId, first: int, samples: np.ndarray,
                start_time: float, analyse: bool = True) -> Package:
        """A Kardia recording: the exact samples, heart rate, determination and enhanced signal
        (without analysis: the samples alone, which the vendor analyses itself)."""
        fs = info.channels[stream.channel].sampling_frequency
        mains = info.extra["mains_frequency"]
        hr = determination = enhanced = None
        if analyse:
            from gateway.analysis.ecg import analyse_window  # scipy: only where windows are analysed

            analysis = analyse_window(samples, fs, mains)
            hr, determination, enhanced = analysis.heart_rate, analysis.determination, analysis.enhanced
        body = kardia.recording_body(
            self.patient_id, kardia.format_time(start_time, self.tz), frequency=fs, mains_frequency=mains,
            amplitude_resolution=info.extra["amplitude_resolution"], samples=samples,
            heart_rate=hr, determination=determination, enhanced=enhanced)
        package = self._package(stream, first, len(samples), start_time, body)
        if analyse:
            package.summary = {"heart_rate": hr, "determination": determination}
        return package
