"""Transports, chosen by the scheme of a device's address: serial:///dev/ttyUSB0?baudrate=115200."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from gateway.transports.base import LINK_DOWN, LINK_UP, LinkEvent, Transport

SCHEMES = ("serial",)


class AddressError(ValueError):
    """A transport address that cannot be used."""


def parse_address(address: str) -> tuple[str, str, dict[str, str]]:
    """Split 'scheme://target?k=v' into (scheme, target, options); raise AddressError if malformed."""
    parts = urlsplit(address)
    if parts.scheme not in SCHEMES:
        raise AddressError(f"unknown transport scheme {parts.scheme or '(none)'!r} in {address!r};"
                           f" expected one of: {', '.join(s + '://' for s in SCHEMES)}")
    target = parts.netloc + parts.path
    if not target:
        raise AddressError(f"{address!r} names no port, e.g. serial:///dev/ttyUSB0")
    options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    if parts.scheme == "serial":
        unknown = set(options) - {"baudrate"}
        if unknown:
            raise AddressError(f"unknown serial option(s) {', '.join(sorted(unknown))} in {address!r}")
        if "baudrate" in options and not (options["baudrate"].isdigit() and int(options["baudrate"]) > 0):
            raise AddressError(f"baudrate must be a positive integer in {address!r}")
    return parts.scheme, target, options


def open_transport(address: str) -> Transport:
    """A transport for the address (it connects when its stream is iterated)."""
    scheme, target, options = parse_address(address)
    from gateway.transports.serial import SerialTransport

    return SerialTransport(target, baudrate=int(options.get("baudrate", 115200)))


__all__ = ["LINK_DOWN", "LINK_UP", "AddressError", "LinkEvent", "Transport", "open_transport", "parse_address"]
