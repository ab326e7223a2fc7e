"""Rhythm determination with the Kardia set of answers.

AliveCor's published rules, as the issue and the Kardia Pro document give them:
- a determination needs at least 30 s of ECG (`too_short` below); KardiaMobile records at most
  5 min, so more than 300 s is `too_long`;
- `normal` is sinus rhythm at 50-100 bpm, `bradycardia` 40-50 bpm, `tachycardia` 100-140 bpm;
  any other rate, or a rhythm that is irregular but not AF, is `unclassified`;
- AF is reported at 40-150 bpm (Kardia's KAI 2.0 range); faster AF is `unclassified`;
- `unreadable` when noise hides the rhythm; `no_analysis` when there is nothing to analyse
  (no ECG channel, or a rate outside the detector's 128-1000 Hz).

The thresholds below are ours, chosen on the CinC 2017 set in ../shared/data (no held-out
set; see the README's analysis section for the scores):
- unreadable: fewer than half of the beats are clean copies of the typical beat (quality.py),
  or fewer than 5 clean consecutive RR intervals;
- irregularity: median |dRR| between consecutive clean intervals over the median RR. Sinus
  rhythm with occasional ectopic beats stays below 0.04 (a median ignores the few ectopics);
  AF is usually above 0.07.
- P-wave consistency: median correlation of each clean beat's 80-300 ms before R with their
  median. A sinus P wave repeats (0.8-0.97); in AF the baseline holds f-waves (< 0.7).
- AF: irregularity >= 0.07 with P-wave consistency < 0.75, or irregularity >= 0.20 whatever
  the P wave (then it cannot be sinus); irregular (>= 0.15) but not AF: unclassified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.analysis import quality

DETERMINATIONS = ("normal", "afib", "bradycardia", "tachycardia", "unclassified", "too_short",
                  "too_long", "unreadable", "no_analysis")
MIN_SECONDS = 30.0
MAX_SECONDS = 300.0
MIN_CLEAN_FRACTION = 0.5
MIN_CLEAN_INTERVALS = 5
AF_IRREGULARITY = 0.07
AF_P_CONSISTENCY = 0.75
AF_IRREGULARITY_ALONE = 0.20
IRREGULAR = 0.15
AF_RATE = (40.0, 150.0)
NORMAL_RATE = (50.0, 100.0)
BRADY_RATE = (40.0, 50.0)
TACHY_RATE = (100.0, 140.0)
P_WINDOW_S = (0.30, 0.08)  # from 300 ms to 80 ms before R


@dataclass
class RhythmFeatures:
    """What the determination is made from."""

    heart_rate: float | None  # bpm, from clean intervals
    irregularity: float
    p_consistency: float
    clean_fraction: float
    clean_intervals: int


def clean_intervals(peaks: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RR intervals (samples) whose two beats are clean, and whether each follows a clean one."""
    rr = np.diff(np.asarray(peaks, dtype=float))
    ok = clean[1:] & clean[:-1]
    consecutive = np.zeros(len(rr), dtype=bool)
    consecutive[1:] = ok[1:] & ok[:-1]
    return rr[ok], consecutive[ok]


def features(filtered: np.ndarray, peaks: np.ndarray, fs: float,
             beats: quality.BeatQuality | None = None) -> RhythmFeatures:
    """Rhythm features of a 1-40 Hz filtered recording and its R peaks."""
    peaks = np.asarray(peaks, dtype=np.int64)
    beats = beats or quality.beat_quality(filtered, peaks, fs)
    rr, follows = clean_intervals(peaks, beats.clean)
    if len(rr) < 2:
        return RhythmFeatures(None, 0.0, 0.0, beats.clean_fraction, len(rr))
    drr = np.abs(np.diff(rr))[follows[1:]]
    med = float(np.median(rr))
    irregularity = float(np.median(drr)) / med if len(drr) else 0.0
    heart_rate = 60.0 * fs / float(rr.mean())
    before, after = (int(round(s * fs)) for s in P_WINDOW_S)
    rows, _ = quality.segments(filtered, peaks[beats.clean], before, -after)
    p_consistency = 0.0
    if len(rows) >= 3:
        p_consistency = float(np.median(quality.row_correlation(rows, np.median(rows, axis=0))))
    return RhythmFeatures(heart_rate, irregularity, p_consistency, beats.clean_fraction, len(rr))


def classify(f: RhythmFeatures) -> str:
    """The rhythm, whatever the duration: normal, afib, bradycardia, tachycardia, unclassified or unreadable."""
    if f.heart_rate is None or f.clean_fraction < MIN_CLEAN_FRACTION or f.clean_intervals < MIN_CLEAN_INTERVALS:
        return "unreadable"
    hr = f.heart_rate
    af = ((f.irregularity >= AF_IRREGULARITY and f.p_consistency < AF_P_CONSISTENCY)
          or f.irregularity >= AF_IRREGULARITY_ALONE)
    if af:
        return "afib" if AF_RATE[0] <= hr <= AF_RATE[1] else "unclassified"
    if f.irregularity >= IRREGULAR:
        return "unclassified"
    if NORMAL_RATE[0] <= hr <= NORMAL_RATE[1]:
        return "normal"
    if BRADY_RATE[0] <= hr < BRADY_RATE[1]:
        return "bradycardia"
    if TACHY_RATE[0] < hr <= TACHY_RATE[1]:
        return "tachycardia"
    return "unclassified"


def determination(duration_s: float, rhythm: str) -> str:
    """The Kardia `algorithmDetermination`: the rhythm, unless the duration rules forbid one."""
    if duration_s < MIN_SECONDS:
        return "too_short"
    if duration_s > MAX_SECONDS:
        return "too_long"
    return rhythm
