"""The Hexoskin serial protocol against its golden vectors (firmware_specs/vectors/hexoskin.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gateway.protocols import hexoskin as hx
from tests.conftest import VECTORS

REJECT_COUNTERS = ("crc_errors", "bad_headers", "unsupported_version", "truncated_frames")


@pytest.fixture(scope="module")
def vectors() -> dict:
    """The golden vectors."""
    return json.loads((VECTORS / "hexoskin.json").read_text())


def as_fields(frame: hx.Frame) -> dict:
    """A decoded frame in the vectors' shape."""
    if isinstance(frame, hx.InfoFrame):
        return {"type": "info", "seq": frame.seq, "device_id": frame.device_id, "firmware": frame.firmware,
                "channels": frame.channels, "session_id": frame.session_id, "session_start": frame.session_start,
                "battery_percent": frame.battery_percent}
    kind, key, selector = {hx.EcgBlock: ("ecg", "lead", "lead"), hx.RespirationBlock: ("respiration", "band", "band"),
                           hx.AccelerationBlock: ("acceleration", "axes", "axes")}[type(frame)]
    return {"type": kind, "seq": frame.seq, "ts": frame.ts, key: getattr(frame, selector), "flags": frame.flags,
            "samples": frame.samples.tolist()}


def encode(fields: dict) -> bytes:
    """The project's encoder for a vector's decoded fields."""
    f = fields
    if f["type"] == "info":
        return hx.encode_info(f["seq"], f["device_id"], tuple(int(x) for x in f["firmware"].split(".")),
                              f["channels"], f["session_id"], f["session_start"], f["battery_percent"])
    if f["type"] == "ecg":
        return hx.encode_ecg(f["seq"], f["ts"], f["lead"], np.array(f["samples"]), f["flags"])
    if f["type"] == "respiration":
        return hx.encode_respiration(f["seq"], f["ts"], f["band"], np.array(f["samples"]), f["flags"])
    return hx.encode_acceleration(f["seq"], f["ts"], np.array(f["samples"]))


def test_vectors_cover_every_frame_type_and_reject(vectors):
    types = {f["fields"]["type"] for f in vectors["frames"] if f["fields"]}
    assert types == {"info", "ecg", "respiration", "acceleration"}
    rejects = {f["reject"] for f in vectors["frames"] if f["reject"]}
    assert rejects == {"device_id", "channels", "session_id", "session_start", "battery", "reserved", "lead",
                       "band", "axes", "sample_count", "flags", "sample_range"}


def test_crc_check_value():
    assert hx.framing.crc16(b"123456789") == 0x29B1


def test_encoder_reproduces_every_valid_golden_frame(vectors):
    for f in vectors["frames"]:
        if f["fields"]:
            assert encode(f["fields"]).hex() == f["hex"], f["name"]


def test_decoder_decodes_every_golden_frame(vectors):
    for f in vectors["frames"]:
        dec = hx.FrameDecoder()
        frames = dec.feed(bytes.fromhex(f["hex"]))
        if f["reject"]:
            assert frames == [] and dec.counters[f"bad_frame:{f['reject']}"] == 1, f["name"]
        else:
            assert [as_fields(x) for x in frames] == [f["fields"]], f["name"]
            assert dec.counters["frames"] == 1 and dec.buffered == 0


def test_ecg_timestamps_are_exact_integers(vectors):
    (frame,) = hx.FrameDecoder().feed(bytes.fromhex(next(f["hex"] for f in vectors["frames"]
                                                        if f["name"] == "ecg_block")))
    assert frame.ts == vectors["session_start_unix"] * hx.TICKS_PER_SECOND  # one tick per 256 Hz sample
    assert isinstance(frame.ts, int) and frame.samples.dtype == np.int16


@pytest.mark.parametrize("chunk", [None, 1, 2, 7, 64])
def test_decoder_streams(vectors, chunk):
    rng = np.random.default_rng(5)
    for s in vectors["streams"]:
        data = bytes.fromhex(s["hex"])
        dec = hx.FrameDecoder()
        frames = []
        if chunk is None:
            frames += dec.feed(data)
        else:
            pos = 0
            while pos < len(data):
                n = int(rng.integers(1, chunk + 1))
                frames += dec.feed(data[pos:pos + n])
                pos += n
        if s["link_reset_after"]:
            dec.reset()
        assert [as_fields(f) for f in frames] == s["expect"]["frames"], (s["name"], chunk)
        expected = s["expect"]["counters"]
        for key, value in expected.items():
            assert dec.counters[key] == value, (s["name"], chunk, key, dict(dec.counters))
        for key in REJECT_COUNTERS:
            assert dec.counters[key] == expected.get(key, 0), (s["name"], key)
        assert not {k for k in dec.counters if k.startswith("bad_frame:")} - set(expected), s["name"]


def test_random_garbage_never_crashes_and_never_invents_frames():
    rng = np.random.default_rng(11)
    dec = hx.FrameDecoder()
    for _ in range(200):
        blob = rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes()
        if rng.random() < 0.3:
            blob = blob[:5] + hx.SYNC + blob[5:]  # frequent false syncs
        assert dec.feed(blob) == []  # a random frame passing the CRC and every field rule: ~never
    assert dec.counters["bytes"] > 0 and dec.counters["frames"] == 0


def test_encoders_refuse_impossible_blocks():
    with pytest.raises(ValueError, match="1..64"):
        hx.encode_ecg(0, 0, 1, np.zeros(65))
    with pytest.raises(ValueError, match="1..32"):
        hx.encode_acceleration(0, 0, np.zeros((33, 3)))
    with pytest.raises(ValueError, match="1 to 16"):
        hx.encode_info(0, "", (1, 0, 0), 1, 1, hx.MIN_SESSION_START)


def test_ble_notifications_decode_to_the_same_frames(vectors):
    """Over BLE the notifications, in order, are the serial byte stream: same frames, any boundaries."""
    assert {b["mtu"] for b in vectors["ble"]} == {23, 247}
    for b in vectors["ble"]:
        notes = [bytes.fromhex(n) for n in b["notifications"]]
        assert all(len(n) <= b["mtu"] - 3 for n in notes) and len(notes) > 1
        dec = hx.FrameDecoder()
        frames = [f for n in notes for f in dec.feed(n)]
        if b["disconnect_after"]:
            dec.reset()
        assert [as_fields(f) for f in frames] == b["expect"]["frames"], b["name"]
        for key, value in b["expect"]["counters"].items():
            assert dec.counters[key] == value, (b["name"], key, dict(dec.counters))
    from tests.conftest import ROOT

    spec = (ROOT / "firmware_specs" / "hexoskin.md").read_text()
    assert hx.BLE_SERVICE_UUID in spec and hx.BLE_FRAMES_UUID in spec  # the code and the spec name the same GATT
