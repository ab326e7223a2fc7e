"""Scoring a beat detector against reference annotations (ANSI/AAMI EC57 style)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MIT-BIH annotation symbols that mark a beat; every other symbol is not a beat.
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")


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
