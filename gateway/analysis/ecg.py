"""One call for a recording: R peaks, heart rate, rhythm, Kardia determination, enhanced signal."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from gateway.analysis import enhanced, heart_rate, qrs, quality, rhythm


@dataclass
class EcgAnalysis:
    """What the packagers and the emulators report about one ECG recording."""

    fs: float
    n_samples: int
    peaks: np.ndarray  # R-peak sample indices, on the extreme of the QRS
    heart_rate: int | None  # average bpm, rounded, over readable stretches; None when too little shows beats
    rhythm: str  # classify(): normal, afib, bradycardia, tachycardia, unclassified, unreadable
    determination: str  # the Kardia algorithmDetermination (duration rules applied)
    features: rhythm.RhythmFeatures | None
    enhanced: np.ndarray | None  # int32 ADC units, same length as the input

    @property
    def duration(self) -> float:
        """Seconds of signal."""
        return self.n_samples / self.fs


def analyse_ecg(samples: np.ndarray, fs: float, mains_frequency: int | None = None,
                with_enhanced: bool = True) -> EcgAnalysis:
    """Analyse one single-lead recording in any units; `no_analysis` for an unsupported rate or non-finite data."""
    x = np.asarray(samples, dtype=float)
    finite = bool(np.isfinite(x).all())
    if not qrs.MIN_RATE_HZ <= fs <= qrs.MAX_RATE_HZ or len(x) == 0 or not finite:
        enh = enhanced.enhance(x, fs, mains_frequency) if with_enhanced and finite else None
        return EcgAnalysis(fs, len(x), np.zeros(0, dtype=np.int64), None, "no_analysis", "no_analysis", None, enh)
    filtered = quality.band_passed(x, fs)
    peaks = qrs.r_peaks(x, fs, filtered)
    enh = enhanced.enhance(x, fs, mains_frequency, peaks) if with_enhanced else None
    f = rhythm.features(filtered, peaks, fs)
    rhythm_name = rhythm.classify(f)
    if rhythm_name == "unreadable":
        # No rhythm can be judged, but when most of the strip shows beats they still give its rate;
        # a stray window of noise that looks readable does not (white noise found "139 bpm" so).
        rate = (f.heart_rate if f.readable_intervals >= rhythm.MIN_INTERVALS
                and f.readable_fraction >= rhythm.READABLE_SHARE else None)
    else:
        rate = f.heart_rate if f.heart_rate is not None else heart_rate.average_heart_rate(peaks, fs)
    hr = int(round(rate)) if rate is not None else None
    return EcgAnalysis(fs, len(x), peaks, hr, rhythm_name, rhythm.determination(len(x) / fs, rhythm_name), f, enh)


_RECENT: "OrderedDict[tuple, EcgAnalysis]" = OrderedDict()
RECENT_WINDOWS = 4


def analyse_window(samples: np.ndarray, fs: float, mains_frequency: int | None = None,
                   with_enhanced: bool = True) -> EcgAnalysis:
    """analyse_ecg(), remembered for the last few windows: a device's Kardia and hub packagers analyse the same one."""
    data = np.ascontiguousarray(samples)
    key = (hashlib.blake2b(data.view(np.uint8), digest_size=16).digest(), data.dtype.str, len(data), fs,
           mains_frequency)
    hit = _RECENT.get(key)
    if hit is not None and (hit.enhanced is not None or not with_enhanced):
        _RECENT.move_to_end(key)
        return hit
    result = analyse_ecg(data, fs, mains_frequency, with_enhanced)
    _RECENT[key] = result
    while len(_RECENT) > RECENT_WINDOWS:
        _RECENT.popitem(last=False)
    return result
