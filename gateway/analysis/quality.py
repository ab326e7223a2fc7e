"""Signal quality: can the beats be seen?

Three signal-quality indices, each robust where another is not:
- template match: each detected beat's QRS (+-100 ms, band-passed 1-40 Hz, zero-phase) is
  correlated with the median of all of them; a beat is clean when the correlation is at least
  0.8 (the usual template-matching bound, e.g. Li, Mark & Clifford 2008). Noise makes "beats"
  that match nothing, but so do frequent ectopic beats of another shape;
- kurtosis of the band-passed signal (kSQI, Li et al. 2008): an ECG is peaky (well above 5),
  noise that hides the beats brings it towards a Gaussian's 3; ectopy keeps it peaky.
- agreement of two detectors (bSQI, Li et al. 2008): the beats of the main detector (qrs.py)
  against those of a second, simpler one (`slope_beats`: peaks of the smoothed slope of an
  8-25 Hz band), matched within 200 ms (their fiducial points differ by up to ~160 ms on wide,
  paced beats), as matched / (either's beats). Two unlike detectors agree on real beats of any
  shape (paced rhythm, runs of ventricular tachycardia) and disagree on noise.
A stretch is unreadable when fewer than 70 % of its beats are clean *and* its kurtosis is
under 9 *and* the detectors agree on less than 95 % of the beats, or when they agree on less
than 70 % of them whatever the rest says. The thresholds were chosen by grouped
5-fold cross-validation on the shared recordings (scripts/bench_analysis.py --cv): CinC 2017
noisy recordings and MIT-BIH windows with NSTDB noise at -6 dB as unreadable, the other CinC
recordings, MIT-BIH windows and 12 dB mixtures as readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import signal

CLEAN_CORRELATION = 0.8
QRS_HALF_WIDTH_S = 0.1
BAND_HZ = (1.0, 40.0)
MIN_CLEAN_FRACTION = 0.7  # below this share of clean beats (with a low kurtosis and agreement): unreadable
READABLE_KURTOSIS = 9.0  # at or above this kurtosis a stretch is readable whatever its beats' shapes
NOISE_KURTOSIS = 4.0  # a window with mostly unclean beats and a near-Gaussian kurtosis is plain noise
READABLE_AGREEMENT = 0.95  # two detectors agreeing on this share of beats: readable whatever their shapes
# A 5 s window (5-12 beats) the detectors agree on beat for beat (one miss in ten at most) is not
# noise, whatever its shapes; set a priori, not fitted (with fewer beats one miss is under 0.9).
WINDOW_AGREEMENT = 0.9
AGREEMENT_UNREADABLE = 0.7  # agreeing on less than this share: unreadable whatever the rest says
AGREEMENT_TOLERANCE_S = 0.2
EDGE_S = 0.36  # the detector's T-wave window: a beat this near an end may be half a beat
SLOPE_BAND_HZ = (8.0, 25.0)
SLOPE_SMOOTH_S = 0.08
SLOPE_THRESHOLD = 0.3  # of the median 2 s maximum of the smoothed slope
SLOPE_DISTANCE_S = 0.25
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


@lru_cache(maxsize=16)
def _slope_band(fs: float) -> tuple[np.ndarray, int]:
    """The second detector's band-pass and its delay at 15 Hz (samples): causal, a fifth of the cost of
    a zero-phase pass, and the delay is taken off the peaks."""
    sos = signal.butter(3, SLOPE_BAND_HZ, "bandpass", fs=fs, output="sos")
    _, gd = signal.group_delay(signal.sos2tf(sos), w=[15.0], fs=fs)
    return sos, int(round(float(gd[0])))


def slope_beats(filtered: np.ndarray, fs: float) -> np.ndarray:
    """The second detector's beats: peaks of the smoothed absolute slope of an 8-25 Hz band above 30 % of
    its median 2 s maximum, at least 250 ms apart. Crude on purpose: it shares nothing with qrs.py but
    the signal, so the two agree where beats are plain to see."""
    x = np.asarray(filtered, dtype=float)
    if len(x) < int(2 * fs) or fs / 2 <= SLOPE_BAND_HZ[1]:
        return np.zeros(0, dtype=np.int64)
    sos, delay = _slope_band(fs)
    y = signal.sosfilt(sos, x)
    width = max(1, int(round(SLOPE_SMOOTH_S * fs)))
    slope = np.abs(np.diff(y, prepend=y[0]))
    energy = np.convolve(slope, np.ones(width) / width, "same")
    block = int(round(2 * fs))
    n = len(energy) // block
    level = float(np.median(energy[:n * block].reshape(n, block).max(axis=1)))
    if level <= 0:
        return np.zeros(0, dtype=np.int64)
    peaks, _ = signal.find_peaks(energy, height=SLOPE_THRESHOLD * level, distance=max(1, int(SLOPE_DISTANCE_S * fs)))
    return np.maximum(peaks - delay, 0).astype(np.int64)


def matched(a: np.ndarray, b: np.ndarray, tolerance: int) -> np.ndarray:
    """Per beat of sorted `a`: whether it and its nearest beat of sorted `b` are each other's nearest,
    within `tolerance` samples (a one-to-one match, without a loop)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a), dtype=bool)

    def nearest(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(q, p), 1, len(q) - 1) if len(q) > 1 else np.zeros(len(p), dtype=np.int64)
        if len(q) > 1:
            i = np.where(np.abs(q[i - 1] - p) <= np.abs(q[i] - p), i - 1, i)
        return i

    ia = nearest(a, b)
    back = nearest(b[ia], a)
    return (back == np.arange(len(a))) & (np.abs(b[ia] - a) <= tolerance)


@dataclass
class Agreement:
    """How far the second detector confirms the main one's beats."""

    overall: float  # bSQI of the recording: matched / (either detector's beats), 0 with no beat
    windows: np.ndarray  # bSQI of each consecutive whole window (0 where neither found a beat)


def agreement(peaks: np.ndarray, filtered: np.ndarray, fs: float, window_s: float = SQI_WINDOW_S) -> Agreement:
    """The two detectors' agreement over a recording and its windows."""
    # A beat this near either end may be cut in half: one detector sees it, the other not.
    edge, n = int(round(EDGE_S * fs)), len(filtered)
    a = np.sort(np.asarray(peaks, dtype=np.int64))
    b = slope_beats(filtered, fs)
    a, b = a[(a >= edge) & (a < n - edge)], b[(b >= edge) & (b < n - edge)]
    hit = matched(a, b, int(round(AGREEMENT_TOLERANCE_S * fs)))
    width = int(round(window_s * fs))
    n_win = len(filtered) // width

    def per_window(p: np.ndarray, weights=None) -> np.ndarray:
        w = np.minimum(p // width, max(n_win - 1, 0))
        return np.bincount(w[w < n_win], weights=None if weights is None else weights[w < n_win],
                           minlength=n_win)[:n_win] if n_win else np.zeros(0)

    tp = per_window(a, hit.astype(float))
    union = per_window(a) + per_window(b) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        windows = np.where(union > 0, tp / np.maximum(union, 1), 0.0)
    total = len(a) + len(b) - int(hit.sum())
    return Agreement(float(hit.sum()) / total if total else 0.0, windows)


def readable(clean_fraction: float, kurt: float, agree: float) -> bool:
    """Whether beats can be seen: the detectors agree enough, and there are enough clean beats, a peaky
    signal or near-full agreement."""
    if agree < AGREEMENT_UNREADABLE:
        return False
    return clean_fraction >= MIN_CLEAN_FRACTION or kurt >= READABLE_KURTOSIS or agree >= READABLE_AGREEMENT


def readable_windows(peaks: np.ndarray, clean: np.ndarray, n_samples: int, fs: float,
                     window_s: float = SQI_WINDOW_S, filtered: np.ndarray | None = None,
                     kurtosis_bound: float = READABLE_KURTOSIS, windows: np.ndarray | None = None,
                     agree: np.ndarray | None = None) -> np.ndarray:
    """Per consecutive window: True when it holds at least two beats, and most of them are clean or
    (given the filtered signal, or its window kurtosis in `windows`) its kurtosis is at least
    `kurtosis_bound`, or (given `agree`, each window's bSQI) the detectors agree on WINDOW_AGREEMENT
    of its beats. A trailing part window counts with the last whole one."""
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
    if agree is not None:
        seen |= agree[:n_win] >= WINDOW_AGREEMENT
    return (total >= 2) & seen
