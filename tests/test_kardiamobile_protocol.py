"""The KardiaMobile codec and driver against the golden vectors (firmware_specs/vectors)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from gateway.core.blocks import DeviceInfo, Gap, SampleBlock
from gateway.drivers.kardiamobile import KardiaMobileDriver
from gateway.protocols import kardiamobile as proto
from tests.conftest import VECTORS

DECODER_COUNTERS = {"frames", "skipped_bytes", "bad_headers", "unsupported_version", "crc_errors",
                    "truncated_frames"}


def _reference():
    """The vector generators' frame layer: its bitwise CRC is independent of the gateway's codec."""
    path = VECTORS / "reference_frame.py"
    spec = importlib.util.spec_from_file_location("reference_frame", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


crc_bitwise = _reference().crc16_ccitt_false


def frame_fields(frame: proto.Frame) -> dict:
    """A decoded frame in the vectors' field naming."""
    if isinstance(frame, proto.InfoFrame):
        return {"type": "info", "seq": frame.seq, "serial_number": frame.serial_number,
                "firmware": frame.firmware, "mains_frequency": frame.mains_frequency,
                "sampling_frequency": frame.sampling_frequency,
                "amplitude_resolution": frame.amplitude_resolution, "boot_id": frame.boot_id,
                "next_sample_counter": frame.next_sample_counter}
    return {"type": "samples", "seq": frame.seq, "sample_counter": frame.sample_counter,
            "flags": frame.flags, "samples": frame.samples.tolist()}


def encode(fields: dict) -> bytes:
    """Encode the vectors' fields with the project's encoder."""
    if fields["type"] == "info":
        fw = tuple(int(x) for x in fields["firmware"].split("."))
        return proto.encode_info(fields["seq"], fields["serial_number"], fw, fields["mains_frequency"],
                                 fields["amplitude_resolution"], fields["boot_id"],
                                 fields["next_sample_counter"], fields["sampling_frequency"])
    return proto.encode_samples(fields["seq"], fields["sample_counter"], np.array(fields["samples"]),
                                fields["flags"])


def test_crc_check_value_and_spec_examples(kardia_vectors):
    assert proto.crc16(b"123456789") == 0x29B1 == crc_bitwise(b"123456789")
    for vec in kardia_vectors["frames"]:
        raw = bytes.fromhex(vec["hex"])
        assert int.from_bytes(raw[-2:], "little") == crc_bitwise(raw[2:-2]), vec["name"]


def test_encoder_reproduces_every_golden_frame(kardia_vectors):
    for vec in kardia_vectors["frames"]:
        assert encode(vec["fields"]).hex() == vec["hex"], vec["name"]


def test_decoder_decodes_every_golden_frame(kardia_vectors):
    for vec in kardia_vectors["frames"]:
        dec = proto.FrameDecoder()
        frames = dec.feed(bytes.fromhex(vec["hex"]))
        assert [frame_fields(f) for f in frames] == [vec["fields"]], vec["name"]
        assert dec.buffered == 0


def _decode_stream(raw: bytes, chunk: int | None, reset: bool):
    dec = proto.FrameDecoder()
    frames = []
    if chunk is None:
        frames += dec.feed(raw)
    else:
        for i in range(0, len(raw), chunk):
            frames += dec.feed(raw[i:i + chunk])
    if reset:
        dec.reset()
    return frames, dec


@pytest.mark.parametrize("chunk", [None, 1, 7, 64])
def test_decoder_streams(kardia_vectors, chunk):
    """Every stream vector, fed whole and in chunks: same frames, same framing counters."""
    for vec in kardia_vectors["streams"]:
        raw = bytes.fromhex(vec["hex"])
        frames, dec = _decode_stream(raw, chunk, vec["link_reset_after"])
        exp = vec["expect"]
        assert [frame_fields(f) for f in frames] == exp["frames"], vec["name"]
        want = {k: v for k, v in exp["counters"].items() if k in DECODER_COUNTERS or k.startswith("bad_frame:")
                and k != "bad_frame:counter_regression"}
        got = {k: v for k, v in dec.counters.items() if v and k != "bytes"}
        assert got == want, vec["name"]
        assert dec.counters["bytes"] == len(raw)
        if vec["link_reset_after"]:
            assert dec.buffered == 0


def _segments(events):
    """Merge the driver's blocks into [boot_id, start, end] runs, checking contiguity claims."""
    segs: list[list[int]] = []
    samples: dict[tuple, list[np.ndarray]] = {}
    for ev in events:
        if isinstance(ev, SampleBlock):
            boot = int(ev.stream.session, 16)
            if segs and segs[-1][0] == boot and segs[-1][2] == ev.first:
                segs[-1][2] = ev.end
            else:
                segs.append([boot, ev.first, ev.end])
            samples.setdefault(ev.stream.session, []).append(ev.samples)
    return segs, samples


@pytest.mark.parametrize("chunk", [None, 1, 13])
def test_driver_streams(kardia_vectors, chunk):
    """The driver's segments, gaps and every counter match the vectors, however bytes arrive."""
    for vec in kardia_vectors["streams"]:
        raw = bytes.fromhex(vec["hex"])
        drv = KardiaMobileDriver()
        events = []
        step = len(raw) if chunk is None else chunk
        for i in range(0, len(raw), step):
            events += drv.feed(raw[i:i + step], arrival=1000.0)
        if vec["link_reset_after"]:
            events += drv.link_lost()
        exp = vec["expect"]
        segs, _ = _segments(events)
        assert segs == exp["segments"], vec["name"]
        gaps = [[int(g.stream.session, 16), g.start, g.missing] for g in events if isinstance(g, Gap)]
        assert gaps == exp["gaps"], vec["name"]
        got = {k: v for k, v in drv.counters.items() if v and k != "bytes"}
        assert got == exp["counters"], vec["name"]


def test_driver_delivers_exact_sample_values(kardia_vectors):
    """The samples the driver emits are exactly the samples of the frames it placed."""
    for vec in kardia_vectors["streams"]:
        drv = KardiaMobileDriver()
        events = drv.feed(bytes.fromhex(vec["hex"]), arrival=0.0)
        blocks = [e for e in events if isinstance(e, SampleBlock)]
        sample_frames = [f for f in vec["expect"]["frames"] if f["type"] == "samples"]
        if vec["name"] == "counter_regression":  # the regressed frame is dropped by the driver
            sample_frames = [f for f in sample_frames if f["seq"] != 3]
        got = np.concatenate([b.samples for b in blocks]).tolist() if blocks else []
        want = [v for f in sample_frames for v in f["samples"]]
        assert got == want, vec["name"]
        assert all(b.samples.dtype == np.int16 for b in blocks)


def test_driver_emits_device_info_once_per_session(kardia_vectors):
    vec = next(v for v in kardia_vectors["streams"] if v["name"] == "device_restart")
    events = KardiaMobileDriver().feed(bytes.fromhex(vec["hex"]), arrival=0.0)
    infos = [e for e in events if isinstance(e, DeviceInfo)]
    assert [i.session for i in infos] == ["1234abcd", "0badf00d"]
    assert infos[0].device == "KM1-0001"
    assert infos[0].channels["leadI"].sampling_frequency == 300
    assert infos[0].channels["leadI"].units_per_mv == 2000.0
    assert infos[0].extra == {"mains_frequency": 60, "amplitude_resolution": 500}


def test_held_samples_are_bounded_when_no_device_info_ever_arrives():
    drv = KardiaMobileDriver()
    raw = b"".join(proto.encode_samples(i, 25 * i, np.arange(25)) for i in range(40))  # 1000 samples, no info
    assert drv.feed(raw, arrival=0.0) == []
    assert drv.counters["no_device_info"] == 40 - 600 // 25


def test_random_garbage_never_crashes_the_driver():
    rng = np.random.default_rng(7)
    drv = KardiaMobileDriver()
    good = proto.encode_info(0, "KM1-X", (1, 0, 0), 50, 500, 99, 0) + proto.encode_samples(1, 0, np.arange(25))
    for _ in range(200):
        junk = rng.integers(0, 256, rng.integers(0, 300)).astype(np.uint8).tobytes()
        junk = junk.replace(b"\xa5", b"\xa5\x5a\x01\x02")  # plenty of plausible-looking headers
        drv.feed(junk, arrival=0.0)
    drv.link_lost()
    events = drv.feed(good, arrival=0.0)
    assert any(isinstance(e, SampleBlock) and len(e.samples) == 25 for e in events)


def test_ble_notifications_decode_to_the_same_frames(kardia_vectors):
    """Over BLE the notifications, in order, are the serial byte stream, whatever their boundaries."""
    from tests.conftest import ROOT

    assert {b["mtu"] for b in kardia_vectors["ble"]} == {23, 247}
    for b in kardia_vectors["ble"]:
        notes = [bytes.fromhex(n) for n in b["notifications"]]
        assert all(len(n) <= b["mtu"] - 3 for n in notes) and (len(notes) > 1 or b["mtu"] == 247)
        dec = proto.FrameDecoder()
        frames = [f for n in notes for f in dec.feed(n)]
        if b["disconnect_after"]:
            dec.reset()
        assert [frame_fields(f) for f in frames] == b["expect"]["frames"], b["name"]
        for key, value in b["expect"]["counters"].items():
            assert dec.counters[key] == value, (b["name"], key)
    spec = (ROOT / "firmware_specs" / "kardiamobile.md").read_text()
    assert proto.BLE_SERVICE_UUID in spec and proto.BLE_FRAMES_UUID in spec


def test_a_frame_cut_off_by_a_link_loss_is_a_gap_of_exactly_its_samples():
    """The session ends (or the cable goes) mid-frame: what the frame's header names is recorded, not lost."""
    from gateway.core.blocks import Gap, SampleBlock
    from gateway.drivers.kardiamobile import KardiaMobileDriver

    info = proto.encode_info(0, "KM1-CUT", (1, 0, 0), 50, 500, 0xC0FFEE, 0)
    frames = [proto.encode_samples(1 + k, 25 * k, np.arange(25 * k, 25 * k + 25, dtype=np.int16)) for k in range(3)]
    for keep in (8, 11, 20, 40):  # header only, part of the counter, counter and some samples
        d = KardiaMobileDriver()
        events = d.feed(info + frames[0] + frames[1] + frames[2][:keep], 0.0)
        assert sum(len(e.samples) for e in events if isinstance(e, SampleBlock)) == 50
        (gap,) = d.link_lost()
        assert isinstance(gap, Gap) and (gap.start, gap.missing) == (50, 25)
        assert d.counters["truncated_frames"] == 1 and d.counters["truncated_frame_samples"] == 25
        # The device comes back and goes on: no second gap for the same samples.
        more = d.feed(proto.encode_samples(4, 75, np.arange(75, 100, dtype=np.int16)), 0.0)
        assert [type(e) for e in more] == [SampleBlock] and d.counters["gaps"] == 1
    d = KardiaMobileDriver()
    d.feed(info + frames[0] + frames[1][:5], 0.0)  # not even a header: nothing to name
    assert d.link_lost() == [] and d.counters["gaps"] == 0 and d.counters["truncated_frames"] == 1
    # The resumed stream's one gap covers that frame too (what the BLE outage test counts on).
    more = d.feed(frames[2], 0.0)
    assert [(e.start, e.missing) for e in more if isinstance(e, Gap)] == [(25, 25)] and d.counters["gaps"] == 1
    assert not d.counters["truncated_frame_samples"]
