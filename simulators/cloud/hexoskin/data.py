"""The `data` resource's formats: upload bodies in; JSON, CSV and zip (WAV + .hxd) out.

- JSON: `[{"data": {"<datatype>": [[hexotimestamp, value], ...]}, "user": uri}]`, at most
  MAX_POINTS points per datatype; beyond that every k-th point is kept (k = ceil(n / MAX_POINTS)),
  so the points returned are real samples with their real times.
- CSV: a `hexotimestamp` column and one per datatype, a row per timestamp any datatype has,
  blank where a datatype has none; subsampled like JSON.
- Zip (`application/octet-stream`): never subsampled. A folder (`record_<id>/`, `range_<id>/` or
  `data_<start>_<end>/`) holds one file per datatype: a synchronous datatype is a RIFF/WAV
  file (PCM 16-bit mono, 44-byte header, the datatype's rate) from its first to its last
  sample, an asynchronous one an `.hxd` file of little-endian (uint64 timestamp, int64 value)
  pairs. `info.json` gives each file's first HexoTimestamp, rate, sample count, and the gaps
  (spans with no samples, written as 0 in a WAV file). A synchronous datatype whose values do
  not fit 16 bits is written as `.hxd` instead, so nothing is ever clipped.
- EDF+ (`application/x-edf`, written by edfio): never subsampled. The recording starts at the
  whole second before the first sample, in 1 s data records; each synchronous datatype is a
  signal at its rate, labelled with its name, in counts (physical = digital, so 16-bit values
  are exact; wider ones are scaled to fit and say so in their transducer field). Spans where a
  signal has no samples are annotations `no data: <name>`; asynchronous datatypes (RR
  intervals, QRS, steps) are annotations `<name>=<value>` at their times.
"""

from __future__ import annotations

import io
import json
import math
import wave
import zipfile
from typing import Any

import numpy as np

from gateway.vendors import hexoskin as hx

Series = tuple[np.ndarray, np.ndarray]  # int64 timestamps (sorted, unique) and int64 values
HXD = np.dtype([("t", "<u8"), ("v", "<i8")])


class UploadError(ValueError):
    """A 400: the upload body is not one this API takes; the message names the part."""


def parse_upload(obj: Any) -> tuple[dict[str, Any] | str | int, dict[int, Series]]:
    """An upload body -> (its record: a {device, start, firmware_rev} dict or a record URI/id, its series)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), dict) or "record" not in obj:
        raise UploadError('the body must be an object with "record" and "data"')
    record = obj["record"]
    if isinstance(record, dict):
        device, start = record.get("device"), record.get("start")
        if not isinstance(device, str) or not 0 < len(device) <= 64 or not device.isprintable():
            raise UploadError("record.device must be the device id (1-64 printable characters)")
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= hx.MAX_TIMESTAMP:
            raise UploadError("record.start must be the session's first HexoTimestamp (a non-negative integer)")
        firmware = record.get("firmware_rev", "")
        if not isinstance(firmware, str) or len(firmware) > 32:
            raise UploadError("record.firmware_rev must be a string of at most 32 characters")
    elif not isinstance(record, (str, int)) or isinstance(record, bool):
        raise UploadError("record must be a record URI, a record id or {device, start, firmware_rev}")
    series = {}
    for key, points in obj["data"].items():
        if not key.isdigit() or int(key) not in hx.DATATYPES:
            raise UploadError(f"data: unknown datatype {key!r} (known: {', '.join(map(str, sorted(hx.DATATYPES)))})")
        if isinstance(points, list) and not points:
            series[int(key)] = (np.zeros(0, np.int64), np.zeros(0, np.int64))
            continue
        try:
            arr = np.asarray(points) if isinstance(points, list) else np.zeros(0)
        except (ValueError, TypeError, OverflowError):  # ragged or otherwise not a table of numbers
            arr = np.zeros(0)
        has_bool = arr.dtype.kind == "i" and any(v is True or v is False for row in points for v in row)
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.dtype.kind != "i" or has_bool:
            raise UploadError(f"data.{key}: must be a list of [hexotimestamp, value] integer pairs")
        ts, vals = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
        if ts[0] < 0 or ts[-1] > hx.MAX_TIMESTAMP or (len(ts) > 1 and not (np.diff(ts) > 0).all()):
            raise UploadError(f"data.{key}: timestamps must be HexoTimestamps (0 to {hx.MAX_TIMESTAMP}),"
                              " strictly increasing")
        series[int(key)] = (ts, vals)
    return record, series


def check_alignment(series: dict[int, Series], start: int) -> None:
    """Samples of a synchronous datatype fall on its sample grid from the record's start; 400 if not."""
    for dataid, (ts, _) in series.items():
        step = hx.DATATYPES[dataid].hexo_freq
        if len(ts) and ts[0] < start:
            raise UploadError(f"data.{dataid}: a sample at {int(ts[0])} precedes the record's start {start}")
        if step and step > 1 and len(ts) and ((ts - start) % step).any():
            raise UploadError(f"data.{dataid}: samples must fall every {step} ticks from the record's start {start}")


def subsample(s: Series, max_points: int = hx.MAX_POINTS) -> Series:
    """At most max_points of a series: every k-th point, from the first."""
    ts, vals = s
    if len(ts) <= max_points:
        return s
    k = math.ceil(len(ts) / max_points)
    return ts[::k], vals[::k]


def json_answer(user_uri: str, series: dict[int, Series]) -> list[dict[str, Any]]:
    """The JSON shape: one object per user with each datatype's (subsampled) points."""
    return [{"data": {str(d): hx.series(*subsample(s)) for d, s in series.items()}, "user": user_uri}]


def flat_answer(series: dict[int, Series]) -> list[list[int | None]]:
    """`flat=1`: the CSV's rows as JSON, [timestamp, value of each datatype asked (null: none)]."""
    cut = {d: subsample(s) for d, s in series.items()}
    times = np.unique(np.concatenate([s[0] for s in cut.values()])) if cut else np.zeros(0, np.int64)
    columns = [times.astype(object)]
    for ts, vals in cut.values():
        col = np.full(len(times), None, dtype=object)
        col[np.searchsorted(times, ts)] = vals.astype(np.int64).astype(object)
        columns.append(col)
    return np.column_stack(columns).tolist() if len(times) else []


def csv_answer(series: dict[int, Series]) -> str:
    """Timestamp rows, a column per datatype (blank where it has no sample)."""
    cut = {d: subsample(s) for d, s in series.items()}
    times = np.unique(np.concatenate([s[0] for s in cut.values()])) if cut else np.zeros(0, np.int64)
    columns = [times.astype(str).astype(object)]
    for ts, vals in cut.values():
        col = np.full(len(times), "", dtype=object)
        col[np.searchsorted(times, ts)] = vals.astype(str)
        columns.append(col)
    lines = ["hexotimestamp," + ",".join(str(d) for d in cut)]
    lines += [",".join(row) for row in zip(*columns)]
    return "\n".join(lines) + "\n"


def edf_answer(series: dict[int, Series]) -> bytes:
    """The EDF+ download (see the module's docstring)."""
    from datetime import datetime, timezone

    from edfio import Edf, EdfAnnotation, EdfSignal, Recording

    present = {d: s for d, s in series.items() if len(s[0])}
    if not present:
        raise ValueError("no samples in this window")
    t0 = min(int(ts[0]) for ts, _ in present.values()) // hx.TICKS_PER_SECOND * hx.TICKS_PER_SECOND
    end = max(int(ts[-1]) for ts, _ in present.values())
    seconds = max(1, math.ceil((end + 1 - t0) / hx.TICKS_PER_SECOND))
    signals, notes = [], []
    for dataid, (ts, vals) in present.items():
        dt = hx.DATATYPES[dataid]
        if not dt.hexo_freq or dt.freq != int(dt.freq):
            notes += [EdfAnnotation(round((int(t) - t0) / hx.TICKS_PER_SECOND, 6), None, f"{dt.name}={int(v)}")
                      for t, v in zip(ts, vals)]
            continue
        slots = (ts - t0) // dt.hexo_freq
        grid = np.zeros(seconds * int(dt.freq), dtype=np.float64)
        grid[slots] = vals
        missing = np.ones(len(grid), bool)
        missing[slots] = False
        edges = np.flatnonzero(np.diff(np.concatenate(([0], missing.view(np.int8), [0])))).reshape(-1, 2)
        notes += [EdfAnnotation(a / dt.freq, (b - a) / dt.freq, f"no data: {dt.name}") for a, b in edges]
        exact = vals.min() >= -32768 and vals.max() <= 32767
        span = (-32768, 32767) if exact else (float(vals.min()), float(max(vals.max(), vals.min() + 1)))
        signals.append(EdfSignal(grid, int(dt.freq), label=dt.name, physical_range=span,
                                 transducer_type="" if exact else "scaled to 16 bits"))
    start = datetime.fromtimestamp(t0 / hx.TICKS_PER_SECOND, timezone.utc)
    edf = Edf(signals, recording=Recording(startdate=start.date()), starttime=start.time().replace(tzinfo=None),
              data_record_duration=1, annotations=sorted(notes))
    buf = io.BytesIO()
    edf.write(buf)
    return buf.getvalue()


def _wav(values: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(values.astype("<i2").tobytes())
    return buf.getvalue()


def zip_answer(folder: str, series: dict[int, Series]) -> bytes:
    """The binary download: WAV for synchronous datatypes, .hxd for the others, and info.json."""
    info: dict[str, Any] = {"folder": folder, "timestamp_unit": "1/256 s", "files": {}}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for dataid, (ts, vals) in series.items():
            dt = hx.DATATYPES[dataid]
            if len(ts) == 0:
                continue
            step = dt.hexo_freq
            fits = vals.min() >= -32768 and vals.max() <= 32767
            entry: dict[str, Any] = {"datatype": dataid, "start": int(ts[0]), "end": int(ts[-1]), "samples": len(ts)}
            if step and fits and dt.freq == int(dt.freq):
                slots = (ts - ts[0]) // step
                grid = np.zeros(int(slots[-1]) + 1, dtype=np.int64)
                grid[slots] = vals
                missing = np.ones(len(grid), bool)
                missing[slots] = False
                edges = np.flatnonzero(np.diff(np.concatenate(([0], missing.view(np.int8), [0]))))
                entry.update(file=f"{dt.file}.wav", format="wav", frequency=int(dt.freq),
                             gaps=[[int(ts[0] + a * step), int(ts[0] + b * step)] for a, b in edges.reshape(-1, 2)])
                z.writestr(f"{folder}/{dt.file}.wav", _wav(grid, int(dt.freq)))
            else:
                pairs = np.empty(len(ts), HXD)
                pairs["t"], pairs["v"] = ts, vals
                entry.update(file=f"{dt.file}.hxd", format="hxd")
                z.writestr(f"{folder}/{dt.file}.hxd", pairs.tobytes())
            info["files"][str(dataid)] = entry
        z.writestr(f"{folder}/info.json", json.dumps(info, indent=1))
    return buf.getvalue()
