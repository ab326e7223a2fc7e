"""Grouped k-fold cross-validation of the analysis' thresholds (evaluation only, never the daemon).

The analysis computes a few explainable features per recording (rhythm.RhythmFeatures); its
decisions are thresholds on them. `cross_validate` picks the thresholds on k-1 folds (a grid
search on an objective), applies them to the held-out fold, and returns those out-of-fold
decisions: the figures they give are what to expect on recordings never seen. The same search
on every example gives the shipped thresholds (`fitted`), whose figures on the same data are
optimistic.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gateway.analysis import corpus, quality, rhythm

# The grids searched (the shipped values are among them).
AF_GRID = {"irregularity": (0.05, 0.06, 0.07, 0.08, 0.09, 0.10), "p_consistency": (0.6, 0.65, 0.7, 0.75, 0.8, 0.85),
           "min_clean": (0.2, 0.3, 0.4, 0.5)}
UNREADABLE_GRID = {"min_clean": (0.3, 0.4, 0.5, 0.6, 0.7), "kurtosis": (5.0, 6.0, 7.0, 8.0, 9.0, 10.0),
                   "agree_readable": (0.85, 0.9, 0.95, 1.01), "agree_unreadable": (0.0, 0.5, 0.55, 0.6, 0.65, 0.7)}


@dataclass
class Table:
    """Features of many examples as arrays, with their labels and groups."""

    irregularity: np.ndarray
    p_consistency: np.ndarray
    clean_fraction: np.ndarray
    kurtosis: np.ndarray
    agreement: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    sources: np.ndarray
    snr: np.ndarray

    @classmethod
    def of(cls, examples: Sequence[corpus.Example], features: Sequence[rhythm.RhythmFeatures]) -> "Table":
        """Arrays from examples and their features."""
        def col(name: str) -> np.ndarray:
            return np.array([getattr(f, name) for f in features], dtype=float)
        return cls(col("irregularity"), col("p_consistency"), col("clean_fraction"), col("kurtosis"), col("agreement"),
                   np.array([e.label for e in examples]), np.array([e.group for e in examples]),
                   np.array([e.source for e in examples]),
                   np.array([np.nan if e.snr_db is None else e.snr_db for e in examples]))


def af_calls(t: Table, irregularity: float, p_consistency: float, min_clean: float) -> np.ndarray:
    """rhythm.classify's AF rule on every example."""
    return (t.clean_fraction >= min_clean) & (t.irregularity >= irregularity) & (t.p_consistency < p_consistency)


def unreadable_calls(t: Table, min_clean: float, kurtosis: float, agree_readable: float,
                     agree_unreadable: float) -> np.ndarray:
    """quality.readable's rule, negated, on every example (1.01 and 0: that agreement bound off)."""
    return ((t.agreement < agree_unreadable)
            | ((t.clean_fraction < min_clean) & (t.kurtosis < kurtosis) & (t.agreement < agree_readable)))


def f1(called: np.ndarray, truth: np.ndarray) -> float:
    """F1 of `called` against `truth` (0 with no true positive)."""
    tp = int((called & truth).sum())
    return 2 * tp / (2 * tp + int((called & ~truth).sum()) + int((~called & truth).sum())) if tp else 0.0


def af_objective(t: Table, called: np.ndarray, mask: np.ndarray) -> float:
    """Mean AF F1 over the CinC recordings and the MIT-BIH windows (each source counts alike)."""
    truth = t.labels == "A"
    return float(np.mean([f1(called[mask & (t.sources == s)], truth[mask & (t.sources == s)])
                          for s in ("cinc", "mitdb") if (mask & (t.sources == s)).any()]))


def noisy_truth(t: Table) -> np.ndarray:
    """1 noisy, 0 clean, -1 neither (mixtures between -6 and 12 dB are not labelled)."""
    out = np.full(len(t.labels), -1)
    out[(t.sources == "cinc") & (t.labels == "~")] = 1
    out[((t.sources == "cinc") & (t.labels != "~")) | (t.sources == "mitdb")] = 0
    out[(t.sources == "noise") & (t.snr <= -6)] = 1
    out[(t.sources == "noise") & (t.snr >= 12)] = 0
    return out


def unreadable_objective(t: Table, called: np.ndarray, mask: np.ndarray) -> float:
    """Share of noisy examples called unreadable, minus the share of clean ones (each loses its rate and
    rhythm), minus a steep price for clean ones above 3 %."""
    truth = noisy_truth(t)
    noisy, clean = mask & (truth == 1), mask & (truth == 0)
    hit = float(called[noisy].mean()) if noisy.any() else 0.0
    false = float(called[clean].mean()) if clean.any() else 0.0
    return hit - false - 10.0 * max(0.0, false - 0.03)


def cross_validate(t: Table, calls: Callable[..., np.ndarray], grid: dict[str, Sequence[float]],
                   objective: Callable[[Table, np.ndarray, np.ndarray], float], use: np.ndarray,
                   k: int = 5, seed: int = 0) -> tuple[np.ndarray, list[dict], dict]:
    """(out-of-fold calls, the parameters each fold chose, the parameters chosen on everything)."""
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    every = [calls(t, **c) for c in combos]
    fold = corpus.folds(list(t.groups), k, seed)
    out = np.zeros(len(t.labels), dtype=bool)
    chosen = []
    for i in range(k):
        train = use & (fold != i)
        best = int(np.argmax([objective(t, c, train) for c in every]))
        chosen.append(combos[best])
        out[fold == i] = every[best][fold == i]
    best = int(np.argmax([objective(t, c, use) for c in every]))
    return out, chosen, combos[best]


def shipped() -> dict[str, dict[str, float]]:
    """The thresholds the analysis uses, in the grids' terms."""
    return {"af": {"irregularity": rhythm.AF_IRREGULARITY, "p_consistency": rhythm.AF_P_CONSISTENCY,
                   "min_clean": rhythm.AF_MIN_CLEAN_FRACTION},
            "unreadable": {"min_clean": quality.MIN_CLEAN_FRACTION, "kurtosis": quality.READABLE_KURTOSIS,
                           "agree_readable": quality.READABLE_AGREEMENT,
                           "agree_unreadable": quality.AGREEMENT_UNREADABLE}}
