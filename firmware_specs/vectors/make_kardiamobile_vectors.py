"""Generate kardiamobile.json, the golden vectors of firmware_specs/kardiamobile.md.

Built with struct and the bitwise CRC of reference_frame.py on purpose: nothing here imports
the gateway, so the vectors check the project's codec instead of echoing it. Run it only when
the protocol changes: `python firmware_specs/vectors/make_kardiamobile_vectors.py`.
"""

from __future__ import annotations

import json
import struct
from functools import partial
from pathlib import Path

from reference_frame import make_frame  # the sibling module: run this file as a script

SYNC = b"\xa5\x5a"
frame = partial(make_frame, SYNC)


def info(seq: int, serial: str = "KM1-0001", fw=(2, 4, 1), mains: int = 60, rate: int = 300,
         res: int = 500, boot: int = 0x1234ABCD, next_counter: int = 0, raw_serial: bytes | None = None) -> tuple[bytes, dict]:
    """A device-info frame and its decoded fields."""
    ser = raw_serial if raw_serial is not None else serial.encode("ascii").ljust(16, b"\0")
    payload = ser + struct.pack("<BBBBHHII", *fw, mains, rate, res, boot, next_counter)
    fields = {"type": "info", "seq": seq, "serial_number": serial, "firmware": "%d.%d.%d" % fw,
              "mains_frequency": mains, "sampling_frequency": rate, "amplitude_resolution": res,
              "boot_id": boot, "next_sample_counter": next_counter}
    return frame(1, seq, payload), fields


def samples(seq: int, counter: int, values: list[int], flags: int = 0, n: int | None = None) -> tuple[bytes, dict]:
    """An ECG-samples frame and its decoded fields."""
    payload = struct.pack("<IBB", counter & 0xFFFFFFFF, len(values) if n is None else n, flags)
    payload += struct.pack("<%dh" % len(values), *values)
    fields = {"type": "samples", "seq": seq, "sample_counter": counter & 0xFFFFFFFF, "flags": flags,
              "samples": values}
    return frame(2, seq, payload), fields


def ramp(start: int, n: int = 25) -> list[int]:
    """Distinct, recognisable sample values (a sawtooth with negatives)."""
    return [((start + i) * 37) % 4001 - 2000 for i in range(n)]


def garbage(n: int, salt: int) -> bytes:
    """Deterministic garbage that never contains 0xA5, so it can hold no sync marker."""
    out = bytearray()
    x = salt * 2654435761 & 0xFFFFFFFF
    while len(out) < n:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        b = (x >> 16) & 0xFF
        if b != 0xA5:
            out.append(b)
    return bytes(out)


def corrupt(frame_bytes: bytes, offset: int) -> bytes:
    """Flip one payload bit (offset counts from the start of the frame)."""
    b = bytearray(frame_bytes)
    b[offset] ^= 0x10
    return bytes(b)


BOOT_A, BOOT_B = 0x1234ABCD, 0x0BADF00D


def build() -> dict:
    """Assemble every single-frame and stream vector."""
    frames = []

    def add_frame(name, built, note=""):
        raw, fields = built
        frames.append({"name": name, "hex": raw.hex(), "fields": fields, "note": note})

    add_frame("device_info", info(0), "the worked example of the spec")
    add_frame("samples_3", samples(1, 0, [100, -100, 2000]), "the worked example of the spec")
    add_frame("samples_25", samples(2, 25, ramp(25)))
    add_frame("samples_extremes", samples(3, 50, [-32768, 32767, 0, -1, 1]))
    add_frame("samples_64_lead_off", samples(4, 55, ramp(55, 64), flags=0x01), "largest frame, lead-off flag")
    add_frame("samples_one_saturated", samples(5, 119, [32767], flags=0x02))
    add_frame("samples_counter_max", samples(65535, 0xFFFFFFFF - 24, ramp(7)), "seq and counter at their maximum")
    add_frame("device_info_50hz", info(9, serial="KM1-ABCDEFGHIJKL", fw=(10, 0, 255), mains=50, res=1000,
                                       boot=0xFFFFFFFF, next_counter=123456789), "16-character serial, no padding")

    streams = []

    def add_stream(name, parts, expect, link_reset=False, note=""):
        raw = b"".join(parts)
        streams.append({"name": name, "hex": raw.hex(), "link_reset_after": link_reset, "expect": expect,
                        "note": note})

    # 1 clean start
    i0, fi0 = info(0)
    s1, fs1 = samples(1, 0, ramp(0))
    s2, fs2 = samples(2, 25, ramp(25))
    add_stream("clean", [i0, s1, s2], {
        "frames": [fi0, fs1, fs2],
        "counters": {"frames": 3, "samples": 50},
        "segments": [[BOOT_A, 0, 50]], "gaps": []})

    # 2 garbage before and between frames
    g1, g2 = garbage(7, 1), garbage(5, 2)
    add_stream("garbage", [g1, i0, g2, s1], {
        "frames": [fi0, fs1],
        "counters": {"frames": 2, "samples": 25, "skipped_bytes": 12},
        "segments": [[BOOT_A, 0, 25]], "gaps": []})

    # 3 a corrupt CRC: the frame is lost, its samples become a gap
    s3, fs3 = samples(3, 50, ramp(50))
    bad = corrupt(s2, 20)
    add_stream("bad_crc", [i0, s1, bad, s3], {
        "frames": [fi0, fs1, fs3],
        "counters": {"frames": 3, "samples": 50, "crc_errors": 1, "skipped_bytes": len(bad),
                     "lost_frames": 1, "gaps": 1, "lost_samples": 25},
        "segments": [[BOOT_A, 0, 25], [BOOT_A, 50, 75]], "gaps": [[BOOT_A, 25, 25]]})

    # 4 a frame cut off by the link going down: its header names its 25 samples, a gap at once
    add_stream("truncated_at_link_loss", [i0, s1, s2[:20]], {
        "frames": [fi0, fs1],
        "counters": {"frames": 2, "samples": 25, "truncated_frames": 1, "skipped_bytes": 20, "gaps": 1,
                     "lost_samples": 25, "truncated_frame_samples": 25},
        "segments": [[BOOT_A, 0, 25]], "gaps": [[BOOT_A, 25, 25]]}, link_reset=True)

    # 5 a header whose length is impossible: skipped without waiting for 65535 bytes
    badhdr = SYNC + struct.pack("<BBHH", 1, 2, 1, 0xFFFF) + b"\x00\x01\x02"
    add_stream("bad_header_length", [i0, badhdr, s1], {
        "frames": [fi0, fs1],
        "counters": {"frames": 2, "samples": 25, "bad_headers": 1, "skipped_bytes": len(badhdr)},
        "segments": [[BOOT_A, 0, 25]], "gaps": []})

    # 6 a frame of an unknown protocol version (its CRC is good)
    v2 = frame(2, 1, struct.pack("<IBB", 0, 25, 0) + bytes(50), version=2)
    s1b, fs1b = samples(2, 0, ramp(0))
    add_stream("unsupported_version", [i0, v2, s1b], {
        "frames": [fi0, fs1b],
        "counters": {"frames": 2, "samples": 25, "unsupported_version": 1, "skipped_bytes": len(v2),
                     "lost_frames": 1},
        "segments": [[BOOT_A, 0, 25]], "gaps": []})

    # 7 frames with impossible fields: CRC good, dropped and counted by reason
    bads = [
        info(1, mains=55)[0],
        info(2, rate=250)[0],
        info(3, res=0)[0],
        info(4, boot=0)[0],
        info(5, raw_serial=b"\0" * 16)[0],
        info(6, raw_serial=b"KM1\x01" + b"\0" * 12)[0],
        info(7, raw_serial=b"KM1\0X" + b"\0" * 11)[0],
        samples(8, 0, ramp(0), flags=0x04)[0],
        samples(9, 0, ramp(0), n=24)[0],
    ]
    s10, fs10 = samples(10, 0, ramp(0))
    add_stream("impossible_fields", [i0, *bads, s10], {
        "frames": [fi0, fs10],
        "counters": {"frames": 2, "samples": 25, "lost_frames": 9,
                     "bad_frame:mains_frequency": 1, "bad_frame:sampling_frequency": 1,
                     "bad_frame:amplitude_resolution": 1, "bad_frame:boot_id": 1,
                     "bad_frame:serial_number": 3, "bad_frame:flags": 1, "bad_frame:sample_count": 1},
        "segments": [[BOOT_A, 0, 25]], "gaps": []},
        note="frames dropped for their fields keep the parser in sync; their seq numbers count as lost")

    # 8 two sample frames never arrive
    s4, fs4 = samples(4, 75, ramp(75))
    add_stream("dropped_frames", [i0, s1, s4], {
        "frames": [fi0, fs1, fs4],
        "counters": {"frames": 3, "samples": 50, "lost_frames": 2, "gaps": 1, "lost_samples": 50},
        "segments": [[BOOT_A, 0, 25], [BOOT_A, 75, 100]], "gaps": [[BOOT_A, 25, 50]]})

    # 9 an info frame lost: frames are missing, samples are not
    s3b, fs3b = samples(3, 25, ramp(25))
    add_stream("info_frame_lost", [i0, s1, s3b], {
        "frames": [fi0, fs1, fs3b],
        "counters": {"frames": 3, "samples": 50, "lost_frames": 1},
        "segments": [[BOOT_A, 0, 50]], "gaps": []})

    # 10 counter wraps at 2^32 and seq at 2^16: still one contiguous stream
    top = 2**32 - 25
    iw, fiw = info(65534, next_counter=top)
    sw1, fsw1 = samples(65535, top, ramp(3))
    sw2, fsw2 = samples(0, 0, ramp(28))
    add_stream("counter_wrap", [iw, sw1, sw2], {
        "frames": [fiw, fsw1, fsw2],
        "counters": {"frames": 3, "samples": 50},
        "segments": [[BOOT_A, top, top + 50]], "gaps": []},
        note="segments are in unwrapped counters: the second frame starts at 2^32")

    # 11 samples before the first device info are held, then released
    h1, fh1 = samples(5, 100, ramp(100))
    h2, fh2 = samples(6, 125, ramp(125))
    ih, fih = info(7, next_counter=150)
    h3, fh3 = samples(8, 150, ramp(150))
    add_stream("samples_before_info", [h1, h2, ih, h3], {
        "frames": [fh1, fh2, fih, fh3],
        "counters": {"frames": 4, "samples": 75},
        "segments": [[BOOT_A, 100, 175]], "gaps": []})

    # 12 the device restarts: a new boot id starts a new stream, no gap between streams
    ib, fib = info(0, boot=BOOT_B)
    sb1, fsb1 = samples(1, 0, ramp(500))
    add_stream("device_restart", [i0, s1, s2, ib, sb1], {
        "frames": [fi0, fs1, fs2, fib, fsb1],
        "counters": {"frames": 5, "samples": 75},
        "segments": [[BOOT_A, 0, 50], [BOOT_B, 0, 25]], "gaps": []})

    # 13 the restart's info frame is corrupt: held samples wait for the next info frame
    ibad = corrupt(info(0, boot=BOOT_B)[0], 30)
    sb2, fsb2 = samples(2, 25, ramp(525))
    ib3, fib3 = info(3, boot=BOOT_B, next_counter=50)
    sb4, fsb4 = samples(4, 50, ramp(550))
    add_stream("restart_info_lost", [i0, s1, s2, ibad, sb1, sb2, ib3, sb4], {
        "frames": [fi0, fs1, fs2, fsb1, fsb2, fib3, fsb4],
        "counters": {"frames": 7, "samples": 125, "crc_errors": 1, "skipped_bytes": len(ibad)},
        "segments": [[BOOT_A, 0, 50], [BOOT_B, 0, 75]], "gaps": []},
        note="seq restarts with the device: no frames are counted lost across a boot")

    # 14 a counter that goes backwards without a restart is impossible
    sr, fsr = samples(3, 0, ramp(0))
    ir, fir = info(4, next_counter=50)
    s5, fs5 = samples(5, 50, ramp(50))
    add_stream("counter_regression", [i0, s1, s2, sr, ir, s5], {
        "frames": [fi0, fs1, fs2, fsr, fir, fs5],
        "counters": {"frames": 6, "samples": 75, "bad_frame:counter_regression": 1},
        "segments": [[BOOT_A, 0, 75]], "gaps": []})

    # 15 the first sample frame of a session is lost: the info frame said where the stream starts
    s2f, fs2f = samples(2, 25, ramp(25))
    add_stream("first_frame_lost", [i0, s2f], {
        "frames": [fi0, fs2f],
        "counters": {"frames": 2, "samples": 25, "lost_frames": 1, "gaps": 1, "lost_samples": 25},
        "segments": [[BOOT_A, 25, 50]], "gaps": [[BOOT_A, 0, 25]]})

    # 16 frames lost before an info frame: the gap is known at the info frame, not only at the next samples
    i3, fi3 = info(3, next_counter=50)
    add_stream("loss_seen_by_info_frame", [i0, s1, i3], {
        "frames": [fi0, fs1, fi3],
        "counters": {"frames": 3, "samples": 25, "lost_frames": 1, "gaps": 1, "lost_samples": 25},
        "segments": [[BOOT_A, 0, 25]], "gaps": [[BOOT_A, 25, 25]]},
        note="the end of a stream: no later sample frame would ever show this gap")

    # Over BLE: the "clean" stream cut into the notifications of ATT_MTU - 3 bytes, and a disconnect mid-frame.
    clean = b"".join([i0, s1, s2])
    ble = [{"name": f"clean_mtu_{mtu}", "mtu": mtu, "disconnect_after": False,
            "notifications": [clean[i:i + mtu - 3].hex() for i in range(0, len(clean), mtu - 3)],
            "expect": {"frames": [fi0, fs1, fs2], "counters": {"frames": 3}}} for mtu in (23, 247)]
    cut = b"".join([i0, s1, s2[:20]])
    ble.append({"name": "disconnect_mid_frame_mtu_23", "mtu": 23, "disconnect_after": True,
                "notifications": [cut[i:i + 20].hex() for i in range(0, len(cut), 20)],
                "expect": {"frames": [fi0, fs1], "counters": {"frames": 2, "truncated_frames": 1}}})

    return {
        "protocol": "kardiamobile-serial",
        "version": 1,
        "spec": "firmware_specs/kardiamobile.md",
        "crc": {"name": "CRC-16/CCITT-FALSE", "poly": "0x1021", "init": "0xFFFF", "check_123456789": "0x29B1"},
        "frames": frames,
        "streams": streams,
        "ble": ble,
        "counter_rules": "every counter not listed under expect.counters must be 0",
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("kardiamobile.json")
    out.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {out}")
