"""The pipeline on a real spool: windows, gaps, the journal, restarts and what every package holds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gateway.core.blocks import ChannelInfo, DeviceInfo, Gap, SampleBlock
from gateway.packagers.kardia import KardiaRecordingPackager
from gateway.pipeline import DevicePipeline
from gateway.spool import AsyncSpool, Spool

FS = 300
SIGNAL = (np.arange(200_000) * 7919 % 4001 - 2000).astype(np.int16)  # distinct, recognisable values


def info(session: str = "0000abcd", device: str = "KM1-0001") -> DeviceInfo:
    return DeviceInfo(device, session, "kardiamobile", "1.2.0", {"leadI": ChannelInfo(FS, 2000.0)},
                      {"mains_frequency": 50, "amplitude_resolution": 500})


def blocks(start: int, end: int, size: int = 25, session: str = "0000abcd", t0: float = 1_700_000_000.0):
    sid = info(session).stream("leadI")
    return [SampleBlock(sid, a, SIGNAL[a:min(a + size, end)], t0 + min(a + size, end) / FS)
            for a in range(start, end, size)]


def packager(seconds: float = 1.0) -> KardiaRecordingPackager:
    return KardiaRecordingPackager("kardia", "patient-1", recording_seconds=seconds)


def spooled(path) -> list[tuple[int, int, dict]]:
    s = Spool(path)
    try:
        return [(p.first, p.end, json.loads(p.body)) for p in s.due("kardia", now=1e12, limit=10_000)]
    finally:
        s.close()


@pytest.fixture
async def spool(tmp_path):
    sp = AsyncSpool(tmp_path / "spool.db")
    yield sp
    await sp.close()


async def test_full_windows_are_packaged_with_exact_samples_and_metadata(spool, tmp_path):
    pipe = DevicePipeline("dev", [packager(1.0)], spool=spool)
    await pipe.handle([info(), *blocks(0, 1000)])
    await spool.close()
    pkgs = spooled(tmp_path / "spool.db")
    assert [(a, b) for a, b, _ in pkgs] == [(0, 300), (300, 600), (600, 900)]
    body = pkgs[1][2]
    assert body["data"]["raw"]["samples"]["leadI"] == SIGNAL[300:600].tolist()
    assert body["data"]["raw"]["frequency"] == 300
    assert body["data"]["raw"]["mainsFrequency"] == 50
    assert body["data"]["raw"]["amplitudeResolution"] == 500
    assert body["duration"] == 1000 and body["patientID"] == "patient-1"
    assert body["recordedAt"] == "2023-11-14T22:13:21.000+00:00"  # 1_700_000_000 + 300/300 s
    # The 100 samples past the last window are durable in the journal, not lost.
    s = Spool(tmp_path / "spool.db")
    (rec,) = s.recover()
    assert np.array_equal(np.concatenate([r.samples for r in rec.rows]), SIGNAL[900:1000])
    s.close()


async def test_a_gap_cuts_the_window_and_is_recorded(spool, tmp_path):
    pipe = DevicePipeline("dev", [packager(1.0)], spool=spool)
    sid = info().stream("leadI")
    await pipe.handle([info(), *blocks(0, 500), Gap(sid, 500, 100), *blocks(600, 1000)])
    await pipe.finish()
    await spool.close()
    assert [(a, b) for a, b, _ in spooled(tmp_path / "spool.db")] == [(0, 300), (300, 500), (600, 900), (900, 1000)]
    s = Spool(tmp_path / "spool.db")
    assert [(g.device, g.stream, g.start, g.missing) for g in s.gaps()] == [("dev", sid.key, 500, 100)]
    assert s.recover() == []  # close() packaged everything
    s.close()


async def test_every_sample_taken_is_journaled_by_the_next_commit(spool, tmp_path):
    pipe = DevicePipeline("dev", [packager(30.0)], spool=spool)
    await pipe.handle([info(), *blocks(0, 275)])
    (rec,) = await spool.call(spool.spool.recover)  # less than a window, already durable
    assert [(r.first, r.end) for r in rec.rows] == [(0, 275)]
    await pipe.handle(blocks(275, 300))
    (rec,) = await spool.call(spool.spool.recover)
    assert [(r.first, r.end) for r in rec.rows] == [(0, 275), (275, 300)]
    assert np.array_equal(np.concatenate([r.samples for r in rec.rows]), SIGNAL[:300])


async def test_restart_recovers_the_journal_and_drops_resent_samples(tmp_path):
    path = tmp_path / "spool.db"
    sp = AsyncSpool(path)
    pipe = DevicePipeline("dev", [packager(1.0)], spool=sp)
    await pipe.handle([info(), *blocks(0, 450)])  # one package [0,300) + journal up to 450
    await sp.close()  # the process dies here: no close(), nothing else written

    sp = AsyncSpool(path)
    pipe = DevicePipeline("dev", [packager(1.0)], spool=sp)
    (rec,) = await sp.call(sp.spool.recover)
    assert pipe.recover(rec) == 1
    # The device resends 50 samples the first run already had, then carries on.
    await pipe.handle([info(), *blocks(400, 900)])
    await pipe.finish()
    await sp.close()
    pkgs = spooled(path)
    assert [(a, b) for a, b, _ in pkgs] == [(0, 300), (300, 450), (450, 750), (750, 900)]
    assert np.array_equal(np.concatenate([p[2]["data"]["raw"]["samples"]["leadI"] for p in pkgs]), SIGNAL[:900])
    assert pipe.counters["duplicate_samples"] == 50
    s = Spool(path)
    assert s.gaps() == []
    s.close()


async def test_restart_records_the_gap_while_the_gateway_was_down(tmp_path):
    path = tmp_path / "spool.db"
    sp = AsyncSpool(path)
    await DevicePipeline("dev", [packager(1.0)], spool=sp).handle([info(), *blocks(0, 450)])
    await sp.close()
    sp = AsyncSpool(path)
    pipe = DevicePipeline("dev", [packager(1.0)], spool=sp)
    for rec in await sp.call(sp.spool.recover):
        pipe.recover(rec)
    await pipe.handle([info(), *blocks(600, 700)])
    await pipe.finish()
    gaps = await sp.call(sp.spool.gaps)
    await sp.close()
    assert [(g.start, g.missing) for g in gaps] == [(450, 150)]
    assert [(a, b) for a, b, _ in spooled(path)] == [(0, 300), (300, 450), (600, 700)]


async def test_a_new_session_closes_the_old_one(spool, tmp_path):
    pipe = DevicePipeline("dev", [packager(1.0)], spool=spool)
    await pipe.handle([info("00000001"), *blocks(0, 400, session="00000001")])
    await pipe.handle([info("00000002"), *blocks(0, 100, session="00000002")])
    await pipe.finish()
    await spool.close()
    s = Spool(tmp_path / "spool.db")
    keys = [p.key for p in s.due("kardia", now=1e12, limit=100)]
    s.close()
    assert keys == ["KM1-0001/00000001/leadI/0-300", "KM1-0001/00000001/leadI/300-400",
                    "KM1-0001/00000002/leadI/0-100"]


async def test_blocks_far_larger_than_the_ring_are_packaged_without_loss(spool, tmp_path):
    pipe = DevicePipeline("dev", [packager(30.0)], spool=spool)
    big = SampleBlock(info().stream("leadI"), 0, SIGNAL[:150_000], 1_700_000_500.0)  # 500 s in one block
    await pipe.handle([info(), big])
    await pipe.finish()
    assert pipe.streams[info().stream("leadI")].ring.capacity < 150_000
    await spool.close()
    pkgs = spooled(tmp_path / "spool.db")
    assert [b - a for a, b, _ in pkgs] == [9000] * 16 + [6000]
    assert np.array_equal(np.concatenate([p[2]["data"]["raw"]["samples"]["leadI"] for p in pkgs]), SIGNAL[:150_000])


async def test_samples_of_unconsumed_channels_or_unknown_streams_are_counted(spool):
    pipe = DevicePipeline("dev", [packager(1.0)], spool=spool)
    await pipe.handle(blocks(0, 100))  # no device info yet: no stream to put them in
    assert pipe.counters["unused_samples"] == 100
