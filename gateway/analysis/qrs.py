"""R-peak detection for single-lead ECG, 128-1000 Hz, whole recordings or live streams.

A Pan-Tompkins-style detector built from causal stages, so feeding a record in one piece or in
chunks of any size gives the same peaks (bit-identical features; see `QrsDetector`):

1. band-pass 5-15 Hz (Butterworth, order 2, causal `sosfilt`): keeps QRS energy, drops wander,
   mains hum and most of P and T;
2. first difference, absolute value (polarity-free, so inverted leads need nothing special;
   less dynamic range than squaring, so small ectopic beats beside large ones still count);
3. moving-window integration over 150 ms (the width of a broad QRS);
4. candidates: local maxima of the integrated energy with no larger one within +-200 ms
   (the refractory period);
5. adaptive thresholds per candidate (running signal and noise levels), with search-back at
   half threshold when no beat came within 1.66 mean RR, and T-wave rejection: a candidate
   within 360 ms of the previous beat whose steepest slope is under half that beat's is a T
   wave; after 2 s without a beat the signal level is halved at each candidate until beats
   return (recovers from an artefact during learning or a drop in amplitude). Only the
   candidate loop is Python; it runs about once per beat.
6. each beat is placed on the largest deflection of the band-passed signal in the integration
   window, corrected for the filter's delay. `refine_peaks` then moves it to the extreme of a
   lightly filtered signal (the true R, or S on an inverted lead) where RR timing matters.

Thresholds and the learning phase follow Pan & Tompkins (1985) and Hamilton & Tompkins (1986).
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache

import numpy as np
from scipy import signal

from gateway.analysis.quality import band_passed

BAND_HZ = (5.0, 15.0)
INTEGRATION_S = 0.15
REFINE_S = 0.05
REFRACTORY_S = 0.2
T_WAVE_WINDOW_S = 0.36
SEARCHBACK_RR = 1.66
SEARCHBACK_LEVEL = 0.5
THRESHOLD_FRACTION = 0.25
T_SLOPE = 0.5
LEARNING_S = 2.0
RECOVER_S = 2.0
MIN_RATE_HZ = 128.0
MAX_RATE_HZ = 1000.0


@lru_cache(maxsize=16)
def _design(fs: float) -> tuple[np.ndarray, int]:
    """The band-pass and its group delay near the QRS's main frequency (samples)."""
    sos = signal.butter(2, BAND_HZ, "bandpass", fs=fs, output="sos")
    _, gd = signal.group_delay(signal.sos2tf(sos), w=[10.0], fs=fs)
    return sos, int(round(float(gd[0])))


class QrsDetector:
    """Incremental R-peak detector; `push(samples)` returns the new peaks (absolute indices)."""

    def __init__(self, fs: float) -> None:
        if not MIN_RATE_HZ <= fs <= MAX_RATE_HZ:
            raise ValueError(f"sampling rate {fs:g} Hz outside {MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz")
        self.fs = float(fs)
        self._sos, self._bp_delay = _design(self.fs)
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._n_int = max(3, int(round(INTEGRATION_S * fs)))
        # Moving sum from a running cumulative sum: O(1) per sample, and the same additions in
        # the same order whatever the chunking, so chunked and whole results are bit-identical.
        self._csum_tail = np.zeros(self._n_int)  # the last n_int values of the cumulative sum
        self._refractory = int(round(REFRACTORY_S * fs))
        self._t_window = int(round(T_WAVE_WINDOW_S * fs))
        self._recover = int(round(RECOVER_S * fs))
        # Kept history (absolute index of element 0 is self._base): band-passed signal, its
        # slope and the integrated energy. Decisions need +-refractory of context.
        self._base = 0
        self._bp = np.zeros(0)
        self._slope = np.zeros(0)
        self._energy = np.zeros(0)
        self._last_bp = 0.0
        self._n = 0  # samples consumed
        self._scanned = 0  # candidates are final below this absolute index
        # Threshold state.
        self._spk = self._npk = 0.0
        self._learned = False
        self._last_beat: int | None = None
        self._last_slope = 0.0
        self._rr: deque[int] = deque(maxlen=8)
        self._rejected: list[tuple[int, float, float, int]] = []  # (pos, height, slope, R) since last beat

    # -- features -------------------------------------------------------------------------
    def _features(self, x: np.ndarray) -> None:
        bp, self._zi = signal.sosfilt(self._sos, x, zi=self._zi)
        d = np.abs(np.diff(bp, prepend=self._last_bp))
        self._last_bp = float(bp[-1])
        hist = np.concatenate((self._csum_tail, d))
        hist[self._n_int - 1:] = np.cumsum(hist[self._n_int - 1:])  # continues the running sum
        e = np.subtract(hist[self._n_int:], hist[:-self._n_int])
        e *= 1.0 / self._n_int
        self._csum_tail = hist[-self._n_int:].copy()
        if len(self._bp):
            self._bp = np.concatenate((self._bp, bp))
            self._slope = np.concatenate((self._slope, d))
            self._energy = np.concatenate((self._energy, e))
        else:  # the first chunk (a whole record in batch use): no copy
            self._bp, self._slope, self._energy = bp, d, e

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Feed samples (any units); the R peaks now final, as absolute sample indices."""
        x = np.asarray(samples, dtype=float)
        if x.size:
            self._features(x)
            self._n += x.size
        return self._scan(self._n - self._refractory - 1)

    def flush(self) -> np.ndarray:
        """Decide the candidates near the end of the signal (call once, at its end)."""
        return self._scan(self._n)

    # -- decisions ------------------------------------------------------------------------
    def _scan(self, end: int) -> np.ndarray:
        """Decide candidates in [self._scanned, end)."""
        if end <= self._scanned:
            return np.zeros(0, dtype=np.int64)
        e = self._energy
        lo = self._scanned - self._base
        hi = end - self._base
        if not self._learned:
            if self._n - self._base < LEARNING_S * self.fs and end < self._n:
                return np.zeros(0, dtype=np.int64)
            first = e[: int(LEARNING_S * self.fs)]
            self._spk = float(first.max()) / 3.0
            self._npk = float(first.mean()) / 2.0
            self._learned = True
        ctx_lo = max(0, lo - self._refractory - 1)
        ctx_hi = min(len(e), hi + self._refractory + 1)
        seg = e[ctx_lo:ctx_hi]
        if seg.size < 3:
            return np.zeros(0, dtype=np.int64)
        # Samples that are the maximum of +-refractory around them: found among the local maxima
        # by comparing each with its few neighbours, cheaper than a running maximum.
        q = np.flatnonzero((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
        h = seg[q]
        r = self._refractory
        # A window's maximum lies at one of its local maxima or at one of its two ends.
        keep = (h > 0) & (h >= seg[np.maximum(q - r, 0)]) & (h >= seg[np.minimum(q + r, len(seg) - 1)])
        for off in range(1, len(q)):
            near = (q[off:] - q[:-off]) <= r
            if not near.any():
                break
            left, right = h[:-off], h[off:]
            keep[:-off] &= ~(near & (right > left))
            keep[off:] &= ~(near & (left > right))
        idx = q[keep] + ctx_lo
        idx = idx[(idx >= lo) & (idx < hi)]
        # Per-candidate features, vectorised: steepest slope and largest band-passed deflection
        # in the integration window that ends at the candidate.
        win = np.clip(idx[:, None] + np.arange(-self._n_int, 1)[None, :], 0, None)
        slopes = self._slope[win].max(axis=1)
        bp_win = win[:, 1:]
        locs = bp_win[np.arange(len(idx)), np.argmax(np.abs(self._bp[bp_win]), axis=1)]
        locs = np.maximum(0, locs + self._base - self._bp_delay)
        beats: list[int] = []
        for pos, height, slope, loc in zip((idx + self._base).tolist(), e[idx].tolist(), slopes.tolist(),
                                           locs.tolist()):
            self._decide(pos, height, slope, loc, beats)
        self._scanned = end
        self._trim()
        return np.asarray(beats, dtype=np.int64)

    def _accept(self, pos: int, height: float, slope: float, loc: int, beats: list[int], weight: float) -> None:
        if self._last_beat is not None:
            self._rr.append(pos - self._last_beat)
        self._spk = weight * height + (1 - weight) * self._spk
        self._last_beat = pos
        self._last_slope = slope
        self._rejected.clear()
        beats.append(loc)

    def _threshold(self) -> float:
        return self._npk + THRESHOLD_FRACTION * (self._spk - self._npk)

    def _decide(self, pos: int, height: float, slope: float, loc: int, beats: list[int]) -> None:
        # No beat for 2 s: the signal level was overestimated (an artefact during learning, or
        # a sudden drop in amplitude). Halve it at each candidate until beats are found again.
        if pos - (self._last_beat if self._last_beat is not None else 0) > self._recover:
            self._spk = max(self._npk, 0.5 * self._spk)
        # Search back for a missed beat when the gap since the last one is too long.
        if self._last_beat is not None and len(self._rr) >= 2 and self._rejected:
            rr_mean = sum(self._rr) / len(self._rr)
            if pos - self._last_beat > SEARCHBACK_RR * rr_mean:
                level = SEARCHBACK_LEVEL * self._threshold()
                best = max((r for r in self._rejected if r[1] > level
                            and r[0] - self._last_beat > self._refractory
                            and pos - r[0] > self._refractory), key=lambda r: r[1], default=None)
                if best is not None:
                    self._accept(*best, beats, 0.25)
        if self._last_beat is not None and pos - self._last_beat <= self._refractory:
            self._npk = 0.125 * height + 0.875 * self._npk
            return
        if height > self._threshold():
            if (self._last_beat is not None and pos - self._last_beat < self._t_window
                    and slope < T_SLOPE * self._last_slope):
                self._npk = 0.125 * height + 0.875 * self._npk  # a T wave
                return
            self._accept(pos, height, slope, loc, beats, 0.125)
        else:
            self._npk = 0.125 * height + 0.875 * self._npk
            self._rejected.append((pos, height, slope, loc))

    def _trim(self) -> None:
        """Drop history the next scan cannot need (its context and integration windows)."""
        cut = self._scanned - max(self._refractory + 1, self._n_int) - 2 - self._base
        if cut > 4 * self.fs:  # trim in large steps; concatenation is the cost
            self._bp = self._bp[cut:]
            self._slope = self._slope[cut:]
            self._energy = self._energy[cut:]
            self._base += cut


def detect_r_peaks(samples: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices of a whole recording (any units, either polarity)."""
    det = QrsDetector(fs)
    peaks = np.concatenate((det.push(samples), det.flush()))
    return np.unique(peaks)


def refine_peaks(filtered: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """Peaks moved to the largest deflection of a 1-40 Hz filtered ECG within +-50 ms."""
    peaks = np.asarray(peaks, dtype=np.int64)
    w = int(round(REFINE_S * fs))
    if len(peaks) == 0 or len(filtered) < 2 * w + 1:
        return peaks
    centres = np.clip(peaks, w, len(filtered) - w - 1)
    rows = filtered[centres[:, None] + np.arange(-w, w + 1)[None, :]]
    dev = np.abs(rows - np.median(rows, axis=1, keepdims=True))
    return np.unique(centres - w + np.argmax(dev, axis=1))


def r_peaks(samples: np.ndarray, fs: float, filtered: np.ndarray | None = None) -> np.ndarray:
    """Detected and refined R peaks of a whole recording; `filtered`: its 1-40 Hz copy, if at hand."""
    x = np.asarray(samples, dtype=float)
    return refine_peaks(band_passed(x, fs) if filtered is None else filtered, detect_r_peaks(x, fs), fs)
