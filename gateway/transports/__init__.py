"""Transports, chosen by the scheme of a device's address.

    serial:///dev/ttyUSB0?baudrate=115200
    ble://AA:BB:CC:DD:EE:FF?adapter=hci0            a device by its address
    ble://any?service=<uuid>&adapter=hci0          the first device advertising this service (or name=)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

from gateway.transports.base import LINK_DOWN, LINK_UP, LinkEvent, Notification, Transport

SCHEMES = ("serial", "ble")
MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
BLE_OPTIONS = {"adapter", "name", "service", "silent_s"}


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
    if parts.scheme == "ble":
        unknown = set(options) - BLE_OPTIONS
        if unknown:
            raise AddressError(f"unknown BLE option(s) {', '.join(sorted(unknown))} in {address!r}")
        if target != "any" and not MAC_RE.match(target):
            raise AddressError(f"{address!r}: a BLE device is an address AA:BB:CC:DD:EE:FF, or 'any' with"
                               " name= or service=")
        if target == "any" and not (options.get("name") or options.get("service")):
            raise AddressError(f"{address!r}: ble://any needs name= or service= to pick the device")
        silent = options.get("silent_s", "10")
        if not re.match(r"^\d+(\.\d+)?$", silent) or float(silent) <= 0:
            raise AddressError(f"silent_s must be a positive number of seconds in {address!r}")
    return parts.scheme, target, options


def open_transport(address: str, ble_characteristics: Iterable[str] = (), ble_reads: Iterable[str] = ()) -> Transport:
    """A transport for the address (it connects when its stream is iterated); BLE subscribes to the
    characteristics the device's driver names, after reading its `ble_reads` at each connect."""
    scheme, target, options = parse_address(address)
    if scheme == "ble":
        from gateway.transports.ble import BleTransport

        return BleTransport(target.upper() if target != "any" else target, ble_characteristics, reads=ble_reads,
                            adapter=options.get("adapter"), name=options.get("name"),
                            service=options.get("service"), silent_s=float(options.get("silent_s", 10)))
    from gateway.transports.serial import SerialTransport

    return SerialTransport(target, baudrate=int(options.get("baudrate", 115200)))


__all__ = ["LINK_DOWN", "LINK_UP", "AddressError", "LinkEvent", "Notification", "Transport", "open_transport",
           "parse_address"]
