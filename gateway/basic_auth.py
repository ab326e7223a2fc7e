"""HTTP Basic credentials, parsed in one place for the status server and the emulators."""

from __future__ import annotations

import base64
import binascii


def parse(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header; None if absent, another scheme or malformed."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
