"""Rhythm determination with the Kardia set of answers.

AliveCor's published rules, as the issue and the Kardia Pro document give them:
- a determination needs at least 30 s of ECG (`too_short` below); KardiaMobile records at most
  5 min, so more than 300 s is `too_long`;
- `normal` is sinus rhythm at 50-100 bpm, `bradycardia` 40-50 bpm, `tachycardia` 100-140 bpm;
  any other rate, or a rhythm that is irregular but not AF, is `unclassified`;
- AF is reported at 40-150 bpm (Kardia's KAI 2.0 range); faster AF is `unclassified`;
- `unreadable` when noise hides the rhythm; `no_analysis` when there is nothing to analyse
  (no ECG channel, or a rate outside the detector's 128-1000 Hz).

The features, and the thresholds chosen by grouped 5-fold cross-validation on the shared
recordings (scripts/bench_analysis.py --cv: CinC 2017 whole recordings and MIT-BIH 30 s windows,
folds by recording; the cross-validated figures are in docs/analysis.md):
- readability (quality.py): unreadable when fewer than 70 % of the beats are clean copies of the
  typical beat, the signal's kurtosis is under 9 and two unlike detectors agree on under 95 %
  of the beats, or when they agree on under 70 %; a rhythm also needs 5 intervals between
  beats in readable stretches (a mostly readable strip with fewer, e.g. 5 s long, is
  unclassified with its heart rate, not unreadable).
- heart rate: the average over every interval between detected beats, ectopic beats and pauses
  included (what a clinician reads off the strip); stretches of plain noise, and intervals that
  span one, are left out, never filled with invented beats; a stray artifact in a regular rhythm
  (an unclean "beat" that splits one interval in two) is not counted.
- irregularity: median |dRR| between consecutive clean intervals over the median RR. Sinus
  rhythm with occasional ectopic beats stays low (a median ignores the few ectopics).
- P-wave consistency: median correlation of each clean beat's 80-300 ms before R with their
  median. A sinus P wave repeats (0.8-0.97); in AF the baseline holds f-waves.
- AF: irregularity >= 0.07 with P-wave consistency < 0.70, among recordings with at least 20 %
  clean beats. Irregularity alone is not AF: bigeminy, pauses and frequent ectopy are
  irregular with P waves (cross-validation dropped the old "irregularity >= 0.20 whatever the
  P wave" rule, which made those AF). Irregular (>= 0.15) but not AF: unclassified; too few
  clean consecutive intervals to judge (e.g. bigeminy, every other beat ectopic): unclassified.
- duration: a 30 s recording that lost a frame or two to a gap (up to DURATION_SLACK_S) is
  still judged, not `too_short`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.analysis import quality

DETERMINATIONS = ("normal", "afib", "bradycardia", "tachycardia", "unclassified", "too_short",
                  "too_long", "unreadable", "no_analysis")
MIN_SECONDS = 30.0
MAX_SECONDS = 300.0
DURATION_SLACK_S = 0.5  # a few lost frames (83 ms each) do not make a 30 s recording too short
MIN_INTERVALS = 5  # intervals in readable stretches for a rate and a rhythm
READABLE_SHARE = 0.5  # of the 5 s windows, for a strip with too few intervals to be short rather than noisy
MIN_CLEAN_INTERVALS = 5  # consecutive clean intervals to judge the rhythm's regularity
AF_MIN_CLEAN_FRACTION = 0.2
AF_IRREGULARITY = 0.07
AF_P_CONSISTENCY = 0.70
IRREGULAR = 0.15
EDGE_S = quality.EDGE_S  # one edge rule for the rate and for the detectors' agreement
AF_RATE = (40.0, 150.0)
NORMAL_RATE = (50.0, 100.0)
BRADY_RATE = (40.0, 50.0)
TACHY_RATE = (100.0, 140.0)
P_WINDOW_S = (0.30, 0.08)  # from 300 ms to 80 ms before R
STRAY_MIN_CLEAN = 0.8  # stray beats are looked for where at least this share of beats is clean,
STRAY_MAX_IRREGULARITY = 0.05  # in a rhythm this regular (median |dRR| / median RR),
STRAY_TOLERANCE = 0.1  # as a beat whose two intervals add up to its neighbours' within 10 %
STRAY_SPLIT = 0.7  # and whose shorter interval is under 70 % of that sum


@dataclass
class RhythmFeatures:
    """What the determination is made from."""

    heart_rate: float | None  # bpm, every interval in readable stretches
    irregularity: float
    p_consistency: float
    clean_fraction: float
    clean_intervals: int
    kurtosis: float = 0.0  # the median window kurtosis of the band-passed signal
    readable_intervals: int = 0  # intervals between beats in readable stretches
    readable_fraction: float = 0.0  # share of the 5 s windows that are readable
    agreement: float = 0.0  # bSQI: the share of beats both detectors found (quality.agreement)


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
    windows = quality.window_kurtosis(filtered, fs)  # once, for the recording and for its stretches
    kurt = quality.recording_kurtosis(filtered, fs, windows)
    agree = quality.agreement(peaks, filtered, fs)
    real = ~stray_beats(peaks, beats.clean)
    heart_rate, n_readable, readable_fraction = readable_rate(filtered, peaks[real], beats.clean[real], fs, windows,
                                                              agree)
    rr, follows = clean_intervals(peaks, beats.clean)
    if len(rr) < 2:
        return RhythmFeatures(heart_rate, 0.0, 0.0, beats.clean_fraction, len(rr), kurt, n_readable,
                              readable_fraction, agree.overall)
    drr = np.abs(np.diff(rr))[follows[1:]]
    med = float(np.median(rr))
    irregularity = float(np.median(drr)) / med if len(drr) else 0.0
    before, after = (int(round(s * fs)) for s in P_WINDOW_S)
    rows, _ = quality.segments(filtered, peaks[beats.clean], before, -after)
    p_consistency = 0.0
    if len(rows) >= 3:
        p_consistency = float(np.median(quality.row_correlation(rows, np.median(rows, axis=0))))
    return RhythmFeatures(heart_rate, irregularity, p_consistency, beats.clean_fraction, len(rr), kurt, n_readable,
                          readable_fraction, agree.overall)


def stray_beats(peaks: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Per beat: an artifact taken for a beat in a regular, mostly clean rhythm. It is unclean, and
    it splits one interval in two whose sum matches the intervals on both sides (a premature beat
    is followed by a pause and does not; an irregular rhythm or a mostly unclean strip is left alone)."""
    stray = np.zeros(len(peaks), dtype=bool)
    if len(peaks) < 5 or np.mean(clean) < STRAY_MIN_CLEAN:
        return stray
    rr = np.diff(np.asarray(peaks, dtype=float))
    if np.median(np.abs(np.diff(rr))) >= STRAY_MAX_IRREGULARITY * np.median(rr):
        return stray
    merged = rr[1:-2] + rr[2:-1]  # around beats 2 .. n-3, with an interval on each side
    tol = STRAY_TOLERANCE * merged
    stray[2:-2] = (~clean[2:-2] & (np.abs(rr[:-3] - merged) < tol) & (np.abs(rr[3:] - merged) < tol)
                   & (np.minimum(rr[1:-2], rr[2:-1]) < STRAY_SPLIT * merged))
    return stray


def readable_rate(filtered: np.ndarray, peaks: np.ndarray, clean: np.ndarray, fs: float,
                  kurtosis: np.ndarray | None = None,
                  agree: quality.Agreement | None = None) -> tuple[float | None, int, float]:
    """(average bpm over every interval whose two beats lie outside plain-noise windows or None, how many
    such intervals, the share of such windows). Plain noise: mostly unclean beats and a near-Gaussian
    kurtosis; a stricter bound lost real intervals of ectopic stretches (MIT-BIH 30 s windows within
    2 bpm: 95.6 % at kurtosis 4, 91.9 % at 8, 95.9 % leaving nothing out). `kurtosis`: the window
    kurtosis, when already computed; `agree`: each window's detector agreement (a window the two
    detectors agree on is not noise, e.g. a run of ventricular tachycardia)."""
    windows = quality.readable_windows(peaks, clean, len(filtered), fs, quality.SQI_WINDOW_S, filtered,
                                       quality.NOISE_KURTOSIS, kurtosis, None if agree is None else agree.windows)
    if len(peaks) < 2:
        return None, 0, float(windows.mean()) if len(windows) else 0.0
    # A beat within a T wave's reach of either end is left out: a recording cut mid-T-wave starts
    # with a "beat" no earlier beat lets the detector reject (the demo's last window gave 72 for 70).
    edge = int(round(EDGE_S * fs))
    seen = (peaks >= edge) & (peaks < len(filtered) - edge)
    both = seen[1:] & seen[:-1]
    if len(windows):
        # An interval counts only if no window it touches is unreadable: one that spans a stretch
        # where the beats cannot be seen (a clipped amplifier, noise) is not a pause.
        width = int(round(quality.SQI_WINDOW_S * fs))
        w = np.minimum(peaks // width, len(windows) - 1)
        unreadable_before = np.concatenate(([0], np.cumsum(~windows)))
        across = unreadable_before[w[1:] + 1] != unreadable_before[w[:-1]]
        # An unclean beat next to such a stretch is left out too: the step into or out of it, or half a beat.
        border = np.concatenate(([False], across)) | np.concatenate((across, [False]))
        suspect = border & ~np.asarray(clean, dtype=bool)
        both &= ~across & ~suspect[1:] & ~suspect[:-1]
    # (shorter than one window: the whole recording decides, see classify)
    rr = np.diff(peaks)[both]
    rate = 60.0 * fs / float(rr.mean()) if len(rr) else None
    return rate, int(len(rr)), float(windows.mean()) if len(windows) else 1.0


def classify(f: RhythmFeatures) -> str:
    """The rhythm, whatever the duration: normal, afib, bradycardia, tachycardia, unclassified or unreadable."""
    if f.heart_rate is None or not quality.readable(f.clean_fraction, f.kurtosis, f.agreement):
        return "unreadable"
    if f.readable_intervals < MIN_INTERVALS:
        # Few intervals in a mostly readable strip is a short strip, not noise: its rate stands.
        return "unclassified" if f.readable_fraction >= READABLE_SHARE else "unreadable"
    if f.clean_intervals < MIN_CLEAN_INTERVALS:
        return "unclassified"  # readable, but too few consecutive clean beats to judge the rhythm
    hr = f.heart_rate
    af = (f.clean_fraction >= AF_MIN_CLEAN_FRACTION and f.irregularity >= AF_IRREGULARITY
          and f.p_consistency < AF_P_CONSISTENCY)
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
    if duration_s < MIN_SECONDS - DURATION_SLACK_S:
        return "too_short"
    if duration_s > MAX_SECONDS:
        return "too_long"
    return rhythm
