"""Standard Bluetooth GATT characteristics: encoders and decoders shared by simulators and drivers.

From the Bluetooth SIG's service specifications and the GATT Specification Supplement:
- Heart Rate Measurement (0x2A37, Heart Rate Service 0x180D): flags, heart rate as uint8 or
  uint16 bpm, sensor contact (bit 1 meaningful only with bit 2 set), energy expended (uint16,
  kJ), and as many RR intervals (uint16, 1/1024 s) as the rest of the value holds.
- Blood Pressure Measurement (0x2A35, Blood Pressure Service 0x1810, indicated): flags, then
  systolic, diastolic and mean arterial pressure as IEEE-11073 16-bit SFLOATs in mmHg or kPa,
  optional time stamp (Date Time, 0x2A08 layout), pulse rate (SFLOAT, bpm), user id (uint8)
  and measurement status (uint16).
- SFLOAT: a 4-bit signed exponent (high nibble) and a 12-bit signed mantissa, value =
  mantissa x 10^exponent, with the reserved mantissas NaN 0x07FF, NRes 0x0800, +INFINITY
  0x07FE, -INFINITY 0x0802 and reserved 0x0801.
- Battery Level (0x2A19, Battery Service 0x180F): uint8 percent, 0-100.
- Local Time Information (0x2A0F, Current Time Service 0x1805): time zone as sint8 in 15-minute
  steps from UTC (-48..+56, -128 unknown) and DST offset as uint8 (0 standard time, 2 half an
  hour, 4 one hour, 8 two hours, 255 unknown).
- Device Information (0x180A): UTF-8 strings (manufacturer 0x2A29, model 0x2A24, serial 0x2A25,
  firmware revision 0x2A26, hardware 0x2A27, software 0x2A28).
Every decoder raises GattError, naming the field, on a value it cannot be.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from datetime import datetime


def uuid16(short: int) -> str:
    """The 128-bit form of a SIG-assigned 16-bit UUID, as bleak and BlueZ spell it."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


HEART_RATE_SERVICE, HEART_RATE_MEASUREMENT, BODY_SENSOR_LOCATION = 0x180D, 0x2A37, 0x2A38
BLOOD_PRESSURE_SERVICE, BLOOD_PRESSURE_MEASUREMENT, BLOOD_PRESSURE_FEATURE = 0x1810, 0x2A35, 0x2A49
BATTERY_SERVICE, BATTERY_LEVEL = 0x180F, 0x2A19
CURRENT_TIME_SERVICE, LOCAL_TIME_INFORMATION = 0x1805, 0x2A0F
DST_OFFSETS = {0: 0, 2: 30, 4: 60, 8: 120}  # DST Offset value -> minutes
TZ_UNKNOWN, DST_UNKNOWN = -128, 255
DEVICE_INFORMATION = 0x180A
DEVICE_INFO_STRINGS = {0x2A29: "manufacturer", 0x2A24: "model", 0x2A25: "serial_number",
                       0x2A26: "firmware_revision", 0x2A27: "hardware_revision", 0x2A28: "software_revision"}
RR_UNITS_PER_SECOND = 1024

# SFLOAT special values (IEEE 11073-20601), by their 16-bit encoding.
SFLOAT_NAN, SFLOAT_NRES, SFLOAT_POS_INF, SFLOAT_NEG_INF, SFLOAT_RESERVED = 0x07FF, 0x0800, 0x07FE, 0x0802, 0x0801
NRES = "NRes"  # "not at this resolution": decoded as this marker, not as a number
SFLOAT_SPECIAL = {SFLOAT_NAN: math.nan, SFLOAT_NRES: NRES, SFLOAT_POS_INF: math.inf, SFLOAT_NEG_INF: -math.inf}


class GattError(ValueError):
    """A characteristic value that cannot be; the message names the field."""


# SFLOAT ------------------------------------------------------------------------------------

def decode_sfloat(raw: int) -> float | str:
    """A 16-bit SFLOAT as a number (NaN and +-inf for those specials) or NRES."""
    if raw in SFLOAT_SPECIAL:
        return SFLOAT_SPECIAL[raw]
    if raw == SFLOAT_RESERVED:
        raise GattError("SFLOAT: 0x0801 is reserved")
    mantissa = raw & 0x0FFF
    exponent = raw >> 12
    mantissa -= 0x1000 if mantissa & 0x0800 else 0
    exponent -= 0x10 if exponent & 0x8 else 0
    value = mantissa * 10.0 ** exponent
    return round(value, -exponent) if exponent < 0 else value


ORDER = (0, -1, -2, -3, -4, -5, -6, -7, -8, 1, 2, 3, 4, 5, 6, 7)  # integers as such, then decimals, then large


def encode_sfloat(value: float | str, exponent: int | None = None) -> int:
    """A number (or NaN, +-inf, NRES) as a 16-bit SFLOAT: at the given exponent, else exponent 0 when
    exact, else the first exponent (finer first, then coarser) that holds it exactly, else rounded."""
    if value == NRES:
        return SFLOAT_NRES
    if isinstance(value, float) and math.isnan(value):
        return SFLOAT_NAN
    if value in (math.inf, -math.inf):
        return SFLOAT_POS_INF if value > 0 else SFLOAT_NEG_INF
    candidates = [exponent] if exponent is not None else ORDER
    for exp in candidates:
        mantissa = round(value / 10.0 ** exp)
        # Mantissas 0x7FE-0x802 are the specials' encodings at exponent 0: keep clear of them.
        if -2046 <= mantissa <= 2045 and math.isclose(mantissa * 10.0 ** exp, value, rel_tol=1e-9, abs_tol=1e-12):
            return ((exp & 0xF) << 12) | (mantissa & 0x0FFF)
    if exponent is not None:
        raise GattError(f"SFLOAT: {value} does not fit a 12-bit mantissa at exponent {exponent}")
    for exp in range(-8, 8):  # exact nowhere: the finest exponent whose mantissa fits
        mantissa = round(value / 10.0 ** exp)
        if -2046 <= mantissa <= 2045:
            return ((exp & 0xF) << 12) | (mantissa & 0x0FFF)
    raise GattError(f"SFLOAT: {value} is out of range")


# Heart Rate Measurement (0x2A37) -------------------------------------------------------------

@dataclass
class HeartRateMeasurement:
    """One Heart Rate Measurement value."""

    heart_rate: int
    sensor_contact: bool | None = None  # None: the sensor does not support contact detection
    energy_expended_kj: int | None = None
    rr_intervals: list[int] = field(default_factory=list)  # in 1/1024 s
    uint16: bool = False  # the rate's format (uint16 whenever the rate exceeds 255)


def encode_heart_rate(m: HeartRateMeasurement) -> bytes:
    """The value of a notification."""
    wide = m.uint16 or m.heart_rate > 255
    flags = (0x01 if wide else 0) | (0x04 | (0x02 if m.sensor_contact else 0) if m.sensor_contact is not None else 0)
    flags |= (0x08 if m.energy_expended_kj is not None else 0) | (0x10 if m.rr_intervals else 0)
    out = bytearray([flags])
    out += struct.pack("<H" if wide else "<B", m.heart_rate)
    if m.energy_expended_kj is not None:
        out += struct.pack("<H", m.energy_expended_kj)
    for rr in m.rr_intervals:
        out += struct.pack("<H", rr)
    return bytes(out)


def decode_heart_rate(data: bytes) -> HeartRateMeasurement:
    """A notification's value; GattError if it is too short or has an odd RR field."""
    if len(data) < 2:
        raise GattError("heart rate measurement: shorter than flags and a rate")
    flags = data[0]
    wide = bool(flags & 0x01)
    pos = 3 if wide else 2
    if len(data) < pos:
        raise GattError("heart rate measurement: the uint16 rate is cut short")
    rate = struct.unpack_from("<H" if wide else "<B", data, 1)[0]
    contact = bool(flags & 0x02) if flags & 0x04 else None
    energy = None
    if flags & 0x08:
        if len(data) < pos + 2:
            raise GattError("heart rate measurement: energy expended is cut short")
        energy = struct.unpack_from("<H", data, pos)[0]
        pos += 2
    rest = data[pos:]
    if flags & 0x10:
        if len(rest) % 2:
            raise GattError("heart rate measurement: RR intervals are uint16, the field has an odd length")
        rrs = list(struct.unpack(f"<{len(rest) // 2}H", rest))
    elif rest:
        raise GattError("heart rate measurement: bytes after the last field the flags announce")
    else:
        rrs = []
    return HeartRateMeasurement(rate, contact, energy, rrs, wide)


# Blood Pressure Measurement (0x2A35) ---------------------------------------------------------

DATE_TIME = struct.Struct("<HBBBBB")  # year, month, day, hours, minutes, seconds (0x2A08)


@dataclass
class BloodPressureMeasurement:
    """One Blood Pressure Measurement value (pressures in the unit `kpa` says)."""

    systolic: float | str
    diastolic: float | str
    mean_arterial: float | str
    kpa: bool = False
    time_stamp: datetime | None = None
    pulse_rate: float | str | None = None
    user_id: int | None = None
    status: int | None = None  # bits: 0 body movement, 1 cuff too loose, 2 irregular pulse, 3-4 pulse range,
    #                            5 improper position


def encode_blood_pressure(m: BloodPressureMeasurement) -> bytes:
    """The value of an indication."""
    flags = (0x01 if m.kpa else 0) | (0x02 if m.time_stamp else 0) | (0x04 if m.pulse_rate is not None else 0)
    flags |= (0x08 if m.user_id is not None else 0) | (0x10 if m.status is not None else 0)
    out = bytearray([flags])
    out += struct.pack("<HHH", encode_sfloat(m.systolic), encode_sfloat(m.diastolic), encode_sfloat(m.mean_arterial))
    if m.time_stamp:
        t = m.time_stamp
        out += DATE_TIME.pack(t.year, t.month, t.day, t.hour, t.minute, t.second)
    if m.pulse_rate is not None:
        out += struct.pack("<H", encode_sfloat(m.pulse_rate))
    if m.user_id is not None:
        out += struct.pack("<B", m.user_id)
    if m.status is not None:
        out += struct.pack("<H", m.status)
    return bytes(out)


def decode_blood_pressure(data: bytes) -> BloodPressureMeasurement:
    """An indication's value; GattError naming the field that is cut short or impossible."""
    if len(data) < 7:
        raise GattError("blood pressure measurement: shorter than flags and three pressures")
    flags = data[0]
    sys_raw, dia_raw, map_raw = struct.unpack_from("<HHH", data, 1)
    m = BloodPressureMeasurement(decode_sfloat(sys_raw), decode_sfloat(dia_raw), decode_sfloat(map_raw),
                                 kpa=bool(flags & 0x01))
    pos = 7
    try:
        if flags & 0x02:
            year, month, day, hour, minute, second = DATE_TIME.unpack_from(data, pos)
            pos += DATE_TIME.size
            try:
                m.time_stamp = datetime(year, month, day, hour, minute, second)
            except ValueError:
                raise GattError(f"blood pressure measurement: time stamp {year}-{month}-{day} {hour}:{minute}:"
                                f"{second} is not a date") from None
        if flags & 0x04:
            m.pulse_rate = decode_sfloat(struct.unpack_from("<H", data, pos)[0])
            pos += 2
        if flags & 0x08:
            m.user_id = data[pos]
            pos += 1
        if flags & 0x10:
            m.status = struct.unpack_from("<H", data, pos)[0]
            pos += 2
    except (struct.error, IndexError):
        raise GattError("blood pressure measurement: a field the flags announce is cut short") from None
    if pos != len(data):
        raise GattError("blood pressure measurement: bytes after the last field the flags announce")
    return m


# Battery and device information -------------------------------------------------------------

def decode_battery_level(data: bytes) -> int:
    """Battery Level: percent 0-100."""
    if len(data) != 1 or data[0] > 100:
        raise GattError("battery level: one byte, 0-100")
    return data[0]


def decode_string(data: bytes, name: str) -> str:
    """A Device Information string (UTF-8, trailing NULs dropped)."""
    try:
        return data.rstrip(b"\0").decode("utf-8")
    except UnicodeDecodeError:
        raise GattError(f"{name}: not UTF-8") from None


# Local time -------------------------------------------------------------------------------

def encode_local_time_information(utc_offset_minutes: int | None, dst_minutes: int | None = 0) -> bytes:
    """Local Time Information for an offset (standard time, in 15-minute steps) and a DST shift."""
    tz = TZ_UNKNOWN if utc_offset_minutes is None else utc_offset_minutes // 15
    if utc_offset_minutes is not None and (utc_offset_minutes % 15 or not -48 <= tz <= 56):
        raise GattError("local time: the time zone is a multiple of 15 minutes, -12:00..+14:00")
    dst = DST_UNKNOWN if dst_minutes is None else {v: k for k, v in DST_OFFSETS.items()}.get(dst_minutes)
    if dst is None:
        raise GattError("local time: the DST offset is 0, 30, 60 or 120 minutes")
    return struct.pack("<bB", tz, dst)


def decode_local_time_information(data: bytes) -> int | None:
    """The local UTC offset in minutes (time zone plus DST), or None when the device does not know it."""
    if len(data) != 2:
        raise GattError("local time information: two bytes")
    tz, dst = struct.unpack("<bB", data)
    if tz == TZ_UNKNOWN or dst == DST_UNKNOWN:
        return None
    if not -48 <= tz <= 56:
        raise GattError(f"local time information: time zone {tz} x 15 min is outside -48..56")
    if dst not in DST_OFFSETS:
        raise GattError(f"local time information: DST offset {dst} is reserved")
    return tz * 15 + DST_OFFSETS[dst]
