"""Signal quality: is each beat a clean copy of the recording's typical beat?

Noise, electrode motion and poor finger contact on a KardiaMobile produce "beats" that do not
look like the others. Each detected beat's QRS (+-100 ms, band-passed 1-40 Hz, zero-phase) is
correlated with the median of all of them; a beat is clean when the correlation is at least
0.8 (the usual template-matching bound, e.g. Li, Mark & Clifford 2008). A stretch whose beats
are mostly not clean is unreadable.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import signal

CLEAN_CORRELATION = 0.8
QRS_HALF_WIDTH_S = 0.1
BAND_HZ = (1.0, 40.0)


@lru_cache(maxsize=16)
def _band(fs: float) -> np.ndarray:
    return signal.butter(2, (BAND_HZ[0], min(BAND_HZ[1], 0.45 * fs)), "bandpass", fs=fs, output="sos")


def band_passed(samples: np.ndarray, fs: float) -> np.ndarray:
    """Zero-phase 1-40 Hz copy of a recording (wander, hum and high-frequency noise removed)."""
    x = np.asarray(samples, dtype=float)
    sos = _band(fs)
    if len(x) <= 3 * (2 * len(sos) + 1):
        return x - x.mean() if len(x) else x
    return signal.sosfiltfilt(sos, x)


def segments(y: np.ndarray, centres: np.ndarray, before: int, after: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows y[c - before : c + after] for the centres that fit, and the mask of those centres."""
    centres = np.asarray(centres, dtype=np.int64)
    fits = (centres - before >= 0) & (centres + after <= len(y))
    idx = centres[fits][:, None] + np.arange(-before, after)[None, :]
    return y[idx], fits


def row_correlation(rows: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Pearson correlation of every row with the template (0 for a flat row)."""
    a = rows - rows.mean(axis=1, keepdims=True)
    t = template - template.mean()
    den = np.sqrt((a * a).sum(axis=1) * (t * t).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a @ t) / den
    return np.nan_to_num(r, nan=0.0)


@dataclass
class BeatQuality:
    """Per-beat template correlation and the clean mask (same length as the peaks)."""

    correlation: np.ndarray
    clean: np.ndarray
    template: np.ndarray

    @property
    def clean_fraction(self) -> float:
        """Share of beats that are clean (0 when there are none)."""
        return float(self.clean.mean()) if len(self.clean) else 0.0


def beat_quality(filtered: np.ndarray, peaks: np.ndarray, fs: float) -> BeatQuality:
    """Template correlation of each beat of a 1-40 Hz filtered recording."""
    w = int(round(QRS_HALF_WIDTH_S * fs))
    corr = np.zeros(len(peaks))
    if len(peaks) < 3:
        return BeatQuality(corr, np.zeros(len(peaks), dtype=bool), np.zeros(2 * w))
    rows, fits = segments(filtered, peaks, w, w)
    if len(rows) < 3:
        return BeatQuality(corr, np.zeros(len(peaks), dtype=bool), np.zeros(2 * w))
    template = np.median(rows, axis=0)
    corr[fits] = row_correlation(rows, template)
    return BeatQuality(corr, corr >= CLEAN_CORRELATION, template)


def readable_windows(peaks: np.ndarray, clean: np.ndarray, n_samples: int, fs: float,
                     window_s: float = 5.0) -> np.ndarray:
    """Per consecutive window: True when it holds at least two beats and most of them are clean."""
    peaks = np.asarray(peaks, dtype=np.int64)
    width = int(round(window_s * fs))
    n_win = max(0, n_samples // width)
    win = peaks // width
    ok = win < n_win
    total = np.bincount(win[ok], minlength=n_win)
    good = np.bincount(win[ok], weights=np.asarray(clean, dtype=float)[ok], minlength=n_win)
    return (total >= 2) & (good * 2 > total)
