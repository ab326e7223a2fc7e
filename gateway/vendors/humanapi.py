"""Human API conventions (vendor-docs/human-api-conventions.md) for the hub: types, formats, shapes.

Used by the gateway's hub packager and uplink and by the hub emulator. Query dates are
`YYYYMMDDTHHmmssZ` (UTC), date ranges `YYYY-MM-DD`; objects carry ISO 8601 UTC times with
milliseconds and the measurement's own UTC offset in `tzOffset`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

TYPES = ("heart_rate", "blood_pressure", "ecg")
SUMMARY_NAMES = {"heart_rate": "heartRate", "blood_pressure": "bloodPressure", "ecg": "ecg"}
FILTER_FORMAT = "%Y%m%dT%H%M%SZ"
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LIMIT = (1, 500, 50)  # min, max, default
COMMON = ("timestamp", "source", "sourceId")
# Type-specific fields: name -> (kind, lo, hi, required)
FIELDS: dict[str, dict[str, tuple[type, float, float, bool]]] = {
    "heart_rate": {"value": (float, 20, 300, True)},
    "blood_pressure": {"systolic": (float, 30, 300, True), "diastolic": (float, 30, 300, True),
                       "heartRate": (float, 20, 300, False)},
    "ecg": {"duration": (float, 0.001, 86_400, True), "sampleRate": (int, 1, 10_000, True),
            "leadCount": (int, 1, 12, False), "heartRate": (int, 1, 399, False), "determination": (str, 0, 40, False)},
}
UNITS = {"heart_rate": "bpm", "blood_pressure": "mmHg"}


class HumanApiValidationError(ValueError):
    """A body or query the hub refuses; the message names the field."""


def format_time(unix_s: float) -> str:
    """2026-11-23T10:00:00.000Z."""
    return datetime.fromtimestamp(unix_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_filter_time(text: str, name: str) -> float:
    """A YYYYMMDDTHHmmssZ query value as Unix seconds."""
    try:
        return datetime.strptime(text, FILTER_FORMAT).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise HumanApiValidationError(f"{name} must be a UTC date as YYYYMMDDTHHmmssZ, not {text!r}") from None


def parse_day(text: str, name: str) -> datetime:
    """A YYYY-MM-DD query value."""
    try:
        if not DATE_RE.match(text):
            raise ValueError
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise HumanApiValidationError(f"{name} must be a date as YYYY-MM-DD, not {text!r}") from None


def parse_measurement(kind: str, obj: Any) -> dict[str, Any]:
    """Validate an ingest body; return {timestamp (Unix s), tzOffset, source, sourceId, fields}."""
    if not isinstance(obj, dict):
        raise HumanApiValidationError("the body must be a JSON object")
    spec = FIELDS[kind]
    unknown = sorted(set(obj) - set(COMMON) - set(spec) - ({"unit"} if kind in UNITS else set()))
    if unknown:
        raise HumanApiValidationError(f"unknown field(s) for {kind}: {', '.join(unknown)}")
    if kind in UNITS and obj.get("unit", UNITS[kind]) != UNITS[kind]:
        raise HumanApiValidationError(f"unit must be {UNITS[kind]}")
    text = obj.get("timestamp")
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise HumanApiValidationError("timestamp must be ISO 8601 with a UTC offset, e.g. 2026-11-23T10:00:00+01:00")
    source = obj.get("source")
    if not isinstance(source, str) or not 0 < len(source) <= 64:
        raise HumanApiValidationError("source is required: a string of at most 64 characters")
    source_id = obj.get("sourceId")
    if source_id is not None and (not isinstance(source_id, str) or len(source_id) > 255):
        raise HumanApiValidationError("sourceId must be a string of at most 255 characters")
    fields: dict[str, Any] = {}
    for name, (typ, lo, hi, required) in spec.items():
        value = obj.get(name)
        if value is None:
            if required:
                raise HumanApiValidationError(f"{name} is required for {kind}")
            continue
        if typ is str:
            if not isinstance(value, str) or len(value) > hi:
                raise HumanApiValidationError(f"{name} must be a string of at most {hi:g} characters")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or (typ is int and not isinstance(value, int)):
            raise HumanApiValidationError(f"{name} must be {'an integer' if typ is int else 'a number'}")
        elif not lo <= value <= hi:
            raise HumanApiValidationError(f"{name} must be between {lo:g} and {hi:g}, not {value}")
        fields[name] = value
    if kind == "blood_pressure" and fields["systolic"] <= fields["diastolic"]:
        raise HumanApiValidationError("systolic must be higher than diastolic")
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    tz_offset = f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return {"timestamp": moment.timestamp(), "tzOffset": tz_offset, "source": source, "sourceId": source_id,
            "fields": fields}


def measurement_body(kind: str, timestamp: str, source: str, source_id: str | None = None, **fields: Any) -> bytes:
    """The JSON body of the hub's ingest (POST /v1/human/<kind>) for one measurement."""
    obj: dict[str, Any] = {"timestamp": timestamp, "source": source}
    if source_id is not None:
        obj["sourceId"] = source_id
    obj.update({k: v for k, v in fields.items() if v is not None})
    return json.dumps(obj, separators=(",", ":")).encode()
