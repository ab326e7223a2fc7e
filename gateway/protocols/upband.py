"""UP-class band over BLE (firmware_specs/upband.md): the standard services plus one for cardiac events.

Heart rate comes as standard Heart Rate Measurements (0x2A37, once a second while worn) and
blood pressure as standard Blood Pressure Measurements (0x2A35, indicated); both are decoded by
gateway.protocols.gatt. The one characteristic of this project's own is the cardiac event the
wearer tags on the band (indicated):

    offset 0  uint32  time the wearer tagged it, Unix seconds (the band's clock)
    offset 4  int16   the band's UTC offset in minutes (-720..840)
    offset 6  uint8   heart rate at the tag, bpm (0: not measured, e.g. off the wrist)
    offset 7  uint8   n, the title's length in bytes (1..64)
    offset 8  n bytes the title, UTF-8
    then      the note, UTF-8 (0..180 bytes; the rest of the value)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gateway.protocols import gatt

EVENTS_SERVICE_UUID = "3bb00001-e49d-4798-87cd-24b825c1db98"
EVENT_UUID = "3bb00002-e49d-4798-87cd-24b825c1db98"
EVENT_HEAD = struct.Struct("<IhBB")
MAX_TITLE, MAX_NOTE = 64, 180
TZ_RANGE = (-720, 840)
WRIST = 2  # Body Sensor Location


class EventError(gatt.GattError):
    """A cardiac event value that cannot be."""


@dataclass(frozen=True)
class CardiacEvent:
    """An event the wearer tagged on the band."""

    time: int  # Unix seconds
    tz_minutes: int
    title: str
    note: str = ""
    heart_rate: int = 0  # bpm at the tag; 0 when the band did not measure it


def encode_event(e: CardiacEvent) -> bytes:
    """The value of an event indication."""
    title, note = e.title.encode(), e.note.encode()
    if not 1 <= len(title) <= MAX_TITLE or len(note) > MAX_NOTE:
        raise EventError(f"title is 1-{MAX_TITLE} bytes and note at most {MAX_NOTE}")
    if not 0 <= e.heart_rate <= 255:
        raise EventError("heart rate is a uint8 (0: not measured)")
    return EVENT_HEAD.pack(e.time, e.tz_minutes, e.heart_rate, len(title)) + title + note


def decode_event(data: bytes) -> CardiacEvent:
    """An event indication's value; EventError naming the field that is wrong."""
    if len(data) < EVENT_HEAD.size + 1:
        raise EventError("cardiac event: shorter than its header and a one-byte title")
    t, tz, hr, n = EVENT_HEAD.unpack_from(data)
    if not TZ_RANGE[0] <= tz <= TZ_RANGE[1]:
        raise EventError(f"cardiac event: UTC offset {tz} min is outside -720..840")
    if not 1 <= n <= MAX_TITLE or len(data) < EVENT_HEAD.size + n:
        raise EventError("cardiac event: the title length is 0, over 64, or past the end")
    note = data[EVENT_HEAD.size + n:]
    if len(note) > MAX_NOTE:
        raise EventError(f"cardiac event: the note is over {MAX_NOTE} bytes")
    try:
        return CardiacEvent(t, tz, data[EVENT_HEAD.size:EVENT_HEAD.size + n].decode(), note.decode(), hr)
    except UnicodeDecodeError:
        raise EventError("cardiac event: title or note is not UTF-8") from None
