"""Signal quality: can the beats be seen?

Two signal-quality indices, each robust where the other is not:
- template match: each detected beat's QRS (+-100 ms, band-passed 1-40 Hz, zero-phase) is
  correlated with the median of all of them; a beat is clean when the correlation is at least
  0.8 (the usual template-matching bound, e.g. Li, Mark & Clifford 2008). Noise makes "beats"
  that match nothing, but so do frequent ectopic beats of another shape;
- kurtosis of the band-passed signal (kSQI, Li et al. 2008): an ECG is peaky (well above 5),
  noise that hides the beats brings it towards a Gaussian's 3; ectopy keeps it peaky.
A stretch is unreadable only when both say so: fewer than half of its beats clean *and* a
kurtosis under 8. Both thresholds were chosen by grouped 5-fold cross-validation on the shared
recordings (scripts/bench_analysis.py --cv): CinC 2017 noisy recordings and MIT-BIH windows
with NSTDB noise at -6 dB as unreadable, the other CinC recordings, MIT-BIH windows and 12-24 dB
mixtures as readable; every fold chose clean < 0.5 and a kurtosis bound of 7-8.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import signal

CLEAN_CORRELATION = 0.8
QRS_HALF_WIDTH_S = 0.1
BAND_HZ = (1.0, 40.0)
MIN_CLEAN_FRACTION = 0.5  # below this share of clean beats (and with a low kurtosis): unreadable
READABLE_KURTOSIS = 8.0  # at or above this kurtosis a stretch is readable whatever its beats' shapes
NOISE_KURTOSIS = 4.0  # a window with mostly unclean beats and a near-Gaussian kurtosis is plain noise
SQI_WINDOW_S = 5.0


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


def kurtosis(rows: np.ndarray) -> np.ndarray:
    """Pearson kurtosis (3 for a Gaussian) of each row; 0 for a flat row."""
    a = rows - rows.mean(axis=-1, keepdims=True)
    m2 = (a * a).mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = (a ** 4).mean(axis=-1) / (m2 * m2)
    return np.nan_to_num(k, nan=0.0)


def window_kurtosis(filtered: np.ndarray, fs: float, window_s: float = SQI_WINDOW_S) -> np.ndarray:
    """Kurtosis of each consecutive whole window of a band-passed recording."""
    width = int(round(window_s * fs))
    n_win = len(filtered) // width
    return kurtosis(np.asarray(filtered[:n_win * width], dtype=float).reshape(n_win, width)) if n_win else \
        np.zeros(0)


def recording_kurtosis(filtered: np.ndarray, fs: float, windows: np.ndarray | None = None) -> float:
    """The median window kurtosis (the whole recording's when shorter than a window); `windows`: the
    window kurtosis already computed."""
    k = window_kurtosis(filtered, fs) if windows is None else windows
    return float(np.median(k)) if len(k) else float(kurtosis(np.asarray(filtered, dtype=float)[None, :])[0])


def readable(clean_fraction: float, kurt: float) -> bool:
    """Whether beats can be seen: enough clean beats, or a peaky signal."""
    return clean_fraction >= MIN_CLEAN_FRACTION or kurt >= READABLE_KURTOSIS


def readable_windows(peaks: np.ndarray, clean: np.ndarray, n_samples: int, fs: float,
                     window_s: float = SQI_WINDOW_S, filtered: np.ndarray | None = None,
                     kurtosis_bound: float = READABLE_KURTOSIS, windows: np.ndarray | None = None) -> np.ndarray:
    """Per consecutive window: True when it holds at least two beats, and most of them are clean or
    (given the filtered signal, or its window kurtosis in `windows`) its kurtosis is at least
    `kurtosis_bound`. A trailing part window counts with the last whole one."""
    peaks = np.asarray(peaks, dtype=np.int64)
    width = int(round(window_s * fs))
    n_win = max(0, n_samples // width)
    win = np.minimum(peaks // width, max(n_win - 1, 0))
    ok = win < n_win
    total = np.bincount(win[ok], minlength=n_win)
    good = np.bincount(win[ok], weights=np.asarray(clean, dtype=float)[ok], minlength=n_win)
    seen = good * 2 > total
    if windows is None and filtered is not None:
        windows = window_kurtosis(filtered, fs, window_s)
    if windows is not None:
        seen |= windows[:n_win] >= kurtosis_bound
    return (total >= 2) & seen
