"""Hexoskin data: windows of every shirt channel -> POST /api/v1/data/ bodies, one per datatype chunk.

Each sample keeps its own HexoTimestamp, `session_start + position * ticks_per_sample` (the
driver's positions are HexoTimestamp offsets), so the cloud gets the device's times exactly.
A lead-I window also carries the derived heart rate (19, 1 Hz) and RR intervals (18, stamped
at the beat that ends them, in 1/256 s); a thoracic-band window carries the breathing rate
(33, 1 Hz). A 1 Hz value is stamped at the start of its second and is the rate of the
intervals that ended within the window (5 s heart, 15 s breathing) closing with that second. Derived series are left out of a window the analysis finds unreadable.
"""

from __future__ import annotations

import numpy as np

from gateway.core.blocks import DeviceInfo, StreamId
from gateway.packagers.base import TimedPackager
from gateway.spool import Package
from gateway.vendors import hexoskin as hx

BREATHING_SERIES_WINDOW_S = 15.0  # a per-second breathing rate averages the breaths of the last 15 s


def _second_offset(t0: int, session_start: int, fs: int) -> int:
    """Samples from a window's first sample to the next whole second of its session (0 if on one).

    The 1 Hz series must fall on the session's second grid: the receiver refuses anything else, so
    a window that starts mid-second (after a gap) would lose its whole upload."""
    ticks = hx.TICKS_PER_SECOND // fs
    return ((-(t0 - session_start)) % hx.TICKS_PER_SECOND) // ticks


def derived_ecg(samples: np.ndarray, fs: int, t0: int, session_start: int | None = None) -> dict[int, list[list[int]]]:
    """Heart rate (19) and RR intervals (18) of one ECG window whose first sample is at HexoTimestamp t0."""
    from gateway.analysis import heart_rate  # scipy: only where windows are analysed
    from gateway.analysis.ecg import analyse_window

    analysis = analyse_window(samples, fs, with_enhanced=False)
    if analysis.rhythm in ("unreadable", "no_analysis") or len(analysis.peaks) < 2:
        return {}
    ticks = hx.TICKS_PER_SECOND // fs
    peaks = analysis.peaks
    offset = _second_offset(t0, t0 if session_start is None else session_start, fs)
    hr = heart_rate.heart_rate_per_second(peaks, fs, len(samples), offset=offset)
    seconds = np.flatnonzero(np.isfinite(hr))
    return {hx.HEART_RATE: hx.series(t0 + offset * ticks + seconds * hx.TICKS_PER_SECOND, np.rint(hr[seconds])),
            hx.RR_INTERVAL: hx.series(t0 + peaks[1:] * ticks, heart_rate.rr_in_units(peaks, fs, hx.TICKS_PER_SECOND))}


def derived_breathing(samples: np.ndarray, fs: int, t0: int, session_start: int | None = None
                      ) -> dict[int, list[list[int]]]:
    """Breathing rate (33, 1 Hz) of one thoracic-band window whose first sample is at t0."""
    from gateway.analysis import breathing, heart_rate  # scipy: only where windows are analysed

    peaks = breathing.breath_peaks(samples, fs)
    offset = _second_offset(t0, t0 if session_start is None else session_start, fs)
    rate = heart_rate.rate_per_second(peaks, fs, len(samples), BREATHING_SERIES_WINDOW_S, offset)
    seconds = np.flatnonzero(np.isfinite(rate))
    if len(seconds) == 0:
        return {}
    ticks = hx.TICKS_PER_SECOND // fs
    return {hx.BREATHING_RATE: hx.series(t0 + offset * ticks + seconds * hx.TICKS_PER_SECOND,
                                         np.rint(rate[seconds]))}


class HexoskinDataPackager(TimedPackager):
    """One upload per window of each channel: its raw datatype and what is derived from it."""

    kind = "hexoskin.data"
    evictable = True  # waveforms: give way at the spool's size cap
    offload = True  # derived series come from the analysis; bodies are [[ts, v], ...] pairs

    def channels(self, info: DeviceInfo) -> tuple[str, ...]:
        """Every channel with a Hexoskin datatype, on a device that stamps HexoTimestamps."""
        if "session_start" not in info.extra:
            return ()
        return tuple(c for c in info.channels if c in hx.CHANNEL_DATATYPES
                     and hx.TICKS_PER_SECOND % info.channels[c].sampling_frequency == 0)

    def package(self, info: DeviceInfo, stream: StreamId, first: int, samples: np.ndarray,
                start_time: float, analyse: bool = True) -> Package:
        """The channel's samples with their exact HexoTimestamps, plus derived series (with analysis)."""
        fs = info.channels[stream.channel].sampling_frequency
        ticks = hx.TICKS_PER_SECOND // fs
        t0 = int(info.extra["session_start"]) + first * ticks
        data = {hx.CHANNEL_DATATYPES[stream.channel]: hx.series(t0 + np.arange(len(samples)) * ticks, samples)}
        start = int(info.extra["session_start"])
        if analyse and stream.channel == "leadI":
            data.update(derived_ecg(samples, fs, t0, start))
        elif analyse and stream.channel == "respThoracic":
            data.update(derived_breathing(samples, fs, t0, start))
        body = hx.data_body(info.device, info.extra["session_start"], info.firmware, data)
        return self._package(stream, first, len(samples), start_time, body)
