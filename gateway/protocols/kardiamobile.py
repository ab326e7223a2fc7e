"""KardiaMobile serial wire protocol v1 (firmware_specs/kardiamobile.md): layout, encoder, decoder.

The layout is defined once here; the simulator encodes with `encode_info`/`encode_samples`
and the gateway's driver decodes with `FrameDecoder`.
"""

from __future__ import annotations

import struct
from binascii import crc_hqx
from collections import Counter
from dataclasses import dataclass

import numpy as np

SYNC = b"\xa5\x5a"
SYNC0 = 0xA5
VERSION = 1
TYPE_INFO = 0x01
TYPE_SAMPLES = 0x02

HEADER = struct.Struct("<2sBBHH")  # sync, version, type, seq, payload length
HEADER_SIZE = HEADER.size  # 8
CRC = struct.Struct("<H")
OVERHEAD = HEADER_SIZE + CRC.size  # 10

INFO = struct.Struct("<16sBBBBHHII")  # serial, fw major/minor/patch, mains, rate, resolution, boot id, next counter
INFO_LEN = INFO.size  # 32
SAMPLES_HEAD = struct.Struct("<IBB")  # first sample counter, n, flags
SAMPLES_HEAD_LEN = SAMPLES_HEAD.size  # 6
SAMPLE_DTYPE = np.dtype("<i2")

SAMPLING_FREQUENCY = 300
MAINS_FREQUENCIES = (50, 60)
MAX_SAMPLES = 64
DEFAULT_SAMPLES_PER_FRAME = 25
INFO_EVERY_SAMPLES = 300
FLAG_LEAD_OFF = 0x01
FLAG_SATURATED = 0x02
FLAGS_DEFINED = FLAG_LEAD_OFF | FLAG_SATURATED
COUNTER_MODULO = 1 << 32
SEQ_MODULO = 1 << 16
MAX_FRAME = OVERHEAD + SAMPLES_HEAD_LEN + 2 * MAX_SAMPLES  # 144


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), as the spec defines it."""
    return crc_hqx(data, 0xFFFF)


@dataclass(frozen=True, slots=True)
class InfoFrame:
    """A decoded device-info frame."""

    seq: int
    serial_number: str
    firmware: str
    mains_frequency: int
    sampling_frequency: int
    amplitude_resolution: int
    boot_id: int
    next_sample_counter: int


@dataclass(frozen=True, slots=True)
class SamplesFrame:
    """A decoded ECG-samples frame; `samples` is int16 lead I in ADC units."""

    seq: int
    sample_counter: int
    flags: int
    samples: np.ndarray


Frame = InfoFrame | SamplesFrame


def _frame(ftype: int, seq: int, payload: bytes) -> bytes:
    body = HEADER.pack(SYNC, VERSION, ftype, seq % SEQ_MODULO, len(payload))[2:] + payload
    return SYNC + body + CRC.pack(crc16(body))


def encode_info(seq: int, serial_number: str, firmware: tuple[int, int, int], mains_frequency: int,
                amplitude_resolution: int, boot_id: int, next_sample_counter: int,
                sampling_frequency: int = SAMPLING_FREQUENCY) -> bytes:
    """Encode one device-info frame."""
    raw_serial = serial_number.encode("ascii")
    if not 1 <= len(raw_serial) <= 16:
        raise ValueError("serial number must be 1 to 16 ASCII characters")
    payload = INFO.pack(raw_serial, *firmware, mains_frequency, sampling_frequency, amplitude_resolution,
                        boot_id, next_sample_counter % COUNTER_MODULO)
    return _frame(TYPE_INFO, seq, payload)


def encode_samples(seq: int, sample_counter: int, samples: np.ndarray, flags: int = 0) -> bytes:
    """Encode one ECG-samples frame of 1..64 int16 samples."""
    n = len(samples)
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"a frame carries 1..{MAX_SAMPLES} samples, not {n}")
    payload = SAMPLES_HEAD.pack(sample_counter % COUNTER_MODULO, n, flags)
    payload += np.asarray(samples, dtype=SAMPLE_DTYPE).tobytes()
    return _frame(TYPE_SAMPLES, seq, payload)


def _legal_length(ftype: int, length: int) -> bool:
    if ftype == TYPE_INFO:
        return length == INFO_LEN
    if ftype == TYPE_SAMPLES:
        return SAMPLES_HEAD_LEN + 2 <= length <= SAMPLES_HEAD_LEN + 2 * MAX_SAMPLES and length % 2 == 0
    return False


def _printable_serial(raw: bytes) -> str | None:
    text = raw.split(b"\0", 1)
    if not text[0] or (len(text) == 2 and text[1].strip(b"\0")):
        return None
    if any(b < 0x20 or b > 0x7E for b in text[0]):
        return None
    return text[0].decode("ascii")


def _parse_info(seq: int, payload: bytes) -> InfoFrame | str:
    raw, fw1, fw2, fw3, mains, rate, res, boot, nxt = INFO.unpack(payload)
    serial = _printable_serial(raw)
    if serial is None:
        return "serial_number"
    if mains not in MAINS_FREQUENCIES:
        return "mains_frequency"
    if rate != SAMPLING_FREQUENCY:
        return "sampling_frequency"
    if res == 0:
        return "amplitude_resolution"
    if boot == 0:
        return "boot_id"
    return InfoFrame(seq, serial, f"{fw1}.{fw2}.{fw3}", mains, rate, res, boot, nxt)


def _parse_samples(seq: int, payload: bytes) -> SamplesFrame | str:
    counter, n, flags = SAMPLES_HEAD.unpack_from(payload)
    if n == 0 or SAMPLES_HEAD_LEN + 2 * n != len(payload):
        return "sample_count"
    if flags & ~FLAGS_DEFINED:
        return "flags"
    samples = np.frombuffer(payload, dtype=SAMPLE_DTYPE, offset=SAMPLES_HEAD_LEN).astype(np.int16, copy=False)
    return SamplesFrame(seq, counter, flags, samples)


class FrameDecoder:
    """Byte-stream parser: hunts for sync, checks header, CRC and fields; counts every reject.

    Chunk boundaries do not matter: feeding a stream byte by byte gives the same frames and
    counters as feeding it whole.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.counters: Counter[str] = Counter()

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Consume bytes; return the complete valid frames they finish, in order."""
        buf = self._buf
        buf += data
        c = self.counters
        c["bytes"] += len(data)
        out: list[Frame] = []
        pos, n = 0, len(buf)
        while True:
            i = buf.find(SYNC, pos)
            if i < 0:
                # A trailing 0xA5 may be the first half of a sync split across chunks.
                keep = 1 if n > pos and buf[n - 1] == SYNC0 else 0
                c["skipped_bytes"] += n - keep - pos
                pos = n - keep
                break
            c["skipped_bytes"] += i - pos
            pos = i
            if n - pos < HEADER_SIZE:
                break
            _, version, ftype, seq, length = HEADER.unpack_from(buf, pos)
            if version != VERSION:
                c["unsupported_version"] += 1
                c["skipped_bytes"] += 1
                pos += 1
                continue
            if not _legal_length(ftype, length):
                c["bad_headers"] += 1
                c["skipped_bytes"] += 1
                pos += 1
                continue
            end = pos + OVERHEAD + length
            if end > n:
                break
            if crc16(buf[pos + 2:end - 2]) != CRC.unpack_from(buf, end - 2)[0]:
                # Skip one byte only: the corrupt field may be the length itself.
                c["crc_errors"] += 1
                c["skipped_bytes"] += 1
                pos += 1
                continue
            payload = bytes(buf[pos + HEADER_SIZE:end - 2])
            frame = _parse_info(seq, payload) if ftype == TYPE_INFO else _parse_samples(seq, payload)
            if isinstance(frame, str):
                c["bad_frame:" + frame] += 1
            else:
                c["frames"] += 1
                out.append(frame)
            pos = end
        del buf[:pos]
        return out

    def reset(self) -> None:
        """The link dropped: discard and count a partial frame."""
        if self._buf:
            if self._buf.startswith(SYNC):
                self.counters["truncated_frames"] += 1
            self.counters["skipped_bytes"] += len(self._buf)
            self._buf.clear()
