"""The `enhanced` ECG: baseline, mains hum and out-of-band noise removed, QRS kept intact.

In the recording's own ADC units and at its own rate, all zero-phase:
1. mains: notches (Q 30, forwards and backwards) at `mainsFrequency` and its harmonics below
   Nyquist;
2. bandwidth: a Butterworth low-pass at 60 Hz, order 4, forwards and backwards (skipped where
   60 Hz is too close to Nyquist);
3. baseline: a cubic spline through the isoelectric level of every beat (the median of the
   PR segment, 90 to 60 ms before R; Meyer & Keiser 1977) is subtracted. It touches neither
   QRS nor ST nor T, unlike a 0.5 Hz high-pass (which shrinks R and tilts ST) or a median
   filter (which rides up on broad T waves). With fewer than 4 beats the baseline is the
   two-stage median filter of de Chazal et al. (2004), 200 ms then 600 ms.
Measured by `scripts/bench_analysis.py` and tests/test_analysis.py (README): on the simulator's
ECG under wander and hum the R wave keeps its height and the residual error is about a third of
the old 0.5-40 Hz band-pass's; on the CinC 2017 KardiaMobile recordings QRS heights are kept
(median 100 %). AliveCor's own enhanced filter is not public.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import interpolate, ndimage, signal

from gateway.analysis import qrs

BASELINE_WINDOWS_S = (0.2, 0.6)
PR_SEGMENT_S = (0.09, 0.06)  # before R
MIN_KNOTS = 4
LOW_PASS_HZ = 60.0
LOW_PASS_ORDER = 4
NOTCH_Q = 30.0


def _odd(n: float) -> int:
    k = int(round(n))
    return k + 1 if k % 2 == 0 else k


def median_baseline(x: np.ndarray, fs: float) -> np.ndarray:
    """The wander under an ECG: a 200 ms median followed by a 600 ms median."""
    b = x
    for w in BASELINE_WINDOWS_S:
        b = ndimage.median_filter(b, size=_odd(w * fs), mode="nearest")
    return b


def baseline(x: np.ndarray, fs: float, peaks: np.ndarray | None) -> np.ndarray:
    """The wander under an ECG: a spline through each beat's PR level (median filter if < 4 beats)."""
    if peaks is None:
        return median_baseline(x, fs)
    a, b = (int(round(s * fs)) for s in PR_SEGMENT_S)
    peaks = np.asarray(peaks, dtype=np.int64)
    peaks = peaks[(peaks - a >= 0) & (peaks - b <= len(x))]
    if len(peaks) < MIN_KNOTS or b >= a:
        return median_baseline(x, fs)
    rows = x[(peaks - a)[:, None] + np.arange(a - b)[None, :]]
    knots = peaks - (a + b) // 2
    keep = np.concatenate(([True], np.diff(knots) > 0))  # strictly increasing for the spline
    spline = interpolate.CubicSpline(knots[keep], np.median(rows, axis=1)[keep])
    # Before the first and after the last beat the level is held, not extrapolated.
    return spline(np.clip(np.arange(len(x)), knots[0], knots[-1]))


@lru_cache(maxsize=16)  # designing the filters costs more than running them on 30 s
def _sections(fs: float, mains: int | None) -> np.ndarray:
    sos = []
    if mains:
        harmonic = mains
        while harmonic < 0.95 * fs / 2:
            b, a = signal.iirnotch(harmonic, NOTCH_Q, fs=fs)
            sos.append(signal.tf2sos(b, a))
            harmonic += mains
    if LOW_PASS_HZ < 0.45 * fs:
        sos.append(signal.butter(LOW_PASS_ORDER, LOW_PASS_HZ, "lowpass", fs=fs, output="sos"))
    return np.vstack(sos) if sos else np.zeros((0, 6))


def enhance(samples: np.ndarray, fs: float, mains_frequency: int | None,
            peaks: np.ndarray | None = None) -> np.ndarray:
    """Filtered samples, rounded to int32 ADC units; a copy of the input if too short to filter."""
    x = np.asarray(samples, dtype=float)
    sos = _sections(fs, mains_frequency)
    padlen = 3 * (2 * len(sos) + 1)
    if len(x) <= max(padlen, int(BASELINE_WINDOWS_S[1] * fs)):
        return np.asarray(samples, dtype=np.int32).copy()
    if peaks is None and qrs.MIN_RATE_HZ <= fs <= qrs.MAX_RATE_HZ:
        peaks = qrs.r_peaks(x, fs)  # the same beats analyse_ecg finds
    y = x - np.median(x)
    if len(sos):
        y = signal.sosfiltfilt(sos, y)
    y = y - baseline(y, fs, peaks)
    return np.rint(y).astype(np.int32)
