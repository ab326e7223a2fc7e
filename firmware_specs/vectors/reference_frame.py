"""The frame layer both vector generators build on, written from the specs alone.

Struct and a bitwise CRC on purpose: nothing here imports the gateway, so the golden vectors
check the project's codecs instead of echoing them.
"""

from __future__ import annotations

import struct


def crc16_ccitt_false(data: bytes) -> int:
    """Bitwise CRC-16/CCITT-FALSE exactly as the specs' C reference."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


assert crc16_ccitt_false(b"123456789") == 0x29B1


def make_frame(sync: bytes, ftype: int, seq: int, payload: bytes, version: int = 1, length: int | None = None) -> bytes:
    """One frame; `length` overrides the header's length field for bad-header cases."""
    body = struct.pack("<BBHH", version, ftype, seq & 0xFFFF, len(payload) if length is None else length) + payload
    return sync + body + struct.pack("<H", crc16_ccitt_false(body))
