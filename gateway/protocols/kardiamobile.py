"""KardiaMobile serial wire protocol v1 (firmware_specs/kardiamobile.md): layout, encoder, decoder.

The layout is defined once here; the simulator encodes with `encode_info`/`encode_samples`
and the gateway's driver decodes with `FrameDecoder`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from gateway.protocols import framing
from gateway.protocols.framing import HEADER_SIZE, OVERHEAD, SEQ_MODULO, crc16

# Re-exported: the simulator's fault injector and the tests use them through this module.
__all__ = ["HEADER_SIZE", "OVERHEAD", "SEQ_MODULO", "crc16", "FrameDecoder", "encode_info", "encode_samples"]

SYNC = b"\xa5\x5a"
SYNC0 = 0xA5
VERSION = 1
TYPE_INFO = 0x01
TYPE_SAMPLES = 0x02

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
MAX_FRAME = OVERHEAD + SAMPLES_HEAD_LEN + 2 * MAX_SAMPLES  # 144
# BLE (firmware_specs/kardiamobile.md, "Over BLE"): the same frames as notifications of one characteristic.
BLE_SERVICE_UUID = "4de60001-de68-454a-9e06-0866e314cabd"
BLE_FRAMES_UUID = "4de60002-de68-454a-9e06-0866e314cabd"


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
    return framing.encode_frame(SYNC, VERSION, ftype, seq, payload)


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


def _parse_info(seq: int, payload: bytes) -> InfoFrame | str:
    raw, fw1, fw2, fw3, mains, rate, res, boot, nxt = INFO.unpack(payload)
    serial = framing.padded_ascii(raw)
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


def _parse(ftype: int, seq: int, payload: bytes) -> Frame | str:
    return _parse_info(seq, payload) if ftype == TYPE_INFO else _parse_samples(seq, payload)


class FrameDecoder(framing.FrameDecoder):
    """The shared frame layer with KardiaMobile's sync, version, lengths and payloads."""

    def __init__(self) -> None:
        super().__init__(SYNC, VERSION, _legal_length, _parse)
