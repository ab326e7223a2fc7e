"""Labelled examples from the shared PhysioNet records, for fitting and cross-validating the analysis.

Evaluation only (the tests, scripts/bench_analysis.py and scripts/fit_analysis.py): it reads
WFDB and .mat files and is never imported by the daemon.

- CinC 2017: each KardiaMobile recording whole, at 300 Hz, labelled N, A, O or ~ (noisy).
- MIT-BIH: 30 s windows at a chosen rate, labelled by the rhythm annotation in force over most of
  the window (A for atrial fibrillation or flutter, N for sinus, O otherwise), with the
  annotated beats and the rate they give (60 / their mean interval).
- Noisy MIT-BIH: the same windows with NSTDB noise added at a set SNR: muscle artefact (`ma`),
  baseline wander (`bw`), and electrode motion (`em`, recovered as record 118e24 minus record
  118, in the stretches where NSTDB added it). SNR as NSTDB defines it: the signal's power is
  (median QRS peak-to-peak)^2 / 8, the noise's its variance.

Every example carries a `group` (the recording it was cut from), so folds never split a
recording: a window and its noisy copies are always on the same side.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.analysis import evaluation

MITDB_RECORDS = ("101 102 104 106 107 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 "
                 "215 217 220 223 230").split()
WINDOW_S = 30.0
AF_RHYTHMS = ("(AFIB", "(AFL")
SINUS_RHYTHMS = ("(N",)


@dataclass
class Example:
    """One recording or window: samples (mV), rate, label, the recording it is from, its reference beats."""

    group: str
    source: str  # cinc, mitdb or noise
    x: np.ndarray
    fs: float
    label: str  # N, A, O or ~
    beats: np.ndarray | None = None  # annotated beats (sample indices at fs), where known
    snr_db: float | None = None
    noise: str | None = None

    @property
    def reference_rate(self) -> float | None:
        """60 / the mean interval of the annotated beats (bpm), or None."""
        if self.beats is None or len(self.beats) < 2:
            return None
        return 60.0 * self.fs * (len(self.beats) - 1) / float(self.beats[-1] - self.beats[0])


def cinc(data: Path) -> list[Example]:
    """The CinC 2017 recordings, whole, in mV at 300 Hz."""
    from scipy import io as sio

    d = data / "cinc2017"
    labels = dict(csv.reader(open(d / "REFERENCE.csv")))
    return [Example(name, "cinc", sio.loadmat(d / f"{name}.mat")["val"][0].astype(float) / 1000.0, 300.0, label)
            for name, label in sorted(labels.items())]


def _resample(x: np.ndarray, fs_from: float, fs_to: float) -> np.ndarray:
    from fractions import Fraction

    from scipy import signal

    if fs_from == fs_to:
        return x
    f = Fraction(fs_to / fs_from).limit_denominator(1000)
    return signal.resample_poly(x, f.numerator, f.denominator)


def _rhythm_at(ann, n: int) -> np.ndarray:
    """The rhythm label (N, A, O) in force at each sample of a record."""
    out = np.full(n, "O", dtype="<U1")
    marks = [(int(s), note.strip("\x00")) for s, sym, note in zip(ann.sample, ann.symbol, ann.aux_note)
             if sym == "+" and note]
    for i, (start, note) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else n
        label = "A" if note.startswith(AF_RHYTHMS) else "N" if note in SINUS_RHYTHMS else "O"
        out[start:end] = label
    return out


def mitdb_record(data: Path, record: str, fs: float = 300.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channel 0 of a MIT-BIH record at fs (mV), its beats at fs, and the rhythm label per sample at fs."""
    import wfdb

    rec = wfdb.rdrecord(str(data / "mitdb" / record))
    ann = wfdb.rdann(str(data / "mitdb" / record), "atr")
    x = rec.p_signal[:, 0]
    rhythm = _rhythm_at(ann, len(x))
    beats, _ = evaluation.reference_beats(str(data / "mitdb" / record))
    k = fs / rec.fs
    idx = np.minimum((np.arange(int(len(x) * k)) / k).astype(np.int64), len(x) - 1)
    return _resample(x, rec.fs, fs), np.rint(beats * k).astype(np.int64), rhythm[idx]


def mitdb_windows(data: Path, fs: float = 300.0, records=MITDB_RECORDS, seconds: float = WINDOW_S,
                  every: int = 1) -> list[Example]:
    """Consecutive windows of each record (every `every`-th), labelled by their majority rhythm."""
    out = []
    width = int(round(seconds * fs))
    for record in records:
        x, beats, rhythm = mitdb_record(data, record, fs)
        for i, a in enumerate(range(0, len(x) - width + 1, width)):
            if i % every:
                continue
            labels, counts = np.unique(rhythm[a:a + width], return_counts=True)
            inside = beats[(beats >= a) & (beats < a + width)] - a
            out.append(Example(record, "mitdb", x[a:a + width], fs, str(labels[np.argmax(counts)]), inside))
    return out


def noise_records(data: Path, fs: float = 300.0) -> dict[str, np.ndarray]:
    """The NSTDB noises at fs (mV): ma, bw, and em (118e24 minus 118 where NSTDB added it)."""
    import wfdb

    out = {}
    for name in ("ma", "bw"):
        rec = wfdb.rdrecord(str(data / "nstdb" / name))
        out[name] = _resample(rec.p_signal[:, 0], rec.fs, fs)
    noisy = wfdb.rdrecord(str(data / "nstdb" / "118e24"))
    clean = wfdb.rdrecord(str(data / "mitdb" / "118"))
    em = noisy.p_signal[:, 0] - clean.p_signal[:, 0]
    step = int(noisy.fs)  # keep the seconds where noise was added
    secs = em[:len(em) // step * step].reshape(-1, step)
    out["em"] = _resample(secs[secs.std(axis=1) > 1e-3].ravel(), noisy.fs, fs)
    return out


def signal_power(x: np.ndarray, beats: np.ndarray, fs: float) -> float:
    """NSTDB's signal power: (median QRS peak-to-peak)^2 / 8, over +-50 ms of each annotated beat."""
    w = int(round(0.05 * fs))
    beats = beats[(beats >= w) & (beats + w < len(x))]
    if len(beats) == 0:
        return float(np.var(x))
    rows = x[beats[:, None] + np.arange(-w, w)[None, :]]
    return float(np.median(np.ptp(rows, axis=1)) ** 2 / 8.0)


def with_noise(clean: list[Example], noises: dict[str, np.ndarray], snrs_db, seed: int = 0) -> list[Example]:
    """Each clean window with each noise at each SNR, from a random place in the noise record."""
    rng = np.random.default_rng(seed)
    out = []
    for ex in clean:
        s = signal_power(ex.x, ex.beats if ex.beats is not None else np.zeros(0, np.int64), ex.fs)
        for name, noise in noises.items():
            for snr in snrs_db:
                start = int(rng.integers(0, len(noise) - len(ex.x)))
                piece = noise[start:start + len(ex.x)] - noise[start:start + len(ex.x)].mean()
                gain = np.sqrt(s / (max(float(np.var(piece)), 1e-12) * 10 ** (snr / 10)))
                out.append(Example(ex.group, "noise", ex.x + gain * piece, ex.fs, ex.label, ex.beats, float(snr), name))
    return out


def folds(groups: list[str], k: int = 5, seed: int = 0) -> np.ndarray:
    """A fold number per example, whole groups to one fold (grouped k-fold, shuffled by group)."""
    names = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[i]: n % k for n, i in enumerate(order)}
    return np.array([fold_of[g] for g in groups])
