"""The frame layer the device protocols share: sync, version, type, seq, length, payload, CRC.

    | sync (2) | version (1) | type (1) | seq (2) | length (2) | payload (length) | crc (2) |

Little-endian; the CRC is CRC-16/CCITT-FALSE over version .. the last payload byte. Each
protocol (kardiamobile.py, hexoskin.py) names its own sync bytes and version, says which
(type, length) pairs are legal and parses payloads; the sync hunting, CRC check and reject
counting live here once.
"""

from __future__ import annotations

import struct
from binascii import crc_hqx
from collections import Counter
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct("<2sBBHH")  # sync, version, type, seq, payload length
HEADER_SIZE = HEADER.size  # 8
CRC = struct.Struct("<H")
OVERHEAD = HEADER_SIZE + CRC.size  # 10
SEQ_MODULO = 1 << 16


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR)."""
    return crc_hqx(data, 0xFFFF)


def padded_ascii(raw: bytes) -> str | None:
    """A NUL-padded printable-ASCII field (serial numbers, device ids); None if it breaks the rules."""
    text = raw.split(b"\0", 1)
    if not text[0] or (len(text) == 2 and text[1].strip(b"\0")):
        return None
    if any(b < 0x20 or b > 0x7E for b in text[0]):
        return None
    return text[0].decode("ascii")


def encode_frame(sync: bytes, version: int, ftype: int, seq: int, payload: bytes) -> bytes:
    """One frame around a payload."""
    body = HEADER.pack(sync, version, ftype, seq % SEQ_MODULO, len(payload))[2:] + payload
    return sync + body + CRC.pack(crc16(body))


class FrameDecoder:
    """Byte-stream parser: hunts for sync, checks header, CRC and fields; counts every reject.

    Chunk boundaries do not matter: feeding a stream byte by byte gives the same frames and
    counters as feeding it whole. `parse(type, seq, payload)` returns a frame, or a string
    naming the field that made it impossible (counted as `bad_frame:<field>`).
    """

    def __init__(self, sync: bytes, version: int, legal_length: Callable[[int, int], bool],
                 parse: Callable[[int, int, bytes], Any]) -> None:
        self.sync = sync
        self.version = version
        self._legal_length = legal_length
        self._parse = parse
        self._buf = bytearray()
        self.counters: Counter[str] = Counter()

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Any]:
        """Consume bytes; return the complete valid frames they finish, in order."""
        buf = self._buf
        buf += data
        c = self.counters
        out: list[Any] = []
        pos, n = 0, len(buf)
        sync, sync0 = self.sync, self.sync[0]
        skipped = 0  # counted once per call: this loop runs per frame
        while True:
            i = buf.find(sync, pos)
            if i < 0:
                # A trailing first sync byte may be half of a sync split across chunks.
                keep = 1 if n > pos and buf[n - 1] == sync0 else 0
                skipped += n - keep - pos
                pos = n - keep
                break
            skipped += i - pos
            pos = i
            if n - pos < HEADER_SIZE:
                break
            _, version, ftype, seq, length = HEADER.unpack_from(buf, pos)
            if version != self.version:
                c["unsupported_version"] += 1
                skipped += 1
                pos += 1
                continue
            if not self._legal_length(ftype, length):
                c["bad_headers"] += 1
                skipped += 1
                pos += 1
                continue
            end = pos + OVERHEAD + length
            if end > n:
                break
            if crc16(buf[pos + 2:end - 2]) != CRC.unpack_from(buf, end - 2)[0]:
                # Skip one byte only: the corrupt field may be the length itself.
                c["crc_errors"] += 1
                skipped += 1
                pos += 1
                continue
            frame = self._parse(ftype, seq, bytes(buf[pos + HEADER_SIZE:end - 2]))
            if isinstance(frame, str):
                c["bad_frame:" + frame] += 1
            else:
                out.append(frame)
            pos = end
        del buf[:pos]
        c["bytes"] += len(data)
        c["frames"] += len(out)
        c["skipped_bytes"] += skipped
        return out

    def partial(self) -> tuple[int, int, bytes] | None:
        """(type, payload length, payload bytes so far) of a frame cut short in the buffer, or None."""
        buf = self._buf
        if len(buf) < HEADER_SIZE or not buf.startswith(self.sync):
            return None
        _, version, ftype, _seq, length = HEADER.unpack_from(buf, 0)
        if version != self.version or not self._legal_length(ftype, length):
            return None
        return ftype, length, bytes(buf[HEADER_SIZE:HEADER_SIZE + length])

    def reset(self) -> None:
        """The link dropped: discard and count a partial frame."""
        if self._buf:
            if self._buf.startswith(self.sync):
                self.counters["truncated_frames"] += 1
            self.counters["skipped_bytes"] += len(self._buf)
            self._buf.clear()
