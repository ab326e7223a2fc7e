"""Wall times as ISO 8601 text with a UTC offset: one formatter for every vendor shape that wants one."""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo


def iso_with_offset(unix_s: float, tz: tzinfo | None = None) -> str:
    """2026-11-23T10:00:00.123+01:00: milliseconds, and the offset of `tz` (UTC when None)."""
    return datetime.fromtimestamp(unix_s, tz or timezone.utc).isoformat(timespec="milliseconds")
