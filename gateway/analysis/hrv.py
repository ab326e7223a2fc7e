"""Heart-rate variability of normal-to-normal intervals (Task Force of the ESC/NASPE, 1996).

Time domain: mean NN, SDNN, RMSSD, pNN50. Frequency domain: Lomb-Scargle periodogram of the
NN series at its own uneven beat times (no resampling), LF 0.04-0.15 Hz, HF 0.15-0.4 Hz, and
their normalised powers LF/(LF+HF) and HF/(LF+HF) in percent. The Task Force asks for at
least 2 min for LF and HF and 5 min for a standard short-term value; shorter series return
None for the frequency part. Intervals that are not normal-to-normal (artefacts, ectopics)
should be removed first: `normal_intervals` drops those more than 20 % away from the median
of their neighbours (the usual filter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

LF_HZ = (0.04, 0.15)
HF_HZ = (0.15, 0.40)
MIN_SPECTRAL_S = 120.0
ECTOPIC_TOLERANCE = 0.2


@dataclass
class Hrv:
    """Time- and frequency-domain HRV; lengths in ms, powers in ms^2."""

    n_intervals: int
    mean_nn_ms: float
    sdnn_ms: float
    rmssd_ms: float
    pnn50: float  # percent
    lf_ms2: float | None = None
    hf_ms2: float | None = None
    lf_norm: float | None = None  # percent
    hf_norm: float | None = None
    lf_hf: float | None = None


def normal_intervals(peaks: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """NN intervals (s) and their end times (s): RR intervals within 20 % of the local median."""
    peaks = np.asarray(peaks, dtype=float)
    rr = np.diff(peaks) / fs
    if len(rr) < 3:
        return rr, peaks[1:] / fs
    local = ndimage.median_filter(rr, size=min(11, len(rr) | 1), mode="nearest")
    ok = np.abs(rr - local) <= ECTOPIC_TOLERANCE * local
    return rr[ok], peaks[1:][ok] / fs


def hrv(peaks: np.ndarray, fs: float) -> Hrv | None:
    """HRV of a beat series (None with fewer than 3 normal intervals)."""
    nn, t = normal_intervals(peaks, fs)
    if len(nn) < 3:
        return None
    ms = nn * 1000.0
    d = np.diff(ms)
    out = Hrv(len(nn), float(ms.mean()), float(ms.std(ddof=1)), float(np.sqrt(np.mean(d * d))),
              float(100.0 * np.mean(np.abs(d) > 50.0)))
    if t[-1] - t[0] >= MIN_SPECTRAL_S:
        df = 0.001
        freqs = np.arange(0.01, 0.5, df)
        pgram = signal.lombscargle(t, ms - ms.mean(), 2 * np.pi * freqs)  # angular frequencies
        # One-sided PSD in ms^2/Hz: 2 * P * (mean sampling interval), as for an even periodogram.
        psd = 2.0 * pgram * (t[-1] - t[0]) / len(ms)
        lf = float(psd[(freqs >= LF_HZ[0]) & (freqs < LF_HZ[1])].sum() * df)
        hf = float(psd[(freqs >= HF_HZ[0]) & (freqs < HF_HZ[1])].sum() * df)
        out.lf_ms2, out.hf_ms2 = lf, hf
        if lf + hf > 0:
            out.lf_norm = 100.0 * lf / (lf + hf)
            out.hf_norm = 100.0 * hf / (lf + hf)
        out.lf_hf = lf / hf if hf > 0 else None
    return out
