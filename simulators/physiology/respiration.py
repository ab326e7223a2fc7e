"""Respiration bands (thoracic, abdominal) and body motion (rest, walk, run) for the shirt simulator.

Respiration: an inductance count per band, `baseline + depth * amplitude * shape(phase)` where
the phase is the ECG synthesiser's breathing phase, so respiratory sinus arrhythmia in the ECG
and the bands move together. The shape is cos(phase) plus a little second harmonic (inspiration
is quicker than expiration); the abdominal band lags the thoracic by 0.2 rad.

Motion: 3-axis acceleration in 1/256 g counts. At rest, gravity on the vertical axis (y, -1 g
upright) and a little tremor; walking and running add a vertical bounce at the step cadence
and a forward sway at half of it (one stride = two steps), 0.35 g and 1.1 g at the default
cadences of 110 and 165 steps/min.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

BAND_BASELINE = {"thoracic": 30000.0, "abdominal": 28000.0}
BAND_AMPLITUDE = {"thoracic": 2200.0, "abdominal": 1600.0}  # counts at depth 1.0
BAND_LAG = {"thoracic": 0.0, "abdominal": 0.2}
ACTIVITIES: dict[str, tuple[float, float]] = {  # activity -> (default cadence steps/min, bounce g)
    "rest": (0.0, 0.0),
    "walk": (110.0, 0.35),
    "run": (165.0, 1.1),
}
G = 256  # counts per g


@dataclass
class BreathingParams:
    """How deeply the person breathes (1.0: quiet breathing) and sensor noise."""

    depth: float = 1.0
    noise_counts: float = 15.0
    seed: int | None = None


class RespirationSynth:
    """Both bands at a rate from a breathing phase function; `next(n)` gives (n, 2) uint16 counts."""

    def __init__(self, fs: float, phase: Callable[[np.ndarray], np.ndarray], params: BreathingParams | None = None):
        self.fs = float(fs)
        self.phase = phase
        self.p = params or BreathingParams()
        self.rng = np.random.default_rng(self.p.seed)
        self._n = 0

    def next(self, n: int) -> np.ndarray:
        """The next n samples of (thoracic, abdominal)."""
        t = (self._n + np.arange(n)) / self.fs
        self._n += n
        out = np.empty((n, 2))
        for i, band in enumerate(("thoracic", "abdominal")):
            ph = self.phase(t) - BAND_LAG[band]
            shape = np.cos(ph) + 0.15 * np.cos(2 * ph)
            out[:, i] = (BAND_BASELINE[band] + self.p.depth * BAND_AMPLITUDE[band] * shape
                         + self.rng.normal(0, self.p.noise_counts, n))
        return np.clip(np.rint(out), 0, 65535).astype(np.uint16)


class MotionSynth:
    """3-axis acceleration for an activity; `next(n)` gives (n, 3) int16 counts (1/256 g)."""

    def __init__(self, fs: float, activity: str = "rest", cadence: float | None = None, seed: int | None = None):
        if activity not in ACTIVITIES:
            raise ValueError(f"activity must be one of {', '.join(ACTIVITIES)}")
        default, bounce = ACTIVITIES[activity]
        self.fs = float(fs)
        self.activity = activity
        self.cadence = float(cadence if cadence is not None else default)
        if activity != "rest" and not 40 <= self.cadence <= 220:
            raise ValueError("cadence must be 40-220 steps/min")
        self.bounce = bounce
        self.rng = np.random.default_rng(seed)
        self._n = 0

    def next(self, n: int) -> np.ndarray:
        """The next n samples of (x forward, y vertical, z lateral)."""
        t = (self._n + np.arange(n)) / self.fs
        self._n += n
        step_hz = self.cadence / 60.0
        x = 0.05 * np.sin(2 * np.pi * 0.2 * t)
        y = -1.0 + np.zeros(n)
        z = np.zeros(n)
        if self.bounce:
            y += self.bounce * np.abs(np.sin(np.pi * step_hz * t)) * 2 - self.bounce  # one peak per step
            x += 0.3 * self.bounce * np.sin(np.pi * step_hz * t)  # half cadence: one sway per stride
            z += 0.2 * self.bounce * np.sin(np.pi * step_hz * t + 0.5)
        xyz = np.stack([x, y, z], axis=1) * G + self.rng.normal(0, 2.0, (n, 3))
        return np.clip(np.rint(xyz), -4096, 4095).astype(np.int16)
