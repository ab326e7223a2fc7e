"""Breathing rate from a respiration channel, or from the ECG when that is all there is.

Respiration (Hexoskin's thoracic and abdominal bands): zero-phase band-pass 0.08-0.8 Hz
(5-48 breaths per minute), then one breath per peak (end of inspiration) that stands out by
at least a quarter of the signal's typical swing and comes at least 1.25 s (48/min) after
the previous one.

ECG-derived respiration (EDR): breathing moves the heart's electrical axis and modulates the
QRS amplitude (Moody et al. 1985), and it modulates the RR interval (respiratory sinus
arrhythmia). Both series are sampled at each beat, interpolated to 4 Hz, and the one whose
spectrum is more concentrated around one peak in the breathing band is counted like a
respiration channel.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

from gateway.analysis import quality

BAND_HZ = (0.08, 0.8)
MIN_BREATH_S = 60.0 / 48.0
PROMINENCE = 0.25  # of the 5-95 % swing
EDR_FS = 4.0
MIN_SECONDS = 1 / BAND_HZ[0]  # 12.5 s


@lru_cache(maxsize=16)
def _sos(fs: float) -> np.ndarray:
    return signal.butter(2, BAND_HZ, "bandpass", fs=fs, output="sos")


def _band(x: np.ndarray, fs: float) -> np.ndarray:
    return signal.sosfiltfilt(_sos(fs), x - np.mean(x))


def breath_peaks(resp: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of each end of inspiration in a respiration signal."""
    x = np.asarray(resp, dtype=float)
    if len(x) < MIN_SECONDS * fs:  # one period of the slowest breathing the band passes
        return np.zeros(0, dtype=np.int64)
    y = _band(x, fs)
    lo, hi = np.percentile(y, [5, 95])
    if hi - lo <= 0:
        return np.zeros(0, dtype=np.int64)
    peaks, _ = signal.find_peaks(y, distance=max(1, int(MIN_BREATH_S * fs)), prominence=PROMINENCE * (hi - lo))
    return peaks.astype(np.int64)


def rate_from_peaks(peaks: np.ndarray, fs: float) -> float | None:
    """Breaths per minute over the span of the peaks (None with fewer than three)."""
    if len(peaks) < 3:
        return None
    return 60.0 * (len(peaks) - 1) * fs / float(peaks[-1] - peaks[0])


def breathing_rate(resp: np.ndarray, fs: float) -> float | None:
    """Average breaths per minute of a respiration signal."""
    return rate_from_peaks(breath_peaks(resp, fs), fs)


def _beat_series(times: np.ndarray, values: np.ndarray, duration: float) -> np.ndarray:
    grid = np.arange(times[0], min(duration, times[-1]), 1.0 / EDR_FS)
    return np.interp(grid, times, values)


def _concentration(x: np.ndarray) -> float:
    """Share of the breathing band's power within +-0.03 Hz of its strongest frequency."""
    f, p = signal.periodogram(signal.detrend(x), fs=EDR_FS)
    band = (f >= BAND_HZ[0]) & (f <= BAND_HZ[1])
    if not band.any() or p[band].sum() <= 0:
        return 0.0
    fb, pb = f[band], p[band]
    k = int(np.argmax(pb))
    near = np.abs(fb - fb[k]) <= 0.03
    return float(pb[near].sum() / pb.sum())


def ecg_derived_respiration(filtered: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """The better of the QRS-amplitude and RR series at 4 Hz (empty if too few beats)."""
    peaks = np.asarray(peaks, dtype=np.int64)
    if len(peaks) < 8:
        return np.zeros(0)
    w = int(round(0.05 * fs))
    rows, fits = quality.segments(filtered, peaks, w, w)
    times = peaks[fits] / fs
    amp = np.ptp(rows, axis=1)
    rr_times = peaks[1:] / fs
    rr = np.diff(peaks) / fs
    duration = len(filtered) / fs
    candidates = [_beat_series(times, amp, duration), _beat_series(rr_times, rr, duration)]
    candidates = [c for c in candidates if len(c) >= 8]
    if not candidates:
        return np.zeros(0)
    return max(candidates, key=_concentration)


def ecg_breathing_rate(filtered: np.ndarray, peaks: np.ndarray, fs: float) -> float | None:
    """Breaths per minute estimated from a 1-40 Hz filtered ECG and its R peaks."""
    edr = ecg_derived_respiration(filtered, peaks, fs)
    return breathing_rate(edr, EDR_FS) if len(edr) else None
