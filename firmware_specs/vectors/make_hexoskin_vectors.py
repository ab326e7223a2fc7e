"""Generate hexoskin.json, the golden vectors of firmware_specs/hexoskin.md.

Built with struct and the bitwise CRC of reference_frame.py on purpose: nothing here imports
the gateway, so the vectors check the project's codec instead of echoing it. Run it only when
the protocol changes: `python firmware_specs/vectors/make_hexoskin_vectors.py`.
"""

from __future__ import annotations

import json
import struct
from functools import partial
from pathlib import Path

from reference_frame import make_frame  # the sibling module: run this file as a script

SYNC = b"\x48\x58"
START = 1795426200 * 256  # 2026-11-23 09:30:00 UTC as a HexoTimestamp
frame = partial(make_frame, SYNC)


def info(seq: int, device_id: str = "HXSKIN12000123", fw=(3, 1, 4), channels: int = 0x39,
         session: int = 0x0BADF00D, start: int = START, battery: int = 87, reserved: bytes = bytes(7),
         raw_id: bytes | None = None) -> tuple[bytes, dict]:
    """A device-info frame and its decoded fields."""
    ident = raw_id if raw_id is not None else device_id.encode("ascii").ljust(16, b"\0")
    payload = ident + struct.pack("<BBBBIQB", *fw, channels, session, start, battery) + reserved
    fields = {"type": "info", "seq": seq, "device_id": device_id, "firmware": "%d.%d.%d" % fw,
              "channels": channels, "session_id": session, "session_start": start, "battery_percent": battery}
    return frame(1, seq, payload), fields


def block(ftype: int, seq: int, ts: int, selector: int, values: list, flags: int = 0, n: int | None = None,
          reserved: int = 0, fmt: str = "h") -> tuple[bytes, dict]:
    """An ECG (2), respiration (3) or acceleration (4) block and its decoded fields."""
    count = len(values) if n is None else n
    flat = [v for triple in values for v in triple] if ftype == 4 else list(values)
    payload = struct.pack("<QBBBB", ts, selector, count, flags, reserved) + struct.pack("<%d%s" % (len(flat), fmt), *flat)
    kind, key = {2: ("ecg", "lead"), 3: ("respiration", "band"), 4: ("acceleration", "axes")}[ftype]
    fields = {"type": kind, "seq": seq, "ts": ts, key: selector, "flags": flags,
              "samples": [list(v) for v in values] if ftype == 4 else list(values)}
    return frame(ftype, seq, payload), fields


def ecg(seq, ts, values, lead=1, **kw):
    return block(2, seq, ts, lead, values, **kw)


def resp(seq, ts, values, band=1, **kw):
    return block(3, seq, ts, band, values, fmt="H", **kw)


def accel(seq, ts, values, axes=7, **kw):
    return block(4, seq, ts, axes, values, **kw)


def ecg_values(start: int, n: int = 32) -> list[int]:
    """Distinct 12-bit values, negatives included."""
    return [((start + i) * 131) % 4096 - 2048 for i in range(n)]


def resp_values(start: int, n: int = 16) -> list[int]:
    return [(30000 + (start + i) * 977) % 65536 for i in range(n)]


def accel_values(start: int, n: int = 32) -> list[tuple[int, int, int]]:
    return [(((start + i) * 53) % 8192 - 4096, 256 - i, -(start % 4096)) for i in range(n)]


def main() -> None:
    frames = []

    def add(name: str, made: tuple[bytes, dict] | bytes, fields: dict | None, note: str, reject: str | None = None):
        data, decoded = made if isinstance(made, tuple) else (made, None)
        frames.append({"name": name, "hex": data.hex(), "fields": None if reject else decoded,
                       "reject": reject, "note": note})

    add("device_info", info(0), None, "the worked example of the spec")
    add("ecg_block", ecg(1, START, ecg_values(0)), None, "32 samples of lead I from the session start")
    add("ecg_lead_iii_extremes", ecg(2, START + 32, [-2048, 2047, 0, -1], lead=3, flags=0x03), None,
        "12-bit extremes, lead off and saturated flags")
    add("respiration_block", resp(3, START, resp_values(0)), None, "16 thoracic samples")
    add("respiration_abdominal", resp(4, START + 32, [0, 65535, 1], band=2, flags=1), None,
        "uint16 extremes, band disconnected")
    add("acceleration_block", accel(5, START, accel_values(0)), None, "32 triples, 0.5 s at 64 Hz")
    add("acceleration_extremes", accel(6, START + 128, [(-4096, 4095, 0)]), None, "13-bit extremes")
    add("seq_wraps", ecg(65535, START + 64, ecg_values(64, 1)), None, "seq 65535 (the next is 0)")
    # Rejected frames: a right CRC around an impossible field.
    add("bad_device_id", info(7, raw_id=b"HX\x01SKIN".ljust(16, b"\0")), None, "a control character", "device_id")
    add("bad_id_after_nul", info(7, raw_id=b"HX\0SKIN".ljust(16, b"\0")), None, "text after the padding",
        "device_id")
    add("no_ecg_lead_i", info(7, channels=0x38), None, "channels without ECG lead I", "channels")
    add("undefined_channel_bit", info(7, channels=0x41), None, "bit 6 set", "channels")
    add("zero_session", info(7, session=0), None, "session_id 0", "session_id")
    add("session_before_2001", info(7, start=255 * 10**9), None, "a clock that was never set", "session_start")
    add("battery_over_100", info(7, battery=101), None, "101 % (255 means unknown and is legal)", "battery")
    add("info_reserved", info(7, reserved=b"\0\0\0\x01\0\0\0"), None, "a reserved byte set", "reserved")
    add("lead_0", ecg(8, START, ecg_values(0, 4), lead=0), None, "no lead 0", "lead")
    add("lead_4", ecg(8, START, ecg_values(0, 4), lead=4), None, "no lead 4", "lead")
    add("ecg_out_of_12_bits", ecg(8, START, [0, 2048]), None, "2048 needs 13 bits", "sample_range")
    add("ecg_n_mismatch", ecg(8, START, ecg_values(0, 4), n=5), None, "n says 5, the payload holds 4",
        "sample_count")
    add("ecg_flags", ecg(8, START, ecg_values(0, 4), flags=0x04), None, "bit 2 is undefined", "flags")
    add("ecg_reserved", ecg(8, START, ecg_values(0, 4), reserved=1), None, "reserved byte set", "reserved")
    add("band_3", resp(8, START, resp_values(0, 4), band=3), None, "no band 3", "band")
    add("resp_flags", resp(8, START, resp_values(0, 4), flags=0x02), None, "bit 1 is undefined", "flags")
    add("axes_3", accel(8, START, accel_values(0, 2), axes=3), None, "axes must be 0x07", "axes")
    add("accel_out_of_13_bits", accel(8, START, [(4096, 0, 0)]), None, "4096 needs 14 bits", "sample_range")
    add("accel_flags", accel(8, START, accel_values(0, 2), flags=1), None, "no accelerometer flags", "flags")

    good = [f for f in frames if f["reject"] is None]
    ok_bytes = b"".join(bytes.fromhex(f["hex"]) for f in good)
    streams = []

    def stream(name: str, data: bytes, expect: list[dict], counters: dict[str, int], note: str, reset: bool = False):
        streams.append({"name": name, "hex": data.hex(), "link_reset_after": reset,
                        "expect": {"frames": expect, "counters": counters}, "note": note})

    stream("all_good_frames", ok_bytes, [f["fields"] for f in good], {"frames": len(good)},
           "every valid frame back to back")
    f_info, f_ecg = bytes.fromhex(frames[0]["hex"]), bytes.fromhex(frames[1]["hex"])
    garbage = bytes([0x00, 0x48, 0x48, 0x58, 0x01, 0x09, 0x00, 0x00])  # noise, then a sync with type 9
    stream("garbage_between", garbage + f_info + garbage[:3] + f_ecg + b"\x48",
           [frames[0]["fields"], frames[1]["fields"]],
           {"frames": 2, "skipped_bytes": len(garbage) + 3, "bad_headers": 1},
           "noise, a false sync with an impossible header, and a trailing half sync", reset=False)
    corrupt = bytearray(f_ecg)
    corrupt[20] ^= 0x10
    stream("corrupt_crc", f_info + bytes(corrupt) + f_ecg, [frames[0]["fields"], frames[1]["fields"]],
           {"frames": 2, "crc_errors": 1}, "one flipped bit in a sample: the frame is dropped, the next decodes")
    stream("truncated_at_link_drop", f_info + f_ecg[:30], [frames[0]["fields"]],
           {"frames": 1, "truncated_frames": 1, "skipped_bytes": 30}, "the link drops mid-frame", reset=True)
    v2 = frame(2, 9, struct.pack("<QBBBB", START, 1, 1, 0, 0) + struct.pack("<h", 5), version=2)
    stream("unsupported_version", v2 + f_ecg, [frames[1]["fields"]],
           {"frames": 1, "unsupported_version": 1}, "a version 2 frame is skipped")
    bad_len = frame(2, 9, struct.pack("<QBBBB", START, 1, 1, 0, 0) + b"\0", length=13)
    stream("odd_ecg_length", bad_len + f_ecg, [frames[1]["fields"]], {"frames": 1, "bad_headers": 1},
           "an ECG payload of odd length cannot be")
    rejects = [f for f in frames if f["reject"]]
    stream("every_reject", b"".join(bytes.fromhex(f["hex"]) for f in rejects) + f_ecg, [frames[1]["fields"]],
           {"frames": 1, **{f"bad_frame:{r}": sum(1 for f in rejects if f["reject"] == r)
                            for r in sorted({f["reject"] for f in rejects})}},
           "every impossible field counted under its name, and the stream goes on")

    # Over BLE: the same bytes, cut into notifications of ATT_MTU - 3 bytes.
    ble = []
    for mtu in (23, 247):
        size = mtu - 3
        ble.append({"name": f"all_good_frames_mtu_{mtu}", "mtu": mtu, "disconnect_after": False,
                    "notifications": [ok_bytes[i:i + size].hex() for i in range(0, len(ok_bytes), size)],
                    "expect": {"frames": [f["fields"] for f in good], "counters": {"frames": len(good)}}})
    cut = f_info + f_ecg[:30]
    ble.append({"name": "disconnect_mid_frame_mtu_23", "mtu": 23, "disconnect_after": True,
                "notifications": [cut[i:i + 20].hex() for i in range(0, len(cut), 20)],
                "expect": {"frames": [frames[0]["fields"]], "counters": {"frames": 1, "truncated_frames": 1}}})

    out = {"protocol": "hexoskin-serial", "version": 1, "spec": "firmware_specs/hexoskin.md",
           "crc": {"name": "CRC-16/CCITT-FALSE", "check_input": "123456789", "check_value": "0x29B1"},
           "session_start_unix": START // 256, "frames": frames, "streams": streams, "ble": ble}
    path = Path(__file__).with_name("hexoskin.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}: {len(frames)} frames, {len(streams)} streams, {len(ble)} BLE notification streams")


if __name__ == "__main__":
    main()
