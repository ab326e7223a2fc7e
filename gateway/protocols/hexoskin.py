"""Hexoskin-class shirt recorder serial protocol v1 (firmware_specs/hexoskin.md).

The layout is defined once here: the simulator encodes with the `encode_*` functions and the
gateway's driver decodes with `FrameDecoder`. Timestamps are HexoTimestamps (Unix time in
1/256 s) of each block's first sample, kept as Python ints end to end.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from gateway.protocols import framing

SYNC = b"\x48\x58"
VERSION = 1
TYPE_INFO, TYPE_ECG, TYPE_RESPIRATION, TYPE_ACCELERATION = 0x01, 0x02, 0x03, 0x04

INFO = struct.Struct("<16sBBBBIQB7s")  # device id, fw major/minor/patch, channels, session, start, battery, reserved
INFO_LEN = INFO.size  # 40
BLOCK_HEAD = struct.Struct("<QBBBB")  # ts, lead/band/axes, n, flags, reserved
BLOCK_HEAD_LEN = BLOCK_HEAD.size  # 12

TICKS_PER_SECOND = 256  # HexoTimestamp units per second
ECG_RATE, RESPIRATION_RATE, ACCELERATION_RATE = 256, 128, 64
TICKS_PER_SAMPLE = {TYPE_ECG: 1, TYPE_RESPIRATION: 2, TYPE_ACCELERATION: 4}
MAX_SAMPLES = {TYPE_ECG: 64, TYPE_RESPIRATION: 64, TYPE_ACCELERATION: 32}
BYTES_PER_SAMPLE = {TYPE_ECG: 2, TYPE_RESPIRATION: 2, TYPE_ACCELERATION: 6}

CH_ECG_I, CH_ECG_II, CH_ECG_III, CH_THORACIC, CH_ABDOMINAL, CH_ACCEL = (1 << i for i in range(6))
CHANNELS_DEFINED = 0x3F
AXES_XYZ = 0x07
ECG_FLAGS = 0x03  # lead off, saturated
RESPIRATION_FLAGS = 0x01  # band disconnected
ECG_RANGE = (-2048, 2047)  # 12 bits
ACCEL_RANGE = (-4096, 4095)  # 13 bits
ECG_MV_PER_COUNT = 0.0064
ACCEL_G_PER_COUNT = 1 / 256
MIN_SESSION_START = 256 * 10**9  # 2001-09-09: an RTC that was never set reads earlier
BATTERY_UNKNOWN = 255
# BLE (firmware_specs/hexoskin.md, "Over BLE"): the same frames as notifications of one characteristic.
BLE_SERVICE_UUID = "d21a0001-6c96-4c11-9176-1974910f160b"
BLE_FRAMES_UUID = "d21a0002-6c96-4c11-9176-1974910f160b"


@dataclass(frozen=True, slots=True)
class InfoFrame:
    """A decoded device-info frame."""

    seq: int
    device_id: str
    firmware: str
    channels: int
    session_id: int
    session_start: int
    battery_percent: int


@dataclass(frozen=True, slots=True)
class EcgBlock:
    """One lead's samples (int16 counts, 0.0064 mV each) from HexoTimestamp `ts` at 256 Hz."""

    seq: int
    ts: int
    lead: int
    flags: int
    samples: np.ndarray


@dataclass(frozen=True, slots=True)
class RespirationBlock:
    """One band's samples (uint16, arbitrary units) from `ts` at 128 Hz."""

    seq: int
    ts: int
    band: int
    flags: int
    samples: np.ndarray


@dataclass(frozen=True, slots=True)
class AccelerationBlock:
    """(n, 3) int16 x, y, z in 1/256 g from `ts` at 64 Hz."""

    seq: int
    ts: int
    axes: int
    flags: int
    samples: np.ndarray


Frame = InfoFrame | EcgBlock | RespirationBlock | AccelerationBlock
_DTYPE = {TYPE_ECG: np.dtype("<i2"), TYPE_RESPIRATION: np.dtype("<u2"), TYPE_ACCELERATION: np.dtype("<i2")}


def encode_info(seq: int, device_id: str, firmware: tuple[int, int, int], channels: int, session_id: int,
                session_start: int, battery_percent: int = BATTERY_UNKNOWN) -> bytes:
    """Encode one device-info frame."""
    raw = device_id.encode("ascii")
    if not 1 <= len(raw) <= 16:
        raise ValueError("device id must be 1 to 16 ASCII characters")
    payload = INFO.pack(raw, *firmware, channels, session_id, session_start, battery_percent, bytes(7))
    return framing.encode_frame(SYNC, VERSION, TYPE_INFO, seq, payload)


def _encode_block(ftype: int, seq: int, ts: int, selector: int, samples: np.ndarray, flags: int) -> bytes:
    values = np.asarray(samples, dtype=_DTYPE[ftype])
    n = len(values)
    if not 1 <= n <= MAX_SAMPLES[ftype]:
        raise ValueError(f"a block carries 1..{MAX_SAMPLES[ftype]} samples, not {n}")
    payload = BLOCK_HEAD.pack(ts, selector, n, flags, 0) + values.tobytes()
    return framing.encode_frame(SYNC, VERSION, ftype, seq, payload)


def encode_ecg(seq: int, ts: int, lead: int, samples: np.ndarray, flags: int = 0) -> bytes:
    """Encode one ECG block (12-bit int16 counts)."""
    return _encode_block(TYPE_ECG, seq, ts, lead, samples, flags)


def encode_respiration(seq: int, ts: int, band: int, samples: np.ndarray, flags: int = 0) -> bytes:
    """Encode one respiration block (uint16)."""
    return _encode_block(TYPE_RESPIRATION, seq, ts, band, samples, flags)


def encode_acceleration(seq: int, ts: int, samples: np.ndarray) -> bytes:
    """Encode one acceleration block of (n, 3) int16 triples."""
    triples = np.asarray(samples, dtype=np.int16).reshape(-1, 3)
    if not 1 <= len(triples) <= MAX_SAMPLES[TYPE_ACCELERATION]:
        raise ValueError(f"an acceleration block carries 1..{MAX_SAMPLES[TYPE_ACCELERATION]} triples")
    payload = BLOCK_HEAD.pack(ts, AXES_XYZ, len(triples), 0, 0) + triples.astype("<i2").tobytes()
    return framing.encode_frame(SYNC, VERSION, TYPE_ACCELERATION, seq, payload)


def _legal_length(ftype: int, length: int) -> bool:
    if ftype == TYPE_INFO:
        return length == INFO_LEN
    if ftype in BYTES_PER_SAMPLE:
        body = length - BLOCK_HEAD_LEN
        size = BYTES_PER_SAMPLE[ftype]
        return size <= body <= size * MAX_SAMPLES[ftype] and body % size == 0
    return False


def _parse_info(seq: int, payload: bytes) -> InfoFrame | str:
    raw, fw1, fw2, fw3, channels, session, start, battery, reserved = INFO.unpack(payload)
    device_id = framing.padded_ascii(raw)
    if device_id is None:
        return "device_id"
    if channels & ~CHANNELS_DEFINED or not channels & CH_ECG_I:
        return "channels"
    if session == 0:
        return "session_id"
    if start < MIN_SESSION_START:
        return "session_start"
    if battery > 100 and battery != BATTERY_UNKNOWN:
        return "battery"
    if reserved.strip(b"\0"):
        return "reserved"
    return InfoFrame(seq, device_id, f"{fw1}.{fw2}.{fw3}", channels, session, start, battery)


def _parse_block(ftype: int, seq: int, payload: bytes) -> Frame | str:
    ts, selector, n, flags, reserved = BLOCK_HEAD.unpack_from(payload)
    if n == 0 or n > MAX_SAMPLES[ftype] or BLOCK_HEAD_LEN + BYTES_PER_SAMPLE[ftype] * n != len(payload):
        return "sample_count"
    if reserved:
        return "reserved"
    values = np.frombuffer(payload, dtype=_DTYPE[ftype], offset=BLOCK_HEAD_LEN)
    if ftype == TYPE_ECG:
        if selector not in (1, 2, 3):
            return "lead"
        if flags & ~ECG_FLAGS:
            return "flags"
        if values.min() < ECG_RANGE[0] or values.max() > ECG_RANGE[1]:
            return "sample_range"
        return EcgBlock(seq, ts, selector, flags, values.astype(np.int16))
    if ftype == TYPE_RESPIRATION:
        if selector not in (1, 2):
            return "band"
        if flags & ~RESPIRATION_FLAGS:
            return "flags"
        return RespirationBlock(seq, ts, selector, flags, values.astype(np.uint16))
    if selector != AXES_XYZ:
        return "axes"
    if flags:
        return "flags"
    if values.min() < ACCEL_RANGE[0] or values.max() > ACCEL_RANGE[1]:
        return "sample_range"
    return AccelerationBlock(seq, ts, selector, flags, values.astype(np.int16).reshape(-1, 3))


def _parse(ftype: int, seq: int, payload: bytes) -> Frame | str:
    return _parse_info(seq, payload) if ftype == TYPE_INFO else _parse_block(ftype, seq, payload)


class FrameDecoder(framing.FrameDecoder):
    """The shared frame layer with the Hexoskin sync, lengths and payloads."""

    def __init__(self) -> None:
        super().__init__(SYNC, VERSION, _legal_length, _parse)
