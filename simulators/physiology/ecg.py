"""Synthetic single-lead (lead I) ECG in millivolts, rendered in chunks of any size.

Each beat is a sum of Gaussian waves (P, Q, R, S and a two-part T) placed at its R time; the
QT interval follows the RR interval (Bazett). Rhythms differ in the RR series and in the
atrial activity:
- normal / bradycardia / tachycardia: sinus beats with a P wave; RR modulated by respiratory
  sinus arrhythmia (at the breathing rate) and Mayer waves (0.1 Hz) plus a little noise.
- afib: irregularly irregular RR (independent draws, coefficient of variation ~0.22), no P
  wave, fibrillatory f-waves at 4-9 Hz.
Beat-to-beat variability: each beat's wave amplitudes vary by a few percent, and breathing
modulates them by 7 % (the electrical axis turns with the chest). Baseline wander
(at the breathing rate and slower), mains hum and white noise are optional.

Rendering loops over beats (about one a second), never over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Ranges each rhythm accepts (bpm) and its default rate; normal 50-100 as AliveCor defines it.
RHYTHMS: dict[str, tuple[float, float, float]] = {
    "normal": (50, 100, 70),
    "bradycardia": (30, 50, 45),
    "tachycardia": (100, 200, 125),
    "afib": (40, 200, 95),
}
ALIASES = {"brady": "bradycardia", "tachy": "tachycardia", "af": "afib", "sinus": "normal"}

# Wave: (centre s from R at RR = 1 s, amplitude mV, width s). T positions scale with sqrt(RR).
P_WAVE = (-0.17, 0.13, 0.022)
QRS = ((-0.028, -0.10, 0.0085), (0.0, 1.15, 0.0095), (0.030, -0.22, 0.010))
T_WAVES = ((0.27, 0.20, 0.055), (0.31, 0.14, 0.032))
SUPPORT_S = 0.8  # a beat contributes within +-0.8 s of its R time
RESP_AMPLITUDE = 0.07  # respiratory modulation of each beat's amplitude


def normalise_rhythm(name: str) -> str:
    """The canonical rhythm name for a name or alias; ValueError if unknown."""
    key = ALIASES.get(name, name)
    if key not in RHYTHMS:
        raise ValueError(f"unknown rhythm {name!r}; choose from {', '.join(RHYTHMS)} (or {', '.join(ALIASES)})")
    return key


def check_rate(rhythm: str, heart_rate: float | None) -> float:
    """The heart rate to use; ValueError when it contradicts the rhythm."""
    lo, hi, default = RHYTHMS[rhythm]
    if heart_rate is None:
        return default
    if not lo <= heart_rate <= hi:
        raise ValueError(f"{rhythm} means {lo:g}-{hi:g} bpm; {heart_rate:g} bpm contradicts it")
    return float(heart_rate)


@dataclass
class EcgParams:
    """What to synthesise."""

    rhythm: str = "normal"
    heart_rate: float | None = None
    breathing_rate: float = 15.0  # breaths per minute: RSA and baseline wander follow it
    mains_frequency: int = 60
    hum_mv: float = 0.0  # mains hum amplitude
    wander_mv: float = 0.0  # baseline wander amplitude
    noise_mv: float = 0.0  # white noise standard deviation
    amplitude_mv: float = 1.0  # scales the whole complex (R is about 1.15 mV at 1.0)
    seed: int | None = None


class EcgSynth:
    """A continuous synthetic ECG; `next(n)` returns the next n samples in mV."""

    def __init__(self, fs: float, params: EcgParams | None = None) -> None:
        self.fs = float(fs)
        self.p = params or EcgParams()
        self.rhythm = normalise_rhythm(self.p.rhythm)
        self.heart_rate = check_rate(self.rhythm, self.p.heart_rate)
        self.rng = np.random.default_rng(self.p.seed)
        self._n = 0  # samples rendered so far
        self._rr0 = 60.0 / self.heart_rate
        self._resp_hz = self.p.breathing_rate / 60.0
        self._phases = self.rng.uniform(0, 2 * np.pi, 4)
        # Beats: R time, RR that preceded it, amplitude factors of the waves.
        self._beats: list[tuple[float, float, np.ndarray]] = []
        self._next_r = self.rng.uniform(0.2, 0.2 + self._rr0)
        self._fwave_freqs = self.rng.uniform(4.0, 9.0, 3)
        self._af_queue: list[float] = []
        self.beat_times: list[float] = []  # every R time generated, for tests and analysis checks

    def breathing_phase(self, t: np.ndarray) -> np.ndarray:
        """The breathing cycle's phase (rad) at times t (s); chest expansion is cos(phase).

        RSA shortens RR at sin(phase) = -1, mid-inspiration, where expansion rises fastest:
        a respiration channel drawn from this phase is physiologically coupled to the ECG.
        """
        return 2 * np.pi * self._resp_hz * np.asarray(t, dtype=float) + self._phases[0]

    def _rr(self, t: float) -> float:
        rr0 = self._rr0
        if self.rhythm == "afib":
            # Irregularly irregular: independent RR, CV ~0.22, drawn 8 at a time and scaled so
            # each 8 average exactly the asked rate; never below 0.3 s.
            if not self._af_queue:
                draw = self.rng.gamma(20.0, 1 / 20.0, 8)
                self._af_queue = list(np.maximum(0.3, rr0 * draw / draw.mean()))
            return float(self._af_queue.pop())
        rsa = 0.035 if self.rhythm != "tachycardia" else 0.01
        mod = (rsa * np.sin(2 * np.pi * self._resp_hz * t + self._phases[0])
               + 0.02 * np.sin(2 * np.pi * 0.1 * t + self._phases[1]))
        return float(rr0 * (1 + mod + self.rng.normal(0, 0.008)))

    def _extend_beats(self, until: float) -> None:
        while self._next_r < until:
            t = self._next_r
            rr = self._rr(t)
            # Breathing turns the heart's axis: the beat's amplitude follows it (+-7 %).
            resp = 1.0 + RESP_AMPLITUDE * np.sin(2 * np.pi * self._resp_hz * t + self._phases[0] + 1.0)
            self._beats.append((t, rr, resp * self.rng.normal(1.0, 0.03, 6)))
            self.beat_times.append(t)
            self._next_r = t + rr

    def next(self, n: int) -> np.ndarray:
        """The next n samples, in millivolts."""
        t = (self._n + np.arange(n)) / self.fs
        t0, t1 = self._n / self.fs, (self._n + n) / self.fs
        self._extend_beats(t1 + SUPPORT_S)
        out = np.zeros(n)
        afib = self.rhythm == "afib"
        keep = []
        for beat in self._beats:
            r, rr, amp = beat
            if r + SUPPORT_S < t0:
                continue  # entirely in the past: dropped below
            keep.append(beat)
            if r - SUPPORT_S >= t1:
                continue
            lo = max(0, int(np.floor((r - SUPPORT_S - t0) * self.fs)))
            hi = min(n, int(np.ceil((r + SUPPORT_S - t0) * self.fs)))
            if lo >= hi:
                continue
            dt = t[lo:hi] - r
            qt = np.sqrt(rr)
            waves = [] if afib else [P_WAVE]
            waves += list(QRS) + [(c * qt, a, w * qt) for c, a, w in T_WAVES]
            centres = np.array([w[0] for w in waves])[:, None]
            amps = np.array([w[1] for w in waves])[:, None] * amp[:len(waves), None]
            widths = np.array([w[2] for w in waves])[:, None]
            out[lo:hi] += (amps * np.exp(-0.5 * ((dt[None, :] - centres) / widths) ** 2)).sum(axis=0)
        self._beats = keep
        out *= self.p.amplitude_mv
        if afib:
            f = self._fwave_freqs
            out += 0.04 * (np.sin(2 * np.pi * f[0] * t + self._phases[2])
                           + 0.6 * np.sin(2 * np.pi * f[1] * t + 0.5 * np.sin(2 * np.pi * 0.3 * t))
                           + 0.4 * np.sin(2 * np.pi * f[2] * t + self._phases[3]))
        if self.p.wander_mv:
            out += self.p.wander_mv * (0.7 * np.sin(2 * np.pi * self._resp_hz * t + self._phases[1])
                                       + 0.3 * np.sin(2 * np.pi * 0.05 * t + self._phases[2]))
        if self.p.hum_mv:
            out += self.p.hum_mv * np.sin(2 * np.pi * self.p.mains_frequency * t)
        if self.p.noise_mv:
            out += self.rng.normal(0, self.p.noise_mv, n)
        self._n += n
        return out
