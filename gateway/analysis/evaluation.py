"""Scoring the analysis against reference annotations: beats (ANSI/AAMI EC57 style), heart rate
per 30 s window, and AF / unreadable calls on the CinC 2017 labels. Used by the tests and by
scripts/bench_analysis.py, so both score the same way."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.analysis.heart_rate import window_heart_rates

# MIT-BIH annotation symbols that mark a beat; every other symbol is not a beat.
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
TOLERANCE_S = 0.15  # a detection within 150 ms of an annotated beat matches it
HR_WINDOW_S = 30.0
HR_TOLERANCE_BPM = 2.0


@dataclass
class BeatScore:
    """True positives, false negatives and false positives of one or more records."""

    tp: int = 0
    fn: int = 0
    fp: int = 0

    def __add__(self, other: "BeatScore") -> "BeatScore":
        return BeatScore(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp)

    @property
    def sensitivity(self) -> float:
        """TP / (TP + FN)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def positive_predictivity(self) -> float:
        """TP / (TP + FP)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0


def match_beats(reference: np.ndarray, detected: np.ndarray, tolerance: int) -> BeatScore:
    """One-to-one matching of sorted beat positions within +-tolerance samples."""
    ref = np.sort(np.asarray(reference, dtype=np.int64))
    det = np.sort(np.asarray(detected, dtype=np.int64))
    i = j = tp = 0
    # A merge over two sorted lists: one step per beat, not per sample.
    while i < len(ref) and j < len(det):
        d = det[j] - ref[i]
        if abs(d) <= tolerance:
            tp += 1
            i += 1
            j += 1
        elif d < 0:
            j += 1
        else:
            i += 1
    return BeatScore(tp, len(ref) - tp, len(det) - tp)


def drop_in_spans(positions: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """Positions outside every [start, end] span (EC57 excludes ventricular flutter)."""
    keep = np.ones(len(positions), dtype=bool)
    for a, b in spans:
        keep &= (positions < a) | (positions > b)
    return positions[keep]


def reference_beats(record: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Beat positions and ventricular flutter spans ([ to ]) of a WFDB record's `atr` annotations."""
    import wfdb  # evaluation only: the `test` and `bench` extras install it

    ann = wfdb.rdann(record, "atr")
    sym = np.asarray(ann.symbol)
    beats = np.asarray(ann.sample[np.isin(sym, list(BEAT_SYMBOLS))], dtype=np.int64)
    starts, ends = ann.sample[sym == "["], ann.sample[sym == "]"]
    return beats, list(zip(starts.tolist(), ends.tolist()))


def at_rate(beats: np.ndarray, spans: list[tuple[int, int]], fs_from: float, fs_to: float
            ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Annotation positions and spans moved to another sampling rate (for a resampled record)."""
    k = fs_to / fs_from
    return (np.rint(np.asarray(beats) * k).astype(np.int64), [(round(a * k), round(b * k)) for a, b in spans])


@dataclass
class RecordScore:
    """Beats with ventricular flutter left out (EC57) and with it, and 30 s heart-rate windows."""

    beats: BeatScore = field(default_factory=BeatScore)
    with_flutter: BeatScore = field(default_factory=BeatScore)
    hr_within: int = 0
    hr_windows: int = 0

    def __add__(self, other: "RecordScore") -> "RecordScore":
        return RecordScore(self.beats + other.beats, self.with_flutter + other.with_flutter,
                           self.hr_within + other.hr_within, self.hr_windows + other.hr_windows)


def score_record(reference: np.ndarray, flutter: list[tuple[int, int]], detected: np.ndarray, fs: float,
                 n_samples: int) -> RecordScore:
    """One record's score; windows touching flutter are left out of the heart-rate count too."""
    tol = int(round(TOLERANCE_S * fs))
    detected = np.unique(detected)
    want = window_heart_rates(reference, fs, n_samples, HR_WINDOW_S)
    got = window_heart_rates(detected, fs, n_samples, HR_WINDOW_S)
    ok = ~np.isnan(want)
    width = int(round(HR_WINDOW_S * fs))
    for a, b in flutter:
        ok[a // width: b // width + 1] = False
    return RecordScore(match_beats(reference, drop_in_spans(detected, flutter), tol),
                       match_beats(reference, detected, tol),
                       int(np.sum(np.abs(got[ok] - want[ok]) <= HR_TOLERANCE_BPM)), int(ok.sum()))


@dataclass
class RhythmScore:
    """AF against everything else, and `unreadable` calls, on CinC 2017 labels (N, A, O, ~)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    noisy: int = 0
    noisy_unreadable: int = 0
    clean: int = 0
    clean_unreadable: int = 0

    def add(self, label: str, rhythm: str) -> None:
        """Count one recording: its reference label and the rhythm the analysis called."""
        af = rhythm == "afib"
        self.tp += af and label == "A"
        self.fp += af and label != "A"
        self.fn += (not af) and label == "A"
        if label == "~":
            self.noisy += 1
            self.noisy_unreadable += rhythm == "unreadable"
        else:
            self.clean += 1
            self.clean_unreadable += rhythm == "unreadable"

    @property
    def af_f1(self) -> float:
        """F1 of AF against everything else."""
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp else 0.0
