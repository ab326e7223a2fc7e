"""The `report` resource: metrics computed from a record's or a range's stored data.

Each metric uses the derived series when they were uploaded (19 heart rate, 33 breathing
rate) and derives them from the raw channels when not (gateway.analysis, as the vendor's
server would). Definitions where the document is silent:
- Activity (1, 3, 4) in g: per second, the mean absolute deviation of the acceleration
  magnitude from its mean over that second (gravity removed whatever the sensor's calibration);
  the average, least and greatest of those seconds.
- Steps (71): peaks of the 0.5-5 Hz band of the acceleration magnitude, at least 0.25 s apart
  and at least STEP_PROMINENCE_G high (one per foot strike).
- Heart-rate histogram (45): seconds of heart rate in 20 bpm bins from 20 to 220.
- HRV (50, LF in normalised units, %) only when the document's conditions hold: more than 128
  detected beats, clean ECG (at least CLEAN_SHARE of beats match the median beat), and a range
  whose training routine's activity type is 8 (resting) or 12 (sleep); -1 otherwise, and -1
  for any metric without the data it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy import signal

from gateway.analysis import breathing, heart_rate, hrv, qrs, quality
from gateway.vendors import hexoskin as hx
from simulators.cloud.hexoskin import resources as R

Series = tuple[np.ndarray, np.ndarray]
HRV_MIN_BEATS = 128
HRV_ACTIVITY_TYPES = (8, 12)  # resting, sleep
CLEAN_SHARE = 0.9
STEP_PROMINENCE_G = 0.1
HISTOGRAM_EDGES = list(range(20, 221, 20))
NOT_COMPUTED = -1


@dataclass(frozen=True)
class Metric:
    """A metric of the catalogue (`/api/v1/metric/`)."""

    id: int
    name: str
    title: str
    unit: str
    zones: tuple[float, ...]


METRICS = {m.id: m for m in (
    Metric(1, "activity_avg", "Act Avg", "g", (0, 0.1, 0.2, 0.3, 0.4, 0.5)),
    Metric(3, "activity_min", "Act Min", "g", (0, 0.1, 0.2, 0.3, 0.4, 0.5)),
    Metric(4, "activity_max", "Act Max", "g", (0, 0.1, 0.2, 0.3, 0.4, 0.5)),
    Metric(12, "breathingrate_avg", "BR Avg", "rpm", (0, 10, 20, 30, 40, 50)),
    Metric(14, "breathingrate_min", "BR Min", "rpm", (0, 10, 20, 30, 40, 50)),
    Metric(15, "breathingrate_max", "BR Max", "rpm", (0, 10, 20, 30, 40, 50)),
    Metric(44, "heartrate_avg", "HR Avg", "bpm", (0, 60, 80, 100, 120, 140)),
    Metric(45, "heartrate_histo", "heartrate histo", "bpm", ()),
    Metric(46, "heartrate_min", "HR Min", "bpm", (0, 60, 80, 100, 120, 140)),
    Metric(47, "heartrate_max", "HR Max", "bpm", (0, 60, 80, 100, 120, 140)),
    Metric(50, "hrvlfnorm_avg", "HRV LF norm", "%", (50, 60, 70, 80, 90, 100)),
    Metric(71, "step_count", "Steps", "steps", (0, 2000, 5000, 7500, 10000, 12500)),
)}


def activity_per_second(x: np.ndarray, y: np.ndarray, z: np.ndarray, fs: int) -> np.ndarray:
    """Activity (g) of each whole second of 1/256 g acceleration counts."""
    n = min(len(x), len(y), len(z)) // fs * fs
    if n == 0:
        return np.zeros(0)
    mag = np.sqrt(x[:n].astype(float) ** 2 + y[:n].astype(float) ** 2 + z[:n].astype(float) ** 2) / 256.0
    sec = mag.reshape(-1, fs)
    return np.abs(sec - sec.mean(axis=1, keepdims=True)).mean(axis=1)


def step_count(x: np.ndarray, y: np.ndarray, z: np.ndarray, fs: int) -> int:
    """Foot strikes in 1/256 g acceleration counts."""
    n = min(len(x), len(y), len(z))
    if n < 2 * fs:
        return 0
    mag = np.sqrt(x[:n].astype(float) ** 2 + y[:n].astype(float) ** 2 + z[:n].astype(float) ** 2) / 256.0
    band = signal.sosfiltfilt(signal.butter(2, (0.5, 5.0), "bandpass", fs=fs, output="sos"), mag)
    peaks, _ = signal.find_peaks(band, distance=max(1, int(0.25 * fs)), prominence=STEP_PROMINENCE_G)
    return int(len(peaks))


def _zone(value: float, zones: tuple[float, ...]) -> int:
    return int(np.searchsorted(np.asarray(zones), value, side="right")) if zones else 0


class Computer:
    """Computes metrics over one time range from a `series(datatype) -> (timestamps, values)` reader."""

    def __init__(self, series: Callable[[int], Series], activity_type: int | None) -> None:
        self._read = series
        self._cache: dict[int, Series] = {}
        self.activity_type = activity_type

    def series(self, dataid: int) -> Series:
        """A datatype's samples in the range (read once)."""
        if dataid not in self._cache:
            self._cache[dataid] = self._read(dataid)
        return self._cache[dataid]

    @cached_property
    def _ecg_peaks(self) -> tuple[np.ndarray, np.ndarray | None]:
        _, ecg = self.series(hx.ECG_I)
        if len(ecg) < 10 * 256:
            return np.zeros(0, np.int64), None
        filtered = quality.band_passed(ecg.astype(float), 256)
        return qrs.r_peaks(ecg.astype(float), 256, filtered), filtered

    @cached_property
    def heart_rates(self) -> np.ndarray:
        """Per-second heart rates: uploaded (19) or derived from ECG I (once per report)."""
        _, hr = self.series(hx.HEART_RATE)
        if len(hr):
            return hr.astype(float)
        peaks, _ = self._ecg_peaks
        rates = heart_rate.heart_rate_per_second(peaks, 256, len(self.series(hx.ECG_I)[1]))
        return np.rint(rates[np.isfinite(rates)])

    @cached_property
    def breathing_rates(self) -> np.ndarray:
        """Per-second breathing rates: uploaded (33) or derived from the thoracic band (once per report)."""
        _, br = self.series(hx.BREATHING_RATE)
        if len(br):
            return br.astype(float)
        _, resp = self.series(hx.RESP_THORACIC)
        peaks = breathing.breath_peaks(resp, 128)
        rates = heart_rate.rate_per_second(peaks, 128, len(resp), 15.0)
        return np.rint(rates[np.isfinite(rates)])

    def _accel(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(self.series(d)[1] for d in (hx.ACCEL_X, hx.ACCEL_Y, hx.ACCEL_Z))  # type: ignore[return-value]

    @cached_property
    def activity(self) -> np.ndarray:
        """Per-second activity (g), once per report."""
        return activity_per_second(*self._accel(), 64)

    def hrv_lf_norm(self) -> float:
        """LF in normalised units when the document's conditions hold, else -1."""
        if self.activity_type not in HRV_ACTIVITY_TYPES:
            return NOT_COMPUTED
        peaks, filtered = self._ecg_peaks
        if len(peaks) <= HRV_MIN_BEATS or filtered is None:
            return NOT_COMPUTED
        if quality.beat_quality(filtered, peaks, 256).clean.mean() < CLEAN_SHARE:
            return NOT_COMPUTED
        result = hrv.hrv(peaks, 256)
        return NOT_COMPUTED if result is None or result.lf_norm is None else round(result.lf_norm, 2)

    def value(self, metric_id: int) -> Any:
        """One metric's value (-1 when it cannot be computed); the histogram's (edges, counts)."""
        if metric_id in (44, 46, 47, 12, 14, 15):
            rates = self.heart_rates if metric_id >= 44 else self.breathing_rates
            if len(rates) == 0:
                return NOT_COMPUTED
            fn = {44: np.mean, 46: np.min, 47: np.max, 12: np.mean, 14: np.min, 15: np.max}[metric_id]
            return round(float(fn(rates)), 2)
        if metric_id == 45:
            counts, _ = np.histogram(self.heart_rates, bins=HISTOGRAM_EDGES)
            return counts.astype(int).tolist()
        if metric_id in (1, 3, 4):
            act = self.activity
            if len(act) == 0:
                return NOT_COMPUTED
            return round(float({1: np.mean, 3: np.min, 4: np.max}[metric_id](act)), 4)
        if metric_id == 71:
            x, y, z = self._accel()
            return step_count(x, y, z, 64) if len(x) else NOT_COMPUTED
        if metric_id == 50:
            return self.hrv_lf_norm()
        raise KeyError(metric_id)


def metric_object(metric_id: int, value: Any, about_uri: str, timerange: dict[str, Any]) -> dict[str, Any]:
    """One entry of a report's `data`, in the document's shape."""
    m = METRICS[metric_id]
    uri = R.uri("metric", m.id)
    out: dict[str, Any] = {"metric": uri, "name": m.name, "outputtype": "value", "record": about_uri,
                           "timerange": timerange, "title": m.title, "uri": uri}
    if metric_id == 45:
        centres = [(a + b) // 2 for a, b in zip(HISTOGRAM_EDGES, HISTOGRAM_EDGES[1:])]
        out["data1"] = {"bin_edge": HISTOGRAM_EDGES, "count": len(centres), "unit": "bpm", "value": centres}
        out["data2"] = {"count": len(value), "unit": "rep", "value": value}
        return out
    out.update(unit=m.unit, value=value, zone=_zone(value, m.zones) if value != NOT_COMPUTED else None,
               zones=list(m.zones))
    return out


def metric_resource(m: Metric) -> dict[str, Any]:
    """A metric as the `metric` resource lists it."""
    return {"id": m.id, "name": m.name, "title": m.title, "unit": m.unit, "zones": list(m.zones),
            "outputtype": "histogram" if m.id == 45 else "value", "resource_uri": R.uri("metric", m.id)}
