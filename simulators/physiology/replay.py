"""Replay of recorded ECG: WFDB records, PhysioNet .mat records and CSV files, in millivolts.

- WFDB (`.hea` + `.dat`, e.g. MIT-BIH): read with the `wfdb` package (the `replay` extra).
- `.mat` records with a WFDB header (the CinC 2017 KardiaMobile set): samples from the .mat
  `val` array, rate and gain from the header's first two lines (wfdb cannot parse the date
  those headers carry).
- CSV: one column of samples, or two columns `time_s,value`; a header row is allowed. Units
  are mV unless told otherwise (`uv`, or `adc` with a gain in units per mV).

Signals are resampled to the device's rate with a polyphase filter (scipy.signal.resample_poly).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

UNITS = ("mv", "uv", "adc")


class ReplayError(ValueError):
    """A record that cannot be replayed, with the reason."""


def resample(signal: np.ndarray, fs_from: float, fs_to: float) -> np.ndarray:
    """Polyphase resampling from fs_from to fs_to Hz."""
    if fs_from == fs_to:
        return np.asarray(signal, dtype=float)
    ratio = Fraction(fs_to / fs_from).limit_denominator(1000)
    return resample_poly(np.asarray(signal, dtype=float), ratio.numerator, ratio.denominator)


def _header_rate_and_gain(hea: Path, channel: int) -> tuple[float, float, float]:
    lines = [ln for ln in hea.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    try:
        rate = float(lines[0].split()[2].split("/")[0])
        fields = lines[1 + channel].split()
        gain_text = fields[2].split("/")[0]
        gain = float(gain_text.split("(")[0])
        baseline = float(gain_text.split("(")[1].rstrip(")")) if "(" in gain_text else float(fields[4])
    except (IndexError, ValueError) as exc:
        raise ReplayError(f"{hea}: cannot read rate and gain of channel {channel}") from exc
    return rate, gain or 200.0, baseline


def _load_mat(path: Path, channel: int) -> tuple[np.ndarray, float]:
    from scipy.io import loadmat

    hea = path.with_suffix(".hea")
    if not hea.exists():
        raise ReplayError(f"{path}: no header {hea.name} beside it to give the rate and gain")
    rate, gain, baseline = _header_rate_and_gain(hea, channel)
    val = loadmat(path)["val"]
    if channel >= val.shape[0]:
        raise ReplayError(f"{path}: has {val.shape[0]} channel(s), not {channel + 1}")
    return (val[channel].astype(float) - baseline) / gain, rate


def _load_wfdb(path: Path, channel: int) -> tuple[np.ndarray, float]:
    try:
        import wfdb
    except ImportError:
        raise ReplayError("replaying WFDB records needs the wfdb package: pip install 'wearable-gateway[replay]'") from None
    record_name = str(path.with_suffix("")) if path.suffix in (".hea", ".dat") else str(path)
    try:
        rec = wfdb.rdrecord(record_name, channels=[channel])
    except Exception as exc:  # wfdb raises many types for unreadable records
        raise ReplayError(f"{record_name}: not a readable WFDB record ({exc})") from exc
    signal = np.nan_to_num(rec.p_signal[:, 0])
    unit = (rec.units[0] or "mV").lower()
    if unit in ("uv", "µv"):
        signal = signal / 1000.0
    return signal, float(rec.fs)


def _load_csv(path: Path, rate: float | None, units: str, gain: float | None) -> tuple[np.ndarray, float]:
    try:
        table = np.genfromtxt(path, delimiter=",", dtype=float, invalid_raise=True)
    except ValueError as exc:
        raise ReplayError(f"{path}: not a CSV of numbers ({exc})") from None
    if table.ndim == 1:
        values = table
        if np.isnan(values[0]):
            values = values[1:]  # header row
        if rate is None:
            raise ReplayError(f"{path}: one column of samples needs the rate (--replay-rate)")
    else:
        if np.isnan(table[0]).all():
            table = table[1:]
        times, values = table[:, 0], table[:, 1]
        if rate is None:
            dt = np.diff(times)
            if len(dt) == 0 or dt.min() <= 0:
                raise ReplayError(f"{path}: the time column must increase")
            rate = 1.0 / float(np.median(dt))
    if np.isnan(values).any():
        raise ReplayError(f"{path}: has empty or non-numeric values")
    if units == "uv":
        values = values / 1000.0
    elif units == "adc":
        if not gain:
            raise ReplayError("ADC units need a gain in units per mV (--replay-gain)")
        values = values / gain
    return values, float(rate)


def load_record(path: str | Path, channel: int = 0, rate: float | None = None, units: str = "mv",
                gain: float | None = None) -> tuple[np.ndarray, float]:
    """(signal in mV, sampling rate) of a record; ReplayError if it cannot be read."""
    path = Path(path)
    if units not in UNITS:
        raise ReplayError(f"units must be one of {', '.join(UNITS)}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        signal, fs = _load_csv(path, rate, units, gain)
    elif suffix == ".mat":
        signal, fs = _load_mat(path, channel)
    else:
        signal, fs = _load_wfdb(path, channel)
    if len(signal) == 0:
        raise ReplayError(f"{path}: the record is empty")
    return signal, fs


class ReplaySource:
    """A recorded signal served like a synthesiser: `next(n)` mV samples at the device rate."""

    def __init__(self, signal_mv: np.ndarray, fs_in: float, fs_out: float, loop: bool = False) -> None:
        self.signal = resample(signal_mv, fs_in, fs_out)
        self.fs = fs_out
        self.loop = loop
        self._pos = 0

    @property
    def remaining(self) -> int | None:
        """Samples left, or None when looping for ever."""
        return None if self.loop else len(self.signal) - self._pos

    def next(self, n: int) -> np.ndarray:
        """Up to n samples; fewer (possibly none) at the end unless looping."""
        if self.loop:
            idx = (self._pos + np.arange(n)) % len(self.signal)
            self._pos = (self._pos + n) % len(self.signal)
            return self.signal[idx]
        out = self.signal[self._pos:self._pos + n]
        self._pos += len(out)
        return out
