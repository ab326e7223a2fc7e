"""Heart rate and RR intervals from R peaks, in the shapes and units each vendor uses."""

from __future__ import annotations

import numpy as np

# Units per second of an RR interval: Hexoskin datatype 18 counts 1/256 s, the Bluetooth Heart
# Rate Measurement 1/1024 s, Human API and UP milliseconds.
HEXOSKIN_RR_UNITS = 256
BLE_RR_UNITS = 1024
MS = 1000
HR_SERIES_WINDOW_S = 5.0  # a per-second rate averages the beats of the last 5 s


def rr_intervals(peaks: np.ndarray, fs: float) -> np.ndarray:
    """Successive R-R intervals in seconds."""
    return np.diff(np.asarray(peaks, dtype=float)) / fs


def rr_in_units(peaks: np.ndarray, fs: float, units_per_second: int) -> np.ndarray:
    """RR intervals rounded to integer vendor units (e.g. 256 for Hexoskin, 1024 for BLE)."""
    return np.rint(rr_intervals(peaks, fs) * units_per_second).astype(np.int64)


def average_heart_rate(peaks: np.ndarray, fs: float) -> float | None:
    """Beats per minute over the span of the peaks (None with fewer than two)."""
    if len(peaks) < 2:
        return None
    return 60.0 * (len(peaks) - 1) * fs / float(peaks[-1] - peaks[0])


def window_heart_rates(peaks: np.ndarray, fs: float, n_samples: int, window_s: float) -> np.ndarray:
    """Mean rate per consecutive window: 60 / mean RR of the intervals ending in it (NaN if none)."""
    peaks = np.asarray(peaks, dtype=np.int64)
    width = int(round(window_s * fs))
    n_win = n_samples // width
    out = np.full(n_win, np.nan)
    if len(peaks) < 2 or n_win == 0:
        return out
    rr = np.diff(peaks).astype(float)
    win = peaks[1:] // width  # the window each interval ends in
    ok = win < n_win
    total = np.bincount(win[ok], weights=rr[ok], minlength=n_win)
    count = np.bincount(win[ok], minlength=n_win)
    has = count > 0
    out[has] = 60.0 * fs * count[has] / total[has]
    return out


def heart_rate_per_second(peaks: np.ndarray, fs: float, n_samples: int,
                          window_s: float = HR_SERIES_WINDOW_S, offset: int = 0) -> np.ndarray:
    """Heart rate at the end of each whole second (bpm; NaN when no interval ended in the window)."""
    return rate_per_second(peaks, fs, n_samples, window_s, offset)


def rate_per_second(peaks: np.ndarray, fs: float, n_samples: int, window_s: float, offset: int = 0) -> np.ndarray:
    """Events per minute at the end of each whole second, from the intervals ending in the last window_s.

    `offset`: the sample where the first second starts (a window that does not begin on a whole
    second of its session, after a gap, counts its seconds from there)."""
    peaks = np.asarray(peaks, dtype=np.int64)
    n_sec = max(0, int((n_samples - offset) // fs))
    out = np.full(n_sec, np.nan)
    if len(peaks) < 2 or n_sec == 0:
        return out
    rr = np.diff(peaks).astype(float)
    ends = peaks[1:]
    csum = np.concatenate(([0.0], np.cumsum(rr)))
    t = offset + np.arange(1, n_sec + 1) * fs  # sample index at the end of each second
    hi = np.searchsorted(ends, t, side="right")  # intervals ending at or before t
    lo = np.searchsorted(ends, t - window_s * fs, side="right")
    n = hi - lo
    has = n > 0
    out[has] = 60.0 * fs * n[has] / (csum[hi[has]] - csum[lo[has]])
    return out
