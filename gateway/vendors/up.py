"""UP cardiac events API (vendor-docs/up-band-cardiac-api.md): paths, fields, validation.

Used by the UP emulator and by the UP band's packager and uplink.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone, tzinfo
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

VERSIONS = ("v.1.0", "v.1.1")
EVENTS_PATH = "/nudge/api/{version}/users/@me/cardiac_events"
CREATE_FIELDS = ("title", "heart_rate", "systolic_pressure", "diastolic_pressure", "note", "image_url",
                 "time_created", "tz")
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
HEART_RATE = (20, 300)
PRESSURE = (30, 300)
DEFAULT_TITLE = "Cardiac event"
CREATE_VERSION = "v.1.1"  # the version the gateway writes to
FORM = "application/x-www-form-urlencoded"


class UpValidationError(ValueError):
    """A create request the API refuses; the message names the field."""


def _int(fields: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise UpValidationError(f"{name} must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UpValidationError(f"{name} must be an integer, not {value!r}") from None
    if not lo <= number <= hi:
        raise UpValidationError(f"{name} must be between {lo} and {hi}, not {number}")
    return number


def parse_event(fields: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """Validate the fields of POST .../cardiac_events; return them typed, with defaults filled."""
    now = time.time() if now is None else now
    unknown = sorted(set(fields) - set(CREATE_FIELDS))
    if unknown:
        raise UpValidationError(f"unknown parameter(s): {', '.join(unknown)}")
    hr = _int(fields, "heart_rate", *HEART_RATE)
    systolic = _int(fields, "systolic_pressure", *PRESSURE)
    diastolic = _int(fields, "diastolic_pressure", *PRESSURE)
    if (systolic is None) != (diastolic is None):
        raise UpValidationError("systolic_pressure and diastolic_pressure go together")
    if systolic is not None and systolic <= diastolic:
        raise UpValidationError("systolic_pressure must be higher than diastolic_pressure")
    if hr is None and systolic is None:
        raise UpValidationError("a cardiac event needs heart_rate or systolic_pressure and diastolic_pressure")
    created = _int(fields, "time_created", 0, int(now) + 86_400)
    for name in ("title", "note", "image_url", "tz"):  # a JSON body may carry any type
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise UpValidationError(f"{name} must be a string")
    tz_name = fields.get("tz") or "UTC"
    tz = zone(tz_name)
    if tz is None:
        raise UpValidationError(f"tz must be an Olson time zone such as America/Los_Angeles, not {tz_name[:60]!r}")
    title = fields.get("title") or DEFAULT_TITLE
    note = fields.get("note")
    if len(title) > 200 or (note is not None and len(note) > 2000):
        raise UpValidationError("title is limited to 200 characters and note to 2000")
    image = fields.get("image_url")
    if image and not image.startswith(("http://", "https://")):
        raise UpValidationError("image_url must be an http:// or https:// URL")
    created = int(now) if created is None else created
    return {"title": str(title), "heart_rate": hr, "systolic_pressure": systolic, "diastolic_pressure": diastolic,
            "note": None if note is None else str(note), "image": image or None, "time_created": created,
            "tz": str(tz_name), "date": local_date(created, tz)}


def zone(name: str) -> ZoneInfo | None:
    """The Olson zone of that name, or None (never an exception, whatever the text)."""
    if not name or len(name) > 64 or not all(ch.isalnum() or ch in "/_+-" for ch in name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def local_date(unix_s: int, tz: ZoneInfo | str) -> int:
    """YYYYMMDD of a moment in a time zone."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return int(datetime.fromtimestamp(unix_s, zone).strftime("%Y%m%d"))


def today(unix_s: float | None = None) -> int:
    """Today's YYYYMMDD in UTC (the default `date` of a list)."""
    return int(datetime.fromtimestamp(time.time() if unix_s is None else unix_s, timezone.utc).strftime("%Y%m%d"))


def parse_date(text: str) -> int:
    """A YYYYMMDD query value; ValueError if it is not a calendar date."""
    if len(text) != 8 or not text.isdigit():
        raise ValueError(text)
    datetime.strptime(text, "%Y%m%d")
    return int(text)


def create_body(**fields: Any) -> bytes:
    """The form-encoded body of POST .../cardiac_events (fields that are None are left out)."""
    unknown = set(fields) - set(CREATE_FIELDS)
    if unknown:
        raise ValueError(f"not UP cardiac event fields: {', '.join(sorted(unknown))}")
    return urlencode({k: v for k, v in fields.items() if v is not None}).encode()


def olson_name(offset_minutes: int | None, at: float, preferred: tzinfo | None = None) -> str:
    """An Olson zone name for a UTC offset at a moment: the preferred zone (the gateway's) when it
    has that offset then, else Etc/GMT-h for a whole hour (POSIX sign: Etc/GMT-1 is UTC+1), else UTC."""
    key = getattr(preferred, "key", None)
    if key:
        here = datetime.fromtimestamp(at, preferred).utcoffset()
        if offset_minutes is None or (here is not None and here.total_seconds() == offset_minutes * 60):
            return key
    if not offset_minutes or offset_minutes % 60 or not -720 <= offset_minutes <= 840:
        return "UTC"
    return f"Etc/GMT{-offset_minutes // 60:+d}"
